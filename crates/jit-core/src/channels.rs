//! The ports approvers are reached through — a chat (Slack's Web API), a
//! mailer (SES, or the local outbox), a secret source (Secrets Manager) and
//! a deferrer (work that must finish after an HTTP answer went out) — and
//! what a request records about having told them ([`NoticeState`]).
//!
//! Adapters: `jit-aws` (Slack over HTTPS, SES v2, Secrets Manager, Lambda
//! self-invoke), `jit-local` (outbox, in-process), test fakes.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ports::Secret;
use crate::request::Timestamp;

/// Why a channel call failed. `Transient` is worth retrying (a timeout,
/// throttling, a 5xx); `Failed` is not (a bad token, an unknown channel).
/// Texts go to logs and the audit trail: adapters never put a token or a
/// signed link in them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Failed(String),
}

impl ChannelError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ChannelError::Transient(_))
    }
}

/// Where a chat message landed, so it can be updated in place later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessageRef {
    /// The channel id the chat answered with (not the `#name` asked for).
    pub channel: String,
    /// Slack's message timestamp, its id within the channel.
    pub ts: String,
}

/// A chat message: fallback text (notifications, screen readers) and Block
/// Kit blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub text: String,
    pub blocks: serde_json::Value,
}

/// Slack's Web API, as much of it as approvals need.
#[async_trait]
pub trait ChatApi: Send + Sync {
    /// `chat.postMessage` to a channel (`#name` or id).
    async fn post_message(
        &self,
        channel: &str,
        message: &ChatMessage,
    ) -> Result<ChatMessageRef, ChannelError>;
    /// `chat.update`: replaces a message in place.
    async fn update_message(
        &self,
        at: &ChatMessageRef,
        message: &ChatMessage,
    ) -> Result<(), ChannelError>;
    /// `users.info`: the user's email, when Slack shares it.
    async fn user_email(&self, user_id: &str) -> Result<Option<String>, ChannelError>;
    /// Posts to an interaction's `response_url` (ephemeral answers).
    async fn respond(
        &self,
        response_url: &str,
        body: &serde_json::Value,
    ) -> Result<(), ChannelError>;
}

/// One email to one recipient, with both parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Sends email (SES v2 on AWS; `.eml` files in the local outbox).
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: &Email) -> Result<(), ChannelError>;
}

/// Reads a secret by id (Secrets Manager). Called once, at start.
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn secret(&self, id: &str) -> Result<Secret, ChannelError>;
}

/// Runs a job after the current answer has gone out (Slack wants one within
/// 3 seconds; the decision may take longer). On Lambda: an asynchronous
/// invocation of the same function. The job is JSON the receiver verifies.
#[async_trait]
pub trait Deferrer: Send + Sync {
    async fn defer(&self, job: &serde_json::Value) -> Result<(), ChannelError>;
}

/// What a waiting request records about telling its approvers: which round
/// (0 = the first notice, then one per reminder), when, which channels got
/// it and which failed, and the Slack message to update after the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NoticeState {
    pub round: u32,
    pub last_at: Timestamp,
    /// The end of the approval window, as the first notice computed it
    /// (links expire then; reminders keep it).
    pub deadline: Timestamp,
    /// Channels told in this round: `slack:<channel>`, `email:<address>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<String>,
    /// Channels that failed in this round (audited; tried again later).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<ChatMessageRef>,
    /// The Slack message shows the outcome; nothing more to update.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
}
