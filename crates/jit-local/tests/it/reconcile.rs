//! `jit-local reconcile` and `jit-local iam state` on a real data directory,
//! through the real binary: the reconciler removes what no live grant holds
//! (a request forced to EXPIRED without its detach), in process when no
//! server runs and through the server when one does; `iam state` names the
//! request each attachment and inline policy belongs to.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::bin::{Running, call, run, start, wait_for_status};
use jit_core::RequestId;
use jit_core::lifecycle::Status;
use jit_core::ports::RequestStore;
use jit_core::request::Change;
use serde_json::{Value, json};

const KEY: &str = "reconcile-test-key-0123456789";

const CATALOG: &str = r#"
defaults:
  max_duration: 1h
  approvers: { emails: [lead@example.com] }
groups:
  sre: [sre@example.com]
entitlements:
  - name: Admin
    role_arn: "arn:aws:iam::123456789012:role/JIT-Admin"
  - name: ReadOnly
    policy_name: ReadOnlyAccess
    account: "123456789012"
    auto_approve: { groups: [sre], max_duration: 1h }
"#;

const ADMIN_ROLE: &str = "arn:aws:iam::123456789012:role/JIT-Admin";
const SRE_USER: &str = "arn:aws:iam::123456789012:user/sre@example.com";

struct Dir {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    catalog: PathBuf,
}

fn dir() -> Dir {
    let tmp = tempfile::tempdir().unwrap();
    let catalog = tmp.path().join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).unwrap();
    Dir {
        data: tmp.path().join("data"),
        catalog,
        _tmp: tmp,
    }
}

impl Dir {
    fn server(&self) -> (Running, SocketAddr) {
        start(&self.data, KEY, &self.catalog)
    }

    fn data(&self) -> &str {
        self.data.to_str().unwrap()
    }

    fn iam_state(&self) -> Value {
        let ran = run(&[
            "iam",
            "state",
            "--data-dir",
            self.data(),
            "--output",
            "json",
        ]);
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        ran.json()
    }

    fn reconcile(&self, extra: &[&str]) -> common::bin::Ran {
        let mut args = vec![
            "reconcile",
            "--data-dir",
            self.data(),
            "--catalog",
            self.catalog.to_str().unwrap(),
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        run(&args)
    }
}

/// An auto-approved attach-policy grant (the policy attached); its id.
fn attach_grant(addr: SocketAddr) -> String {
    let body = r#"{"entitlement":"ReadOnly","duration":"1h","justification":"INC-11"}"#;
    let (code, v) = call(addr, KEY, "POST", "/requests", "sre@example.com", body);
    assert_eq!(code, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    wait_for_status(addr, KEY, &id, "GRANTED");
    id
}

/// The record moved to EXPIRED behind the broker's back: no detach, the
/// workflow still waiting (what a crash between the two left on `main`).
async fn force_expired(data: &Path, id: &str) {
    let store = jit_store_sqlite::SqliteStore::open(&data.join("jit.db")).unwrap();
    let id = RequestId::parse(id).unwrap();
    let r = store.get(&id).await.unwrap().unwrap();
    let change = Change {
        actor: "test".into(),
        at: chrono::Utc::now(),
        reason: Some("forced by the test".into()),
        source: "test",
    };
    let (next, event) = r.transition(Status::Expired, &change).unwrap();
    store.transition(&r, &next, &event).await.unwrap();
}

async fn reconciler_notes(data: &Path, id: &str) -> Vec<String> {
    let store = jit_store_sqlite::SqliteStore::open(&data.join("jit.db")).unwrap();
    store
        .audit_events(&RequestId::parse(id).unwrap())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.actor == "system:reconciler")
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_detaches_a_policy_whose_request_ended_without_its_detach() {
    // GIVEN a policy attached for a grant whose record was forced to EXPIRED
    let d = dir();
    let (server, addr) = d.server();
    let id = attach_grant(addr);
    force_expired(&d.data, &id).await;
    drop(server); // SIGKILL: the reconcile below runs on the data alone
    let state = d.iam_state();
    assert_eq!(
        state["attachedPolicies"],
        json!([{"principal": SRE_USER, "policy": "ReadOnlyAccess", "requestId": id}])
    );

    // WHEN a dry run looks THEN it reports the drift, exits 1, changes nothing
    let dry = d.reconcile(&["--dry-run", "--grace-secs", "0"]);
    assert_eq!(dry.code, Some(1), "{}{}", dry.stdout, dry.stderr);
    let report = dry.json();
    assert_eq!(report["dryRun"], true);
    assert_eq!(report["grants"]["removed"][0]["requestId"], id.as_str());
    assert_eq!(report["grants"]["removed"][0]["done"], false);
    assert_eq!(d.iam_state(), state);

    // WHEN it reconciles THEN the policy is detached, audited, exit 0
    let done = d.reconcile(&["--grace-secs", "0"]);
    assert_eq!(done.code, Some(0), "{}{}", done.stdout, done.stderr);
    let report = done.json();
    let removed = &report["grants"]["removed"][0];
    assert_eq!(removed["requestId"], id.as_str());
    assert_eq!(removed["kind"], "managed-policy");
    assert_eq!(removed["target"], SRE_USER);
    assert_eq!(removed["policy"], "ReadOnlyAccess");
    assert_eq!(removed["done"], true);
    assert_eq!(d.iam_state()["attachedPolicies"], json!([]));
    let notes = reconciler_notes(&d.data, &id).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("no live grant"), "{notes:?}");

    // AND a second pass finds nothing (text output, exit 0)
    let again = run(&[
        "reconcile",
        "--data-dir",
        d.data(),
        "--catalog",
        d.catalog.to_str().unwrap(),
        "--grace-secs",
        "0",
    ]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(again.stdout.contains("nothing to fix"), "{}", again.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_beside_a_running_server_goes_through_it() {
    // GIVEN a running server and the same drift
    let d = dir();
    let (_server, addr) = d.server();
    let id = attach_grant(addr);
    force_expired(&d.data, &id).await;

    // WHEN reconcile runs beside it THEN the server does the work
    let done = d.reconcile(&["--grace-secs", "0"]);
    assert_eq!(done.code, Some(0), "{}{}", done.stdout, done.stderr);
    let report = done.json();
    assert_eq!(report["grants"]["removed"][0]["requestId"], id.as_str());
    assert_eq!(report["grants"]["removed"][0]["done"], true);
    // (iam state reads beside the running server)
    assert_eq!(d.iam_state()["attachedPolicies"], json!([]));
    let (code, v) = call(
        addr,
        KEY,
        "GET",
        &format!("/requests/{id}/audit"),
        "lead@example.com",
        "",
    );
    assert_eq!(code, 200, "{v}");
    let by_reconciler = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "system:reconciler")
        .count();
    assert_eq!(by_reconciler, 1, "{v}");

    // AND the route wants the API key
    let (code, _) = call(
        addr,
        "wrong-key-0123456789abcdef",
        "POST",
        "/local/reconcile",
        "x@example.com",
        "",
    );
    assert_eq!(code, 403);

    // AND a second server on the same data directory refuses to start
    let second = run(&[
        "--addr",
        "127.0.0.1:0",
        "--api-key",
        KEY,
        "--catalog",
        d.catalog.to_str().unwrap(),
        "--data-dir",
        d.data(),
    ]);
    assert_eq!(second.code, Some(2), "{}", second.stderr);
    assert!(
        second.stderr.contains("another jit-local"),
        "{}",
        second.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_state_names_the_request_of_each_attachment_and_inline_policy() {
    // GIVEN an attach-policy grant and a revoked role grant (its deny placed)
    let d = dir();
    let (_server, addr) = d.server();
    let attach = attach_grant(addr);
    let body = r#"{"entitlement":"Admin","duration":"1h","justification":"INC-12"}"#;
    let (code, v) = call(addr, KEY, "POST", "/requests", "alice@example.com", body);
    assert_eq!(code, 201, "{v}");
    let role = v["requestId"].as_str().unwrap().to_string();
    wait_for_status(addr, KEY, &role, "APPROVAL_PENDING");
    let (code, v) = call(
        addr,
        KEY,
        "POST",
        &format!("/requests/{role}/approve"),
        "lead@example.com",
        "{}",
    );
    assert_eq!(code, 200, "{v}");
    wait_for_status(addr, KEY, &role, "GRANTED");
    let (code, v) = call(
        addr,
        KEY,
        "POST",
        &format!("/requests/{role}/revoke"),
        "lead@example.com",
        r#"{"reason":"done early"}"#,
    );
    assert_eq!(code, 200, "{v}");

    // WHEN iam state prints it (the server still running)
    let state = d.iam_state();

    // THEN exactly the pinned shape, each with its request
    assert_eq!(
        state,
        json!({
            "attachedPolicies": [
                {"principal": SRE_USER, "policy": "ReadOnlyAccess", "requestId": attach}
            ],
            "inlinePolicies": [
                {"target": ADMIN_ROLE, "name": format!("jit-revoke-{role}"), "requestId": role}
            ]
        })
    );
    let text = run(&["iam", "state", "--data-dir", d.data()]);
    assert_eq!(text.code, Some(0));
    assert!(
        text.stdout.contains(&format!("jit-revoke-{role}")),
        "{}",
        text.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_inline_policy_on_a_grantable_role_is_flagged_and_kept() {
    // GIVEN an inline policy on a grantable role that the broker never wrote
    let d = dir();
    let (server, _) = d.server();
    drop(server);
    let foreign = json!({ADMIN_ROLE: {"backdoor": r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#}});
    std::fs::write(d.data.join("iam-role-policies.json"), foreign.to_string()).unwrap();

    // WHEN the reconciler runs
    let ran = d.reconcile(&[]);

    // THEN it is flagged (exit 1: a person must look), never deleted
    assert_eq!(ran.code, Some(1), "{}{}", ran.stdout, ran.stderr);
    let report = ran.json();
    let flagged = &report["grants"]["flagged"][0];
    assert_eq!(flagged["target"], ADMIN_ROLE);
    assert_eq!(flagged["policy"], "backdoor");
    assert_eq!(
        d.iam_state()["inlinePolicies"],
        json!([{"target": ADMIN_ROLE, "name": "backdoor", "requestId": null}])
    );
}

/// The server's own pass (every minute), on a manual clock: nothing within
/// the grace period, the drift after it.
#[tokio::test]
async fn the_servers_pass_waits_out_the_grace_period_then_detaches() {
    let d = dir();
    let cfg = common::config(&d.data, &d.catalog, KEY);
    let l = common::Local::open(
        &cfg,
        common::fixed_clock(),
        jit_local::Overrides::default(),
        KEY,
    );
    let id = l.request("sre@example.com", "ReadOnly", "1h").await;
    assert_eq!(l.status(&id).await, "GRANTED");
    let store = l.app.tasks().unwrap().store.clone();
    let r = store
        .get(&RequestId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let change = Change {
        actor: "test".into(),
        at: l.now(),
        reason: None,
        source: "test",
    };
    let (next, event) = r.transition(Status::Expired, &change).unwrap();
    store.transition(&r, &next, &event).await.unwrap();
    let attached = || l.app.attacher().unwrap().attachments().len();
    assert_eq!(attached(), 1);

    l.clock.advance(chrono::Duration::seconds(60));
    let report = l.app.reconcile(false, None).await.unwrap();
    assert_eq!(report.grants.in_flight.len(), 1, "{report:#?}");
    assert_eq!(attached(), 1, "within the grace period");

    l.clock
        .advance(chrono::Duration::seconds(jit_core::reconcile::GRACE_SECS));
    let report = l.app.reconcile(false, None).await.unwrap();
    assert_eq!(report.grants.removed.len(), 1, "{report:#?}");
    assert_eq!(attached(), 0);
}
