//! Policy generation through the `generate-policy` Lambda, for the API
//! function that checks a request's scope when it is created (and answers
//! `POST /policies/preview`).
//!
//! Why a function call and not the generator in process: the generator
//! carries the IAM action table, and the AI generator and Access Analyzer
//! their SDK clients; `generate-policy` already links them (and holds the
//! permissions), while `request` is at the 6 MB Lambda target. So
//! [`LambdaPolicyGenerator`] implements the core's [`PolicyGenerator`] by
//! invoking that function synchronously (the signed invoke of
//! [`crate::lambda_invoke`]) with `{"generate": GenerationInput}`, and
//! [`serve`] is that function's answer to such an event:
//! `{"policy": GeneratedPolicy}` or `{"error": GenerationError}`. The
//! GeneratePolicy step's own events (a request id) are not this shape and
//! go to the step as before.

use async_trait::async_trait;
use jit_core::policy::{GeneratedPolicy, GenerationError, GenerationInput, PolicyGenerator};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lambda_invoke::{FunctionError, InvocationType, Invoker};

/// The key of a generate event: `{"generate": GenerationInput}`.
pub const GENERATE: &str = "generate";

/// The function's answer to a generate event.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Answer {
    Policy(GeneratedPolicy),
    Error(GenerationError),
}

/// The `generate-policy` function's answer to a generate event, or `None`
/// when `event` is not one (the GeneratePolicy step's event). An input
/// that does not decode is answered as `unavailable` (a caller's bug, not
/// the requester's scope).
pub async fn serve(generator: &dyn PolicyGenerator, event: &Value) -> Option<Value> {
    let input = event.as_object()?.get(GENERATE)?;
    let answer = match GenerationInput::deserialize(input) {
        Ok(input) => match generator.generate(&input).await {
            Ok(policy) => Answer::Policy(policy),
            Err(e) => Answer::Error(e),
        },
        Err(e) => Answer::Error(GenerationError::Unavailable {
            message: format!("the generate event does not decode: {e}"),
        }),
    };
    tracing::info!(
        outcome = match &answer {
            Answer::Policy(_) => "policy",
            Answer::Error(GenerationError::Refused { .. }) => "refused",
            Answer::Error(GenerationError::Unavailable { .. }) => "unavailable",
        },
        "generate served"
    );
    Some(serde_json::to_value(answer).expect("plain data serializes"))
}

/// The core's policy generator, answered by the `generate-policy`
/// function. Anything but the function's own answer (Lambda unreachable,
/// throttled, the function failing or timing out) is `Unavailable`: the
/// create answers `503 policy_generation_unavailable` and stores nothing,
/// and retrying may work.
pub struct LambdaPolicyGenerator {
    invoker: Invoker,
    function: String,
    describes: bool,
}

impl LambdaPolicyGenerator {
    /// The function named `function` (name or ARN); `describes`: it has an
    /// AI generator configured (scopes in words are accepted).
    pub fn from_config(
        config: &aws_config::SdkConfig,
        function: impl Into<String>,
        describes: bool,
    ) -> Self {
        LambdaPolicyGenerator {
            invoker: Invoker::new(config),
            function: function.into(),
            describes,
        }
    }
}

#[async_trait]
impl PolicyGenerator for LambdaPolicyGenerator {
    async fn generate(&self, input: &GenerationInput) -> Result<GeneratedPolicy, GenerationError> {
        let unavailable = |message: String| GenerationError::Unavailable { message };
        let payload = serde_json::to_vec(&serde_json::json!({ GENERATE: input }))
            .expect("plain data serializes");
        let invoked = self
            .invoker
            .invoke(&self.function, InvocationType::RequestResponse, payload)
            .await
            .map_err(|e| unavailable(format!("Invoke generate-policy: {}", e.message)))?;
        if let Some(kind) = invoked.function_error {
            let err: FunctionError = serde_json::from_slice(&invoked.payload).unwrap_or_default();
            return Err(unavailable(format!(
                "generate-policy failed: {}: {}",
                err.error_type.unwrap_or(kind),
                err.error_message.as_deref().unwrap_or("(no message)")
            )));
        }
        match serde_json::from_slice::<Answer>(&invoked.payload) {
            Ok(Answer::Policy(p)) => Ok(p),
            Ok(Answer::Error(e)) => Err(e),
            Err(e) => Err(unavailable(format!(
                "generate-policy answered what the protocol does not say: {e}"
            ))),
        }
    }

    fn describes(&self) -> bool {
        self.describes
    }
}
