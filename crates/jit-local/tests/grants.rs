//! Credential vending, console sign-in, early revoke, overlapping attach
//! grants and extensions, through `jit-local`'s HTTP handler with the local
//! issuer, the local engine running `approval.asl.json`, and a manual clock.

mod common;

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

impl Local {
    /// A request approved by the lead: GRANTED.
    async fn granted(&self, user: &str, entitlement: &str, duration: &str) -> String {
        let id = self.request(user, entitlement, duration).await;
        if self.get(&id).await["status"] == "APPROVAL_PENDING" {
            let (s, v) = self
                .post(
                    &format!("/requests/{id}/approve"),
                    "lead@example.com",
                    json!({}),
                )
                .await;
            assert_eq!(s, 200, "{v}");
        }
        assert_eq!(self.get(&id).await["status"], "GRANTED");
        id
    }

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
async fn credentials_are_the_requesters_clipped_to_the_window_and_refused_at_its_end() {
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

    // AND with 50 minutes left, the session ends with the window
    l.forward(3 * 3600 + 600).await;
    let (s, v) = l.credentials(&id, "alice@example.com").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(expiry_secs_from(&v, l.now()), 3000);

    // AND with exactly 15 minutes left, a 900 s session; with 14, none
    l.forward(35 * 60).await;
    let (s, v) = l.credentials(&id, "alice@example.com").await;
    assert_eq!((s, expiry_secs_from(&v, l.now())), (200, 900));
    l.forward(60).await;
    let (s, v) = l.credentials(&id, "alice@example.com").await;
    assert_eq!((s, code(&v)), (409, "window_ending"), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("15 minutes") && msg.contains("extend"),
        "{msg}"
    );

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
    assert_eq!(issued.len(), 3);
    assert_eq!(issued[0]["actor"], "alice@example.com");
    assert!(
        issued[0]["reason"].as_str().unwrap().contains(&first_key),
        "{}",
        issued[0]
    );
    assert!(!serde_json::to_string(&events).unwrap().contains(&secret));

    // AND after the window, EXPIRED
    l.forward(15 * 60).await;
    let (s, v) = l.credentials(&id, "alice@example.com").await;
    assert_eq!((s, code(&v)), (409, "invalid_state"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("EXPIRED"));
    l.app.shutdown().await;
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
