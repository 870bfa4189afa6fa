//! The workflow's task steps: what each task Lambda (and the local engine's
//! in-process dispatch) does, as plain functions over the ports.
//!
//! Every step is idempotent: Step Functions delivers at least once and the
//! local engine re-invokes a task interrupted by a restart. A step that finds
//! the request already where it would put it succeeds again; a step that
//! finds the request moved on (cancelled, revoked) fails with the named error
//! `NoLongerApplies`, which the definition turns into a quiet end.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::attachments::{self, AttachmentKey, SettleError};
use crate::catalog::Catalog;
use crate::ids::RequestId;
use crate::inline_grants::{self, InlineGrant};
use crate::ledger::{GrantIam, LedgerKind};
use crate::lifecycle::Status;
use crate::ports::{
    ApprovalNotice, AssumeRoleSpec, Clock, CredentialIssuer, GrantError, IamPrincipal, Notifier,
    NotifyError, RequestStore, StoreError,
};
use crate::request::{
    AccessRequest, AuditAction, AuditEvent, Change, GrantTarget, TaskToken, system_actor,
};
use crate::revocation;

/// A task step's failure, with the stable `errorType` the state machine's
/// `Retry`/`Catch` match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The request moved on without this execution.
    #[error("{0}")]
    NoLongerApplies(String),
    /// The Revoke step found `expiresAt` moved later (an approved
    /// extension): the definition goes back to RecordGranted and a new Wait.
    #[error("{0}")]
    Extended(String),
    /// Worth retrying: throttling, a conflict with a concurrent write, a
    /// dependency briefly down.
    #[error("{0}")]
    Transient(String),
    /// The payload is not what the definition sends: a bug, not retried.
    #[error("{0}")]
    InvalidInput(String),
    /// The grant could not be made; the message names the cause and the fix.
    #[error("{0}")]
    GrantFailed(String),
    #[error("{0}")]
    RequestNotFound(String),
    #[error("{0}")]
    Internal(String),
}

impl TaskError {
    /// The Lambda `errorType`; `state-machine/approval.asl.json` matches these.
    pub fn error_type(&self) -> &'static str {
        match self {
            TaskError::NoLongerApplies(_) => "NoLongerApplies",
            TaskError::Extended(_) => "Extended",
            TaskError::Transient(_) => "Transient",
            TaskError::InvalidInput(_) => "InvalidInput",
            TaskError::GrantFailed(_) => "GrantFailed",
            TaskError::RequestNotFound(_) => "RequestNotFound",
            TaskError::Internal(_) => "Internal",
        }
    }
}

impl From<StoreError> for TaskError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => TaskError::Transient(e.to_string()),
            StoreError::NotFound(id) => TaskError::RequestNotFound(format!("no request {id}")),
            StoreError::Backend(m) => TaskError::Transient(format!("store: {m}")),
            other => TaskError::Internal(other.to_string()),
        }
    }
}

impl From<SettleError> for TaskError {
    fn from(e: SettleError) -> Self {
        match e {
            SettleError::Store(s) => s.into(),
            SettleError::Grant(g) => g.into(),
            SettleError::Unsettled(m) => TaskError::Transient(m),
        }
    }
}

impl From<GrantError> for TaskError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::Transient(m) => TaskError::Transient(m),
            other => TaskError::GrantFailed(other.to_string()),
        }
    }
}

/// The dependencies of the task steps, built once per Lambda (or once in
/// `jit-local`).
#[derive(Clone)]
pub struct Tasks {
    pub store: Arc<dyn RequestStore>,
    pub catalog: Arc<Catalog>,
    pub clock: Arc<dyn Clock>,
    pub issuer: Arc<dyn CredentialIssuer>,
    /// Every IAM change (attachments, the session denies of early revokes)
    /// goes through here, written to the grant ledger around the call.
    pub iam: GrantIam,
    pub notifier: Arc<dyn Notifier>,
}

/// The longest reason kept on a record from an error cause.
const MAX_REASON: usize = 1024;

fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_REASON {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX_REASON - 1).collect();
        out.push('…');
        out
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusPayload {
    request_id: String,
    to: Status,
    reason: Option<String>,
    /// A caught error (`{"Error", "Cause"}`) when recording FAILED.
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdPayload {
    request_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevokePayload {
    request_id: String,
    /// The Undo state: end a request that left the workflow, undoing any grant.
    #[serde(default)]
    undo: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApprovalPayload {
    request_id: String,
    task_token: String,
}

fn parse<T: for<'de> Deserialize<'de>>(payload: Value) -> Result<T, TaskError> {
    serde_json::from_value(payload).map_err(|e| TaskError::InvalidInput(format!("payload: {e}")))
}

fn request_id(s: &str) -> Result<RequestId, TaskError> {
    RequestId::parse(s).map_err(|e| TaskError::InvalidInput(format!("requestId: {e}")))
}

/// A readable reason from a caught Step Functions error. Lambda causes are
/// JSON (`{"errorType","errorMessage"}`); keep the message.
fn reason_from_error(error: &Value) -> String {
    let name = error
        .get("Error")
        .and_then(Value::as_str)
        .unwrap_or("Error");
    let cause = error.get("Cause").and_then(Value::as_str).unwrap_or("");
    let message = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|c| {
            c.get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| cause.to_string());
    if message.is_empty() {
        name.to_string()
    } else {
        clip(&format!("{name}: {message}"))
    }
}

fn answer(r: &AccessRequest) -> Value {
    let mut v = json!({ "requestId": r.request_id, "status": r.status });
    if let Some(exp) = r.expires_at {
        v["expiresAt"] = json!(exp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    v
}

impl Tasks {
    async fn load(&self, id: &RequestId) -> Result<AccessRequest, TaskError> {
        self.store
            .get(id)
            .await?
            .ok_or_else(|| TaskError::RequestNotFound(format!("no request {id}")))
    }

    fn change(&self, reason: Option<String>) -> Change {
        Change {
            actor: system_actor("workflow"),
            at: self.clock.now(),
            reason,
            source: "workflow",
        }
    }

    /// Moves a request to `to` (guarded, audited). Already there: success.
    /// No longer allowed (it moved on): `NoLongerApplies`.
    async fn move_to(
        &self,
        id: &RequestId,
        to: Status,
        reason: Option<String>,
    ) -> Result<AccessRequest, TaskError> {
        // A lost race with a concurrent write is re-read and retried a few
        // times here; beyond that the definition's Retry takes over.
        for _ in 0..3 {
            let r = self.load(id).await?;
            if r.status == to {
                return Ok(r);
            }
            if !r.status.can_become(to) {
                return Err(TaskError::NoLongerApplies(format!(
                    "the request is {}; it cannot become {to}",
                    r.status
                )));
            }
            let (next, event) = r
                .transition(to, &self.change(reason.clone()))
                .map_err(|e| TaskError::NoLongerApplies(e.to_string()))?;
            match self.store.transition(&r, &next, &event).await {
                Ok(()) => return Ok(next),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(TaskError::Transient(format!(
            "request {id} kept changing; retry"
        )))
    }

    /// `update-status`: a guarded transition plus its audit event.
    pub async fn update_status(&self, payload: Value) -> Result<Value, TaskError> {
        let p: StatusPayload = parse(payload)?;
        let id = request_id(&p.request_id)?;
        let reason = match (&p.error, p.reason) {
            (Some(e), _) => Some(reason_from_error(e)),
            (None, r) => r.map(|r| clip(&r)),
        };
        if p.to == Status::Validating {
            // A re-run Validate (a retried Lambda, a resumed execution)
            // on a request this execution already moved on answers where
            // the request is, and the definition's Route goes on from there.
            let r = self.load(&id).await?;
            if matches!(
                r.status,
                Status::PolicyGeneration
                    | Status::ApprovalPending
                    | Status::Approved
                    | Status::Granted
            ) {
                tracing::info!(request_id = %id, status = %r.status, "validate re-run: continuing");
                return Ok(answer(&r));
            }
            self.revalidate(&id).await?;
        }
        let r = self.move_to(&id, p.to, reason).await?;
        if matches!(r.status, Status::Granted | Status::Failed) {
            // Attach mode: GRANTED — another grant of the same policy to the
            // same principal may have ended between the Grant step's attach
            // and this record; make sure the policy is attached now.
            // FAILED — whatever the Grant step attached has no live grant
            // any more; detach it (unless another grant covers it).
            self.settle_attachment(&r, None).await?;
        }
        tracing::info!(request_id = %id, status = %r.status, "status recorded");
        Ok(answer(&r))
    }

    /// The catalog may have changed since the request was made: the
    /// entitlement must still exist and the requester still be eligible.
    async fn revalidate(&self, id: &RequestId) -> Result<(), TaskError> {
        let r = self.load(id).await?;
        if r.status != Status::Requested {
            return Ok(());
        }
        let why = match self.catalog.get(&r.entitlement) {
            None => Some(format!(
                "the entitlement `{}` is no longer in the catalog",
                r.entitlement
            )),
            Some(e) if !self.catalog.is_eligible(e, &r.requester.groups) => Some(format!(
                "the requester is no longer eligible for `{}`",
                r.entitlement
            )),
            Some(_) => None,
        };
        if let Some(why) = why {
            self.move_to(id, Status::Validating, None).await?;
            self.move_to(id, Status::Denied, Some(why.clone())).await?;
            return Err(TaskError::NoLongerApplies(why));
        }
        Ok(())
    }

    /// `slack-notify`: stores the task token on the record (moving it to
    /// APPROVAL_PENDING) and tells the approvers. The token goes nowhere else.
    pub async fn request_approval(&self, payload: Value) -> Result<Value, TaskError> {
        let p: ApprovalPayload = parse(payload)?;
        let id = request_id(&p.request_id)?;
        let token = TaskToken::parse(p.task_token)
            .map_err(|e| TaskError::InvalidInput(format!("taskToken: {}", e.0)))?;
        let r = self.store_token(&id, token).await?;
        if r.status == Status::Approved {
            // Decided already: nobody is asked again.
            return Ok(answer(&r));
        }
        let approvers = self
            .catalog
            .get(&r.entitlement)
            .map(|e| (e.approvers.clone(), e.approval_timeout_secs))
            .ok_or_else(|| {
                TaskError::NoLongerApplies(format!(
                    "the entitlement `{}` is no longer in the catalog",
                    r.entitlement
                ))
            })?;
        let mut shown = r.clone();
        shown.task_token = None;
        let notice = ApprovalNotice {
            request: shown,
            approvers: approvers.0,
            deadline: self.clock.now() + chrono::Duration::seconds(approvers.1 as i64),
        };
        if let Err(e) = self.notifier.approval_requested(&notice).await {
            let event = AuditEvent::new(
                &id,
                self.clock.now(),
                system_actor("notifier"),
                AuditAction::Note,
                None,
                None,
                Some(clip(&format!("notifying approvers failed: {e}"))),
                "workflow",
            );
            self.store.append_audit(&event).await?;
            return Err(match e {
                NotifyError::Transient(m) => TaskError::Transient(m),
                NotifyError::Failed(m) => TaskError::Internal(m),
            });
        }
        Ok(answer(&r))
    }

    async fn store_token(
        &self,
        id: &RequestId,
        token: TaskToken,
    ) -> Result<AccessRequest, TaskError> {
        for _ in 0..3 {
            let r = self.load(id).await?;
            let (mut next, event) = match r.status {
                Status::ApprovalPending | Status::Approved => {
                    // A retried notify step gets a new token: keep the latest.
                    // On an APPROVED request (the approval was recorded, but
                    // the task that heard of it ran again) the new task is
                    // resumed by the reconcile pass with this token.
                    let mut next = r.clone();
                    next.version += 1;
                    next.updated_at = self.clock.now();
                    let note = if r.status == Status::Approved {
                        "approval task restarted after the approval; the reconcile pass resumes it"
                    } else {
                        "approval task restarted"
                    };
                    let event = AuditEvent::new(
                        id,
                        self.clock.now(),
                        system_actor("workflow"),
                        AuditAction::Note,
                        None,
                        None,
                        Some(note.into()),
                        "workflow",
                    );
                    (next, event)
                }
                s if s.can_become(Status::ApprovalPending) => r
                    .transition(Status::ApprovalPending, &self.change(None))
                    .map_err(|e| TaskError::NoLongerApplies(e.to_string()))?,
                s => {
                    return Err(TaskError::NoLongerApplies(format!(
                        "the request is {s}; it no longer waits for approval"
                    )));
                }
            };
            next.task_token = Some(token.clone());
            match self.store.transition(&r, &next, &event).await {
                Ok(()) => return Ok(next),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(TaskError::Transient(format!(
            "request {id} kept changing; retry"
        )))
    }

    /// `assume-role` (the Grant step). Assume-role entitlements: prove the
    /// grant works with one `AssumeRole` (shortest session, the session
    /// policy, `SourceIdentity` = requester) and discard the credentials, so a
    /// broken trust policy fails the request now, with STS's reason.
    /// Attach-policy entitlements: attach the policy to the requester.
    pub async fn grant(&self, payload: Value) -> Result<Value, TaskError> {
        let p: IdPayload = parse(payload)?;
        let id = request_id(&p.request_id)?;
        let r = self.approved_for_grant(&id).await?;
        match &r.target {
            GrantTarget::AssumeRole { role_arn } => {
                // The window is recorded after this step; it ends no earlier
                // than now + the duration, so that bounds the proof's session.
                let window_end = r
                    .expires_at
                    .unwrap_or_else(|| self.clock.now() + r.duration.as_chrono());
                let policy =
                    crate::session_policy::bounded(r.session_policy.as_deref(), window_end)
                        .map_err(|e| TaskError::GrantFailed(e.to_string()))?;
                let spec = AssumeRoleSpec {
                    role_arn: role_arn.clone(),
                    session_name: session_name(&r),
                    source_identity: source_identity(&r.requester.principal),
                    duration_secs: crate::duration::GrantDuration::MIN.secs(),
                    session_policy: Some(policy),
                    tags: vec![("jit:request-id".into(), r.request_id.to_string())],
                };
                // The credentials are dropped here, unread: this call only
                // proves the role can be assumed for this requester.
                let _proof = self.issuer.assume_role(&spec).await?;
                tracing::info!(request_id = %id, "grant verified with one AssumeRole");
            }
            GrantTarget::AttachPolicy { .. } if r.session_policy.is_some() => {
                // Narrowed by a scope: the generated policy, inline as
                // `jit-<id>`, instead of the managed policy.
                let inline = InlineGrant::of(&r)
                    .expect("an attach request with a policy")
                    .map_err(TaskError::GrantFailed)?;
                inline.put(&self.iam).await?;
                tracing::info!(request_id = %id, policy = %inline.name, "inline policy put");
            }
            GrantTarget::AttachPolicy { policy_name } => {
                let to = IamPrincipal::for_requester(&r.requester.principal)
                    .map_err(TaskError::GrantFailed)?;
                self.iam
                    .attach(&r.request_id, &r.account, &to, policy_name)
                    .await?;
                tracing::info!(request_id = %id, policy = %policy_name, "policy attached");
            }
            GrantTarget::PermissionSet { permission_set, .. } => {
                if let Err((outcomes, e)) = crate::assignments::grant_all(
                    self.store.as_ref(),
                    &self.iam,
                    self.clock.as_ref(),
                    &r,
                )
                .await
                {
                    // Recorded per account on the trail, whatever comes next
                    // (a retry, or FAILED with the rest rolled back).
                    let rolled_back = !matches!(e, GrantError::Transient(_));
                    let note = format!(
                        "permission set {permission_set}: {}{}",
                        if outcomes.is_empty() {
                            e.to_string()
                        } else {
                            crate::assignments::describe(&outcomes)
                        },
                        if rolled_back && outcomes.iter().any(|o| o.result.is_ok()) {
                            " — the accounts assigned were rolled back"
                        } else if rolled_back {
                            ""
                        } else {
                            " — retried"
                        }
                    );
                    let event = AuditEvent::new(
                        &r.request_id,
                        self.clock.now(),
                        system_actor("workflow"),
                        AuditAction::Note,
                        None,
                        None,
                        Some(clip(&note)),
                        "workflow",
                    );
                    self.store.append_audit(&event).await?;
                    tracing::warn!(request_id = %id, "{note}");
                    return Err(e.into());
                }
                tracing::info!(request_id = %id, permission_set = %permission_set, "permission set assigned");
            }
        }
        Ok(json!({ "requestId": id, "granted": true }))
    }

    /// The request the Grant step may act on: APPROVED (or GRANTED, a
    /// re-run). On the auto-approve path the request is still VALIDATING:
    /// it is moved to APPROVED first, in a guarded write, so a cancel
    /// either lands before it (and nothing is granted) or is refused.
    async fn approved_for_grant(&self, id: &RequestId) -> Result<AccessRequest, TaskError> {
        let r = self.load(id).await?;
        match r.status {
            Status::Approved | Status::Granted => Ok(r),
            Status::Validating | Status::PolicyGeneration => {
                let why = match &r.break_glass {
                    Some(b) => format!(
                        "break-glass: self-approved by the requester ({})",
                        b.incident
                    ),
                    None => "auto-approved".into(),
                };
                self.move_to(id, Status::Approved, Some(why)).await
            }
            s => Err(TaskError::NoLongerApplies(format!(
                "the request is {s}; nothing to grant"
            ))),
        }
    }

    /// The Undo step: the workflow is ending a request that left it
    /// (`NoLongerApplies`) after a grant may have begun. Whatever the
    /// Grant step attached and no live grant covers is detached, and a
    /// request still APPROVED (its grant never recorded) is recorded
    /// FAILED. Idempotent; ends quietly when there is nothing to undo.
    async fn undo(&self, id: &RequestId) -> Result<Value, TaskError> {
        let r = self.load(id).await?;
        let r = if r.status == Status::Approved {
            self.move_to(
                id,
                Status::Failed,
                Some("the workflow ended before the grant was recorded; undone".into()),
            )
            .await?
        } else {
            r
        };
        if !r.grant_is_live(self.clock.now()) {
            self.settle_attachment(&r, None).await?;
        }
        tracing::info!(request_id = %id, status = %r.status, "undo: nothing left granted");
        Ok(answer(&r))
    }

    /// `expire` (the Revoke step): detach in attach mode (unless another
    /// live grant covers the same attachment), record EXPIRED. A request
    /// whose grant was never recorded (RecordGranted failed) is cleaned up
    /// and recorded FAILED instead. `expiresAt` moved later by an approved
    /// extension: `Extended`, and the definition waits again. A request
    /// revoked meanwhile: its attachment is settled, then `NoLongerApplies`.
    /// Pending revocation denies of any request are swept on the way out.
    pub async fn revoke(&self, payload: Value) -> Result<Value, TaskError> {
        let p: RevokePayload = parse(payload)?;
        let id = request_id(&p.request_id)?;
        if p.undo {
            return self.undo(&id).await;
        }
        let result = self.end_grant(&id).await;
        if !matches!(result, Err(TaskError::Extended(_))) {
            // Best effort: the schedule and the TTL backstop sweep too.
            if let Err(e) = self.sweep_revocations().await {
                tracing::warn!(error = %e, "sweeping revocation denies failed");
            }
        }
        result
    }

    async fn end_grant(&self, id: &RequestId) -> Result<Value, TaskError> {
        let mut r = self.load(id).await?;
        for _ in 0..3 {
            match r.status {
                Status::Expired => {
                    // A retry after the record: finish the detach.
                    self.settle_attachment(&r, None).await?;
                    return Ok(answer(&r));
                }
                Status::Revoked => {
                    self.settle_attachment(&r, None).await?;
                    return Err(TaskError::NoLongerApplies(
                        "the grant was already revoked".into(),
                    ));
                }
                _ => {}
            }
            if let Some(moved) = self.extended(&r) {
                return Err(TaskError::Extended(moved));
            }
            // Detach first (unless another live grant covers it): a detach
            // that fails leaves the request GRANTED, to be retried, and
            // recorded FAILED if it never works.
            let attached = match AttachmentKey::of(&r) {
                Some(key) => Some(
                    attachments::detach_unless_covered(
                        self.store.as_ref(),
                        &self.iam,
                        self.clock.as_ref(),
                        &key.map_err(TaskError::GrantFailed)?,
                        &r.request_id,
                    )
                    .await?,
                ),
                None => match InlineGrant::of(&r) {
                    // Nobody shares `jit-<id>`: delete it, then record.
                    Some(inline) => {
                        inline
                            .map_err(TaskError::GrantFailed)?
                            .remove(&self.iam)
                            .await?;
                        Some(false)
                    }
                    None => None,
                },
            };
            let assigned = if matches!(r.target, GrantTarget::PermissionSet { .. }) {
                Some(self.unassign_unless_covered(&r).await?)
            } else {
                None
            };
            let (to, reason) = if r.status == Status::Granted {
                (Status::Expired, None)
            } else if r.status.can_become(Status::Failed) {
                (
                    Status::Failed,
                    Some("the grant could not be recorded and was undone".to_string()),
                )
            } else {
                tracing::info!(request_id = %id, status = %r.status, "grant ended");
                return Ok(answer(&r));
            };
            let (next, event) = r
                .transition(to, &self.change(reason))
                .map_err(|e| TaskError::NoLongerApplies(e.to_string()))?;
            match self.store.transition(&r, &next, &event).await {
                Ok(()) => {
                    // Of two grants of one attachment ending at once, the
                    // last to record sees the other ended: settle after.
                    if let Some(kept) = &assigned {
                        self.settle_assignments(&next, Some(kept)).await?;
                    } else {
                        self.settle_attachment(&next, attached).await?;
                    }
                    tracing::info!(request_id = %id, status = %next.status, "grant ended");
                    return Ok(answer(&next));
                }
                // Changed meanwhile (an extension approved, a revoke): look again.
                Err(StoreError::Conflict { .. }) => r = self.load(id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(TaskError::Transient(format!(
            "request {id} kept changing; retry"
        )))
    }

    /// `Some(why)` when a GRANTED request's `expiresAt` is still ahead: an
    /// extension moved it after the Wait began. A few seconds of slack
    /// absorb clock differences between the timer and this step
    /// (extensions are at least a minute).
    fn extended(&self, r: &AccessRequest) -> Option<String> {
        let exp = r.expires_at?;
        (r.status == Status::Granted && exp > self.clock.now() + chrono::Duration::seconds(5)).then(
            || {
                format!(
                    "expiresAt moved to {}: the grant was extended",
                    exp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            },
        )
    }

    /// Brings the request's attachment (attach mode) in line with the live
    /// grants in the store (see `attachments`). Nothing in assume-role mode.
    async fn settle_attachment(
        &self,
        r: &AccessRequest,
        known: Option<bool>,
    ) -> Result<(), TaskError> {
        if matches!(r.target, GrantTarget::PermissionSet { .. }) {
            return self.settle_assignments(r, None).await;
        }
        if let Some(inline) = InlineGrant::of(r) {
            let inline = inline.map_err(TaskError::GrantFailed)?;
            return inline_grants::settle(
                self.store.as_ref(),
                &self.iam,
                self.clock.as_ref(),
                &inline,
                known,
            )
            .await
            .map(|_| ())
            .map_err(TaskError::from);
        }
        let Some(key) = AttachmentKey::of(r) else {
            return Ok(());
        };
        let key = key.map_err(TaskError::GrantFailed)?;
        match attachments::settle(
            self.store.as_ref(),
            &self.iam,
            self.clock.as_ref(),
            &key,
            known,
            &r.request_id,
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = TaskError::from(e);
                if matches!(err, TaskError::GrantFailed(_)) {
                    // Permanent: say on the record that the policy may
                    // still be attached, for the operator.
                    let event = AuditEvent::new(
                        &r.request_id,
                        self.clock.now(),
                        system_actor("workflow"),
                        AuditAction::Note,
                        None,
                        None,
                        Some(clip(&format!(
                            "the policy {} may still be attached to {:?}: {err}",
                            key.policy, key.principal
                        ))),
                        "workflow",
                    );
                    self.store.append_audit(&event).await?;
                }
                Err(err)
            }
        }
    }

    /// Brings each of a permission-set request's assignments in line with
    /// the live grants in the store (see `assignments`). `known`: what the
    /// caller just did per assignment (left in place or not).
    async fn settle_assignments(
        &self,
        r: &AccessRequest,
        known: Option<&[bool]>,
    ) -> Result<(), TaskError> {
        let Some(manager) = self.iam.assignments() else {
            return Err(TaskError::GrantFailed(
                "this function has no Identity Center adapter configured (JIT_IDC_ENABLED)".into(),
            ));
        };
        let list = match crate::assignments::of(manager, r).await {
            None => return Ok(()),
            Some(Ok(list)) => list,
            // No user (or permission set) any more: nothing this request can
            // name is assigned; whatever the ledger holds, the reconciler
            // removes by its ids.
            Some(Err(GrantError::PrincipalMissing(_) | GrantError::PolicyMissing(_))) => {
                return Ok(());
            }
            Some(Err(e)) => return Err(e.into()),
        };
        for (i, a) in list.iter().enumerate() {
            crate::assignments::settle(
                self.store.as_ref(),
                &self.iam,
                self.clock.as_ref(),
                a,
                known.and_then(|k| k.get(i).copied()),
                &r.request_id,
            )
            .await?;
        }
        Ok(())
    }

    /// Before a permission-set grant's end is recorded: every assignment
    /// deleted unless another live grant needs it. What was left in place,
    /// per assignment.
    async fn unassign_unless_covered(&self, r: &AccessRequest) -> Result<Vec<bool>, TaskError> {
        let Some(manager) = self.iam.assignments() else {
            return Err(TaskError::GrantFailed(
                "this function has no Identity Center adapter configured (JIT_IDC_ENABLED)".into(),
            ));
        };
        let list = match crate::assignments::of(manager, r).await {
            None => return Ok(vec![]),
            Some(Ok(list)) => list,
            Some(Err(GrantError::PrincipalMissing(_) | GrantError::PolicyMissing(_))) => {
                return Ok(vec![]);
            }
            Some(Err(e)) => return Err(e.into()),
        };
        let mut kept = Vec::with_capacity(list.len());
        for a in &list {
            kept.push(
                crate::assignments::unassign_unless_covered(
                    self.store.as_ref(),
                    &self.iam,
                    self.clock.as_ref(),
                    a,
                    &r.request_id,
                )
                .await?,
            );
        }
        Ok(kept)
    }

    /// Places revocation denies not yet on their role and removes those no
    /// session can need any more (see `revocation`). Run on a schedule by
    /// the `expire` Lambda and `jit-local`, and after each Revoke step.
    pub async fn sweep_revocations(&self) -> Result<revocation::SweepReport, TaskError> {
        let report = revocation::sweep(self.store.as_ref(), &self.iam, self.clock.as_ref()).await?;
        if report != revocation::SweepReport::default() {
            tracing::info!(
                placed = report.placed,
                removed = report.removed,
                failed = report.failed,
                "revocation denies swept"
            );
        }
        Ok(report)
    }

    /// The reconciler over these ports, with the default grace period.
    pub fn reconciler(&self) -> crate::reconcile::Reconciler<'_> {
        crate::reconcile::Reconciler {
            store: self.store.as_ref(),
            iam: &self.iam,
            catalog: &self.catalog,
            clock: self.clock.as_ref(),
            grace: chrono::Duration::seconds(crate::reconcile::GRACE_SECS),
        }
    }

    /// One reconciler pass (see `reconcile`): IAM made to agree with the
    /// store. Run every minute by `jit-local` and the scheduled `expire`
    /// sweep, and by hand (`jit-local reconcile`); `dry_run` changes nothing.
    pub async fn reconcile(
        &self,
        dry_run: bool,
    ) -> Result<crate::reconcile::ReconcileReport, TaskError> {
        let report = self
            .reconciler()
            .run(dry_run)
            .await
            .map_err(|crate::reconcile::ReconcileError::Store(e)| TaskError::from(e))?;
        let g = &report.grants;
        if !(g.removed.is_empty()
            && g.finished.is_empty()
            && g.flagged.is_empty()
            && g.failed.is_empty())
        {
            tracing::info!(
                dry_run,
                removed = g.removed.len(),
                finished = g.finished.len(),
                flagged = g.flagged.len(),
                failed = g.failed.len(),
                "reconciled"
            );
        }
        Ok(report)
    }

    /// The TTL backstop: DynamoDB deleted a request item (days late, perhaps).
    /// Anything still live is revoked, a revocation deny still on its role
    /// is removed (every session it denied is long expired), and the
    /// removal is recorded.
    pub async fn expired_by_ttl(&self, removed: &AccessRequest) -> Result<(), TaskError> {
        let live = removed.status == Status::Granted;
        if live && let Some(inline) = InlineGrant::of(removed) {
            // The record is gone: nothing can need `jit-<id>` any more.
            inline
                .map_err(TaskError::GrantFailed)?
                .remove(&self.iam)
                .await?;
        }
        if live && let Some(key) = AttachmentKey::of(removed) {
            // The record is gone: detach unless another live grant of the
            // same attachment still needs it.
            attachments::detach_unless_covered(
                self.store.as_ref(),
                &self.iam,
                self.clock.as_ref(),
                &key.map_err(TaskError::GrantFailed)?,
                &removed.request_id,
            )
            .await?;
        }
        if live && matches!(removed.target, GrantTarget::PermissionSet { .. }) {
            self.unassign_unless_covered(removed).await?;
        }
        if let Some(deny) = removed.session_deny.as_ref().filter(|d| d.pending()) {
            self.iam
                .delete_role_policy(
                    &removed.request_id,
                    LedgerKind::RevokeDeny,
                    &deny.role_arn,
                    &deny.policy_name,
                )
                .await?;
        }
        let reason = if live {
            "TTL removed the record of a grant still marked GRANTED; the grant was revoked"
        } else {
            "TTL removed the record"
        };
        let event = AuditEvent::new(
            &removed.request_id,
            self.clock.now(),
            system_actor("ttl"),
            AuditAction::Note,
            Some(removed.status),
            None,
            Some(reason.into()),
            "expire",
        );
        self.store.append_audit(&event).await?;
        Ok(())
    }
}

/// `SourceIdentity` for a requester: 2-64 of `[\w+=,.@-]`, as STS requires.
/// An email is kept as is; an IAM ARN gives its last name (the user, or
/// the assumed-role session's name). The early-revoke deny matches it.
pub fn source_identity(p: &crate::ids::Principal) -> String {
    let text = p.as_str();
    let base = if text.starts_with("arn:") {
        text.rsplit(['/', ':']).next().unwrap_or(text)
    } else {
        text
    };
    let mut out: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    while out.len() < 2 {
        out.push('-');
    }
    out
}

/// `RoleSessionName`: at most 64 of `[\w+=,.@-]`; requester first so
/// CloudTrail is readable, the request id so it is unique.
pub fn session_name(r: &AccessRequest) -> String {
    let who: String = r
        .requester
        .principal
        .as_str()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64 - 27)
        .collect();
    format!("{who}-{}", r.request_id)
}
