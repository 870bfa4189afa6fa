//! Permission-set grants (IAM Identity Center): one request assigns a
//! permission set to the requester's Identity Store user in each of its
//! accounts; overlapping grants share assignments the way attach-policy
//! grants share attachments (`attachments`).
//!
//! Identity Center keeps one assignment per (account, permission set,
//! user), not a count, so the store is the count: an assignment should
//! exist exactly while some request for it is a live grant
//! ([`AccessRequest::grant_is_live`]). [`settle`] moves Identity Center to
//! that state and reads the store again to confirm it, as
//! `attachments::settle` does, for the same reasons (see its module docs).
//!
//! Requests name the permission set as the catalog spells it (name or ARN)
//! and the requester by principal; assignments are compared resolved (the
//! permission set's ARN, the Identity Store user id), through the
//! [`AssignmentManager`], whose adapters cache both lookups.

use crate::identity_center::{Assignment, AssignmentManager};
use crate::ids::RequestId;
use crate::ledger::GrantIam;
use crate::ports::{Clock, GrantError, PageRequest, RequestStore};
use crate::request::{AccessRequest, GrantTarget};

pub use crate::attachments::SettleError;

/// The assignments a permission-set request makes (one per account), as
/// Identity Center keys them; `None` for another kind of request. A
/// requester without an Identity Store user, or a permission set the
/// instance does not have, is `PrincipalMissing`/`PolicyMissing`.
pub async fn of(
    manager: &dyn AssignmentManager,
    r: &AccessRequest,
) -> Option<Result<Vec<Assignment>, GrantError>> {
    let GrantTarget::PermissionSet {
        permission_set,
        accounts,
    } = &r.target
    else {
        return None;
    };
    Some(resolve(manager, r, permission_set, accounts).await)
}

async fn resolve(
    manager: &dyn AssignmentManager,
    r: &AccessRequest,
    permission_set: &str,
    accounts: &[crate::ids::AccountId],
) -> Result<Vec<Assignment>, GrantError> {
    let user_id = manager
        .user_id(&r.requester.principal)
        .await?
        .ok_or_else(|| {
            GrantError::PrincipalMissing(format!(
                "{} has no user in the Identity Store (looked up by {})",
                r.requester.principal,
                if r.requester.principal.as_str().contains('@') {
                    "email"
                } else {
                    "user name"
                }
            ))
        })?;
    let ps = manager
        .permission_set(permission_set)
        .await?
        .ok_or_else(|| {
            GrantError::PolicyMissing(format!(
                "the Identity Center instance has no permission set `{permission_set}`"
            ))
        })?;
    Ok(accounts
        .iter()
        .map(|a| Assignment {
            account: a.clone(),
            permission_set_arn: ps.arn.clone(),
            user_id: user_id.clone(),
        })
        .collect())
}

/// Whether `r` may need `a`: a permission-set request in the same account
/// (cheap, before any lookup).
fn may_need(r: &AccessRequest, a: &Assignment) -> bool {
    matches!(&r.target, GrantTarget::PermissionSet { accounts, .. } if accounts.contains(&a.account))
}

/// Whether `r` is a live grant that needs `a`.
async fn covers(
    manager: &dyn AssignmentManager,
    r: &AccessRequest,
    a: &Assignment,
    now: crate::request::Timestamp,
) -> Result<bool, GrantError> {
    if !(r.grant_is_live(now) && may_need(r, a)) {
        return Ok(false);
    }
    Ok(match of(manager, r).await {
        Some(Ok(list)) => list.contains(a),
        // A request whose user or permission set is gone needs nothing.
        Some(Err(GrantError::PrincipalMissing(_) | GrantError::PolicyMissing(_))) => false,
        Some(Err(e)) => return Err(e),
        None => false,
    })
}

/// A live grant that needs `a`, if any (candidates re-read consistently).
pub async fn live_grant(
    store: &dyn RequestStore,
    manager: &dyn AssignmentManager,
    clock: &dyn Clock,
    a: &Assignment,
    except: Option<&RequestId>,
) -> Result<Option<RequestId>, SettleError> {
    for status in AccessRequest::LIVE_GRANT_STATUSES {
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let now = clock.now();
            let found = store.list_by_status(*status, &page).await?;
            for candidate in found
                .items
                .iter()
                .filter(|r| Some(&r.request_id) != except && r.grant_is_live(now) && may_need(r, a))
            {
                if let Some(current) = store.get(&candidate.request_id).await?
                    && covers(manager, &current, a, clock.now()).await?
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

fn manager(iam: &GrantIam) -> Result<&dyn AssignmentManager, GrantError> {
    iam.assignments().ok_or_else(|| {
        GrantError::Other(
            "this component has no Identity Center adapter: permission-set grants are made by the task functions".into(),
        )
    })
}

/// Brings Identity Center in line with the store for `a` (create while a
/// live grant needs it, delete otherwise), then confirms; `known` is what
/// the caller last did itself. Returns whether the assignment exists.
pub async fn settle(
    store: &dyn RequestStore,
    iam: &GrantIam,
    clock: &dyn Clock,
    a: &Assignment,
    known: Option<bool>,
    on_behalf_of: &RequestId,
) -> Result<bool, SettleError> {
    let m = manager(iam)?;
    let mut applied = known;
    for _ in 0..4 {
        let live = live_grant(store, m, clock, a, None).await?;
        let want = live.is_some();
        if applied == Some(want) {
            return Ok(want);
        }
        match live {
            Some(grant) => iam.assign(&grant, a).await?,
            None => iam.unassign(on_behalf_of, a).await?,
        }
        applied = Some(want);
    }
    Err(SettleError::Unsettled(format!(
        "assignment of {} in {} to user {}",
        a.permission_set_arn, a.account, a.user_id
    )))
}

/// Before an ending grant is recorded: deletes the assignment unless
/// another live grant needs it. Returns whether it is left in place.
pub async fn unassign_unless_covered(
    store: &dyn RequestStore,
    iam: &GrantIam,
    clock: &dyn Clock,
    a: &Assignment,
    ending: &RequestId,
) -> Result<bool, SettleError> {
    let m = manager(iam)?;
    if live_grant(store, m, clock, a, Some(ending))
        .await?
        .is_some()
    {
        return Ok(true);
    }
    iam.unassign(ending, a).await?;
    Ok(false)
}

/// What one account's assignment came to in a Grant step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountOutcome {
    pub account: crate::ids::AccountId,
    pub result: Result<(), GrantError>,
}

/// The Grant step of a permission-set request: every account's assignment
/// through the ledger. All succeeded: `Ok`. Any failed: the per-account
/// outcomes, for the caller to record, and — when a failure is permanent —
/// the accounts already assigned are deleted again (unless another live
/// grant needs them), so a partial grant is never left or reported as a
/// clean one. A transient failure keeps what succeeded: the step is
/// retried (creating is idempotent), and a request that ends FAILED is
/// settled, which deletes them.
pub async fn grant_all(
    store: &dyn RequestStore,
    iam: &GrantIam,
    clock: &dyn Clock,
    r: &AccessRequest,
) -> Result<(), (Vec<AccountOutcome>, GrantError)> {
    let m = manager(iam).map_err(|e| (vec![], e))?;
    let wanted = match of(m, r).await {
        Some(Ok(list)) => list,
        Some(Err(e)) => return Err((vec![], e)),
        None => return Ok(()),
    };
    let mut outcomes = Vec::with_capacity(wanted.len());
    for a in &wanted {
        let result = iam.assign(&r.request_id, a).await;
        outcomes.push(AccountOutcome {
            account: a.account.clone(),
            result,
        });
    }
    let Some(first) = outcomes.iter().find_map(|o| o.result.clone().err()) else {
        return Ok(());
    };
    let permanent = outcomes.iter().find_map(|o| match &o.result {
        Err(GrantError::Transient(_)) | Ok(()) => None,
        Err(e) => Some(e.clone()),
    });
    let Some(permanent) = permanent else {
        return Err((outcomes, first));
    };
    for (a, o) in wanted.iter().zip(&outcomes) {
        if o.result.is_ok()
            && let Err(e) = unassign_unless_covered(store, iam, clock, a, &r.request_id).await
        {
            // The ledger holds the assignment: the reconciler removes it.
            tracing::warn!(request_id = %r.request_id, account = %a.account, error = %e, "rolling back an assignment failed; the reconciler will remove it");
        }
    }
    Err((outcomes, permanent))
}

/// One line per account, for the audit trail: `111122223333: assigned;
/// 444455556666: failed: …`.
pub fn describe(outcomes: &[AccountOutcome]) -> String {
    outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(()) => format!("{}: assigned", o.account),
            Err(e) => format!("{}: failed: {e}", o.account),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
