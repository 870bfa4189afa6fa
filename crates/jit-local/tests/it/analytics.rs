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

/// The Python with DuckDB that `scripts/test` installs (`JIT_TEST_PYTHON`).
fn duckdb_python() -> String {
    match std::env::var("JIT_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!(
            "JIT_TEST_PYTHON is not set: this test runs the Athena SQL with DuckDB from PyPI. \
             Run ./scripts/test, which installs it and sets it (e.g. `./scripts/test --test analytics`)."
        ),
    }
}

fn run_sql(root: &Path, query: &str, from: &str, to: &str) -> Vec<Value> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(duckdb_python())
        .arg(repo.join("athena/run_duckdb.py"))
        .arg(root)
        .arg(repo.join("athena").join(query))
        .args([from, to])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn the_athena_queries_give_the_same_figures_on_the_exported_trail() {
    // GIVEN the mix, its trail read back by time and exported as the
    // audit-export Lambda writes it to S3
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    the_mix(&l).await;
    let mut events: Vec<jit_core::AuditEvent> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/audit?from=2027-01-15&to=2027-01-16&limit=7".to_string(),
            Some(c) => format!("/audit?from=2027-01-15&to=2027-01-16&limit=7&cursor={c}"),
        };
        let (s, v) = l.call("GET", &path, "sec@example.com", None).await;
        assert_eq!(s, 200, "{v}");
        events.extend(
            serde_json::from_value::<Vec<jit_core::AuditEvent>>(v["events"].clone()).unwrap(),
        );
        match v["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let export = dir.path().join("export");
    for (key, body) in jit_core::export::objects(&events) {
        let file = export.join(key);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, body).unwrap();
    }
    let (_, report) = l
        .call(
            "GET",
            "/analytics?from=2027-01-15&to=2027-01-16",
            "sec@example.com",
            None,
        )
        .await;

    // WHEN DuckDB runs the Athena queries over the files
    let rows = run_sql(&export, "figures.sql", "2027-01-15", "2027-01-16");
    let ttd = run_sql(&export, "time_to_decision.sql", "2027-01-15", "2027-01-16");

    // THEN every figure they compute is the API's, key by key
    let mut by_figure: std::collections::BTreeMap<String, serde_json::Map<String, Value>> =
        Default::default();
    for r in &rows {
        by_figure
            .entry(r["figure"].as_str().unwrap().to_string())
            .or_default()
            .insert(r["key"].as_str().unwrap().to_string(), r["value"].clone());
    }
    let as_f64 = |m: &serde_json::Map<String, Value>| -> Vec<(String, f64)> {
        m.iter()
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
            .collect()
    };
    let mut checked = 0;
    for (figure, got) in &by_figure {
        let (section, name) = figure.split_once('.').unwrap();
        let f = &report[section][name];
        let want: serde_json::Map<String, Value> = match name {
            "rubberStamping" => f["byApprover"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, r)| r["withinSecs"].as_u64() > Some(0))
                .map(|(k, r)| (k.clone(), r["withinSecs"].clone()))
                .collect(),
            "approverConcentration" => f["approvals"].as_object().unwrap().clone(),
            _ => f["by"].as_object().cloned().unwrap_or_default(),
        };
        assert_eq!(as_f64(got), as_f64(&want), "{figure}");
        checked += 1;
    }
    // (figures with nothing to count have no rows; those with some all do)
    for (section, name) in [
        ("patterns", "requestsByEntitlement"),
        ("patterns", "requestsByRequester"),
        ("patterns", "durationAskedHours"),
        ("usage", "grants"),
        ("usage", "elevatedHours"),
        ("usage", "credentialsIssued"),
        ("usage", "approvals"),
        ("security", "denied"),
        ("security", "approvalTimeouts"),
        ("security", "ineligible"),
        ("security", "selfApproval"),
        ("security", "rubberStamping"),
        ("security", "approverConcentration"),
    ] {
        assert!(
            by_figure.contains_key(&format!("{section}.{name}")),
            "{section}.{name} has no rows"
        );
    }
    assert!(checked >= 13);
    for r in &ttd {
        let key = r["key"].as_str().unwrap();
        let want = &report["patterns"]["timeToDecision"][r["breakdown"].as_str().unwrap()][key];
        assert_eq!(r["count"], want["count"], "{r}");
        assert_eq!(r["p50_secs"], want["p50Secs"], "{r}");
        assert_eq!(r["p90_secs"], want["p90Secs"], "{r}");
    }
    assert_eq!(ttd.len(), 2, "{ttd:?}");

    // AND the template's named queries are these files, word for word
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let template = std::fs::read_to_string(repo.join("template.yaml")).unwrap();
    let squeeze = |s: &str| {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let template_lines = squeeze(&template);
    for q in ["figures.sql", "time_to_decision.sql"] {
        let sql = std::fs::read_to_string(repo.join("athena").join(q)).unwrap();
        assert!(
            template_lines.contains(&squeeze(&sql)),
            "template.yaml does not hold athena/{q}"
        );
    }
    // AND the Glue table has a column for every exported field
    let line = serde_json::to_value(jit_core::export::line(&events[0])).unwrap();
    for field in line.as_object().unwrap().keys() {
        assert!(
            template.contains(&format!("- {{ Name: {field}, Type: ")),
            "Glue column {field}"
        );
    }
    l.app.shutdown().await;
}
