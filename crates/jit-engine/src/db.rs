//! The engine's SQLite tables. Everything an execution needs to continue
//! after a crash lives here; nothing is kept only in memory.
//!
//! - `definitions`: each distinct (substituted) definition text, so an
//!   execution finishes on the definition it started with.
//! - `executions`: one row per execution: status, current phase (state and
//!   data, as JSON), `wake_ms` (when it is runnable again; NULL while it
//!   waits for something external), `version` (bumped by every write).
//! - `tokens`: task tokens with their status, answer and deadlines.
//! - `events`: the history, keyed by (execution, event id).
//!
//! Writes are grouped: each step is a savepoint inside one open transaction
//! (a *batch*, numbered in order) that [`EngineDb::flush`] commits. The
//! engine flushes a batch when it is 10 ms old or holds 256 steps, when no
//! worker is stepping while some wait for durability, and before API calls
//! return. Whoever must not go on before its writes are durable (a task
//! about to be invoked) notes the batch its writes went into
//! ([`EngineDb::pending_batch`]) and waits until that batch has settled
//! ([`EngineDb::settled`]): many invocations share one commit. WAL with
//! `synchronous=NORMAL`: a commit survives a process crash at once and a
//! power loss from the next checkpoint on — the trade a developer tool
//! wants for tens of thousands of transitions a second. A file database is
//! opened with `locking_mode=EXCLUSIVE`: one process owns it.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::error::EngineError;
use crate::history::{HistoryEvent, NewEvent};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS definitions (
    id INTEGER PRIMARY KEY,
    machine TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    machine TEXT NOT NULL,
    definition_id INTEGER NOT NULL REFERENCES definitions(id),
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    cause TEXT,
    start_ms INTEGER NOT NULL,
    stop_ms INTEGER,
    deadline_ms INTEGER,
    wake_ms INTEGER,
    invoking INTEGER NOT NULL DEFAULT 0,
    phase TEXT NOT NULL,
    version INTEGER NOT NULL,
    next_event INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_wake ON executions(wake_ms) WHERE wake_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS executions_invoking ON executions(invoking) WHERE invoking = 1;
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY,
    execution_id INTEGER NOT NULL,
    status INTEGER NOT NULL,
    answer TEXT,
    timeout_ms INTEGER,
    heartbeat_s INTEGER,
    heartbeat_ms INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tokens_execution ON tokens(execution_id);
CREATE TABLE IF NOT EXISTS events (
    execution_id INTEGER NOT NULL,
    id INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    type TEXT NOT NULL,
    details TEXT NOT NULL,
    PRIMARY KEY (execution_id, id)
) WITHOUT ROWID;
";

/// Token status values.
pub(crate) mod token_status {
    pub const PENDING: i64 = 0;
    pub const SUCCEEDED: i64 = 1;
    pub const FAILED: i64 = 2;
    pub const CLOSED: i64 = 3;
}

/// Where the engine keeps its state: a file (`<data-dir>/engine.db`) or
/// memory (tests, `jit-local asl run`).
pub struct EngineDb {
    pub(crate) conn: Connection,
    /// The open group-commit transaction, if any.
    batch: Option<Batch>,
    /// The number the next batch gets (batches are numbered from 1).
    next_batch: u64,
    /// Every batch up to this number has settled (committed or lost); told
    /// to waiters through the channel.
    settled: watch::Sender<u64>,
    /// Batches whose commit failed (rolled back): rare, so kept whole.
    lost: Vec<u64>,
}

struct Batch {
    seq: u64,
    opened: Instant,
    writes: usize,
}

/// A group commit is flushed once it is this old or holds this many writes.
pub(crate) const BATCH_AGE: Duration = Duration::from_millis(10);
const BATCH_WRITES: usize = 256;

impl std::fmt::Debug for EngineDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineDb").finish_non_exhaustive()
    }
}

impl EngineDb {
    /// Opens or creates the database file (and its parent directories).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, EngineError> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| EngineError::Db(format!("creating {}: {e}", parent.display())))?;
        }
        let conn = Connection::open(path)?;
        // One process owns the engine's file: holding the lock for the
        // connection's life spares a lock round trip per transaction, lets
        // WAL keep its index in memory, and makes a second process fail
        // fast ("database is locked") instead of racing this one.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
        Self::prepare(conn)
    }

    /// A private database that vanishes with the engine.
    pub fn in_memory() -> Result<Self, EngineError> {
        Self::prepare(Connection::open_in_memory()?)
    }

    fn prepare(conn: Connection) -> Result<Self, EngineError> {
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        conn.pragma_update(None, "cache_size", -16_384)?;
        conn.set_prepared_statement_cache_capacity(64);
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(EngineError::Db(format!(
                "the engine database has schema version {version}; this build knows {SCHEMA_VERSION}"
            )));
        }
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(EngineDb {
            conn,
            batch: None,
            next_batch: 1,
            settled: watch::Sender::new(0),
            lost: Vec::new(),
        })
    }

    /// Runs `f` as one atomic write (a savepoint) inside the open group
    /// transaction, opening one if needed. Nothing is durable until
    /// [`EngineDb::flush`].
    fn write<R>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<R, EngineError>,
    ) -> Result<R, EngineError> {
        if self.batch.is_none() {
            self.conn.prepare_cached("BEGIN")?.execute([])?;
            self.batch = Some(Batch {
                seq: self.next_batch,
                opened: Instant::now(),
                writes: 0,
            });
            self.next_batch += 1;
        }
        self.conn.prepare_cached("SAVEPOINT step")?.execute([])?;
        match f(&self.conn) {
            Ok(r) => {
                self.conn.prepare_cached("RELEASE step")?.execute([])?;
                if let Some(b) = self.batch.as_mut() {
                    b.writes += 1;
                }
                Ok(r)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK TO step; RELEASE step");
                Err(e)
            }
        }
    }

    /// Commits the group transaction: everything written so far is durable.
    /// On failure the batch is rolled back and recorded as lost, so whoever
    /// waits for it learns its writes are gone.
    pub(crate) fn flush(&mut self) -> Result<(), EngineError> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        let result = self
            .conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]));
        if result.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.lost.push(batch.seq);
        }
        self.settled.send_replace(batch.seq);
        result?;
        Ok(())
    }

    /// The batch holding writes not yet committed, if any: what a caller
    /// that needs them durable waits for.
    pub(crate) fn pending_batch(&self) -> Option<u64> {
        self.batch.as_ref().map(|b| b.seq)
    }

    /// Every batch up to the returned number has settled.
    pub(crate) fn settled(&self) -> u64 {
        *self.settled.borrow()
    }

    /// Told each time a batch settles.
    pub(crate) fn subscribe_settled(&self) -> watch::Receiver<u64> {
        self.settled.subscribe()
    }

    /// Whether a settled batch was committed (false: rolled back).
    pub(crate) fn committed(&self, seq: u64) -> bool {
        seq <= self.settled() && !self.lost.contains(&seq)
    }

    /// Whether a group transaction is open.
    pub(crate) fn batch_open(&self) -> bool {
        self.batch.is_some()
    }

    /// Whether the open group transaction should be flushed now.
    pub(crate) fn flush_due(&self) -> bool {
        self.batch
            .as_ref()
            .is_some_and(|b| b.writes >= BATCH_WRITES || b.opened.elapsed() >= BATCH_AGE)
    }
}

impl Drop for EngineDb {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "engine database: last group commit failed");
        }
    }
}

/// An execution row as the interpreter needs it.
#[derive(Debug, Clone)]
pub(crate) struct ExecRow {
    pub id: i64,
    pub name: String,
    pub machine: String,
    pub definition_id: i64,
    pub status: String,
    pub input: String,
    pub start_ms: i64,
    pub deadline_ms: Option<i64>,
    pub wake_ms: Option<i64>,
    pub invoking: bool,
    pub phase: String,
    pub version: i64,
    pub next_event: u64,
}

/// What a step wrote: the new execution row fields, events, token changes.
pub(crate) struct Commit<'a> {
    pub id: i64,
    pub expected_version: i64,
    pub status: &'a str,
    pub output: Option<&'a str>,
    pub error: Option<&'a str>,
    pub cause: Option<&'a str>,
    pub stop_ms: Option<i64>,
    pub wake_ms: Option<i64>,
    pub invoking: bool,
    pub phase: &'a str,
    pub first_event: u64,
    pub events: &'a [NewEvent],
    pub new_tokens: &'a [NewToken],
    pub closed_tokens: &'a [String],
}

#[derive(Debug, Clone)]
pub(crate) struct NewToken {
    pub token: String,
    pub timeout_ms: Option<i64>,
    pub heartbeat_s: Option<i64>,
    pub heartbeat_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct TokenRow {
    pub execution_id: i64,
    pub status: i64,
    pub answer: Option<String>,
    pub timeout_ms: Option<i64>,
    pub heartbeat_s: Option<i64>,
    pub heartbeat_ms: Option<i64>,
}

/// What `find_execution` returns.
pub(crate) struct Found {
    pub id: i64,
    pub machine: String,
    pub input: String,
    pub status: String,
    pub start_ms: i64,
}

/// The fields `describe_execution` reports.
pub(crate) struct DescribeRow {
    pub name: String,
    pub machine: String,
    pub status: String,
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub start_ms: i64,
    pub stop_ms: Option<i64>,
}

/// Rows per multi-row INSERT of history events.
const EVENT_BATCH: usize = 8;

fn insert_events(
    conn: &Connection,
    execution_id: i64,
    first_event: u64,
    events: &[NewEvent],
) -> Result<(), EngineError> {
    let mut id = first_event as i64;
    let mut chunks = events.chunks_exact(EVENT_BATCH);
    for chunk in &mut chunks {
        let mut stmt = conn.prepare_cached(BATCH_INSERT.as_str())?;
        let mut args: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(EVENT_BATCH * 5);
        let ids: Vec<i64> = (0..EVENT_BATCH as i64).map(|i| id + i).collect();
        for (e, eid) in chunk.iter().zip(&ids) {
            args.push(&execution_id);
            args.push(eid);
            args.push(&e.at_ms);
            args.push(&e.event_type);
            args.push(&e.details);
        }
        stmt.execute(args.as_slice())?;
        id += EVENT_BATCH as i64;
    }
    let mut one = conn.prepare_cached(
        "INSERT INTO events (execution_id, id, ts_ms, type, details) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for e in chunks.remainder() {
        one.execute(params![execution_id, id, e.at_ms, e.event_type, e.details])?;
        id += 1;
    }
    Ok(())
}

static BATCH_INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let rows: Vec<String> = (0..EVENT_BATCH)
        .map(|i| {
            let b = i * 5;
            format!(
                "(?{}, ?{}, ?{}, ?{}, ?{})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            )
        })
        .collect();
    format!(
        "INSERT INTO events (execution_id, id, ts_ms, type, details) VALUES {}",
        rows.join(", ")
    )
});

fn sha256_hex(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl EngineDb {
    pub(crate) fn put_definition(
        &mut self,
        machine: &str,
        source: &str,
    ) -> Result<i64, EngineError> {
        let sha = sha256_hex(&format!("{machine}\n{source}"));
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO definitions (machine, sha256, source) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![machine, sha, source])?;
        let id = self
            .conn
            .prepare_cached("SELECT id FROM definitions WHERE sha256 = ?1")?
            .query_row(params![sha], |r| r.get(0))?;
        Ok(id)
    }

    pub(crate) fn definition(&mut self, id: i64) -> Result<(String, String), EngineError> {
        Ok(self
            .conn
            .prepare_cached("SELECT machine, source FROM definitions WHERE id = ?1")?
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    /// The execution with this name, if any.
    pub(crate) fn find_execution(&mut self, name: &str) -> Result<Option<Found>, EngineError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, machine, input, status, start_ms FROM executions WHERE name = ?1",
            )?
            .query_row(params![name], |r| {
                Ok(Found {
                    id: r.get(0)?,
                    machine: r.get(1)?,
                    input: r.get(2)?,
                    status: r.get(3)?,
                    start_ms: r.get(4)?,
                })
            })
            .optional()?)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert_execution(
        &mut self,
        name: &str,
        machine: &str,
        definition_id: i64,
        input: &str,
        start_ms: i64,
        deadline_ms: Option<i64>,
        phase: &str,
        first_event: &NewEvent,
    ) -> Result<i64, EngineError> {
        self.write(|tx| {
        tx.prepare_cached(
            "INSERT INTO executions (name, machine, definition_id, status, input, start_ms,
                deadline_ms, wake_ms, invoking, phase, version, next_event)
             VALUES (?1, ?2, ?3, 'RUNNING', ?4, ?5, ?6, ?5, 0, ?7, 1, 2)",
        )?
        .execute(params![
            name,
            machine,
            definition_id,
            input,
            start_ms,
            deadline_ms,
            phase
        ])?;
        let id = tx.last_insert_rowid();
        tx.prepare_cached(
            "INSERT INTO events (execution_id, id, ts_ms, type, details) VALUES (?1, 1, ?2, ?3, ?4)",
        )?
        .execute(params![id, first_event.at_ms, first_event.event_type, first_event.details])?;
        Ok(id)
        })
    }

    pub(crate) fn load(&mut self, id: i64) -> Result<Option<ExecRow>, EngineError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, name, machine, definition_id, status, input, start_ms, deadline_ms,
                        wake_ms, invoking, phase, version, next_event
                 FROM executions WHERE id = ?1",
            )?
            .query_row(params![id], |r| {
                Ok(ExecRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    machine: r.get(2)?,
                    definition_id: r.get(3)?,
                    status: r.get(4)?,
                    input: r.get(5)?,
                    start_ms: r.get(6)?,
                    deadline_ms: r.get(7)?,
                    wake_ms: r.get(8)?,
                    invoking: r.get::<_, i64>(9)? != 0,
                    phase: r.get(10)?,
                    version: r.get(11)?,
                    next_event: r.get::<_, i64>(12)? as u64,
                })
            })
            .optional()?)
    }

    /// (version, status) of an execution.
    pub(crate) fn version(&mut self, id: i64) -> Result<Option<(i64, String)>, EngineError> {
        Ok(self
            .conn
            .prepare_cached("SELECT version, status FROM executions WHERE id = ?1")?
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Writes one step atomically. Returns false (and writes nothing) when
    /// the row's version is not the one read.
    pub(crate) fn commit(&mut self, c: &Commit<'_>) -> Result<bool, EngineError> {
        self.write(|tx| {
        let next_event = c.first_event + c.events.len() as u64;
        let changed = tx
            .prepare_cached(
                "UPDATE executions SET status = ?1, output = ?2, error = ?3, cause = ?4,
                    stop_ms = ?5, wake_ms = ?6, invoking = ?7, phase = ?8,
                    version = version + 1, next_event = ?9
                 WHERE id = ?10 AND version = ?11",
            )?
            .execute(params![
                c.status,
                c.output,
                c.error,
                c.cause,
                c.stop_ms,
                c.wake_ms,
                c.invoking as i64,
                c.phase,
                next_event as i64,
                c.id,
                c.expected_version
            ])?;
        if changed == 0 {
            return Ok(false);
        }
        insert_events(tx, c.id, c.first_event, c.events)?;
        if !c.new_tokens.is_empty() {
            let mut ins = tx.prepare_cached(
                "INSERT INTO tokens (token, execution_id, status, answer, timeout_ms, heartbeat_s, heartbeat_ms)
                 VALUES (?1, ?2, 0, NULL, ?3, ?4, ?5)",
            )?;
            for t in c.new_tokens {
                ins.execute(params![
                    t.token,
                    c.id,
                    t.timeout_ms,
                    t.heartbeat_s,
                    t.heartbeat_ms
                ])?;
            }
        }
        if !c.closed_tokens.is_empty() {
            let mut upd = tx.prepare_cached("UPDATE tokens SET status = ?2 WHERE token = ?1")?;
            for t in c.closed_tokens {
                upd.execute(params![t, token_status::CLOSED])?;
            }
        }
        Ok(true)
        })
    }

    /// Executions runnable at `now_ms`, earliest first.
    pub(crate) fn runnable(&mut self, now_ms: i64, limit: usize) -> Result<Vec<i64>, EngineError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM executions WHERE wake_ms IS NOT NULL AND wake_ms <= ?1
             ORDER BY wake_ms LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_ms, limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every execution runnable at `now_ms` or mid-invoke: the engine's
    /// backlog when it opens.
    pub(crate) fn runnable_or_invoking(&mut self, now_ms: i64) -> Result<Vec<i64>, EngineError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM executions WHERE status = 'RUNNING'
             AND ((wake_ms IS NOT NULL AND wake_ms <= ?1) OR invoking = 1)",
        )?;
        let rows = stmt.query_map(params![now_ms], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The earliest wake time after `now_ms`: what the driver sleeps until
    /// once everything runnable is being advanced (one index probe).
    pub(crate) fn next_future_wake(&mut self, now_ms: i64) -> Result<Option<i64>, EngineError> {
        Ok(self
            .conn
            .prepare_cached("SELECT MIN(wake_ms) FROM executions WHERE wake_ms > ?1")?
            .query_row(params![now_ms], |r| r.get(0))?)
    }

    /// The earliest timers: (execution id, wake time).
    pub(crate) fn next_wakes(&mut self, limit: usize) -> Result<Vec<(i64, i64)>, EngineError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, wake_ms FROM executions WHERE wake_ms IS NOT NULL ORDER BY wake_ms LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// After a restart: executions that were mid-invoke are runnable again
    /// (their task is invoked once more).
    pub(crate) fn rearm_interrupted_invocations(
        &mut self,
        now_ms: i64,
    ) -> Result<usize, EngineError> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE executions SET wake_ms = ?1, invoking = 0, version = version + 1
                 WHERE invoking = 1 AND status = 'RUNNING'",
            )?
            .execute(params![now_ms])?)
    }

    /// (running, waiting on an open task token, waiting on a timer only).
    /// A token with a timeout also sets a wake time: the token decides
    /// which count an execution is in.
    pub(crate) fn count_running(&mut self) -> Result<(u64, u64, u64), EngineError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(open_token), 0),
                        COALESCE(SUM(NOT open_token AND wake_ms IS NOT NULL), 0)
                 FROM (SELECT e.wake_ms AS wake_ms,
                              EXISTS (SELECT 1 FROM tokens t
                                      WHERE t.execution_id = e.id AND t.status = ?1) AS open_token
                       FROM executions e WHERE e.status = 'RUNNING')",
            )?
            .query_row(params![token_status::PENDING], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            })?)
    }

    /// Definition ids used by running executions.
    pub(crate) fn running_definitions(&mut self) -> Result<Vec<i64>, EngineError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT definition_id FROM executions WHERE status = 'RUNNING'",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn running_with_definition(
        &mut self,
        definition_id: i64,
    ) -> Result<Vec<i64>, EngineError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM executions WHERE status = 'RUNNING' AND definition_id = ?1",
        )?;
        let rows = stmt.query_map(params![definition_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn token(&mut self, token: &str) -> Result<Option<TokenRow>, EngineError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT execution_id, status, answer, timeout_ms, heartbeat_s, heartbeat_ms
                 FROM tokens WHERE token = ?1",
            )?
            .query_row(params![token], |r| {
                Ok(TokenRow {
                    execution_id: r.get(0)?,
                    status: r.get(1)?,
                    answer: r.get(2)?,
                    timeout_ms: r.get(3)?,
                    heartbeat_s: r.get(4)?,
                    heartbeat_ms: r.get(5)?,
                })
            })
            .optional()?)
    }

    /// Records an answer (or a heartbeat) on a pending token and, given
    /// `wake_ms`, makes its execution wake then (or earlier, if it already
    /// would). An execution mid-invoke is left alone: it reads the token as
    /// soon as its invocation returns.
    pub(crate) fn update_token(
        &mut self,
        token: &str,
        execution_id: i64,
        status: i64,
        answer: Option<&str>,
        heartbeat_ms: Option<i64>,
        wake_ms: Option<i64>,
    ) -> Result<(), EngineError> {
        self.write(|tx| {
        tx.prepare_cached(
            "UPDATE tokens SET status = ?2, answer = COALESCE(?3, answer),
                heartbeat_ms = COALESCE(?4, heartbeat_ms)
             WHERE token = ?1",
        )?
        .execute(params![token, status, answer, heartbeat_ms])?;
        if let Some(wake_ms) = wake_ms {
            tx.prepare_cached(
                "UPDATE executions SET wake_ms = CASE WHEN wake_ms IS NULL OR wake_ms > ?2 THEN ?2 ELSE wake_ms END,
                    version = version + 1
                 WHERE id = ?1 AND status = 'RUNNING' AND invoking = 0",
            )?
            .execute(params![execution_id, wake_ms])?;
        }
        Ok(())
        })
    }

    pub(crate) fn describe(&mut self, name: &str) -> Result<Option<DescribeRow>, EngineError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT name, machine, status, input, output, error, cause, start_ms, stop_ms
                 FROM executions WHERE name = ?1",
            )?
            .query_row(params![name], |r| {
                Ok(DescribeRow {
                    name: r.get(0)?,
                    machine: r.get(1)?,
                    status: r.get(2)?,
                    input: r.get(3)?,
                    output: r.get(4)?,
                    error: r.get(5)?,
                    cause: r.get(6)?,
                    start_ms: r.get(7)?,
                    stop_ms: r.get(8)?,
                })
            })
            .optional()?)
    }

    pub(crate) fn events(&mut self, execution_id: i64) -> Result<Vec<HistoryEvent>, EngineError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, ts_ms, type, details FROM events WHERE execution_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![execution_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, ts, ty, details) = row?;
            let details: Map<String, Value> = serde_json::from_str(&details)?;
            let details = crate::history::expand(details);
            out.push(HistoryEvent {
                id: id as u64,
                previous_event_id: (id - 1).max(0) as u64,
                timestamp: crate::time::from_ms(ts),
                event_type: ty,
                details,
            });
        }
        Ok(out)
    }

    /// The names of the states entered, in order, without loading the rest.
    pub(crate) fn states_entered(&mut self, execution_id: i64) -> Result<Vec<String>, EngineError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT json_extract(details, '$.stateEnteredEventDetails.name') FROM events
             WHERE execution_id = ?1 AND type LIKE '%StateEntered' ORDER BY id",
        )?;
        let rows = stmt.query_map(params![execution_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
