//! [`Workflow`] on AWS Step Functions.
//!
//! One execution per request, *named after the request id*: that name is
//! what makes starting idempotent (Step Functions refuses a second execution
//! of the same name for 90 days) and what lets `stop` find the execution
//! from the request id alone, without storing its ARN.

use std::fmt;

use async_trait::async_trait;
/// The Step Functions client type, re-exported so callers need no SDK dependency.
pub use aws_sdk_sfn::Client;
use aws_sdk_sfn::error::SdkError;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionError;
use aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryError;
use aws_sdk_sfn::operation::send_task_failure::SendTaskFailureError;
use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessError;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_sdk_sfn::operation::stop_execution::StopExecutionError;
use aws_sdk_sfn::types::ExecutionStatus;
use jit_core::RequestId;
use jit_core::ports::{ExecutionState, Workflow, WorkflowError, WorkflowInput};
use jit_core::request::TaskToken;

use crate::error::{describe, describe_code_only};

mod creates;
mod history;

pub use creates::{SfnInstant, instant_execution_name};

/// Step Functions caps an execution's `cause` at 32,768 characters.
const MAX_CAUSE_CHARS: usize = 32_768;
/// … and an `error` name at 256.
const MAX_ERROR_CHARS: usize = 256;

/// A state machine ARN, checked once:
/// `arn:<partition>:states:<region>:<account>:stateMachine:<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMachineArn {
    arn: String,
    /// `arn:<partition>:states:<region>:<account>`
    prefix_len: usize,
    name_start: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a state machine ARN (arn:aws:states:REGION:ACCOUNT:stateMachine:NAME)")]
pub struct InvalidStateMachineArn(pub String);

impl StateMachineArn {
    pub fn parse(arn: impl Into<String>) -> Result<Self, InvalidStateMachineArn> {
        let arn = arn.into();
        let parts: Vec<&str> = arn.split(':').collect();
        let valid = parts.len() == 7
            && parts[0] == "arn"
            && !parts[1].is_empty()
            && parts[2] == "states"
            && !parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5] == "stateMachine"
            && !parts[6].is_empty();
        if !valid {
            return Err(InvalidStateMachineArn(arn));
        }
        let prefix_len = parts[..5].iter().map(|p| p.len() + 1).sum::<usize>() - 1;
        let name_start = arn.len() - parts[6].len();
        Ok(StateMachineArn {
            arn,
            prefix_len,
            name_start,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.arn
    }

    pub fn name(&self) -> &str {
        &self.arn[self.name_start..]
    }

    /// The ARN Step Functions gives the execution named `id`:
    /// `arn:<partition>:states:<region>:<account>:execution:<name>:<id>`.
    pub fn execution_arn(&self, id: &RequestId) -> String {
        format!(
            "{}:execution:{}:{}",
            &self.arn[..self.prefix_len],
            self.name(),
            id
        )
    }
}

impl fmt::Display for StateMachineArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

/// The approval workflow as a Step Functions state machine.
#[derive(Debug, Clone)]
pub struct SfnWorkflow {
    client: Client,
    state_machine: StateMachineArn,
}

impl SfnWorkflow {
    /// Build `client` from [`crate::sdk::load_config`].
    pub fn new(client: Client, state_machine: StateMachineArn) -> Self {
        SfnWorkflow {
            client,
            state_machine,
        }
    }

    /// A workflow with its own client from the process's shared config.
    pub fn from_config(config: &aws_config::SdkConfig, state_machine: StateMachineArn) -> Self {
        Self::new(Client::new(config), state_machine)
    }

    pub fn state_machine(&self) -> &StateMachineArn {
        &self.state_machine
    }

    /// The client, to share with [`SfnInstant`].
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// This workflow without [`Workflow::history`], for a function that
    /// records decisions but has no route showing a history
    /// (`approval-callback`).
    pub fn without_history(self) -> SfnDecisions {
        SfnDecisions(self)
    }

    /// This workflow without [`Workflow::execution_state`], for a function
    /// that starts, stops and shows executions but never reconciles them
    /// (`request`; only the `expire` sweep and `jit-local` reconcile).
    pub fn without_execution_state(self) -> SfnApiWorkflow {
        SfnApiWorkflow(self)
    }
}

/// [`SfnWorkflow`] minus [`Workflow::execution_state`]: as a `dyn Workflow`
/// it would link `DescribeExecution` (its request, its response's
/// deserializer and error types), which `request` never calls and which
/// took it over its 6 MB budget. Every other method is the same code;
/// `execution_state` is the trait's default, a backend error without a call.
#[derive(Debug, Clone)]
pub struct SfnApiWorkflow(SfnWorkflow);

#[async_trait]
impl Workflow for SfnApiWorkflow {
    async fn start(&self, input: &WorkflowInput) -> Result<(), WorkflowError> {
        self.0.start(input).await
    }

    async fn stop(&self, id: &RequestId, reason: &str) -> Result<(), WorkflowError> {
        self.0.stop(id, reason).await
    }

    async fn send_task_success(
        &self,
        token: &TaskToken,
        output: &serde_json::Value,
    ) -> Result<(), WorkflowError> {
        self.0.send_task_success(token, output).await
    }

    async fn send_task_failure(
        &self,
        token: &TaskToken,
        error: &str,
        cause: &str,
    ) -> Result<(), WorkflowError> {
        self.0.send_task_failure(token, error, cause).await
    }

    async fn history(&self, id: &RequestId) -> Result<Vec<serde_json::Value>, WorkflowError> {
        self.0.history(id).await
    }
}

/// [`SfnWorkflow`] minus the history: as a `dyn Workflow` it would link
/// `GetExecutionHistory`'s deserializer (every Step Functions event type,
/// about 130 KB), which kept `approval-callback` over its 6 MB budget for a
/// call it never makes. Every other method is the same code.
#[derive(Debug, Clone)]
pub struct SfnDecisions(SfnWorkflow);

#[async_trait]
impl Workflow for SfnDecisions {
    async fn start(&self, input: &WorkflowInput) -> Result<(), WorkflowError> {
        self.0.start(input).await
    }

    async fn stop(&self, id: &RequestId, reason: &str) -> Result<(), WorkflowError> {
        self.0.stop(id, reason).await
    }

    async fn send_task_success(
        &self,
        token: &TaskToken,
        output: &serde_json::Value,
    ) -> Result<(), WorkflowError> {
        self.0.send_task_success(token, output).await
    }

    async fn send_task_failure(
        &self,
        token: &TaskToken,
        error: &str,
        cause: &str,
    ) -> Result<(), WorkflowError> {
        self.0.send_task_failure(token, error, cause).await
    }

    /// Refused without calling AWS: nothing in this function asks.
    async fn history(&self, _id: &RequestId) -> Result<Vec<serde_json::Value>, WorkflowError> {
        Err(WorkflowError::Backend(
            "execution histories are not read in this function".into(),
        ))
    }
}

#[async_trait]
impl Workflow for SfnWorkflow {
    /// Starts execution `<request id>` with the input as JSON. If that name
    /// was already used, the workflow for this request was started before
    /// (the input is derived from the stored request, so it is the same
    /// one): that is success, not an error.
    async fn start(&self, input: &WorkflowInput) -> Result<(), WorkflowError> {
        let json = serde_json::to_string(input)
            .map_err(|e| WorkflowError::Backend(format!("encoding workflow input: {e}")))?;
        let result = self
            .client
            .start_execution()
            .state_machine_arn(self.state_machine.as_str())
            .name(input.request_id.as_str())
            .input(json)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), StartExecutionError::ExecutionAlreadyExists(_)) =>
            {
                tracing::debug!(request_id = %input.request_id, "workflow already started");
                Ok(())
            }
            Err(e) => Err(WorkflowError::Backend(describe("StartExecution", &e))),
        }
    }

    async fn stop(&self, id: &RequestId, reason: &str) -> Result<(), WorkflowError> {
        let cause: String = reason.chars().take(MAX_CAUSE_CHARS).collect();
        let result = self
            .client
            .stop_execution()
            .execution_arn(self.state_machine.execution_arn(id))
            .cause(cause)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), StopExecutionError::ExecutionDoesNotExist(_)) =>
            {
                Err(WorkflowError::NotFound(id.clone()))
            }
            Err(e) => Err(WorkflowError::Backend(describe("StopExecution", &e))),
        }
    }

    /// Completes the approval task. A token whose task is over — timed
    /// out, already completed, execution stopped — is `TaskGone`. AWS says
    /// `TaskTimedOut`/`TaskDoesNotExist` for that; moto says `InvalidToken`
    /// for a used token, and a token we stored can only be "invalid" for
    /// that reason, so it is `TaskGone` too. Errors keep only the service's
    /// error code: messages may quote the token.
    async fn send_task_success(
        &self,
        token: &TaskToken,
        output: &serde_json::Value,
    ) -> Result<(), WorkflowError> {
        let result = self
            .client
            .send_task_success()
            .task_token(token.expose())
            .output(output.to_string())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(
                    e.err(),
                    SendTaskSuccessError::TaskDoesNotExist(_)
                        | SendTaskSuccessError::TaskTimedOut(_)
                        | SendTaskSuccessError::InvalidToken(_)
                ) =>
            {
                Err(WorkflowError::TaskGone)
            }
            Err(e) => Err(WorkflowError::Backend(describe_code_only(
                "SendTaskSuccess",
                &e,
            ))),
        }
    }

    /// Fails the approval task with `error` (e.g. `Denied`, which the state
    /// machine catches). Errors map as for [`Self::send_task_success`].
    async fn send_task_failure(
        &self,
        token: &TaskToken,
        error: &str,
        cause: &str,
    ) -> Result<(), WorkflowError> {
        let cause: String = cause.chars().take(MAX_CAUSE_CHARS).collect();
        let result = self
            .client
            .send_task_failure()
            .task_token(token.expose())
            .error(error.chars().take(MAX_ERROR_CHARS).collect::<String>())
            .cause(cause)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(
                    e.err(),
                    SendTaskFailureError::TaskDoesNotExist(_)
                        | SendTaskFailureError::TaskTimedOut(_)
                        | SendTaskFailureError::InvalidToken(_)
                ) =>
            {
                Err(WorkflowError::TaskGone)
            }
            Err(e) => Err(WorkflowError::Backend(describe_code_only(
                "SendTaskFailure",
                &e,
            ))),
        }
    }

    /// `DescribeExecution` by the request's execution name.
    async fn execution_state(&self, id: &RequestId) -> Result<ExecutionState, WorkflowError> {
        let result = self
            .client
            .describe_execution()
            .execution_arn(self.state_machine.execution_arn(id))
            .send()
            .await;
        match result {
            Ok(out) => Ok(if out.status() == &ExecutionStatus::Running {
                ExecutionState::Running
            } else {
                ExecutionState::Ended
            }),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), DescribeExecutionError::ExecutionDoesNotExist(_)) =>
            {
                Ok(ExecutionState::Missing)
            }
            Err(e) => Err(WorkflowError::Backend(describe("DescribeExecution", &e))),
        }
    }

    /// The execution's events, oldest first, as JSON shaped like the local
    /// engine's (`id`, `previousEventId`, `timestamp`, `type`, one
    /// `…EventDetails` object); task tokens in parameters and payloads are
    /// redacted (see `sfn/history.rs`).
    async fn history(&self, id: &RequestId) -> Result<Vec<serde_json::Value>, WorkflowError> {
        let mut events = vec![];
        let mut next: Option<String> = None;
        loop {
            let result = self
                .client
                .get_execution_history()
                .execution_arn(self.state_machine.execution_arn(id))
                .set_next_token(next.take())
                .send()
                .await;
            let page = match result {
                Ok(p) => p,
                Err(SdkError::ServiceError(e))
                    if matches!(e.err(), GetExecutionHistoryError::ExecutionDoesNotExist(_)) =>
                {
                    return Err(WorkflowError::NotFound(id.clone()));
                }
                Err(e) => {
                    return Err(WorkflowError::Backend(describe_code_only(
                        "GetExecutionHistory",
                        &e,
                    )));
                }
            };
            events.extend(page.events().iter().map(history::to_json));
            match page.next_token() {
                Some(t) => next = Some(t.to_string()),
                None => return Ok(events),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_arns_are_derived_from_the_state_machine() {
        let sm = StateMachineArn::parse(
            "arn:aws-us-gov:states:us-gov-west-1:123456789012:stateMachine:jit-approval",
        )
        .expect("valid ARN");
        let id = RequestId::generate(chrono::Utc::now());
        assert_eq!(sm.name(), "jit-approval");
        assert_eq!(
            sm.execution_arn(&id),
            format!("arn:aws-us-gov:states:us-gov-west-1:123456789012:execution:jit-approval:{id}")
        );
    }

    #[test]
    fn other_arns_are_refused() {
        for bad in [
            "",
            "jit-approval",
            "arn:aws:states:us-east-1:123456789012:execution:jit:abc",
            "arn:aws:states:us-east-1:123456789012:stateMachine:",
            "arn:aws:states:us-east-1:123456789012:stateMachine:jit:1",
            "arn:aws:lambda:us-east-1:123456789012:stateMachine:jit",
            "arn:aws:states::123456789012:stateMachine:jit",
            "arn:aws:states:us-east-1:1234:stateMachine:jit",
        ] {
            assert_eq!(
                StateMachineArn::parse(bad),
                Err(InvalidStateMachineArn(bad.to_string())),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn the_api_workflow_refuses_execution_state_without_calling_aws() {
        // GIVEN Step Functions without execution state, its client pointed at
        // a port nothing listens on
        let config = aws_sdk_sfn::Config::builder()
            .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
            .region(aws_sdk_sfn::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:1")
            .build();
        let sm = StateMachineArn::parse("arn:aws:states:us-east-1:123456789012:stateMachine:jit")
            .expect("valid ARN");
        let workflow = SfnWorkflow::new(Client::from_conf(config), sm).without_execution_state();
        // WHEN an execution's state is asked for
        let id = RequestId::generate(chrono::Utc::now());
        let got = workflow.execution_state(&id).await;
        // THEN it is refused at once (the trait's default), as a backend
        // error, not a connection failure after retries
        assert!(
            matches!(&got, Err(WorkflowError::Backend(m)) if m.contains("cannot describe")),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn the_decisions_only_workflow_refuses_histories_without_calling_aws() {
        // GIVEN Step Functions without history, its client pointed at a port
        // nothing listens on
        let config = aws_sdk_sfn::Config::builder()
            .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
            .region(aws_sdk_sfn::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:1")
            .build();
        let sm = StateMachineArn::parse("arn:aws:states:us-east-1:123456789012:stateMachine:jit")
            .expect("valid ARN");
        let workflow = SfnWorkflow::new(Client::from_conf(config), sm).without_history();
        // WHEN a history is asked for
        let id = RequestId::generate(chrono::Utc::now());
        let got = workflow.history(&id).await;
        // THEN it is refused at once, as a backend error
        assert!(
            matches!(&got, Err(WorkflowError::Backend(m)) if m.contains("not read")),
            "{got:?}"
        );
    }
}
