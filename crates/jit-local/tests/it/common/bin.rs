//! The real `jit-local` binary: a server to start (and SIGKILL), called
//! over loopback HTTP, and its subcommands run to completion — each bounded
//! by [`LIMIT`].

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any one step (start, a call, a subcommand) may take.
pub const LIMIT: Duration = Duration::from_secs(30);

/// The example catalog the binary is started with unless told otherwise.
pub fn example_catalog() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog.example.yaml")
}

/// The running binary; killed (SIGKILL) and reaped when dropped, whatever
/// the test did.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real binary on `addr` with its stdout piped (read it, or drop it).
pub fn spawn(
    data: &Path,
    addr: &str,
    key: &str,
    catalog: &Path,
) -> (Running, std::process::ChildStdout) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jit-local"))
        .args(["--addr", addr, "--api-key", key, "--catalog"])
        .arg(catalog)
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
pub fn lines(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Starts the binary on a free loopback port; returns once it listens.
pub fn start(data: &Path, key: &str, catalog: &Path) -> (Running, SocketAddr) {
    let (child, stdout) = spawn(data, "127.0.0.1:0", key, catalog);
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

/// One API call as `user`; status and JSON body.
pub fn call(
    addr: SocketAddr,
    key: &str,
    method: &str,
    path: &str,
    user: &str,
    body: &str,
) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nx-api-key: {key}\r\nx-jit-user: {user}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = resp.split("\r\n\r\n").nth(1).unwrap_or("{}");
    (code, serde_json::from_str(json).unwrap_or(Value::Null))
}

/// Polls the request (as the lead) until its status is `want`.
pub fn wait_for_status(addr: SocketAddr, key: &str, id: &str, want: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, v) = call(
            addr,
            key,
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

/// What a finished subcommand said.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// Runs `jit-local <args>` to completion (killed after [`LIMIT`]).
pub fn run<S: AsRef<OsStr>>(args: &[S]) -> Ran {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jit-local"))
        .args(args)
        .env("JIT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut o, mut e) = (String::new(), String::new());
        let _ = out.read_to_string(&mut o);
        let _ = err.read_to_string(&mut e);
        (o, e)
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "jit-local {:?} did not finish within {LIMIT:?}",
                args.iter()
                    .map(|a| a.as_ref().to_owned())
                    .collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = reader.join().unwrap();
    Ran {
        code: status.code(),
        stdout,
        stderr,
    }
}
