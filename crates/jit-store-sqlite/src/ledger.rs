//! The grant ledger on SQLite: a `grant_ledger` table beside the requests.
//! An outcome and the entries it closes are written in one `IMMEDIATE`
//! transaction, so the closing rule (`jit_core::ledger::undoes`) sees the
//! resource's entries as they are.

use async_trait::async_trait;
use jit_core::ledger::{GrantLedger, LedgerEntry, apply_outcome};
use jit_core::ports::StoreError;
use rusqlite::{Connection, TransactionBehavior, params};

use crate::{SqliteStore, db, millis, to_json};

fn parse(op: &'static str, open: bool, json: &str) -> Result<LedgerEntry, StoreError> {
    let mut e: LedgerEntry = serde_json::from_str(json).map_err(|e| {
        tracing::error!(
            operation = op,
            line = e.line(),
            column = e.column(),
            "stored ledger entry does not parse"
        );
        StoreError::Backend(format!("sqlite: {op}: a stored ledger entry is unreadable"))
    })?;
    e.open = open;
    Ok(e)
}

fn select(
    conn: &Connection,
    op: &'static str,
    sql: &str,
    arg: Option<&str>,
) -> Result<Vec<LedgerEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db(op))?;
    let map = |row: &rusqlite::Row<'_>| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?));
    let rows: Vec<(i64, String)> = match arg {
        Some(a) => stmt.query_map([a], map),
        None => stmt.query_map([], map),
    }
    .and_then(|rows| rows.collect())
    .map_err(db(op))?;
    rows.iter()
        .map(|(open, json)| parse(op, *open != 0, json))
        .collect()
}

const BY_RESOURCE: &str =
    "SELECT open, entry FROM grant_ledger WHERE resource = ?1 ORDER BY entry_id ASC";

fn write(
    tx: &rusqlite::Transaction<'_>,
    op: &'static str,
    e: &LedgerEntry,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO grant_ledger (entry_id, resource, open, at, entry) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (entry_id) DO UPDATE SET open = excluded.open, entry = excluded.entry",
        params![
            e.entry_id,
            e.resource(),
            e.open as i64,
            millis(e.at),
            to_json(op, e)?
        ],
    )
    .map_err(db(op))?;
    Ok(())
}

#[async_trait]
impl GrantLedger for SqliteStore {
    async fn record_intent(&self, entry: &LedgerEntry) -> Result<(), StoreError> {
        const OP: &str = "ledger_intent";
        let mut entry = entry.clone();
        entry.open = true;
        self.call(OP, move |conn| {
            conn.execute(
                "INSERT INTO grant_ledger (entry_id, resource, open, at, entry) VALUES (?1, ?2, 1, ?3, ?4)
                 ON CONFLICT (entry_id) DO NOTHING",
                params![entry.entry_id, entry.resource(), millis(entry.at), to_json(OP, &entry)?],
            )
            .map_err(db(OP))?;
            Ok(())
        })
        .await
    }

    async fn record_outcome(&self, entry: &LedgerEntry) -> Result<(), StoreError> {
        const OP: &str = "ledger_outcome";
        let done = entry.clone();
        self.call(OP, move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(OP))?;
            let mut entries = select(&tx, OP, BY_RESOURCE, Some(&done.resource()))?;
            if !entries.iter().any(|e| e.entry_id == done.entry_id) {
                // The intent was never written: keep the outcome, open.
                let mut first = done.clone();
                first.open = true;
                entries.push(first);
            }
            let before: Vec<bool> = entries.iter().map(|e| e.open).collect();
            apply_outcome(&mut entries, &done);
            for (e, was_open) in entries.iter().zip(before) {
                if e.entry_id == done.entry_id || e.open != was_open {
                    write(&tx, OP, e)?;
                }
            }
            tx.commit().map_err(db(OP))
        })
        .await
    }

    async fn open_entries(&self) -> Result<Vec<LedgerEntry>, StoreError> {
        const OP: &str = "ledger_open";
        self.call(OP, |conn| {
            select(
                conn,
                OP,
                "SELECT open, entry FROM grant_ledger WHERE open = 1 ORDER BY entry_id ASC",
                None,
            )
        })
        .await
    }

    async fn entries_for(&self, resource: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        const OP: &str = "ledger_entries";
        let resource = resource.to_string();
        self.call(OP, move |conn| {
            select(conn, OP, BY_RESOURCE, Some(&resource))
        })
        .await
    }
}
