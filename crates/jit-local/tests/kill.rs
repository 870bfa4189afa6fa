//! The real binary killed with SIGKILL while a request waits for approval,
//! then restarted on the same data: the stored task token still completes
//! the approval and the request is granted. (Waits and timers across a
//! restart are covered on a manual clock in `lifecycle.rs`.)

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::bin::{LIMIT, example_catalog, lines};

const KEY: &str = "kill-test-key-0123456789abcdef";

fn spawn(data: &std::path::Path, addr: &str) -> (common::bin::Running, std::process::ChildStdout) {
    common::bin::spawn(data, addr, KEY, &example_catalog())
}

fn start(data: &std::path::Path) -> (common::bin::Running, std::net::SocketAddr) {
    common::bin::start(data, KEY, &example_catalog())
}

fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    user: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    common::bin::call(addr, KEY, method, path, user, body)
}

fn wait_for_status(addr: std::net::SocketAddr, id: &str, want: &str) {
    common::bin::wait_for_status(addr, KEY, id, want)
}

#[test]
fn sigkill_while_waiting_for_approval_then_restart_and_approve() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start(dir.path());
    let body = r#"{"entitlement":"JIT-ElevatedAdminRole","duration":"1h","justification":"INC-9"}"#;
    let (code, v) = call(addr, "POST", "/requests", "alice@example.com", body);
    assert_eq!(code, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    wait_for_status(addr, &id, "APPROVAL_PENDING");
    drop(child); // SIGKILL: no shutdown code runs

    let (child, addr) = start(dir.path());
    let (code, v) = call(
        addr,
        "POST",
        &format!("/requests/{id}/approve"),
        "lead@example.com",
        "{}",
    );
    assert_eq!(code, 200, "{v}");
    wait_for_status(addr, &id, "GRANTED");
    drop(child);
}

/// stdout piped to a reader that has gone away (`jit-local | head -1`, a
/// supervisor that stopped reading): the banner and the per-request notices
/// fail to print, and the server keeps serving.
#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    // A free port, chosen up front: nothing can be read off the banner.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (mut child, stdout) = spawn(&dir.path().join("data"), &addr.to_string());
    drop(stdout);
    let deadline = Instant::now() + LIMIT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "jit-local exited while starting"
        );
        assert!(Instant::now() < deadline, "jit-local never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A request that needs an approver prints its approval email notice.
    let (code, v) = call(
        addr,
        "POST",
        "/requests",
        "alice@example.com",
        r#"{"entitlement":"JIT-ElevatedAdminRole","duration":"1h","justification":"INC-9"}"#,
    );
    assert_eq!(code, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    wait_for_status(addr, &id, "APPROVAL_PENDING");
    assert!(child.0.try_wait().unwrap().is_none(), "still running");
}

/// On `--addr 127.0.0.1:0` the banner's links and its `jit configure` hint
/// carry the port actually bound, not `:0`.
#[test]
fn the_banner_points_links_and_the_cli_at_the_bound_port() {
    let dir = tempfile::tempdir().unwrap();
    let (_running, stdout) = spawn(&dir.path().join("data"), "127.0.0.1:0");
    let rx = lines(stdout);
    let deadline = Instant::now() + LIMIT;
    let mut banner = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no CLI hint in the banner: {banner:#?}"));
        let done = line.trim_start().starts_with("CLI:");
        banner.push(line);
        if done {
            break;
        }
    }
    let addr = banner[0]
        .strip_prefix("jit-local listening on http://")
        .unwrap()
        .trim()
        .to_string();
    assert!(!addr.ends_with(":0"), "{addr}");
    let text = banner.join("\n");
    assert!(
        text.contains(&format!("approvals: http://{addr}/approvals/")),
        "{text}"
    );
    assert!(
        text.contains(&format!("--api-url http://{addr}")) && text.contains("--data-dir "),
        "{text}"
    );
}
