//! How requests look as DynamoDB items.
//!
//! An [`AccessRequest`] cannot be stored as-is: its `requester` is an object
//! (the GSI needs the principal as a string) and its `expiresAt` is an
//! RFC 3339 string (DynamoDB TTL only honours a NUMBER of epoch seconds). So
//! an item carries a few flat attributes for keys, indexes, conditions and
//! TTL, plus the untouched record under `record`, which is what reads return
//! — the round trip is exact because nothing is reconstructed from the flat
//! attributes.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use jit_core::lifecycle::Status;
use jit_core::request::{AccessRequest, Timestamp};
use jit_core::{IdempotencyKey, Principal, RequestId};
use serde::{Deserialize, Serialize};

use jit_core::ports::StoreError;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// Attribute names shared by items, key conditions and cursors.
pub(crate) mod attr {
    pub const REQUEST_ID: &str = "requestId";
    pub const REQUESTER: &str = "requester";
    pub const STATUS: &str = "status";
    pub const VERSION: &str = "version";
    pub const EXPIRES_AT: &str = "expiresAt";
    pub const EVENT_ID: &str = "eventId";
    /// `"request"` on request items only: hash key of `allRequests`.
    pub const ENTITY: &str = "entity";
    /// An audit event's UTC day (`YYYY-MM-DD`): hash key of `byDay`.
    pub const DAY: &str = "day";
}

/// The [`attr::ENTITY`] value of request items.
pub(crate) const REQUEST_ENTITY: &str = "request";

/// A request as stored in the requests table.
///
/// This is also the shape of the table's stream images, so a stream consumer
/// (the `expire` Lambda) decodes `NEW_IMAGE`/`OLD_IMAGE` into this type with
/// `serde_dynamo` and reads [`RequestItem::record`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestItem {
    /// Hash key.
    pub request_id: RequestId,
    /// The requester's principal: hash key of the `byRequester` index.
    pub requester: Principal,
    /// The stored status: hash key of the `byStatus` index, and half of the
    /// guard of every transition.
    pub status: Status,
    /// The other half of the guard.
    pub version: u64,
    /// Epoch seconds (rounded up) of the grant's end, for DynamoDB TTL. Absent
    /// until a grant sets `expires_at`, so pending requests are never TTL'd;
    /// absent too while a break-glass request awaits its review, so the item
    /// the review is written to (and `?review=pending` reads) outlives the
    /// grant. The review's write sets it, and TTL then removes the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The request, exactly as the core wrote it.
    pub record: AccessRequest,
    /// `"request"`: puts every request (not the markers) in the
    /// `allRequests` index the admin listing reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
}

impl RequestItem {
    pub fn new(record: &AccessRequest) -> Self {
        RequestItem {
            request_id: record.request_id.clone(),
            requester: record.requester.principal.clone(),
            status: record.status,
            version: record.version,
            expires_at: record
                .expires_at
                .filter(|_| !record.awaits_review())
                .map(ttl_seconds),
            record: record.clone(),
            entity: Some(REQUEST_ENTITY.to_string()),
        }
    }

    pub(crate) fn to_item(&self) -> Result<Item, StoreError> {
        serde_dynamo::aws_sdk_dynamodb_1::to_item(self)
            .map_err(|e| StoreError::Backend(format!("encoding request item: {e}")))
    }

    pub(crate) fn from_item(item: Item) -> Result<Self, StoreError> {
        serde_dynamo::aws_sdk_dynamodb_1::from_item(item)
            .map_err(|e| StoreError::Backend(format!("decoding request item: {}", redact(&e))))
    }
}

/// A decoding error's text without the values it quotes. serde names a bad
/// string value in double quotes (`invalid type: string "…"`), and a stored
/// record holds a task token: error text goes to logs, so quoted values are
/// replaced by `"…"` and only field names and expectations remain.
pub(crate) fn redact(err: &impl std::fmt::Display) -> String {
    let text = err.to_string();
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    for c in text.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// Epoch seconds for a TTL, rounded up so TTL can never act before the grant
/// has really ended.
pub(crate) fn ttl_seconds(at: Timestamp) -> i64 {
    let secs = at.timestamp();
    if at.timestamp_subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}

/// The item that reserves an idempotency key for one requester.
///
/// It lives in the requests table (so the same transaction that stores the
/// request reserves the key) under a hash key no ULID can collide with. It
/// carries no `requester`/`status` attribute, so it never shows up in the
/// indexes, and no `expiresAt`: a key stays used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IdempotencyMarker {
    /// The marker's hash key, from [`IdempotencyMarker::key_for`].
    pub request_id: String,
    /// The request first created with this key.
    pub target_request_id: RequestId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl IdempotencyMarker {
    /// `IDEMPOTENCY#<len>#<requester>#<key>`, where `<len>` is the
    /// requester's length in bytes. Both a principal and a key may contain
    /// `#`, so without the length `("a#b", "c")` and `("a", "b#c")` would share
    /// a marker and one requester could replay another's request.
    pub fn key_for(requester: &Principal, key: &IdempotencyKey) -> String {
        format!(
            "IDEMPOTENCY#{}#{}#{}",
            requester.as_str().len(),
            requester,
            key
        )
    }

    pub fn new(request: &AccessRequest, key: &IdempotencyKey) -> Self {
        IdempotencyMarker {
            request_id: Self::key_for(&request.requester.principal, key),
            target_request_id: request.request_id.clone(),
            fingerprint: request.request_fingerprint.clone(),
        }
    }

    pub(crate) fn to_item(&self) -> Result<Item, StoreError> {
        serde_dynamo::aws_sdk_dynamodb_1::to_item(self)
            .map_err(|e| StoreError::Backend(format!("encoding idempotency marker: {e}")))
    }

    pub(crate) fn from_item(item: Item) -> Result<Self, StoreError> {
        serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| {
            StoreError::Backend(format!("decoding idempotency marker: {}", redact(&e)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, nanos: u32) -> Timestamp {
        chrono::DateTime::from_timestamp(secs, nanos).expect("valid time")
    }

    #[test]
    fn decoding_errors_do_not_repeat_stored_values() {
        // GIVEN an item whose field holds a secret-looking value of the wrong type
        let item: Item = HashMap::from([(
            "version".to_string(),
            AttributeValue::S("AQCEAAAA-secret-token".into()),
        )]);

        // WHEN it is decoded as a request item
        let err = RequestItem::from_item(item).expect_err("not a request item");

        // THEN the error says what was wrong without the value
        let text = err.to_string();
        assert!(!text.contains("secret-token"), "{text}");
        assert!(
            text.starts_with("store backend: decoding request item"),
            "{text}"
        );
        assert_eq!(
            redact(&r#"invalid type: string "abc", expected u64"#),
            r#"invalid type: string "…", expected u64"#
        );
    }

    #[test]
    fn ttl_seconds_round_up_so_ttl_never_acts_early() {
        assert_eq!(ttl_seconds(at(1_700_000_000, 0)), 1_700_000_000);
        assert_eq!(ttl_seconds(at(1_700_000_000, 1)), 1_700_000_001);
        assert_eq!(ttl_seconds(at(1_700_000_000, 999_999_999)), 1_700_000_001);
    }

    #[test]
    fn marker_keys_are_distinct_when_fields_contain_the_separator() {
        let p = |s: &str| Principal::parse(s).expect("principal");
        let k = |s: &str| IdempotencyKey::parse(s).expect("key");
        let a = IdempotencyMarker::key_for(&p("a#b"), &k("c"));
        let b = IdempotencyMarker::key_for(&p("a"), &k("b#c"));
        assert_ne!(a, b);
        assert_eq!(a, "IDEMPOTENCY#3#a#b#c");
        assert!(
            RequestId::parse(&a).is_err(),
            "a marker key is never a request id"
        );
    }

    /// Stream consumers (the `expire` Lambda) get images in the
    /// `aws_lambda_events` representation, not the SDK's: the same type must
    /// decode from both.
    #[test]
    fn request_items_decode_from_the_generic_representation_too() {
        let now = at(1_700_000_000, 123_000_000);
        let record: AccessRequest = serde_json::from_value(serde_json::json!({
            "requestId": RequestId::generate(now),
            "requester": { "principal": "alice@example.com", "authenticatedBy": "jwt" },
            "entitlement": "ReadOnly",
            "account": "123456789012",
            "grantMode": "attach-policy",
            "policyName": "ReadOnlyAccess",
            "duration": 3600,
            "justification": "audit",
            "status": "GRANTED",
            "createdAt": now,
            "updatedAt": now,
            "expiresAt": now,
            "version": 3
        }))
        .expect("a record");
        let item = RequestItem::new(&record);
        assert_eq!(item.expires_at, Some(1_700_000_001));

        let generic: serde_dynamo::Item = serde_dynamo::to_item(&item).expect("encode");
        let back: RequestItem = serde_dynamo::from_item(generic).expect("decode");
        assert_eq!(back, item);
        let sdk = item.to_item().expect("encode");
        assert_eq!(RequestItem::from_item(sdk).expect("decode"), item);
    }

    #[test]
    fn a_break_glass_request_awaiting_review_is_kept_from_ttl_until_reviewed() {
        // GIVEN a granted break-glass request nobody reviewed yet
        let now = at(1_700_000_000, 0);
        let mut record = jit_testkit_free_record(now);
        record.break_glass = Some(jit_core::break_glass::BreakGlass {
            incident: "INC-1".into(),
            review: None,
        });
        // THEN its item carries no TTL, so DynamoDB keeps it for the review
        assert_eq!(RequestItem::new(&record).expires_at, None);
        // AND once reviewed, the grant's end is its TTL again
        record.break_glass.as_mut().unwrap().review = Some(jit_core::break_glass::Review {
            reviewer: Principal::parse("lead@example.com").unwrap(),
            verdict: jit_core::break_glass::ReviewVerdict::Justified,
            reason: "ok".into(),
            at: now,
            trusted_caller: None,
        });
        assert_eq!(RequestItem::new(&record).expires_at, Some(1_700_000_000));
    }

    fn jit_testkit_free_record(now: Timestamp) -> AccessRequest {
        serde_json::from_value(serde_json::json!({
            "requestId": RequestId::generate(now),
            "requester": { "principal": "alice@example.com", "authenticatedBy": "jwt" },
            "entitlement": "BreakGlass",
            "account": "123456789012",
            "grantMode": "assume-role",
            "roleArn": "arn:aws:iam::123456789012:role/BreakGlass",
            "duration": 3600,
            "justification": "INC-1: the primary database is down",
            "status": "GRANTED",
            "createdAt": now,
            "updatedAt": now,
            "expiresAt": now,
            "version": 3
        }))
        .expect("a record")
    }
}
