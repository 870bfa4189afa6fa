//! The real `jit` binary end to end against an in-process `jit-local` on
//! 127.0.0.1:0 (local credential issuer). Every wait is bounded; config and
//! cache live in a temp dir per test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use jit_local::{App, Config};
use serde_json::Value;

const KEY: &str = "test-key-0123456789abcdef";
const LIMIT: Duration = Duration::from_secs(30);

struct Server {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    app: Option<Arc<App>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cfg = Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.to_path_buf(),
            catalog_path: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../config/catalog.example.yaml"),
            api_key: Some(KEY.into()),
            demo_mode: true,
            print_notifications: false,
            run_driver: true,
        };
        let (app, addr, stop, task) = rt.block_on(async {
            let (app, _) = App::from_config(&cfg).expect("app starts");
            let listener = tokio::net::TcpListener::bind(cfg.addr).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let app = Arc::new(app);
            let task = tokio::spawn(jit_local::serve(listener, app.clone(), async {
                let _ = rx.await;
            }));
            (app, addr, tx, task)
        });
        Server {
            rt,
            addr,
            app: Some(app),
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn stop(&mut self) {
        let (Some(stop), Some(task), Some(app)) =
            (self.stop.take(), self.task.take(), self.app.take())
        else {
            return;
        };
        let _ = stop.send(());
        self.rt.block_on(async {
            tokio::time::timeout(LIMIT, task)
                .await
                .expect("server stops")
                .unwrap()
                .unwrap();
            if let Ok(app) = Arc::try_unwrap(app) {
                tokio::time::timeout(LIMIT, app.shutdown())
                    .await
                    .expect("engine stops");
            }
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One user's `jit`: its own config and cache dirs.
struct Jit {
    config: PathBuf,
    cache: PathBuf,
}

impl Jit {
    fn new(root: &Path, name: &str) -> Jit {
        Jit {
            config: root.join(name).join("config"),
            cache: root.join(name).join("cache"),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jit"));
        // No ambient AWS credentials leak into a test.
        let home = self.config.parent().unwrap().join("home");
        cmd.args(args)
            .env("HOME", &home)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_SHARED_CREDENTIALS_FILE")
            .env("JIT_CONFIG_DIR", &self.config)
            .env("JIT_CACHE_DIR", &self.cache)
            .env_remove("AWS_PROFILE");
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("jit runs");
        // Bounded: a hung CLI fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("jit finished within 60s")
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "jit {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn configure(&self, url: &str, key: &str, user: &str, groups: &str) {
        let mut args = vec![
            "configure",
            "--api-url",
            url,
            "--api-key",
            key,
            "--local",
            "--user",
            user,
        ];
        if !groups.is_empty() {
            args.extend_from_slice(&["--groups", groups]);
        }
        self.ok(&args);
    }
}

/// Polls `jit show` until the request reaches `want` (bounded: 10 s).
fn wait_status(jit: &Jit, id: &str, want: &str) {
    let mut status = String::new();
    for _ in 0..100 {
        status = jit.json(&["show", id])["status"]
            .as_str()
            .unwrap()
            .to_string();
        if status == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{id} is {status}, not {want}");
}

#[test]
fn auto_approved_request_to_cached_credentials_env_and_exec() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"));
    let sre = Jit::new(dir.path(), "sre");
    sre.configure(&server.url(), KEY, "sre@example.com", "sre");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(sre.config.join("config.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the config holds the API key");
    }

    let r = sre.json(&[
        "request",
        "OnCallReadOnly",
        "--duration",
        "30m",
        "--reason",
        "INC-42",
        "--wait",
        "--timeout",
        "30s",
    ]);
    assert_eq!(r["status"], "GRANTED", "{r}");
    let id = r["requestId"].as_str().unwrap().to_string();

    // show and list see it.
    assert_eq!(sre.json(&["show", &id])["requestId"], id.as_str());
    let list = sre.json(&["list"]);
    assert!(
        list["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["requestId"] == id.as_str()),
        "{list}"
    );
    let text = sre.ok(&["show", &id]);
    assert!(
        text.contains("GRANTED") && text.contains("OnCallReadOnly"),
        "{text}"
    );

    let first = sre.ok(&["credentials", &id]);
    let creds: Value = serde_json::from_str(first.trim()).unwrap();
    assert_eq!(creds["Version"], 1);
    for k in [
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    ] {
        assert!(creds[k].is_string(), "{k} missing: {creds}");
    }
    let cached = sre.cache.join("credentials").join(format!("{id}.json"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cached).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the cache holds secrets");
    }

    // With the server gone, the cache still answers — and the same keys.
    server.stop();
    let second = sre.ok(&["credentials", &id]);
    assert_eq!(second, first);

    let env = sre.ok(&["env", &id]);
    let key_id = creds["AccessKeyId"].as_str().unwrap();
    assert!(
        env.lines()
            .any(|l| l.starts_with("export AWS_ACCESS_KEY_ID=") && l.contains(key_id)),
        "{env}"
    );
    assert!(env.contains("export AWS_SESSION_TOKEN="), "{env}");

    #[cfg(unix)]
    {
        let out = sre.ok(&[
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "printf %s \"$AWS_ACCESS_KEY_ID\"",
        ]);
        assert_eq!(out, key_id);
        let st = sre.run(&["exec", &id, "--", "sh", "-c", "exit 7"]);
        assert_eq!(st.status.code(), Some(7), "exec passes the exit code on");
    }

    // Credentials about to expire are not served from the cache: with the
    // server down, that is a one-line connection error.
    let mut stale = creds.clone();
    stale["Expiration"] =
        Value::String((chrono::Utc::now() + chrono::TimeDelta::minutes(4)).to_rfc3339());
    std::fs::write(&cached, stale.to_string()).unwrap();
    let out = sre.run(&["credentials", &id]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
}

#[test]
fn manual_approval_by_a_second_identity_then_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let alice = Jit::new(dir.path(), "alice");
    alice.configure(&server.url(), KEY, "alice@example.com", "");
    let lead = Jit::new(dir.path(), "lead");
    lead.configure(&server.url(), KEY, "lead@example.com", "platform-leads");

    let r = alice.json(&[
        "request",
        "JIT-ElevatedAdminRole",
        "--duration",
        "1h",
        "--reason",
        "INC-7",
    ]);
    let id = r["requestId"].as_str().unwrap().to_string();
    wait_status(&alice, &id, "APPROVAL_PENDING");

    // Nobody approves their own request: one line, non-zero.
    let out = alice.run(&["approve", &id]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("approver"), "{err}");

    let pending = lead.json(&["list", "--pending"]);
    assert!(
        pending["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["requestId"] == id.as_str()),
        "{pending}"
    );
    lead.json(&["approve", &id, "--reason", "ok"]);

    // The workflow grants shortly after the approval.
    wait_status(&alice, &id, "GRANTED");
    let creds: Value = serde_json::from_str(alice.ok(&["credentials", &id]).trim()).unwrap();
    assert!(creds["AccessKeyId"].is_string());

    let console = alice.ok(&["console", &id]);
    assert!(console.trim().starts_with("http"), "{console}");

    // An extension: asked by the requester, approved by the lead; the
    // window's end moves later.
    let before = alice.json(&["show", &id])["expiresAt"]
        .as_str()
        .unwrap()
        .to_string();
    alice.json(&["extend", &id, "--duration", "30m", "--reason", "longer"]);
    let mut after = before.clone();
    for _ in 0..100 {
        // The approval may race the workflow noticing the extension: retry.
        let out = lead.run(&["approve", &id, "--extension", "--reason", "ok"]);
        if out.status.success() {
            after = alice.json(&["show", &id])["expiresAt"]
                .as_str()
                .unwrap()
                .to_string();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..100 {
        if after != before {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        after = alice.json(&["show", &id])["expiresAt"]
            .as_str()
            .unwrap()
            .to_string();
    }
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    assert!(parse(&after) > parse(&before), "{before} -> {after}");

    let r = alice.json(&["revoke", &id, "--reason", "done"]);
    assert_eq!(r["status"], "REVOKED", "{r}");
}

#[test]
fn deny_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let alice = Jit::new(dir.path(), "alice");
    alice.configure(&server.url(), KEY, "alice@example.com", "");
    let lead = Jit::new(dir.path(), "lead");
    lead.configure(&server.url(), KEY, "lead@example.com", "platform-leads");
    let req = |why: &str| {
        let id = alice.json(&["request", "JIT-ElevatedAdminRole", "--reason", why])["requestId"]
            .as_str()
            .unwrap()
            .to_string();
        wait_status(&alice, &id, "APPROVAL_PENDING");
        id
    };
    let a = req("one");
    let d = lead.json(&["deny", &a, "--reason", "not now"]);
    assert_eq!(d["status"], "DENIED", "{d}");
    // --wait gives up after --timeout: plain status lines (no TTY), one
    // error line, non-zero.
    let out = alice.run(&[
        "request",
        "JIT-ElevatedAdminRole",
        "--reason",
        "three",
        "--wait",
        "--timeout",
        "1s",
        "--poll-interval",
        "0.2",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("APPROVAL_PENDING") || err.contains("REQUESTED"),
        "{err}"
    );
    assert!(err.contains("after 1s"), "{err}");
    assert!(
        !err.contains('\r'),
        "no spinner without a terminal: {err:?}"
    );

    let b = req("two");
    let c = alice.json(&["cancel", &b]);
    assert_eq!(c["status"], "CANCELLED", "{c}");
    // Cancelling again is refused with a pointer to `jit show`.
    let out = alice.run(&["cancel", &b]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn errors_are_one_line_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));

    // Not configured yet.
    let nobody = Jit::new(dir.path(), "nobody");
    let out = nobody.run(&["list"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("jit configure"), "{err}");

    // A bad API key.
    let bad = Jit::new(dir.path(), "bad");
    bad.configure(
        &server.url(),
        "wrong-key-0123456789abcdef",
        "sre@example.com",
        "sre",
    );
    let out = bad.run(&["list"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("API key"), "{err}");
    assert!(err.contains("jit configure --api-key"), "{err}");

    // Not an http(s) URL: refused at configure time, nothing saved.
    let ftp = Jit::new(dir.path(), "ftp");
    let out = ftp.run(&["configure", "--api-url", "ftp://x", "--api-key", KEY]);
    assert!(!out.status.success());
    assert!(!ftp.config.join("config.json").exists());

    // https to a plain-http server: the TLS handshake fails, on one line.
    let tls = Jit::new(dir.path(), "tls");
    tls.configure(
        &format!("https://{}", server.addr),
        KEY,
        "sre@example.com",
        "sre",
    );
    let out = tls.run(&["list"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach https://"), "{err}");

    // SigV4 without any AWS credentials: one line naming the fix.
    let iam = Jit::new(dir.path(), "iam");
    iam.ok(&[
        "configure",
        "--api-url",
        &server.url(),
        "--api-key",
        KEY,
        "--sigv4",
        "--region",
        "eu-west-1",
    ]);
    let out = iam.run(&["list"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("no AWS credentials for SigV4"), "{err}");

    // An unknown entitlement.
    let sre = Jit::new(dir.path(), "sre");
    sre.configure(&server.url(), KEY, "sre@example.com", "sre");
    let out = sre.run(&["request", "NoSuchThing", "--reason", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("case-sensitive"), "{err}");
}
