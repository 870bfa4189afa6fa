//! Attach-policy grants that overlap: several live grants may attach the
//! same managed policy to the same IAM principal (the same requester asking
//! twice, or several requesters whose sessions map to one IAM role). One of
//! them ending must not detach what another still covers.
//!
//! IAM keeps one attachment per (principal, policy), not a count, so the
//! store is the count: the policy should be attached exactly when some
//! request for that account, principal and policy is a live grant
//! ([`AccessRequest::grant_is_live`]: GRANTED and not yet past its
//! `expiresAt`). [`settle`] moves IAM to that state and then reads
//! the store again to confirm it; if the answer changed meanwhile (another
//! grant recorded or ended between the read and the IAM call) it acts again.
//!
//! Why that is enough (the race): every party that changes the store for a
//! key (a grant recorded, a grant ended) settles *after* its own write, and
//! every IAM call is followed by a confirming read. Take the last IAM call
//! for a key: its confirming read saw the store as it stayed (any later
//! write would be followed by that writer's own settle, hence by a later IAM
//! call or a read agreeing with this one). So IAM ends matching the store.
//! The ending party records its terminal status *before* it settles, so of
//! two grants ending at once the last one to record sees the other ended and
//! detaches; a grant being recorded while another ends re-attaches after its
//! record. What remains: DynamoDB's `byStatus` index is eventually
//! consistent (typically well under a second), so a grant recorded in the
//! same instant can be missed by the ending party's read; candidates found
//! are always re-read consistently, so the miss can only cost availability
//! (a detach the new grant's own settle has already passed), never leave a
//! policy attached with no live grant.

use crate::ids::{AccountId, PolicyName, RequestId};
use crate::ledger::GrantIam;
use crate::ports::{Clock, GrantError, IamPrincipal, PageRequest, RequestStore, StoreError};
use crate::request::{AccessRequest, GrantTarget};

/// One attachment: what IAM holds once per principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentKey {
    pub account: AccountId,
    pub principal: IamPrincipal,
    pub policy: PolicyName,
}

impl AttachmentKey {
    /// The attachment a request makes, if it is an attach-policy request
    /// granted the managed policy itself (one narrowed by a scope carries
    /// its own inline policy instead: `inline_grants`).
    pub fn of(r: &AccessRequest) -> Option<Result<AttachmentKey, String>> {
        match &r.target {
            GrantTarget::AttachPolicy { .. } if r.session_policy.is_some() => None,
            GrantTarget::AttachPolicy { policy_name } => Some(
                IamPrincipal::for_requester(&r.requester.principal).map(|principal| {
                    AttachmentKey {
                        account: r.account.clone(),
                        principal,
                        policy: policy_name.clone(),
                    }
                }),
            ),
            GrantTarget::AssumeRole { .. } | GrantTarget::PermissionSet { .. } => None,
        }
    }

    /// Whether `r` is a live grant ([`AccessRequest::grant_is_live`]) that
    /// needs this attachment.
    pub fn covers(&self, r: &AccessRequest, now: crate::request::Timestamp) -> bool {
        r.grant_is_live(now) && AttachmentKey::of(r).and_then(Result::ok).as_ref() == Some(self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Grant(#[from] GrantError),
    #[error("the grants of {0} kept changing while settling its attachment; retry")]
    Unsettled(String),
}

/// A live grant ([`AccessRequest::grant_is_live`]) that needs `key`
/// attached, if any. Candidates come from the status index and are re-read
/// consistently before they count.
pub async fn live_grant(
    store: &dyn RequestStore,
    clock: &dyn Clock,
    key: &AttachmentKey,
    except: Option<&RequestId>,
) -> Result<Option<RequestId>, StoreError> {
    for status in AccessRequest::LIVE_GRANT_STATUSES {
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let now = clock.now();
            let found = store.list_by_status(*status, &page).await?;
            let candidates = found
                .items
                .iter()
                .filter(|r| key.covers(r, now) && Some(&r.request_id) != except);
            for candidate in candidates {
                if let Some(current) = store.get(&candidate.request_id).await?
                    && key.covers(&current, clock.now())
                {
                    return Ok(Some(current.request_id));
                }
            }
            match found.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
    }
    Ok(None)
}

/// Brings IAM in line with the store for `key` (see the module docs).
/// `known` is what the caller last did to IAM itself (`Some(true)`:
/// attached, `Some(false)`: detached), so a confirming read that agrees
/// costs no further IAM call. Returns whether the policy is attached.
/// An attach is made (and ledgered) for the live grant that needs it; a
/// detach for `on_behalf_of`, the request whose end or check this is.
pub async fn settle(
    store: &dyn RequestStore,
    iam: &GrantIam,
    clock: &dyn Clock,
    key: &AttachmentKey,
    known: Option<bool>,
    on_behalf_of: &RequestId,
) -> Result<bool, SettleError> {
    let mut applied = known;
    for _ in 0..4 {
        let live = live_grant(store, clock, key, None).await?;
        let want = live.is_some();
        if applied == Some(want) {
            return Ok(want);
        }
        match live {
            Some(grant) => {
                iam.attach(&grant, &key.account, &key.principal, &key.policy)
                    .await?
            }
            None => {
                iam.detach(on_behalf_of, &key.account, &key.principal, &key.policy)
                    .await?
            }
        }
        applied = Some(want);
    }
    Err(SettleError::Unsettled(format!(
        "policy {} on {:?}",
        key.policy, key.principal
    )))
}

/// Before an ending grant is recorded: detaches the policy unless another
/// live grant covers it (the ending one itself may still read as live: an
/// early revoke). Returns whether the policy is left attached. The caller
/// records the end, then calls [`settle`] with this answer, so a failed
/// detach leaves the request GRANTED (and retried) rather than ended.
pub async fn detach_unless_covered(
    store: &dyn RequestStore,
    iam: &GrantIam,
    clock: &dyn Clock,
    key: &AttachmentKey,
    ending: &RequestId,
) -> Result<bool, SettleError> {
    if live_grant(store, clock, key, Some(ending)).await?.is_some() {
        return Ok(true);
    }
    iam.detach(ending, &key.account, &key.principal, &key.policy)
        .await?;
    Ok(false)
}
