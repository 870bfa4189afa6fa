//! The real binary killed with SIGKILL while a request waits for approval,
//! then restarted on the same data: the stored task token still completes
//! the approval and the request is granted. (Waits and timers across a
//! restart are covered on a manual clock in `lifecycle.rs`.) Also the
//! binary's own start-up behaviour: a closed stdout, the banner, and the
//! test-only `--test-clock`.

use crate::common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::binary::{Client, LIMIT, Launch, banner, lines};

const KEY: &str = "kill-test-key-0123456789abcdef";

fn start(data: &Path) -> (common::binary::Running, Client) {
    let (child, addr, _) = Launch::example(KEY).start(data);
    (child, Client::new(addr, KEY))
}

fn wait_for_status(c: &Client, id: &str, want: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, v) = c.send("GET", &format!("/requests/{id}"), "lead@example.com", "");
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
    let (child, c) = start(dir.path());
    let body = r#"{"entitlement":"JIT-ElevatedAdminRole","duration":"1h","justification":"INC-9"}"#;
    let (code, v) = c.send("POST", "/requests", "alice@example.com", body);
    assert_eq!(code, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    wait_for_status(&c, &id, "APPROVAL_PENDING");
    child.kill(); // SIGKILL: no shutdown code runs

    let (child, c) = start(dir.path());
    let (code, v) = c.send(
        "POST",
        &format!("/requests/{id}/approve"),
        "lead@example.com",
        "{}",
    );
    assert_eq!(code, 200, "{v}");
    wait_for_status(&c, &id, "GRANTED");
    drop(child);
}

/// stdout piped to a reader that has gone away (`jit-local | head -1`, a
/// supervisor that stopped reading): the banner and the per-request notices
/// fail to print, and the server keeps serving.
#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    // A free port, chosen up front: nothing can be read off the banner.
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (mut child, stdout) =
        Launch::example(KEY).spawn(&dir.path().join("data"), &addr.to_string());
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
    let c = Client::new(addr, KEY);
    let (code, v) = c.send(
        "POST",
        "/requests",
        "alice@example.com",
        r#"{"entitlement":"JIT-ElevatedAdminRole","duration":"1h","justification":"INC-9"}"#,
    );
    assert_eq!(code, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    wait_for_status(&c, &id, "APPROVAL_PENDING");
    assert!(child.0.try_wait().unwrap().is_none(), "still running");
}

/// On `--addr 127.0.0.1:0` the banner's links and its `jit configure` hint
/// carry the port actually bound, not `:0`.
#[test]
fn the_banner_points_links_and_the_cli_at_the_bound_port() {
    let dir = tempfile::tempdir().unwrap();
    let (_running, stdout) = Launch::example(KEY).spawn(&dir.path().join("data"), "127.0.0.1:0");
    let rx = lines(stdout);
    let mut lines = vec![rx.recv_timeout(LIMIT).expect("a first banner line")];
    lines.extend(banner(&rx));
    let addr = lines[0]
        .strip_prefix("jit-local listening on http://")
        .unwrap()
        .trim()
        .to_string();
    assert!(!addr.ends_with(":0"), "{addr}");
    let text = lines.join("\n");
    assert!(
        text.contains(&format!("approvals: http://{addr}/approvals/")),
        "{text}"
    );
    assert!(
        text.contains(&format!("--api-url http://{addr}")) && text.contains("--data-dir "),
        "{text}"
    );
    assert!(!text.contains("TEST CLOCK"), "{text}");
}

fn advance(c: &Client, body: &str) -> (u16, serde_json::Value) {
    c.send("POST", "/_test/clock/advance", "", body)
}

fn now_of(v: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v["now"].as_str().unwrap_or_else(|| panic!("{v}")))
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// `--test-clock`: a grant's window ends when the clock is moved past it,
/// without waiting; the clock survives `kill -9` (it never goes back), and
/// the banner says loudly that it is on.
#[test]
fn the_test_clock_ends_windows_on_demand_and_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut launch = Launch::example(KEY);
    launch.args.push("--test-clock".into());
    let (child, addr, rx) = launch.start(dir.path());
    let text = banner(&rx).join("\n");
    assert!(text.contains("!!! TEST CLOCK"), "{text}");
    let c = Client::new(addr, KEY);

    // GIVEN an auto-approved 15-minute grant
    let (code, v) = c
        .try_send(
            "POST",
            "/requests",
            "sre@example.com",
            "sre",
            r#"{"entitlement":"OnCallReadOnly","duration":"15m","justification":"INC-9"}"#,
        )
        .unwrap();
    assert_eq!(code, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    wait_for_status(&c, &id, "GRANTED");

    // Bad advances are refused, naming the field; the key is required
    for body in [r#"{"seconds": 0}"#, r#"{"seconds": "15m"}"#, "{}"] {
        let (code, v) = advance(&c, body);
        assert_eq!(
            (code, &v["error"]["field"]),
            (400, &"seconds".into()),
            "{body}: {v}"
        );
    }
    let stranger = Client::new(addr, "not-the-key-0123456789");
    let (code, _) = advance(&stranger, r#"{"seconds": 60}"#);
    assert_eq!(code, 403);

    // WHEN the clock moves past the window
    let (code, v) = advance(&c, r#"{"seconds": 960}"#);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["offsetSeconds"], 960);
    let moved = now_of(&v);
    // THEN the workflow revokes at once (the engine's driver was woken)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, h) = c.send(
            "GET",
            &format!("/requests/{id}/history"),
            "lead@example.com",
            "",
        );
        let ended = h["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["type"] == "ExecutionSucceeded"));
        if ended {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the expiry Wait never fired: {h}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for_status(&c, &id, "EXPIRED");

    // AND after kill -9 and a restart the clock is still ahead
    child.kill();
    let (child, addr, rx) = launch.start(dir.path());
    let text = banner(&rx).join("\n");
    assert!(text.contains("system's + 960s"), "{text}");
    let c = Client::new(addr, KEY);
    let (code, v) = advance(&c, r#"{"seconds": 1}"#);
    assert_eq!(code, 200, "{v}");
    assert!(now_of(&v) > moved, "went back: {v} after {moved}");
    assert_eq!(v["offsetSeconds"], 961);
    drop(child);
}

/// The route does not exist without the flag, and the flag is refused
/// outside demo mode.
#[test]
fn the_test_clock_is_off_by_default_and_refused_without_demo_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (child, c) = start(&dir.path().join("a"));
    let (code, v) = advance(&c, r#"{"seconds": 60}"#);
    assert_eq!(
        (code, &v["error"]["code"]),
        (404, &"route_not_found".into()),
        "{v}"
    );
    drop(child);

    let mut launch = Launch::example(KEY);
    launch
        .args
        .extend(["--test-clock".into(), "--demo-mode".into(), "false".into()]);
    let (mut child, _stdout) = launch.spawn(&dir.path().join("b"), "127.0.0.1:0");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "jit-local started with a test clock and no demo mode"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(2));
}

/// The binary as a newcomer starts it: no flags but the address and data
/// dir, from a directory that is not the repository.
fn start_plain(
    data: &Path,
    cwd: &Path,
) -> (
    common::binary::Running,
    SocketAddr,
    Vec<String>,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_jit-local"))
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .current_dir(cwd)
        .env_remove("JIT_API_KEY")
        .env_remove("JIT_CATALOG")
        .env("JIT_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines(child.stdout.take().unwrap());
    let child = common::binary::Running(child);
    // Log lines (JIT_LOG=info) may come before the banner.
    let deadline = Instant::now() + LIMIT;
    let addr = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the banner's first line");
        if let Some(a) = line.strip_prefix("jit-local listening on http://") {
            break a.trim().parse().unwrap();
        }
    };
    let banner = banner(&rx);
    (child, addr, banner, rx)
}

#[test]
fn started_anywhere_it_keeps_its_key_counts_its_work_and_logs_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();

    // First start, outside the repository, no --catalog and no key: the
    // built-in example catalog and a new key, kept in the data dir.
    let (child, addr, first, rx) = start_plain(&data, &elsewhere);
    let text = first.join("\n");
    assert!(
        text.contains("config/catalog.example.yaml (built in) (4 entitlements"),
        "{text}"
    );
    assert!(text.contains("(new; kept in"), "{text}");
    let key = std::fs::read_to_string(data.join("api-key"))
        .unwrap()
        .trim()
        .to_string();
    assert!(text.contains(&key), "{text}");
    let c = Client::new(addr, &key);

    // One request waiting for a decision, one granted (a timer until expiry).
    let (s, waiting) = c.send(
        "POST",
        "/requests",
        "alice@example.com",
        r#"{"entitlement":"JIT-ElevatedAdminRole","duration":"30m","justification":"INC-1"}"#,
    );
    assert_eq!(s, 201, "{waiting}");
    let (s, granted) = c
        .try_send(
            "POST",
            "/requests",
            "sre@example.com",
            "sre",
            r#"{"entitlement":"OnCallReadOnly","duration":"30m","justification":"INC-2"}"#,
        )
        .unwrap();
    assert_eq!(s, 201, "{granted}");
    wait_for_status(
        &c,
        waiting["requestId"].as_str().unwrap(),
        "APPROVAL_PENDING",
    );
    wait_for_status(&c, granted["requestId"].as_str().unwrap(), "GRANTED");

    // A wrong key is refused, and the log line says so with the code, in
    // plain text (stdout is a pipe, not a terminal: no colour codes).
    let wrong = Client::new(addr, "not-the-key-0123456789");
    let (s, _) = wrong.send("GET", "/requests", "alice@example.com", "");
    assert_eq!(s, 403);
    let (s, _) = c.send(
        "POST",
        "/requests",
        "",
        r#"{"entitlement":"OnCallReadOnly","justification":"INC-3"}"#,
    );
    assert_eq!(s, 403);
    let deadline = Instant::now() + LIMIT;
    let mut refusals = vec![];
    while refusals.len() < 2 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("refusals logged: {refusals:#?}"));
        assert!(
            !line.contains('\u{1b}'),
            "no ANSI codes in a piped log: {line:?}"
        );
        if line.contains("request refused") {
            refusals.push(line);
        }
    }
    assert!(
        refusals[0].contains("code=\"forbidden\"") || refusals[0].contains("code=forbidden"),
        "{refusals:#?}"
    );
    assert!(refusals[1].contains("unauthenticated"), "{refusals:#?}");
    drop(rx);
    child.kill();

    // Restarted on the same data dir: the same key, and the banner counts
    // what the engine resumed.
    let (_child, addr, second, _rx) = start_plain(&data, &elsewhere);
    let text = second.join("\n");
    assert!(
        text.contains(&format!("API key:   {key}  (kept from an earlier start")),
        "{text}"
    );
    assert!(
        text.contains("2 executions resumed: 1 waiting for a decision, 1 on a timer, 0 running"),
        "{text}"
    );
    let (s, v) = Client::new(addr, &key).send("GET", "/requests", "alice@example.com", "");
    assert_eq!(s, 200, "the old key still works: {v}");
}

#[test]
fn a_call_naming_nobody_is_told_to_send_x_jit_user() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, c) = start(&dir.path().join("data"));
    let (s, v) = c.send(
        "POST",
        "/requests",
        "",
        r#"{"entitlement":"OnCallReadOnly","justification":"INC-1"}"#,
    );
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "unauthenticated");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("x-jit-user"), "{m}");
    assert!(!m.contains("IAM"), "not the deployed API's advice: {m}");
}
