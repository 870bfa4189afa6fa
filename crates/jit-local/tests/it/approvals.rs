//! Approvals end to end in `jit-local`: the sample catalog, the local engine
//! running `approval.asl.json` on a manual clock, emails in the outbox as
//! `.eml` files, and Slack as a loopback fake (`--slack-url`) that records
//! calls and can fail or be slow. Requests reach GRANTED (or not) through
//! the emailed link, Slack buttons and `/jit`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use jit_approvals::slack::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_request};
use jit_core::links::percent_encode;
use jit_core::ports::{Clock, ManualClock, Secret};
use jit_local::approvals::ApprovalsConfig;
use jit_local::{App, Config, Overrides};
use jit_testkit::fake_slack::{FakeSlack, SlackBehaviour};
use serde_json::{Value, json};

const KEY: &str = "approvals-test-key-0123456789";
const SIGNING: &str = "local-slack-signing-secret-0001";
const BOT: &str = "xoxb-local-bot-token";
const PUBLIC: &str = "http://127.0.0.1:3999";

struct Local {
    app: App,
    clock: Arc<ManualClock>,
    dir: PathBuf,
}

fn sample_catalog() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog.example.yaml")
}

fn config(dir: &Path, catalog: PathBuf) -> Config {
    Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        catalog: catalog.into(),
        api_key: Some(KEY.into()),
        demo_mode: true,
        print_notifications: false,
        run_driver: false,
        max_backlog: jit_local::DEFAULT_MAX_BACKLOG,
    }
}

impl Local {
    fn open(dir: &Path, slack: Option<&FakeSlack>) -> Local {
        Local::open_with(dir, slack, sample_catalog())
    }

    fn open_with(dir: &Path, slack: Option<&FakeSlack>, catalog: PathBuf) -> Local {
        let clock = Arc::new(ManualClock::new(
            chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        ));
        let approvals = ApprovalsConfig {
            slack_url: slack.map(FakeSlack::api_url),
            slack_bot_token: slack.map(|_| Secret::new(BOT)),
            slack_signing_secret: Some(Secret::new(SIGNING)),
            link_secret: Some(Secret::new("local-link-secret-0123456789abcdef")),
            public_url: Some(PUBLIC.into()),
            ..ApprovalsConfig::default()
        };
        let (app, _) = App::build_full(
            &config(dir, catalog),
            clock.clone(),
            Overrides::default(),
            &approvals,
        )
        .expect("app starts");
        Local {
            app,
            clock,
            dir: dir.to_path_buf(),
        }
    }

    async fn settle(&self) {
        self.app
            .engine()
            .unwrap()
            .run_until_idle()
            .await
            .expect("engine runs");
    }

    async fn raw(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> (u16, String) {
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = self
            .app
            .serve_http(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
            .await;
        let out = (resp.status().as_u16(), resp.body().clone());
        self.settle().await;
        out
    }

    async fn api(&self, method: &str, path: &str, user: &str, body: Option<Value>) -> (u16, Value) {
        let mut headers = vec![
            ("x-api-key", KEY.to_string()),
            ("x-jit-user", user.to_string()),
        ];
        if body.is_some() {
            headers.push(("content-type", "application/json".into()));
        }
        let (s, text) = self
            .raw(
                method,
                path,
                &headers,
                &body.map(|b| b.to_string()).unwrap_or_default(),
            )
            .await;
        (s, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn request(&self, user: &str, entitlement: &str) -> String {
        let body = json!({"entitlement": entitlement, "duration": "1h", "justification": "INC-7 failover"});
        let (s, v) = self.api("POST", "/requests", user, Some(body)).await;
        assert_eq!(s, 201, "{v}");
        v["requestId"].as_str().unwrap().to_string()
    }

    async fn status(&self, id: &str) -> String {
        let (_, v) = self
            .api("GET", &format!("/requests/{id}"), "lead@example.com", None)
            .await;
        v["status"].as_str().unwrap_or_default().to_string()
    }

    async fn audit(&self, id: &str) -> Vec<String> {
        let (_, v) = self
            .api(
                "GET",
                &format!("/requests/{id}/audit"),
                "lead@example.com",
                None,
            )
            .await;
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The `.eml` files in the outbox for one recipient.
    fn emails_to(&self, to: &str) -> Vec<String> {
        let mut out = vec![];
        if let Ok(entries) = std::fs::read_dir(self.dir.join("outbox")) {
            let mut names: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
            names.sort();
            for p in names {
                if p.extension().is_some_and(|e| e == "eml") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    if text.contains(&format!("\r\nTo: {to}\r\n")) {
                        out.push(text);
                    }
                }
            }
        }
        out
    }

    /// The link the newest email to `to` carried: (path, query).
    fn link_in_email(&self, to: &str) -> (String, String) {
        let mails = self.emails_to(to);
        let mail = mails.last().unwrap_or_else(|| panic!("no email to {to}"));
        let (text_part, html_part) = mail.split_once("Content-Type: text/html").unwrap();
        let url = text_part
            .lines()
            .find(|l| l.starts_with(&format!("{PUBLIC}/approvals/")))
            .expect("the text part carries the link")
            .trim()
            .to_string();
        assert!(
            html_part.contains(&url.replace('&', "&amp;")),
            "the HTML part carries it too"
        );
        let rest = url.trim_start_matches(PUBLIC);
        let (path, query) = rest.split_once('?').unwrap();
        (path.to_string(), query.to_string())
    }

    fn slack_headers(&self, body: &str) -> Vec<(&'static str, String)> {
        let ts = self.clock.now().timestamp();
        vec![
            (TIMESTAMP_HEADER, ts.to_string()),
            (SIGNATURE_HEADER, sign_request(SIGNING, ts, body.as_bytes())),
            ("content-type", "application/x-www-form-urlencoded".into()),
        ]
    }

    async fn press(
        &self,
        fake: &FakeSlack,
        user: &str,
        action: &str,
        id: &str,
        reason: Option<&str>,
    ) -> (u16, String) {
        let mut payload = json!({
            "type": "block_actions",
            "user": {"id": user},
            "trigger_id": format!("trigger-{}", next_delivery()),
            "response_url": fake.response_url(&format!("{user}-{}", next_delivery())),
            "container": {"type": "message", "channel_id": "C0FAKECHAN", "message_ts": "1700000000.000002"},
            "actions": [{"action_id": action, "value": id}],
        });
        if let Some(r) = reason {
            payload["state"] = json!({"values": {"jit_reason": {"reason": {"value": r}}}});
        }
        let body = format!("payload={}", percent_encode(&payload.to_string()));
        self.raw(
            "POST",
            "/slack/interactions",
            &self.slack_headers(&body),
            &body,
        )
        .await
    }

    async fn command(&self, fake: &FakeSlack, user: &str, text: &str) -> (u16, String) {
        let body = format!(
            "command=%2Fjit&user_id={user}&text={}&trigger_id=trigger-{}&response_url={}",
            percent_encode(text),
            next_delivery(),
            percent_encode(&fake.response_url(&format!("{user}-{}", next_delivery())))
        );
        self.raw("POST", "/slack/commands", &self.slack_headers(&body), &body)
            .await
    }
}

/// A number no other Slack delivery of this test binary has: like Slack's,
/// each call carries its own `trigger_id` and `response_url`.
fn next_delivery() -> usize {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Waits until the deferred Slack work answered `n` times, then settles the engine.
async fn answers(l: &Local, fake: &FakeSlack, n: usize) -> Vec<Value> {
    let calls = fake.wait_for("respond", n, Duration::from_secs(15)).await;
    l.settle().await;
    calls.into_iter().map(|c| c.body).collect()
}

#[tokio::test]
async fn the_emailed_link_opens_a_page_and_approving_there_grants() {
    let dir = tempfile::tempdir().unwrap();
    let l = Local::open(dir.path(), None);
    let id = l
        .request("alice@example.com", "JIT-ElevatedAdminRole")
        .await;
    assert_eq!(l.status(&id).await, "APPROVAL_PENDING");
    // one .eml per approver (the listed one and the group's members)
    assert_eq!(l.emails_to("lead@example.com").len(), 1);
    assert_eq!(l.emails_to("security@example.com").len(), 1);
    assert!(
        l.emails_to("alice@example.com").is_empty(),
        "never the requester"
    );
    let (path, query) = l.link_in_email("lead@example.com");
    // a GET shows the page and changes nothing, without an API key
    let (s, page) = l.raw("GET", &format!("{path}?{query}"), &[], "").await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Approve or deny access") && page.contains("INC-7 failover"));
    assert_eq!(l.status(&id).await, "APPROVAL_PENDING");
    let trail_before = l.audit(&id).await;
    // approving on the page grants
    let form = format!("{query}&reason=ok+for+the+incident&decision=approve");
    let headers = [(
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    )];
    let (s, page) = l.raw("POST", &path, &headers, &form).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Approved"));
    assert_eq!(l.status(&id).await, "GRANTED");
    let trail = l.audit(&id).await;
    assert!(trail.len() > trail_before.len());
    assert!(
        trail
            .iter()
            .any(|t| t.contains("approved via link") && t.contains("ok for the incident")),
        "{trail:?}"
    );
    // the replayed link is refused
    let (s, _) = l.raw("POST", &path, &headers, &form).await;
    assert_eq!(s, 409);
    // the outbox and the console never carry the task token
    let outbox = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(!outbox.to_lowercase().contains("tasktoken"));
    l.app.shutdown().await;
}

#[tokio::test]
async fn a_slack_button_approves_and_the_message_shows_the_outcome() {
    let fake = FakeSlack::start(SlackBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let l = Local::open(dir.path(), Some(&fake));
    let id = l
        .request("alice@example.com", "JIT-ElevatedAdminRole")
        .await;
    // the approvers' channel got the message, with the token, buttons and details
    let posts = fake.calls_to("chat.postMessage");
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].authorization.as_deref(),
        Some(format!("Bearer {BOT}").as_str())
    );
    assert_eq!(posts[0].body["channel"], "#jit-approvals");
    let blocks = posts[0].body["blocks"].to_string();
    for needle in [
        "jit_approve",
        "jit_deny",
        "alice@example.com",
        "JIT-ElevatedAdminRole",
        "123456789012",
        "1h",
        "INC-7 failover",
    ] {
        assert!(blocks.contains(needle), "{needle}");
    }
    // self-approval through Slack is refused, privately, with nothing changed
    let (s, body) = l.press(&fake, "U0ALICE001", "jit_approve", &id, None).await;
    assert_eq!((s, body.as_str()), (200, ""));
    let a = answers(&l, &fake, 1).await;
    assert_eq!(a[0]["response_type"], "ephemeral");
    assert!(
        a[0]["text"].as_str().unwrap().contains("own request"),
        "{}",
        a[0]
    );
    assert_eq!(l.status(&id).await, "APPROVAL_PENDING");
    // a lead approves
    l.press(&fake, "U0LEAD0001", "jit_approve", &id, Some("go ahead"))
        .await;
    let a = answers(&l, &fake, 2).await;
    assert!(
        a[1]["text"].as_str().unwrap().contains("Approved"),
        "{}",
        a[1]
    );
    assert_eq!(l.status(&id).await, "GRANTED");
    let updates = fake
        .wait_for("chat.update", 1, Duration::from_secs(5))
        .await;
    assert!(
        updates[0].body["blocks"]
            .to_string()
            .contains("lead@example.com")
    );
    // the sweep then shows the grant and closes the message
    l.app.sweep_reminders().await.unwrap();
    let last = fake.calls_to("chat.update").last().cloned().unwrap();
    assert!(
        last.body["blocks"].to_string().contains("granted"),
        "{}",
        last.body
    );
    l.app.shutdown().await;
}

#[tokio::test]
async fn slack_down_still_sends_email_and_records_the_failure() {
    let fake = FakeSlack::start(SlackBehaviour {
        post_unavailable: true,
        ..SlackBehaviour::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let l = Local::open(dir.path(), Some(&fake));
    let id = l
        .request("alice@example.com", "JIT-ElevatedAdminRole")
        .await;
    assert_eq!(
        fake.calls_to("chat.postMessage").len(),
        1,
        "Slack was tried"
    );
    assert_eq!(
        l.status(&id).await,
        "APPROVAL_PENDING",
        "the request is not lost"
    );
    assert_eq!(
        l.emails_to("lead@example.com").len(),
        1,
        "email still went out"
    );
    let trail = l.audit(&id).await;
    assert!(
        trail
            .iter()
            .any(|t| t.contains("slack:#jit-approvals failed") && t.contains("503")),
        "{trail:?}"
    );
    // and the emailed link still works
    let (path, query) = l.link_in_email("security@example.com");
    let form = format!("{query}&decision=deny&reason=not+now");
    let (s, _) = l
        .raw(
            "POST",
            &path,
            &[("content-type", "application/x-www-form-urlencoded".into())],
            &form,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(l.status(&id).await, "DENIED");
    l.app.shutdown().await;
}

#[tokio::test]
async fn slack_is_acknowledged_at_once_while_a_slow_lookup_finishes_later() {
    // GIVEN a Slack user the catalog does not map, whose users.info takes 4 s
    let fake = FakeSlack::start(SlackBehaviour {
        users_info_delay: Some(Duration::from_secs(4)),
        emails: vec![("U0UNMAPPED".into(), "security@example.com".into())],
        ..SlackBehaviour::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let l = Local::open(dir.path(), Some(&fake));
    let id = l
        .request("alice@example.com", "JIT-ElevatedAdminRole")
        .await;
    // WHEN they press Approve
    let started = std::time::Instant::now();
    let (s, _) = l.press(&fake, "U0UNMAPPED", "jit_approve", &id, None).await;
    // THEN Slack has its answer well within its 3 seconds
    assert_eq!(s, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(l.status(&id).await, "APPROVAL_PENDING", "not decided yet");
    // AND once the lookup answers, the decision is recorded and the message updated
    let updates = fake
        .wait_for("chat.update", 1, Duration::from_secs(15))
        .await;
    assert_eq!(updates.len(), 1);
    answers(&l, &fake, 1).await;
    assert_eq!(l.status(&id).await, "GRANTED");
    l.app.shutdown().await;
}

#[tokio::test]
async fn the_jit_command_requests_lists_shows_and_cancels() {
    let fake = FakeSlack::start(SlackBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let l = Local::open(dir.path(), Some(&fake));
    // a mistake is answered at once with what to type instead
    let (s, body) = l
        .command(&fake, "U0ALICE001", "request JIT-ElevatedAdminRole")
        .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["text"].as_str().unwrap().contains("How long"), "{v}");
    // an unknown entitlement names the ones there are
    l.command(&fake, "U0ALICE001", "request Nope 1h because")
        .await;
    let a = answers(&l, &fake, 1).await;
    assert!(
        a[0]["text"].as_str().unwrap().contains("`OnCallReadOnly`"),
        "{}",
        a[0]
    );
    // a request: the requester is the verified Slack user
    l.command(
        &fake,
        "U0ALICE001",
        "request JIT-ElevatedAdminRole 1h INC-9 hotfix",
    )
    .await;
    let a = answers(&l, &fake, 2).await;
    let text = a[1].to_string();
    assert!(
        text.contains("Requested *JIT-ElevatedAdminRole* for 1h"),
        "{text}"
    );
    let (_, mine) = l.api("GET", "/requests", "alice@example.com", None).await;
    let r = &mine["requests"][0];
    assert_eq!(r["requester"]["authenticatedBy"], "slack");
    let id = r["requestId"].as_str().unwrap().to_string();
    // list and status
    l.command(&fake, "U0ALICE001", "list").await;
    l.command(&fake, "U0ALICE001", &format!("status {id}"))
        .await;
    let a = answers(&l, &fake, 4).await;
    assert!(a[2].to_string().contains(&id));
    assert!(a[3].to_string().contains("APPROVAL_PENDING"));
    // someone else cannot see or cancel it
    l.command(&fake, "U0SRE00001", &format!("cancel {id}"))
        .await;
    let a = answers(&l, &fake, 5).await;
    assert!(
        a[4]["text"].as_str().unwrap().contains("/jit list"),
        "{}",
        a[4]
    );
    // the requester cancels; the approval message shows it
    l.command(&fake, "U0ALICE001", &format!("cancel {id}"))
        .await;
    let a = answers(&l, &fake, 6).await;
    assert!(a[5].to_string().contains("CANCELLED"), "{}", a[5]);
    assert_eq!(l.status(&id).await, "CANCELLED");
    let updates = fake
        .wait_for("chat.update", 1, Duration::from_secs(5))
        .await;
    assert!(
        updates.last().unwrap().body["blocks"]
            .to_string()
            .contains("Cancelled")
    );
    l.app.shutdown().await;
}

#[tokio::test]
async fn forged_and_stale_slack_calls_change_nothing() {
    let fake = FakeSlack::start(SlackBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let l = Local::open(dir.path(), Some(&fake));
    let id = l
        .request("alice@example.com", "JIT-ElevatedAdminRole")
        .await;
    let payload = json!({"type": "block_actions", "user": {"id": "U0LEAD0001"}, "actions": [{"action_id": "jit_approve", "value": id}]});
    let body = format!("payload={}", percent_encode(&payload.to_string()));
    let now = l.clock.now().timestamp();
    let forged = vec![
        (TIMESTAMP_HEADER, now.to_string()),
        (
            SIGNATURE_HEADER,
            sign_request("guessed-secret", now, body.as_bytes()),
        ),
    ];
    let stale = vec![
        (TIMESTAMP_HEADER, (now - 600).to_string()),
        (
            SIGNATURE_HEADER,
            sign_request(SIGNING, now - 600, body.as_bytes()),
        ),
    ];
    for h in [forged, stale] {
        let (s, _) = l.raw("POST", "/slack/interactions", &h, &body).await;
        assert_eq!(s, 401);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    l.settle().await;
    assert_eq!(l.status(&id).await, "APPROVAL_PENDING");
    assert!(fake.calls_to("respond").is_empty() && fake.calls_to("chat.update").is_empty());
    l.app.shutdown().await;
}

#[tokio::test]
async fn undecided_requests_are_reminded_and_timeouts_shown() {
    let fake = FakeSlack::start(SlackBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let l = Local::open(dir.path(), Some(&fake));
    let id = l
        .request("alice@example.com", "JIT-ElevatedAdminRole")
        .await;
    l.clock.advance(chrono::Duration::minutes(15));
    let report = l.app.sweep_reminders().await.unwrap();
    assert_eq!(report.reminded, 1);
    assert_eq!(fake.calls_to("chat.postMessage").len(), 2);
    assert_eq!(l.emails_to("lead@example.com").len(), 2);
    assert!(l.emails_to("lead@example.com")[1].contains("Subject: Reminder: "));
    // the window closes: the workflow records the timeout, the sweep shows it
    l.clock.advance(chrono::Duration::minutes(46));
    l.settle().await;
    assert_eq!(l.status(&id).await, "APPROVAL_TIMED_OUT");
    l.app.sweep_reminders().await.unwrap();
    let last = fake.calls_to("chat.update").last().cloned().unwrap();
    assert!(
        last.body["blocks"].to_string().contains("Expired"),
        "{}",
        last.body
    );
    // and a button pressed now says it expired
    l.press(&fake, "U0LEAD0001", "jit_approve", &id, None).await;
    let a = answers(&l, &fake, 1).await;
    assert!(
        a[0]["text"].as_str().unwrap().contains("expired"),
        "{}",
        a[0]
    );
    l.app.shutdown().await;
}

#[tokio::test]
async fn a_quorum_of_two_grants_on_the_second_approval_and_a_deny_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(
        &catalog,
        r##"
groups:
  leads: [lead@example.com, lead2@example.com]
  security: [security@example.com]
entitlements:
  - name: ProdAdmin
    role_arn: "arn:aws:iam::123456789012:role/JIT-ProdAdmin"
    max_duration: 2h
    approvers:
      groups: [leads, security]
      required_approvals: 2
      required_groups: [leads, security]
"##,
    )
    .unwrap();
    let l = Local::open_with(&dir.path().join("data"), None, catalog);
    let decide = |id: String, who: &'static str, decision: &'static str| {
        let (path, query) = l.link_in_email(who);
        assert_eq!(path, format!("/approvals/{id}"));
        let form = format!("{query}&decision={decision}&reason=checked");
        let l = &l;
        async move {
            l.raw(
                "POST",
                &path,
                &[("content-type", "application/x-www-form-urlencoded".into())],
                &form,
            )
            .await
        }
    };
    // GIVEN a request needing two approvals, one from each of leads and security
    let id = l.request("alice@example.com", "ProdAdmin").await;
    // WHEN one lead approves, THEN it still waits
    let (s, page) = decide(id.clone(), "lead@example.com", "approve").await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(l.status(&id).await, "APPROVAL_PENDING");
    // AND a second lead is not enough either (security is missing)
    let (s, _) = decide(id.clone(), "lead2@example.com", "approve").await;
    assert_eq!(s, 200);
    assert_eq!(l.status(&id).await, "APPROVAL_PENDING");
    // WHEN security approves, THEN it is granted
    let (s, _) = decide(id.clone(), "security@example.com", "approve").await;
    assert_eq!(s, 200);
    assert_eq!(l.status(&id).await, "GRANTED");

    // AND on another request, a deny after one approval rejects it
    let id2 = l.request("bob@example.com", "ProdAdmin").await;
    let (s, _) = decide(id2.clone(), "lead@example.com", "approve").await;
    assert_eq!(s, 200);
    let (s, _) = decide(id2.clone(), "security@example.com", "deny").await;
    assert_eq!(s, 200);
    assert_eq!(l.status(&id2).await, "DENIED");
    // AND the other lead's link now finds it decided
    let (s, page) = decide(id2.clone(), "lead2@example.com", "approve").await;
    assert_eq!(s, 409, "{page}");
    assert_eq!(l.status(&id2).await, "DENIED");
    l.app.shutdown().await;
}

#[tokio::test]
async fn extensions_are_announced_with_links_of_their_own_reminded_and_timed_out() {
    // GIVEN a granted request (approved through its emailed link)
    let fake = FakeSlack::start(SlackBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let l = Local::open(dir.path(), Some(&fake));
    let id = l
        .request("alice@example.com", "JIT-ElevatedAdminRole")
        .await;
    let (req_path, req_query) = l.link_in_email("lead@example.com");
    let (s, v) = l
        .api(
            "POST",
            &format!("/requests/{id}/approve"),
            "security@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(l.status(&id).await, "GRANTED");
    let form_headers = [(
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    )];

    // WHEN the requester asks for 30 more minutes
    let (s, v) = l
        .api(
            "POST",
            &format!("/requests/{id}/extend"),
            "alice@example.com",
            Some(json!({"duration": "30m", "reason": "INC-7 still burning"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let expires_before = v["expiresAt"].as_str().unwrap().to_string();
    let posts_before = fake.calls_to("chat.postMessage").len();
    l.app.sweep_reminders().await.unwrap();

    // THEN the approvers are told: one Slack message, one email each with a
    // link to the extension's own page; the requester is not emailed
    let posts = fake.calls_to("chat.postMessage");
    assert_eq!(posts.len(), posts_before + 1);
    let msg = &posts.last().unwrap().body;
    assert!(
        msg["text"]
            .as_str()
            .unwrap()
            .starts_with("Extension: alice@example.com asks for 30m more"),
        "{msg}"
    );
    assert_eq!(msg["channel"], "#jit-approvals");
    for who in ["lead@example.com", "security@example.com"] {
        let mails = l.emails_to(who);
        assert!(
            mails
                .last()
                .unwrap()
                .contains("Subject: Extension needed: alice@example.com asks for 30m more"),
            "{who}"
        );
    }
    let (ext_path, ext_query) = l.link_in_email("lead@example.com");
    assert_eq!(ext_path, format!("/approvals/{id}/extension/0"));
    // AND the extension's notice stays internal
    let (_, view) = l
        .api("GET", &format!("/requests/{id}"), "alice@example.com", None)
        .await;
    assert!(view["extensions"][0].get("notice").is_none(), "{view}");

    // AND neither link decides the other's thing
    let (s, _) = l
        .raw("GET", &format!("{req_path}?{ext_query}"), &[], "")
        .await;
    assert_eq!(s, 403, "an extension link on the request's page");
    let (s, _) = l
        .raw("GET", &format!("{ext_path}?{req_query}"), &[], "")
        .await;
    assert_eq!(s, 403, "the request's link on the extension's page");
    let (s, _) = l
        .raw(
            "POST",
            &req_path,
            &form_headers,
            &format!("{ext_query}&decision=approve"),
        )
        .await;
    assert_eq!(s, 403);

    // WHEN the lead opens the link THEN the page shows the extension only
    let (s, page) = l
        .raw("GET", &format!("{ext_path}?{ext_query}"), &[], "")
        .await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Approve or deny an extension") && page.contains("INC-7 still burning"));
    // AND approving there moves the expiry and updates the Slack message
    let form = format!("{ext_query}&reason=fine&decision=approve");
    let (s, page) = l.raw("POST", &ext_path, &form_headers, &form).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Extension approved"), "{page}");
    let (_, view) = l
        .api("GET", &format!("/requests/{id}"), "alice@example.com", None)
        .await;
    assert_eq!(view["extensions"][0]["status"], "APPROVED", "{view}");
    assert_eq!(view["extensions"][0]["decisions"][0]["via"], "link");
    assert_ne!(view["expiresAt"].as_str().unwrap(), expires_before);
    // (the sweep shows decisions on the Slack message, in place)
    let report = l.app.sweep_reminders().await.unwrap();
    assert_eq!(report.extensions.outcomes_shown, 1, "{report:?}");
    let update = fake.calls_to("chat.update").last().cloned().unwrap();
    assert!(
        update.body["blocks"]
            .to_string()
            .contains("Approved by lead@example.com"),
        "{}",
        update.body
    );
    // AND the link works once
    let (s, _) = l.raw("POST", &ext_path, &form_headers, &form).await;
    assert_eq!(s, 409);

    // WHEN a second extension waits THEN it is reminded, then times out
    let (s, v) = l
        .api(
            "POST",
            &format!("/requests/{id}/extend"),
            "alice@example.com",
            Some(json!({"duration": "15m", "reason": "INC-7 cleanup"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    l.app.sweep_reminders().await.unwrap();
    let (second_path, second_query) = l.link_in_email("lead@example.com");
    assert_eq!(second_path, format!("/approvals/{id}/extension/1"));
    // (the first extension's link cannot decide the second)
    let (s, _) = l
        .raw("GET", &format!("{second_path}?{ext_query}"), &[], "")
        .await;
    assert_eq!(s, 403);
    l.clock.advance(chrono::Duration::minutes(15));
    l.settle().await;
    let report = l.app.sweep_reminders().await.unwrap();
    assert_eq!(report.extensions.reminded, 1, "{report:?}");
    assert!(
        l.emails_to("lead@example.com")
            .last()
            .unwrap()
            .contains("Subject: Reminder: Extension needed")
    );
    l.clock.advance(chrono::Duration::minutes(46));
    l.settle().await;
    let report = l.app.sweep_reminders().await.unwrap();
    assert_eq!(report.extensions.timed_out, 1, "{report:?}");
    let (_, view) = l
        .api("GET", &format!("/requests/{id}"), "alice@example.com", None)
        .await;
    assert_eq!(view["extensions"][1]["status"], "TIMED_OUT", "{view}");
    let update = fake.calls_to("chat.update").last().cloned().unwrap();
    assert!(
        update.body["blocks"].to_string().contains("Timed out"),
        "{}",
        update.body
    );
    // AND its link expired with the extension's window
    let (s, page) = l
        .raw("GET", &format!("{second_path}?{second_query}"), &[], "")
        .await;
    assert_eq!(s, 410, "{page}");
    l.app.shutdown().await;
}
