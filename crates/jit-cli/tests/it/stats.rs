//! `jit stats` and `jit list --all-users`: the real binary against an
//! in-process `jit-local` whose catalog names an admin group.

use crate::common;

use common::{Jit, KEY, Server};

#[test]
fn an_admin_sees_stats_tables_and_everyones_requests_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog.example.yaml"),
    )
    .unwrap();
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(&catalog, format!("{example}\nadmin_groups: [secops]\n")).unwrap();
    let mut server = Server::start_with(&dir.path().join("data"), &catalog, Default::default());

    // GIVEN an auto-approved grant of sre's
    let sre = Jit::new(dir.path(), "sre");
    sre.configure(&server.url(), KEY, "sre@example.com", "sre");
    let r = sre.json(&[
        "request",
        "OnCallReadOnly",
        "--duration",
        "30m",
        "--reason",
        "INC-1",
        "--wait",
        "--timeout",
        "30s",
    ]);
    assert_eq!(r["status"], "GRANTED", "{r}");
    let admin = Jit::new(dir.path(), "admin");
    admin.configure(&server.url(), KEY, "sec@example.com", "secops");

    // WHEN the admin asks for stats as JSON THEN it is the API's answer
    let v = admin.json(&["stats"]);
    assert_eq!(v["usage"]["grants"]["by"]["OnCallReadOnly"], 1, "{v}");
    assert_eq!(v["usage"]["approvals"]["by"]["auto"], 1, "{v}");
    // AND as text: sections, figures, what they count, and bars
    let since = (chrono::Utc::now() - chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    let text = admin.ok(&["stats", "--from", &since]);
    for needle in [
        "PATTERNS",
        "USAGE",
        "SECURITY",
        "Grants",
        "OnCallReadOnly",
        "counts: transitions to GRANTED",
        "█",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }

    // AND the admin lists everyone's requests, filtered
    let all = admin.json(&["list", "--all-users", "--entitlement", "OnCallReadOnly"]);
    assert_eq!(
        all["requests"][0]["requester"]["principal"], "sre@example.com",
        "{all}"
    );
    let none = admin.json(&["list", "--all-users", "--requester", "nobody@example.com"]);
    assert_eq!(none["requests"].as_array().unwrap().len(), 0, "{none}");

    // AND a requester who is not an admin is refused both
    let err = sre.fails(&["stats"]);
    assert!(err.contains("admin"), "{err}");
    let err = sre.fails(&["list", "--all-users"]);
    assert!(err.contains("admin"), "{err}");
    server.stop();
}
