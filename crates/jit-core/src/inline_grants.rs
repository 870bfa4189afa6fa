//! Attach-policy grants narrowed by a scope: instead of attaching the
//! entitlement's managed policy, the grant is the request's generated
//! policy, put inline on the requester's IAM user or role as
//! `jit-<request id>` (IAM `PutUserPolicy`/`PutRolePolicy`), through the
//! grant ledger like every IAM change, and deleted at expiry or revoke.
//!
//! Unlike a managed attachment ([`crate::attachments`]) nothing is shared:
//! the name carries the request id, so exactly one request holds it, and
//! it should be in IAM exactly while that request is a live grant
//! ([`AccessRequest::grant_is_live`]). [`settle`] moves IAM to that state
//! and reads the store again to confirm it, as `attachments::settle` does:
//! a revoke that lands between a put and its confirming read is seen, and
//! the policy deleted. Whatever a crash leaves (an intent without its
//! call, a call without its completion, a grant whose Revoke step never
//! ran) is in the ledger, and the reconciler removes it once the request
//! is no longer a live grant.
//!
//! The inline policy grants exactly what it says (no role's permissions
//! cap it, as they cap a session policy): so a scope on an attach-policy
//! entitlement needs the catalog's `ceiling:`, and is refused without one
//! (see `policy_use`).

use crate::attachments::SettleError;
use crate::ids::{AccountId, RequestId};
use crate::ledger::GrantIam;
use crate::ports::{Clock, IamPrincipal, RequestStore};
use crate::request::{AccessRequest, GrantTarget};

/// The inline policy's name for a request: `jit-<request id>` (30
/// characters; IAM allows 128).
pub fn inline_name(id: &RequestId) -> String {
    format!("jit-{id}")
}

/// Where a scoped attach grant's inline policy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineGrant {
    pub request_id: RequestId,
    pub account: AccountId,
    pub principal: IamPrincipal,
    /// `jit-<request id>`.
    pub name: String,
    /// The request's generated policy, as recorded (`sessionPolicy`).
    pub document: String,
}

impl InlineGrant {
    /// The inline grant a request makes: an attach-policy request that
    /// carries a generated (or catalog) policy. `None` for role requests
    /// and for attach requests granted the managed policy itself.
    pub fn of(r: &AccessRequest) -> Option<Result<InlineGrant, String>> {
        match (&r.target, &r.session_policy) {
            (GrantTarget::AttachPolicy { .. }, Some(document)) => Some(
                IamPrincipal::for_requester(&r.requester.principal).map(|principal| InlineGrant {
                    request_id: r.request_id.clone(),
                    account: r.account.clone(),
                    principal,
                    name: inline_name(&r.request_id),
                    document: document.clone(),
                }),
            ),
            _ => None,
        }
    }

    /// Puts the policy (idempotent: IAM replaces it whole).
    pub async fn put(&self, iam: &GrantIam) -> Result<(), crate::ports::GrantError> {
        iam.put_principal_policy(
            &self.request_id,
            &self.account,
            &self.principal,
            &self.name,
            &self.document,
        )
        .await
    }

    /// Deletes the policy (what is not there is not an error).
    pub async fn remove(&self, iam: &GrantIam) -> Result<(), crate::ports::GrantError> {
        iam.delete_principal_policy(&self.request_id, &self.account, &self.principal, &self.name)
            .await
    }
}

/// Brings IAM in line with the store for `grant`: the policy is put while
/// its request is a live grant, deleted otherwise (also when the record is
/// gone). `known` is what the caller last did itself (`Some(true)`: put,
/// `Some(false)`: deleted), so a confirming read that agrees costs no IAM
/// call. Returns whether the policy is in place.
pub async fn settle(
    store: &dyn RequestStore,
    iam: &GrantIam,
    clock: &dyn Clock,
    grant: &InlineGrant,
    known: Option<bool>,
) -> Result<bool, SettleError> {
    let mut applied = known;
    for _ in 0..4 {
        let want = store
            .get(&grant.request_id)
            .await?
            .is_some_and(|r| r.grant_is_live(clock.now()));
        if applied == Some(want) {
            return Ok(want);
        }
        if want {
            grant.put(iam).await?;
        } else {
            grant.remove(iam).await?;
        }
        applied = Some(want);
    }
    Err(SettleError::Unsettled(format!(
        "inline policy {} on {:?}",
        grant.name, grant.principal
    )))
}
