//! Instant credentials: a create with `"wait": true` (or `Prefer: wait=N`)
//! runs `state-machine/instant.asl.json` synchronously on the local engine,
//! then the Standard workflow, and answers GRANTED with the credentials in
//! one call. What the engine and the store record never holds them.

use crate::common;

use std::path::Path;

use bytes::Bytes;
use jit_local::{Config, Overrides};
use serde_json::{Value, json};

use common::Local;

const KEY: &str = "instant-test-key-0123456789abc";

fn config(dir: &Path, catalog: &Path) -> Config {
    Config {
        demo_mode: true,
        ..common::config(dir, catalog, KEY)
    }
}

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog.example.yaml")
}

fn open(dir: &Path) -> Local {
    Local::open(
        &config(dir, &example()),
        common::fixed_clock(),
        Overrides::default(),
        KEY,
    )
}

/// Every byte of every file under `dir` (the stores, their WAL files, the
/// outbox): a secret found in none of them was written nowhere here.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        out.extend(std::fs::read(entry).unwrap_or_default());
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files.extend(walk(&p));
        } else {
            files.push(p);
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn seed_body_with_wait_answers_granted_with_credentials_in_one_call() {
    // GIVEN jit-local in demo mode with the example catalog
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    // WHEN the seed's body plus "wait": true is posted with the API key
    // alone (no engine run between: the answer comes from the call itself)
    let resp = {
        let req = http::Request::builder()
            .method("POST")
            .uri("/request-access")
            .header("x-api-key", KEY)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(
                json!({
                    "requester": "bob@example.com", "role": "JIT-ElevatedAdminRole",
                    "roleArn": "arn:aws:iam::123456789012:role/JIT-ElevatedAdminRole",
                    "duration": 900, "simulateApproval": true, "wait": true
                })
                .to_string(),
            )))
            .unwrap();
        l.app.serve_http(req).await
    };
    // THEN 201, GRANTED, and the credential_process JSON under `credentials`
    assert_eq!(resp.status(), 201, "{}", resp.body());
    assert_eq!(resp.headers()["preference-applied"], "wait=25");
    let v: Value = serde_json::from_str(resp.body()).unwrap();
    assert_eq!(v["status"], "GRANTED", "{v}");
    assert_eq!(v["credentials"]["Version"], 1, "{v}");
    let secret = v["credentials"]["SecretAccessKey"]
        .as_str()
        .unwrap()
        .to_string();
    let token = v["credentials"]["SessionToken"]
        .as_str()
        .unwrap()
        .to_string();
    let id = v["requestId"].as_str().unwrap().to_string();
    // AND the instant execution ran validate, grant, record and ended
    let engine = l.app.engine().unwrap();
    let instant =
        jit_local::workflow::instant_execution_name(&jit_core::RequestId::parse(&id).unwrap());
    assert_eq!(
        engine.states_entered(&instant).unwrap(),
        [
            "Validate",
            "NeedsPolicy",
            "Route",
            "Grant",
            "RecordGranted",
            "Granted"
        ]
    );
    // AND the Standard workflow was started with the request id; it only
    // records, waits and revokes (no second grant)
    l.settle().await;
    assert_eq!(
        l.states(&id).await,
        [
            "Validate",
            "NeedsPolicy",
            "Route",
            "RecordGranted",
            "WaitForExpiry"
        ]
    );
    l.forward(900).await;
    assert_eq!(l.status(&id).await, "EXPIRED");
    let states = l.states(&id).await;
    assert_eq!(
        states.iter().filter(|s| *s == "Revoke").count(),
        1,
        "{states:?}"
    );
    // AND no execution history, output, store or outbox holds the
    // credentials: neither the engine's record nor any file does
    for name in [instant.as_str(), id.as_str()] {
        let history = serde_json::to_string(&engine.history(name).unwrap()).unwrap();
        assert!(!history.contains(&secret) && !history.contains(&token));
        let d = serde_json::to_string(&engine.describe_execution(name).unwrap()).unwrap();
        assert!(!d.contains(&secret) && !d.contains(&token), "{d}");
    }
    let bytes = all_bytes(dir.path());
    assert!(
        !contains(&bytes, &secret),
        "the secret key was written to the data dir"
    );
    assert!(
        !contains(&bytes, &token),
        "the session token was written to the data dir"
    );
    // AND the audit trail says who got credentials, through whom
    let (s, audit) = l
        .call(
            "GET",
            &format!("/requests/{id}/audit"),
            "lead@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let issued: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "credentials-issued")
        .collect();
    assert_eq!(issued.len(), 1, "{audit}");
    assert_eq!(issued[0]["actor"], "bob@example.com via jit-local-api-key");
}

#[tokio::test]
async fn an_auto_approved_request_waits_in_the_call_and_a_human_one_answers_pending() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    // GIVEN an SRE (auto-approved for OnCallReadOnly up to 1h)
    let (s, v) = common::send(
        &l.app,
        "POST",
        "/requests",
        &[
            ("x-api-key", KEY),
            ("x-jit-user", "sre@example.com"),
            ("x-jit-groups", "sre"),
            ("content-type", "application/json"),
            ("prefer", "wait=5"),
        ],
        Bytes::from(
            json!({"entitlement": "OnCallReadOnly", "duration": "30m", "justification": "INC-1"})
                .to_string(),
        ),
    )
    .await;
    // THEN the credentials come with the create
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["status"], "GRANTED");
    assert!(v["credentials"]["AccessKeyId"].is_string(), "{v}");
    // WHEN a request needs a person, with Prefer: wait=1
    let started = std::time::Instant::now();
    let (s, v) = common::send(
        &l.app,
        "POST",
        "/requests",
        &[
            ("x-api-key", KEY),
            ("x-jit-user", "dave@example.com"),
            ("content-type", "application/json"),
            ("prefer", "respond-async, wait=1"),
        ],
        Bytes::from(
            json!({"entitlement": "JIT-ElevatedAdminRole", "duration": "30m", "justification": "INC-2"})
                .to_string(),
        ),
    )
    .await;
    // THEN it answers 201, pending, without credentials, after about 1 s
    assert_eq!(s, 201, "{v}");
    assert!(v.get("credentials").is_none(), "{v}");
    assert!(
        ["REQUESTED", "VALIDATING", "APPROVAL_PENDING"].contains(&v["status"].as_str().unwrap()),
        "{v}"
    );
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn wait_longer_than_25_seconds_is_refused_naming_prefer() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    for (prefer, needle) in [
        ("wait=26", "longer than the 25"),
        ("wait=soon", "whole number"),
    ] {
        let (s, v) = common::send(
            &l.app,
            "POST",
            "/requests",
            &[
                ("x-api-key", KEY),
                ("x-jit-user", "sre@example.com"),
                ("content-type", "application/json"),
                ("prefer", prefer),
            ],
            Bytes::from(
                json!({"entitlement": "OnCallReadOnly", "justification": "INC-1"}).to_string(),
            ),
        )
        .await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"]["field"], "Prefer", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{v}"
        );
    }
    let (s, v) = l
        .post(
            "/requests",
            "sre@example.com",
            json!({"entitlement": "OnCallReadOnly", "justification": "INC-1", "wait": "yes"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["field"], "wait");
}

#[tokio::test]
async fn approvers_none_refuses_requests_no_rule_approves_at_creation() {
    // GIVEN an entry nobody approves, auto-approved for sre only
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(
        &catalog,
        "entitlements:\n  - name: Robots\n    role_arn: 'arn:aws:iam::123456789012:role/R'\n    approvers: none\n    auto_approve: {groups: [sre], max_duration: 1h}\n  - name: Nobody\n    role_arn: 'arn:aws:iam::123456789012:role/N'\n    approvers: none\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let l = Local::open(
        &config(&data, &catalog),
        common::fixed_clock(),
        Overrides::default(),
        KEY,
    );
    // WHEN someone outside the rule asks, THEN 400 no_approvers naming the field
    for (user, ent) in [
        ("dave@example.com", "Robots"),
        ("dave@example.com", "Nobody"),
    ] {
        let (s, v) = l
            .post(
                "/requests",
                user,
                json!({"entitlement": ent, "duration": "30m", "justification": "x"}),
            )
            .await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"]["code"], "no_approvers", "{v}");
        assert_eq!(v["error"]["field"], "entitlement", "{v}");
    }
    // AND the rule still grants its own
    let (s, v) = common::send(
        &l.app,
        "POST",
        "/requests",
        &[
            ("x-api-key", KEY),
            ("x-jit-user", "sre@example.com"),
            ("x-jit-groups", "sre"),
            ("content-type", "application/json"),
        ],
        Bytes::from(
            json!({"entitlement": "Robots", "duration": "30m", "justification": "x"}).to_string(),
        ),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(l.status(v["requestId"].as_str().unwrap()).await, "GRANTED");
}
