//! Approver decisions: approve and deny, the rules around them, and
//! completing the waiting workflow task.
//!
//! Every decision is a guarded write on the version read, so two approvers
//! clicking at once, or an approve racing a cancel, yield exactly one
//! outcome; the loser gets a 409.
//!
//! Three front doors decide through here: the REST API (the caller the
//! gateway authenticated), Slack (a verified Slack user, [`Decider`]) and
//! signed email links ([`LinkClaims`]). A link's nonce is recorded in the
//! same guarded write as its decision, so a link works once.
//!
//! The rules: only an approver of the entitlement decides, never the
//! requester; one deny rejects; approvals complete when the quorum is met —
//! `required_approvals` approvals and, when `required_groups` is set, one
//! from each of those groups.

use serde_json::json;

use crate::catalog::Approvers;
use crate::error::ServiceError;
use crate::identity::Caller;
use crate::ids::Principal;
use crate::lifecycle::Status;
use crate::links::LinkClaims;
use crate::ports::StoreError;
use crate::request::{AccessRequest, AuditAction, AuditEvent, Change, Decision, Verdict};
use crate::service::{Broker, MAX_JUSTIFICATION_CHARS};

/// Who decides, as a front door established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    pub principal: Principal,
    /// The decider's groups (asserted by the authenticator plus the
    /// catalog's mapping).
    pub groups: Vec<String>,
    /// The verified Slack user id, when deciding from Slack.
    pub slack_user: Option<String>,
    /// Where: `api`, `slack`, `link`. Recorded on the decision and its event.
    pub via: &'static str,
    /// The trusted caller that named this decider, when one did; recorded
    /// on the decision and in its event's actor.
    pub through: Option<String>,
}

impl Decider {
    /// The actor of the audit events this decider's decisions write.
    fn actor(&self) -> String {
        match &self.through {
            Some(t) => format!("{} via {t}", self.principal),
            None => self.principal.to_string(),
        }
    }
}

/// How a decision may proceed beyond the rules every door shares.
struct Door<'a> {
    /// Refuse (404) requests the caller may not see: the REST API's rule,
    /// so ids cannot be probed.
    visible_to: Option<&'a Caller>,
    /// A signed link's nonce, consumed by this decision.
    nonce: Option<&'a str>,
    /// A second approve by the same approver resumes the workflow again
    /// (the REST API's retry after a workflow hiccup); elsewhere it is
    /// refused as already decided.
    retry_resumes: bool,
}

/// Whether the approvals recorded on `r` complete `approvers`' quorum.
pub fn quorum_met(r: &AccessRequest, approvers: &Approvers) -> bool {
    missing_for_quorum(r, approvers).is_none()
}

/// What the quorum still needs: `(approvals missing, groups missing)`, or
/// `None` when it is met.
pub fn missing_for_quorum(r: &AccessRequest, a: &Approvers) -> Option<(u32, Vec<String>)> {
    quorum_missing(&r.decisions, a)
}

/// The one quorum rule, for requests and extensions alike: over the
/// approvals in `decisions`, `required_approvals` of them and, when
/// `required_groups` is set, one from each group. `None` when it is met.
pub fn quorum_missing(decisions: &[Decision], a: &Approvers) -> Option<(u32, Vec<String>)> {
    let approvals: Vec<&Decision> = decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Approve)
        .collect();
    let count = approvals.len() as u32;
    let groups: Vec<String> = a
        .required_groups
        .iter()
        .filter(|g| !approvals.iter().any(|d| d.groups.contains(g)))
        .cloned()
        .collect();
    let short = a.required_approvals.saturating_sub(count);
    if short == 0 && groups.is_empty() {
        None
    } else {
        Some((short.max(groups.len() as u32), groups))
    }
}

impl Broker {
    /// The decider behind a REST call: the authenticated person, or the one
    /// a trusted caller names.
    async fn api_decider(
        &self,
        caller: &Caller,
        on_behalf_of: Option<&str>,
    ) -> Result<Decider, ServiceError> {
        let (principal, groups) = self
            .deciding(caller, on_behalf_of, "approve or deny")
            .await?
            .ok_or_else(|| {
                ServiceError::invalid(
                    "requester",
                    "is required when a trusted caller decides for an approver",
                )
            })?;
        Ok(Decider {
            principal,
            groups,
            slack_user: None,
            via: "api",
            through: caller.through().map(str::to_string),
        })
    }

    /// The decider a signed link names (already verified).
    async fn link_decider(&self, link: &LinkClaims) -> Result<Decider, ServiceError> {
        Ok(Decider {
            groups: self.groups_of(&link.approver, &[]).await?,
            principal: link.approver.clone(),
            slack_user: None,
            via: "link",
            through: None,
        })
    }

    /// Loads a request for a decision and checks who decides: an approver
    /// of its entitlement, never its requester, while it waits.
    async fn decidable(
        &self,
        who: &Decider,
        id: &str,
        door: &Door<'_>,
        reason: &Option<String>,
    ) -> Result<(AccessRequest, Approvers), ServiceError> {
        if let Some(reason) = reason
            && reason.chars().count() > MAX_JUSTIFICATION_CHARS
        {
            return Err(ServiceError::invalid(
                "reason",
                format!("must be at most {MAX_JUSTIFICATION_CHARS} characters"),
            ));
        }
        let r = match door.visible_to {
            Some(caller) => {
                let seen_as = (who.principal.clone(), who.groups.clone());
                self.load_visible(caller, Some(&seen_as), id).await?
            }
            None => {
                let rid =
                    crate::ids::RequestId::parse(id).map_err(|_| ServiceError::not_found(id))?;
                self.store
                    .get(&rid)
                    .await?
                    .ok_or_else(|| ServiceError::not_found(id))?
            }
        };
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
        if let Some(nonce) = door.nonce
            && r.used_link_nonces.iter().any(|n| n == nonce)
        {
            return Err(ServiceError::Conflict {
                code: "link_used",
                field: None,
                message: "this approval link was already used; each link works once".into(),
                current: Some(r.status),
            });
        }
        if who.principal == r.requester.principal {
            self.audit_refusal(
                &r,
                who.actor(),
                "self_approval",
                "tried to decide their own request".into(),
                who.via,
            )
            .await?;
            return Err(ServiceError::forbidden(
                "self_approval",
                None,
                "nobody decides their own request",
            ));
        }
        let approver = match &who.slack_user {
            Some(u) => self
                .catalog
                .is_slack_approver(ent, u, &who.principal, &who.groups),
            None => self.catalog.is_approver(ent, &who.principal, &who.groups),
        };
        if !approver {
            self.audit_refusal(
                &r,
                who.actor(),
                "not_approver",
                format!("tried to decide but is not an approver of `{}`", ent.name),
                who.via,
            )
            .await?;
            return Err(ServiceError::forbidden(
                "not_approver",
                None,
                format!("you are not an approver of `{}`", ent.name),
            ));
        }
        let status = r.effective_status(self.clock.now());
        // An APPROVED request is decided; only the REST API's retry of the
        // approver who completed it may resume its workflow again.
        let resumable = status == Status::Approved
            && door.retry_resumes
            && r.decisions
                .iter()
                .any(|d| d.approver == who.principal && d.verdict == Verdict::Approve);
        if status != Status::ApprovalPending && !resumable {
            return Err(ServiceError::Conflict {
                code: "already_decided",
                field: None,
                message: format!("the request is {status}; it no longer waits for a decision"),
                current: Some(status),
            });
        }
        Ok((r, ent.approvers.clone()))
    }

    /// Refuses a decision on a request whose quorum is already met: it
    /// waits only for the grant now.
    fn refuse_if_decided(r: &AccessRequest, approvers: &Approvers) -> Result<(), ServiceError> {
        if quorum_met(r, approvers) {
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
        let who = self.api_decider(caller, on_behalf_of).await?;
        let door = Door {
            visible_to: Some(caller),
            nonce: None,
            retry_resumes: true,
        };
        self.record_approval(&who, id, &door, reason).await
    }

    /// Denies: any deny rejects the request at once, and ends the workflow.
    pub async fn deny(
        &self,
        caller: &Caller,
        id: &str,
        on_behalf_of: Option<&str>,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        let reason = required_reason(reason)?;
        let who = self.api_decider(caller, on_behalf_of).await?;
        let door = Door {
            visible_to: Some(caller),
            nonce: None,
            retry_resumes: false,
        };
        self.record_denial(&who, id, &door, reason).await
    }

    /// Approves as a decider another door verified (a Slack user).
    pub async fn approve_as(
        &self,
        who: &Decider,
        id: &str,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        let door = Door {
            visible_to: None,
            nonce: None,
            retry_resumes: false,
        };
        self.record_approval(who, id, &door, reason).await
    }

    /// Denies as a decider another door verified (a Slack user).
    pub async fn deny_as(
        &self,
        who: &Decider,
        id: &str,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        let reason = required_reason(reason)?;
        let door = Door {
            visible_to: None,
            nonce: None,
            retry_resumes: false,
        };
        self.record_denial(who, id, &door, reason).await
    }

    /// Approves with a verified signed link, consuming its nonce.
    pub async fn approve_with_link(
        &self,
        link: &LinkClaims,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        let who = self.link_decider(link).await?;
        let door = Door {
            visible_to: None,
            nonce: Some(&link.nonce),
            retry_resumes: false,
        };
        self.record_approval(&who, link.request_id.as_str(), &door, reason)
            .await
    }

    /// Denies with a verified signed link, consuming its nonce.
    pub async fn deny_with_link(
        &self,
        link: &LinkClaims,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        let reason = required_reason(reason)?;
        let who = self.link_decider(link).await?;
        let door = Door {
            visible_to: None,
            nonce: Some(&link.nonce),
            retry_resumes: false,
        };
        self.record_denial(&who, link.request_id.as_str(), &door, reason)
            .await
    }

    /// Checks a link against its request without deciding anything: what
    /// the confirmation page shows (a GET must never change state).
    pub async fn link_preview(&self, link: &LinkClaims) -> Result<AccessRequest, ServiceError> {
        let who = self.link_decider(link).await?;
        let door = Door {
            visible_to: None,
            nonce: Some(&link.nonce),
            retry_resumes: false,
        };
        let (r, approvers) = self
            .decidable(&who, link.request_id.as_str(), &door, &None)
            .await?;
        if r.decisions
            .iter()
            .any(|d| d.approver == who.principal && d.verdict == Verdict::Approve)
        {
            return Err(already_approved());
        }
        Self::refuse_if_decided(&r, &approvers)?;
        Ok(r)
    }

    /// A decision's guarded write can lose to a write that changed nothing
    /// a decision depends on (the notifier recording where it told the
    /// approvers): the request is then still APPROVAL_PENDING, and the
    /// decision is made again on a fresh read instead of being refused.
    async fn retrying<F, Fut>(&self, mut attempt: F) -> Result<AccessRequest, ServiceError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<AccessRequest, ServiceError>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Err(ServiceError::Conflict {
                    code: "changed_meanwhile",
                    current: Some(Status::ApprovalPending),
                    ..
                }) if tries < 4 => continue,
                Err(ServiceError::Conflict {
                    code: "changed_meanwhile",
                    current,
                    ..
                }) => return Err(lost_race(StoreError::Conflict { current })),
                other => return other,
            }
        }
    }

    async fn record_approval(
        &self,
        who: &Decider,
        id: &str,
        door: &Door<'_>,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        self.retrying(|| self.record_approval_once(who, id, door, reason.clone()))
            .await
    }

    async fn record_denial(
        &self,
        who: &Decider,
        id: &str,
        door: &Door<'_>,
        reason: String,
    ) -> Result<AccessRequest, ServiceError> {
        self.retrying(|| self.record_denial_once(who, id, door, reason.clone()))
            .await
    }

    async fn record_approval_once(
        &self,
        who: &Decider,
        id: &str,
        door: &Door<'_>,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        let (r, approvers) = self.decidable(who, id, door, &reason).await?;
        let token = r
            .task_token
            .clone()
            .ok_or_else(|| ServiceError::Unavailable {
                code: "not_ready",
                message: "the approval task is not waiting yet; retry in a moment".into(),
            })?;
        let already = r.decisions.iter().any(|d| d.approver == who.principal);
        if !already {
            Self::refuse_if_decided(&r, &approvers)?;
        }
        let next = if already {
            if !door.retry_resumes || !quorum_met(&r, &approvers) {
                return Err(already_approved());
            }
            // A retry after the workflow could not be resumed: resume it again.
            r.clone()
        } else {
            let now = self.clock.now();
            let mut next = r.clone();
            next.version += 1;
            next.updated_at = now;
            next.decisions.push(Decision {
                approver: who.principal.clone(),
                verdict: Verdict::Approve,
                at: now,
                reason: reason.clone(),
                groups: who.groups.clone(),
                via: Some(who.via.to_string()),
                trusted_caller: who.through.clone(),
            });
            if let Some(nonce) = door.nonce {
                next.used_link_nonces.push(nonce.to_string());
            }
            let count = next
                .decisions
                .iter()
                .filter(|d| d.verdict == Verdict::Approve)
                .count();
            let met = missing_for_quorum(&next, &approvers).is_none();
            let progress = match missing_for_quorum(&next, &approvers) {
                None => {
                    next.decided_at = Some(now);
                    format!("{count} of {}, quorum met", approvers.required_approvals)
                }
                Some((_, groups)) if !groups.is_empty() => format!(
                    "{count} of {}; still needs one from: {}",
                    approvers.required_approvals,
                    groups.join(", ")
                ),
                Some(_) => format!("{count} of {}", approvers.required_approvals),
            };
            let note = match &reason {
                Some(text) => format!("approved via {} ({progress}): {text}", who.via),
                None => format!("approved via {} ({progress})", who.via),
            };
            // The approval that meets the quorum moves the request to
            // APPROVED in this same guarded write: from here on a cancel or
            // another decision loses, and the workflow may grant.
            let event = if met {
                let change = Change {
                    actor: who.actor(),
                    at: now,
                    reason: None,
                    source: who.via,
                };
                let (approved, mut event) = next.transition(Status::Approved, &change)?;
                next = approved;
                next.version = r.version + 1;
                event.from = Some(r.status);
                event.reason = Some(note);
                event
            } else {
                AuditEvent::new(
                    &r.request_id,
                    now,
                    who.actor(),
                    AuditAction::Decision,
                    None,
                    None,
                    Some(note),
                    who.via,
                )
            };
            self.store
                .transition(&r, &next, &event)
                .await
                .map_err(changed_meanwhile)?;
            next
        };
        if quorum_met(&next, &approvers) {
            let output = json!({
                "decision": "approved",
                "approvers": next.decisions.iter().filter(|d| d.verdict == Verdict::Approve).map(|d| d.approver.as_str()).collect::<Vec<_>>(),
            });
            if let Err(e) = self.workflow.send_task_success(&token, &output).await {
                if matches!(e, crate::ports::WorkflowError::TaskGone) {
                    // The approval window closed as the quorum was met: the
                    // workflow records APPROVAL_TIMED_OUT and grants nothing.
                    return Err(ServiceError::Conflict {
                        code: "approval_window_closed",
                        field: None,
                        message: "the approval window closed before this approval reached the workflow; nothing will be granted".into(),
                        current: Some(next.status),
                    });
                }
                tracing::error!(request_id = %next.request_id, error = %e, "could not resume the workflow after approval");
                return Err(ServiceError::Unavailable {
                    code: "workflow_unavailable",
                    message: "the approval is recorded but the workflow could not be resumed; approve again to retry".into(),
                });
            }
        }
        tracing::info!(request_id = %next.request_id, approver = %who.principal, via = who.via, "approved");
        Ok(next)
    }

    async fn record_denial_once(
        &self,
        who: &Decider,
        id: &str,
        door: &Door<'_>,
        reason: String,
    ) -> Result<AccessRequest, ServiceError> {
        let reason = Some(reason);
        let (r, approvers) = self.decidable(who, id, door, &reason).await?;
        Self::refuse_if_decided(&r, &approvers)?;
        let token = r.task_token.clone();
        let now = self.clock.now();
        let change = Change {
            actor: who.actor(),
            at: now,
            reason: reason.clone(),
            source: who.via,
        };
        let (mut next, event) = r.transition(Status::Denied, &change)?;
        next.decisions.push(Decision {
            approver: who.principal.clone(),
            verdict: Verdict::Deny,
            at: now,
            reason: reason.clone(),
            groups: who.groups.clone(),
            via: Some(who.via.to_string()),
            trusted_caller: who.through.clone(),
        });
        if let Some(nonce) = door.nonce {
            next.used_link_nonces.push(nonce.to_string());
        }
        self.store
            .transition(&r, &next, &event)
            .await
            .map_err(changed_meanwhile)?;
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
        tracing::info!(request_id = %next.request_id, approver = %who.principal, via = who.via, "denied");
        Ok(next)
    }
}

fn required_reason(reason: Option<String>) -> Result<String, ServiceError> {
    reason
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| ServiceError::invalid("reason", "is required: tell the requester why"))
}

fn already_approved() -> ServiceError {
    ServiceError::Conflict {
        code: "already_decided",
        field: None,
        message: "you already approved; it waits for another approver".into(),
        current: Some(Status::ApprovalPending),
    }
}

/// A decision's guarded write that lost: [`Broker::retrying`] decides
/// whether to try again (still waiting) or answer [`lost_race`].
fn changed_meanwhile(e: StoreError) -> ServiceError {
    match e {
        StoreError::Conflict { current } => ServiceError::Conflict {
            code: "changed_meanwhile",
            field: None,
            message: "the request changed meanwhile".into(),
            current,
        },
        other => other.into(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(who: &str, groups: &[&str], verdict: Verdict) -> Decision {
        Decision {
            approver: Principal::parse(who).unwrap(),
            verdict,
            at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            reason: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            via: Some("link".into()),
            trusted_caller: None,
        }
    }

    fn with(decisions: Vec<Decision>) -> AccessRequest {
        let mut r = crate::request::tests::sample(
            chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        );
        r.decisions = decisions;
        r
    }

    #[test]
    fn quorum_counts_approvals_and_groups() {
        let two = Approvers {
            required_approvals: 2,
            ..Approvers::default()
        };
        let one_each = Approvers {
            required_approvals: 2,
            groups: vec!["leads".into(), "security".into()],
            required_groups: vec!["leads".into(), "security".into()],
            ..Approvers::default()
        };
        type Case<'a> = (
            &'a str,
            &'a Approvers,
            Vec<Decision>,
            Option<(u32, Vec<String>)>,
        );
        let cases: Vec<Case> = vec![
            ("nobody yet", &two, vec![], Some((2, vec![]))),
            (
                "one of two",
                &two,
                vec![approval("a@x.com", &[], Verdict::Approve)],
                Some((1, vec![])),
            ),
            (
                "two of two",
                &two,
                vec![
                    approval("a@x.com", &[], Verdict::Approve),
                    approval("b@x.com", &[], Verdict::Approve),
                ],
                None,
            ),
            (
                "a deny is not an approval",
                &two,
                vec![
                    approval("a@x.com", &[], Verdict::Approve),
                    approval("b@x.com", &[], Verdict::Deny),
                ],
                Some((1, vec![])),
            ),
            (
                "two leads do not make a security approval",
                &one_each,
                vec![
                    approval("a@x.com", &["leads"], Verdict::Approve),
                    approval("b@x.com", &["leads"], Verdict::Approve),
                ],
                Some((1, vec!["security".into()])),
            ),
            (
                "one from each",
                &one_each,
                vec![
                    approval("a@x.com", &["leads"], Verdict::Approve),
                    approval("b@x.com", &["security"], Verdict::Approve),
                ],
                None,
            ),
        ];
        for (what, approvers, decisions, want) in cases {
            let r = with(decisions);
            assert_eq!(missing_for_quorum(&r, approvers), want, "{what}");
            assert_eq!(quorum_met(&r, approvers), want.is_none(), "{what}");
        }
    }
}
