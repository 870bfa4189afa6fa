//! Credential vending, console sign-in, early revoke, overlapping attach
//! grants and extensions, through `jit-local`'s HTTP handler with the local
//! issuer, the local engine running `approval.asl.json`, and a manual clock.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use jit_local::Overrides;
use serde_json::{Value, json};

const KEY: &str = "grants-test-key-0123456789";

const CATALOG: &str = r#"
defaults:
  max_duration: 1h
  approvers: { emails: [lead@example.com] }
admin_groups: [secops]
groups:
  secops: [admin@example.com]
  sre: [sre@example.com]
entitlements:
  - name: Admin
    role_arn: "arn:aws:iam::123456789012:role/JIT-Admin"
    max_duration: 4h
  - name: OnCall
    role_arn: "arn:aws:iam::123456789012:role/JIT-OnCall"
    max_duration: 2h
    auto_approve: { groups: [sre], max_duration: 1h }
  - name: ReadOnly
    policy_name: ReadOnlyAccess
    account: "123456789012"
    max_duration: 2h
    auto_approve: { groups: [sre], max_duration: 2h }
"#;

use common::Local;

fn open(dir: &Path) -> Local {
    let catalog = dir.join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).unwrap();
    let cfg = common::config(&dir.join("data"), &catalog, KEY);
    Local::open(&cfg, common::fixed_clock(), Overrides::default(), KEY)
}

/// Like [`open`], with the local issuer recording what it was asked.
fn open_recording(dir: &Path) -> (Local, Arc<common::RecordingIssuer>) {
    let catalog = dir.join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).unwrap();
    let cfg = common::config(&dir.join("data"), &catalog, KEY);
    let clock = common::fixed_clock();
    let issuer = common::RecordingIssuer::new(clock.clone());
    let l = Local::open(&cfg, clock, issuer.overrides(), KEY);
    (l, issuer)
}

/// The window's end the session policy of `spec` denies after.
fn deny_after(spec: &jit_core::ports::AssumeRoleSpec) -> String {
    let doc: Value = serde_json::from_str(spec.session_policy.as_deref().unwrap()).unwrap();
    let deny = &doc["Statement"][1];
    assert_eq!(deny["Effect"], "Deny", "{doc}");
    deny["Condition"]["DateGreaterThan"]["aws:CurrentTime"]
        .as_str()
        .unwrap()
        .to_string()
}

impl Local {
    async fn credentials(&self, id: &str, user: &str) -> (u16, Value) {
        self.call("GET", &format!("/requests/{id}/credentials"), user, None)
            .await
    }

    async fn audit(&self, id: &str) -> Vec<Value> {
        let (s, v) = self
            .call(
                "GET",
                &format!("/requests/{id}/audit"),
                "lead@example.com",
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["events"].as_array().unwrap().clone()
    }

    fn attachments(&self) -> Vec<String> {
        self.app
            .attacher()
            .unwrap()
            .attachments()
            .into_iter()
            .map(|(_, p, policy)| format!("{p:?}:{policy}"))
            .collect()
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

/// The field a 4xx error names.
fn field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or_default()
}

fn expiry_secs_from(v: &Value, now: chrono::DateTime<chrono::Utc>) -> i64 {
    let exp = chrono::DateTime::parse_from_rfc3339(v["Expiration"].as_str().unwrap()).unwrap();
    (exp.with_timezone(&chrono::Utc) - now).num_seconds()
}

#[tokio::test]
async fn credentials_are_the_requesters_clipped_to_the_window_and_refused_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    // GIVEN a four-hour grant of a role
    let pending = l.request("alice@example.com", "Admin", "4h").await;
    let (s, v) = l.credentials(&pending, "alice@example.com").await;
    assert_eq!(
        (s, code(&v)),
        (409, "invalid_state"),
        "not granted yet: {v}"
    );
    let (s, v) = l
        .post(
            &format!("/requests/{pending}/approve"),
            "lead@example.com",
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let id = pending;

    // WHEN the requester asks THEN the credential_process JSON, one hour long (role chaining)
    let (s, v) = l.credentials(&id, "alice@example.com").await;
    assert_eq!(s, 200, "{v}");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "AccessKeyId",
            "Expiration",
            "SecretAccessKey",
            "SessionToken",
            "Version"
        ]
    );
    assert_eq!(v["Version"], 1);
    assert!(v["AccessKeyId"].as_str().unwrap().starts_with("LOCALFAKE"));
    assert!(v["Expiration"].as_str().unwrap().ends_with('Z'));
    assert_eq!(expiry_secs_from(&v, l.now()), 3600);
    let first_key = v["AccessKeyId"].as_str().unwrap().to_string();
    let secret = v["SecretAccessKey"].as_str().unwrap().to_string();
    let token = v["SessionToken"].as_str().unwrap().to_string();

    // AND with 50 minutes left, the session ends with the window
    l.forward(3 * 3600 + 600).await;
    let (s, v) = l.credentials(&id, "alice@example.com").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(expiry_secs_from(&v, l.now()), 3000);

    // AND with exactly 15 minutes left, a 900 s session; with 14, a 900 s
    // session too (STS's minimum), which its session policy stops at the
    // window's end (see credentials_last_the_whole_window_and_stop_at_its_end)
    l.forward(35 * 60).await;
    let (s, v) = l.credentials(&id, "alice@example.com").await;
    assert_eq!((s, expiry_secs_from(&v, l.now())), (200, 900));
    // (the answer's Expiration is the window's end, so clients refresh then)
    l.forward(60).await;
    let (s, v) = l.credentials(&id, "alice@example.com").await;
    assert_eq!((s, expiry_secs_from(&v, l.now())), (200, 840), "{v}");

    // AND nobody else gets them (jit-local's API key is a trusted caller, so
    // a stranger sees the request: refused rather than not found)
    for who in ["lead@example.com", "eve@example.com"] {
        let (s, v) = l.credentials(&id, who).await;
        assert_eq!((s, code(&v)), (403, "not_requester"), "{who}");
    }

    // AND each issue is audited with the key id and expiry, never the secret
    let events = l.audit(&id).await;
    let issued: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "credentials-issued")
        .collect();
    assert_eq!(issued.len(), 4);
    assert_eq!(issued[0]["actor"], "alice@example.com");
    assert!(
        issued[0]["reason"].as_str().unwrap().contains(&first_key),
        "{}",
        issued[0]
    );
    // (as a field too: the usage sweep looks CloudTrail up by it)
    assert_eq!(
        issued[0]["accessKeyId"],
        first_key.as_str(),
        "{}",
        issued[0]
    );
    assert!(!serde_json::to_string(&events).unwrap().contains(&secret));
    assert!(!serde_json::to_string(&events).unwrap().contains(&token));

    // AND after the window, EXPIRED
    l.forward(14 * 60).await;
    let (s, v) = l.credentials(&id, "alice@example.com").await;
    assert_eq!((s, code(&v)), (409, "invalid_state"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("EXPIRED"));
    l.app.shutdown().await;
}

#[tokio::test]
async fn credentials_last_the_whole_window_and_stop_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (l, issuer) = open_recording(dir.path());
    // GIVEN a 15-minute grant (STS's shortest session is as long as the window)
    let id = l.granted("alice@example.com", "Admin", "15m").await;
    let expires_at = l.get(&id).await["expiresAt"].as_str().unwrap().to_string();
    assert_eq!(expires_at, "2027-01-15T08:15:00Z");
    let end = "2027-01-15T08:15:00Z";
    // The exact document: the role's permissions until the window's end
    let bounded = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2027-01-15T08:15:00Z"}}}]}"#;

    // THEN the Grant step's proof call already carried the bound
    let proof = issuer.last();
    assert_eq!(proof.duration_secs, 900);
    assert_eq!(proof.session_policy.as_deref(), Some(bounded));

    // WHEN the requester asks at the first second, mid-window, 10 s before
    // the end THEN credentials every time: 900 s (STS's minimum), with a
    // session policy that denies everything after the window
    for (wait, left) in [(0, 900), (450, 450), (440, 10)] {
        l.forward(wait).await;
        let (s, v) = l.credentials(&id, "alice@example.com").await;
        assert_eq!(s, 200, "{left} s left: {v}");
        assert_eq!(v["Version"], 1);
        // Expiration says when to refresh: the window's end
        assert_eq!(expiry_secs_from(&v, l.now()), left, "{left} s left");
        let spec = issuer.last();
        assert_eq!(spec.duration_secs, 900, "{left} s left");
        assert_eq!(deny_after(&spec), end, "{left} s left");
        assert_eq!(spec.session_policy.as_deref(), Some(bounded));
    }
    // AND the console's session is bounded the same way
    let (s, v) = l
        .call(
            "GET",
            &format!("/requests/{id}/console"),
            "alice@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(issuer.last().session_policy.as_deref(), Some(bounded));

    // AND at the window's end nothing more is issued
    let calls = issuer.specs().len();
    l.forward(10).await;
    let (s, v) = l.credentials(&id, "alice@example.com").await;
    assert_eq!((s, code(&v)), (409, "invalid_state"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("EXPIRED"));
    assert_eq!(
        issuer.specs().len(),
        calls,
        "STS is not asked after the window"
    );
    l.app.shutdown().await;
}

#[tokio::test]
async fn the_grant_step_passes_the_requests_policy_bounded_and_refuses_one_with_no_room() {
    use jit_core::Status;
    use jit_core::tasks::TaskError;
    let dir = tempfile::tempdir().unwrap();
    let (l, issuer) = open_recording(dir.path());
    let store = l.app.broker.store.clone();
    // A one-hour request waiting for approval, with a recorded session policy
    let pending = |policy: String| {
        let store = store.clone();
        let now = l.now();
        async move {
            let alice = jit_core::Principal::parse("alice@example.com").unwrap();
            let mut r = jit_testkit::data::sample_request(&alice, now);
            r.session_policy = Some(policy);
            store
                .create(&r, &jit_testkit::data::created_event(&r))
                .await
                .unwrap();
            for to in [
                Status::Validating,
                Status::ApprovalPending,
                Status::Approved,
            ] {
                let cur = store.get(&r.request_id).await.unwrap().unwrap();
                let (next, event) = cur
                    .transition(to, &jit_testkit::data::change("system:test", now))
                    .unwrap();
                store.transition(&cur, &next, &event).await.unwrap();
            }
            json!({ "requestId": r.request_id.to_string() })
        }
    };
    let policy = |n: usize| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Action":"s3:GetObject","Effect":"Allow","Resource":"arn:aws:s3:::{}"}}]}}"#,
            "b".repeat(n)
        )
    };
    let tasks = l.app.tasks().unwrap();

    // GIVEN a policy with room for the bound WHEN the Grant step runs THEN
    // the proof call carries it, bounded by now + the duration
    tasks.grant(pending(policy(10)).await).await.unwrap();
    assert_eq!(
        issuer.last().session_policy.unwrap(),
        r#"{"Version":"2012-10-17","Statement":[{"Action":"s3:GetObject","Effect":"Allow","Resource":"arn:aws:s3:::bbbbbbbbbb"},{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2027-01-15T09:00:00Z"}}}]}"#
    );
    // GIVEN one that fits STS's 2,048 characters only without the bound
    // THEN the step fails for good (GrantFailed), before STS
    let calls = issuer.specs().len();
    let n = 2048 - policy(0).len();
    let err = tasks.grant(pending(policy(n)).await).await.unwrap_err();
    assert!(
        matches!(&err, TaskError::GrantFailed(m) if m.contains("2048")),
        "{err:?}"
    );
    assert_eq!(issuer.specs().len(), calls);
    l.app.shutdown().await;
}

#[tokio::test]
async fn a_longer_window_is_clipped_and_bounded_too() {
    let dir = tempfile::tempdir().unwrap();
    let (l, issuer) = open_recording(dir.path());
    // GIVEN a two-hour grant
    let id = l.granted("alice@example.com", "Admin", "2h").await;
    // (mid-window: DurationSeconds, seconds waited before asking)
    // (and the Expiration answered: the session's end, or the window's when earlier)
    for (want, wait, expires_in) in [
        (3600, 0, 3600),
        (3600, 3600, 3600),
        (1800, 1800, 1800),
        (900, 1500, 300),
    ] {
        l.forward(wait).await;
        let (s, v) = l.credentials(&id, "alice@example.com").await;
        assert_eq!(s, 200, "{v}");
        let spec = issuer.last();
        assert_eq!(spec.duration_secs, want);
        assert_eq!(expiry_secs_from(&v, l.now()), expires_in);
        assert_eq!(deny_after(&spec), "2027-01-15T10:00:00Z");
    }
    l.app.shutdown().await;
}

/// `jit-local` as the README starts it: the sample catalog, demo mode on.
fn open_sample(dir: &Path) -> (Local, Arc<common::RecordingIssuer>) {
    let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog.example.yaml");
    let mut cfg = common::config(&dir.join("data"), &catalog, KEY);
    cfg.demo_mode = true;
    let clock = common::fixed_clock();
    let issuer = common::RecordingIssuer::new(clock.clone());
    let l = Local::open(&cfg, clock, issuer.overrides(), KEY);
    (l, issuer)
}

#[tokio::test]
async fn the_seeds_body_approved_gets_credential_process_json_all_window_long() {
    let readme = include_str!("../../../../README.md");
    let event: Value =
        serde_json::from_str(include_str!("../../../../events/request-access.json")).unwrap();
    // The README's curl body and the Lambda test event's body, as written.
    let readme_body = r#"{"requester":"alice@example.com","role":"JIT-ElevatedAdminRole",
       "roleArn":"arn:aws:iam::123456789012:role/JIT-ElevatedAdminRole",
       "duration":900,"simulateApproval":true}"#;
    assert!(
        readme.contains(readme_body),
        "the README's seed example moved"
    );
    let event_body = event["body"].as_str().unwrap().to_string();
    for body in [readme_body.to_string(), event_body] {
        let dir = tempfile::tempdir().unwrap();
        let (l, issuer) = open_sample(dir.path());
        // WHEN the seed's body is posted with the API key, as in the README
        let (s, v) = common::send(
            &l.app,
            "POST",
            "/request-access",
            &[("x-api-key", KEY), ("content-type", "application/json")],
            body.clone().into(),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let id = v["requestId"].as_str().unwrap().to_string();
        // AND approved (by demo mode's simulateApproval, or by the lead)
        if l.status(&id).await == "APPROVAL_PENDING" {
            let (s, v) = l
                .post(
                    &format!("/requests/{id}/approve"),
                    "lead@example.com",
                    json!({"reason": "ok"}),
                )
                .await;
            assert_eq!(s, 200, "{v}");
        }
        assert_eq!(l.status(&id).await, "GRANTED", "{body}");
        let expires_at = l.get(&id).await["expiresAt"].as_str().unwrap().to_string();
        assert_eq!(expires_at, "2027-01-15T08:15:00Z", "a 900 s window");

        // THEN alice gets credential_process JSON from its first second to
        // its last, each session stopping at the window's end
        for (wait, left) in [(0, 900), (1, 899), (449, 450), (440, 10)] {
            l.forward(wait).await;
            let (s, v) = l.credentials(&id, "alice@example.com").await;
            assert_eq!(s, 200, "{v}");
            let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(
                keys,
                [
                    "AccessKeyId",
                    "Expiration",
                    "SecretAccessKey",
                    "SessionToken",
                    "Version"
                ]
            );
            assert_eq!(v["Version"], 1);
            assert!(v["AccessKeyId"].as_str().unwrap().starts_with("LOCALFAKE"));
            assert!(!v["SecretAccessKey"].as_str().unwrap().is_empty());
            assert!(!v["SessionToken"].as_str().unwrap().is_empty());
            assert_eq!(expiry_secs_from(&v, l.now()), left);
            assert_eq!(issuer.last().duration_secs, 900);
            assert_eq!(deny_after(&issuer.last()), "2027-01-15T08:15:00Z");
        }
        l.app.shutdown().await;
    }
}

#[tokio::test]
async fn attach_policy_grants_have_no_credentials_and_console_urls_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let attach = l.granted("sre@example.com", "ReadOnly", "1h").await;
    let (s, v) = l.credentials(&attach, "sre@example.com").await;
    assert_eq!((s, code(&v)), (409, "not_assume_role"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("your own credentials"),
        "{v}"
    );

    let id = l.granted("sre@example.com", "OnCall", "30m").await;
    let (s, v) = l
        .call(
            "GET",
            &format!("/requests/{id}/console"),
            "sre@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let url = v["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://signin.aws.amazon.com/federation?Action=login&")
            && url.contains("SigninToken=LOCALFAKE"),
        "{url}"
    );
    assert_eq!(v.as_object().unwrap().len(), 1, "exactly {{\"url\"}}");
    let events = l.audit(&id).await;
    assert!(
        events.iter().any(|e| e["action"] == "console-signin"),
        "{events:?}"
    );
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains("SigninToken")
    );
    l.app.shutdown().await;
}

#[tokio::test]
async fn revoking_a_role_grant_denies_issued_sessions_until_they_can_no_longer_live() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let id = l.granted("alice@example.com", "Admin", "2h").await;
    let (s, _) = l.credentials(&id, "alice@example.com").await;
    assert_eq!(s, 200);
    l.forward(600).await;
    let revoke = format!("/requests/{id}/revoke");

    // A reason is required; a stranger may not revoke
    let (s, v) = l.post(&revoke, "lead@example.com", json!({})).await;
    assert_eq!((s, field(&v)), (400, "reason"), "{v}");
    let (s, v) = l
        .post(&revoke, "eve@example.com", json!({"reason": "x"}))
        .await;
    assert_eq!((s, code(&v)), (403, "not_revoker"));

    // WHEN an approver revokes
    let revoked_at = l.now();
    let (s, v) = l
        .post(
            &revoke,
            "lead@example.com",
            json!({"reason": "leaked laptop"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "REVOKED");
    assert_eq!(v["reason"], "leaked laptop");
    let deny = &v["sessionDeny"];
    assert!(deny["placedAt"].is_string(), "{v}");

    // THEN the role carries a deny for alice's sessions issued before now (+ margin)
    let policies = l.app.role_policies().unwrap().policies();
    assert_eq!(policies.len(), 1, "{policies:?}");
    let (role, name, doc) = &policies[0];
    assert_eq!(role, "arn:aws:iam::123456789012:role/JIT-Admin");
    assert_eq!(name, &format!("jit-revoke-{id}"));
    let doc: Value = serde_json::from_str(doc).unwrap();
    let st = &doc["Statement"][0];
    assert_eq!(
        (st["Effect"].as_str(), st["Action"].as_str()),
        (Some("Deny"), Some("*"))
    );
    assert_eq!(
        st["Condition"]["StringEquals"]["aws:SourceIdentity"],
        "alice@example.com"
    );
    let before = chrono::DateTime::parse_from_rfc3339(
        st["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (before.with_timezone(&chrono::Utc) - revoked_at).num_seconds(),
        60
    );

    // AND no more credentials; nothing stopped the execution (it might have
    // been granting): it waits for the original expiry
    let (s, _) = l.credentials(&id, "alice@example.com").await;
    assert_eq!(s, 409);
    let exec = l.app.engine().unwrap().describe_execution(&id).unwrap();
    assert_eq!(exec.status.as_str(), "RUNNING");
    assert!(!l.states(&id).await.contains(&"Revoke".to_string()));
    l.forward(2 * 3600).await;
    assert_eq!(l.get(&id).await["status"], "REVOKED");
    // where its Revoke step finds the request REVOKED and ends quietly
    let states = l.states(&id).await;
    assert_eq!(states[states.len() - 2..], ["Revoke", "NoLongerApplies"]);

    // AND the deny goes once no session it covers can be alive: the Revoke
    // step's sweep, 2h after the revoke (past 1h + margins), removed it
    let report = l.app.sweep_revocations().await.unwrap();
    assert_eq!(
        report.removed, 0,
        "already removed by the Revoke step's sweep"
    );
    assert!(l.app.role_policies().unwrap().policies().is_empty());
    let v = l.get(&id).await;
    assert!(v["sessionDeny"]["removedAt"].is_string(), "{v}");
    let notes: Vec<String> = l
        .audit(&id)
        .await
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect();
    assert!(notes.iter().any(|n| n.contains("placed on")), "{notes:?}");
    assert!(
        notes.iter().any(|n| n.contains("removed from")),
        "{notes:?}"
    );
    l.app.shutdown().await;
}

#[tokio::test]
async fn the_deny_stays_while_a_denied_session_may_live() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let id = l.granted("alice@example.com", "Admin", "2h").await;
    let (s, v) = l
        .post(
            &format!("/requests/{id}/revoke"),
            "alice@example.com",
            json!({"reason": "done early"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // 1h + 1 min after the revoke, a session issued 59 s after it could still live
    l.forward(3600 + 60).await;
    assert_eq!(l.app.sweep_revocations().await.unwrap().removed, 0);
    assert_eq!(l.app.role_policies().unwrap().policies().len(), 1);
    l.forward(61).await;
    assert_eq!(l.app.sweep_revocations().await.unwrap().removed, 1);
    assert!(l.app.role_policies().unwrap().policies().is_empty());
    l.app.shutdown().await;
}

#[tokio::test]
async fn who_may_revoke_the_requester_an_approver_or_an_admin() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    // (who revokes, expected status); jit-local's API key is a trusted
    // caller, so a stranger is refused (403) rather than not found (404)
    let cases = [
        ("eve@example.com", 403),
        ("sre@example.com", 200),
        ("lead@example.com", 200),
        ("admin@example.com", 200),
    ];
    for (who, want) in cases {
        let id = l.granted("sre@example.com", "OnCall", "30m").await;
        let (s, v) = l
            .post(
                &format!("/requests/{id}/revoke"),
                who,
                json!({"reason": "test"}),
            )
            .await;
        assert_eq!(s, want, "{who}: {v}");
        if want == 200 {
            // A second revoke is idempotent: it re-applies and answers the same.
            let (s, v) = l
                .post(
                    &format!("/requests/{id}/revoke"),
                    who,
                    json!({"reason": "again"}),
                )
                .await;
            assert_eq!((s, v["status"].as_str()), (200, Some("REVOKED")), "{v}");
        }
    }
    // A request that is not live cannot be revoked
    let pending = l.request("alice@example.com", "Admin", "1h").await;
    let (s, v) = l
        .post(
            &format!("/requests/{pending}/revoke"),
            "alice@example.com",
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!((s, code(&v)), (409, "invalid_state"), "{v}");
    l.app.shutdown().await;
}

#[tokio::test]
async fn overlapping_attach_grants_keep_the_policy_until_the_last_one_ends() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let policy = "User(\"sre@example.com\"):ReadOnlyAccess".to_string();
    // GIVEN two overlapping grants of one policy to one user
    let first = l.granted("sre@example.com", "ReadOnly", "1h").await;
    l.forward(30 * 60).await;
    let second = l.granted("sre@example.com", "ReadOnly", "1h").await;
    assert_eq!(l.attachments(), std::slice::from_ref(&policy));
    // WHEN the first expires THEN the policy stays for the second
    l.forward(30 * 60).await;
    assert_eq!(l.get(&first).await["status"], "EXPIRED");
    assert_eq!(l.attachments(), std::slice::from_ref(&policy));
    // AND when the second expires it goes
    l.forward(30 * 60).await;
    assert_eq!(l.get(&second).await["status"], "EXPIRED");
    assert!(l.attachments().is_empty());

    // GIVEN two more: revoking one keeps it, revoking the other removes it
    let a = l.granted("sre@example.com", "ReadOnly", "1h").await;
    let b = l.granted("sre@example.com", "ReadOnly", "1h").await;
    for (id, attached_after) in [(&a, true), (&b, false)] {
        let (s, v) = l
            .post(
                &format!("/requests/{id}/revoke"),
                "sre@example.com",
                json!({"reason": "done"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(!l.attachments().is_empty(), attached_after, "{id}");
    }
    // AND their executions end without touching IAM again
    l.forward(3600).await;
    assert!(l.attachments().is_empty());
    l.app.shutdown().await;
}

#[tokio::test]
async fn an_auto_approved_extension_moves_the_expiry_and_the_workflows_wait() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let id = l.granted("sre@example.com", "OnCall", "30m").await;
    let before = l.get(&id).await["expiresAt"].as_str().unwrap().to_string();
    let (s, v) = l
        .post(
            &format!("/requests/{id}/extend"),
            "sre@example.com",
            json!({"duration": "15m", "reason": "still debugging"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let ext = &v["extensions"][0];
    assert_eq!(
        (ext["status"].as_str(), ext["autoApproved"].as_bool()),
        (Some("APPROVED"), Some(true))
    );
    let moved = |a: &str, b: &str| {
        let a = chrono::DateTime::parse_from_rfc3339(a).unwrap();
        let b = chrono::DateTime::parse_from_rfc3339(b).unwrap();
        (b - a).num_seconds()
    };
    assert_eq!(moved(&before, v["expiresAt"].as_str().unwrap()), 900);
    // The original expiry passes: still granted (the Wait moved)
    l.forward(30 * 60).await;
    assert_eq!(l.get(&id).await["status"], "GRANTED");
    let (s, _) = l.credentials(&id, "sre@example.com").await;
    assert_eq!(s, 200);
    l.forward(15 * 60).await;
    assert_eq!(l.get(&id).await["status"], "EXPIRED");
    let states = l.states(&id).await;
    assert_eq!(
        states[states.len() - 6..],
        [
            "WaitForExpiry",
            "Revoke",
            "RecordGranted",
            "WaitForExpiry",
            "Revoke",
            "Expired"
        ]
    );
    l.app.shutdown().await;
}

#[tokio::test]
async fn extensions_stay_within_the_maximum_and_need_an_approver_beyond_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let id = l.granted("sre@example.com", "OnCall", "1h").await;
    let extend = format!("/requests/{id}/extend");
    // Beyond the 2h maximum: refused, naming the allowance left
    let (s, v) = l
        .post(
            &extend,
            "sre@example.com",
            json!({"duration": "90m", "reason": "r"}),
        )
        .await;
    assert_eq!((s, field(&v)), (400, "duration"), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("1h"),
        "{v}"
    );
    let (s, v) = l
        .post(&extend, "sre@example.com", json!({"duration": "1h"}))
        .await;
    assert_eq!((s, field(&v)), (400, "reason"), "{v}");
    let (s, v) = l
        .post(
            &extend,
            "lead@example.com",
            json!({"duration": "1h", "reason": "r"}),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "not_requester"), "{v}");

    // Within it but past the auto-approve rule's 1h total: PENDING
    let (s, v) = l
        .post(
            &extend,
            "sre@example.com",
            json!({"duration": "1h", "reason": "migration overran"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["extensions"][0]["status"], "PENDING");
    let expires = v["expiresAt"].clone();
    let (s, v) = l
        .post(
            &extend,
            "sre@example.com",
            json!({"duration": "15m", "reason": "x"}),
        )
        .await;
    assert_eq!((s, code(&v)), (409, "extension_pending"), "{v}");
    let (s, v) = l
        .post(&format!("{extend}/approve"), "sre@example.com", json!({}))
        .await;
    assert_eq!((s, code(&v)), (403, "self_approval"), "{v}");
    let (s, v) = l
        .post(&format!("{extend}/deny"), "lead@example.com", json!({}))
        .await;
    assert_eq!((s, field(&v)), (400, "reason"), "{v}");

    // The approver approves: expiresAt moves by an hour
    let (s, v) = l
        .post(
            &format!("{extend}/approve"),
            "lead@example.com",
            json!({"reason": "ok"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["extensions"][0]["status"], "APPROVED");
    assert_ne!(v["expiresAt"], expires);
    l.forward(3600 + 30 * 60).await;
    assert_eq!(l.get(&id).await["status"], "GRANTED");
    // No allowance left now
    let (s, v) = l
        .post(
            &extend,
            "sre@example.com",
            json!({"duration": "15m", "reason": "more"}),
        )
        .await;
    assert_eq!((s, field(&v)), (400, "duration"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no allowance"),
        "{v}"
    );
    l.forward(30 * 60).await;
    assert_eq!(l.get(&id).await["status"], "EXPIRED");

    // A pending extension lapses when the grant is revoked; a denied one changes nothing
    let other = l.granted("sre@example.com", "OnCall", "1h").await;
    let ext2 = format!("/requests/{other}/extend");
    l.post(
        &ext2,
        "sre@example.com",
        json!({"duration": "1h", "reason": "r"}),
    )
    .await;
    let (s, v) = l
        .post(
            &format!("{ext2}/deny"),
            "lead@example.com",
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(
        (s, v["extensions"][0]["status"].as_str()),
        (200, Some("DENIED")),
        "{v}"
    );
    l.post(
        &ext2,
        "sre@example.com",
        json!({"duration": "30m", "reason": "r2"}),
    )
    .await;
    let (s, v) = l
        .post(
            &format!("/requests/{other}/revoke"),
            "sre@example.com",
            json!({"reason": "done"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["extensions"][1]["status"], "LAPSED");
    l.app.shutdown().await;
}

/// Collects every log line written while it is the thread's subscriber.
#[derive(Clone, Default)]
struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogSink;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn no_credential_is_written_anywhere() {
    // GIVEN every log line at TRACE captured (this thread: the test runtime)
    let logs = LogSink::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());

    // WHEN credentials and a console URL are issued through the whole flow
    let id = l.granted("alice@example.com", "Admin", "2h").await;
    let mut secrets = vec![];
    for _ in 0..3 {
        let (s, v) = l.credentials(&id, "alice@example.com").await;
        assert_eq!(s, 200, "{v}");
        secrets.push(v["SecretAccessKey"].as_str().unwrap().to_string());
        secrets.push(v["SessionToken"].as_str().unwrap().to_string());
        l.forward(300).await;
    }
    let (s, v) = l
        .call(
            "GET",
            &format!("/requests/{id}/console"),
            "alice@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let token = v["url"]
        .as_str()
        .unwrap()
        .split("SigninToken=")
        .nth(1)
        .unwrap();
    secrets.push(token.to_string());
    l.post(
        &format!("/requests/{id}/revoke"),
        "alice@example.com",
        json!({"reason": "done"}),
    )
    .await;
    let audit = serde_json::to_string(&l.audit(&id).await).unwrap();
    let (_, history) = l
        .call(
            "GET",
            &format!("/requests/{id}/history"),
            "alice@example.com",
            None,
        )
        .await;
    let (_, view) = l
        .call("GET", &format!("/requests/{id}"), "alice@example.com", None)
        .await;
    let engine_history = format!("{:?}", l.app.engine().unwrap().history(&id).unwrap());
    l.app.shutdown().await;

    // THEN no secret is in any file of the data dir (SQLite stores, WALs,
    // outbox, IAM stand-ins), the audit trail, the execution history, the
    // request view or the logs
    let files = files_under(&dir.path().join("data"));
    assert!(
        files.iter().any(|f| f.ends_with("jit.db"))
            && files.iter().any(|f| f.ends_with("engine.db")),
        "{files:?}"
    );
    let mut places: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| (f.display().to_string(), std::fs::read(f).unwrap()))
        .collect();
    places.push(("audit trail".into(), audit.into_bytes()));
    places.push(("history endpoint".into(), history.to_string().into_bytes()));
    places.push(("engine history".into(), engine_history.into_bytes()));
    places.push(("request view".into(), view.to_string().into_bytes()));
    let log_text = logs.0.lock().unwrap().clone();
    assert!(
        String::from_utf8_lossy(&log_text).contains("credentials issued"),
        "the logs were captured"
    );
    places.push(("logs".into(), log_text));
    for secret in &secrets {
        for (place, bytes) in &places {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a secret was found in {place}"
            );
        }
    }
}
