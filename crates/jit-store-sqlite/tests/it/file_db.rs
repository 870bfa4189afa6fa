//! What only a database file can get wrong: surviving a restart, refusing
//! files it does not understand, and keeping SQL out of error texts.

use std::path::Path;

use jit_core::lifecycle::Status;
use jit_core::ports::{PageRequest, RequestStore, StoreError};
use jit_store_sqlite::{OpenError, SCHEMA_VERSION, SqliteStore};
use jit_testkit::{advance, base_time, create, later, sample_request, unique_principal};
use rusqlite::Connection;

fn raw(path: &Path) -> Connection {
    Connection::open(path).expect("a raw connection")
}

fn user_version(path: &Path) -> i64 {
    raw(path)
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version")
}

#[tokio::test]
async fn reopening_a_file_keeps_records_and_trails() {
    // GIVEN a file database with a request that has moved on
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jit.db");
    let alice = unique_principal("alice");
    let at = base_time();
    let (stored, trail) = {
        let store = SqliteStore::open(&path).unwrap();
        let r = create(&store, &sample_request(&alice, at)).await;
        let r = advance(&store, &r, Status::Validating, later(at, 1)).await;
        let trail = store.audit_events(&r.request_id).await.unwrap();
        (r, trail)
        // WHEN the process goes away (the store is dropped) ...
    };

    // ... AND the file is opened again
    let store = SqliteStore::open(&path).unwrap();

    // THEN the request, its trail and its listing are all still there
    assert_eq!(
        store.get(&stored.request_id).await.unwrap(),
        Some(stored.clone())
    );
    assert_eq!(store.audit_events(&stored.request_id).await.unwrap(), trail);
    assert_eq!(trail.len(), 2);
    let page = store
        .list_by_status(Status::Validating, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(page.items, vec![stored]);
    assert_eq!(user_version(&path), SCHEMA_VERSION);
}

#[tokio::test]
async fn open_creates_missing_directories_and_uses_wal() {
    // GIVEN a path whose directories do not exist yet
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("nested").join("jit.db");

    // WHEN the store opens it
    let store = SqliteStore::open(&path).unwrap();
    create(&store, &sample_request(&unique_principal("a"), base_time())).await;

    // THEN the file exists, in WAL mode, at the current schema version
    assert!(path.is_file());
    let mode: String = raw(&path)
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    assert_eq!(user_version(&path), SCHEMA_VERSION);
}

#[test]
fn a_schema_from_the_future_or_nowhere_is_refused() {
    for found in [SCHEMA_VERSION + 1, 99, -1] {
        // GIVEN a database whose schema version this build does not know
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jit.db");
        drop(SqliteStore::open(&path).unwrap());
        raw(&path)
            .pragma_update(None, "user_version", found)
            .unwrap();

        // WHEN it is opened
        let err = SqliteStore::open(&path).unwrap_err();

        // THEN it is refused, saying which version and what to do
        match &err {
            OpenError::UnknownSchemaVersion {
                found: f,
                supported,
                ..
            } => {
                assert_eq!(*f, found);
                assert_eq!(*supported, SCHEMA_VERSION);
            }
            other => panic!("version {found}: expected UnknownSchemaVersion, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&found.to_string()), "{msg}");
        assert!(msg.contains("jit.db"), "{msg}");
        assert!(msg.contains("upgrade"), "{msg}");
        // AND the file was left as it was
        assert_eq!(user_version(&path), found);
    }
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    // GIVEN a file with something else in it
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let junk = "these are my notes, not a database\n".repeat(100);
    std::fs::write(&path, &junk).unwrap();

    // WHEN it is opened as the store
    let err = SqliteStore::open(&path).unwrap_err();

    // THEN it is refused as not a database, and the file is untouched
    assert!(
        matches!(err, OpenError::NotADatabase { .. }),
        "expected NotADatabase, got {err:?}"
    );
    assert!(err.to_string().contains("notes.txt"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), junk);
}

#[test]
fn a_directory_in_the_way_is_a_clear_error() {
    // GIVEN a path whose parent is a file
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "a file").unwrap();

    // WHEN the store is opened beneath it
    let err = SqliteStore::open(&blocker.join("jit.db")).unwrap_err();

    // THEN the error names the directory it could not create
    assert!(matches!(err, OpenError::CreateDir { .. }), "{err:?}");
    assert!(err.to_string().contains("blocker"), "{err}");
}

#[tokio::test]
async fn backend_errors_name_the_operation_but_never_sql_or_stored_content() {
    // GIVEN a stored request whose JSON was damaged outside the store
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jit.db");
    let store = SqliteStore::open(&path).unwrap();
    let r = create(&store, &sample_request(&unique_principal("a"), base_time())).await;
    raw(&path)
        .execute(
            "UPDATE requests SET record = '{\"secret\": \"hunter2\"' WHERE request_id = ?1",
            [r.request_id.as_str()],
        )
        .unwrap();

    // WHEN it is read
    let err = store.get(&r.request_id).await.unwrap_err();

    // THEN the error says which record, not what it holds
    let StoreError::Backend(msg) = &err else {
        panic!("expected Backend, got {err:?}")
    };
    assert!(msg.contains(r.request_id.as_str()), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");

    // GIVEN the table itself is gone
    raw(&path).execute_batch("DROP TABLE requests").unwrap();

    // WHEN a listing runs
    let err = store
        .list_by_status(Status::Requested, &PageRequest::default())
        .await
        .unwrap_err();

    // THEN the message names the operation, without SQL or table names
    let StoreError::Backend(msg) = &err else {
        panic!("expected Backend, got {err:?}")
    };
    assert!(msg.starts_with("sqlite: list"), "{msg}");
    for leak in ["SELECT", "requests", "WHERE", "no such table"] {
        assert!(!msg.contains(leak), "{leak:?} leaked into {msg:?}");
    }
}

#[tokio::test]
async fn clones_share_one_database() {
    // GIVEN a store and a clone of it
    let store = SqliteStore::in_memory().unwrap();
    let clone = store.clone();

    // WHEN one writes
    let r = create(&store, &sample_request(&unique_principal("a"), base_time())).await;

    // THEN the other reads it; a separate in-memory store does not
    assert_eq!(clone.get(&r.request_id).await.unwrap(), Some(r.clone()));
    let other = SqliteStore::in_memory().unwrap();
    assert_eq!(other.get(&r.request_id).await.unwrap(), None);
}

#[tokio::test]
async fn the_task_token_lives_only_in_the_record() {
    // GIVEN a stored request that carries a task token
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jit.db");
    let store = SqliteStore::open(&path).unwrap();
    let r = jit_testkit::full_request(&unique_principal("a"), base_time());
    let token = r.task_token.clone().expect("full_request has a token");
    create(&store, &r).await;

    // WHEN every column but the record itself is read back, audit trail included
    let conn = raw(&path);
    let mut stmt = conn
        .prepare(
            "SELECT request_id || requester || status || created_at || coalesce(expires_at, '')
                    || coalesce(idempotency_key, '') || version FROM requests
             UNION ALL SELECT event FROM audit_events",
        )
        .unwrap();
    let texts: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();

    // THEN the token appears nowhere there
    assert_eq!(texts.len(), 2);
    for text in texts {
        assert!(!text.contains(token.expose()), "token found in {text}");
    }
}
