//! The API through its one entry point, `jit_api::handle`, over the real
//! SQLite store and the sample catalog. GIVEN / WHEN / THEN per test.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use jit_api::{ApiRequest, handle};
use jit_core::ports::{
    CreateOutcome, ManualClock, Page, PageRequest, RequestStore, StoreError, Workflow,
    WorkflowError, WorkflowInput,
};
use jit_core::request::{AuditEvent, Change, TaskToken};
use jit_core::service::Settings;
use jit_core::{AccessRequest, AuthSource, Broker, Caller, Catalog, Principal, RequestId, Status};
use serde_json::{Value, json};

const CATALOG: &str = include_str!("../../../../config/catalog.example.yaml");

/// A task token and how its task was completed: output, or (error, cause).
type Completion = (String, Result<Value, (String, String)>);

/// Records workflow starts, stops and task completions; can be told to fail
/// starts, or to answer that the waiting task is gone (timed out).
#[derive(Default)]
struct RecordingWorkflow {
    started: Mutex<Vec<WorkflowInput>>,
    stopped: Mutex<Vec<RequestId>>,
    completed: Mutex<Vec<Completion>>,
    fail: Mutex<bool>,
    task_gone: Mutex<bool>,
}

#[async_trait]
impl Workflow for RecordingWorkflow {
    async fn start(&self, input: &WorkflowInput) -> Result<(), WorkflowError> {
        if *self.fail.lock().unwrap() {
            return Err(WorkflowError::Backend(
                "StartExecution: ServiceUnavailable".into(),
            ));
        }
        self.started.lock().unwrap().push(input.clone());
        Ok(())
    }
    async fn stop(&self, id: &RequestId, _reason: &str) -> Result<(), WorkflowError> {
        self.stopped.lock().unwrap().push(id.clone());
        Ok(())
    }
    async fn send_task_success(
        &self,
        token: &TaskToken,
        output: &Value,
    ) -> Result<(), WorkflowError> {
        if *self.task_gone.lock().unwrap() {
            return Err(WorkflowError::TaskGone);
        }
        self.completed
            .lock()
            .unwrap()
            .push((token.expose().to_string(), Ok(output.clone())));
        Ok(())
    }
    async fn send_task_failure(
        &self,
        token: &TaskToken,
        error: &str,
        cause: &str,
    ) -> Result<(), WorkflowError> {
        self.completed.lock().unwrap().push((
            token.expose().to_string(),
            Err((error.to_string(), cause.to_string())),
        ));
        Ok(())
    }
    async fn history(&self, _id: &RequestId) -> Result<Vec<Value>, WorkflowError> {
        Ok(vec![json!({"type": "ExecutionStarted"})])
    }
}

/// The real store, with the standalone audit events it was given kept aside
/// so tests can see rejections (which belong to no stored request).
struct Observed {
    inner: jit_store_sqlite::SqliteStore,
    appended: Mutex<Vec<AuditEvent>>,
}

#[async_trait]
impl RequestStore for Observed {
    async fn create(&self, r: &AccessRequest, e: &AuditEvent) -> Result<CreateOutcome, StoreError> {
        self.inner.create(r, e).await
    }
    async fn get(&self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        self.inner.get(id).await
    }
    async fn transition(
        &self,
        p: &AccessRequest,
        n: &AccessRequest,
        e: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.inner.transition(p, n, e).await
    }
    async fn list_by_requester(
        &self,
        r: &Principal,
        p: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        self.inner.list_by_requester(r, p).await
    }
    async fn list_by_status(
        &self,
        s: Status,
        p: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        self.inner.list_by_status(s, p).await
    }
    async fn audit_events(&self, id: &RequestId) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit_events(id).await
    }
    async fn append_audit(&self, e: &AuditEvent) -> Result<(), StoreError> {
        self.appended.lock().unwrap().push(e.clone());
        self.inner.append_audit(e).await
    }
    async fn first_use(
        &self,
        key: &str,
        now: jit_core::request::Timestamp,
        expires_at: jit_core::request::Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.first_use(key, now, expires_at).await
    }
}

struct Fixture {
    broker: Broker,
    store: Arc<Observed>,
    workflow: Arc<RecordingWorkflow>,
    clock: Arc<ManualClock>,
}

fn fixture() -> Fixture {
    fixture_with(CATALOG)
}

/// The fixture over another catalog.
fn fixture_with(catalog: &str) -> Fixture {
    let store = Arc::new(Observed {
        inner: jit_store_sqlite::SqliteStore::in_memory().expect("in-memory store"),
        appended: Mutex::new(vec![]),
    });
    let workflow = Arc::new(RecordingWorkflow::default());
    let clock = Arc::new(ManualClock::new(
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    ));
    let broker = Broker {
        store: store.clone(),
        workflow: workflow.clone(),
        catalog: Arc::new(Catalog::parse(catalog, "catalog.yaml").unwrap()),
        clock: clock.clone(),
        settings: Settings { demo_mode: true },
        grants: None,
        policy: None,
    };
    Fixture {
        broker,
        store,
        workflow,
        clock,
    }
}

fn person(email: &str, groups: &[&str]) -> Caller {
    Caller::person(
        Principal::parse(email).unwrap(),
        AuthSource::Jwt,
        groups.iter().map(|g| g.to_string()).collect(),
    )
}

/// A trusted app that files requests for people (not trusted to decide).
fn trusted_app() -> Caller {
    Caller {
        identity: None,
        trusted_as: Some("chat-bot".into()),
        trusted_to_decide: false,
        identify_hint: None,
    }
}

/// A trusted app configured to decide for the approvers it names too.
fn trusted_decider() -> Caller {
    Caller {
        identity: None,
        trusted_as: Some("approver-bot".into()),
        trusted_to_decide: true,
        identify_hint: None,
    }
}

fn nobody() -> Caller {
    Caller::default()
}

async fn call_raw(
    f: &Fixture,
    caller: &Caller,
    method: Method,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (path.to_string(), None),
    };
    let resp = handle(
        &f.broker,
        caller,
        ApiRequest {
            method,
            path,
            query,
            headers: h,
            body: Bytes::from(body),
        },
    )
    .await;
    let status = resp.status();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = serde_json::from_str(resp.body()).expect("every answer is JSON");
    (status, v)
}

async fn post(f: &Fixture, caller: &Caller, path: &str, body: Value) -> (StatusCode, Value) {
    call_raw(
        f,
        caller,
        Method::POST,
        path,
        body.to_string().into_bytes(),
        &[("content-type", "application/json")],
    )
    .await
}

async fn get(f: &Fixture, caller: &Caller, path: &str) -> (StatusCode, Value) {
    call_raw(f, caller, Method::GET, path, vec![], &[]).await
}

/// name, body, path, expected status, error code, error field.
type Case = (
    &'static str,
    Vec<u8>,
    &'static str,
    StatusCode,
    &'static str,
    Option<&'static str>,
);

fn seed_body() -> Value {
    json!({
        "requester": "alice@example.com",
        "role": "JIT-ElevatedAdminRole",
        "roleArn": "arn:aws:iam::123456789012:role/JIT-ElevatedAdminRole",
        "duration": 900,
        "simulateApproval": true
    })
}

fn canonical(entitlement: &str) -> Value {
    json!({"entitlement": entitlement, "duration": 1800, "justification": "INC-42 database failover"})
}

async fn stored_count(f: &Fixture, who: &str) -> usize {
    f.store
        .list_by_requester(&Principal::parse(who).unwrap(), &PageRequest::first(100))
        .await
        .unwrap()
        .items
        .len()
}

fn assert_error(v: &Value, code: &str, field: Option<&str>) {
    assert_eq!(v["error"]["code"], code, "{v}");
    match field {
        Some(f) => assert_eq!(v["error"]["field"], f, "{v}"),
        None => assert!(v["error"].get("field").is_none(), "{v}"),
    }
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

#[tokio::test]
async fn seed_body_from_a_trusted_caller_creates_and_starts_the_workflow() {
    // GIVEN the seed's body sent by a trusted app acting for alice
    let f = fixture();
    // WHEN it is posted to the seed's endpoint
    let (status, v) = post(&f, &trusted_app(), "/request-access", seed_body()).await;
    // THEN a request is created for alice, recorded as asserted by the app
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "REQUESTED");
    assert_eq!(v["requester"]["principal"], "alice@example.com");
    assert_eq!(v["requester"]["authenticatedBy"], "trusted-caller");
    assert_eq!(v["requester"]["via"], "chat-bot");
    assert_eq!(v["grantMode"], "assume-role");
    assert_eq!(v["duration"], 900);
    assert!(v.get("requestFingerprint").is_none());
    let id = v["requestId"].as_str().unwrap().to_string();
    // AND the workflow was started once, for that id, auto-approved in demo mode
    let started = f.workflow.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].request_id.as_str(), id);
    assert!(started[0].auto_approve);
    assert_eq!(started[0].approval_timeout_seconds, 3600);
    // AND GET returns it, with its audit trail
    let (status, got) = get(&f, &trusted_app(), &format!("/requests/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["requestId"], id.as_str());
    let (_, audit) = get(&f, &trusted_app(), &format!("/requests/{id}/audit")).await;
    assert_eq!(audit["events"][0]["action"], "created");
    assert_eq!(audit["events"][0]["to"], "REQUESTED");
}

#[tokio::test]
async fn simulate_approval_is_ignored_outside_demo_mode() {
    let mut f = fixture();
    f.broker.settings.demo_mode = false;
    let (status, v) = post(&f, &trusted_app(), "/request-access", seed_body()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(v["simulateApproval"], true, "recorded as asked");
    assert!(!f.workflow.started.lock().unwrap()[0].auto_approve);
}

#[tokio::test]
async fn canonical_body_uses_the_authenticated_identity() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    let (status, v) = post(&f, &alice, "/requests", canonical("OnCallReadOnly")).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["requester"]["authenticatedBy"], "jwt");
    assert_eq!(v["entitlement"], "OnCallReadOnly");
    assert_eq!(v["account"], "123456789012");
    assert_eq!(v["justification"], "INC-42 database failover");
    assert!(
        !f.workflow.started.lock().unwrap()[0].auto_approve,
        "engineering is not auto-approved"
    );
}

#[tokio::test]
async fn auto_approve_rule_is_passed_to_the_workflow() {
    let f = fixture();
    let sre = person("sre@example.com", &[]);
    let (status, _) = post(&f, &sre, "/requests", canonical("OnCallReadOnly")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(
        f.workflow.started.lock().unwrap()[0].auto_approve,
        "sre via catalog membership"
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_and_nothing_is_stored() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    let mut big = canonical("OnCallReadOnly");
    big["justification"] = json!("x".repeat(1024 * 1024));
    let cases: Vec<Case> = vec![
        ("malformed JSON", b"{\"entitlement\": ".to_vec(), "/requests", StatusCode::BAD_REQUEST, "malformed_json", None),
        ("not an object", b"[1,2]".to_vec(), "/requests", StatusCode::BAD_REQUEST, "malformed_json", None),
        ("empty body", b"".to_vec(), "/requests", StatusCode::BAD_REQUEST, "malformed_json", None),
        ("unknown role", json!({"role": "NoSuchRole", "requester": "alice@example.com"}).to_string().into_bytes(), "/request-access", StatusCode::BAD_REQUEST, "unknown_entitlement", Some("role")),
        ("case matters", json!({"entitlement": "oncallreadonly", "justification": "x"}).to_string().into_bytes(), "/requests", StatusCode::BAD_REQUEST, "unknown_entitlement", Some("entitlement")),
        ("ten years", json!({"entitlement": "OnCallReadOnly", "duration": 315_360_000, "justification": "x"}).to_string().into_bytes(), "/requests", StatusCode::BAD_REQUEST, "invalid_field", Some("duration")),
        ("over entitlement max", json!({"entitlement": "OnCallReadOnly", "duration": "3h", "justification": "x"}).to_string().into_bytes(), "/requests", StatusCode::BAD_REQUEST, "invalid_field", Some("duration")),
        ("negative duration", json!({"entitlement": "OnCallReadOnly", "duration": -5, "justification": "x"}).to_string().into_bytes(), "/requests", StatusCode::BAD_REQUEST, "invalid_field", Some("duration")),
        ("duration text", json!({"entitlement": "OnCallReadOnly", "duration": "soon", "justification": "x"}).to_string().into_bytes(), "/requests", StatusCode::BAD_REQUEST, "invalid_field", Some("duration")),
        ("no justification", json!({"entitlement": "OnCallReadOnly"}).to_string().into_bytes(), "/requests", StatusCode::BAD_REQUEST, "invalid_field", Some("justification")),
        ("wrong type", json!({"entitlement": 5, "justification": "x"}).to_string().into_bytes(), "/requests", StatusCode::BAD_REQUEST, "invalid_field", Some("entitlement")),
        ("unknown field", json!({"entitlement": "OnCallReadOnly", "justification": "x", "roleArn": "arn:aws:iam::123456789012:role/Admin"}).to_string().into_bytes(), "/requests", StatusCode::BAD_REQUEST, "invalid_field", Some("roleArn")),
        ("foreign role ARN", json!({"role": "JIT-ElevatedAdminRole", "roleArn": "arn:aws:iam::123456789012:role/Admin"}).to_string().into_bytes(), "/request-access", StatusCode::BAD_REQUEST, "invalid_field", Some("roleArn")),
        ("other account", json!({"entitlement": "OnCallReadOnly", "justification": "x", "account": "210987654321"}).to_string().into_bytes(), "/requests", StatusCode::BAD_REQUEST, "invalid_field", Some("account")),
        ("bad account", json!({"entitlement": "OnCallReadOnly", "justification": "x", "account": "12"}).to_string().into_bytes(), "/requests", StatusCode::BAD_REQUEST, "invalid_field", Some("account")),
        ("simulateApproval type", json!({"role": "JIT-ElevatedAdminRole", "simulateApproval": "yes"}).to_string().into_bytes(), "/request-access", StatusCode::BAD_REQUEST, "invalid_field", Some("simulateApproval")),
        ("1 MiB body", big.to_string().into_bytes(), "/requests", StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None),
        ("impersonation", json!({"entitlement": "OnCallReadOnly", "justification": "x", "requester": "bob@example.com"}).to_string().into_bytes(), "/requests", StatusCode::FORBIDDEN, "identity_mismatch", Some("requester")),
    ];
    for (name, body, path, want_status, code, field) in cases {
        let (status, v) = call_raw(
            &f,
            &alice,
            Method::POST,
            path,
            body,
            &[("content-type", "application/json")],
        )
        .await;
        assert_eq!(status, want_status, "{name}: {v}");
        assert_error(&v, code, field);
    }
    // Wrong content type.
    let (status, v) = call_raw(
        &f,
        &alice,
        Method::POST,
        "/requests",
        canonical("OnCallReadOnly").to_string().into_bytes(),
        &[("content-type", "text/plain")],
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error(&v, "unsupported_media_type", None);
    // Nothing stored, nothing started.
    assert_eq!(stored_count(&f, "alice@example.com").await, 0);
    assert_eq!(stored_count(&f, "bob@example.com").await, 0);
    assert!(f.workflow.started.lock().unwrap().is_empty());
}

#[tokio::test]
async fn identity_is_required_and_not_taken_from_the_body() {
    let f = fixture();
    let (status, v) = post(&f, &nobody(), "/request-access", seed_body()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&v, "unauthenticated", None);
    let (status, _) = get(&f, &nobody(), "/requests").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(stored_count(&f, "alice@example.com").await, 0);
}

#[tokio::test]
async fn ineligible_requester_is_refused_and_the_refusal_is_audited() {
    let f = fixture();
    let eve = person("eve@example.com", &["marketing"]);
    let (status, v) = post(&f, &eve, "/requests", canonical("OnCallReadOnly")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&v, "not_eligible", Some("entitlement"));
    assert_eq!(stored_count(&f, "eve@example.com").await, 0);
    let appended = f.store.appended.lock().unwrap().clone();
    assert_eq!(appended.len(), 1);
    assert_eq!(appended[0].actor, "eve@example.com");
    assert_eq!(
        serde_json::to_value(appended[0].action).unwrap(),
        "rejected"
    );
    assert!(
        appended[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("OnCallReadOnly")
    );
    let trail = f.store.audit_events(&appended[0].request_id).await.unwrap();
    assert_eq!(trail, appended, "the rejection is stored, not only seen");
}

#[tokio::test]
async fn idempotency_key_replays_or_conflicts() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    let key = [
        ("content-type", "application/json"),
        ("idempotency-key", "k-123"),
    ];
    let body = canonical("OnCallReadOnly").to_string().into_bytes();
    let (s1, first) = call_raw(&f, &alice, Method::POST, "/requests", body.clone(), &key).await;
    let (s2, again) = call_raw(&f, &alice, Method::POST, "/requests", body, &key).await;
    assert_eq!(s1, StatusCode::CREATED);
    assert_eq!(s2, StatusCode::OK);
    assert_eq!(first["requestId"], again["requestId"]);
    let mut other = canonical("OnCallReadOnly");
    other["duration"] = json!(900);
    let (s3, v) = call_raw(
        &f,
        &alice,
        Method::POST,
        "/requests",
        other.to_string().into_bytes(),
        &key,
    )
    .await;
    assert_eq!(s3, StatusCode::CONFLICT);
    assert_error(&v, "idempotency_key_reused", Some("idempotencyKey"));
    assert_eq!(stored_count(&f, "alice@example.com").await, 1);
    assert_eq!(
        f.workflow.started.lock().unwrap().len(),
        1,
        "a replay starts nothing"
    );
}

#[tokio::test]
async fn visibility_requester_and_approvers_only() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    let (_, v) = post(&f, &alice, "/requests", canonical("JIT-ElevatedAdminRole")).await;
    let id = v["requestId"].as_str().unwrap();
    let path = format!("/requests/{id}");
    assert_eq!(get(&f, &alice, &path).await.0, StatusCode::OK);
    assert_eq!(
        get(&f, &person("lead@example.com", &[]), &path).await.0,
        StatusCode::OK,
        "approver"
    );
    let (status, v) = get(&f, &person("mallory@example.com", &[]), &path).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "others cannot even learn it exists"
    );
    assert_error(&v, "not_found", None);
    assert_eq!(
        get(&f, &alice, "/requests/not-an-id").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&f, &alice, "/requests/01ARZ3NDEKTSV4RRFFQ69G5FAV")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn listing_mine_and_the_approver_view() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    let bob = person("bob@example.com", &["engineering"]);
    let mut ids = vec![];
    for _ in 0..3 {
        let (_, v) = post(&f, &alice, "/requests", canonical("JIT-ElevatedAdminRole")).await;
        ids.push(v["requestId"].as_str().unwrap().to_string());
        f.clock.advance(chrono::Duration::seconds(1));
    }
    post(&f, &bob, "/requests", canonical("JIT-ElevatedAdminRole")).await;
    let (status, v) = get(&f, &alice, "/requests?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    let page1: Vec<&str> = v["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requestId"].as_str().unwrap())
        .collect();
    assert_eq!(
        page1,
        vec![ids[2].as_str(), ids[1].as_str()],
        "newest first"
    );
    let cursor = v["nextCursor"].as_str().unwrap();
    let (_, v2) = get(&f, &alice, &format!("/requests?limit=2&cursor={cursor}")).await;
    assert_eq!(v2["requests"].as_array().unwrap().len(), 1);
    assert_eq!(v2["requests"][0]["requestId"], ids[0].as_str());
    assert!(v2["nextCursor"].is_null());
    // The approver sees everyone's pending requests for entitlements they approve.
    let (_, pending) = get(
        &f,
        &person("lead@example.com", &[]),
        "/requests?status=REQUESTED",
    )
    .await;
    assert_eq!(pending["requests"].as_array().unwrap().len(), 4);
    // A non-approver sees none; their own are excluded from the approver view.
    let (_, none) = get(&f, &bob, "/requests?status=REQUESTED").await;
    assert_eq!(none["requests"].as_array().unwrap().len(), 0);
    for (q, field) in [
        ("status=granted", "status"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("cursor=zzz", "cursor"),
        ("colour=red", "colour"),
    ] {
        let (status, v) = get(&f, &alice, &format!("/requests?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert_eq!(v["error"]["field"], field, "{q}");
    }
}

#[tokio::test]
async fn cancel_while_pending_once_by_the_requester_only() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    let (_, v) = post(&f, &alice, "/requests", canonical("JIT-ElevatedAdminRole")).await;
    let id = v["requestId"].as_str().unwrap().to_string();
    let path = format!("/requests/{id}/cancel");
    let (status, v) = post(&f, &person("lead@example.com", &[]), &path, json!({})).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an approver may see but not cancel: {v}"
    );
    let (status, v) = post(&f, &alice, &path, json!({"reason": "fixed without it"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "CANCELLED");
    assert_eq!(v["reason"], "fixed without it");
    assert!(
        f.workflow.stopped.lock().unwrap().is_empty(),
        "a cancel never stops an execution (it might be granting)"
    );
    let (status, v) = call_raw(&f, &alice, Method::POST, &path, vec![], &[]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&v, "invalid_state", None);
    let (_, audit) = get(&f, &alice, &format!("/requests/{id}/audit")).await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["from"], "REQUESTED");
    assert_eq!(events[1]["to"], "CANCELLED");
    assert_eq!(events[1]["actor"], "alice@example.com");
}

#[tokio::test]
async fn a_workflow_that_cannot_start_fails_the_request_visibly() {
    let f = fixture();
    *f.workflow.fail.lock().unwrap() = true;
    let alice = person("alice@example.com", &["engineering"]);
    let (status, v) = post(&f, &alice, "/requests", canonical("OnCallReadOnly")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&v, "workflow_unavailable", None);
    assert!(
        !v.to_string().contains("ServiceUnavailable"),
        "no backend text in the body"
    );
    let page = f
        .store
        .list_by_requester(
            &Principal::parse("alice@example.com").unwrap(),
            &PageRequest::first(10),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].status, Status::Failed);
}

#[tokio::test]
async fn granted_past_expiry_reads_expired() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    let (_, v) = post(&f, &alice, "/requests", canonical("JIT-ElevatedAdminRole")).await;
    let id = RequestId::parse(v["requestId"].as_str().unwrap()).unwrap();
    let mut r = f.store.get(&id).await.unwrap().unwrap();
    for to in [
        Status::Validating,
        Status::ApprovalPending,
        Status::Approved,
        Status::Granted,
    ] {
        let change = Change {
            actor: "system:test".into(),
            at: f.clock.now_for_test(),
            reason: None,
            source: "test",
        };
        let (next, ev) = r.transition(to, &change).unwrap();
        f.store.transition(&r, &next, &ev).await.unwrap();
        r = next;
    }
    let path = format!("/requests/{id}");
    assert_eq!(get(&f, &alice, &path).await.1["status"], "GRANTED");
    f.clock.advance(chrono::Duration::seconds(1800));
    assert_eq!(get(&f, &alice, &path).await.1["status"], "EXPIRED");
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let f = fixture();
    let alice = person("alice@example.com", &[]);
    let (status, v) = get(&f, &alice, "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&v, "route_not_found", None);
    let (status, v) = call_raw(&f, &alice, Method::DELETE, "/requests", vec![], &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&v, "method_not_allowed", None);
}

trait NowForTest {
    fn now_for_test(&self) -> chrono::DateTime<chrono::Utc>;
}

impl NowForTest for ManualClock {
    fn now_for_test(&self) -> chrono::DateTime<chrono::Utc> {
        jit_core::ports::Clock::now(self)
    }
}

/// Moves a fresh request to APPROVAL_PENDING with a task token, as the
/// workflow's notify step does.
async fn pending(f: &Fixture, requester: &Caller, token: &str) -> String {
    let (status, v) = post(
        f,
        requester,
        "/requests",
        canonical("JIT-ElevatedAdminRole"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = RequestId::parse(v["requestId"].as_str().unwrap()).unwrap();
    let mut r = f.store.get(&id).await.unwrap().unwrap();
    for to in [Status::Validating, Status::ApprovalPending] {
        let change = Change {
            actor: "system:test".into(),
            at: f.clock.now_for_test(),
            reason: None,
            source: "test",
        };
        let (mut next, ev) = r.transition(to, &change).unwrap();
        if to == Status::ApprovalPending {
            next.task_token = Some(TaskToken::parse(token).unwrap());
        }
        f.store.transition(&r, &next, &ev).await.unwrap();
        r = next;
    }
    id.to_string()
}

#[tokio::test]
async fn approve_completes_the_task_once_and_never_for_the_requester() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    let lead = person("lead@example.com", &[]);
    let id = pending(&f, &alice, "tok-1").await;
    let approve = format!("/requests/{id}/approve");

    let (status, v) = post(&f, &alice, &approve, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&v, "self_approval", None);
    let (status, _) = post(&f, &person("mallory@example.com", &[]), &approve, json!({})).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a stranger cannot even see it"
    );
    let (status, v) = post(
        &f,
        &trusted_decider(),
        &approve,
        json!({"requester": "mallory@example.com"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&v, "not_approver", None);
    assert!(
        f.workflow.completed.lock().unwrap().is_empty(),
        "no refusal touched the workflow"
    );

    let (status, v) = post(&f, &lead, &approve, json!({"reason": "looks right"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["decisions"][0]["approver"], "lead@example.com");
    assert_eq!(v["decisions"][0]["verdict"], "approve");
    assert!(
        v.get("taskToken").is_none(),
        "the token never leaves the record"
    );
    let completed = f.workflow.completed.lock().unwrap().clone();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].0, "tok-1");
    assert_eq!(
        completed[0].1.as_ref().unwrap()["approvers"],
        json!(["lead@example.com"])
    );

    let (status, v) = post(
        &f,
        &person("security@example.com", &[]),
        &approve,
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (_, audit) = get(&f, &alice, &format!("/requests/{id}/audit")).await;
    let last = audit["events"].as_array().unwrap().last().unwrap().clone();
    // The approval that met the quorum is the move to APPROVED.
    assert_eq!(last["action"], "transition");
    assert_eq!(last["to"], "APPROVED");
    assert_eq!(last["actor"], "lead@example.com");
}

#[tokio::test]
async fn deny_needs_a_reason_and_ends_the_task() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    let lead = person("lead@example.com", &[]);
    let id = pending(&f, &alice, "tok-2").await;
    let deny = format!("/requests/{id}/deny");
    let (status, v) = post(&f, &lead, &deny, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "invalid_field", Some("reason"));
    let (status, v) = post(&f, &lead, &deny, json!({"reason": "not during the freeze"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "DENIED");
    assert_eq!(v["reason"], "not during the freeze");
    let completed = f.workflow.completed.lock().unwrap().clone();
    assert_eq!(
        completed,
        vec![(
            "tok-2".to_string(),
            Err(("Denied".to_string(), "not during the freeze".to_string()))
        )]
    );
    let stored = f
        .store
        .get(&RequestId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.task_token.is_none(),
        "a decided request holds no token"
    );
    let (status, _) = post(&f, &lead, &format!("/requests/{id}/approve"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn concurrent_approve_and_deny_yield_exactly_one_outcome() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    let lead = person("lead@example.com", &[]);
    let sec = person("security@example.com", &[]);
    let (mut approved, mut denied) = (0, 0);
    for trial in 0..100 {
        let id = pending(&f, &alice, &format!("tok-{trial}")).await;
        let (approve, deny) = (
            format!("/requests/{id}/approve"),
            format!("/requests/{id}/deny"),
        );
        let a = post(&f, &lead, &approve, json!({}));
        let d = post(&f, &sec, &deny, json!({"reason": "no"}));
        let ((sa, _), (sd, _)) = tokio::join!(a, d);
        let wins = [sa, sd].iter().filter(|s| **s == StatusCode::OK).count();
        let losses = [sa, sd]
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count();
        assert_eq!((wins, losses), (1, 1), "trial {trial}: {sa} {sd}");
        let r = f
            .store
            .get(&RequestId::parse(&id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.decisions.len(), 1, "trial {trial}");
        if sa == StatusCode::OK {
            approved += 1;
            assert_eq!(r.status, Status::Approved);
        } else {
            denied += 1;
            assert_eq!(r.status, Status::Denied);
        }
    }
    assert_eq!(approved + denied, 100);
    assert_eq!(
        f.workflow.completed.lock().unwrap().len(),
        100,
        "each trial completed its task exactly once"
    );
}

#[tokio::test]
async fn cancel_beats_a_later_approve_and_history_is_served() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    let id = pending(&f, &alice, "tok-3").await;
    let (status, _) = post(&f, &alice, &format!("/requests/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = post(
        &f,
        &person("lead@example.com", &[]),
        &format!("/requests/{id}/approve"),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&v, "already_decided", None);
    let (status, v) = get(&f, &alice, &format!("/requests/{id}/history")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["events"][0]["type"], "ExecutionStarted");
    let (status, _) = get(
        &f,
        &person("mallory@example.com", &[]),
        &format!("/requests/{id}/history"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_cancel_fails_the_waiting_task_and_is_refused_once_approved() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    // A waiting request: the cancel fails its task with NoLongerApplies
    let id = pending(&f, &alice, "token-for-the-cancel-test").await;
    let (status, v) = post(&f, &alice, &format!("/requests/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(f.workflow.stopped.lock().unwrap().is_empty());
    let completed = f.workflow.completed.lock().unwrap().clone();
    assert_eq!(
        completed,
        [(
            "token-for-the-cancel-test".to_string(),
            Err((
                "NoLongerApplies".to_string(),
                "cancelled by the requester".to_string()
            ))
        )]
    );
    // Approved: the cancel is refused and nothing more reaches the workflow
    let id = pending(&f, &alice, "token-for-the-approved-test").await;
    let (status, v) = post(
        &f,
        &person("lead@example.com", &[]),
        &format!("/requests/{id}/approve"),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "APPROVED");
    let (status, v) = post(&f, &alice, &format!("/requests/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_error(&v, "already_decided", None);
    let (_, v) = get(&f, &alice, &format!("/requests/{id}")).await;
    assert_eq!(v["status"], "APPROVED");
}

#[tokio::test]
async fn email_principals_are_one_person_whatever_their_case() {
    let f = fixture();
    // GIVEN sre@example.com in the catalog's `sre` group, signed in as SRE@Example.com
    let sre = person("SRE@Example.com", &[]);
    // WHEN they ask for the entitlement only `sre`/`engineering` may ask for
    let (status, v) = post(&f, &sre, "/requests", canonical("OnCallReadOnly")).await;
    // THEN the catalog's group mapping makes them eligible and auto-approved
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["requester"]["principal"], "sre@example.com");
    assert!(f.workflow.started.lock().unwrap()[0].auto_approve);

    // GIVEN a request of Alice@Example.com waiting for a decision
    let id = pending(
        &f,
        &person("Alice@Example.com", &["engineering"]),
        "tok-case",
    )
    .await;
    // THEN alice@example.com sees it as hers, and lists it
    let (status, _) = get(
        &f,
        &person("alice@example.com", &[]),
        &format!("/requests/{id}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "visibility: the requester");
    let (_, mine) = get(&f, &person("ALICE@example.COM", &[]), "/requests").await;
    assert_eq!(mine["requests"][0]["requestId"], id.as_str(), "{mine}");
    // AND the approver (catalog email lead@example.com) sees it as Lead@Example.com
    let lead = person("Lead@Example.com", &[]);
    let (status, _) = get(&f, &lead, &format!("/requests/{id}")).await;
    assert_eq!(status, StatusCode::OK, "visibility: an approver");
    let (_, waiting) = get(&f, &lead, "/requests?status=APPROVAL_PENDING").await;
    assert_eq!(
        waiting["requests"].as_array().unwrap().len(),
        1,
        "{waiting}"
    );
    // AND ALICE@EXAMPLE.COM cannot approve her own request
    let approve = format!("/requests/{id}/approve");
    let (status, v) = post(&f, &person("ALICE@EXAMPLE.COM", &[]), &approve, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&v, "self_approval", None);
    // AND aLiCe@example.com may cancel it, as its requester
    let (status, v) = post(
        &f,
        &person("aLiCe@example.com", &[]),
        &format!("/requests/{id}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "cancel by the requester: {v}");
    assert_eq!(v["status"], "CANCELLED");
}

#[tokio::test]
async fn a_quorum_counts_one_person_once_whatever_the_case_of_their_email() {
    // GIVEN two approvals needed, approvers listed in mixed case
    let f = fixture_with(
        r#"
groups:
  engineering: [alice@example.com]
entitlements:
  - name: JIT-ElevatedAdminRole
    role_arn: "arn:aws:iam::123456789012:role/JIT-ElevatedAdminRole"
    approvers: { emails: [Lead@Example.com, Sec@Example.com], required_approvals: 2 }
"#,
    );
    let id = pending(&f, &person("alice@example.com", &[]), "tok-quorum").await;
    let approve = format!("/requests/{id}/approve");
    // WHEN lead@example.com approves, then LEAD@EXAMPLE.COM approves again
    let (status, v) = post(&f, &person("lead@example.com", &[]), &approve, json!({})).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an approver listed as Lead@Example.com: {v}"
    );
    let (status, v) = post(&f, &person("LEAD@EXAMPLE.COM", &[]), &approve, json!({})).await;
    // THEN the second is the same person: refused, and the quorum is not met
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_error(&v, "already_decided", None);
    assert!(
        f.workflow.completed.lock().unwrap().is_empty(),
        "one approval of two"
    );
    // AND a second person completes it
    let (status, v) = post(&f, &person("sec@EXAMPLE.com", &[]), &approve, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(f.workflow.completed.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_repeated_key_is_refused_naming_it_on_every_json_route() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    let id = pending(&f, &alice, "tok-dup").await;
    let lead = person("lead@example.com", &[]);
    let (approve, cancel) = (
        format!("/requests/{id}/approve"),
        format!("/requests/{id}/cancel"),
    );
    // name, caller, path, body, the field named
    let cases: Vec<(&str, &Caller, &str, &str, &str)> = vec![
        (
            "a longer duration after the checked one",
            &alice,
            "/requests",
            r#"{"entitlement":"OnCallReadOnly","justification":"x","duration":900,"duration":43200}"#,
            "duration",
        ),
        (
            "the seed's body",
            &alice,
            "/request-access",
            r#"{"role":"JIT-ElevatedAdminRole","requester":"alice@example.com","requester":"bob@example.com"}"#,
            "requester",
        ),
        (
            "nested",
            &alice,
            "/requests",
            r#"{"entitlement":"OnCallReadOnly","justification":"x","account":{"id":"1","id":"2"}}"#,
            "account.id",
        ),
        (
            "an optional body",
            &lead,
            &approve,
            r#"{"reason":"ok","reason":"ok"}"#,
            "reason",
        ),
        (
            "cancel",
            &alice,
            &cancel,
            r#"{"reason":"a","reason":"b"}"#,
            "reason",
        ),
    ];
    for (name, caller, path, body, field) in cases {
        let (status, v) = call_raw(
            &f,
            caller,
            Method::POST,
            path,
            body.as_bytes().to_vec(),
            &[("content-type", "application/json")],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {v}");
        assert_error(&v, "invalid_field", Some(field));
        let key = field.rsplit('.').next().unwrap();
        assert_eq!(
            v["error"]["message"],
            format!("duplicate key `{key}`"),
            "{name}"
        );
    }
    // Nothing was created, decided or cancelled.
    assert_eq!(stored_count(&f, "alice@example.com").await, 1);
    assert_eq!(stored_count(&f, "bob@example.com").await, 0);
    assert!(f.workflow.completed.lock().unwrap().is_empty());
    let (_, v) = get(&f, &alice, &format!("/requests/{id}")).await;
    assert_eq!(v["status"], "APPROVAL_PENDING");
}

#[tokio::test]
async fn a_trusted_caller_decides_only_where_trusted_to_decide_and_the_record_says_through_whom() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    let id = pending(&f, &alice, "tok-bot").await;
    let (approve, deny) = (
        format!("/requests/{id}/approve"),
        format!("/requests/{id}/deny"),
    );
    // WHEN an app trusted only to file requests names an approver to decide
    for (path, body) in [
        (&approve, json!({"requester": "lead@example.com"})),
        (
            &deny,
            json!({"requester": "lead@example.com", "reason": "no"}),
        ),
    ] {
        let (status, v) = post(&f, &trusted_app(), path, body).await;
        // THEN it is refused, naming why, and nothing is decided
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {v}");
        assert_error(&v, "not_trusted_decider", Some("requester"));
        assert!(
            v["error"]["message"].as_str().unwrap().contains("chat-bot"),
            "{v}"
        );
    }
    assert!(f.workflow.completed.lock().unwrap().is_empty());
    let (_, v) = get(&f, &alice, &format!("/requests/{id}")).await;
    assert_eq!(v["decisions"], json!([]));

    // WHEN an app trusted to decide does it
    let (status, v) = post(
        &f,
        &trusted_decider(),
        &approve,
        json!({"requester": "lead@example.com", "reason": "ok"}),
    )
    .await;
    // THEN the approval counts, and the decision and its event name both
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["decisions"][0]["approver"], "lead@example.com");
    assert_eq!(v["decisions"][0]["trustedCaller"], "approver-bot");
    assert_eq!(f.workflow.completed.lock().unwrap().len(), 1);
    let (_, audit) = get(&f, &alice, &format!("/requests/{id}/audit")).await;
    let last = audit["events"].as_array().unwrap().last().unwrap().clone();
    // (the approval that met the quorum: the move to APPROVED)
    assert_eq!(last["action"], "transition");
    assert_eq!(last["to"], "APPROVED");
    assert_eq!(last["actor"], "lead@example.com via approver-bot");

    // AND a requester's own actions stay open to the request-only app, and say through whom
    let other = pending(&f, &alice, "tok-bot-2").await;
    let (status, v) = post(
        &f,
        &trusted_app(),
        &format!("/requests/{other}/cancel"),
        json!({"requester": "alice@example.com"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, audit) = get(&f, &alice, &format!("/requests/{other}/audit")).await;
    let last = audit["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "alice@example.com via chat-bot");
}

#[tokio::test]
async fn an_approval_meeting_the_quorum_as_the_window_closes_says_so() {
    let f = fixture();
    let alice = person("alice@example.com", &["engineering"]);
    let id = pending(&f, &alice, "tok-window-closed").await;
    // GIVEN the waiting task timed out just before the approval reached it
    *f.workflow.task_gone.lock().unwrap() = true;
    // WHEN the approver approves
    let (status, v) = post(
        &f,
        &person("lead@example.com", &[]),
        &format!("/requests/{id}/approve"),
        json!({}),
    )
    .await;
    // THEN they are told nothing will be granted (the workflow records the
    // timeout), not asked to approve again
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_error(&v, "approval_window_closed", None);
    assert!(f.workflow.completed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn entitlements_lists_what_the_caller_may_request() {
    // GIVEN the sample catalog (OnCallReadOnly is for sre/engineering only)
    let f = fixture();
    // WHEN an SRE asks
    let (status, v) = get(&f, &person("sre@example.com", &["sre"]), "/entitlements").await;
    // THEN every entry they may request is listed with its bounds and approvers
    assert_eq!(status, StatusCode::OK, "{v}");
    let names: Vec<&str> = v["entitlements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Read Only Access",
            "JIT-ElevatedAdminRole",
            "OnCallReadOnly",
            "BreakGlassAdmin"
        ]
    );
    let oncall = &v["entitlements"][2];
    assert_eq!(oncall["grantMode"], "assume-role");
    assert_eq!(
        oncall["roleArn"],
        "arn:aws:iam::123456789012:role/JIT-OnCallReadOnly"
    );
    assert_eq!(oncall["maxDuration"], 7200);
    assert_eq!(oncall["autoApprove"]["maxDuration"], 3600);
    assert_eq!(oncall["autoApprovedForYou"], true);
    assert_eq!(oncall["approvers"]["groups"], json!(["platform-leads"]));
    assert_eq!(v["entitlements"][1]["autoApprovedForYou"], false);
    // AND someone outside those groups does not see it
    let (_, v) = get(&f, &person("dev@example.com", &[]), "/entitlements").await;
    let names: Vec<&str> = v["entitlements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Read Only Access", "JIT-ElevatedAdminRole"]);
    // AND a trusted app naming nobody sees every entry; naming someone, theirs
    let (_, v) = get(&f, &trusted_app(), "/entitlements").await;
    assert_eq!(v["entitlements"].as_array().unwrap().len(), 4);
    assert!(v["entitlements"][2].get("autoApprovedForYou").is_none());
    let (_, v) = get(
        &f,
        &trusted_app(),
        "/entitlements?requester=sre%40example.com",
    )
    .await;
    assert_eq!(v["entitlements"].as_array().unwrap().len(), 4);
    // AND nobody gets a refusal, an unknown parameter and another method a 4xx naming it
    let (status, v) = get(&f, &nobody(), "/entitlements").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "unauthenticated");
    let (status, v) = get(&f, &person("sre@example.com", &[]), "/entitlements?x=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["field"], "x");
    let (status, _) = post(
        &f,
        &person("sre@example.com", &[]),
        "/entitlements",
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_mistyped_entitlement_gets_the_nearest_name() {
    // GIVEN an SRE who misspells OnCallReadOnly
    let f = fixture();
    let body = json!({"entitlement": "OncallReadOnly", "justification": "INC-1"});
    let (status, v) = post(
        &f,
        &person("sre@example.com", &["sre"]),
        "/requests",
        body.clone(),
    )
    .await;
    // THEN the refusal suggests the right name and where the list is
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "unknown_entitlement");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("did you mean `OnCallReadOnly`?"), "{msg}");
    assert!(msg.contains("GET /entitlements"), "{msg}");
    // AND someone not eligible for it is not told it exists
    let (_, v) = post(&f, &person("dev@example.com", &[]), "/requests", body).await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(!msg.contains("did you mean"), "{msg}");
}

#[tokio::test]
async fn answers_carry_times_to_the_second_and_no_bookkeeping() {
    // GIVEN a request that waits for approval
    let f = fixture();
    let body = json!({"entitlement": "JIT-ElevatedAdminRole", "justification": "INC-7 2026-12-04T16:10:01.093560723Z"});
    let (status, v) = post(&f, &person("alice@example.com", &[]), "/requests", body).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    // THEN its times are RFC 3339 to the second in UTC, but text people wrote is untouched
    let created = v["createdAt"].as_str().unwrap();
    assert_eq!(created.len(), "2026-12-04T16:10:01Z".len(), "{created}");
    assert!(created.ends_with('Z'), "{created}");
    assert_eq!(v["justification"], "INC-7 2026-12-04T16:10:01.093560723Z");
    // AND the audit trail's times too
    let id = v["requestId"].as_str().unwrap();
    let (_, a) = get(
        &f,
        &person("alice@example.com", &[]),
        &format!("/requests/{id}/audit"),
    )
    .await;
    let at = a["events"][0]["at"].as_str().unwrap();
    assert_eq!(at.len(), created.len(), "{at}");
    // AND no notifier bookkeeping or workflow secret is ever in an answer
    for k in [
        "notice",
        "taskToken",
        "usedLinkNonces",
        "requestFingerprint",
    ] {
        assert!(v.get(k).is_none(), "{k} in {v}");
    }
}

#[tokio::test]
async fn the_grant_router_serves_only_the_grant_routes() {
    // GIVEN the fixture's broker (no grant ports) and the grant-only router
    let f = fixture();
    let call = |method: Method, path: &str| ApiRequest {
        method,
        path: path.to_string(),
        query: None,
        headers: HeaderMap::new(),
        body: Bytes::new(),
    };
    let alice = person("alice@example.com", &[]);
    // WHEN a lifecycle route is sent to it THEN it does not exist there
    let resp = jit_api::handle_grants(&f.broker, &alice, call(Method::GET, "/requests")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let v: Value = serde_json::from_str(resp.body()).unwrap();
    assert_eq!(v["error"]["code"], "route_not_found");
    // AND a grant route reaches the grant use cases (503: no ports here)
    let id = RequestId::generate(jit_core::ports::Clock::now(f.clock.as_ref()));
    let resp = jit_api::handle_grants(
        &f.broker,
        &alice,
        call(Method::GET, &format!("/requests/{id}/credentials")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = serde_json::from_str(resp.body()).unwrap();
    assert_eq!(v["error"]["code"], "grants_unavailable");
}
