//! The instant workflow on AWS: `StartSyncExecution` on the Express machine
//! (`state-machine/instant.asl.json`), added to another [`Workflow`] port
//! that does everything else. `request` wraps its Step Functions port in
//! it: it creates requests, so a waiting create (`"wait": true`) runs the
//! instant workflow there, then starts the Standard one as always.
//!
//! Measured (release, stripped): serving creates from `access` instead —
//! so that the same call could vend credentials — took `access` to
//! 6,059,016 bytes, over the 6 MB budget; so creates stay on `request`,
//! 5,794,768 bytes with this wrapper (see docs/ARCHITECTURE.md, "Instant
//! credentials and catalog traps").

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sfn::types::SyncExecutionStatus;
use jit_core::RequestId;
use jit_core::ports::{ExecutionState, InstantRun, Workflow, WorkflowError, WorkflowInput};
use jit_core::request::TaskToken;

use super::{Client, StateMachineArn};
use crate::error::describe;

/// `inner` plus [`Workflow::run_instant`] on an Express machine.
#[derive(Debug, Clone)]
pub struct SfnInstant<W> {
    inner: W,
    client: Client,
    /// `None`: no Express machine deployed; a waiting create waits on the
    /// Standard workflow alone.
    instant: Option<StateMachineArn>,
}

impl<W> SfnInstant<W> {
    pub fn new(inner: W, client: Client, instant: Option<StateMachineArn>) -> Self {
        SfnInstant {
            inner,
            client,
            instant,
        }
    }
}

/// The instant execution's name for a request (Express names need not be
/// unique; this one says which request it ran for).
pub fn instant_execution_name(id: &RequestId) -> String {
    format!("{id}-instant")
}

#[async_trait]
impl<W: Workflow> Workflow for SfnInstant<W> {
    async fn start(&self, input: &WorkflowInput) -> Result<(), WorkflowError> {
        self.inner.start(input).await
    }

    /// `StartSyncExecution`, bounded by `timeout` on our side too (an
    /// Express execution may run up to five minutes; we stop listening,
    /// it goes on and the Standard workflow meets whatever it did).
    async fn run_instant(
        &self,
        input: &WorkflowInput,
        timeout: Duration,
    ) -> Result<InstantRun, WorkflowError> {
        let Some(machine) = &self.instant else {
            return Ok(InstantRun::Unsupported);
        };
        let json = serde_json::to_string(input)
            .map_err(|e| WorkflowError::Backend(format!("encoding workflow input: {e}")))?;
        let call = self
            .client
            .start_sync_execution()
            .state_machine_arn(machine.as_str())
            .name(instant_execution_name(&input.request_id))
            .input(json)
            .send();
        let out = match tokio::time::timeout(timeout, call).await {
            Err(_) => return Ok(InstantRun::TimedOut),
            Ok(Err(e)) => {
                return Err(WorkflowError::Backend(describe("StartSyncExecution", &e)));
            }
            Ok(Ok(out)) => out,
        };
        Ok(match out.status() {
            SyncExecutionStatus::Succeeded => InstantRun::Succeeded(
                out.output()
                    .and_then(|o| serde_json::from_str(o).ok())
                    .unwrap_or(serde_json::Value::Null),
            ),
            SyncExecutionStatus::TimedOut => InstantRun::TimedOut,
            _ => InstantRun::Failed {
                error: out.error().unwrap_or_default().to_string(),
                cause: out.cause().unwrap_or_default().to_string(),
            },
        })
    }

    async fn stop(&self, id: &RequestId, reason: &str) -> Result<(), WorkflowError> {
        self.inner.stop(id, reason).await
    }

    async fn send_task_success(
        &self,
        token: &TaskToken,
        output: &serde_json::Value,
    ) -> Result<(), WorkflowError> {
        self.inner.send_task_success(token, output).await
    }

    async fn send_task_failure(
        &self,
        token: &TaskToken,
        error: &str,
        cause: &str,
    ) -> Result<(), WorkflowError> {
        self.inner.send_task_failure(token, error, cause).await
    }

    async fn execution_state(&self, id: &RequestId) -> Result<ExecutionState, WorkflowError> {
        self.inner.execution_state(id).await
    }

    async fn history(&self, id: &RequestId) -> Result<Vec<serde_json::Value>, WorkflowError> {
        self.inner.history(id).await
    }
}
