//! Used vs granted against a real store: a [`UsageSource`] in memory
//! ([`FakeUsage`]) and the store behaviour the sweep relies on
//! (`suite::usage_is_recorded_once_per_ended_grant`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use jit_core::lifecycle::Status;
use jit_core::ports::{PageRequest, RequestStore};
use jit_core::request::{AuditAction, AuditEvent, GrantTarget, Timestamp};
use jit_core::usage::{ApiCall, Lookup, UsageError, UsageSource};

use crate::data::*;

/// Calls per access key, as a usage source answers them; every lookup is
/// logged (key, start, end) so a test can see what was asked.
#[derive(Default)]
pub struct FakeUsage {
    pub calls: BTreeMap<String, Vec<ApiCall>>,
    pub asked: Mutex<Vec<(String, Timestamp, Timestamp)>>,
    /// Answer every lookup with this error instead.
    pub fail: Option<UsageError>,
}

impl FakeUsage {
    /// `key` made these calls: (`eventSource`, `eventName`, `errorCode`).
    pub fn with(mut self, key: &str, calls: &[(&str, &str, Option<&str>)]) -> Self {
        let at = chrono::Utc::now();
        self.calls.insert(
            key.to_string(),
            calls
                .iter()
                .map(|(s, n, e)| ApiCall {
                    event_source: s.to_string(),
                    event_name: n.to_string(),
                    at,
                    error_code: e.map(str::to_string),
                })
                .collect(),
        );
        self
    }

    pub fn asked(&self) -> Vec<(String, Timestamp, Timestamp)> {
        self.asked.lock().unwrap().clone()
    }
}

#[async_trait]
impl UsageSource for FakeUsage {
    async fn calls_by_access_key(
        &self,
        access_key_id: &str,
        start: Timestamp,
        end: Timestamp,
        max_calls: usize,
    ) -> Result<Lookup, UsageError> {
        self.asked
            .lock()
            .unwrap()
            .push((access_key_id.to_string(), start, end));
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        let mut calls = self.calls.get(access_key_id).cloned().unwrap_or_default();
        let truncated = calls.len() > max_calls;
        calls.truncate(max_calls);
        Ok(Lookup { calls, truncated })
    }
}

/// The event the broker appends when it hands out credentials.
pub fn credentials_event(
    request: &jit_core::AccessRequest,
    at: Timestamp,
    key: &str,
) -> AuditEvent {
    let mut e = AuditEvent::new(
        &request.request_id,
        at,
        request.requester.principal.to_string(),
        AuditAction::CredentialsIssued,
        None,
        None,
        Some(format!(
            "credentials issued: access key id {key}, valid 900 s"
        )),
        "test",
    );
    e.access_key_id = Some(key.to_string());
    e
}

/// An assume-role grant (session policy allowing `s3:Get*` and
/// `s3:List*`) that ended an hour before now, two credential sets fetched;
/// an attach-policy grant that ended then too; an assume-role grant that
/// ended 10 minutes ago (not due yet). Returns the three requests.
pub async fn ended_grants(
    store: &dyn RequestStore,
) -> (
    jit_core::AccessRequest,
    jit_core::AccessRequest,
    jit_core::AccessRequest,
) {
    let now = base_time();
    let at = now - chrono::Duration::hours(3);
    let alice = unique_principal("alice");
    let mut request = sample_request(&alice, at);
    request.session_policy = Some(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","s3:List*"],"Resource":"*"}]}"#.into(),
    );
    let r = create(store, &request).await;
    let r = advance(store, &r, Status::Validating, later(at, 1)).await;
    let r = advance(store, &r, Status::Approved, later(at, 2)).await;
    let r = advance(store, &r, Status::Granted, later(at, 3)).await;
    for (secs, key) in [(60, "ASIAUSEDKEY1"), (1_000, "ASIAUSEDKEY2")] {
        store
            .append_audit(&credentials_event(&r, later(at, secs), key))
            .await
            .expect("append credentials-issued");
    }
    let assume = advance(store, &r, Status::Expired, now - chrono::Duration::hours(1)).await;

    let mut attach = sample_request(&alice, later(at, 10));
    attach.target = GrantTarget::AttachPolicy {
        policy_name: jit_core::PolicyName::parse("ReadOnlyAccess").expect("policy name"),
    };
    attach.entitlement = "ReadOnly".into();
    let a = create(store, &attach).await;
    let a = advance(store, &a, Status::Validating, later(at, 11)).await;
    let a = advance(store, &a, Status::Approved, later(at, 12)).await;
    let a = advance(store, &a, Status::Granted, later(at, 13)).await;
    let attach = advance(store, &a, Status::Expired, now - chrono::Duration::hours(1)).await;

    let recent = sample_request(&alice, later(at, 20));
    let q = create(store, &recent).await;
    let q = advance(store, &q, Status::Validating, later(at, 21)).await;
    let q = advance(store, &q, Status::Approved, later(at, 22)).await;
    let q = advance(store, &q, Status::Granted, later(at, 23)).await;
    store
        .append_audit(&credentials_event(&q, later(at, 30), "ASIARECENT"))
        .await
        .expect("append credentials-issued");
    let recent = advance(
        store,
        &q,
        Status::Revoked,
        now - chrono::Duration::minutes(10),
    )
    .await;
    (assume, attach, recent)
}

/// Every `usage` event of the store's last day.
pub async fn usage_events(store: &dyn RequestStore) -> Vec<AuditEvent> {
    let now = base_time();
    let mut out = Vec::new();
    let mut page = PageRequest {
        limit: 100,
        cursor: None,
    };
    loop {
        let p = store
            .audit_events_between(
                now - chrono::Duration::days(1),
                now + chrono::Duration::hours(1),
                &page,
            )
            .await
            .expect("events by time");
        out.extend(
            p.items
                .into_iter()
                .filter(|e| e.action == AuditAction::Usage),
        );
        match p.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => return out,
        }
    }
}
