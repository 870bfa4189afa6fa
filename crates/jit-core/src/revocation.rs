//! Early revoke of assume-role grants: credentials already handed out stay
//! valid until they expire (up to an hour), so revoking the request record
//! is not enough. An inline policy on the role denies everything to
//! sessions whose `aws:SourceIdentity` is the requester and whose
//! `aws:TokenIssueTime` is before the revoke, and is removed once no such
//! session can still be alive.
//!
//! The timeline of one revoke:
//! - `issued_before` = the revoke's start + [`CLOCK_MARGIN_SECS`]. The
//!   request is recorded REVOKED (with this [`SessionDeny`]) well within
//!   that margin, and the credentials endpoint re-reads the request after
//!   STS answers and hands nothing out unless it is still GRANTED: so every
//!   credential ever handed out for the request was issued before the
//!   record, hence before `issued_before`, hence is denied. The margin also
//!   absorbs clock skew between the broker and STS.
//! - The deny is put on the role right after the record (`placed_at`).
//! - `remove_after` = `issued_before` + the longest session the broker
//!   vends + the margin: after it, every denied session has expired, and
//!   [`sweep`] deletes the policy (`removed_at`).
//!
//! Pending work is listed from the store (REVOKED requests whose deny is not
//! yet placed or not yet removed), so nothing depends on a timer surviving:
//! [`sweep`] runs on a schedule (the `expire` Lambda; `jit-local`'s driver),
//! after every expiry the workflow revokes, and from the TTL backstop.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ids::{RequestId, RoleArn};
use crate::ledger::{GrantIam, LedgerKind};
use crate::lifecycle::Status;
use crate::ports::{Clock, GrantError, PageRequest, RequestStore, StoreError};
use crate::request::{AccessRequest, AuditAction, AuditEvent, Timestamp, system_actor};

/// Slack between the broker's clock, the record and STS's clock.
pub const CLOCK_MARGIN_SECS: i64 = 60;
/// Inline policy names of revokes start with this, then the request id.
pub const DENY_POLICY_PREFIX: &str = "jit-revoke-";

/// The deny an early revoke puts on a role, as recorded on the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionDeny {
    pub role_arn: RoleArn,
    /// The inline policy's name on the role.
    pub policy_name: String,
    /// `aws:SourceIdentity` of the sessions denied: the requester.
    pub source_identity: String,
    /// Sessions issued before this instant are denied.
    pub issued_before: Timestamp,
    /// No denied session can be alive after this; the policy goes then.
    pub remove_after: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<Timestamp>,
}

impl SessionDeny {
    /// The deny for a revoke starting `now`, for sessions of at most
    /// `session_cap_secs`.
    pub fn new(
        id: &RequestId,
        role_arn: RoleArn,
        source_identity: String,
        now: Timestamp,
        session_cap_secs: u32,
    ) -> SessionDeny {
        let margin = chrono::Duration::seconds(CLOCK_MARGIN_SECS);
        let issued_before = now + margin;
        SessionDeny {
            role_arn,
            policy_name: deny_policy_name(id),
            source_identity,
            issued_before,
            remove_after: issued_before
                + chrono::Duration::seconds(session_cap_secs as i64)
                + margin,
            placed_at: None,
            removed_at: None,
        }
    }

    /// The inline policy document (IAM JSON).
    pub fn document(&self) -> String {
        deny_document(&self.policy_name, &self.source_identity, self.issued_before)
    }

    /// Still to be placed, or placed and not yet removed.
    pub fn pending(&self) -> bool {
        self.removed_at.is_none()
    }
}

pub fn deny_policy_name(id: &RequestId) -> String {
    format!("{DENY_POLICY_PREFIX}{id}")
}

/// `Deny *` for sessions of `source_identity` issued before `before`.
pub fn deny_document(policy_name: &str, source_identity: &str, before: Timestamp) -> String {
    let sid: String = format!("JitRevoke{policy_name}")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": sid,
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                "StringEquals": { "aws:SourceIdentity": source_identity },
                "DateLessThan": {
                    "aws:TokenIssueTime": before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                }
            }
        }]
    })
    .to_string()
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub placed: usize,
    pub removed: usize,
    /// Denies whose IAM call failed this time; the next sweep retries them.
    pub failed: usize,
}

/// Places the request's deny on its role if it is not placed yet, and
/// records that. Returns the request as stored afterwards.
pub async fn place(
    store: &dyn RequestStore,
    iam: &GrantIam,
    clock: &dyn Clock,
    r: &AccessRequest,
) -> Result<AccessRequest, RevocationError> {
    let Some(deny) = r.session_deny.as_ref().filter(|d| d.placed_at.is_none()) else {
        return Ok(r.clone());
    };
    iam.put_role_policy(
        &r.request_id,
        LedgerKind::RevokeDeny,
        &deny.role_arn,
        &deny.policy_name,
        &deny.document(),
        Some(deny.remove_after),
    )
    .await?;
    let note = format!(
        "inline policy {} placed on {}: denies sessions of {} issued before {}; removed after {}",
        deny.policy_name,
        deny.role_arn,
        deny.source_identity,
        deny.issued_before
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        deny.remove_after
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    record(store, clock, r, note, |d, now| d.placed_at = Some(now)).await
}

/// Removes the request's deny from its role once no denied session can be
/// alive, and records that.
pub async fn remove_if_due(
    store: &dyn RequestStore,
    iam: &GrantIam,
    clock: &dyn Clock,
    r: &AccessRequest,
) -> Result<Option<AccessRequest>, RevocationError> {
    let Some(deny) = r.session_deny.as_ref().filter(|d| d.pending()) else {
        return Ok(None);
    };
    if clock.now() < deny.remove_after {
        return Ok(None);
    }
    iam.delete_role_policy(
        &r.request_id,
        LedgerKind::RevokeDeny,
        &deny.role_arn,
        &deny.policy_name,
    )
    .await?;
    let note = format!(
        "inline policy {} removed from {}: every session it denied has expired",
        deny.policy_name, deny.role_arn
    );
    record(store, clock, r, note, |d, now| d.removed_at = Some(now))
        .await
        .map(Some)
}

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Grant(#[from] GrantError),
}

/// A status-preserving guarded write of the deny's progress, with its audit
/// note. A lost race re-reads and applies the change again.
async fn record(
    store: &dyn RequestStore,
    clock: &dyn Clock,
    r: &AccessRequest,
    note: String,
    change: impl Fn(&mut SessionDeny, Timestamp),
) -> Result<AccessRequest, RevocationError> {
    let mut current = r.clone();
    for _ in 0..3 {
        let now = clock.now();
        let mut next = current.clone();
        match next.session_deny.as_mut() {
            Some(d) => change(d, now),
            None => return Ok(current),
        }
        next.version += 1;
        next.updated_at = now;
        let event = AuditEvent::new(
            &r.request_id,
            now,
            system_actor("revoke"),
            AuditAction::Note,
            None,
            None,
            Some(note.clone()),
            "revoke",
        );
        match store.transition(&current, &next, &event).await {
            Ok(()) => return Ok(next),
            Err(StoreError::Conflict { .. }) => {
                current = store
                    .get(&r.request_id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(r.request_id.clone()))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict {
        current: Some(current.status),
    }
    .into())
}

/// Places denies not yet placed and removes those whose sessions have all
/// expired, for every REVOKED request. One failing request does not stop
/// the others; it is counted and retried by the next sweep.
pub async fn sweep(
    store: &dyn RequestStore,
    iam: &GrantIam,
    clock: &dyn Clock,
) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let found = store.list_by_status(Status::Revoked, &page).await?;
        for r in &found.items {
            let Some(deny) = r.session_deny.as_ref().filter(|d| d.pending()) else {
                continue;
            };
            let outcome = if deny.placed_at.is_none() && clock.now() < deny.remove_after {
                place(store, iam, clock, r).await.map(|_| {
                    report.placed += 1;
                })
            } else {
                remove_if_due(store, iam, clock, r).await.map(|done| {
                    if done.is_some() {
                        report.removed += 1;
                    }
                })
            };
            if let Err(e) = outcome {
                report.failed += 1;
                tracing::warn!(request_id = %r.request_id, error = %e, "revocation deny not settled; the next sweep retries");
            }
        }
        match found.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => return Ok(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deny_names_the_requester_and_the_instant() {
        let t = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let id = RequestId::generate(t);
        let deny = SessionDeny::new(
            &id,
            RoleArn::parse("arn:aws:iam::123456789012:role/Admin").unwrap(),
            "alice@example.com".into(),
            t,
            3600,
        );
        assert_eq!(deny.policy_name, format!("jit-revoke-{id}"));
        assert_eq!((deny.issued_before - t).num_seconds(), 60);
        assert_eq!((deny.remove_after - t).num_seconds(), 60 + 3600 + 60);
        let doc: serde_json::Value = serde_json::from_str(&deny.document()).unwrap();
        let st = &doc["Statement"][0];
        assert_eq!(st["Effect"], "Deny");
        assert_eq!(st["Action"], "*");
        assert_eq!(
            st["Condition"]["StringEquals"]["aws:SourceIdentity"],
            "alice@example.com"
        );
        assert_eq!(
            st["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
            "2027-01-15T08:01:00Z"
        );
        let sid = st["Sid"].as_str().unwrap();
        assert!(sid.chars().all(|c| c.is_ascii_alphanumeric()), "{sid}");
    }
}
