//! [`jit_core::usage::UsageSource`] on CloudTrail: `LookupEvents` by
//! `AccessKeyId`, the calls one session made. Linked by the `expire` Lambda
//! only (feature `cloudtrail`), whose scheduled sweep records used vs
//! granted.
//!
//! What CloudTrail's event history is, and is not: the management events of
//! the last 90 days in *this* region (a call to another region's endpoint is
//! in that region's history; global services such as IAM record theirs in
//! us-east-1), data events (S3 object reads, Lambda invokes) never. And it
//! answers 2 requests a second per account and region: a throttled lookup
//! is [`UsageError::Throttled`], and the sweep stops looking up until the
//! next minute.

use async_trait::async_trait;
use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws_smithy_types::DateTime;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use jit_core::request::Timestamp;
use jit_core::usage::{ApiCall, Lookup, UsageError, UsageSource};

use crate::error::describe;

/// The most events `LookupEvents` returns per page.
const PAGE: usize = 50;

/// CloudTrail answers `LookupEvents` twice a second per account and region:
/// this process never asks faster, so a busy sweep is paced rather than
/// throttled (and retried, and throttled again).
const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Reads one session's calls from CloudTrail's event history.
#[derive(Debug, Clone)]
pub struct CloudTrailUsage {
    client: aws_sdk_cloudtrail::Client,
    /// When the last call was (or is to be) sent.
    last_call: std::sync::Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
}

impl CloudTrailUsage {
    pub fn new(client: aws_sdk_cloudtrail::Client) -> Self {
        CloudTrailUsage {
            client,
            last_call: Default::default(),
        }
    }

    /// Waits for this call's slot: [`MIN_INTERVAL`] after the last one's.
    async fn pace(&self) {
        let slot = {
            let mut last = self.last_call.lock().expect("not poisoned");
            let now = tokio::time::Instant::now();
            let slot = last.map_or(now, |t| (t + MIN_INTERVAL).max(now));
            *last = Some(slot);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        Self::new(aws_sdk_cloudtrail::Client::new(config))
    }
}

fn smithy_time(t: Timestamp) -> DateTime {
    DateTime::from_millis(t.timestamp_millis())
}

/// The parts of an event's `CloudTrailEvent` JSON the record needs that
/// `LookupEvents` does not return as fields.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    event_source: Option<String>,
}

#[async_trait]
impl UsageSource for CloudTrailUsage {
    async fn calls_by_access_key(
        &self,
        access_key_id: &str,
        start: Timestamp,
        end: Timestamp,
        max_calls: usize,
    ) -> Result<Lookup, UsageError> {
        let attribute = LookupAttribute::builder()
            .attribute_key(LookupAttributeKey::AccessKeyId)
            .attribute_value(access_key_id)
            .build()
            .map_err(|e| UsageError::Failed(format!("LookupEvents: {e}")))?;
        let mut out = Lookup::default();
        let mut token: Option<String> = None;
        loop {
            self.pace().await;
            let answer = self
                .client
                .lookup_events()
                .lookup_attributes(attribute.clone())
                .start_time(smithy_time(start))
                .end_time(smithy_time(end))
                .max_results(PAGE as i32)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    let text = describe("LookupEvents", &e);
                    let code = e.code().unwrap_or_default();
                    if code.contains("Throttl") || code.contains("RateExceeded") {
                        UsageError::Throttled(text)
                    } else {
                        UsageError::Failed(text)
                    }
                })?;
            for ev in answer.events() {
                if out.calls.len() >= max_calls {
                    out.truncated = true;
                    return Ok(out);
                }
                let detail: Option<Detail> = ev
                    .cloud_trail_event()
                    .and_then(|j| serde_json::from_str(j).ok());
                let event_source = ev
                    .event_source()
                    .map(str::to_string)
                    .or_else(|| detail.as_ref().and_then(|d| d.event_source.clone()))
                    .unwrap_or_default();
                let at = ev
                    .event_time()
                    .and_then(|t| chrono::DateTime::from_timestamp_millis(t.to_millis().ok()?))
                    .unwrap_or(start);
                out.calls.push(ApiCall {
                    event_source,
                    event_name: ev.event_name().unwrap_or_default().to_string(),
                    at,
                    error_code: detail.and_then(|d| d.error_code),
                });
            }
            match answer.next_token() {
                Some(t) if !t.is_empty() => {
                    if out.calls.len() >= max_calls {
                        out.truncated = true;
                        return Ok(out);
                    }
                    token = Some(t.to_string());
                }
                _ => return Ok(out),
            }
        }
    }
}
