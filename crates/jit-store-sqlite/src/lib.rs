//! The embedded [`RequestStore`] for local mode: one SQLite file holds the
//! requests and their audit trail, so the whole broker runs on a laptop
//! without an AWS account.
//!
//! It keeps the same promises as the DynamoDB store — both run the suite in
//! `jit-testkit` — so what works locally works deployed: a transition is one
//! `BEGIN IMMEDIATE` transaction holding the guarded `UPDATE … WHERE status
//! AND version` and its audit `INSERT`, so a request never changes without
//! its trail and two racing writers get exactly one winner.
//!
//! The grant ledger (`jit_core::ledger::GrantLedger`) lives in the same
//! database (`ledger.rs`), so the reconciler reads one file. Later the
//! local engine's executions and timers live here too, as new numbered
//! migrations in `schema.rs`.
//!
//! Architecture invariants: this crate never stores a credential or a
//! signed link (the record has no field for either; keep it so). The one
//! capability it does hold, the workflow's task token on a waiting request,
//! lives only in the record's JSON: never in a column, an index, a log line
//! or an error. It never blocks an async worker thread (every call runs on
//! tokio's blocking pool), and no SQL or SQLite message reaches a
//! [`StoreError`]'s text — those go to the log; callers see what failed.

mod cursor;
mod history;
mod ledger;
mod schema;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use jit_core::lifecycle::Status;
use jit_core::ports::{CreateOutcome, Page, PageRequest, RequestFilter, RequestStore, StoreError};
use jit_core::request::{AccessRequest, AuditEvent, Timestamp};
use jit_core::{Principal, RequestId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

pub use schema::{OpenError, SCHEMA_VERSION};

/// A SQLite-backed request store. Cheap to clone: clones share one
/// connection, whose mutex serialises this process's writers (SQLite's own
/// locking and `busy_timeout` handle other processes).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates, with its parent directories) the database at
    /// `path` and brings its schema up to date. Refuses a file that is not a
    /// database or whose schema is newer than this build.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        schema::ensure_parent(path)?;
        let shown = path.display().to_string();
        let mut conn = Connection::open(path).map_err(|e| schema::classify(&shown, e))?;
        schema::prepare(&mut conn, &shown)?;
        Ok(Self::from_connection(conn))
    }

    /// A private database that vanishes when the last clone is dropped; for
    /// tests and throwaway demos.
    pub fn in_memory() -> Result<Self, OpenError> {
        let name = ":memory:";
        let mut conn = Connection::open_in_memory().map_err(|e| schema::classify(name, e))?;
        schema::prepare(&mut conn, name)?;
        Ok(Self::from_connection(conn))
    }

    fn from_connection(conn: Connection) -> Self {
        SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    /// Runs `f` on the connection on tokio's blocking pool.
    ///
    /// A poisoned mutex is taken over rather than propagated: a panic inside
    /// `f` drops its `Transaction`, which rolls back, so the connection is
    /// consistent again by the time anyone else locks it.
    async fn call<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|e| {
            tracing::error!(operation = op, error = %e, "SQLite worker task failed");
            StoreError::Backend(format!("sqlite: {op}: the database worker stopped"))
        })?
    }
}

/// Maps a SQLite error to a `Backend` error naming the operation and the
/// SQLite error class only; the full message (which may quote SQL) goes to
/// the log.
fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| {
        tracing::error!(operation = op, error = %e, "SQLite call failed");
        StoreError::Backend(format!("sqlite: {op}: {}", schema::describe(&e)))
    }
}

/// A stored row that does not parse means the file was edited by hand or
/// written by something else; say so without echoing the row. Even the log
/// gets only the error's position: serde's message can quote the offending
/// value, and a record holds a task token.
fn corrupt(op: &'static str, id: &str, e: serde_json::Error) -> StoreError {
    tracing::error!(
        operation = op,
        request_id = id,
        category = ?e.classify(),
        line = e.line(),
        column = e.column(),
        "stored JSON does not parse"
    );
    StoreError::Backend(format!(
        "sqlite: {op}: a stored record for {id} is unreadable"
    ))
}

fn to_json<T: serde::Serialize>(op: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| {
        tracing::error!(operation = op, error = %e, "could not serialise a record");
        StoreError::Backend(format!("sqlite: {op}: the record could not be serialised"))
    })
}

fn millis(at: Timestamp) -> i64 {
    at.timestamp_millis()
}

fn parse_request(op: &'static str, id: &str, json: &str) -> Result<AccessRequest, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt(op, id, e))
}

fn insert_event(
    tx: &rusqlite::Transaction<'_>,
    op: &'static str,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    let json = to_json(op, event)?;
    tx.prepare_cached(
        "INSERT INTO audit_events (event_id, request_id, at, event) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            event.event_id,
            event.request_id.as_str(),
            millis(event.at),
            json
        ])
    })
    .map_err(db(op))?;
    history::insert_digest(
        tx,
        op,
        &event.event_id,
        millis(event.at),
        event.request_id.as_str(),
        &json,
    )
}

fn create_in(
    conn: &mut Connection,
    request: &AccessRequest,
    event: &AuditEvent,
) -> Result<CreateOutcome, StoreError> {
    const OP: &str = "create";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db(OP))?;
    // The idempotency check comes first: a client retrying the very same
    // create (same id, same key) gets its request back, not AlreadyExists.
    if let Some(key) = &request.idempotency_key {
        let first: Option<(String, String)> = tx
            .query_row(
                "SELECT request_id, record FROM requests WHERE requester = ?1 AND idempotency_key = ?2",
                params![request.requester.principal.as_str(), key.as_str()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(db(OP))?;
        if let Some((id, json)) = first {
            let first = parse_request(OP, &id, &json)?;
            return if first.request_fingerprint == request.request_fingerprint {
                Ok(CreateOutcome::Existing(first))
            } else {
                Err(StoreError::IdempotencyConflict {
                    existing: first.request_id,
                })
            };
        }
    }
    let taken: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM requests WHERE request_id = ?1)",
            [request.request_id.as_str()],
            |row| row.get(0),
        )
        .map_err(db(OP))?;
    if taken {
        return Err(StoreError::AlreadyExists(request.request_id.clone()));
    }
    let record = to_json(OP, request)?;
    let version = version_column(request.version)?;
    tx.prepare_cached("INSERT INTO requests (request_id, requester, status, created_at, expires_at, idempotency_key, version, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
        .and_then(|mut stmt| stmt.execute(params![
            request.request_id.as_str(),
            request.requester.principal.as_str(),
            request.status.as_str(),
            millis(request.created_at),
            request.expires_at.map(millis),
            request.idempotency_key.as_ref().map(|k| k.as_str()),
            version,
            record,
        ]))
    .map_err(db(OP))?;
    insert_event(&tx, OP, &jit_core::trail::complete(None, request, event))?;
    tx.commit().map_err(db(OP))?;
    Ok(CreateOutcome::Created(request.clone()))
}

/// SQLite integers are signed; a version past `i64::MAX` cannot happen in
/// practice, but must not wrap into a value that matches some other version.
fn version_column(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version)
        .map_err(|_| StoreError::Backend("sqlite: the request version is out of range".into()))
}

fn transition_in(
    conn: &mut Connection,
    prior: &AccessRequest,
    next: &AccessRequest,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    const OP: &str = "transition";
    if prior.request_id != next.request_id {
        return Err(StoreError::Backend(
            "sqlite: transition: the next version names another request".into(),
        ));
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db(OP))?;
    let record = to_json(OP, next)?;
    let (next_version, prior_version) = (
        version_column(next.version)?,
        version_column(prior.version)?,
    );
    let changed = tx
        .prepare_cached(
            "UPDATE requests
                SET requester = ?1, status = ?2, expires_at = ?3, idempotency_key = ?4,
                    version = ?5, record = ?6
              WHERE request_id = ?7 AND status = ?8 AND version = ?9",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                next.requester.principal.as_str(),
                next.status.as_str(),
                next.expires_at.map(millis),
                next.idempotency_key.as_ref().map(|k| k.as_str()),
                next_version,
                record,
                prior.request_id.as_str(),
                prior.status.as_str(),
                prior_version,
            ])
        })
        .map_err(db(OP))?;
    if changed == 0 {
        let current: Option<String> = tx
            .query_row(
                "SELECT status FROM requests WHERE request_id = ?1",
                [prior.request_id.as_str()],
                |row| row.get(0),
            )
            .optional()
            .map_err(db(OP))?;
        return match current {
            None => Err(StoreError::NotFound(prior.request_id.clone())),
            Some(s) => {
                let status = s.parse::<Status>().map_err(|_| {
                    tracing::error!(request_id = %prior.request_id, status = %s, "stored status is unknown");
                    StoreError::Backend(format!(
                        "sqlite: {OP}: the stored status of {} is unreadable",
                        prior.request_id
                    ))
                })?;
                Err(StoreError::Conflict {
                    current: Some(status),
                })
            }
        };
    }
    insert_event(
        &tx,
        OP,
        &jit_core::trail::complete(Some(prior), next, event),
    )?;
    tx.commit().map_err(db(OP))
}

/// Which index a listing scans.
enum ListBy {
    Requester(String),
    Status(Status),
}

/// Keyset pagination: rows strictly older than the cursor's id, newest first.
/// One row more than asked tells whether another page exists, so the last
/// page carries no cursor (and no empty page follows a full one).
fn list_in(
    conn: &mut Connection,
    by: &ListBy,
    limit: u32,
    after: Option<&RequestId>,
) -> Result<Page<AccessRequest>, StoreError> {
    const OP: &str = "list";
    let (column, key) = match by {
        ListBy::Requester(p) => ("requester", p.as_str()),
        ListBy::Status(s) => ("status", s.as_str()),
    };
    let sql = match after {
        None => format!(
            "SELECT request_id, record FROM requests WHERE {column} = ?1
              ORDER BY request_id DESC LIMIT ?2"
        ),
        Some(_) => format!(
            "SELECT request_id, record FROM requests WHERE {column} = ?1 AND request_id < ?3
              ORDER BY request_id DESC LIMIT ?2"
        ),
    };
    let mut stmt = conn.prepare_cached(&sql).map_err(db(OP))?;
    let fetch = i64::from(limit) + 1;
    let map = |row: &rusqlite::Row<'_>| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?));
    let rows: Vec<(String, String)> = match after {
        None => stmt.query_map(params![key, fetch], map),
        Some(id) => stmt.query_map(params![key, fetch, id.as_str()], map),
    }
    .and_then(|rows| rows.collect())
    .map_err(db(OP))?;

    let mut items = rows
        .iter()
        .map(|(id, json)| parse_request(OP, id, json))
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|r| cursor::encode(&r.request_id))
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

fn events_in(conn: &mut Connection, id: &RequestId) -> Result<Vec<AuditEvent>, StoreError> {
    const OP: &str = "audit_events";
    let mut stmt = conn
        .prepare_cached(
            "SELECT event FROM audit_events WHERE request_id = ?1 ORDER BY event_id ASC",
        )
        .map_err(db(OP))?;
    let rows: Vec<String> = stmt
        .query_map([id.as_str()], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .map_err(db(OP))?;
    rows.iter()
        .map(|json| serde_json::from_str(json).map_err(|e| corrupt(OP, id.as_str(), e)))
        .collect()
}

/// The page size a store call honours: at least one row (a zero limit would
/// make a cursor that never advances), at most the port's maximum.
fn clamp_limit(limit: u32) -> u32 {
    limit.clamp(1, PageRequest::MAX_LIMIT)
}

impl SqliteStore {
    async fn list(
        &self,
        by: ListBy,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        let after = page.cursor.as_deref().map(cursor::decode).transpose()?;
        let limit = clamp_limit(page.limit);
        self.call("list", move |conn| {
            list_in(conn, &by, limit, after.as_ref())
        })
        .await
    }
}

#[async_trait]
impl RequestStore for SqliteStore {
    async fn create(
        &self,
        request: &AccessRequest,
        event: &AuditEvent,
    ) -> Result<CreateOutcome, StoreError> {
        let (request, event) = (request.clone(), event.clone());
        self.call("create", move |conn| create_in(conn, &request, &event))
            .await
    }

    async fn get(&self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        const OP: &str = "get";
        let id = id.clone();
        self.call(OP, move |conn| {
            let json: Option<String> = conn
                .prepare_cached("SELECT record FROM requests WHERE request_id = ?1")
                .and_then(|mut stmt| stmt.query_row([id.as_str()], |row| row.get(0)).optional())
                .map_err(db(OP))?;
            json.map(|j| parse_request(OP, id.as_str(), &j)).transpose()
        })
        .await
    }

    async fn transition(
        &self,
        prior: &AccessRequest,
        next: &AccessRequest,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (prior, next, event) = (prior.clone(), next.clone(), event.clone());
        self.call("transition", move |conn| {
            transition_in(conn, &prior, &next, &event)
        })
        .await
    }

    async fn list_by_requester(
        &self,
        requester: &Principal,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        self.list(ListBy::Requester(requester.to_string()), page)
            .await
    }

    async fn list_by_status(
        &self,
        status: Status,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        self.list(ListBy::Status(status), page).await
    }

    async fn audit_events(&self, id: &RequestId) -> Result<Vec<AuditEvent>, StoreError> {
        let id = id.clone();
        self.call("audit_events", move |conn| events_in(conn, &id))
            .await
    }

    async fn list_all(
        &self,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        let after = page.cursor.as_deref().map(cursor::decode).transpose()?;
        let limit = clamp_limit(page.limit);
        let filter = filter.clone();
        self.call("list_all", move |conn| {
            history::list_all_in(conn, &filter, limit, after.as_ref())
        })
        .await
    }

    async fn event_digests_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<jit_core::analytics::EventDigest>, StoreError> {
        let (limit, cursor) = (page.limit, page.cursor.clone());
        self.call("event_digests_between", move |conn| {
            history::digests_between_in(conn, from, to, limit, cursor.as_deref())
        })
        .await
    }

    async fn audit_events_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError> {
        let (limit, cursor) = (page.limit, page.cursor.clone());
        self.call("audit_events_between", move |conn| {
            history::events_between_in(conn, from, to, limit, cursor.as_deref())
        })
        .await
    }

    /// Forgets expired keys, then inserts this one unless it is there: one
    /// `IMMEDIATE` transaction, so racing callers see one insert.
    async fn first_use(
        &self,
        key: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        const OP: &str = "first_use";
        let key = key.to_string();
        self.call(OP, move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(OP))?;
            tx.execute(
                "DELETE FROM seen_keys WHERE expires_at <= ?1",
                [millis(now)],
            )
            .map_err(db(OP))?;
            let inserted = tx
                .execute(
                    "INSERT INTO seen_keys (key, expires_at) VALUES (?1, ?2)
                     ON CONFLICT (key) DO NOTHING",
                    params![key, millis(expires_at)],
                )
                .map_err(db(OP))?;
            tx.commit().map_err(db(OP))?;
            Ok(inserted == 1)
        })
        .await
    }

    /// Idempotent per event id: a retried append (a Lambda or engine step
    /// run twice) leaves one copy, as DynamoDB's put of the same key would.
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        const OP: &str = "append_audit";
        let event = event.clone();
        self.call(OP, move |conn| {
            let record = to_json(OP, &event)?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(OP))?;
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO audit_events (event_id, request_id, at, event) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (event_id) DO NOTHING",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        event.event_id,
                        event.request_id.as_str(),
                        millis(event.at),
                        record
                    ])
                })
                .map_err(db(OP))?;
            if inserted == 1 {
                history::insert_digest(
                    &tx,
                    OP,
                    &event.event_id,
                    millis(event.at),
                    event.request_id.as_str(),
                    &record,
                )?;
            }
            tx.commit().map_err(db(OP))
        })
        .await
    }
}
