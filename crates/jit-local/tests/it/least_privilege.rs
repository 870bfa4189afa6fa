//! Least privilege (#10) end to end in `jit-local`: a request's `scope`
//! checked at create, the GeneratePolicy step of `approval.asl.json` on the
//! local engine (POLICY_GENERATION, the audit event with generator and
//! digest, `sessionPolicy` on the record), the policy on the session's
//! AssumeRole, and `POST /policies/preview`.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use jit_core::policy::AccessLevel;
use serde_json::{Value, json};

const KEY: &str = "least-privilege-test-key-0123456789";

const CATALOG: &str = r#"
defaults:
  max_duration: 1h
  approvers: { emails: [lead@example.com] }
entitlements:
  - name: ProdLogs
    role_arn: "arn:aws:iam::123456789012:role/JIT-ProdLogs"
    ceiling: ["s3:Get*", "s3:List*", "logs:Get*", "logs:Describe*", "logs:FilterLogEvents"]
  - name: Admin
    role_arn: "arn:aws:iam::123456789012:role/JIT-Admin"
  - name: OnCallLogs
    role_arn: "arn:aws:iam::123456789012:role/JIT-OnCallLogs"
    ceiling: ["s3:Get*", "s3:List*"]
    auto_approve: { groups: [sre], max_duration: 1h }
  - name: Narrow
    role_arn: "arn:aws:iam::123456789012:role/JIT-Narrow"
    policy_generation: required
  - name: Fixed
    role_arn: "arn:aws:iam::123456789012:role/JIT-Fixed"
    session_policy:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Action: ["ec2:DescribeInstances"]
          Resource: "*"
  - name: ReadOnly
    policy_name: ReadOnlyAccess
    account: "123456789012"
  - name: ReadOnlyScoped
    policy_name: ReadOnlyAccess
    account: "123456789012"
    ceiling: ["s3:Get*", "s3:List*"]
"#;

fn open(dir: &Path) -> (common::Local, Arc<common::RecordingIssuer>) {
    let catalog = dir.join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).unwrap();
    let cfg = common::config(&dir.join("data"), &catalog, KEY);
    let clock = common::fixed_clock();
    let issuer = common::RecordingIssuer::new(clock.clone());
    let l = common::Local::open(&cfg, clock, issuer.overrides(), KEY);
    (l, issuer)
}

async fn ask(l: &common::Local, entitlement: &str, scope: Value) -> (u16, Value) {
    l.post(
        "/requests",
        "alice@example.com",
        json!({"entitlement": entitlement, "duration": "1h", "justification": "INC-7", "scope": scope}),
    )
    .await
}

fn field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or_default()
}

/// Every `Allow` action of a policy document.
fn allowed(doc: &Value) -> Vec<String> {
    let mut out = vec![];
    for s in doc["Statement"].as_array().unwrap() {
        if s["Effect"] != "Allow" {
            continue;
        }
        match &s["Action"] {
            Value::String(a) => out.push(a.clone()),
            Value::Array(a) => out.extend(a.iter().map(|x| x.as_str().unwrap().to_string())),
            other => panic!("{other}"),
        }
    }
    out
}

#[tokio::test]
async fn a_scoped_request_passes_through_policy_generation_and_its_session_carries_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (l, issuer) = open(dir.path());
    // GIVEN a request for a role, narrowed to reading one bucket
    let scope =
        json!({"access": "read", "services": ["s3"], "resources": ["arn:aws:s3:::prod-logs/*"]});
    let (s, v) = ask(&l, "ProdLogs", scope.clone()).await;
    assert_eq!(s, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    l.settle().await;
    // THEN the workflow passed through GeneratePolicy (POLICY_GENERATION)…
    let states = l.states(&id).await;
    assert!(states.iter().any(|s| s == "GeneratePolicy"), "{states:?}");
    let r = l.get(&id).await;
    assert_eq!(r["status"], "APPROVAL_PENDING", "{r}");
    assert_eq!(r["scope"], scope);
    // …its record holds only S3 read actions on that bucket, no `*` action
    let policy: Value = serde_json::from_str(r["sessionPolicy"].as_str().unwrap()).unwrap();
    let actions = allowed(&policy);
    assert!(actions.iter().any(|a| a == "s3:GetObject"), "{actions:?}");
    for a in &actions {
        assert!(!a.contains('*'), "{a}");
        assert_eq!(
            jit_policy::table().level(a),
            Some(AccessLevel::Read),
            "{a} is not an S3 read action"
        );
        assert!(a.starts_with("s3:"), "{a}");
    }
    for s in policy["Statement"].as_array().unwrap() {
        assert_eq!(s["Resource"], "arn:aws:s3:::prod-logs/*", "{s}");
    }
    // …with where it came from, for the approvers
    let prov = &r["policyGeneration"];
    assert_eq!(prov["generator"], "deterministic", "{r}");
    let digest = jit_core::policy::digest(r["sessionPolicy"].as_str().unwrap());
    assert_eq!(prov["digest"], digest.as_str());
    assert_eq!(prov["summary"][0]["service"], "s3");
    assert_eq!(prov["summary"][0]["access"], json!(["read"]));
    // …and the audit event of the transition names the generator and digest
    let (s, audit) = l
        .call(
            "GET",
            &format!("/requests/{id}/audit"),
            "lead@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200, "{audit}");
    let event = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["to"] == "POLICY_GENERATION")
        .unwrap_or_else(|| panic!("no POLICY_GENERATION event in {audit}"));
    let reason = event["reason"].as_str().unwrap();
    assert!(
        reason.contains("`deterministic`") && reason.contains(&digest),
        "{reason}"
    );

    // WHEN it is approved and credentials are taken
    let (s, v) = l
        .post(
            &format!("/requests/{id}/approve"),
            "lead@example.com",
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(l.status(&id).await, "GRANTED");
    let (s, v) = l
        .call(
            "GET",
            &format!("/requests/{id}/credentials"),
            "alice@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // THEN the AssumeRole carried the generated statements and the window's deny
    let spec = issuer.last();
    let sent: Value = serde_json::from_str(spec.session_policy.as_deref().unwrap()).unwrap();
    let statements = sent["Statement"].as_array().unwrap();
    assert_eq!(
        &statements[..statements.len() - 1],
        policy["Statement"].as_array().unwrap().as_slice()
    );
    assert_eq!(statements.last().unwrap()["Effect"], "Deny");
}

#[tokio::test]
async fn an_instant_grant_is_narrowed_before_its_credentials_are_vended() {
    let dir = tempfile::tempdir().unwrap();
    let (l, issuer) = open(dir.path());
    // GIVEN an auto-approved, scoped request that waits for its credentials
    let scope =
        json!({"access": "read", "services": ["s3"], "resources": ["arn:aws:s3:::prod-logs/*"]});
    let (s, v) = common::send(
        &l.app,
        "POST",
        "/requests",
        &[
            ("x-api-key", KEY),
            ("x-jit-user", "alice@example.com"),
            ("x-jit-groups", "sre"),
            ("content-type", "application/json"),
        ],
        bytes::Bytes::from(
            json!({"entitlement": "OnCallLogs", "duration": "30m", "justification": "INC-7",
                   "scope": scope, "wait": true})
            .to_string(),
        ),
    )
    .await;
    // THEN the one answer is GRANTED with credentials…
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["status"], "GRANTED", "{v}");
    assert_eq!(v["credentials"]["Version"], 1, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    // …the instant workflow generated the policy before it granted…
    let engine = l.app.engine().unwrap();
    let instant =
        jit_local::workflow::instant_execution_name(&jit_core::RequestId::parse(&id).unwrap());
    assert_eq!(
        engine.states_entered(&instant).unwrap(),
        [
            "Validate",
            "NeedsPolicy",
            "GeneratePolicy",
            "Route",
            "Grant",
            "RecordGranted",
            "Granted"
        ]
    );
    // …so the AssumeRole behind those credentials carried the policy
    let r = l.get(&id).await;
    let policy: Value = serde_json::from_str(r["sessionPolicy"].as_str().unwrap()).unwrap();
    let spec = issuer.last();
    let sent: Value = serde_json::from_str(spec.session_policy.as_deref().unwrap()).unwrap();
    let statements = sent["Statement"].as_array().unwrap();
    assert_eq!(
        &statements[..statements.len() - 1],
        policy["Statement"].as_array().unwrap().as_slice()
    );
    for a in allowed(&policy) {
        assert!(a.starts_with("s3:") && !a.contains('*'), "{a}");
    }
    // AND the Standard workflow that owns the expiry does not generate again
    let states = l.states(&id).await;
    assert_eq!(
        states,
        [
            "Validate",
            "NeedsPolicy",
            "GeneratePolicy",
            "Route",
            "RecordGranted",
            "WaitForExpiry"
        ]
    );
    let audit = l
        .call(
            "GET",
            &format!("/requests/{id}/audit"),
            "lead@example.com",
            None,
        )
        .await
        .1;
    let generated = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["to"] == "POLICY_GENERATION")
        .count();
    assert_eq!(generated, 1, "{audit}");
}

#[tokio::test]
async fn scopes_that_cannot_be_honoured_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = open(dir.path());
    let cases = [
        // outside the ceiling
        (
            "ProdLogs",
            json!({"access": "write", "services": ["s3"]}),
            "scope",
        ),
        (
            "ProdLogs",
            json!({"actions": ["s3:PutObject"], "resources": ["arn:aws:s3:::prod-logs/*"]}),
            "scope",
        ),
        (
            "ProdLogs",
            json!({"actions": ["iam:*"], "resources": ["*"]}),
            "scope",
        ),
        // unknown names, mismatched resources, malformed shapes
        (
            "Admin",
            json!({"actions": ["s3:GetObjekt"], "resources": ["*"]}),
            "scope.actions",
        ),
        (
            "Admin",
            json!({"access": "read", "services": ["nosuchservice"]}),
            "scope.services",
        ),
        (
            "Admin",
            json!({"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::prod-logs"]}),
            "scope.resources",
        ),
        (
            "Admin",
            json!({"access": "everything", "services": ["s3"]}),
            "scope.access",
        ),
        // no AI generator configured
        (
            "Admin",
            json!({"describe": "read the prod-logs bucket"}),
            "scope.describe",
        ),
        // too wide for STS's 2,048 characters
        (
            "Admin",
            json!({"access": "list", "services": ["ec2"]}),
            "scope",
        ),
        // the catalog fixes the policy; an attach grant without a ceiling
        // cannot be narrowed (its inline policy would be bounded by nothing)
        (
            "Fixed",
            json!({"access": "read", "services": ["s3"]}),
            "scope",
        ),
        (
            "ReadOnly",
            json!({"access": "read", "services": ["s3"]}),
            "scope",
        ),
    ];
    for (entitlement, scope, want) in cases {
        let (s, v) = ask(&l, entitlement, scope.clone()).await;
        assert_eq!((s, field(&v)), (400, want), "{entitlement} {scope}: {v}");
    }
    let (s, v) = ask(&l, "Admin", json!({"access": "list", "services": ["ec2"]})).await;
    assert_eq!(s, 400);
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("too wide") && m.contains("2048"), "{m}");
    // `policy_generation: required` needs a scope
    let (s, v) = l
        .post(
            "/requests",
            "alice@example.com",
            json!({"entitlement": "Narrow", "duration": "1h", "justification": "x"}),
        )
        .await;
    assert_eq!((s, field(&v)), (400, "scope"), "{v}");
    // The seed's body takes a scope too
    let (s, v) = l
        .post(
            "/request-access",
            "alice@example.com",
            json!({"role": "ProdLogs", "scope": {"access": "write", "services": ["s3"]}}),
        )
        .await;
    assert_eq!((s, field(&v)), (400, "scope"), "{v}");
}

#[tokio::test]
async fn requests_without_a_scope_skip_generation_and_a_fixed_policy_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = open(dir.path());
    let plain = l.request("alice@example.com", "Admin", "1h").await;
    l.settle().await;
    assert!(!l.states(&plain).await.iter().any(|s| s == "GeneratePolicy"));
    assert!(l.get(&plain).await.get("sessionPolicy").is_none());
    let fixed = l.request("alice@example.com", "Fixed", "1h").await;
    l.settle().await;
    let r = l.get(&fixed).await;
    assert_eq!(r["policyGeneration"]["generator"], "catalog", "{r}");
    let doc: Value = serde_json::from_str(r["sessionPolicy"].as_str().unwrap()).unwrap();
    assert_eq!(allowed(&doc), vec!["ec2:DescribeInstances"]);
}

#[tokio::test]
async fn a_preview_shows_the_policy_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = open(dir.path());
    let (s, v) = l
        .post(
            "/policies/preview",
            "alice@example.com",
            json!({"entitlement": "ProdLogs", "scope": {"actions": ["s3:GetObject", "s3:ListBucket"], "resources": ["arn:aws:s3:::prod-logs", "arn:aws:s3:::prod-logs/*"]}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["generator"], "deterministic");
    assert_eq!(v["valid"], true);
    assert_eq!(
        v["policy"]["Statement"],
        json!([
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::prod-logs/*"},
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::prod-logs"}
        ])
    );
    assert!(v["packedChars"].as_u64().unwrap() <= 2048);
    let (s, v) = l
        .post(
            "/policies/preview",
            "alice@example.com",
            json!({"entitlement": "ProdLogs", "scope": {"access": "write", "services": ["s3"]}}),
        )
        .await;
    assert_eq!((s, field(&v)), (400, "scope"), "{v}");
    let (s, v) = l.call("GET", "/requests", "alice@example.com", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["requests"].as_array().map(Vec::len), Some(0), "{v}");
}

const ALICE_USER: &str = "arn:aws:iam::123456789012:user/alice@example.com";

/// The local IAM state of `l`'s data directory (`jit-local iam state`).
async fn iam_state(dir: &Path, l: &common::Local) -> Value {
    let state = jit_local::iam_state::state(&dir.join("data"), l.now())
        .await
        .unwrap();
    serde_json::to_value(state).unwrap()
}

/// The inline policy documents on users and roles, as the stand-in keeps them.
fn principal_policies(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("data").join(jit_local::PRINCIPAL_POLICIES_FILE))
        .unwrap_or_else(|_| "{}".into());
    serde_json::from_str(&text).unwrap()
}

async fn scoped_attach(l: &common::Local) -> String {
    let (s, v) = ask(
        l,
        "ReadOnlyScoped",
        json!({"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::prod-logs/*"]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    l.settle().await;
    let (s, v) = l
        .post(
            &format!("/requests/{id}/approve"),
            "lead@example.com",
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    l.settle().await;
    id
}

#[tokio::test]
async fn a_scoped_attach_grant_is_its_policy_inline_as_jit_id_until_expiry_or_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = open(dir.path());
    // GIVEN an attach-policy entitlement with a ceiling, asked for one action
    let id = scoped_attach(&l).await;
    assert_eq!(l.status(&id).await, "GRANTED");
    let r = l.get(&id).await;
    assert!(l.states(&id).await.iter().any(|s| s == "GeneratePolicy"));

    // THEN the grant is `jit-<id>` inline on the requester, with the
    // recorded policy, and the managed policy is not attached
    let name = format!("jit-{id}");
    let state = iam_state(dir.path(), &l).await;
    assert_eq!(state["attachedPolicies"], json!([]), "{state}");
    assert_eq!(
        state["inlinePolicies"],
        json!([{"target": ALICE_USER, "name": name, "requestId": id}])
    );
    let doc = principal_policies(dir.path())[ALICE_USER][&name].clone();
    assert_eq!(doc.as_str(), r["sessionPolicy"].as_str(), "{doc}");
    let doc: Value = serde_json::from_str(doc.as_str().unwrap()).unwrap();
    assert_eq!(allowed(&doc), vec!["s3:GetObject"]);

    // WHEN its window ends THEN it is deleted and the request EXPIRED
    l.forward(3600 + 5).await;
    assert_eq!(l.status(&id).await, "EXPIRED");
    assert_eq!(iam_state(dir.path(), &l).await["inlinePolicies"], json!([]));

    // AND a second grant revoked early is deleted at once
    let id = scoped_attach(&l).await;
    assert_eq!(
        iam_state(dir.path(), &l).await["inlinePolicies"][0]["requestId"],
        id.as_str()
    );
    let (s, v) = l
        .post(
            &format!("/requests/{id}/revoke"),
            "lead@example.com",
            json!({"reason": "done early"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "REVOKED");
    let state = iam_state(dir.path(), &l).await;
    assert_eq!(state["inlinePolicies"], json!([]), "{state}");
    assert_eq!(state["attachedPolicies"], json!([]), "{state}");
    // and the Revoke step at the window's end finds nothing left to do
    l.forward(3600 + 5).await;
    assert_eq!(l.status(&id).await, "REVOKED");
    assert_eq!(principal_policies(dir.path()), json!({}));
}

/// The local attacher, with faults injected on the inline-policy calls.
struct Faulty {
    inner: Arc<jit_local::grants::LocalAttacher>,
    /// The next this-many puts land in IAM, but their answer is lost.
    lose_put_answers: std::sync::atomic::AtomicU32,
    /// While set, every delete fails before changing anything.
    deletes_fail: std::sync::atomic::AtomicBool,
    deletes_tried: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl jit_core::ports::PolicyAttacher for Faulty {
    async fn attach(
        &self,
        a: &jit_core::AccountId,
        p: &jit_core::ports::IamPrincipal,
        n: &jit_core::PolicyName,
    ) -> Result<(), jit_core::ports::GrantError> {
        self.inner.attach(a, p, n).await
    }
    async fn detach(
        &self,
        a: &jit_core::AccountId,
        p: &jit_core::ports::IamPrincipal,
        n: &jit_core::PolicyName,
    ) -> Result<(), jit_core::ports::GrantError> {
        self.inner.detach(a, p, n).await
    }
    async fn put_inline_policy(
        &self,
        a: &jit_core::AccountId,
        p: &jit_core::ports::IamPrincipal,
        n: &str,
        d: &str,
    ) -> Result<(), jit_core::ports::GrantError> {
        use std::sync::atomic::Ordering;
        self.inner.put_inline_policy(a, p, n, d).await?;
        let lose = self
            .lose_put_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lose {
            return Err(jit_core::ports::GrantError::Transient(
                "the connection closed before IAM answered".into(),
            ));
        }
        Ok(())
    }
    async fn delete_inline_policy(
        &self,
        a: &jit_core::AccountId,
        p: &jit_core::ports::IamPrincipal,
        n: &str,
    ) -> Result<(), jit_core::ports::GrantError> {
        use std::sync::atomic::Ordering;
        self.deletes_tried.fetch_add(1, Ordering::SeqCst);
        if self.deletes_fail.load(Ordering::SeqCst) {
            return Err(jit_core::ports::GrantError::Transient(
                "Throttling: Rate exceeded".into(),
            ));
        }
        self.inner.delete_inline_policy(a, p, n).await
    }
}

#[tokio::test]
async fn faults_on_the_inline_policy_calls_never_leave_it_past_the_window() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).unwrap();
    // GIVEN jit-local whose IAM stand-in loses a put's answer and can be
    // made to refuse every delete
    let inner = Arc::new(
        jit_local::grants::LocalAttacher::open(data.join(jit_local::ATTACHMENTS_FILE)).unwrap(),
    );
    let roles = Arc::new(
        jit_local::access::LocalRoleRevoker::open(data.join(jit_local::ROLE_POLICIES_FILE))
            .unwrap(),
    );
    let faulty = Arc::new(Faulty {
        inner: inner.clone(),
        lose_put_answers: 1.into(),
        deletes_fail: false.into(),
        deletes_tried: 0.into(),
    });
    let overrides = jit_local::Overrides {
        attacher: Some(faulty.clone()),
        revoker: Some(roles.clone()),
        inventory: Some(Arc::new(jit_local::iam_state::LocalInventory {
            attacher: inner.clone(),
            roles,
        })),
        ..Default::default()
    };
    let cfg = common::config(&data, &catalog, KEY);
    let l = common::Local::open(&cfg, common::fixed_clock(), overrides, KEY);

    // WHEN the grant's put lands but its answer is lost
    let id = scoped_attach(&l).await;
    for _ in 0..5 {
        if l.status(&id).await == "GRANTED" {
            break;
        }
        l.forward(5).await; // the Grant step's retry
    }
    // THEN the retried step grants once, and the ledger shows both calls
    assert_eq!(l.status(&id).await, "GRANTED");
    assert_eq!(faulty.lose_put_answers.load(Ordering::SeqCst), 0);
    let name = format!("jit-{id}");
    assert_eq!(inner.inline_policies().len(), 1);
    assert_eq!(inner.inline_policies()[0].1, name);

    // WHEN every delete fails while the window ends
    faulty.deletes_fail.store(true, Ordering::SeqCst);
    l.forward(3600 + 5).await;
    for _ in 0..10 {
        l.forward(30).await; // the Revoke step's retries, the minute's passes
    }
    // THEN the deletes were tried, and IAM still holds it (nothing could)
    assert!(faulty.deletes_tried.load(Ordering::SeqCst) > 1);
    assert_eq!(inner.inline_policies().len(), 1);
    let status = l.status(&id).await;

    // WHEN IAM answers again and the reconciler's pass runs
    faulty.deletes_fail.store(false, Ordering::SeqCst);
    l.forward(60).await;
    let report = l
        .app
        .reconcile(false, Some(chrono::Duration::zero()))
        .await
        .unwrap();
    // THEN it is gone, the ledger holds nothing open, and the request says why
    assert_eq!(
        inner.inline_policies(),
        vec![],
        "request {status}: {report:#?}"
    );
    let state = iam_state(dir.path(), &l).await;
    assert_eq!(state["inlinePolicies"], json!([]), "{state}");
    use jit_core::ledger::GrantLedger;
    let store = jit_store_sqlite::SqliteStore::open(&data.join(jit_local::STORE_FILE)).unwrap();
    assert!(store.open_entries().await.unwrap().is_empty());
    assert!(
        matches!(l.status(&id).await.as_str(), "EXPIRED" | "FAILED"),
        "{}",
        l.status(&id).await
    );
}
