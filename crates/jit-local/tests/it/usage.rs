//! Used vs granted through the API. `jit-local` collects no usage itself
//! (its credentials are fake and call nothing: ARCHITECTURE, "Used vs
//! granted"), so this test plays the deployed sweep — the same use case,
//! `UsageCollector`, over `jit-local`'s own store, with an in-memory source
//! keyed by the access key id the credentials route recorded — and reads
//! the result where people read it: `GET /analytics` and the trail.

use crate::common;

use std::path::Path;

use common::Local;
use serde_json::{Value, json};

const KEY: &str = "usage-test-key-0123456789abc";

const CATALOG: &str = r#"
admin_groups: [security]
groups:
  security: [sec@example.com]
  leads: [lead@example.com]
  eng: [alice@example.com]
  ops: [olga@example.com]
entitlements:
  - name: Admin
    role_arn: "arn:aws:iam::123456789012:role/JIT-Admin"
    max_duration: 4h
    eligible_groups: [eng]
    approvers:
      emails: [lead@example.com]
  - name: Ops
    role_arn: "arn:aws:iam::123456789012:role/JIT-Ops"
    max_duration: 4h
    eligible_groups: [eng]
    approvers:
      emails: [olga@example.com]
"#;

fn open(dir: &Path) -> Local {
    let catalog = dir.join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).unwrap();
    let cfg = common::config(&dir.join("data"), &catalog, KEY);
    Local::open(&cfg, common::fixed_clock(), Default::default(), KEY)
}

#[tokio::test]
async fn analytics_show_what_an_ended_grant_called_against_what_it_was_granted() {
    // GIVEN alice's one-hour Admin grant, whose credentials she fetched once
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let id = l.granted("alice@example.com", "Admin", "1h").await;
    let (s, creds) = l
        .call(
            "GET",
            &format!("/requests/{id}/credentials"),
            "alice@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200, "{creds}");
    let key = creds["AccessKeyId"].as_str().unwrap().to_string();
    // AND the grant ended (the workflow's Wait) and 31 minutes passed
    l.forward(3600).await;
    assert_eq!(l.status(&id).await, "EXPIRED");
    l.forward(31 * 60).await;

    // WHEN the sweep runs with CloudTrail holding that session's calls
    let source = jit_testkit::usage::FakeUsage::default().with(
        &key,
        &[
            ("ec2.amazonaws.com", "DescribeInstances", None),
            ("ec2.amazonaws.com", "DescribeInstances", None),
            (
                "ec2.amazonaws.com",
                "RebootInstances",
                Some("Client.UnauthorizedOperation"),
            ),
        ],
    );
    let report = jit_core::usage::UsageCollector::new()
        .collect(l.app.broker.store.as_ref(), &source, l.now())
        .await
        .expect("sweep");
    assert_eq!(report.recorded, 1, "{report:?}");
    assert_eq!(source.asked()[0].0, key);

    // THEN an admin's /analytics shows it for Admin
    let (s, a) = l.call("GET", "/analytics", "sec@example.com", None).await;
    assert_eq!(s, 200, "{a}");
    let f = &a["usage"]["usedVsGranted"];
    assert!(
        f["events"].as_str().unwrap().contains("usage events"),
        "{f}"
    );
    assert_eq!(
        f["byEntitlement"]["Admin"],
        json!({
            "grants": 1, "unusedGrants": 0, "sessions": 1, "calls": 3, "truncated": 0,
            "grantedActions": ["*"],
            "usedActions": {"ec2:DescribeInstances": 2},
            "deniedActions": {"ec2:RebootInstances": 1},
            "unusedGrantedActions": [],
            "suggestedCeiling": ["ec2:DescribeInstances"],
        })
    );
    // AND an approver of another entitlement does not see it
    let (s, o) = l.call("GET", "/analytics", "olga@example.com", None).await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(
        o["usage"]["usedVsGranted"]["byEntitlement"],
        json!({}),
        "{o}"
    );
    // AND the grant's trail holds the record (key id, no secret), as does
    // the admin's audit listing by action
    let (s, trail) = l
        .call(
            "GET",
            &format!("/requests/{id}/audit"),
            "lead@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200, "{trail}");
    let events = trail["events"].as_array().expect("events");
    let usage: Vec<&Value> = events.iter().filter(|e| e["action"] == "usage").collect();
    assert_eq!(usage.len(), 1, "{trail}");
    assert_eq!(usage[0]["actor"], "system:usage");
    assert_eq!(usage[0]["usage"]["accessKeyIds"], json!([key]));
    let secret = creds["SecretAccessKey"].as_str().unwrap();
    assert!(!trail.to_string().contains(secret));
    let (s, v) = l
        .call("GET", "/audit?action=usage", "sec@example.com", None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["events"].as_array().unwrap().len(), 1, "{v}");
    l.app.shutdown().await;
}
