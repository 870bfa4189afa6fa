//! Sample data and small store steps shared by every crate's tests.
//!
//! Builders return plain values that a test can still change; the `async`
//! helpers drive a store and assert each step worked, so a test body only
//! states what it is about.

use chrono::{Duration, SubsecRound, Utc};
use jit_core::lifecycle::Status;
use jit_core::ports::{CreateOutcome, RequestStore};
use jit_core::request::{
    AccessRequest, AuditAction, AuditEvent, AuthSource, Change, Decision, GrantTarget, Requester,
    Timestamp, Verdict,
};
use jit_core::{
    AccountId, GrantDuration, IdempotencyKey, PolicyName, Principal, RequestId, RoleArn,
};

/// The account every sample request targets.
pub const SAMPLE_ACCOUNT: &str = "123456789012";
/// The role every assume-role sample request targets.
pub const SAMPLE_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/JIT-ElevatedAdminRole";

/// A principal no other test (or earlier run against a shared table) uses:
/// `name+<ULID>@example.test`.
pub fn unique_principal(name: &str) -> Principal {
    let id = RequestId::generate(Utc::now());
    Principal::parse(format!("{name}+{id}@example.test")).expect("a valid principal")
}

/// "Now", to the millisecond. Recent rather than fixed, so records are
/// plausible to a backend with a TTL on `expiresAt`; whole milliseconds so
/// `at + n seconds` gives ids in a known order (ULIDs have ms resolution).
pub fn base_time() -> Timestamp {
    Utc::now().trunc_subsecs(3)
}

/// `at` plus `secs` seconds.
pub fn later(at: Timestamp, secs: i64) -> Timestamp {
    at + Duration::seconds(secs)
}

/// A new REQUESTED assume-role request at `at`, version 1, with only the
/// required fields set.
pub fn sample_request(requester: &Principal, at: Timestamp) -> AccessRequest {
    AccessRequest {
        request_id: RequestId::generate(at),
        requester: Requester {
            principal: requester.clone(),
            authenticated_by: AuthSource::Jwt,
            groups: vec![],
            via: None,
        },
        entitlement: "JIT-ElevatedAdminRole".into(),
        account: AccountId::parse(SAMPLE_ACCOUNT).expect("valid account"),
        target: GrantTarget::AssumeRole {
            role_arn: RoleArn::parse(SAMPLE_ROLE_ARN).expect("valid role ARN"),
        },
        duration: GrantDuration::from_secs(3600).expect("valid duration"),
        justification: "incident 42: database failover".into(),
        status: Status::Requested,
        created_at: at,
        updated_at: at,
        decided_at: None,
        granted_at: None,
        expires_at: None,
        decisions: vec![],
        reason: None,
        session_policy: None,
        scope: None,
        policy_generation: None,
        idempotency_key: None,
        request_fingerprint: None,
        simulate_approval: false,
        task_token: None,
        used_link_nonces: vec![],
        notice: None,
        extensions: vec![],
        session_deny: None,
        break_glass: None,
        break_glass_notice: None,
        version: 1,
    }
}

/// A GRANTED attach-policy request with every optional field set (and
/// characters that trip naive escaping), for round-trip tests.
pub fn full_request(requester: &Principal, at: Timestamp) -> AccessRequest {
    let decided = later(at, 60);
    let mut r = sample_request(requester, at);
    r.requester.authenticated_by = AuthSource::TrustedCaller;
    r.requester.groups = vec!["eng".into(), "on-call".into(), "sécurité".into()];
    r.requester.via = Some("slack-bot".into());
    r.entitlement = "ReadOnly \"prod\" — ünïcode".into();
    r.target = GrantTarget::AttachPolicy {
        policy_name: PolicyName::parse("ReadOnlyAccess").expect("valid policy name"),
    };
    r.justification = "line one\nline two; DROP TABLE requests; -- 'quoted' \"double\"".into();
    r.status = Status::Granted;
    r.updated_at = decided;
    r.decided_at = Some(decided);
    r.granted_at = Some(decided);
    r.expires_at = Some(decided + r.duration.as_chrono());
    r.decisions = vec![
        Decision {
            approver: Principal::parse("bob@example.com").expect("valid principal"),
            verdict: Verdict::Approve,
            at: later(at, 30),
            reason: Some("looks right".into()),
            groups: vec!["leads".into(), "sécurité".into()],
            via: Some("api".into()),
            trusted_caller: Some("arn:aws:sts::123456789012:assumed-role/JitChatBot/bot".into()),
        },
        Decision {
            approver: Principal::parse("carol@example.com").expect("valid principal"),
            verdict: Verdict::Deny,
            at: later(at, 45),
            reason: None,
            groups: vec![],
            via: None,
            trusted_caller: None,
        },
    ];
    r.reason = Some("approved by quorum".into());
    r.session_policy = Some(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#
            .into(),
    );
    r.idempotency_key = Some(IdempotencyKey::parse("retry-key-0001").expect("valid key"));
    r.request_fingerprint = Some("f".repeat(64));
    r.simulate_approval = true;
    r.task_token = Some(
        jit_core::request::TaskToken::parse("AQCEAAAAKgAAAAMAAAAAAAAAAf+token")
            .expect("valid task token"),
    );
    r.used_link_nonces = vec!["01JLINKNONCE0000000000000A".into()];
    r.notice = Some(jit_core::channels::NoticeState {
        round: 2,
        last_at: later(at, 20),
        deadline: later(at, 3620),
        delivered: vec![
            "slack:#jit-approvals".into(),
            "email:bob@example.com".into(),
        ],
        failed: vec!["email:\"quoted\"@example.com".into()],
        slack: Some(jit_core::channels::ChatMessageRef {
            channel: "C0123456".into(),
            ts: "1700000000.000100".into(),
        }),
        closed: true,
    });
    r.break_glass = Some(jit_core::break_glass::BreakGlass {
        incident: "INC-42".into(),
        review: Some(jit_core::break_glass::Review {
            reviewer: Principal::parse("carol@example.com").expect("valid principal"),
            verdict: jit_core::break_glass::ReviewVerdict::NotJustified,
            reason: "could have waited — \"INC-42\" was minor".into(),
            at: later(at, 90),
            trusted_caller: None,
        }),
    });
    r.break_glass_notice = Some(jit_core::break_glass::BreakGlassNotice {
        round: 1,
        last_at: later(at, 70),
        delivered: vec!["slack:#security".into()],
        failed: vec!["email:bob@example.com".into()],
    });
    r.version = 4;
    r
}

/// `request` with an idempotency key and the fingerprint of its body.
pub fn with_idempotency(mut request: AccessRequest, key: &str, fingerprint: &str) -> AccessRequest {
    request.idempotency_key = Some(IdempotencyKey::parse(key).expect("valid idempotency key"));
    request.request_fingerprint = Some(fingerprint.to_string());
    request
}

/// The `Created` event that goes with storing `request`, as the store
/// keeps it (with the request's snapshot).
pub fn created_event(request: &AccessRequest) -> AuditEvent {
    let event = AuditEvent::new(
        &request.request_id,
        request.created_at,
        request.requester.principal.to_string(),
        AuditAction::Created,
        None,
        Some(request.status),
        None,
        "test",
    );
    jit_core::trail::complete(None, request, &event)
}

/// A `Note` event about `id` (or about nothing stored yet, for a rejection).
pub fn note_event(id: &RequestId, at: Timestamp, action: AuditAction, reason: &str) -> AuditEvent {
    AuditEvent::new(
        id,
        at,
        "system:test".into(),
        action,
        None,
        None,
        Some(reason.to_string()),
        "test",
    )
}

/// A change made by `actor` at `at`.
pub fn change(actor: &str, at: Timestamp) -> Change {
    Change {
        actor: actor.to_string(),
        at,
        reason: Some(format!("{actor} says so")),
        source: "test",
    }
}

/// Stores `request` with its `Created` event and returns it; panics unless
/// the store reports it newly created.
pub async fn create(store: &dyn RequestStore, request: &AccessRequest) -> AccessRequest {
    match store.create(request, &created_event(request)).await {
        Ok(CreateOutcome::Created(r)) => {
            assert_eq!(&r, request, "create must return the stored request");
            r
        }
        other => panic!("creating {} failed: {other:?}", request.request_id),
    }
}

/// Moves `request` one step to `to` at `at` (through the core's lifecycle
/// table) and stores it; returns the new version.
pub async fn advance(
    store: &dyn RequestStore,
    request: &AccessRequest,
    to: Status,
    at: Timestamp,
) -> AccessRequest {
    let (next, event) = request
        .transition(to, &change("system:workflow", at))
        .unwrap_or_else(|e| panic!("the lifecycle refuses the sample step: {e}"));
    store
        .transition(request, &next, &event)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "storing {} {} -> {to} failed: {e:?}",
                request.request_id, request.status
            )
        });
    next
}

/// Creates a request for `requester` at `at` and walks it to APPROVAL_PENDING,
/// one second per step.
pub async fn pending_request(
    store: &dyn RequestStore,
    requester: &Principal,
    at: Timestamp,
) -> AccessRequest {
    let r = create(store, &sample_request(requester, at)).await;
    let r = advance(store, &r, Status::Validating, later(at, 1)).await;
    advance(store, &r, Status::ApprovalPending, later(at, 2)).await
}
