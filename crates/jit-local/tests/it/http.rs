//! `jit-local` over real HTTP on loopback: the gateway's checks, the seed's
//! curl example, bad input, persistence across restarts, and the binary.
//! Every server binds 127.0.0.1:0 and is stopped by the test; every wait is
//! bounded.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jit_local::{App, Config};
use serde_json::{Value, json};

const KEY: &str = "test-key-0123456789abcdef";
const LIMIT: Duration = Duration::from_secs(30);

fn catalog_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog.example.yaml")
}

struct Server {
    addr: SocketAddr,
    app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(data_dir: &Path) -> Server {
        let cfg = Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.to_path_buf(),
            catalog: catalog_path().into(),
            api_key: Some(KEY.into()),
            demo_mode: true,
            print_notifications: false,
            run_driver: true,
            max_backlog: jit_local::DEFAULT_MAX_BACKLOG,
        };
        let (app, _) = App::from_config(&cfg).expect("app starts");
        let listener = tokio::net::TcpListener::bind(cfg.addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let app = Arc::new(app);
        let task = tokio::spawn(jit_local::serve(listener, app.clone(), async {
            let _ = rx.await;
        }));
        Server {
            addr,
            app,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
        let app = Arc::try_unwrap(self.app)
            .unwrap_or_else(|_| panic!("the server kept a reference to the app"));
        tokio::time::timeout(LIMIT, app.shutdown())
            .await
            .expect("engine driver stops");
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (u16, Value) {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).unwrap();
        let resp = tokio::time::timeout(LIMIT, client.request(req))
            .await
            .expect("answer in time")
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).expect("JSON answer"))
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");
const API_KEY: (&str, &str) = ("x-api-key", KEY);

fn seed() -> String {
    json!({
        "requester": "alice@example.com",
        "role": "JIT-ElevatedAdminRole",
        "roleArn": "arn:aws:iam::123456789012:role/JIT-ElevatedAdminRole",
        "duration": 900,
        "simulateApproval": true
    })
    .to_string()
}

#[tokio::test]
async fn the_seeds_curl_example_and_every_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;

    // The seed's body, unchanged, with the API key.
    let (status, v) = s
        .call("POST", "/request-access", &[JSON, API_KEY], seed())
        .await;
    assert_eq!(status, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    assert_eq!(v["requester"]["via"], "jit-local-api-key");
    let (status, got) = s
        .call("GET", &format!("/requests/{id}"), &[API_KEY], "")
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["requestId"], id.as_str());

    // Missing or wrong API key: 403 before anything else.
    for headers in [
        vec![JSON],
        vec![JSON, ("x-api-key", "wrong-key-0123456789")],
    ] {
        let (status, v) = s.call("POST", "/request-access", &headers, seed()).await;
        assert_eq!(status, 403, "{v}");
        assert_eq!(v["error"]["field"], "x-api-key");
    }
    let mut ten_years: Value = serde_json::from_str(&seed()).unwrap();
    ten_years["duration"] = json!(10 * 365 * 86_400);
    let mut unknown: Value = serde_json::from_str(&seed()).unwrap();
    unknown["role"] = json!("AdministratorAccess");
    unknown["roleArn"] = Value::Null;
    let huge = format!("{{\"role\": \"{}\"}}", "x".repeat(1024 * 1024));
    let cases: Vec<(String, u16, Option<&str>)> = vec![
        ("{\"requester\": ".to_string(), 400, None),
        (unknown.to_string(), 400, Some("role")),
        (ten_years.to_string(), 400, Some("duration")),
        (huge, 413, None),
    ];
    for (body, want, field) in cases {
        let (status, v) = s
            .call("POST", "/request-access", &[JSON, API_KEY], body)
            .await;
        assert_eq!(status, want, "{v}");
        assert_eq!(v["error"]["field"].as_str(), field, "{v}");
    }
    let (status, _) = s
        .call(
            "POST",
            "/request-access",
            &[("content-type", "text/plain"), API_KEY],
            seed(),
        )
        .await;
    assert_eq!(status, 415);

    // Nothing was stored for any refusal: alice has exactly the one request.
    let (status, list) = s
        .call(
            "GET",
            "/requests",
            &[API_KEY, ("x-jit-user", "alice@example.com")],
            "",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["requests"].as_array().unwrap().len(), 1, "{list}");
    s.stop().await;
}

#[tokio::test]
async fn local_identity_headers_and_persistence_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let sre = [
        JSON,
        API_KEY,
        ("x-jit-user", "bob@example.com"),
        ("x-jit-groups", "sre, oncall"),
    ];
    let body =
        json!({"entitlement": "OnCallReadOnly", "duration": "30m", "justification": "pager"})
            .to_string();
    let (status, v) = s.call("POST", "/requests", &sre, body).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["requester"]["principal"], "bob@example.com");
    assert_eq!(v["requester"]["authenticatedBy"], "local");
    assert_eq!(v["requester"]["groups"], json!(["sre", "oncall"]));
    let id = v["requestId"].as_str().unwrap().to_string();
    s.stop().await;

    let s = Server::start(dir.path()).await;
    let (status, got) = s
        .call(
            "GET",
            &format!("/requests/{id}"),
            &[API_KEY, ("x-jit-user", "bob@example.com")],
            "",
        )
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["duration"], 1800);
    let (status, _) = s
        .call(
            "GET",
            &format!("/requests/{id}"),
            &[API_KEY, ("x-jit-user", "caf\u{e9}@example.com")],
            "",
        )
        .await;
    assert_eq!(status, 400);
    s.stop().await;
}

/// The binary as the README runs it: prints where it listens, serves, and a
/// broken catalog stops it with the file, entry and field named.
#[test]
fn the_binary_serves_and_refuses_a_broken_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "policies:\n  - policy_name: \"AWSReadOnlyAccess\"\n    aws_account_id: \"12345\"\n    request_name: \"Read Only Access\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jit-local"))
        .args(["--addr", "127.0.0.1:0", "--catalog"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "bad.yaml: policies entry 1 (`Read Only Access`): `aws_account_id` must be 12 digits"
        ),
        "{err}"
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_jit-local"))
        .args(["--addr", "127.0.0.1:0", "--catalog"])
        .arg(catalog_path())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
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
    let mut lines = vec![];
    let deadline = std::time::Instant::now() + LIMIT;
    while !lines.iter().any(|l: &String| l.contains("workflow:")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = lines.join("\n");
    assert!(
        text.contains("jit-local listening on http://127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("API key:"), "{text}");
    assert!(text.contains("demo mode: ON"), "{text}");
    let key = std::fs::read_to_string(dir.path().join("data/api-key")).unwrap();
    assert_eq!(key.trim().len(), 32, "a generated 128-bit key");
    assert!(text.contains(key.trim()), "the generated key is printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/api-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
