//! The workflow port in local mode: `jit-engine` running the very same
//! `state-machine/approval.asl.json` that Step Functions runs, with its task
//! "Lambdas" dispatched in-process to the same `jit_core::tasks` functions
//! the deployed task Lambdas call.

use std::sync::Arc;

use async_trait::async_trait;
use jit_core::RequestId;
use jit_core::ports::{ExecutionState, InstantRun, Workflow, WorkflowError, WorkflowInput};
use jit_core::request::TaskToken;
use jit_core::tasks::Tasks;
use jit_engine::{Engine, EngineError, TaskInvoker};
use serde_json::{Value, json};

/// The one definition, compiled in: the file Step Functions runs.
pub const APPROVAL_DEFINITION: &str = include_str!("../../../state-machine/approval.asl.json");
/// The name the engine knows the approval machine by.
pub const APPROVAL_MACHINE: &str = "approval";
/// The instant workflow (Express on AWS), compiled in.
pub const INSTANT_DEFINITION: &str = include_str!("../../../state-machine/instant.asl.json");
/// The name the engine knows the instant machine by.
pub const INSTANT_MACHINE: &str = "instant";

/// The instant execution's name for a request. Engine names are unique,
/// and the request id names its Standard execution.
pub fn instant_execution_name(id: &RequestId) -> String {
    format!("{id}-instant")
}

/// The `${…}` substitutions: function names the invoker below knows.
pub fn substitutions() -> jit_engine::Substitutions {
    [
        ("UpdateStatusFunctionArn", "local:update-status"),
        ("GeneratePolicyFunctionArn", "local:generate-policy"),
        ("SlackNotifyFunctionArn", "local:slack-notify"),
        ("AssumeRoleFunctionArn", "local:assume-role"),
        ("ExpireFunctionArn", "local:expire"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Dispatches task invocations to the in-process task steps. Failures are
/// reported as a Lambda reports them: `errorType` as the error, a JSON
/// cause with `errorType` and `errorMessage`.
pub struct LocalTasks {
    pub tasks: Tasks,
    /// The GeneratePolicy step (deterministic generator in local mode).
    pub policy: jit_core::policy_step::PolicyStep,
}

#[async_trait]
impl TaskInvoker for LocalTasks {
    async fn invoke(&self, function: &str, payload: Value) -> Result<Value, jit_engine::TaskError> {
        let result = match function {
            "local:update-status" => self.tasks.update_status(payload).await,
            "local:generate-policy" => self.policy.generate_policy(payload).await,
            "local:slack-notify" => self.tasks.request_approval(payload).await,
            "local:assume-role" => self.tasks.grant(payload).await,
            "local:expire" => self.tasks.revoke(payload).await,
            other => {
                return Err(jit_engine::TaskError::new(
                    "Lambda.ResourceNotFoundException",
                    format!("no local function `{other}`"),
                ));
            }
        };
        result.map_err(|e| {
            let cause = json!({ "errorType": e.error_type(), "errorMessage": e.to_string() });
            jit_engine::TaskError::new(e.error_type(), cause.to_string())
        })
    }
}

/// The engine behind the `Workflow` port.
pub struct EngineWorkflow {
    engine: Arc<Engine>,
}

impl EngineWorkflow {
    pub fn new(engine: Arc<Engine>) -> Self {
        EngineWorkflow { engine }
    }
}

fn backend(e: EngineError) -> WorkflowError {
    WorkflowError::Backend(e.to_string())
}

/// Replaces the value of every key that mentions a token, inside objects
/// and inside JSON-encoded strings (history details carry `parameters` as
/// a JSON string, and a callback task's parameters hold the task token).
pub fn redact_tokens(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if k.to_ascii_lowercase().contains("token") {
                    *val = Value::String("<redacted>".into());
                } else {
                    redact_tokens(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_tokens),
        Value::String(s) => {
            if let Ok(mut inner @ (Value::Object(_) | Value::Array(_))) =
                serde_json::from_str::<Value>(s)
            {
                redact_tokens(&mut inner);
                *s = inner.to_string();
            }
        }
        _ => {}
    }
}

#[async_trait]
impl Workflow for EngineWorkflow {
    async fn start(&self, input: &WorkflowInput) -> Result<(), WorkflowError> {
        let value =
            serde_json::to_value(input).map_err(|e| WorkflowError::Backend(e.to_string()))?;
        match self
            .engine
            .start_execution(APPROVAL_MACHINE, input.request_id.as_str(), value)
        {
            Ok(_) => Ok(()),
            // The execution is named after the request: it exists, so this
            // request's workflow was started before.
            Err(EngineError::ExecutionAlreadyExists(_)) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    /// The instant machine, run synchronously on the engine. A second run
    /// for the same request (its name is taken) is `Unsupported`: the
    /// Standard workflow carries on alone.
    async fn run_instant(
        &self,
        input: &WorkflowInput,
        timeout: std::time::Duration,
    ) -> Result<InstantRun, WorkflowError> {
        let value =
            serde_json::to_value(input).map_err(|e| WorkflowError::Backend(e.to_string()))?;
        let name = instant_execution_name(&input.request_id);
        let d = match self
            .engine
            .start_sync_execution(INSTANT_MACHINE, &name, value, timeout)
            .await
        {
            Ok(d) => d,
            Err(EngineError::ExecutionAlreadyExists(_)) => return Ok(InstantRun::Unsupported),
            Err(EngineError::StateMachineDoesNotExist(_)) => return Ok(InstantRun::Unsupported),
            Err(e) => return Err(backend(e)),
        };
        Ok(match d.status {
            jit_engine::ExecutionStatus::Succeeded => {
                InstantRun::Succeeded(d.output.unwrap_or(Value::Null))
            }
            jit_engine::ExecutionStatus::Running => InstantRun::TimedOut,
            _ => InstantRun::Failed {
                error: d.error.unwrap_or_default(),
                cause: d.cause.unwrap_or_default(),
            },
        })
    }

    async fn execution_state(&self, id: &RequestId) -> Result<ExecutionState, WorkflowError> {
        match self.engine.describe_execution(id.as_str()) {
            Ok(d) if d.status == jit_engine::ExecutionStatus::Running => {
                Ok(ExecutionState::Running)
            }
            Ok(_) => Ok(ExecutionState::Ended),
            Err(EngineError::ExecutionDoesNotExist(_)) => Ok(ExecutionState::Missing),
            Err(e) => Err(backend(e)),
        }
    }

    async fn stop(&self, id: &RequestId, reason: &str) -> Result<(), WorkflowError> {
        match self
            .engine
            .stop_execution(id.as_str(), Some("Cancelled"), Some(reason))
        {
            Ok(_) => Ok(()),
            Err(EngineError::ExecutionDoesNotExist(_)) => Err(WorkflowError::NotFound(id.clone())),
            Err(e) => Err(backend(e)),
        }
    }

    async fn send_task_success(
        &self,
        token: &TaskToken,
        output: &Value,
    ) -> Result<(), WorkflowError> {
        task_answer(
            self.engine
                .send_task_success(token.expose(), output.clone()),
        )
    }

    async fn send_task_failure(
        &self,
        token: &TaskToken,
        error: &str,
        cause: &str,
    ) -> Result<(), WorkflowError> {
        task_answer(self.engine.send_task_failure(token.expose(), error, cause))
    }

    async fn history(&self, id: &RequestId) -> Result<Vec<Value>, WorkflowError> {
        let events = match self.engine.history(id.as_str()) {
            Ok(e) => e,
            Err(EngineError::ExecutionDoesNotExist(_)) => {
                return Err(WorkflowError::NotFound(id.clone()));
            }
            Err(e) => return Err(backend(e)),
        };
        events
            .into_iter()
            .map(|e| {
                let mut v =
                    serde_json::to_value(e).map_err(|e| WorkflowError::Backend(e.to_string()))?;
                redact_tokens(&mut v);
                Ok(v)
            })
            .collect()
    }
}

/// What answering a task token came to, as Step Functions reports it: a
/// token that is unknown, already answered or timed out is `TaskGone` (the
/// caller's decision came too late), anything else a backend failure.
fn task_answer(r: Result<(), EngineError>) -> Result<(), WorkflowError> {
    match r {
        Ok(()) => Ok(()),
        Err(
            EngineError::InvalidToken | EngineError::TaskDoesNotExist | EngineError::TaskTimedOut,
        ) => Err(WorkflowError::TaskGone),
        Err(e) => Err(backend(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted_even_inside_json_strings() {
        let mut v = json!({
            "type": "TaskScheduled",
            "taskScheduledEventDetails": {
                "parameters": "{\"FunctionName\":\"local:slack-notify\",\"Payload\":{\"requestId\":\"R\",\"taskToken\":\"SECRET\"}}"
            },
            "taskToken": "SECRET"
        });
        redact_tokens(&mut v);
        let text = v.to_string();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(
            text.contains("local:slack-notify"),
            "other values are kept: {text}"
        );
    }
}
