//! The confirmation page in a real browser: headless Chromium (Debian's
//! `chromium`, driven over WebDriver through `chromedriver`) opens the link
//! from the approver's email, types a reason, presses Approve and sees the
//! outcome; the request then reaches GRANTED.
//!
//! `scripts/install-browser` installs both (CI runs it). Without them the
//! test says so and does nothing — unless `JIT_REQUIRE_BROWSER=1` (set by
//! CI), where a missing browser fails it. Everything binds 127.0.0.1, each
//! wait is bounded, and the browser and driver are stopped at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

pub(crate) const KEY: &str = "browser-test-key-0123456789";
/// The W3C WebDriver element reference key.
pub(crate) const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
pub(crate) const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

pub(crate) fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

pub(crate) use crate::common::served::HttpClient;

pub(crate) async fn call(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        client.request(req.body(Full::new(body)).unwrap()),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} {url} timed out"))
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The driver process; killed (and reaped) however the test ends.
pub(crate) struct Driver(pub(crate) Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) struct WebDriver {
    pub(crate) client: HttpClient,
    pub(crate) base: String,
    pub(crate) session: String,
}

impl WebDriver {
    pub(crate) async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let (status, v) = call(&self.client, method, &url, &[], body).await;
        assert_eq!(status, 200, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    pub(crate) async fn element(&self, css: &str) -> String {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no {css}: {v}"))
            .to_string()
    }

    pub(crate) async fn text_of(&self, css: &str) -> String {
        let id = self.element(css).await;
        self.cmd("GET", &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn emailed_link(outbox: &Path, to: &str) -> Option<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(outbox)
        .ok()?
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files.iter().rev().find_map(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        if !text.contains(&format!("\r\nTo: {to}\r\n")) {
            return None;
        }
        text.lines()
            .find(|l| l.starts_with("http://127.0.0.1:") && l.contains("/approvals/"))
            .map(|l| l.trim().to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emailed_link_is_approved_in_headless_chromium() {
    let chromium = find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
    let chromedriver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        assert!(
            std::env::var("JIT_REQUIRE_BROWSER").is_err(),
            "JIT_REQUIRE_BROWSER is set but chromium/chromedriver are missing: run scripts/install-browser"
        );
        eprintln!("SKIPPED: chromium and chromedriver are not installed (scripts/install-browser)");
        return;
    };
    tokio::time::timeout(Duration::from_secs(180), run(&chromium, &chromedriver))
        .await
        .expect("the browser test finishes within 3 minutes");
}

async fn run(chromium: &Path, chromedriver: &Path) {
    // GIVEN jit-local serving on loopback, its links pointing at itself
    let served = crate::common::served::Served::start("", KEY).await;
    let (client, api) = (served.client.clone(), served.api.clone());
    let auth = [("x-api-key", KEY), ("x-jit-user", "alice@example.com")];

    // AND a request waiting for approval, whose approver was emailed
    let (s, v) = call(
        &client,
        "POST",
        &format!("{api}/requests"),
        &auth,
        Some(json!({"entitlement": "JIT-ElevatedAdminRole", "duration": "30m", "justification": "INC-77 <script>alert(1)</script>"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    let status = |client: HttpClient, url: String| async move {
        let (_, v) = call(
            &client,
            "GET",
            &url,
            &[("x-api-key", KEY), ("x-jit-user", "alice@example.com")],
            None,
        )
        .await;
        v["status"].as_str().unwrap_or_default().to_string()
    };
    let request_url = format!("{api}/requests/{id}");
    let outbox = served.data_dir.join("outbox");
    let mut link = None;
    for _ in 0..200 {
        if let Some(l) = emailed_link(&outbox, "lead@example.com") {
            link = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let link = link.expect("the approver's email arrived in the outbox");
    assert!(
        link.starts_with(&format!("{api}/approvals/{id}?")),
        "{link}"
    );
    assert_eq!(
        status(client.clone(), request_url.clone()).await,
        "APPROVAL_PENDING"
    );

    // AND chromedriver on a free loopback port
    let port = free_port();
    let _driver = Driver(
        Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..100 {
        let probe = tokio::time::timeout(
            Duration::from_secs(2),
            client.request(
                http::Request::get(format!("{base}/status"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            ),
        )
        .await;
        if matches!(probe, Ok(Ok(r)) if r.status().is_success()) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "chromedriver answered /status");
    let profile = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let (s, v) = call(
        &client,
        "POST",
        &format!("{base}/session"),
        &[],
        Some(json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args}
        }}})),
    )
    .await;
    assert_eq!(s, 200, "a browser session: {v}");
    let wd = WebDriver {
        client: client.clone(),
        base,
        session: v["value"]["sessionId"].as_str().unwrap().to_string(),
    };

    // WHEN the approver opens the emailed link
    wd.cmd("POST", "/url", Some(json!({ "url": link }))).await;
    let heading = wd.text_of("h1").await;
    assert_eq!(heading, "Approve or deny access");
    let page = wd.cmd("GET", "/source", None).await.to_string();
    assert!(
        page.contains("INC-77 &lt;script&gt;"),
        "the justification is shown, escaped"
    );
    // (opening it changed nothing)
    assert_eq!(
        status(client.clone(), request_url.clone()).await,
        "APPROVAL_PENDING"
    );

    // AND types a reason and presses Approve
    let reason = wd.element("#reason").await;
    wd.cmd(
        "POST",
        &format!("/element/{reason}/value"),
        Some(json!({"text": "approved from the browser"})),
    )
    .await;
    let approve = wd.element("#approve").await;
    wd.cmd(
        "POST",
        &format!("/element/{approve}/click"),
        Some(json!({})),
    )
    .await;

    // THEN the page says it is approved
    let mut outcome = String::new();
    for _ in 0..100 {
        let title = wd.cmd("GET", "/title", None).await;
        if title.as_str().is_some_and(|t| t.starts_with("Approved")) {
            outcome = wd.text_of("#outcome").await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(outcome, "Approved");
    let message = wd.text_of("#message").await;
    assert!(message.contains("alice@example.com"), "{message}");
    wd.cmd("DELETE", "", None).await;

    // AND the request reaches GRANTED, with the reason in its trail
    let mut last = String::new();
    for _ in 0..100 {
        last = status(client.clone(), request_url.clone()).await;
        if last == "GRANTED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, "GRANTED");
    let (_, audit) = call(
        &client,
        "GET",
        &format!("{request_url}/audit"),
        &[("x-api-key", KEY), ("x-jit-user", "alice@example.com")],
        None,
    )
    .await;
    assert!(
        audit.to_string().contains("approved from the browser"),
        "{audit}"
    );

    served.stop().await;
}
