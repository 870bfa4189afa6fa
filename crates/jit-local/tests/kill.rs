//! The real binary killed with SIGKILL while a request waits for approval,
//! then restarted on the same data: the stored task token still completes
//! the approval and the request is granted. (Waits and timers across a
//! restart are covered on a manual clock in `lifecycle.rs`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const KEY: &str = "kill-test-key-0123456789abcdef";
const LIMIT: Duration = Duration::from_secs(30);

/// The running binary; killed (SIGKILL) and reaped when dropped, whatever
/// the test did.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real binary on `addr` with its stdout piped (read it, or drop it).
fn spawn(data: &Path, addr: &str) -> (Running, std::process::ChildStdout) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jit-local"))
        .args(["--addr", addr, "--api-key", KEY, "--catalog"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog.example.yaml"))
        .arg("--data-dir")
        .arg(data)
        .env("JIT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    (Running(child), stdout)
}

/// The lines of `stdout`, as they come.
fn lines(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

fn start(data: &Path) -> (Running, SocketAddr) {
    let (child, stdout) = spawn(data, "127.0.0.1:0");
    let rx = lines(stdout);
    let deadline = Instant::now() + LIMIT;
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("jit-local starts");
        if let Some(a) = line.strip_prefix("jit-local listening on http://") {
            return (child, a.trim().parse().unwrap());
        }
    }
}

fn call(addr: SocketAddr, method: &str, path: &str, user: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nx-api-key: {KEY}\r\nx-jit-user: {user}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = resp.split("\r\n\r\n").nth(1).unwrap_or("{}");
    (code, serde_json::from_str(json).unwrap_or(Value::Null))
}

fn wait_for_status(addr: SocketAddr, id: &str, want: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, v) = call(
            addr,
            "GET",
            &format!("/requests/{id}"),
            "lead@example.com",
            "",
        );
        if v["status"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never became {want}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
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
