//! The reads behind the admin listing and analytics: every request by
//! filter, and audit events by time (index `audit_events_by_time`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jit_core::RequestId;
use jit_core::analytics::EventDigest;
use jit_core::lifecycle::Status;
use jit_core::ports::{MAX_EVENT_PAGE, Page, RequestFilter, StoreError};
use jit_core::request::{AccessRequest, AuditAction, AuditEvent, Timestamp};
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

/// Stores an event's digest beside it (same transaction as the event): the
/// columns are extracted from the event's JSON by SQLite itself, exactly as
/// migration 5 filled them for older events.
pub(crate) fn insert_digest(
    conn: &Connection,
    op: &'static str,
    event_id: &str,
    at_ms: i64,
    request_id: &str,
    json: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO audit_digests
         SELECT ?1, ?2, ?3,
                json_extract(?4, '$.actor'), json_extract(?4, '$.action'),
                json_extract(?4, '$.to'),
                -- jit_core::analytics::BREAK_GLASS_CODE on a break-glass
                -- request's created event, as EventDigest::of says.
                coalesce(json_extract(?4, '$.code'),
                         CASE WHEN json_extract(?4, '$.action') = 'created'
                               AND json_extract(?4, '$.snapshot.breakGlass') IS NOT NULL
                              THEN 'break-glass' END),
                coalesce(json_extract(?4, '$.snapshot.entitlement'), json_extract(?4, '$.entitlement')),
                json_extract(?4, '$.snapshot.requester.principal'),
                json_extract(?4, '$.snapshot.requester.groups'),
                json_extract(?4, '$.snapshot.createdAt'), json_extract(?4, '$.snapshot.duration'),
                json_extract(?4, '$.changes.grantedAt'), json_extract(?4, '$.changes.expiresAt')
         ON CONFLICT DO NOTHING",
    )
    .and_then(|mut stmt| stmt.execute(rusqlite::params![at_ms, event_id, request_id, json]))
    .map_err(db(op))?;
    Ok(())
}

fn parse_ts(s: Option<String>) -> Option<Timestamp> {
    s.and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
        .map(|d| d.with_timezone(&chrono::Utc))
}

fn parse_action(s: &str) -> Option<AuditAction> {
    // The action's own serde names: one list, so a new action is never
    // "unreadable" here.
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

/// Digests of `[from, to)`, oldest first, paged as the events are.
pub(crate) fn digests_between_in(
    conn: &mut Connection,
    from: Timestamp,
    to: Timestamp,
    limit: u32,
    cursor: Option<&str>,
) -> Result<Page<EventDigest>, StoreError> {
    const OP: &str = "event_digests_between";
    let limit = limit.clamp(1, MAX_EVENT_PAGE);
    let after = cursor.map(decode_event_cursor).transpose()?;
    let (lo, id) = match &after {
        None => (millis(from), String::new()),
        Some((at, id)) => ((*at).max(millis(from)), id.clone()),
    };
    let strict = after.is_some();
    let mut stmt = conn
        .prepare_cached(
            "SELECT at, event_id, request_id, actor, action, to_status, code, entitlement,
                    requester, groups, created_at, duration, granted_at, expires_at,
                    -- usage events are few (one per ended grant): their record
                    -- is read from the event itself, not kept in a digest column.
                    CASE WHEN action = 'usage' THEN
                      (SELECT json_extract(e.event, '$.usage') FROM audit_events e
                        WHERE e.event_id = audit_digests.event_id)
                    END
               FROM audit_digests
              WHERE at >= ?1 AND at < ?2 AND (?5 = 0 OR at > ?1 OR event_id > ?3)
              ORDER BY at, event_id LIMIT ?4",
        )
        .map_err(db(OP))?;
    let mut bad = None;
    let mut items: Vec<(i64, EventDigest)> = stmt
        .query_map(
            rusqlite::params![lo, millis(to), id, i64::from(limit) + 1, i64::from(strict)],
            |row| {
                let at_ms: i64 = row.get(0)?;
                let action: String = row.get(4)?;
                let to_status: Option<String> = row.get(5)?;
                let groups: Option<String> = row.get(9)?;
                let usage: Option<String> = row.get(14)?;
                Ok((
                    at_ms,
                    action,
                    to_status,
                    groups,
                    EventDigest {
                        event_id: row.get(1)?,
                        request_id: row.get(2)?,
                        at: chrono::DateTime::from_timestamp_millis(at_ms).unwrap_or_default(),
                        actor: row.get(3)?,
                        action: AuditAction::Note,
                        to: None,
                        code: row.get(6)?,
                        entitlement: row.get(7)?,
                        requester: row.get(8)?,
                        groups: vec![],
                        created_at: parse_ts(row.get(10)?),
                        duration_secs: row
                            .get::<_, Option<i64>>(11)?
                            .and_then(|d| u32::try_from(d).ok()),
                        granted_at: parse_ts(row.get(12)?),
                        expires_at: parse_ts(row.get(13)?),
                        usage: usage.and_then(|u| serde_json::from_str(&u).ok()),
                    },
                ))
            },
        )
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(db(OP))?
        .into_iter()
        .filter_map(|(at_ms, action, to_status, groups, mut d)| {
            match parse_action(&action) {
                Some(a) => d.action = a,
                None => {
                    bad = Some(d.event_id.clone());
                    return None;
                }
            }
            d.to = to_status.and_then(|s| s.parse::<Status>().ok());
            if let Some(g) = groups {
                d.groups = serde_json::from_str(&g).unwrap_or_default();
            }
            Some((at_ms, d))
        })
        .collect();
    if let Some(id) = bad {
        tracing::error!(operation = OP, event_id = %id, "stored audit action is unknown");
        return Err(StoreError::Backend(format!(
            "sqlite: {OP}: the stored event {id} is unreadable"
        )));
    }
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items
            .last()
            .map(|(at, d)| URL_SAFE_NO_PAD.encode(format!("{at}:{}", d.event_id)))
    } else {
        None
    };
    Ok(Page {
        items: items.into_iter().map(|(_, d)| d).collect(),
        next_cursor,
    })
}
