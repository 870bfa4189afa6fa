//! Extensions decided where approvers are: signed single-use links to the
//! extension's own confirmation page (`/approvals/{id}/extension/{n}`), and
//! the extension's approval window (the entitlement's `approval_timeout`,
//! from when it was asked), after which it is recorded `TIMED_OUT`.
//!
//! An extension link is signed with a key derived for extension links and
//! over `{id}/extension/{n}` (see `links`), so it can decide neither the
//! request nor another extension, and a request's link cannot decide an
//! extension. Its nonce is recorded on the request in the decision's own
//! guarded write, as a request link's is: it works once.

use crate::error::ServiceError;
use crate::extension::{Extension, ExtensionStatus};
use crate::lifecycle::Status;
use crate::links::LinkClaims;
use crate::ports::StoreError;
use crate::request::{AccessRequest, AuditAction, AuditEvent, Timestamp, system_actor};
use crate::service::Broker;

/// When a pending extension stops waiting: asked + the entitlement's
/// approval window.
pub fn deadline(x: &Extension, approval_timeout_secs: u32) -> Timestamp {
    x.requested_at + chrono::Duration::seconds(approval_timeout_secs as i64)
}

impl Broker {
    async fn link_request(&self, link: &LinkClaims) -> Result<AccessRequest, ServiceError> {
        self.store
            .get(&link.request_id)
            .await?
            .ok_or_else(|| ServiceError::not_found(link.request_id.as_str()))
    }

    /// What an extension link's confirmation page shows: the request and
    /// its extension at `index`, when the link's approver may still decide
    /// it (an approver, not the requester, the link unused, the extension
    /// still pending on a live grant).
    pub async fn extension_link_preview(
        &self,
        link: &LinkClaims,
        index: usize,
    ) -> Result<AccessRequest, ServiceError> {
        let r = self.link_request(link).await?;
        let status = r.effective_status(self.clock.now());
        let conflict = |code: &'static str, message: &str| ServiceError::Conflict {
            code,
            field: None,
            message: message.to_string(),
            current: Some(status),
        };
        if link.approver == r.requester.principal {
            return Err(ServiceError::forbidden(
                "self_approval",
                None,
                "nobody decides their own extension",
            ));
        }
        let groups = self.catalog.groups_of(&link.approver, &[]);
        let is_approver = self
            .catalog
            .get(&r.entitlement)
            .is_some_and(|e| self.catalog.is_approver(e, &link.approver, &groups));
        if !is_approver {
            return Err(ServiceError::forbidden(
                "not_approver",
                None,
                format!("you are not an approver of `{}`", r.entitlement),
            ));
        }
        if r.used_link_nonces.contains(&link.nonce) {
            return Err(conflict(
                "link_used",
                "this approval link was already used; each link works once",
            ));
        }
        match r.extensions.get(index) {
            Some(x) if x.status == ExtensionStatus::Pending && status == Status::Granted => {
                if x.decisions.iter().any(|d| d.approver == link.approver) {
                    return Err(conflict(
                        "already_decided",
                        "you already approved this extension; it waits for another approver",
                    ));
                }
                Ok(r)
            }
            Some(x) => Err(conflict(
                "already_decided",
                &format!(
                    "this extension is {} (the request is {status}); there is nothing to decide",
                    serde_json::to_value(x.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
            )),
            None => Err(ServiceError::not_found(link.request_id.as_str())),
        }
    }

    /// Approves (`true`) or denies the extension at `index` with a verified
    /// extension link, consuming its nonce. A deny needs a reason.
    pub async fn decide_extension_with_link(
        &self,
        link: &LinkClaims,
        index: usize,
        approve: bool,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        if !approve && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(ServiceError::invalid(
                "reason",
                "is required: tell the requester why",
            ));
        }
        let r = self.extension_link_preview(link, index).await?;
        let groups = self.catalog.groups_of(&link.approver, &[]);
        let actor = link.approver.to_string();
        self.decide_extension_as(
            r,
            (link.approver.clone(), groups),
            actor,
            "link",
            None,
            approve,
            reason,
            Some((&link.nonce, index)),
        )
        .await
    }
}

/// Records a pending extension whose window has passed as `TIMED_OUT`
/// (guarded write, audited). `Ok(None)`: nothing to do (decided meanwhile,
/// not yet due, or the request moved on — then the lifecycle lapses it).
pub async fn time_out(
    store: &dyn crate::ports::RequestStore,
    r: &AccessRequest,
    approval_timeout_secs: u32,
    now: Timestamp,
) -> Result<Option<AccessRequest>, StoreError> {
    let Some(index) = r
        .extensions
        .iter()
        .rposition(|x| x.status == ExtensionStatus::Pending)
    else {
        return Ok(None);
    };
    if now < deadline(&r.extensions[index], approval_timeout_secs) {
        return Ok(None);
    }
    let mut next = r.clone();
    let x = &mut next.extensions[index];
    x.status = ExtensionStatus::TimedOut;
    x.decided_at = Some(now);
    next.version += 1;
    next.updated_at = now;
    let event = AuditEvent::new(
        &r.request_id,
        now,
        system_actor("notifier"),
        AuditAction::Extension,
        None,
        None,
        Some(format!(
            "extension timed out: nobody decided within {}s of the ask",
            approval_timeout_secs
        )),
        "notifier",
    );
    match store.transition(r, &next, &event).await {
        Ok(()) => Ok(Some(next)),
        Err(StoreError::Conflict { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
