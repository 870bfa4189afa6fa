//! The reads behind the admin listing and analytics: every request by
//! filter, and audit events by time (index `audit_events_by_time`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jit_core::RequestId;
use jit_core::ports::{MAX_EVENT_PAGE, Page, RequestFilter, StoreError};
use jit_core::request::{AccessRequest, AuditEvent, Timestamp};
use jit_core::trail::{id_bounds, last_id_before};
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

use crate::{corrupt, cursor, db, millis, parse_request};

/// Newest first, keyset-paged on the request id as the other listings.
pub(crate) fn list_all_in(
    conn: &mut Connection,
    filter: &RequestFilter,
    limit: u32,
    after: Option<&RequestId>,
) -> Result<Page<AccessRequest>, StoreError> {
    const OP: &str = "list_all";
    let mut clauses: Vec<&str> = Vec::new();
    let mut args: Vec<SqlValue> = Vec::new();
    if let Some(s) = filter.status {
        clauses.push("status = ?");
        args.push(SqlValue::Text(s.as_str().to_string()));
    }
    if let Some(p) = &filter.requester {
        clauses.push("requester = ?");
        args.push(SqlValue::Text(p.as_str().to_string()));
    }
    // Ids are ULIDs of the creation time: their bounds narrow the index
    // range, `created_at` is the exact test.
    if let Some(f) = filter.from {
        clauses.push("request_id >= ? AND created_at >= ?");
        args.push(SqlValue::Text(id_bounds(f).0));
        args.push(SqlValue::Integer(millis(f)));
    }
    if let Some(t) = filter.to {
        clauses.push("request_id <= ? AND created_at < ?");
        args.push(SqlValue::Text(last_id_before(t)));
        args.push(SqlValue::Integer(millis(t)));
    }
    if let Some(e) = &filter.entitlement {
        clauses.push("json_extract(record, '$.entitlement') = ?");
        args.push(SqlValue::Text(e.clone()));
    }
    if let Some(id) = after {
        clauses.push("request_id < ?");
        args.push(SqlValue::Text(id.to_string()));
    }
    let wh = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    args.push(SqlValue::Integer(i64::from(limit) + 1));
    let sql =
        format!("SELECT request_id, record FROM requests {wh} ORDER BY request_id DESC LIMIT ?");
    let mut stmt = conn.prepare_cached(&sql).map_err(db(OP))?;
    let rows: Vec<(String, String)> = stmt
        .query_map(rusqlite::params_from_iter(args), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
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

/// An event cursor: base64url of `<at millis>:<event id>` of the last event.
fn encode_event_cursor(e: &AuditEvent) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", millis(e.at), e.event_id))
}

fn decode_event_cursor(c: &str) -> Result<(i64, String), StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| StoreError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)?;
    let (at, id) = text.split_once(':').ok_or(StoreError::InvalidCursor)?;
    let at: i64 = at.parse().map_err(|_| StoreError::InvalidCursor)?;
    if id.is_empty() {
        return Err(StoreError::InvalidCursor);
    }
    Ok((at, id.to_string()))
}

/// Oldest first by (`at`, event id), on the `audit_events_by_time` index.
pub(crate) fn events_between_in(
    conn: &mut Connection,
    from: Timestamp,
    to: Timestamp,
    limit: u32,
    cursor: Option<&str>,
) -> Result<Page<AuditEvent>, StoreError> {
    const OP: &str = "audit_events_between";
    let limit = limit.clamp(1, MAX_EVENT_PAGE);
    let after = cursor.map(decode_event_cursor).transpose()?;
    let fetch = i64::from(limit) + 1;
    let map = |row: &rusqlite::Row<'_>| row.get::<_, String>(0);
    let rows: Vec<String> = match &after {
        None => conn
            .prepare_cached(
                "SELECT event FROM audit_events WHERE at >= ?1 AND at < ?2
                  ORDER BY at, event_id LIMIT ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_map(rusqlite::params![millis(from), millis(to), fetch], map)
                    .and_then(|rows| rows.collect())
            }),
        Some((at, id)) => conn
            .prepare_cached(
                // The cursor's time bounds the index range; the row-value
                // form `(at, event_id) > (?, ?)` made SQLite scan the range
                // from its start on every page.
                "SELECT event FROM audit_events WHERE at >= ?4 AND at < ?2
                   AND (at > ?4 OR event_id > ?5)
                  ORDER BY at, event_id LIMIT ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_map(
                    rusqlite::params![millis(from), millis(to), fetch, (*at).max(millis(from)), id],
                    map,
                )
                .and_then(|rows| rows.collect())
            }),
    }
    .map_err(db(OP))?;
    let mut items = rows
        .iter()
        .map(|json| serde_json::from_str(json).map_err(|e| corrupt(OP, "an event", e)))
        .collect::<Result<Vec<AuditEvent>, _>>()?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(encode_event_cursor)
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}
