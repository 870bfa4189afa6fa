//! The workflow port in local mode.
//!
//! The approval state machine (`state-machine/approval.asl.json`) and the
//! local ASL engine that runs it are not part of this build yet. Rather than
//! pretend to approve anything, local mode records requests and leaves them
//! in REQUESTED; start-up says so. The engine replaces this type.

use std::sync::Arc;

use async_trait::async_trait;
use jit_core::RequestId;
use jit_core::ports::{RequestStore, Workflow, WorkflowError, WorkflowInput};
use jit_core::request::TaskToken;
use serde_json::Value;

/// Accepts workflow starts without running anything (see the module docs).
pub struct LocalWorkflow {
    _store: Arc<dyn RequestStore>,
}

impl LocalWorkflow {
    pub fn new(store: Arc<dyn RequestStore>) -> Self {
        LocalWorkflow { _store: store }
    }

    /// Said once at start so nobody mistakes a waiting request for a stuck one.
    pub const NOTICE: &'static str = "approval workflow: no local engine in this build; requests are recorded and stay REQUESTED";
}

#[async_trait]
impl Workflow for LocalWorkflow {
    async fn start(&self, input: &WorkflowInput) -> Result<(), WorkflowError> {
        tracing::info!(request_id = %input.request_id, "request recorded; no local workflow engine to start");
        Ok(())
    }

    async fn stop(&self, id: &RequestId, _reason: &str) -> Result<(), WorkflowError> {
        tracing::info!(request_id = %id, "nothing to stop: no local workflow engine");
        Ok(())
    }

    async fn send_task_success(&self, _: &TaskToken, _: &Value) -> Result<(), WorkflowError> {
        Err(WorkflowError::TaskGone)
    }

    async fn send_task_failure(
        &self,
        _: &TaskToken,
        _: &str,
        _: &str,
    ) -> Result<(), WorkflowError> {
        Err(WorkflowError::TaskGone)
    }

    async fn history(&self, id: &RequestId) -> Result<Vec<Value>, WorkflowError> {
        Err(WorkflowError::NotFound(id.clone()))
    }
}
