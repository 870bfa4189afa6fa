//! The audit trail as Athena reads it: JSON lines, one flat object per
//! event, in objects partitioned by the event's UTC day
//! (`audit/day=YYYY-MM-DD/…`). The `audit-export` Lambda writes them from
//! the audit table's stream; the Glue table in `template.yaml` and the SQL
//! in `athena/` read them; `crates/jit-local/tests/athena_sql.rs` runs that
//! SQL with DuckDB on lines this module made and checks it against
//! [`crate::analytics`].
//!
//! Flat, because the queries must run on Athena and on DuckDB alike: who and
//! what a request is comes from its `created` line (`entitlement`,
//! `requester`, `created_at_ms`, `duration_secs`), times are epoch
//! milliseconds (the two engines parse ISO text differently), and the
//! record's changes that figures need (`granted_at_ms`, `expires_at_ms`) are
//! columns of their own. The snapshot and the other changes stay in
//! DynamoDB.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::request::{AuditAction, AuditEvent, Timestamp};

/// One exported line. Keys are snake_case: Athena's column names are
/// lower case, and DuckDB's match them as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub event_id: String,
    pub request_id: String,
    pub at: String,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub source: String,
    pub code: Option<String>,
    pub entitlement: Option<String>,
    pub requester: Option<String>,
    /// The requester's groups, comma-separated (created lines).
    pub groups: Option<String>,
    pub created_at_ms: Option<i64>,
    pub duration_secs: Option<u32>,
    pub granted_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
}

fn ms(v: Option<&serde_json::Value>) -> Option<i64> {
    v.and_then(|v| v.as_str())
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.timestamp_millis())
}

fn text<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// The line of one event.
pub fn line(e: &AuditEvent) -> Line {
    let snap = e.snapshot.as_deref();
    let ch = e.changes.as_ref();
    Line {
        event_id: e.event_id.clone(),
        request_id: e.request_id.to_string(),
        at: e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        at_ms: e.at.timestamp_millis(),
        actor: e.actor.clone(),
        action: text(&e.action),
        from_status: e.from.map(|s| s.as_str().to_string()),
        to_status: e.to.map(|s| s.as_str().to_string()),
        source: e.source.clone(),
        code: e.code.clone(),
        entitlement: snap
            .map(|s| s.entitlement.clone())
            .or_else(|| e.entitlement.clone()),
        requester: snap.map(|s| s.requester.principal.to_string()).or_else(|| {
            (e.action == AuditAction::Rejected && e.code.as_deref() == Some("not_eligible"))
                .then(|| e.actor.clone())
        }),
        groups: snap.map(|s| s.requester.groups.join(",")),
        created_at_ms: snap.map(|s| s.created_at.timestamp_millis()),
        duration_secs: snap.map(|s| s.duration.secs()),
        granted_at_ms: ms(ch.and_then(|c| c.get("grantedAt"))),
        expires_at_ms: ms(ch.and_then(|c| c.get("expiresAt"))),
    }
}

/// Where exported objects go (S3 on AWS). Writing a key again replaces
/// the object: [`objects`] makes the same keys for the same events, so a
/// redelivered batch is harmless.
#[async_trait::async_trait]
pub trait ObjectSink: Send + Sync {
    async fn put(&self, key: &str, body: String) -> Result<(), String>;
}

/// The partition an event belongs to: `day=YYYY-MM-DD` (UTC).
pub fn partition(at: Timestamp) -> String {
    format!("day={}", at.format("%Y-%m-%d"))
}

/// A batch of events as S3 objects: `audit/day=…/<first id>-<last id>.json`
/// → JSON lines, oldest first. Keys depend only on the events, so a batch
/// delivered twice (a retried stream batch) writes the same objects again.
pub fn objects(events: &[AuditEvent]) -> BTreeMap<String, String> {
    let mut by_day: BTreeMap<String, Vec<&AuditEvent>> = BTreeMap::new();
    for e in events {
        by_day.entry(partition(e.at)).or_default().push(e);
    }
    let mut out = BTreeMap::new();
    for (day, mut evs) in by_day {
        evs.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        let (first, last) = (&evs[0].event_id, &evs[evs.len() - 1].event_id);
        let body: Vec<String> = evs
            .iter()
            .map(|e| serde_json::to_string(&line(e)).unwrap_or_default())
            .collect();
        out.insert(
            format!("audit/{day}/{first}-{last}.json"),
            body.join("\n") + "\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Status;
    use crate::request::Change;

    #[test]
    fn lines_are_flat_and_objects_split_by_utc_day() {
        let t0 = chrono::DateTime::from_timestamp(1_800_000_000 - 60, 0).unwrap();
        let r = crate::request::tests::sample(t0);
        let created = crate::trail::complete(
            None,
            &r,
            &AuditEvent::new(
                &r.request_id,
                t0,
                "alice".into(),
                AuditAction::Created,
                None,
                Some(Status::Requested),
                None,
                "api",
            ),
        );
        let change = |at| Change {
            actor: "system:workflow".into(),
            at,
            reason: None,
            source: "workflow",
        };
        let t1 = chrono::DateTime::from_timestamp(1_800_000_000 + 86_400, 0).unwrap();
        let (v, e1) = r.transition(Status::Validating, &change(t0)).unwrap();
        let (a, e2) = v.transition(Status::Approved, &change(t0)).unwrap();
        let (g, e3) = a.transition(Status::Granted, &change(t1)).unwrap();
        let e3 = crate::trail::complete(Some(&a), &g, &e3);
        let c = line(&created);
        assert_eq!(c.entitlement.as_deref(), Some("JIT-ElevatedAdminRole"));
        assert_eq!(c.requester.as_deref(), Some("alice@example.com"));
        assert_eq!(c.duration_secs, Some(3600));
        assert_eq!(c.action, "created");
        let l3 = line(&e3);
        assert_eq!(l3.to_status.as_deref(), Some("GRANTED"));
        assert_eq!(l3.granted_at_ms, Some(t1.timestamp_millis()));
        assert_eq!(l3.expires_at_ms, Some(t1.timestamp_millis() + 3_600_000));
        let objs = objects(&[e3.clone(), created.clone(), e1.clone(), e2.clone()]);
        let keys: Vec<&String> = objs.keys().collect();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(keys[0].starts_with("audit/day=2027-01-15/"), "{keys:?}");
        assert!(keys[1].starts_with("audit/day=2027-01-16/"), "{keys:?}");
        assert_eq!(objs[keys[0]].lines().count(), 3);
        let first: serde_json::Value =
            serde_json::from_str(objs[keys[0]].lines().next().unwrap()).unwrap();
        assert_eq!(first["action"], "created");
        assert_eq!(first["at_ms"], t0.timestamp_millis());
        // Delivered again, the same events make the same objects.
        assert_eq!(objects(&[created, e1, e2, e3]), objs);
    }
}
