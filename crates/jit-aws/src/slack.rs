//! Slack's Web API behind the core's [`ChatApi`] port: `chat.postMessage`,
//! `chat.update`, `users.info`, and answers to interactions' `response_url`.
//!
//! HTTPS goes through the SDK's own connector (`aws-smithy-http-client`:
//! hyper + rustls on *ring*, the platform's roots), as console sign-in does:
//! a second hyper client with its own TLS connector cost every Lambda that
//! links Slack about a hundred kilobytes. Plain `http://` works for a
//! loopback fake. The base URL is
//! configurable (`https://slack.com/api` by default). The bot token goes in
//! the `Authorization` header only: never in a log line or an error, and
//! neither does a `response_url` (a capability to post to the channel).

use std::time::Duration;

use async_trait::async_trait;
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use jit_core::channels::{ChannelError, ChatApi, ChatMessage, ChatMessageRef};
use jit_core::ports::Secret;
use serde_json::{Value, json};

/// Slack's own API base.
pub const DEFAULT_SLACK_URL: &str = "https://slack.com/api";
/// Each call's limit; a slower Slack counts as a transient failure.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Slack error codes worth retrying.
const TRANSIENT_CODES: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// Slack's Web API with a bot token.
pub struct SlackWebApi {
    base: String,
    token: Secret,
    /// Built on first use: its trust roots are loaded then, not at init.
    connector: crate::sdk::LazyConnector,
}

impl std::fmt::Debug for SlackWebApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackWebApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl SlackWebApi {
    /// A client for `base_url` (`https://slack.com/api`, or a fake's URL).
    pub fn new(base_url: &str, token: Secret) -> Result<SlackWebApi, String> {
        let base = base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(format!("`{base}` is not an http(s) URL"));
        }
        Ok(SlackWebApi {
            base,
            token,
            connector: crate::sdk::LazyConnector::default(),
        })
    }

    fn connector(&self) -> &aws_smithy_http_client::Connector {
        self.connector.get()
    }

    async fn send(
        &self,
        what: &str,
        req: Request<SdkBody>,
    ) -> Result<(StatusCode, Bytes), ChannelError> {
        let req = HttpRequest::try_from(req)
            .map_err(|_| ChannelError::Failed(format!("slack {what}: bad request URL")))?;
        let resp = tokio::time::timeout(CALL_TIMEOUT, self.connector().call(req))
            .await
            .map_err(|_| ChannelError::Transient(format!("slack {what}: timed out")))?
            .map_err(|e| {
                // The connector's text names the cause, never the token.
                ChannelError::Transient(format!("slack {what}: unreachable ({e})"))
            })?;
        let status = StatusCode::from_u16(resp.status().as_u16())
            .map_err(|_| ChannelError::Transient(format!("slack {what}: bad HTTP status")))?;
        let body = tokio::time::timeout(CALL_TIMEOUT, ByteStream::new(resp.into_body()).collect())
            .await
            .map_err(|_| ChannelError::Transient(format!("slack {what}: timed out")))?
            .map_err(|_| ChannelError::Transient(format!("slack {what}: the answer broke off")))?
            .into_bytes();
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(ChannelError::Transient(format!(
                "slack {what}: HTTP {}",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(ChannelError::Failed(format!(
                "slack {what}: HTTP {}",
                status.as_u16()
            )));
        }
        Ok((status, body))
    }

    /// A Web API call; `ok: false` becomes an error named by Slack's code.
    async fn call(&self, method: &str, req: Request<SdkBody>) -> Result<Value, ChannelError> {
        let (_, body) = self.send(method, req).await?;
        let v: Value = serde_json::from_slice(&body).map_err(|_| {
            ChannelError::Transient(format!("slack {method}: the answer is not JSON"))
        })?;
        if v.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(v);
        }
        let code = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect::<String>();
        let text = format!("slack {method}: {code}");
        Err(if TRANSIENT_CODES.contains(&code.as_str()) {
            ChannelError::Transient(text)
        } else {
            ChannelError::Failed(text)
        })
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token.expose())
    }

    fn post_json(&self, method: &str, body: &Value) -> Result<Request<SdkBody>, ChannelError> {
        Request::builder()
            .method(Method::POST)
            .uri(format!("{}/{method}", self.base))
            .header(AUTHORIZATION, self.bearer())
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(SdkBody::from(body.to_string()))
            .map_err(|_| ChannelError::Failed(format!("slack {method}: bad request URL")))
    }
}

#[async_trait]
impl ChatApi for SlackWebApi {
    async fn post_message(
        &self,
        channel: &str,
        message: &ChatMessage,
    ) -> Result<ChatMessageRef, ChannelError> {
        let body = json!({
            "channel": channel,
            "text": message.text,
            "blocks": message.blocks,
            "unfurl_links": false,
            "unfurl_media": false,
        });
        let v = self
            .call(
                "chat.postMessage",
                self.post_json("chat.postMessage", &body)?,
            )
            .await?;
        match (
            v.get("channel").and_then(Value::as_str),
            v.get("ts").and_then(Value::as_str),
        ) {
            (Some(c), Some(ts)) => Ok(ChatMessageRef {
                channel: c.to_string(),
                ts: ts.to_string(),
            }),
            _ => Err(ChannelError::Failed(
                "slack chat.postMessage: no channel/ts in the answer".into(),
            )),
        }
    }

    async fn update_message(
        &self,
        at: &ChatMessageRef,
        message: &ChatMessage,
    ) -> Result<(), ChannelError> {
        let body = json!({
            "channel": at.channel,
            "ts": at.ts,
            "text": message.text,
            "blocks": message.blocks,
        });
        self.call("chat.update", self.post_json("chat.update", &body)?)
            .await
            .map(|_| ())
    }

    async fn user_email(&self, user_id: &str) -> Result<Option<String>, ChannelError> {
        if user_id.is_empty() || !user_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ChannelError::Failed("slack users.info: bad user id".into()));
        }
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("{}/users.info?user={user_id}", self.base))
            .header(AUTHORIZATION, self.bearer())
            .body(SdkBody::empty())
            .map_err(|_| ChannelError::Failed("slack users.info: bad request URL".into()))?;
        let v = self.call("users.info", req).await?;
        Ok(v.pointer("/user/profile/email")
            .and_then(Value::as_str)
            .filter(|e| e.contains('@'))
            .map(str::to_string))
    }

    async fn respond(&self, response_url: &str, body: &Value) -> Result<(), ChannelError> {
        if !(response_url.starts_with("https://") || response_url.starts_with("http://")) {
            return Err(ChannelError::Failed(
                "slack response_url: not an http(s) URL".into(),
            ));
        }
        let req = Request::builder()
            .method(Method::POST)
            .uri(response_url)
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(SdkBody::from(body.to_string()))
            .map_err(|_| ChannelError::Failed("slack response_url: bad URL".into()))?;
        self.send("response_url", req).await.map(|_| ())
    }
}
