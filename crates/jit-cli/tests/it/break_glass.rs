//! `jit break-glass` and `jit review` end to end: the real binary against
//! an in-process `jit-local` with the example catalog (`BreakGlassAdmin`:
//! sre may break the glass, platform-leads review).

use crate::common;

use common::{Jit, KEY, Server};
use serde_json::Value;

const REASON: &str = "INC-9: primary database down, failing over to the replica";

fn ids(v: &Value) -> Vec<String> {
    v["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requestId"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn break_glass_grants_at_once_and_an_approver_reviews_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"));
    let sre = Jit::new(dir.path(), "sre");
    sre.configure(&server.url(), KEY, "sre@example.com", "sre");
    let lead = Jit::new(dir.path(), "lead");
    lead.configure(&server.url(), KEY, "lead@example.com", "");

    // GIVEN the CLI lists the command
    let help = sre.ok(&["--help"]);
    assert!(help.contains("break-glass"), "{help}");
    assert!(help.contains("review"), "{help}");

    // WHEN an SRE breaks the glass without an incident reference
    let err = sre.fails(&[
        "break-glass",
        "BreakGlassAdmin",
        "--reason",
        "the primary database is down, failing over",
    ]);
    // THEN it is refused, naming the field
    assert!(err.contains("justification"), "{err}");
    assert!(err.contains("incident reference"), "{err}");

    // WHEN they give one THEN it is granted in the same call, credentials cached
    let r = sre.json(&[
        "break-glass",
        "BreakGlassAdmin",
        "--reason",
        REASON,
        "--duration",
        "30m",
    ]);
    assert_eq!(r["status"], "GRANTED", "{r}");
    assert_eq!(r["breakGlass"]["incident"], "INC-9", "{r}");
    let id = r["requestId"].as_str().unwrap().to_string();
    let creds: Value = serde_json::from_str(sre.ok(&["credentials", &id]).trim()).unwrap();
    assert_eq!(creds["Version"], 1);
    let text = sre.ok(&["show", &id]);
    assert!(
        text.contains("break-glass   INC-9: self-approved, review pending"),
        "{text}"
    );

    // AND it waits for the leads' review, not the requester's
    assert_eq!(ids(&lead.json(&["list", "--reviews"])), vec![id.clone()]);
    assert!(ids(&sre.json(&["list", "--reviews"])).is_empty());
    let err = sre.fails(&[
        "review",
        &id,
        "--verdict",
        "justified",
        "--reason",
        "it was me",
    ]);
    assert!(err.contains("nobody reviews their own"), "{err}");

    // WHEN a lead reviews it THEN the review shows and nothing is pending
    let text = lead.ok(&[
        "review",
        &id,
        "--verdict",
        "not-justified",
        "--reason",
        "a replica restart would have done",
    ]);
    assert!(
        text.contains("INC-9: reviewed not-justified by lead@example.com"),
        "{text}"
    );
    assert!(ids(&lead.json(&["list", "--reviews"])).is_empty());
    // (a verdict the API does not take is refused before any call)
    let out = lead.run(&["review", &id, "--verdict", "maybe", "--reason", "x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("possible values: justified, not-justified"),
        "{err}"
    );
    server.stop();
}
