//! The approval channels' AWS side: email through SES v2 ([`SesMailer`]),
//! secrets from Secrets Manager ([`SecretsManagerSource`]), and deferred
//! work as an asynchronous invocation of a Lambda ([`LambdaDeferrer`]).
//!
//! Errors keep the service's code and message only; a secret's value, an
//! email's body (it carries a signed link) and a deferred job (it carries a
//! Slack `response_url`) never reach an error or a log line.

use std::error::Error;

use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use jit_core::channels::{ChannelError, Deferrer, Email, Mailer, SecretSource};
use jit_core::ports::Secret;

use crate::error::describe;

/// Codes AWS uses for "slow down" and "try again".
fn transient_code(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "Throttling"
                | "ThrottlingException"
                | "TooManyRequestsException"
                | "LimitExceededException"
                | "ServiceUnavailable"
                | "ServiceUnavailableException"
                | "InternalFailure"
                | "InternalServiceError"
                | "InternalServiceErrorException"
                | "ServiceException"
        )
    )
}

fn channel_error<E, R>(operation: &str, err: &SdkError<E, R>) -> ChannelError
where
    E: ProvideErrorMetadata + Error + 'static,
    R: std::fmt::Debug,
{
    let text = describe(operation, err);
    match err {
        SdkError::ServiceError(s) if transient_code(s.err().code()) => {
            ChannelError::Transient(text)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ChannelError::Transient(text)
        }
        _ => ChannelError::Failed(text),
    }
}

/// SES v2 `SendEmail`, one message per recipient, HTML and text parts.
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
}

impl SesMailer {
    pub fn new(client: aws_sdk_sesv2::Client) -> Self {
        SesMailer { client }
    }

    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        SesMailer::new(aws_sdk_sesv2::Client::new(config))
    }
}

fn content(text: &str) -> Result<Content, ChannelError> {
    Content::builder()
        .data(text)
        .charset("UTF-8")
        .build()
        .map_err(|e| ChannelError::Failed(format!("SendEmail: {e}")))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, mail: &Email) -> Result<(), ChannelError> {
        let message = Message::builder()
            .subject(content(&mail.subject)?)
            .body(
                Body::builder()
                    .text(content(&mail.text)?)
                    .html(content(&mail.html)?)
                    .build(),
            )
            .build();
        self.client
            .send_email()
            .from_email_address(&mail.from)
            .destination(Destination::builder().to_addresses(&mail.to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| channel_error("SendEmail", &e))?;
        Ok(())
    }
}

/// Secrets Manager `GetSecretValue` (string secrets).
#[derive(Debug, Clone)]
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerSource {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        SecretsManagerSource { client }
    }

    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(config))
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn secret(&self, id: &str) -> Result<Secret, ChannelError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| channel_error("GetSecretValue", &e))?;
        out.secret_string()
            .filter(|s| !s.trim().is_empty())
            .map(|s| Secret::new(s.trim()))
            .ok_or_else(|| {
                ChannelError::Failed(format!("GetSecretValue: secret {id} has no string value"))
            })
    }
}

/// Runs deferred work as an asynchronous (`Event`) invocation of a Lambda
/// function — the approval callback invoking itself, so Slack gets its
/// answer at once and the work finishes in a second invocation. The invoke
/// is signed here ([`crate::lambda_invoke`]): `aws-sdk-lambda`'s client
/// took `approval-callback` over the 6 MB target.
#[derive(Debug, Clone)]
pub struct LambdaDeferrer {
    invoker: crate::lambda_invoke::Invoker,
    function: String,
}

impl LambdaDeferrer {
    pub fn from_config(config: &aws_config::SdkConfig, function: impl Into<String>) -> Self {
        LambdaDeferrer {
            invoker: crate::lambda_invoke::Invoker::new(config),
            function: function.into(),
        }
    }
}

#[async_trait]
impl Deferrer for LambdaDeferrer {
    async fn defer(&self, job: &serde_json::Value) -> Result<(), ChannelError> {
        let invoked = self
            .invoker
            .invoke(
                &self.function,
                crate::lambda_invoke::InvocationType::Event,
                job.to_string().into_bytes(),
            )
            .await
            .map_err(|e| {
                let text = format!("Invoke {}: {}", self.function, e.message);
                if e.transient {
                    ChannelError::Transient(text)
                } else {
                    ChannelError::Failed(text)
                }
            })?;
        // An `Event` invoke is queued, never run here: a function error
        // cannot come back, but say so if Lambda ever reports one.
        if let Some(kind) = invoked.function_error {
            return Err(ChannelError::Failed(format!(
                "Invoke {}: function error {kind}",
                self.function
            )));
        }
        Ok(())
    }
}
