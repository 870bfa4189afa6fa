//! Approver decisions: approve and deny, the rules around them, and
//! completing the waiting workflow task.
//!
//! Every decision is a guarded write on the version read, so two approvers
//! clicking at once, or an approve racing a cancel, yield exactly one
//! outcome; the loser gets a 409.

use serde_json::json;

use crate::error::ServiceError;
use crate::identity::Caller;
use crate::ids::Principal;
use crate::lifecycle::Status;
use crate::ports::StoreError;
use crate::request::{AccessRequest, AuditAction, AuditEvent, Change, Decision, Verdict};
use crate::service::{Broker, MAX_JUSTIFICATION_CHARS};

impl Broker {
    /// Loads a request for a decision and checks who decides: an approver of
    /// its entitlement, never its requester, once, while it waits.
    async fn decidable(
        &self,
        caller: &Caller,
        id: &str,
        on_behalf_of: Option<&str>,
        reason: &Option<String>,
    ) -> Result<(AccessRequest, Principal, u32), ServiceError> {
        let who = self.acting(caller, on_behalf_of)?.ok_or_else(|| {
            ServiceError::invalid(
                "requester",
                "is required when a trusted caller decides for an approver",
            )
        })?;
        if let Some(reason) = reason
            && reason.chars().count() > MAX_JUSTIFICATION_CHARS
        {
            return Err(ServiceError::invalid(
                "reason",
                format!("must be at most {MAX_JUSTIFICATION_CHARS} characters"),
            ));
        }
        let r = self.load_visible(caller, Some(&who), id).await?;
        let ent = self
            .catalog
            .get(&r.entitlement)
            .ok_or_else(|| ServiceError::Conflict {
                code: "invalid_state",
                field: None,
                message: format!(
                    "the entitlement `{}` is no longer in the catalog",
                    r.entitlement
                ),
                current: Some(r.status),
            })?;
        if who.0 == r.requester.principal {
            return Err(ServiceError::forbidden(
                "self_approval",
                None,
                "nobody decides their own request",
            ));
        }
        if !self.catalog.is_approver(ent, &who.0, &who.1) {
            return Err(ServiceError::forbidden(
                "not_approver",
                None,
                format!("you are not an approver of `{}`", ent.name),
            ));
        }
        let status = r.effective_status(self.clock.now());
        if status != Status::ApprovalPending {
            return Err(ServiceError::Conflict {
                code: "already_decided",
                field: None,
                message: format!("the request is {status}; it no longer waits for a decision"),
                current: Some(status),
            });
        }
        Ok((r, who.0, ent.approvers.required_approvals))
    }

    /// Refuses a decision on a request whose quorum is already met: it
    /// waits only for the grant now.
    fn refuse_if_decided(r: &AccessRequest, required: u32) -> Result<(), ServiceError> {
        if approvals(r) >= required {
            return Err(ServiceError::Conflict {
                code: "already_decided",
                field: None,
                message: "the request is already approved; it is being granted".into(),
                current: Some(r.status),
            });
        }
        Ok(())
    }

    /// Records an approval; when it completes the quorum, resumes the
    /// workflow so it grants.
    pub async fn approve(
        &self,
        caller: &Caller,
        id: &str,
        on_behalf_of: Option<&str>,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        let (r, who, required) = self.decidable(caller, id, on_behalf_of, &reason).await?;
        let token = r
            .task_token
            .clone()
            .ok_or_else(|| ServiceError::Unavailable {
                code: "not_ready",
                message: "the approval task is not waiting yet; retry in a moment".into(),
            })?;
        let already = r.decisions.iter().any(|d| d.approver == who);
        if !already {
            Self::refuse_if_decided(&r, required)?;
        }
        let next = if already {
            if approvals(&r) < required {
                return Err(ServiceError::Conflict {
                    code: "already_decided",
                    field: None,
                    message: "you already approved; it waits for another approver".into(),
                    current: Some(r.status),
                });
            }
            // A retry after the workflow could not be resumed: resume it again.
            r.clone()
        } else {
            let now = self.clock.now();
            let mut next = r.clone();
            next.decisions.push(Decision {
                approver: who.clone(),
                verdict: Verdict::Approve,
                at: now,
                reason: reason.clone(),
            });
            next.version += 1;
            next.updated_at = now;
            let count = approvals(&next);
            if count >= required {
                next.decided_at = Some(now);
            }
            let event = AuditEvent::new(
                &r.request_id,
                now,
                who.to_string(),
                AuditAction::Decision,
                None,
                None,
                Some(match &reason {
                    Some(text) => format!("approved ({count} of {required}): {text}"),
                    None => format!("approved ({count} of {required})"),
                }),
                "api",
            );
            self.store
                .transition(&r, &next, &event)
                .await
                .map_err(lost_race)?;
            next
        };
        if approvals(&next) >= required {
            let output = json!({
                "decision": "approved",
                "approvers": next.decisions.iter().filter(|d| d.verdict == Verdict::Approve).map(|d| d.approver.as_str()).collect::<Vec<_>>(),
            });
            if let Err(e) = self.workflow.send_task_success(&token, &output).await {
                tracing::error!(request_id = %next.request_id, error = %e, "could not resume the workflow after approval");
                return Err(ServiceError::Unavailable {
                    code: "workflow_unavailable",
                    message: "the approval is recorded but the workflow could not be resumed; approve again to retry".into(),
                });
            }
        }
        tracing::info!(request_id = %next.request_id, approver = %who, "approved");
        Ok(next)
    }

    /// Denies: any deny rejects the request at once, and ends the workflow.
    pub async fn deny(
        &self,
        caller: &Caller,
        id: &str,
        on_behalf_of: Option<&str>,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        let reason = reason.filter(|r| !r.trim().is_empty());
        if reason.is_none() {
            return Err(ServiceError::invalid(
                "reason",
                "is required: tell the requester why",
            ));
        }
        let (r, who, required) = self.decidable(caller, id, on_behalf_of, &reason).await?;
        Self::refuse_if_decided(&r, required)?;
        let token = r.task_token.clone();
        let now = self.clock.now();
        let change = Change {
            actor: who.to_string(),
            at: now,
            reason: reason.clone(),
            source: "api",
        };
        let (mut next, event) = r.transition(Status::Denied, &change)?;
        next.decisions.push(Decision {
            approver: who.clone(),
            verdict: Verdict::Deny,
            at: now,
            reason: reason.clone(),
        });
        self.store
            .transition(&r, &next, &event)
            .await
            .map_err(lost_race)?;
        if let Some(token) = token
            && let Err(e) = self
                .workflow
                .send_task_failure(&token, "Denied", reason.as_deref().unwrap_or("denied"))
                .await
        {
            // The record already says DENIED; the workflow's next step will
            // find the request moved on and end.
            tracing::warn!(request_id = %next.request_id, error = %e, "could not end the workflow after a deny");
        }
        tracing::info!(request_id = %next.request_id, approver = %who, "denied");
        Ok(next)
    }
}

fn approvals(r: &AccessRequest) -> u32 {
    r.decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Approve)
        .count() as u32
}

/// A guarded write that lost: someone decided (or cancelled) first.
fn lost_race(e: StoreError) -> ServiceError {
    match e {
        StoreError::Conflict { current } => ServiceError::Conflict {
            code: "already_decided",
            field: None,
            message: match current {
                Some(s) => format!("someone else acted first; the request is now {s}"),
                None => "someone else acted first".into(),
            },
            current,
        },
        other => other.into(),
    }
}
