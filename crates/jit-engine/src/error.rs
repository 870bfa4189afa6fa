//! What can go wrong: refusing a definition at load, and the API errors named
//! as Step Functions names them.

use std::fmt;

/// The predefined `States.*` error names this engine raises or matches.
pub mod states {
    pub const ALL: &str = "States.ALL";
    pub const TIMEOUT: &str = "States.Timeout";
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    pub const TASK_FAILED: &str = "States.TaskFailed";
    pub const RUNTIME: &str = "States.Runtime";
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
    pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";

    /// Every `States.*` name AWS accepts in `ErrorEquals`. A definition that
    /// names another `States.` error is refused, as AWS refuses it.
    pub const KNOWN: &[&str] = &[
        ALL,
        TIMEOUT,
        HEARTBEAT_TIMEOUT,
        TASK_FAILED,
        RUNTIME,
        NO_CHOICE_MATCHED,
        RESULT_PATH_MATCH_FAILURE,
        PARAMETER_PATH_FAILURE,
        DATA_LIMIT_EXCEEDED,
        "States.Permissions",
        "States.BranchFailed",
        "States.IntrinsicFailure",
        "States.ExceedToleratedFailureThreshold",
        "States.ItemReaderFailed",
        "States.ResultWriterFailed",
        "States.QueryEvaluationError",
        "States.Http.Socket",
    ];
}

/// A definition the engine refuses to load. Always names where: the state
/// (absent for top-level fields) and the field, e.g.
/// `state "Grant": field "Resource": unsupported resource arn:aws:states:::sqs:sendMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    pub state: Option<String>,
    pub field: String,
    pub message: String,
}

impl DefinitionError {
    pub(crate) fn top(field: impl Into<String>, message: impl Into<String>) -> Self {
        DefinitionError {
            state: None,
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn at(state: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        DefinitionError {
            state: Some(state.to_string()),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            Some(s) => write!(
                f,
                "state \"{s}\": field \"{}\": {}",
                self.field, self.message
            ),
            None => write!(
                f,
                "state machine: field \"{}\": {}",
                self.field, self.message
            ),
        }
    }
}

impl std::error::Error for DefinitionError {}

/// Errors of the engine API. Variant names follow the Step Functions API's
/// exception names where one exists, so callers can map them one to one.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid definition for state machine {machine}: {error}")]
    InvalidDefinition {
        machine: String,
        error: DefinitionError,
    },
    #[error("state machine does not exist: {0}")]
    StateMachineDoesNotExist(String),
    #[error("execution already exists: {0}")]
    ExecutionAlreadyExists(String),
    #[error("execution does not exist: {0}")]
    ExecutionDoesNotExist(String),
    #[error("invalid execution name: {0}")]
    InvalidName(String),
    #[error("invalid token")]
    InvalidToken,
    #[error("task does not exist")]
    TaskDoesNotExist,
    #[error("task timed out")]
    TaskTimedOut,
    #[error("invalid output: {0}")]
    InvalidOutput(String),
    #[error("invalid execution input: {0}")]
    InvalidExecutionInput(String),
    #[error("invalid canned tasks: {0}")]
    InvalidCannedTasks(String),
    #[error("engine database: {0}")]
    Db(String),
    #[error("engine: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for EngineError {
    fn from(e: rusqlite::Error) -> Self {
        EngineError::Db(e.to_string())
    }
}

impl From<serde_json::Error> for EngineError {
    fn from(e: serde_json::Error) -> Self {
        EngineError::Db(format!("stored JSON: {e}"))
    }
}

/// A runtime error raised while running a state: a `States.*` name or the
/// task's own error name, and a human cause. This is what Retry and Catch
/// match and what `{"Error", "Cause"}` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateError {
    pub error: String,
    pub cause: String,
}

impl StateError {
    pub(crate) fn new(error: &str, cause: impl Into<String>) -> Self {
        StateError {
            error: error.to_string(),
            cause: cause.into(),
        }
    }
    pub(crate) fn runtime(cause: impl Into<String>) -> Self {
        StateError::new(states::RUNTIME, cause)
    }
}
