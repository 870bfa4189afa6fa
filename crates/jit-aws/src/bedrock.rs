//! The AI policy generator's model call: Amazon Bedrock Converse
//! (`bedrock-runtime:Converse`, `POST /model/{modelId}/converse`) behind
//! the [`PolicyDrafter`] port.
//!
//! Off unless configured: `JIT_BEDROCK_MODEL_ID` turns it on (see
//! [`BedrockConfig::from_env`] for the rest). Only the function that runs
//! the GeneratePolicy step (`update-status`) and `jit-local` build it; the
//! API Lambdas do not link this client (feature `bedrock`). The answer is
//! text and nothing more: `jit_policy::ai` extracts and validates it.
//! Neither the prompt nor the answer is logged (the requester's words may
//! hold anything).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput, InferenceConfiguration, Message, StopReason,
    SystemContentBlock,
};
use jit_core::policy::{DraftError, DraftPrompt, PolicyDrafter};

use crate::error::describe;

/// Longest answer asked for unless configured: a policy that fits STS's
/// 2,048 characters is well under 1,000 tokens.
pub const DEFAULT_MAX_TOKENS: i32 = 1024;
/// How long one Converse call may take (retries included) unless configured.
pub const DEFAULT_TIMEOUT_SECS: u64 = 20;

/// What the Bedrock generator is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct BedrockConfig {
    /// `JIT_BEDROCK_MODEL_ID`: a model id or inference profile
    /// (e.g. `anthropic.claude-3-5-haiku-20241022-v1:0`).
    pub model_id: String,
    /// `JIT_BEDROCK_REGION`: where the model is; the process's region when unset.
    pub region: Option<String>,
    /// `JIT_BEDROCK_ENDPOINT`: another endpoint (a VPC endpoint; a fake in tests).
    pub endpoint: Option<String>,
    /// `JIT_BEDROCK_MAX_TOKENS` (default [`DEFAULT_MAX_TOKENS`]).
    pub max_tokens: i32,
    /// `JIT_BEDROCK_TEMPERATURE` (default 0: the same words, the same policy as far as the model allows).
    pub temperature: f32,
    /// `JIT_BEDROCK_TOP_P` (the model's default when unset).
    pub top_p: Option<f32>,
    /// `JIT_BEDROCK_TIMEOUT_SECS` (default [`DEFAULT_TIMEOUT_SECS`]).
    pub timeout: Duration,
}

impl BedrockConfig {
    /// A configuration with the defaults for `model_id`.
    pub fn new(model_id: impl Into<String>) -> Self {
        BedrockConfig {
            model_id: model_id.into(),
            region: None,
            endpoint: None,
            max_tokens: DEFAULT_MAX_TOKENS,
            temperature: 0.0,
            top_p: None,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
        }
    }

    /// From the process environment: `None` when `JIT_BEDROCK_MODEL_ID` is
    /// unset or empty (the generator is off); an error naming the variable
    /// and the fix when a value is not usable.
    pub fn from_env() -> Result<Option<BedrockConfig>, String> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`BedrockConfig::from_env`] over any lookup (tests, CLI flags).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let Some(model_id) = var("JIT_BEDROCK_MODEL_ID") else {
            return Ok(None);
        };
        if model_id.len() > 2048
            || model_id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "JIT_BEDROCK_MODEL_ID `{model_id}` is not a model id (like anthropic.claude-3-5-haiku-20241022-v1:0)"
            ));
        }
        let mut c = BedrockConfig::new(model_id);
        c.region = var("JIT_BEDROCK_REGION");
        c.endpoint = var("JIT_BEDROCK_ENDPOINT");
        if let Some(e) = &c.endpoint
            && !(e.starts_with("https://") || e.starts_with("http://"))
        {
            return Err(format!(
                "JIT_BEDROCK_ENDPOINT `{e}` must be an http(s):// URL"
            ));
        }
        if let Some(v) = var("JIT_BEDROCK_MAX_TOKENS") {
            c.max_tokens = v
                .parse()
                .ok()
                .filter(|n| (64..=8192).contains(n))
                .ok_or_else(|| {
                    format!("JIT_BEDROCK_MAX_TOKENS `{v}` must be a whole number from 64 to 8192")
                })?;
        }
        if let Some(v) = var("JIT_BEDROCK_TEMPERATURE") {
            c.temperature = v
                .parse()
                .ok()
                .filter(|t: &f32| (0.0..=1.0).contains(t))
                .ok_or_else(|| format!("JIT_BEDROCK_TEMPERATURE `{v}` must be from 0 to 1"))?;
        }
        if let Some(v) = var("JIT_BEDROCK_TOP_P") {
            c.top_p = Some(
                v.parse()
                    .ok()
                    .filter(|t: &f32| (0.0..=1.0).contains(t))
                    .ok_or_else(|| format!("JIT_BEDROCK_TOP_P `{v}` must be from 0 to 1"))?,
            );
        }
        if let Some(v) = var("JIT_BEDROCK_TIMEOUT_SECS") {
            let secs: u64 = v.parse().ok().filter(|s| (1..=300).contains(s)).ok_or_else(|| {
                format!("JIT_BEDROCK_TIMEOUT_SECS `{v}` must be a whole number of seconds from 1 to 300")
            })?;
            c.timeout = Duration::from_secs(secs);
        }
        Ok(Some(c))
    }
}

/// Bedrock Converse as the AI generator's model.
#[derive(Debug, Clone)]
pub struct BedrockDrafter {
    client: aws_sdk_bedrockruntime::Client,
    config: BedrockConfig,
}

impl BedrockDrafter {
    /// A client from the process's one [`aws_config::SdkConfig`], with the
    /// model's region, endpoint and time bound on top. Two attempts at
    /// most: a throttled generation is better retried by the workflow.
    pub fn new(sdk: &aws_config::SdkConfig, config: BedrockConfig) -> Self {
        let mut b = aws_sdk_bedrockruntime::config::Builder::from(sdk)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(config.timeout)
                    .build(),
            );
        if let Some(r) = &config.region {
            b = b.region(aws_config::Region::new(r.clone()));
        }
        if let Some(e) = &config.endpoint {
            b = b.endpoint_url(e);
        }
        BedrockDrafter {
            client: aws_sdk_bedrockruntime::Client::from_conf(b.build()),
            config,
        }
    }

    pub fn config(&self) -> &BedrockConfig {
        &self.config
    }
}

fn error<E, R>(err: &SdkError<E, R>) -> DraftError
where
    E: aws_sdk_bedrockruntime::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    DraftError {
        message: describe("Converse", err),
    }
}

#[async_trait]
impl PolicyDrafter for BedrockDrafter {
    fn name(&self) -> String {
        format!("bedrock:{}", self.config.model_id)
    }

    async fn draft(&self, prompt: &DraftPrompt) -> Result<String, DraftError> {
        let message = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text(prompt.user.clone()))
            .build()
            .map_err(|e| DraftError {
                message: format!("building the Converse message: {e}"),
            })?;
        let mut inference = InferenceConfiguration::builder()
            .max_tokens(self.config.max_tokens)
            .temperature(self.config.temperature);
        if let Some(p) = self.config.top_p {
            inference = inference.top_p(p);
        }
        let out = self
            .client
            .converse()
            .model_id(&self.config.model_id)
            .system(SystemContentBlock::Text(prompt.system.clone()))
            .messages(message)
            .inference_config(inference.build())
            .send()
            .await
            .map_err(|e| error(&e))?;
        match out.stop_reason() {
            StopReason::EndTurn | StopReason::StopSequence => {}
            StopReason::MaxTokens => {
                return Err(DraftError {
                    message: format!(
                        "the model stopped at maxTokens ({}) before finishing its answer",
                        self.config.max_tokens
                    ),
                });
            }
            other => {
                return Err(DraftError {
                    message: format!("the model stopped without an answer: {}", other.as_str()),
                });
            }
        }
        let text: String = match out.output() {
            Some(ConverseOutput::Message(m)) => m
                .content()
                .iter()
                .filter_map(|c| match c {
                    ContentBlock::Text(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect(),
            _ => String::new(),
        };
        if text.trim().is_empty() {
            return Err(DraftError {
                message: "the model answered no text".into(),
            });
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_unless_a_model_is_named_and_bad_values_name_their_variable() {
        let none = BedrockConfig::from_lookup(|_| None).unwrap();
        assert_eq!(none, None);
        let set = |pairs: &'static [(&'static str, &'static str)]| {
            BedrockConfig::from_lookup(move |k| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            })
        };
        let c = set(&[
            (
                "JIT_BEDROCK_MODEL_ID",
                "anthropic.claude-3-5-haiku-20241022-v1:0",
            ),
            ("JIT_BEDROCK_REGION", "us-west-2"),
            ("JIT_BEDROCK_MAX_TOKENS", "2048"),
            ("JIT_BEDROCK_TEMPERATURE", "0.2"),
            ("JIT_BEDROCK_TIMEOUT_SECS", "5"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.region.as_deref(), Some("us-west-2"));
        assert_eq!(c.max_tokens, 2048);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.top_p, None);
        for (pairs, var) in [
            (
                &[
                    ("JIT_BEDROCK_MODEL_ID", "m"),
                    ("JIT_BEDROCK_MAX_TOKENS", "lots"),
                ][..],
                "JIT_BEDROCK_MAX_TOKENS",
            ),
            (
                &[
                    ("JIT_BEDROCK_MODEL_ID", "m"),
                    ("JIT_BEDROCK_TEMPERATURE", "2"),
                ][..],
                "JIT_BEDROCK_TEMPERATURE",
            ),
            (
                &[
                    ("JIT_BEDROCK_MODEL_ID", "m"),
                    ("JIT_BEDROCK_ENDPOINT", "localhost:1"),
                ][..],
                "JIT_BEDROCK_ENDPOINT",
            ),
            (
                &[("JIT_BEDROCK_MODEL_ID", "a model")][..],
                "JIT_BEDROCK_MODEL_ID",
            ),
        ] {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            let e = BedrockConfig::from_lookup(|k| {
                pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
            })
            .unwrap_err();
            assert!(e.starts_with(var), "{e}");
        }
    }
}
