//! The audit trail as the system of record for history.
//!
//! DynamoDB TTL deletes a request's item some time after its grant ends; the
//! audit table keeps its events for ever. So every write a store makes
//! records enough to rebuild the request from its events alone: the
//! `created` event carries the record as first stored (`snapshot`), and every
//! later write that changed the record carries the fields it changed
//! (`changes`). [`replay`] folds them back into the record.
//!
//! Stores call [`complete`] on every event they write with a record (create
//! and guarded transitions), so no use case has to remember to; the shared
//! store suite checks both adapters do.

use serde_json::{Map, Value};

use crate::request::{AccessRequest, AuditAction, AuditEvent};

/// Record fields never copied into the trail: the workflow's task token is
/// a bearer capability and must never reach an audit event.
const NEVER_RECORDED: &[&str] = &["taskToken"];

/// The event as a store must write it with `next`: a `created` event (no
/// `prior`) gets the snapshot, any other the fields `prior → next` changed.
/// An event that already carries them is returned unchanged.
pub fn complete(
    prior: Option<&AccessRequest>,
    next: &AccessRequest,
    event: &AuditEvent,
) -> AuditEvent {
    let mut event = event.clone();
    event.flag_for(next);
    match prior {
        None => {
            if event.snapshot.is_none() && event.action == AuditAction::Created {
                let mut snap = next.clone();
                snap.task_token = None;
                event.snapshot = Some(Box::new(snap));
            }
        }
        Some(prior) => {
            if event.changes.is_none() {
                let changed = changes(prior, next);
                if !changed.is_empty() {
                    event.changes = Some(changed);
                }
            }
        }
    }
    event
}

/// The fields of `next`'s JSON that differ from `prior`'s, with their new
/// values; a field `next` no longer has is `null`.
pub fn changes(prior: &AccessRequest, next: &AccessRequest) -> Map<String, Value> {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::to_value(prior), serde_json::to_value(next))
    else {
        return Map::new();
    };
    let mut out = Map::new();
    for (k, v) in &b {
        if NEVER_RECORDED.contains(&k.as_str()) {
            continue;
        }
        if a.get(k) != Some(v) {
            out.insert(k.clone(), v.clone());
        }
    }
    for k in a.keys() {
        if !b.contains_key(k) && !NEVER_RECORDED.contains(&k.as_str()) {
            out.insert(k.clone(), Value::Null);
        }
    }
    out
}

/// The request as its trail tells it: the `created` snapshot with every
/// later event's changes applied in order (events sorted by id, as stores
/// return them). `None` when the trail has no snapshot (a rejected attempt,
/// or events written before snapshots were recorded).
pub fn replay(events: &[AuditEvent]) -> Option<AccessRequest> {
    let start = events.iter().position(|e| e.snapshot.is_some())?;
    let mut record = serde_json::to_value(events[start].snapshot.as_deref()?).ok()?;
    let obj = record.as_object_mut()?;
    for e in &events[start + 1..] {
        if let Some(ch) = &e.changes {
            for (k, v) in ch {
                if v.is_null() {
                    obj.remove(k);
                } else {
                    obj.insert(k.clone(), v.clone());
                }
            }
        }
    }
    serde_json::from_value(record).ok()
}

/// The smallest and the largest id [`crate::RequestId::generate`] (and so
/// an audit event's id) can take at `at`'s millisecond: key bounds for
/// reading ids by time.
pub fn id_bounds(at: crate::request::Timestamp) -> (String, String) {
    let ms = at.timestamp_millis().max(0) as u64;
    (
        ulid::Ulid::from_parts(ms, 0).to_string(),
        ulid::Ulid::from_parts(ms, (1u128 << 80) - 1).to_string(),
    )
}

/// The largest id made strictly before `to`: the upper key bound of a
/// range that excludes `to`.
pub fn last_id_before(to: crate::request::Timestamp) -> String {
    id_bounds(to - chrono::Duration::milliseconds(1)).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Status;
    use crate::request::{Change, TaskToken};

    fn change(at: crate::request::Timestamp) -> Change {
        Change {
            actor: "system:test".into(),
            at,
            reason: Some("why".into()),
            source: "test",
        }
    }

    #[test]
    fn replaying_the_trail_gives_the_record_without_its_task_token() {
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let r = crate::request::tests::sample(t0);
        let created = AuditEvent::new(
            &r.request_id,
            t0,
            "alice".into(),
            AuditAction::Created,
            None,
            Some(Status::Requested),
            None,
            "test",
        );
        let mut trail = vec![complete(None, &r, &created)];
        let mut cur = r.clone();
        for to in [Status::Validating, Status::ApprovalPending] {
            let (mut next, ev) = cur.transition(to, &change(t0)).unwrap();
            if to == Status::ApprovalPending {
                next.task_token = Some(TaskToken::parse("secret-token").unwrap());
            }
            trail.push(complete(Some(&cur), &next, &ev));
            cur = next;
        }
        let (next, ev) = cur.transition(Status::Approved, &change(t0)).unwrap();
        trail.push(complete(Some(&cur), &next, &ev));
        cur = next;
        let t1 = t0 + chrono::Duration::seconds(90);
        let (next, ev) = cur.transition(Status::Granted, &change(t1)).unwrap();
        trail.push(complete(Some(&cur), &next, &ev));
        cur = next;

        let text = serde_json::to_string(&trail).unwrap();
        assert!(!text.contains("secret-token"), "no task token in the trail");
        assert!(trail[0].snapshot.is_some());
        let granted = trail.last().unwrap().changes.as_ref().unwrap();
        assert_eq!(granted["status"], "GRANTED");
        assert!(granted.contains_key("expiresAt"));
        assert!(!granted.contains_key("entitlement"), "only what changed");

        let back = replay(&trail).expect("a snapshot");
        assert_eq!(back, cur);
        // Every prefix replays to the record as it was then.
        let mid = replay(&trail[..3]).unwrap();
        assert_eq!(mid.status, Status::ApprovalPending);
        assert_eq!(mid.task_token, None);
    }

    #[test]
    fn id_bounds_enclose_every_id_of_their_millisecond() {
        let t = chrono::DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let (lo, hi) = id_bounds(t);
        for _ in 0..100 {
            let id = crate::RequestId::generate(t).to_string();
            assert!(lo <= id && id <= hi, "{lo} <= {id} <= {hi}");
        }
        let next = chrono::Duration::milliseconds(1);
        assert!(crate::RequestId::generate(t + next).to_string() > hi);
        assert!(crate::RequestId::generate(t - next).to_string() < lo);
    }

    #[test]
    fn a_trail_without_a_snapshot_replays_to_nothing() {
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let r = crate::request::tests::sample(t0);
        let ev = AuditEvent::new(
            &r.request_id,
            t0,
            "alice".into(),
            AuditAction::Rejected,
            None,
            None,
            None,
            "test",
        );
        assert_eq!(replay(&[ev]), None);
    }
}
