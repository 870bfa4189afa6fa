//! Everything in the data directory is its owner's only — files `0600`,
//! directories `0700` — whatever the umask: this test binary runs with
//! umask `000` (its own process, so no other test is affected: the one
//! test binary of this crate besides `it`), exercises
//! approvals, grants and revokes, and checks every file left behind.
#![cfg(unix)]

#[path = "it/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jit_local::Overrides;
use serde_json::json;

const KEY: &str = "file-modes-test-key-0123456789";

const CATALOG: &str = r#"
defaults:
  max_duration: 2h
  approvers: { emails: [lead@example.com] }
entitlements:
  - name: Admin
    role_arn: "arn:aws:iam::123456789012:role/JIT-Admin"
  - name: ReadOnly
    policy_name: ReadOnlyAccess
    account: "123456789012"
"#;

/// The widest umask there is, for this whole test process.
fn umask_000() {
    // SAFETY: umask swaps the process's file-creation mask; nothing else.
    unsafe {
        libc::umask(0);
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every path under `dir`, itself included.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Asserts the modes of everything under `data`, and that `expected`
/// (relative names) are among the files checked.
fn assert_private(data: &Path, expected: &[&str]) {
    let paths = walk(data);
    let wrong: Vec<String> = paths
        .iter()
        .filter_map(|p| {
            let want = if p.is_dir() { 0o700 } else { 0o600 };
            let got = mode(p);
            (got != want).then(|| format!("{} is {got:o}, not {want:o}", p.display()))
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    for name in expected {
        assert!(
            paths
                .iter()
                .any(|p| p.strip_prefix(data).unwrap() == Path::new(name)),
            "{name} was not created (found {paths:#?})"
        );
    }
}

#[tokio::test]
async fn every_file_in_the_data_dir_is_private_after_approvals_grants_and_revokes() {
    umask_000();
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).unwrap();
    // GIVEN a data dir left world-readable (by hand, or an older build)
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cfg = common::config(&data, &catalog, KEY);
    let l = common::Local::open(&cfg, common::fixed_clock(), Overrides::default(), KEY);
    // WHEN requests are approved (emails to the outbox), granted and revoked
    // in both grant modes
    for entitlement in ["Admin", "ReadOnly"] {
        let id = l.request("alice@example.com", entitlement, "1h").await;
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
            .post(
                &format!("/requests/{id}/revoke"),
                "alice@example.com",
                json!({"reason": "done"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["status"], "REVOKED");
    }
    assert!(
        std::fs::read_dir(data.join("outbox")).unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "eml")),
        "the approver's email is in the outbox"
    );
    // THEN every file is 0600 and every directory 0700, the databases'
    // WAL and shared-memory files (made by SQLite itself) included
    assert_private(
        &data,
        &[
            "jit.db",
            "jit.db-wal",
            "jit.db-shm",
            "engine.db",
            // (the engine's database is opened EXCLUSIVE: no -shm)
            "engine.db-wal",
            "link-secret",
            "iam-attachments.json",
            "iam-role-policies.json",
            "outbox",
            "outbox/notifications.jsonl",
        ],
    );
    l.app.shutdown().await;
    assert_private(&data, &["jit.db", "engine.db"]);
}

#[test]
fn the_binary_keeps_its_data_dir_private_including_the_api_key() {
    umask_000();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // GIVEN an API key file an older build left readable by everyone
    std::fs::write(data.join("api-key"), "old\n").unwrap();
    std::fs::set_permissions(data.join("api-key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    // WHEN the real binary starts on it (umask 000 inherited)
    let mut child = Command::new(env!("CARGO_BIN_EXE_jit-local"))
        .args(["--addr", "127.0.0.1:0", "--catalog"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog.example.yaml"))
        .arg("--data-dir")
        .arg(&data)
        .env("JIT_LOG", "warn")
        .env_remove("JIT_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let started = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.starts_with("  CLI:") => break true,
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(started, "jit-local started and printed its banner");
    // THEN the generated key replaced the old one, privately, and so is everything else
    assert_ne!(
        std::fs::read_to_string(data.join("api-key")).unwrap(),
        "old\n"
    );
    assert_private(
        &data,
        &["api-key", "link-secret", "jit.db", "engine.db", "outbox"],
    );
}
