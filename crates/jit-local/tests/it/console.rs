//! The web console in a real browser: headless Chromium over WebDriver (as
//! `browser.rs` drives the approval page), two browser sessions — two
//! people. A requester signs in and asks, a lead approves from the inbox in
//! the other session, the requester's page turns GRANTED by itself and
//! offers credentials; extend, revoke and cancel from the page; an
//! ineligible person does not see the entitlement; the analytics page
//! draws its charts (a screenshot is kept); a form without the CSRF token
//! is refused. First render is measured (Navigation Timing) and printed;
//! each page's HTML is checked to stay under 100 KB.
//!
//! `JIT_SCREENSHOTS_DIR=<dir>` also keeps screenshots of every page there
//! (how the README's are made). Skipped without chromium unless
//! `JIT_REQUIRE_BROWSER=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;

use crate::browser::{
    CHROMIUM_FLAGS, Driver, ELEMENT, HttpClient, KEY, WebDriver, call, find, free_port,
};
use crate::common::served::Served;

/// The largest page the console may send.
const MAX_PAGE_BYTES: usize = 100 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_headless_chromium() {
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
    tokio::time::timeout(Duration::from_secs(240), run(&chromium, &chromedriver))
        .await
        .expect("the console browser test finishes within 4 minutes");
}

impl WebDriver {
    async fn try_element(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let (status, v) = call(
            &self.client,
            "POST",
            &url,
            &[],
            Some(json!({"using": "css selector", "value": css})),
        )
        .await;
        (status == 200).then(|| v["value"][ELEMENT].as_str().map(str::to_string))?
    }

    async fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    async fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits (bounded) until `css` exists and its text passes `ok`.
    async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        for _ in 0..200 {
            if let Some(id) = self.try_element(css).await {
                let url = format!("{}/session/{}/element/{id}/text", self.base, self.session);
                let (s, v) = call(&self.client, "GET", &url, &[], None).await;
                if s == 200 {
                    last = v["value"].as_str().unwrap_or_default().to_string();
                    if ok(&last) {
                        return last;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("`{css}` never passed the check; last text: {last:?}");
    }

    async fn screenshot(&self, name: &str) -> Vec<u8> {
        let v = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        if let Ok(dir) = std::env::var("JIT_SCREENSHOTS_DIR") {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(Path::new(&dir).join(name), &png).unwrap();
        }
        png
    }

    /// The page's HTML size and its first render (Navigation Timing:
    /// response end and DOM content loaded, ms since navigation start).
    async fn measure(&self, what: &str) -> usize {
        let v = self
            .cmd(
                "POST",
                "/execute/sync",
                Some(json!({"script": "const n = performance.getEntriesByType('navigation')[0]; return [n.responseEnd, n.domContentLoadedEventEnd, n.transferSize, document.documentElement.outerHTML.length];", "args": []})),
            )
            .await;
        let size = v[3].as_u64().unwrap_or(0) as usize;
        eprintln!(
            "first render of {what}: response end {:.0} ms, DOMContentLoaded {:.0} ms, {} bytes of HTML",
            v[0].as_f64().unwrap_or(0.0),
            v[1].as_f64().unwrap_or(0.0),
            size
        );
        assert!(size > 0 && size < MAX_PAGE_BYTES, "{what}: {size} bytes");
        size
    }

    async fn sign_in(&self, api: &str, user: &str, groups: &str) {
        self.go(&format!("{api}/")).await;
        // Signed out: the home page sends the browser to the sign-in page.
        self.wait_text("h1", |t| t == "Sign in (local only)").await;
        let page = self.source().await;
        assert!(
            page.contains("Local mode"),
            "the page says it is local-only"
        );
        self.type_into("#user", user).await;
        self.type_into("#groups", groups).await;
        self.type_into("#apikey", KEY).await;
        self.click("#signin").await;
        self.wait_text("h1", |t| t == "My requests").await;
    }
}

async fn browser_session(
    client: &HttpClient,
    base: &str,
    chromium: &Path,
) -> (WebDriver, tempfile::TempDir) {
    let profile = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    args.push("--window-size=1200,1000".into());
    let (s, v) = call(
        client,
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
    (
        WebDriver {
            client: client.clone(),
            base: base.to_string(),
            session: v["value"]["sessionId"].as_str().unwrap().to_string(),
        },
        profile,
    )
}

fn request_id_of(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_string()
}

async fn run(chromium: &Path, chromedriver: &Path) {
    // GIVEN jit-local on loopback with the example catalog
    let served = Served::start("", KEY).await;
    let (client, api) = (served.client.clone(), served.api.clone());

    // AND chromedriver with two browser sessions: the requester's, the lead's
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
    let (alice, _p1) = browser_session(&client, &base, chromium).await;
    let (lead, _p2) = browser_session(&client, &base, chromium).await;

    // WHEN alice (engineering) signs in
    alice
        .sign_in(&api, "alice@example.com", "engineering")
        .await;
    alice.measure("the home page").await;
    // THEN she may ask for OnCallReadOnly (engineering is eligible)…
    assert!(
        alice
            .try_element("input[value=\"OnCallReadOnly\"]")
            .await
            .is_some()
    );

    // AND the lead, in no eligible group, is not offered it at all
    lead.sign_in(&api, "lead@example.com", "").await;
    assert!(
        lead.try_element("input[value=\"OnCallReadOnly\"]")
            .await
            .is_none()
    );
    assert!(
        lead.try_element("input[value=\"JIT-ElevatedAdminRole\"]")
            .await
            .is_some()
    );

    // WHEN alice asks for the admin role
    alice.click("input[value=\"JIT-ElevatedAdminRole\"]").await;
    alice.type_into("#duration", "30m").await;
    alice
        .type_into("#justification", "INC-42 <b>db down</b>")
        .await;
    alice.screenshot("console-home.png").await;
    alice.click("#ask-button").await;
    alice
        .wait_text("#status", |t| t == "APPROVAL_PENDING")
        .await;
    let id = request_id_of(&alice.url().await);
    assert_eq!(id.len(), 26, "a request page: {id}");
    assert!(
        alice
            .source()
            .await
            .contains("INC-42 &lt;b&gt;db down&lt;/b&gt;")
    );

    // AND the lead approves it from the inbox, in the other browser
    lead.go(&format!("{api}/ui/inbox")).await;
    lead.wait_text("h1", |t| t == "Approvals").await;
    lead.measure("the inbox").await;
    lead.type_into(&format!("#reason-{id}"), "go ahead").await;
    lead.screenshot("console-inbox.png").await;
    // AND on a phone-sized window the inbox fits its width (no sideways
    // scrolling to reach Approve)
    lead.cmd(
        "POST",
        "/window/rect",
        Some(json!({"width": 390, "height": 844})),
    )
    .await;
    let fits = lead
        .cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": "return [document.documentElement.scrollWidth, window.innerWidth];", "args": []})),
        )
        .await;
    let (scroll, inner) = (fits[0].as_u64().unwrap(), fits[1].as_u64().unwrap());
    assert!(inner <= 500, "a phone-sized viewport: {fits}");
    assert!(scroll <= inner, "the inbox fits a phone's width: {fits}");
    lead.screenshot("console-inbox-phone.png").await;
    lead.cmd(
        "POST",
        "/window/rect",
        Some(json!({"width": 1200, "height": 1000})),
    )
    .await;
    lead.click(&format!("#inbox-{id} button.approve")).await;
    lead.wait_text("#flash", |t| t.starts_with("Approved."))
        .await;

    // THEN alice's open page turns GRANTED by itself and offers credentials
    alice.wait_text("#status", |t| t == "GRANTED").await;
    alice
        .wait_text("#credentials", |t| t == "Get credentials")
        .await;
    alice.measure("the request page").await;
    alice.screenshot("console-request.png").await;
    alice.click("#credentials").await;
    let exports = alice
        .wait_text("#exports", |t| t.contains("AWS_ACCESS_KEY_ID="))
        .await;
    assert!(exports.contains("export AWS_SESSION_TOKEN="), "{exports}");
    let process = alice.text_of("#process").await;
    assert!(process.contains(&format!("credential_process = jit credentials {id}")));

    // AND she asks for more time from the page
    alice.go(&format!("{api}/ui/requests/{id}")).await;
    alice.type_into("#extend-duration", "15m").await;
    alice.type_into("#extend-reason", "still on it").await;
    alice.click("#extend").await;
    let f = alice.wait_text("#flash", |t| !t.is_empty()).await;
    assert!(f.starts_with("More time asked for."), "{f}");
    // AND the lead approves the extension from the inbox
    lead.go(&format!("{api}/ui/inbox")).await;
    lead.type_into(&format!("#xreason-{id}"), "fine").await;
    lead.click(&format!("#inbox-ext-{id} button.approve")).await;
    lead.wait_text("#flash", |t| t.starts_with("Extension approved."))
        .await;
    alice.go(&format!("{api}/ui/requests/{id}")).await;
    let facts = alice.text_of("dl.facts").await;
    assert!(facts.contains("+15m APPROVED"), "{facts}");

    // AND a form without its CSRF token is refused (her own cookie, no token)
    let cookie = alice.cmd("GET", "/cookie/jit_session", None).await;
    let cookie = format!("jit_session={}", cookie["value"].as_str().unwrap());
    for body in [
        "entitlement=Read+Only+Access&justification=x",
        "csrf=forged&entitlement=Read+Only+Access&justification=x",
    ] {
        let resp = client
            .request(
                http::Request::post(format!("{api}/ui/requests"))
                    .header("cookie", &cookie)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{body}");
        let html = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&html).contains("security token"));
    }

    // AND she revokes the grant from the page
    alice.type_into("#revoke-reason", "done early").await;
    alice.click("#revoke").await;
    alice.wait_text("#status", |t| t == "REVOKED").await;

    // AND asks again and cancels from the page
    alice.go(&format!("{api}/")).await;
    alice.click("input[value=\"JIT-ElevatedAdminRole\"]").await;
    alice.type_into("#justification", "second thoughts").await;
    alice.click("#ask-button").await;
    alice
        .wait_text("#status", |t| t == "APPROVAL_PENDING")
        .await;
    alice.click("#cancel").await;
    alice.wait_text("#status", |t| t == "CANCELLED").await;

    // THEN the lead's analytics page draws its charts
    lead.go(&format!("{api}/ui/analytics")).await;
    lead.wait_text("h1", |t| t == "Analytics").await;
    lead.measure("the analytics page").await;
    for chart in [
        "#chart-per-day",
        "#chart-heatmap",
        "#chart-top-entitlements",
        "#chart-top-requesters",
        "#signals",
    ] {
        assert!(lead.try_element(chart).await.is_some(), "{chart} is drawn");
    }
    let rect = lead
        .cmd(
            "GET",
            &format!("/element/{}/rect", lead.element("#chart-per-day").await),
            None,
        )
        .await;
    assert!(
        rect["width"].as_f64().unwrap_or(0.0) > 100.0,
        "the chart is laid out: {rect}"
    );
    let png = lead.screenshot("console-analytics.png").await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let artifact: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-analytics.png");
    std::fs::write(&artifact, &png).unwrap();
    eprintln!("analytics screenshot kept at {}", artifact.display());

    // AND the admin page refuses the lead with the API's message (not an admin)
    lead.go(&format!("{api}/ui/admin")).await;
    let m = lead.wait_text("#message", |t| !t.is_empty()).await;
    assert!(m.contains("admin"), "{m}");

    for wd in [alice, lead] {
        wd.cmd("DELETE", "", None).await;
    }
    served.stop().await;
}

/// A tiny cookie-keeping client of the console (no browser): the admin
/// pages need a catalog with `admin_groups`, which the example lacks.
struct Visitor {
    client: HttpClient,
    base: String,
    cookies: std::collections::BTreeMap<String, String>,
}

impl Visitor {
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        form: Option<String>,
    ) -> (u16, String, String) {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        let jar: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !jar.is_empty() {
            req = req.header("cookie", jar.join("; "));
        }
        if form.is_some() {
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        let resp = tokio::time::timeout(
            Duration::from_secs(30),
            self.client.request(
                req.body(Full::new(Bytes::from(form.unwrap_or_default())))
                    .unwrap(),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        for c in resp.headers().get_all("set-cookie") {
            let kv = c.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, location, String::from_utf8_lossy(&body).to_string())
    }

    fn csrf(html: &str) -> String {
        let at = html
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token")
            + 19;
        html[at..].split('"').next().unwrap().to_string()
    }

    async fn sign_in(&mut self, user: &str, groups: &str, key: &str) -> (u16, String) {
        let (_, _, page) = self.send("GET", "/ui/signin", None).await;
        let form = format!(
            "csrf={}&next=%2F&user={}&groups={}&apikey={}",
            Self::csrf(&page),
            jit_core::links::percent_encode(user),
            jit_core::links::percent_encode(groups),
            key
        );
        let (s, loc, body) = self.send("POST", "/ui/signin", Some(form)).await;
        (s, if s == 303 { loc } else { body })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_see_every_request_with_filters_and_others_the_apis_refusal() {
    // GIVEN jit-local whose catalog makes `auditors` admins
    let served = served().await;
    let (client, api) = (served.client.clone(), served.api.clone());
    // AND requests by two people, through the API
    for (who, ent) in [
        ("alice@example.com", "JIT-ElevatedAdminRole"),
        ("bob@example.com", "Read Only Access"),
    ] {
        let (s, v) = call(
            &client,
            "POST",
            &format!("{api}/requests"),
            &[("x-api-key", KEY), ("x-jit-user", who)],
            Some(json!({"entitlement": ent, "justification": "audit me"})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    let visitor = |_: &HttpClient| served.visitor();

    // WHEN someone signs in with a wrong key THEN no session is made
    let mut eve = visitor(&client);
    let (s, body) = eve
        .sign_in("eve@example.com", "auditors", "not-the-key")
        .await;
    assert_eq!(s, 403);
    assert!(body.contains("not this jit-local&#39;s API key"), "{body}");
    assert!(!eve.cookies.contains_key("jit_session"));
    // AND a session cookie nobody signed is no session
    eve.cookies
        .insert("jit_session".into(), "eyJ1IjoiYSJ9.AAAA".into());
    let (s, loc, _) = eve.send("GET", "/ui/admin", None).await;
    assert_eq!((s, loc.as_str()), (303, "/ui/signin?next=%2Fui%2Fadmin"));

    // WHEN an auditor signs in
    let mut audit = visitor(&client);
    let (s, loc) = audit.sign_in("audit@example.com", "auditors", KEY).await;
    assert_eq!((s, loc.as_str()), (303, "/"), "signed in");
    let (_, _, home) = audit.send("GET", "/", None).await;
    assert!(home.contains("href=\"/ui/admin\""), "the Admin link shows");
    // THEN the admin page lists everyone's requests
    let (s, _, page) = audit.send("GET", "/ui/admin", None).await;
    assert_eq!(s, 200);
    assert!(
        page.contains("<td>alice@example.com</td>") && page.contains("<td>bob@example.com</td>"),
        "{page}"
    );
    assert!(page.contains("id=\"drift\"") && page.contains("id=\"break-glass\""));
    // AND filters narrow it, as the API's listing does
    let (_, _, page) = audit
        .send("GET", "/ui/admin?requester=bob%40example.com", None)
        .await;
    assert!(
        page.contains("<td>bob@example.com</td>") && !page.contains("<td>alice@example.com</td>"),
        "{page}"
    );
    // AND a filter the API refuses shows the API's message
    let (_, _, page) = audit.send("GET", "/ui/admin?from=yesterday", None).await;
    assert!(page.contains("must be an RFC 3339 time"), "{page}");
    // AND the analytics cover every entitlement
    let (s, _, page) = audit.send("GET", "/ui/analytics", None).await;
    assert_eq!(s, 200);
    assert!(page.contains("every entitlement") && page.contains("id=\"chart-heatmap\""));

    // WHEN bob (no admin group, approver of nothing) opens them
    let mut bob = visitor(&client);
    bob.sign_in("bob@example.com", "", KEY).await;
    let (_, _, home) = bob.send("GET", "/", None).await;
    assert!(!home.contains("href=\"/ui/admin\"") && !home.contains("href=\"/ui/analytics\""));
    // THEN each refuses with the API's message
    let (s, _, page) = bob.send("GET", "/ui/admin", None).await;
    assert_eq!(s, 403);
    assert!(page.contains("admin_groups"), "{page}");
    let (s, _, page) = bob.send("GET", "/ui/analytics", None).await;
    assert_eq!(s, 403);
    assert!(page.contains("analytics are for members"), "{page}");
    // AND alice's request is not his to see
    let (s, _, page) = bob.send("GET", "/ui/inbox", None).await;
    assert_eq!(s, 200);
    assert!(page.contains("Nothing waits for your decision"));

    // AND signing out ends the session
    let (_, _, home) = bob.send("GET", "/", None).await;
    let form = format!("csrf={}", Visitor::csrf(&home));
    let (s, loc, _) = bob.send("POST", "/ui/signout", Some(form)).await;
    assert_eq!((s, loc.as_str()), (303, "/ui/signedout"));
    let (s, _, _) = bob.send("GET", "/", None).await;
    assert_eq!(s, 303);

    served.stop().await;
}

/// `jit-local` serving the example catalog with `auditors` as admins.
async fn served() -> Served {
    Served::start("admin_groups: [auditors]\n", KEY).await
}

impl Served {
    fn visitor(&self) -> Visitor {
        Visitor {
            client: self.client.clone(),
            base: self.api.clone(),
            cookies: Default::default(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_form_previews_a_scope_and_asks_with_it() {
    // GIVEN a requester signed in to the console
    let served = served().await;
    let mut alice = served.visitor();
    let (s, _) = alice.sign_in("alice@example.com", "", KEY).await;
    assert_eq!(s, 303);
    let (_, _, home) = alice.send("GET", "/", None).await;
    assert!(home.contains("id=\"scope_access\"") && home.contains("id=\"preview-button\""));
    let csrf = Visitor::csrf(&home);
    let enc = jit_core::links::percent_encode;
    let form = |op: &str, actions: &str| {
        format!(
            "csrf={csrf}&idempotencyKey=k-{op}&entitlement={}&duration=30m&justification={}&scope_actions={}&scope_access=read&scope_services=s3&scope_resources={}&scope_describe=&op={op}",
            enc("JIT-ElevatedAdminRole"),
            enc("INC-42: read the logs"),
            enc(actions),
            enc("arn:aws:s3:::prod-logs/*"),
        )
    };
    // WHEN she previews read access to one bucket
    let (s, _, page) = alice
        .send("POST", "/ui/requests", Some(form("preview", "")))
        .await;
    // THEN the page shows the generated policy with its summary, and the
    // form keeps what she typed
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("id=\"preview\""), "{page}");
    assert!(page.contains("<strong>deterministic</strong>"), "{page}");
    assert!(page.contains("s3:GetObject") && page.contains("arn:aws:s3:::prod-logs/*"));
    assert!(page.contains("<option value=\"read\" selected>"), "{page}");
    // WHEN she previews an action that does not exist
    let (s, _, page) = alice
        .send(
            "POST",
            "/ui/requests",
            Some(form("preview", "s3:NoSuchThing")),
        )
        .await;
    // THEN the API's refusal names the field
    assert_eq!(s, 400, "{page}");
    assert!(
        page.contains("id=\"preview-error\"") && page.contains("scope.actions"),
        "{page}"
    );
    // WHEN she asks with the read scope
    let (s, loc, _) = alice
        .send("POST", "/ui/requests", Some(form("ask", "")))
        .await;
    assert_eq!(s, 303, "{loc}");
    let id = loc.trim_start_matches("/ui/requests/").to_string();
    // THEN the request carries the scope, as the API shows it
    let (s, v) = call(
        &served.client,
        "GET",
        &format!("{}/requests/{id}", served.api),
        &[("x-api-key", KEY), ("x-jit-user", "alice@example.com")],
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["scope"],
        json!({"access": "read", "services": ["s3"], "resources": ["arn:aws:s3:::prod-logs/*"]})
    );
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_glass_use_is_reviewed_from_the_console() {
    // GIVEN an SRE's break-glass grant, through the API
    let served = served().await;
    let (s, v) = call(
        &served.client,
        "POST",
        &format!("{}/requests", served.api),
        &[
            ("x-api-key", KEY),
            ("x-jit-user", "sre@example.com"),
            ("x-jit-groups", "sre"),
        ],
        Some(json!({
            "entitlement": "BreakGlassAdmin", "duration": "30m", "breakGlass": true,
            "justification": "INC-9: the primary database is down, failing over"
        })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    // WHEN a platform lead opens the admin page
    let mut lead = served.visitor();
    let (s, _) = lead
        .sign_in("lead@example.com", "platform-leads,auditors", KEY)
        .await;
    assert_eq!(s, 303);
    let (s, _, page) = lead.send("GET", "/ui/admin", None).await;
    // THEN the use waits for a review there
    assert_eq!(s, 200, "{page}");
    let at = page.find("id=\"break-glass\"").unwrap();
    assert!(page[at..].contains(&format!("/ui/requests/{id}")), "{page}");
    // AND its page offers the review, naming the incident
    let (_, _, detail) = lead.send("GET", &format!("/ui/requests/{id}"), None).await;
    assert!(
        detail.contains("id=\"review-form\"") && detail.contains("<strong>INC-9</strong>"),
        "{detail}"
    );
    // WHEN the lead records it without a reason THEN the API's refusal shows
    let csrf = Visitor::csrf(&detail);
    let post = |verdict: &str, reason: &str| {
        format!(
            "csrf={csrf}&verdict={verdict}&reason={}",
            jit_core::links::percent_encode(reason)
        )
    };
    let path = format!("/ui/requests/{id}/review");
    let (s, loc, _) = lead.send("POST", &path, Some(post("justified", ""))).await;
    assert_eq!(s, 303);
    let (_, _, shown) = lead.send("GET", &loc, None).await;
    assert!(shown.contains("reason"), "{shown}");
    // WHEN the lead records a verdict with a reason
    let (s, loc, _) = lead
        .send(
            "POST",
            &path,
            Some(post("justified", "the failover could not wait")),
        )
        .await;
    assert_eq!(s, 303);
    let (_, _, shown) = lead.send("GET", &loc, None).await;
    assert!(shown.contains("Review recorded."), "{shown}");
    // THEN it is on the request, the form is gone, and nothing waits
    let (_, v) = call(
        &served.client,
        "GET",
        &format!("{}/requests/{id}", served.api),
        &[("x-api-key", KEY), ("x-jit-user", "lead@example.com")],
        None,
    )
    .await;
    assert_eq!(v["breakGlass"]["review"]["verdict"], "justified", "{v}");
    let (_, _, detail) = lead.send("GET", &format!("/ui/requests/{id}"), None).await;
    assert!(!detail.contains("id=\"review-form\""));
    let (_, _, page) = lead.send("GET", "/ui/admin", None).await;
    assert!(page.contains("id=\"no-reviews\""), "{page}");
    served.stop().await;
}
