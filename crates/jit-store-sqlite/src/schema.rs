//! Connection settings and the schema, versioned with `PRAGMA user_version`.
//!
//! The schema only ever moves forward, one numbered migration at a time, so
//! a database written by an older `jit-local` opens in a newer one. A
//! database from a *newer* build is refused rather than guessed at: writing
//! into tables whose meaning we do not know could lose someone's audit trail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

/// Why a database could not be opened. Messages name the file and say what
/// to do; they never carry SQL.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the directory {dir} for the database: {source}")]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a JIT Access database (or it is damaged); move it aside or choose another path"
    )]
    NotADatabase { path: String },
    #[error(
        "{path} has schema version {found}, which this build does not know (it knows up to {supported}); \
         it was written by a newer JIT Access, or damaged: upgrade, or choose another path"
    )]
    UnknownSchemaVersion {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("cannot open the database {path}: {reason}")]
    Sqlite { path: String, reason: String },
}

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only:
/// never edit one that has shipped. The local engine's executions and timers
/// get their own migrations here when they arrive.
const MIGRATIONS: &[&str] = &[
    // 1: requests and their audit trail.
    r#"
    CREATE TABLE requests (
        request_id      TEXT PRIMARY KEY NOT NULL,
        requester       TEXT NOT NULL,
        status          TEXT NOT NULL,
        -- Unix milliseconds, for range scans (the JSON record is the truth).
        created_at      INTEGER NOT NULL,
        expires_at      INTEGER,
        idempotency_key TEXT,
        version         INTEGER NOT NULL,
        record          TEXT NOT NULL
    ) STRICT;
    CREATE UNIQUE INDEX requests_idempotency
        ON requests (requester, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX requests_by_requester ON requests (requester, request_id DESC);
    CREATE INDEX requests_by_status ON requests (status, request_id DESC);

    -- No foreign key to requests: a rejection is audited without a record.
    CREATE TABLE audit_events (
        event_id   TEXT PRIMARY KEY NOT NULL,
        request_id TEXT NOT NULL,
        at         INTEGER NOT NULL,
        event      TEXT NOT NULL
    ) STRICT;
    CREATE INDEX audit_events_by_request ON audit_events (request_id, event_id);
    "#,
    // 2: keys seen once (replayed Slack requests), until they expire.
    r#"
    CREATE TABLE seen_keys (
        key        TEXT PRIMARY KEY NOT NULL,
        -- Unix milliseconds; the row may be deleted from then on.
        expires_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX seen_keys_by_expiry ON seen_keys (expires_at);
    "#,
    // 3: the grant ledger (jit_core::ledger): one row per IAM change the
    // broker makes, `open` while what it put may still be in IAM.
    r#"
    CREATE TABLE grant_ledger (
        entry_id TEXT PRIMARY KEY NOT NULL,
        resource TEXT NOT NULL,
        open     INTEGER NOT NULL,
        at       INTEGER NOT NULL,
        entry    TEXT NOT NULL
    ) STRICT;
    CREATE INDEX grant_ledger_by_resource ON grant_ledger (resource, entry_id);
    CREATE INDEX grant_ledger_open ON grant_ledger (entry_id) WHERE open = 1;
    "#,
    // 4: audit events by time, for analytics (jit_core::analytics) over a
    // range without reading every event.
    r#"
    CREATE INDEX audit_events_by_time ON audit_events (at, event_id);
    "#,
    // 5: what analytics reads of each event (jit_core::analytics::EventDigest),
    // kept apart in time order so a range is one sequential read with no
    // JSON to parse; filled for the events already stored. Columns from
    // the event JSON as `history::DIGEST_COLUMNS` extracts them.
    r#"
    CREATE TABLE audit_digests (
        at          INTEGER NOT NULL,
        event_id    TEXT NOT NULL,
        request_id  TEXT NOT NULL,
        actor       TEXT NOT NULL,
        action      TEXT NOT NULL,
        to_status   TEXT,
        code        TEXT,
        entitlement TEXT,
        requester   TEXT,
        groups      TEXT,
        created_at  TEXT,
        duration    INTEGER,
        granted_at  TEXT,
        expires_at  TEXT,
        PRIMARY KEY (at, event_id)
    ) WITHOUT ROWID, STRICT;
    INSERT INTO audit_digests
    SELECT at, event_id, request_id,
           json_extract(event, '$.actor'), json_extract(event, '$.action'),
           json_extract(event, '$.to'), json_extract(event, '$.code'),
           coalesce(json_extract(event, '$.snapshot.entitlement'), json_extract(event, '$.entitlement')),
           json_extract(event, '$.snapshot.requester.principal'),
           json_extract(event, '$.snapshot.requester.groups'),
           json_extract(event, '$.snapshot.createdAt'), json_extract(event, '$.snapshot.duration'),
           json_extract(event, '$.changes.grantedAt'), json_extract(event, '$.changes.expiresAt')
      FROM audit_events;
    "#,
];

/// Applies the connection settings and brings the schema up to date.
///
/// WAL lets readers (the CLI, a second `jit-local`) proceed during a write;
/// `synchronous=NORMAL` is durable against a crashed process (what a laptop
/// sees), trading only the last commits on power loss; `busy_timeout` makes a
/// second process wait its turn instead of failing at once.
pub(crate) fn prepare(conn: &mut Connection, path: &str) -> Result<(), OpenError> {
    let fail = |e: rusqlite::Error| classify(path, e);
    conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(fail)?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        tracing::warn!(path, journal_mode = %mode, "SQLite refused WAL mode; writers will block readers");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(fail)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(fail)?;
    migrate(conn, path)
}

/// Runs the missing migrations in one `IMMEDIATE` transaction, reading the
/// version inside it, so two processes opening a new file at once cannot
/// both apply migration 1.
fn migrate(conn: &mut Connection, path: &str) -> Result<(), OpenError> {
    let fail = |e: rusqlite::Error| classify(path, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail)?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(fail)?;
    if !(0..=SCHEMA_VERSION).contains(&found) {
        return Err(OpenError::UnknownSchemaVersion {
            path: path.to_string(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql).map_err(fail)?;
        tracing::info!(path, schema_version = i + 1, "database schema migrated");
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(fail)?;
    tx.commit().map_err(fail)
}

/// Turns an open-time SQLite error into what the operator can act on.
pub(crate) fn classify(path: &str, e: rusqlite::Error) -> OpenError {
    tracing::debug!(path, error = %e, "opening the database failed");
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => OpenError::NotADatabase {
            path: path.to_string(),
        },
        _ => OpenError::Sqlite {
            path: path.to_string(),
            reason: describe(&e).to_string(),
        },
    }
}

/// A SQLite error in words an operator can act on, without its message
/// (which may quote SQL or table names).
pub(crate) fn describe(e: &rusqlite::Error) -> &'static str {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "the database is busy (another process holds a write lock)"
        }
        Some(ErrorCode::ReadOnly) => "the database is read-only",
        Some(ErrorCode::DiskFull) => "the disk is full",
        Some(ErrorCode::SystemIoFailure) => "a disk I/O error occurred",
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            "the database file is damaged"
        }
        Some(ErrorCode::CannotOpen) => "the database file cannot be opened",
        Some(ErrorCode::PermissionDenied) => "permission denied",
        Some(ErrorCode::ConstraintViolation) => "a constraint was violated",
        _ => "unexpected database error (details in the log)",
    }
}

/// Creates the directory a database file lives in.
pub(crate) fn ensure_parent(path: &Path) -> Result<(), OpenError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })
        }
        _ => Ok(()),
    }
}
