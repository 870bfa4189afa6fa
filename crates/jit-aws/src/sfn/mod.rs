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
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_sdk_sfn::operation::stop_execution::StopExecutionError;
use jit_core::RequestId;
use jit_core::ports::{Workflow, WorkflowError, WorkflowInput};

use crate::error::describe;

/// Step Functions caps an execution's `cause` at 32,768 characters.
const MAX_CAUSE_CHARS: usize = 32_768;

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
}
