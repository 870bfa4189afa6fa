//! Access analytics end to end through `jit-local`: a mix of granted,
//! denied, ineligible, self-approval and timed-out requests, then
//! `GET /analytics` counts each exactly; the admin listing; and a request
//! whose item was deleted (as DynamoDB TTL does) still shows, rebuilt from
//! its audit trail.

use crate::common;

use std::path::Path;

use common::Local;
use serde_json::{Value, json};

const KEY: &str = "analytics-test-key-0123456789";

const CATALOG: &str = r#"
admin_groups: [security]
groups:
  security: [sec@example.com]
  leads: [lead@example.com]
  sre: [sre@example.com]
  eng: [alice@example.com, bob@example.com]
working_hours:
  days: [mon, tue, wed, thu, fri]
  start: "09:00"
  end: "18:00"
  time_zone: "+01:00"
entitlements:
  - name: Admin
    role_arn: "arn:aws:iam::123456789012:role/JIT-Admin"
    max_duration: 4h
    eligible_groups: [eng]
    approvers:
      groups: [leads]
      emails: [lead@example.com]
    approval_timeout: 15m
  - name: ReadOnly
    role_arn: "arn:aws:iam::123456789012:role/JIT-ReadOnly"
    max_duration: 2h
    eligible_groups: [sre, eng]
    approvers:
      groups: [leads]
      emails: [lead@example.com]
    auto_approve:
      groups: [sre]
      max_duration: 1h
"#;

fn open(dir: &Path) -> Local {
    let catalog = dir.join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).unwrap();
    let cfg = common::config(&dir.join("data"), &catalog, KEY);
    Local::open(&cfg, common::fixed_clock(), Default::default(), KEY)
}

fn count(v: &Value) -> u64 {
    v["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("no total in {v}"))
}

/// Builds the mix; returns (granted Admin id, timed-out id). The clock
/// starts at 2027-01-15T08:00:00Z, a Friday (09:00 at +01:00).
async fn the_mix(l: &Local) -> (String, String) {
    // alice's Admin request, approved by the lead 30 s later (rubber stamp),
    // granted inside working hours; credentials fetched once
    let granted = l.request("alice@example.com", "Admin", "1h").await;
    l.forward(30).await;
    let (s, v) = l
        .post(
            &format!("/requests/{granted}/approve"),
            "lead@example.com",
            json!({"reason": "ok"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(l.status(&granted).await, "GRANTED");
    let (s, v) = l
        .call(
            "GET",
            &format!("/requests/{granted}/credentials"),
            "alice@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // bob's Admin request, denied two minutes later
    let denied = l.request("bob@example.com", "Admin", "1h").await;
    l.forward(120).await;
    let (s, v) = l
        .post(
            &format!("/requests/{denied}/deny"),
            "lead@example.com",
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // sre asks for Admin: not eligible
    let (s, v) = l
        .post(
            "/requests",
            "sre@example.com",
            json!({"entitlement": "Admin", "duration": "1h", "justification": "x"}),
        )
        .await;
    assert_eq!(s, 403, "{v}");

    // alice tries to approve her own second request, which then times out
    let timed_out = l.request("alice@example.com", "Admin", "1h").await;
    let (s, v) = l
        .post(
            &format!("/requests/{timed_out}/approve"),
            "alice@example.com",
            json!({}),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "self_approval");
    l.forward(16 * 60).await;
    assert_eq!(l.status(&timed_out).await, "APPROVAL_TIMED_OUT");

    // by 17:30 UTC (18:30 at +01:00) alice's grant has expired; sre's
    // auto-approved ReadOnly is granted outside working hours
    l.forward(9 * 3600 + 30 * 60 - 30 - 120 - 16 * 60).await;
    assert_eq!(l.status(&granted).await, "EXPIRED");
    let ro = l.request("sre@example.com", "ReadOnly", "30m").await;
    assert_eq!(l.status(&ro).await, "GRANTED");
    (granted, timed_out)
}

#[tokio::test]
async fn analytics_count_each_outcome_exactly_and_are_for_admins_and_approvers() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let (_granted, _timed_out) = the_mix(&l).await;
    let range = "/analytics?from=2027-01-15&to=2027-01-16";

    // GIVEN the mix WHEN an admin reads analytics for the day
    let (s, a) = l.call("GET", range, "sec@example.com", None).await;
    assert_eq!(s, 200, "{a}");

    // THEN patterns
    let p = &a["patterns"];
    assert_eq!(
        p["requestsPerDay"]["days"],
        json!({"2027-01-15": {"EXPIRED": 1, "DENIED": 1, "APPROVAL_TIMED_OUT": 1, "GRANTED": 1}})
    );
    assert_eq!(
        p["requestsByEntitlement"]["by"],
        json!({"Admin": 3, "ReadOnly": 1})
    );
    assert_eq!(
        p["requestsByRequester"]["by"],
        json!({"alice@example.com": 2, "bob@example.com": 1, "sre@example.com": 1})
    );
    assert_eq!(p["requestsByGroup"]["by"], json!({"eng": 3, "sre": 1}));
    // Friday is row 4; 08:00Z is 09:00 at +01:00, 17:30Z is 18:30
    assert_eq!(p["hourOfWeek"]["timeZone"], "+01:00");
    assert_eq!(p["hourOfWeek"]["cells"][4][9], 3);
    assert_eq!(p["hourOfWeek"]["cells"][4][18], 1);
    assert_eq!(
        p["durationAskedHours"]["by"],
        json!({"Admin": 3.0, "ReadOnly": 0.5})
    );
    assert_eq!(
        p["durationGrantedHours"]["by"],
        json!({"Admin": 1.0, "ReadOnly": 0.5})
    );
    let ttd = &p["timeToDecision"];
    assert_eq!(
        ttd["all"],
        json!({"count": 2, "p50Secs": 30, "p90Secs": 120})
    );
    assert_eq!(ttd["byApprover"]["lead@example.com"]["count"], 2);

    // AND usage
    let u = &a["usage"];
    assert_eq!(u["grants"]["by"], json!({"Admin": 1, "ReadOnly": 1}));
    assert_eq!(
        u["elevatedHours"]["by"],
        json!({"Admin": 1.0, "ReadOnly": 0.5})
    );
    assert_eq!(count(&u["credentialsIssued"]), 1);
    assert_eq!(count(&u["consoleSignins"]), 0);
    assert_eq!(count(&u["extensions"]), 0);
    assert_eq!(count(&u["earlyRevokes"]), 0);
    assert_eq!(u["approvals"]["by"], json!({"auto": 1, "human": 1}));
    let st = &u["standingAccess"];
    // Admin: alice and bob eligible, 24 h each; ReadOnly: sre, alice, bob
    assert_eq!(st["byEntitlement"]["Admin"]["eligiblePeople"], 2);
    assert_eq!(st["standingHours"], 120.0);
    assert_eq!(st["grantedHours"], 1.5);
    assert_eq!(st["replacedHours"], 118.5);

    // AND security
    let sec = &a["security"];
    assert_eq!(sec["denied"]["by"], json!({"Admin": 1}));
    assert_eq!(sec["ineligible"]["by"], json!({"Admin": 1}));
    assert_eq!(sec["selfApproval"]["by"], json!({"Admin": 1}));
    assert_eq!(count(&sec["notApprover"]), 0);
    assert_eq!(sec["approvalTimeouts"]["by"], json!({"Admin": 1}));
    assert_eq!(sec["outsideWorkingHours"]["by"], json!({"ReadOnly": 1}));
    assert_eq!(
        sec["firstTimeUse"]["by"],
        json!({"Admin": 1, "ReadOnly": 1})
    );
    assert_eq!(sec["rubberStamping"]["total"], 1);
    assert_eq!(
        sec["rubberStamping"]["byApprover"]["lead@example.com"],
        json!({"decisions": 1, "withinSecs": 1})
    );
    assert_eq!(
        sec["approverConcentration"]["topApprover"],
        "lead@example.com"
    );
    assert_eq!(sec["approverConcentration"]["topShare"], 1.0);
    assert_eq!(count(&sec["revocations"]), 0);
    assert_eq!(count(&sec["reconcilerDrift"]), 0);
    // AND every figure names the events it counts
    for section in ["patterns", "usage", "security"] {
        for (k, f) in a[section].as_object().unwrap() {
            assert!(
                f["events"].as_str().is_some_and(|e| !e.is_empty()),
                "{section}.{k}"
            );
        }
    }

    // WHEN the lead (an approver, not an admin) reads it THEN only their
    // entitlements; a requester gets 403
    let (s, v) = l.call("GET", range, "lead@example.com", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["entitlements"], json!(["Admin", "ReadOnly"]));
    let (s, v) = l.call("GET", range, "bob@example.com", None).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "not_admin");
    // AND a range before the mix is empty; a bad range names its field
    let (s, v) = l
        .call(
            "GET",
            "/analytics?from=2027-01-14&to=2027-01-15",
            "sec@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["usage"]["grants"]["total"], 0);
    let (s, v) = l
        .call(
            "GET",
            "/analytics?from=2027-01-16&to=2027-01-15",
            "sec@example.com",
            None,
        )
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("to")));
    let (s, v) = l
        .call("GET", "/analytics?from=yesterday", "sec@example.com", None)
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("from")));
    l.app.shutdown().await;
}

#[tokio::test]
async fn admins_list_everyone_and_a_deleted_request_reads_from_its_trail() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let (granted, timed_out) = the_mix(&l).await;

    // WHEN an admin lists all requests, filtered and paged
    let (s, v) = l
        .call(
            "GET",
            "/requests?scope=all&limit=3",
            "sec@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["requests"].as_array().unwrap().len(), 3);
    let cursor = v["nextCursor"].as_str().expect("a second page").to_string();
    let (_, v2) = l
        .call(
            "GET",
            &format!("/requests?scope=all&limit=3&cursor={cursor}"),
            "sec@example.com",
            None,
        )
        .await;
    assert_eq!(v2["requests"].as_array().unwrap().len(), 1);
    assert!(v2["nextCursor"].is_null());
    let (_, v) = l
        .call(
            "GET",
            "/requests?scope=all&entitlement=Admin&requester=alice%40example.com&status=APPROVAL_TIMED_OUT",
            "sec@example.com",
            None,
        )
        .await;
    let ids: Vec<&str> = v["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requestId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [timed_out.as_str()]);
    let (_, v) = l
        .call(
            "GET",
            "/requests?scope=all&from=2027-01-15T17:00:00Z&to=2027-01-16",
            "sec@example.com",
            None,
        )
        .await;
    assert_eq!(v["requests"][0]["entitlement"], "ReadOnly");
    assert_eq!(v["requests"].as_array().unwrap().len(), 1);
    // THEN a non-admin is refused, and a bad filter names its field
    let (s, v) = l
        .call("GET", "/requests?scope=all", "lead@example.com", None)
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("not_admin")));
    let (s, v) = l
        .call(
            "GET",
            "/requests?scope=all&from=soon",
            "sec@example.com",
            None,
        )
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("from")));
    let (s, v) = l
        .call("GET", "/requests?scope=everything", "sec@example.com", None)
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("scope")));

    // AND admins list the refused attempts: the ineligible one (a request
    // id nothing else shows) and the self-approval
    let (s, v) = l
        .call(
            "GET",
            "/audit?from=2027-01-15&to=2027-01-16&action=rejected",
            "sec@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let codes: Vec<(&str, &str, &str)> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap(),
                e["entitlement"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("not_eligible", "Admin", "sre@example.com"),
            ("self_approval", "Admin", "alice@example.com")
        ]
    );
    let (s, _) = l
        .call("GET", "/audit?action=rejected", "lead@example.com", None)
        .await;
    assert_eq!(s, 403);
    let (s, v) = l
        .call("GET", "/audit?action=nope", "sec@example.com", None)
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("action")));

    // GIVEN the granted request's row deleted, as DynamoDB TTL deletes items
    let before = l.get(&granted).await;
    let db = rusqlite::Connection::open(dir.path().join("data").join("jit.db")).unwrap();
    let n = db
        .execute("DELETE FROM requests WHERE request_id = ?1", [&granted])
        .unwrap();
    assert_eq!(n, 1);

    // WHEN its requester and an admin read it
    let (s, v) = l
        .call(
            "GET",
            &format!("/requests/{granted}"),
            "alice@example.com",
            None,
        )
        .await;
    // THEN it is rebuilt from the trail, read-only, marked archived
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["archived"], true);
    let mut rebuilt = v.clone();
    rebuilt.as_object_mut().unwrap().remove("archived");
    assert_eq!(rebuilt, before, "the trail rebuilds the record exactly");
    let (s, v) = l
        .call(
            "GET",
            &format!("/requests/{granted}"),
            "sec@example.com",
            None,
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("EXPIRED")));
    // AND its audit trail still answers, snapshot first
    let (s, v) = l
        .call(
            "GET",
            &format!("/requests/{granted}/audit"),
            "alice@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let events = v["events"].as_array().unwrap();
    assert_eq!(events[0]["action"], "created");
    assert!(events[0]["snapshot"].is_object());
    assert_eq!(events.last().unwrap()["to"], "EXPIRED");
    assert!(
        !v.to_string().contains("taskToken"),
        "no task token in the trail"
    );
    // AND nothing can change it: a cancel finds no request
    let (s, _) = l
        .post(
            &format!("/requests/{granted}/cancel"),
            "alice@example.com",
            json!({}),
        )
        .await;
    assert_eq!(s, 404);
    l.app.shutdown().await;
}
