//! Slack's Web API behind the core's [`ChatApi`] port: `chat.postMessage`,
//! `chat.update`, `users.info`, and answers to interactions' `response_url`.
//!
//! HTTPS is rustls on *ring* with the platform's roots, like the SDK's
//! client; plain `http://` works for a loopback fake. The base URL is
//! configurable (`https://slack.com/api` by default). The bot token goes in
//! the `Authorization` header only: never in a log line or an error, and
//! neither does a `response_url` (a capability to post to the channel).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
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

/// An HTTP(S) client for small JSON calls.
pub(crate) fn http_client() -> Client<HttpsConnector<HttpConnector>, Full<Bytes>> {
    let ring = || std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(ring())
        .unwrap_or_else(|e| {
            // No platform roots (a minimal container): plain http to a
            // loopback fake still works; https fails per call, and says so.
            tracing::warn!(error = %e, "no platform TLS roots; HTTPS calls to Slack will fail");
            let config = rustls::ClientConfig::builder_with_provider(ring())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        });
    let https = builder.https_or_http().enable_http1().build();
    Client::builder(TokioExecutor::new()).build(https)
}

/// Slack's Web API with a bot token.
pub struct SlackWebApi {
    base: String,
    token: Secret,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
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
            client: http_client(),
        })
    }

    async fn send(
        &self,
        what: &str,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), ChannelError> {
        let resp = tokio::time::timeout(CALL_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| ChannelError::Transient(format!("slack {what}: timed out")))?
            .map_err(|e| {
                // The connector's text names host and cause, never the token.
                ChannelError::Transient(format!("slack {what}: unreachable ({e})"))
            })?;
        let status = resp.status();
        let body = tokio::time::timeout(CALL_TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| ChannelError::Transient(format!("slack {what}: timed out")))?
            .map_err(|_| ChannelError::Transient(format!("slack {what}: the answer broke off")))?
            .to_bytes();
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
    async fn call(&self, method: &str, req: Request<Full<Bytes>>) -> Result<Value, ChannelError> {
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

    fn post_json(&self, method: &str, body: &Value) -> Result<Request<Full<Bytes>>, ChannelError> {
        Request::builder()
            .method(Method::POST)
            .uri(format!("{}/{method}", self.base))
            .header(AUTHORIZATION, self.bearer())
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(Full::new(Bytes::from(body.to_string())))
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
            .body(Full::new(Bytes::new()))
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
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|_| ChannelError::Failed("slack response_url: bad URL".into()))?;
        self.send("response_url", req).await.map(|_| ())
    }
}
