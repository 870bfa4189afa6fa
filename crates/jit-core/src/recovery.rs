//! No request without a workflow: the reconcile pass for executions.
//!
//! A request is stored before its execution starts, and two writes to two
//! systems cannot be one atomic step: a crash (or, before it was fixed, a
//! client hanging up) between them leaves a request nobody will ever move.
//! This pass finds requests still before the grant (REQUESTED, VALIDATING,
//! POLICY_GENERATION) or decided but not granted (APPROVED) that have not
//! changed for a grace period, and asks the workflow where their execution
//! is:
//!
//! - **missing**: it is started, with the input derived from the record
//!   (idempotent: the execution is named after the request);
//! - **running**: nothing to do, except for an APPROVED request whose
//!   approval could not resume the waiting task — the task is resumed again
//!   with the token kept on the record;
//! - **ended**: the request can no longer move; it is recorded FAILED with
//!   the reason (the IAM reconciler removes anything its grant left).
//!
//! GRANTED requests whose execution ended are reported: their access ends
//! at `expiresAt` through the IAM reconciler, not through a Wait.
//!
//! Runs at `jit-local` start and every minute, and in the `expire` Lambda's
//! scheduled sweep on AWS.

use serde::Serialize;
use serde_json::json;

use crate::error::ServiceError;
use crate::ids::RequestId;
use crate::lifecycle::Status;
use crate::ports::{ExecutionState, PageRequest, WorkflowError};
use crate::request::{AccessRequest, Change, system_actor};
use crate::service::Broker;

/// How long a request may sit unchanged before the pass looks at it: long
/// enough that a create in flight (store write, then start) is never
/// raced, short enough that a lost start is repaired within a minute or two.
pub const GRACE_SECS: i64 = 60;

/// The statuses the pass looks at.
const LOOKED_AT: [Status; 5] = [
    Status::Requested,
    Status::Validating,
    Status::PolicyGeneration,
    Status::Approved,
    Status::Granted,
];

/// What one pass found and did, by request id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowReport {
    /// Requests whose missing execution was started.
    pub started: Vec<RequestId>,
    /// APPROVED requests whose waiting approval task was resumed again.
    pub resumed: Vec<RequestId>,
    /// Requests recorded FAILED because their execution had ended.
    pub failed: Vec<RequestId>,
    /// GRANTED requests with no running execution (reported only).
    pub granted_without_workflow: Vec<RequestId>,
    /// Requests the pass could not look at, with the reason.
    pub errors: Vec<(RequestId, String)>,
}

impl WorkflowReport {
    pub fn is_clean(&self) -> bool {
        self.started.is_empty()
            && self.resumed.is_empty()
            && self.failed.is_empty()
            && self.granted_without_workflow.is_empty()
            && self.errors.is_empty()
    }
}

impl Broker {
    /// One reconcile pass over executions (see the module docs). With
    /// `dry_run` it reports what it would do and changes nothing.
    pub async fn recover_workflows(&self, dry_run: bool) -> Result<WorkflowReport, ServiceError> {
        let mut report = WorkflowReport::default();
        let now = self.clock.now();
        let settled_before = now - chrono::Duration::seconds(GRACE_SECS);
        for status in LOOKED_AT {
            let mut cursor = None;
            loop {
                let page = self
                    .store
                    .list_by_status(
                        status,
                        &PageRequest {
                            limit: PageRequest::MAX_LIMIT,
                            cursor: cursor.take(),
                        },
                    )
                    .await?;
                for r in page.items.iter().filter(|r| r.updated_at <= settled_before) {
                    if let Err(e) = self.recover_one(r, dry_run, &mut report).await {
                        tracing::warn!(request_id = %r.request_id, error = %e, "reconcile: could not look at the request's workflow");
                        report.errors.push((r.request_id.clone(), e.to_string()));
                    }
                }
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
        }
        Ok(report)
    }

    async fn recover_one(
        &self,
        r: &AccessRequest,
        dry_run: bool,
        report: &mut WorkflowReport,
    ) -> Result<(), ServiceError> {
        let id = &r.request_id;
        let state = self
            .workflow
            .execution_state(id)
            .await
            .map_err(workflow_error)?;
        match (r.status, state) {
            (Status::Granted, ExecutionState::Running) => {}
            (Status::Granted, ExecutionState::Missing)
                if self.catalog.get(&r.entitlement).is_some() =>
            {
                // Granted by the instant workflow, whose caller died before
                // starting the Standard one that owns the expiry: start it
                // now (its Validate finds GRANTED and goes on to the Wait).
                if !dry_run {
                    let ent = self.catalog.get(&r.entitlement).expect("checked");
                    let input = self.workflow_input(r, ent);
                    self.workflow.start(&input).await.map_err(workflow_error)?;
                }
                tracing::warn!(request_id = %id, "reconcile: GRANTED (instant) without its standard workflow; started it");
                report.started.push(id.clone());
            }
            (Status::Granted, _) => {
                tracing::warn!(request_id = %id, "reconcile: GRANTED without a running workflow; the IAM reconciler ends it at expiresAt");
                report.granted_without_workflow.push(id.clone());
            }
            (_, ExecutionState::Missing) => {
                let Some(ent) = self.catalog.get(&r.entitlement) else {
                    // No input can be built: the entitlement is gone.
                    if !dry_run {
                        self.fail(r, "its workflow never started and the entitlement is no longer in the catalog").await?;
                    }
                    report.failed.push(id.clone());
                    return Ok(());
                };
                if !dry_run {
                    let input = self.workflow_input(r, ent);
                    self.workflow.start(&input).await.map_err(workflow_error)?;
                }
                tracing::warn!(request_id = %id, status = %r.status, "reconcile: the request had no workflow; started it");
                report.started.push(id.clone());
            }
            (Status::Approved, ExecutionState::Running) => {
                // The approval is recorded; the waiting task may never have
                // heard of it (the resume failed). Resuming twice is harmless:
                // a task already completed answers TaskGone.
                let Some(token) = r.task_token.as_ref() else {
                    return Ok(());
                };
                if dry_run {
                    report.resumed.push(id.clone());
                    return Ok(());
                }
                let output = json!({"decision": "approved", "resumedBy": "reconcile"});
                match self.workflow.send_task_success(token, &output).await {
                    Ok(()) => {
                        tracing::warn!(request_id = %id, "reconcile: resumed an approved request's workflow");
                        report.resumed.push(id.clone());
                    }
                    Err(WorkflowError::TaskGone) => {}
                    Err(e) => return Err(workflow_error(e)),
                }
            }
            (_, ExecutionState::Running) => {}
            (_, ExecutionState::Ended) => {
                if !dry_run {
                    self.fail(r, "its workflow ended without finishing the request")
                        .await?;
                }
                tracing::warn!(request_id = %id, status = %r.status, "reconcile: the request's workflow had ended; recorded FAILED");
                report.failed.push(id.clone());
            }
        }
        Ok(())
    }

    async fn fail(&self, r: &AccessRequest, why: &str) -> Result<(), ServiceError> {
        let change = Change {
            actor: system_actor("reconcile"),
            at: self.clock.now(),
            reason: Some(why.to_string()),
            source: "reconcile",
        };
        let (next, event) = r.transition(Status::Failed, &change)?;
        self.store.transition(r, &next, &event).await?;
        Ok(())
    }
}

fn workflow_error(e: WorkflowError) -> ServiceError {
    ServiceError::Internal {
        detail: format!("workflow: {e}"),
    }
}
