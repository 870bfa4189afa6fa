//! Break-glass end to end in `jit-local`: the example catalog's
//! `BreakGlassAdmin` (break_glass: true, max 1h, sre only, reviewed by
//! platform-leads), the local engine on a manual clock, Slack as a loopback
//! fake and emails in the outbox. A requester approves their own request
//! with an incident reference and gets credentials in the same call; the
//! approvers' channel, the security channel and every approver hear of it;
//! reminders continue until an approver reviews it; the Standard workflow
//! still ends the grant on time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use jit_core::ports::{ManualClock, Secret};
use jit_local::approvals::ApprovalsConfig;
use jit_local::{App, Config, Overrides};
use jit_testkit::fake_slack::{FakeSlack, SlackBehaviour};
use serde_json::{Value, json};

const KEY: &str = "break-glass-test-key-0123456789";
const SRE: &str = "sre@example.com";
const LEAD: &str = "lead@example.com";
const SECURITY: &str = "security@example.com";
const REASON: &str = "INC-4711: primary database down, failing over to the replica";

struct Local {
    app: App,
    clock: Arc<ManualClock>,
    dir: PathBuf,
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog.example.yaml")
}

impl Local {
    fn open(dir: &Path, slack: &FakeSlack) -> Local {
        let clock = crate::common::fixed_clock();
        let approvals = ApprovalsConfig {
            slack_url: Some(slack.api_url()),
            slack_bot_token: Some(Secret::new("xoxb-local-bot-token")),
            slack_signing_secret: Some(Secret::new("local-slack-signing-secret-0001")),
            link_secret: Some(Secret::new("local-link-secret-0123456789abcdef")),
            public_url: Some("http://127.0.0.1:3999".into()),
            ..ApprovalsConfig::default()
        };
        let cfg = Config {
            demo_mode: false,
            ..crate::common::config(dir, &example(), KEY)
        };
        let (app, _) = App::build_full(&cfg, clock.clone(), Overrides::default(), &approvals)
            .expect("app starts");
        Local {
            app,
            clock,
            dir: dir.to_path_buf(),
        }
    }

    async fn settle(&self) {
        crate::common::settle(&self.app).await;
    }

    /// Calls the API as `user` (or, with `None`, as the API key alone: a
    /// trusted caller naming nobody by header).
    async fn api(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("x-api-key", KEY);
        if let Some(u) = user {
            req = req.header("x-jit-user", u);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let resp = self
            .app
            .serve_http(req.body(Full::new(Bytes::from(body))).unwrap())
            .await;
        let out = (
            resp.status().as_u16(),
            serde_json::from_str(resp.body()).unwrap_or(Value::Null),
        );
        self.settle().await;
        out
    }

    async fn break_glass(&self, user: &str, body: Value) -> (u16, Value) {
        self.api("POST", "/requests", Some(user), Some(body)).await
    }

    async fn pending_for(&self, user: &str) -> Vec<String> {
        let (s, v) = self
            .api("GET", "/requests?review=pending", Some(user), None)
            .await;
        assert_eq!(s, 200, "{v}");
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["requestId"].as_str().unwrap().to_string())
            .collect()
    }

    async fn events(&self, id: &str) -> Vec<Value> {
        let (s, v) = self
            .api("GET", &format!("/requests/{id}/audit"), Some(LEAD), None)
            .await;
        assert_eq!(s, 200, "{v}");
        v["events"].as_array().unwrap().clone()
    }

    /// The `.eml` files in the outbox for one recipient, oldest first.
    fn emails_to(&self, to: &str) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.join("outbox"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        names.sort();
        names
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .filter(|t| t.contains(&format!("\r\nTo: {to}\r\n")))
            .collect()
    }
}

fn channels_posted(fake: &FakeSlack) -> Vec<String> {
    fake.calls_to("chat.postMessage")
        .iter()
        .map(|c| c.body["channel"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn self_approved_with_an_incident_reference_granted_at_once_announced_and_reviewed() {
    // GIVEN jit-local with the example catalog, Slack and the outbox
    let fake = FakeSlack::start(SlackBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let l = Local::open(dir.path(), &fake);

    // WHEN an SRE breaks the glass with an incident reference
    let (s, v) = l
        .break_glass(
            SRE,
            json!({"entitlement": "BreakGlassAdmin", "duration": "30m", "justification": REASON, "breakGlass": true}),
        )
        .await;

    // THEN it is granted without a second person, credentials in the answer
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["status"], "GRANTED", "{v}");
    assert_eq!(v["credentials"]["Version"], 1, "{v}");
    assert_eq!(v["breakGlass"], json!({"incident": "INC-4711"}), "{v}");
    assert_eq!(v["decisions"][0]["approver"], SRE);
    assert_eq!(v["decisions"][0]["via"], "break-glass");
    assert!(v.get("breakGlassNotice").is_none(), "internal: {v}");
    let id = v["requestId"].as_str().unwrap().to_string();

    // AND it is loud: both Slack channels and every approver but the requester
    l.app.sweep_reminders().await.unwrap();
    let posted = channels_posted(&fake);
    assert_eq!(posted.len(), 2, "{posted:?}");
    assert!(posted.contains(&"#jit-approvals".to_string()), "{posted:?}");
    assert!(posted.contains(&"#security".to_string()), "{posted:?}");
    let msg = &fake.calls_to("chat.postMessage")[0].body;
    assert!(
        msg["text"]
            .as_str()
            .unwrap()
            .starts_with("BREAK-GLASS: sre@example.com"),
        "{msg}"
    );
    assert!(
        msg["blocks"]
            .to_string()
            .contains(&format!("jit review {id}")),
        "{msg}"
    );
    for approver in [LEAD, SECURITY] {
        let mails = l.emails_to(approver);
        assert_eq!(mails.len(), 1, "{approver}");
        assert!(
            mails[0].contains(
                "Subject: BREAK-GLASS: sre@example.com granted themselves BreakGlassAdmin"
            ),
            "{}",
            mails[0]
        );
        assert!(mails[0].contains(REASON), "{}", mails[0]);
    }
    assert!(l.emails_to(SRE).is_empty(), "the requester is not emailed");
    // (a second sweep sends nothing again)
    l.app.sweep_reminders().await.unwrap();
    assert_eq!(channels_posted(&fake).len(), 2);

    // AND the trail flags it, with the self-approval
    let events = l.events(&id).await;
    assert!(
        events.iter().all(|e| e["flags"] == json!(["break-glass"])),
        "every event flagged: {events:#?}"
    );
    assert!(events.iter().any(|e| {
        e["to"] == "APPROVED"
            && e["reason"]
                .as_str()
                .unwrap()
                .contains("self-approved by the requester (INC-4711)")
    }));

    // AND it waits for a review: listed for the approvers, not the requester
    assert_eq!(l.pending_for(LEAD).await, vec![id.clone()]);
    assert_eq!(l.pending_for(SECURITY).await, vec![id.clone()]);
    assert!(l.pending_for(SRE).await.is_empty());
    assert!(l.pending_for("alice@example.com").await.is_empty());

    // AND refusals name the reviewer problem or the field
    let review = |verdict: Value, reason: Value| json!({"verdict": verdict, "reason": reason});
    let path = format!("/requests/{id}/review");
    let cases: &[(&str, Value, u16, &str, Option<&str>)] = &[
        (
            SRE,
            review(json!("justified"), json!("it was me")),
            403,
            "self_review",
            None,
        ),
        // (jit-local's API key may see every request, so not a 404 here)
        (
            "alice@example.com",
            review(json!("justified"), json!("x")),
            403,
            "not_approver",
            None,
        ),
        (
            LEAD,
            json!({"reason": "x"}),
            400,
            "invalid_field",
            Some("verdict"),
        ),
        (
            LEAD,
            review(json!("fine"), json!("x")),
            400,
            "invalid_field",
            Some("verdict"),
        ),
        (
            LEAD,
            review(json!("justified"), json!("  ")),
            400,
            "invalid_field",
            Some("reason"),
        ),
        (
            LEAD,
            json!({"verdict": "justified", "reason": "x", "extra": 1}),
            400,
            "invalid_field",
            Some("extra"),
        ),
    ];
    for (who, body, status, code, field) in cases {
        let (s, v) = l.api("POST", &path, Some(who), Some(body.clone())).await;
        assert_eq!(
            (s, v["error"]["code"].as_str().unwrap()),
            (*status, *code),
            "{who} {body}: {v}"
        );
        assert_eq!(v["error"]["field"].as_str(), *field, "{v}");
    }

    // WHEN nobody reviews for an hour THEN the approvers are reminded
    l.clock.advance(chrono::Duration::hours(1));
    l.settle().await;
    l.app.sweep_reminders().await.unwrap();
    assert_eq!(channels_posted(&fake).len(), 4);
    let last = fake
        .calls_to("chat.postMessage")
        .last()
        .unwrap()
        .body
        .clone();
    assert!(
        last["text"].as_str().unwrap().starts_with("Review needed:"),
        "{last}"
    );
    assert_eq!(l.emails_to(LEAD).len(), 2);
    assert!(
        l.emails_to(LEAD)[1].contains("Subject: Review needed: break-glass by sre@example.com")
    );
    // (and the Standard workflow ended the 30-minute grant on time)
    assert_eq!(
        l.api("GET", &format!("/requests/{id}"), Some(LEAD), None)
            .await
            .1["status"],
        "EXPIRED"
    );

    // AND the analytics count it as a break-glass grant nobody reviewed
    let signals = |v: &Value| {
        (
            v["security"]["breakGlassGrants"]["total"].as_u64(),
            v["security"]["breakGlassUnreviewed"]["total"].as_u64(),
        )
    };
    let (s, v) = l.api("GET", "/analytics", Some(LEAD), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(signals(&v), (Some(1), Some(1)), "{v}");

    // WHEN an approver reviews it
    let (s, v) = l
        .api(
            "POST",
            &path,
            Some(LEAD),
            Some(review(
                json!("not-justified"),
                json!("a replica restart would have done"),
            )),
        )
        .await;
    // THEN the review is on the request and in the trail, flagged
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["breakGlass"]["review"]["verdict"], "not-justified");
    assert_eq!(v["breakGlass"]["review"]["reviewer"], LEAD);
    let events = l.events(&id).await;
    let rev = events
        .iter()
        .find(|e| e["action"] == "review")
        .expect("a review event");
    assert_eq!(rev["actor"], LEAD);
    assert_eq!(rev["flags"], json!(["break-glass"]));
    assert_eq!(
        rev["reason"],
        "not-justified: a replica restart would have done"
    );
    // AND it is reviewed once
    let (s, v) = l
        .api(
            "POST",
            &path,
            Some(SECURITY),
            Some(review(json!("justified"), json!("fine"))),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("already_reviewed")),
        "{v}"
    );
    // AND it leaves the pending list and the unreviewed figure, and the
    // reminders stop
    assert!(l.pending_for(LEAD).await.is_empty());
    l.clock.advance(chrono::Duration::hours(2));
    let (_, v) = l.api("GET", "/analytics", Some(LEAD), None).await;
    assert_eq!(signals(&v), (Some(1), Some(0)), "{v}");
    l.app.sweep_reminders().await.unwrap();
    assert_eq!(channels_posted(&fake).len(), 4);
    l.app.shutdown().await;
}

#[tokio::test]
async fn every_break_glass_refusal_is_a_4xx_naming_the_field_and_grants_nothing() {
    let fake = FakeSlack::start(SlackBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let l = Local::open(dir.path(), &fake);
    let bg = |justification: &str| json!({"entitlement": "BreakGlassAdmin", "duration": "30m", "justification": justification, "breakGlass": true});
    let cases: Vec<(Option<&str>, Value, u16, &str, &str)> = vec![
        (
            Some(SRE),
            bg("INC-1: db down"),
            400,
            "justification_too_short",
            "justification",
        ),
        (
            Some(SRE),
            bg("the primary database is down, failing over"),
            400,
            "incident_reference_missing",
            "justification",
        ),
        (
            Some("dev@example.com"),
            bg(REASON),
            403,
            "not_eligible",
            "entitlement",
        ),
        (
            Some(SRE),
            json!({"entitlement": "BreakGlassAdmin", "duration": "2h", "justification": REASON, "breakGlass": true}),
            400,
            "invalid_field",
            "duration",
        ),
        (
            Some(SRE),
            json!({"entitlement": "BreakGlassAdmin", "justification": REASON}),
            400,
            "break_glass_required",
            "breakGlass",
        ),
        (
            Some(SRE),
            json!({"entitlement": "OnCallReadOnly", "justification": REASON, "breakGlass": true}),
            400,
            "not_break_glass",
            "breakGlass",
        ),
        (
            Some(SRE),
            json!({"entitlement": "BreakGlassAdmin", "justification": REASON, "breakGlass": "yes"}),
            400,
            "invalid_field",
            "breakGlass",
        ),
        (
            None,
            json!({"entitlement": "BreakGlassAdmin", "justification": REASON, "breakGlass": true, "requester": SRE}),
            403,
            "break_glass_needs_identity",
            "requester",
        ),
    ];
    for (who, body, status, code, field) in &cases {
        let (s, v) = l.api("POST", "/requests", *who, Some(body.clone())).await;
        assert_eq!(s, *status, "{body}: {v}");
        assert_eq!(v["error"]["code"], *code, "{body}: {v}");
        assert_eq!(v["error"]["field"], *field, "{body}: {v}");
    }
    // nothing was stored, so nothing is announced or pending
    let (_, mine) = l.api("GET", "/requests", Some(SRE), None).await;
    assert_eq!(mine["requests"], json!([]), "{mine}");
    l.app.sweep_reminders().await.unwrap();
    assert!(channels_posted(&fake).is_empty());
    assert!(l.pending_for(LEAD).await.is_empty());
    // AND the listing and review routes name their fields too
    let (s, v) = l.api("GET", "/requests?review=all", Some(LEAD), None).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("review")),
        "{v}"
    );
    let (s, v) = l
        .api(
            "GET",
            "/requests?review=pending&status=GRANTED",
            Some(LEAD),
            None,
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("review")),
        "{v}"
    );
    let (s, v) = l
        .api(
            "POST",
            "/requests",
            Some(SRE),
            Some(json!({"entitlement": "OnCallReadOnly", "justification": "INC-2 look at logs"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let ordinary = v["requestId"].as_str().unwrap();
    let (s, v) = l
        .api(
            "POST",
            &format!("/requests/{ordinary}/review"),
            Some(LEAD),
            Some(json!({"verdict": "justified", "reason": "fine"})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("not_break_glass")),
        "{v}"
    );
    l.app.shutdown().await;
}
