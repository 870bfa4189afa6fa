//! The real `jit-local` binary as a child process, and a plain HTTP/1.1
//! client for it over loopback: the tests that kill the process (`kill.rs`,
//! `chaos.rs`) start and talk to it only through these.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a start or a single call may take before the test gives up.
pub const LIMIT: Duration = Duration::from_secs(30);

/// The running binary; killed (SIGKILL) and reaped when dropped, whatever
/// the test did.
pub struct Running(pub Child);

impl Running {
    /// `kill -9`: no shutdown code runs.
    pub fn kill(self) {
        drop(self)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How the binary is started.
#[derive(Clone, Debug)]
pub struct Launch {
    pub key: String,
    pub catalog: PathBuf,
    /// More flags (`--test-clock`, ...).
    pub args: Vec<String>,
    /// Where its stderr (its log, `JIT_LOG=warn`) is appended; discarded
    /// when `None`.
    pub log: Option<PathBuf>,
}

impl Launch {
    /// The example catalog from `config/`.
    pub fn example(key: &str) -> Launch {
        Launch {
            key: key.to_string(),
            catalog: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../config/catalog.example.yaml"),
            args: vec![],
            log: None,
        }
    }

    /// The binary on `addr` over `data`, with its stdout piped (read it, or
    /// drop it).
    pub fn spawn(&self, data: &Path, addr: &str) -> (Running, ChildStdout) {
        let stderr = match &self.log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap(),
            ),
            None => Stdio::null(),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_jit-local"))
            .args(["--addr", addr, "--api-key", &self.key, "--catalog"])
            .arg(&self.catalog)
            .arg("--data-dir")
            .arg(data)
            .args(&self.args)
            .env("JIT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        (Running(child), stdout)
    }

    /// Starts it on an ephemeral loopback port and waits for the banner's
    /// first line; returns the bound address and the rest of its stdout
    /// (drained in the background whether read or not).
    pub fn start(&self, data: &Path) -> (Running, SocketAddr, Receiver<String>) {
        let (mut child, stdout) = self.spawn(data, "127.0.0.1:0");
        let rx = lines(stdout);
        let deadline = Instant::now() + LIMIT;
        loop {
            let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => line,
                Err(_) => {
                    let exit = child.0.try_wait().ok().flatten();
                    panic!("jit-local did not start within {LIMIT:?} (exit: {exit:?})")
                }
            };
            if let Some(a) = line.strip_prefix("jit-local listening on http://") {
                return (child, a.trim().parse().unwrap(), rx);
            }
        }
    }
}

/// The lines of `stdout`, as they come. The reader keeps draining after the
/// receiver is dropped, so the server never blocks on a full pipe.
pub fn lines(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The banner after its first line, up to and including the `CLI:` hint.
pub fn banner(rx: &Receiver<String>) -> Vec<String> {
    let deadline = Instant::now() + LIMIT;
    let mut banner = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no CLI hint in the banner: {banner:#?}"));
        let done = line.trim_start().starts_with("CLI:");
        banner.push(line);
        if done {
            return banner;
        }
    }
}

/// A plain HTTP/1.1 client: one fresh connection per call
/// (`connection: close`), so a call's outcome is exactly what came back on
/// its own socket.
#[derive(Clone, Debug)]
pub struct Client {
    pub addr: SocketAddr,
    pub key: String,
    /// Connect, write and read timeout of each call.
    pub timeout: Duration,
}

impl Client {
    pub fn new(addr: SocketAddr, key: &str) -> Client {
        Client {
            addr,
            key: key.to_string(),
            timeout: LIMIT,
        }
    }

    /// One call as `user` (none when empty) in `groups` (none when empty);
    /// status and JSON body (`Null` when the body is not JSON), or the I/O
    /// error that ended it (a killed server, a timeout).
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        user: &str,
        groups: &str,
        body: &str,
    ) -> std::io::Result<(u16, Value)> {
        let mut s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nx-api-key: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.addr,
            self.key,
            body.len()
        );
        if !user.is_empty() {
            head.push_str(&format!("x-jit-user: {user}\r\n"));
        }
        if !groups.is_empty() {
            head.push_str(&format!("x-jit-groups: {groups}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(body);
        s.write_all(head.as_bytes())?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let code = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("no HTTP status line in {resp:?}"),
                )
            })?;
        let json = resp.split("\r\n\r\n").nth(1).unwrap_or("");
        Ok((code, serde_json::from_str(json).unwrap_or(Value::Null)))
    }

    /// [`Client::try_send`] as `user`, panicking on an I/O error.
    pub fn send(&self, method: &str, path: &str, user: &str, body: &str) -> (u16, Value) {
        self.try_send(method, path, user, "", body)
            .unwrap_or_else(|e| panic!("{method} {path} as {user}: {e}"))
    }
}
