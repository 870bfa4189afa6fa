//! The one error type use cases return. Each variant has a fixed HTTP status
//! and a stable `code`; the mapping to a response lives in `jit-api`, once.

use crate::lifecycle::{Status, TransitionRefused};
use crate::ports::{StoreError, WorkflowError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// 400: a field is missing or wrong.
    #[error("{message}")]
    Invalid {
        code: &'static str,
        field: Option<String>,
        message: String,
    },
    /// 403: who you are does not allow this.
    #[error("{message}")]
    Forbidden {
        code: &'static str,
        field: Option<String>,
        message: String,
    },
    /// 404: no such request, or not one the caller may see.
    #[error("{message}")]
    NotFound { message: String },
    /// 409: the request is not in a state that allows this, or an
    /// idempotency key was reused with another body.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        field: Option<String>,
        message: String,
        current: Option<Status>,
    },
    /// 503: a dependency is down; retrying later may work.
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// 502: AWS refused a grant call in a way the deployment must fix (a
    /// missing role, a trust policy that refuses the broker); the message
    /// names the fix, never AWS's raw text.
    #[error("{message}")]
    Upstream { code: &'static str, message: String },
    /// 500: a bug or a backend fault. `detail` goes to logs, never to a body.
    #[error("internal error")]
    Internal { detail: String },
}

impl ServiceError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ServiceError::Invalid {
            code: "invalid_field",
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    pub fn forbidden(code: &'static str, field: Option<&str>, message: impl Into<String>) -> Self {
        ServiceError::Forbidden {
            code,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    pub fn not_found(id: &str) -> Self {
        ServiceError::NotFound {
            message: format!("no request `{id}`"),
        }
    }

    pub fn conflict_status(current: Status, wanted: &str) -> Self {
        ServiceError::Conflict {
            code: "invalid_state",
            field: None,
            message: format!("the request is {current}; it can no longer be {wanted}"),
            current: Some(current),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ServiceError::not_found(id.as_str()),
            StoreError::Conflict { current } => ServiceError::Conflict {
                code: "conflict",
                field: None,
                message: match current {
                    Some(s) => format!("the request changed meanwhile and is now {s}"),
                    None => "the request changed meanwhile".to_string(),
                },
                current,
            },
            StoreError::IdempotencyConflict { existing } => ServiceError::Conflict {
                code: "idempotency_key_reused",
                field: Some("idempotencyKey".to_string()),
                message: format!(
                    "this idempotency key was already used for request {existing} with a different body; use a new key"
                ),
                current: None,
            },
            StoreError::InvalidCursor => {
                ServiceError::invalid("cursor", "is not a cursor this API returned")
            }
            StoreError::AlreadyExists(_) | StoreError::Backend(_) => ServiceError::Internal {
                detail: e.to_string(),
            },
        }
    }
}

impl From<WorkflowError> for ServiceError {
    fn from(e: WorkflowError) -> Self {
        match e {
            WorkflowError::TaskGone => ServiceError::Conflict {
                code: "already_decided",
                field: None,
                message: "the approval task is no longer waiting (timed out or decided)".into(),
                current: None,
            },
            WorkflowError::NotFound(id) => ServiceError::NotFound {
                message: format!("no workflow execution for request {id}"),
            },
            other => ServiceError::Internal {
                detail: other.to_string(),
            },
        }
    }
}

impl From<TransitionRefused> for ServiceError {
    fn from(e: TransitionRefused) -> Self {
        ServiceError::Conflict {
            code: "invalid_state",
            field: None,
            message: e.to_string(),
            current: Some(e.from),
        }
    }
}
