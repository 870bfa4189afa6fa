//! The approval callback and the notifier over real use cases and a real
//! (SQLite) store, with in-memory fakes for Slack, mail and the workflow:
//! signed links, the confirmation page, Slack signatures and buttons,
//! quorum, channel failures. Every refusal is checked to change nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method};
use jit_api::ApiRequest;
use jit_approvals::slack::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_request};
use jit_approvals::{ApprovalNotifier, Approvals, Deferral, MailSettings};
use jit_core::channels::{ChannelError, ChatApi, ChatMessage, ChatMessageRef, Email, Mailer};
use jit_core::links::{LinkClaims, LinkKey, percent_encode};
use jit_core::ports::{
    ApprovalNotice, Clock, ManualClock, Notifier, NotifyError, RequestStore, Secret, Workflow,
    WorkflowError, WorkflowInput,
};
use jit_core::request::{Change, TaskToken};
use jit_core::service::{NewRequest, Settings};
use jit_core::{AccessRequest, AuthSource, Broker, Caller, Catalog, Principal, RequestId, Status};
use serde_json::{Value, json};

const SIGNING_SECRET: &str = "slack-signing-secret-for-tests-0001";
const CATALOG: &str = r##"
groups:
  leads: [lead@example.com, lead2@example.com]
  security: [sec@example.com]
slack_users:
  U0LEAD: lead@example.com
  U0ALICE: alice@example.com
  U0EVE: eve@example.com
  U0SEC: sec@example.com
entitlements:
  - name: Admin
    role_arn: "arn:aws:iam::123456789012:role/Admin"
    max_duration: 4h
    approvers:
      groups: [leads]
      emails: [lead@example.com]
      slack_channel: "#jit-approvals"
    approval_timeout: 1h
  - name: Prod
    role_arn: "arn:aws:iam::123456789012:role/Prod"
    approvers:
      groups: [leads, security]
      required_approvals: 2
      required_groups: [leads, security]
      slack_channel: "#prod-approvals"
"##;

// ----------------------------------------------------------------- fakes

#[derive(Default)]
struct FakeChat {
    posts: Mutex<Vec<(String, ChatMessage)>>,
    updates: Mutex<Vec<(ChatMessageRef, ChatMessage)>>,
    responses: Mutex<Vec<(String, Value)>>,
    fail_posts: Mutex<Option<ChannelError>>,
    user_info_delay: Mutex<Option<Duration>>,
}

#[async_trait]
impl ChatApi for FakeChat {
    async fn post_message(
        &self,
        channel: &str,
        m: &ChatMessage,
    ) -> Result<ChatMessageRef, ChannelError> {
        if let Some(e) = self.fail_posts.lock().unwrap().clone() {
            return Err(e);
        }
        let mut posts = self.posts.lock().unwrap();
        posts.push((channel.to_string(), m.clone()));
        Ok(ChatMessageRef {
            channel: "C0CHAN".into(),
            ts: format!("1700000000.{:06}", posts.len()),
        })
    }
    async fn update_message(
        &self,
        at: &ChatMessageRef,
        m: &ChatMessage,
    ) -> Result<(), ChannelError> {
        self.updates.lock().unwrap().push((at.clone(), m.clone()));
        Ok(())
    }
    async fn user_email(&self, user_id: &str) -> Result<Option<String>, ChannelError> {
        let delay = *self.user_info_delay.lock().unwrap();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        Ok((user_id == "U0MAPLESS").then(|| "lead2@example.com".to_string()))
    }
    async fn respond(&self, url: &str, body: &Value) -> Result<(), ChannelError> {
        self.responses
            .lock()
            .unwrap()
            .push((url.to_string(), body.clone()));
        Ok(())
    }
}

#[derive(Default)]
struct FakeMail {
    sent: Mutex<Vec<Email>>,
    fail: Mutex<Option<ChannelError>>,
}

#[async_trait]
impl Mailer for FakeMail {
    async fn send(&self, mail: &Email) -> Result<(), ChannelError> {
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        self.sent.lock().unwrap().push(mail.clone());
        Ok(())
    }
}

#[derive(Default)]
struct FakeWorkflow {
    successes: Mutex<Vec<Value>>,
    failures: Mutex<Vec<String>>,
}

#[async_trait]
impl Workflow for FakeWorkflow {
    async fn start(&self, _: &WorkflowInput) -> Result<(), WorkflowError> {
        Ok(())
    }
    async fn stop(&self, _: &RequestId, _: &str) -> Result<(), WorkflowError> {
        Ok(())
    }
    async fn send_task_success(&self, _: &TaskToken, output: &Value) -> Result<(), WorkflowError> {
        self.successes.lock().unwrap().push(output.clone());
        Ok(())
    }
    async fn send_task_failure(
        &self,
        _: &TaskToken,
        error: &str,
        _: &str,
    ) -> Result<(), WorkflowError> {
        self.failures.lock().unwrap().push(error.to_string());
        Ok(())
    }
    async fn history(&self, _: &RequestId) -> Result<Vec<Value>, WorkflowError> {
        Ok(vec![])
    }
}

// --------------------------------------------------------------- harness

struct World {
    app: Arc<Approvals>,
    clock: Arc<ManualClock>,
    chat: Arc<FakeChat>,
    mail: Arc<FakeMail>,
    workflow: Arc<FakeWorkflow>,
    key: LinkKey,
}

fn world() -> World {
    let clock = Arc::new(ManualClock::new(
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    ));
    let store: Arc<dyn RequestStore> =
        Arc::new(jit_store_sqlite::SqliteStore::in_memory().unwrap());
    let catalog = Arc::new(Catalog::parse(CATALOG, "catalog.yaml").unwrap());
    let workflow = Arc::new(FakeWorkflow::default());
    let chat = Arc::new(FakeChat::default());
    let mail = Arc::new(FakeMail::default());
    let key = LinkKey::from_secret("link-key-for-tests-0123456789abcdef").unwrap();
    let broker = Broker {
        store: store.clone(),
        workflow: workflow.clone(),
        catalog: catalog.clone(),
        clock: clock.clone(),
        settings: Settings::default(),
        grants: None,
        policy: None,
    };
    let notifier = ApprovalNotifier {
        store,
        catalog,
        clock: clock.clone(),
        links: key.clone(),
        public_url: "http://127.0.0.1:3000".into(),
        chat: Some(chat.clone()),
        mail: Some(MailSettings {
            mailer: mail.clone(),
            from: "jit@example.com".into(),
        }),
    };
    World {
        app: Arc::new(Approvals {
            broker,
            notifier,
            slack_signing_secret: Some(Secret::new(SIGNING_SECRET)),
            deferral: Deferral::InProcess,
        }),
        clock,
        chat,
        mail,
        workflow,
        key,
    }
}

impl World {
    fn broker(&self) -> &Broker {
        &self.app.broker
    }

    /// A request by `who` for `entitlement`, moved to APPROVAL_PENDING with
    /// a task token (as the notify step does), and the approvers notified.
    async fn pending(&self, who: &str, entitlement: &str) -> AccessRequest {
        let caller = Caller::person(Principal::parse(who).unwrap(), AuthSource::Jwt, vec![]);
        let (r, _) = self
            .broker()
            .create(
                &caller,
                NewRequest {
                    entitlement: Some(entitlement.into()),
                    entitlement_field: "entitlement",
                    justification: Some("INC-42 <b>db</b> & failover".into()),
                    justification_required: true,
                    ..NewRequest::default()
                },
            )
            .await
            .unwrap();
        let change = Change {
            actor: "system:workflow".into(),
            at: self.clock.now(),
            reason: None,
            source: "workflow",
        };
        let (v, e) = r.transition(Status::Validating, &change).unwrap();
        self.broker().store.transition(&r, &v, &e).await.unwrap();
        let (mut p, e) = v.transition(Status::ApprovalPending, &change).unwrap();
        p.task_token = Some(TaskToken::parse("token-123").unwrap());
        self.broker().store.transition(&v, &p, &e).await.unwrap();
        let approvers = self
            .broker()
            .catalog
            .get(entitlement)
            .unwrap()
            .approvers
            .clone();
        let mut shown = p.clone();
        shown.task_token = None;
        let notice = ApprovalNotice {
            request: shown,
            approvers,
            deadline: self.clock.now() + chrono::Duration::hours(1),
        };
        self.app.notifier.approval_requested(&notice).await.unwrap();
        self.get(&p.request_id).await
    }

    async fn get(&self, id: &RequestId) -> AccessRequest {
        self.broker().store.get(id).await.unwrap().unwrap()
    }

    async fn trail(&self, id: &RequestId) -> Vec<String> {
        self.broker()
            .store
            .audit_events(id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.reason.unwrap_or_default())
            .collect()
    }

    fn link_for(&self, id: &RequestId, approver: &str, expires_in_secs: i64) -> String {
        let claims = LinkClaims::new(
            id.clone(),
            Principal::parse(approver).unwrap(),
            self.clock.now() + chrono::Duration::seconds(expires_in_secs),
        );
        self.key.sign(&claims)
    }

    /// The link the email to `to` carried (path and query).
    fn emailed_link(&self, to: &str) -> (String, String) {
        let sent = self.mail.sent.lock().unwrap();
        let mail = sent
            .iter()
            .rev()
            .find(|m| m.to == to)
            .expect("an email to them");
        let url = mail
            .text
            .lines()
            .find(|l| l.starts_with("http://127.0.0.1:3000/approvals/"))
            .expect("a link in the text part");
        assert!(
            mail.html.contains(&url.replace('&', "&amp;")),
            "the HTML part carries it too"
        );
        let rest = url.trim_start_matches("http://127.0.0.1:3000");
        let (path, query) = rest.split_once('?').unwrap();
        (path.to_string(), query.to_string())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        headers: HeaderMap,
        body: &str,
    ) -> (u16, String) {
        let resp = self
            .app
            .handle(ApiRequest {
                method,
                path: path.to_string(),
                query: query.map(str::to_string),
                headers,
                body: Bytes::from(body.to_string()),
            })
            .await;
        (resp.status().as_u16(), resp.body().clone())
    }

    async fn open(&self, path: &str, query: &str) -> (u16, String) {
        self.call(Method::GET, path, Some(query), HeaderMap::new(), "")
            .await
    }

    async fn decide(&self, path: &str, query: &str, decision: &str, reason: &str) -> (u16, String) {
        let body = format!(
            "{query}&decision={decision}&reason={}",
            percent_encode(reason)
        );
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        self.call(Method::POST, path, None, h, &body).await
    }

    fn slack_headers(&self, body: &str, at: i64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TIMESTAMP_HEADER, at.to_string().parse().unwrap());
        h.insert(
            SIGNATURE_HEADER,
            sign_request(SIGNING_SECRET, at, body.as_bytes())
                .parse()
                .unwrap(),
        );
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        h
    }

    /// A button press body; like Slack's, each has its own `response_url`
    /// and `trigger_id`.
    fn button(&self, user: &str, action: &str, id: &RequestId, reason: Option<&str>) -> String {
        let n = next_delivery();
        let mut payload = json!({
            "type": "block_actions",
            "user": {"id": user},
            "trigger_id": format!("trigger-{n}"),
            "response_url": format!("https://hooks.slack.test/{user}/{n}"),
            "container": {"type": "message", "channel_id": "C0CHAN", "message_ts": "1700000000.000001"},
            "actions": [{"action_id": action, "value": id.as_str()}],
        });
        if let Some(r) = reason {
            payload["state"] = json!({"values": {"jit_reason": {"reason": {"value": r}}}});
        }
        format!("payload={}", percent_encode(&payload.to_string()))
    }

    async fn press(
        &self,
        user: &str,
        action: &str,
        id: &RequestId,
        reason: Option<&str>,
    ) -> (u16, Value) {
        let body = self.button(user, action, id, reason);
        let h = self.slack_headers(&body, self.clock.now().timestamp());
        let before = self.chat.responses.lock().unwrap().len();
        let (status, text) = self
            .call(Method::POST, "/slack/interactions", None, h, &body)
            .await;
        assert_eq!(
            (status, text.as_str()),
            (200, ""),
            "acknowledged with an empty 200"
        );
        // The work is deferred: wait for its answer through response_url.
        for _ in 0..200 {
            if self.chat.responses.lock().unwrap().len() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let responses = self.chat.responses.lock().unwrap();
        let (url, body) = responses
            .get(before)
            .cloned()
            .expect("an answer through response_url");
        assert!(
            url.starts_with(&format!("https://hooks.slack.test/{user}/")),
            "{url}"
        );
        (status, body)
    }
}

/// A number no other Slack delivery of this test binary has.
fn next_delivery() -> usize {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A `/jit` invocation body, with its own `trigger_id` and `response_url`.
fn slash(user: &str, text: &str) -> String {
    let n = next_delivery();
    format!(
        "command=%2Fjit&user_id={user}&text={}&trigger_id=trigger-{n}&response_url={}",
        percent_encode(text),
        percent_encode(&format!("https://hooks.slack.test/{user}/{n}"))
    )
}

fn text_of(v: &Value) -> String {
    v["text"].as_str().unwrap_or_default().to_string()
}

// ----------------------------------------------------------------- tests

#[tokio::test]
async fn approvers_get_a_slack_message_and_one_email_each_with_a_personal_link() {
    let w = world();
    let r = w.pending("alice@example.com", "Admin").await;
    // THEN one Slack message in the entitlement's channel, with the buttons
    let posts = w.chat.posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].0, "#jit-approvals");
    let blocks = posts[0].1.blocks.to_string();
    for needle in [
        "jit_approve",
        "jit_deny",
        "jit_open_page",
        "alice@example.com",
        "123456789012",
        "INC-42 &lt;b&gt;db&lt;/b&gt; &amp; failover",
    ] {
        assert!(blocks.contains(needle), "{needle} in {blocks}");
    }
    // AND one email per approver (the listed one and the group's members),
    // none to the requester, each with its own link
    let mut to: Vec<String> = w
        .mail
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.to.clone())
        .collect();
    to.sort();
    assert_eq!(to, ["lead2@example.com", "lead@example.com"]);
    assert_ne!(
        w.emailed_link("lead@example.com"),
        w.emailed_link("lead2@example.com")
    );
    // AND the record says where the notice went
    let n = r.notice.expect("notice state");
    assert_eq!(n.slack.unwrap().channel, "C0CHAN");
    assert_eq!(n.delivered.len(), 3);
    assert!(
        w.trail(&r.request_id)
            .await
            .iter()
            .any(|t| t.starts_with("approvers notified: slack:#jit-approvals"))
    );
}

#[tokio::test]
async fn the_emailed_link_opens_a_page_and_approves_once() {
    let w = world();
    let r = w.pending("alice@example.com", "Admin").await;
    let (path, query) = w.emailed_link("lead@example.com");
    // WHEN the link is opened (as a mail scanner or a person would)
    let (status, page) = w.open(&path, &query).await;
    // THEN it shows the request and the choice, and changes nothing
    assert_eq!(status, 200);
    for needle in [
        "<form method=\"post\"",
        "name=\"reason\"",
        "value=\"approve\"",
        "value=\"deny\"",
        "alice@example.com",
        "INC-42 &lt;b&gt;db&lt;/b&gt; &amp; failover",
        "<label for=\"reason\"",
    ] {
        assert!(page.contains(needle), "{needle}");
    }
    let after_get = w.get(&r.request_id).await;
    assert_eq!(after_get, r, "a GET changes nothing");
    // WHEN the approver approves on the page
    let (status, page) = w.decide(&path, &query, "approve", "looks fine").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Approved"), "{page}");
    // THEN the decision is recorded with the link's nonce and the task completes
    let after = w.get(&r.request_id).await;
    assert_eq!(after.decisions.len(), 1);
    assert_eq!(after.decisions[0].via.as_deref(), Some("link"));
    assert_eq!(after.used_link_nonces.len(), 1);
    assert_eq!(w.workflow.successes.lock().unwrap().len(), 1);
    // AND the Slack message shows the outcome (no buttons)
    let updates = w.chat.updates.lock().unwrap().clone();
    let last = updates
        .last()
        .expect("the message was updated")
        .1
        .blocks
        .to_string();
    assert!(
        last.contains("Approved")
            && last.contains("lead@example.com")
            && !last.contains("jit_approve"),
        "{last}"
    );
    // AND the same link, replayed, is refused with nothing changed
    for (method, (status, page)) in [
        ("GET", w.open(&path, &query).await),
        ("POST", w.decide(&path, &query, "approve", "again").await),
        (
            "POST deny",
            w.decide(&path, &query, "deny", "changed my mind").await,
        ),
    ] {
        assert_eq!(status, 409, "{method}: {page}");
        assert!(page.contains("already used"), "{method}: {page}");
    }
    assert_eq!(w.get(&r.request_id).await, after);
    assert_eq!(w.workflow.successes.lock().unwrap().len(), 1);
}

/// A form-encoded header map, plus `extra`.
fn form_headers(extra: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    for (k, v) in extra {
        h.insert(*k, v.parse().unwrap());
    }
    h
}

#[tokio::test]
async fn the_decision_post_takes_the_form_body_only_and_refuses_other_sites() {
    let w = world();
    let r = w.pending("alice@example.com", "Admin").await;
    let (path, query) = w.emailed_link("lead@example.com");
    let form = format!("{query}&decision=approve&reason=ok");
    let mut json_headers = HeaderMap::new();
    json_headers.insert("content-type", "application/json".parse().unwrap());
    let as_json = serde_json::to_string(
        &jit_core::links::parse_form(&form)
            .unwrap()
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap();
    // (what, query, headers, body, status, words on the page)
    type Case<'a> = (&'a str, Option<&'a str>, HeaderMap, String, u16, &'a str);
    let refused: Vec<Case> = vec![
        (
            "the link's fields in the query, the decision in the body",
            Some(query.as_str()),
            form_headers(&[]),
            "decision=approve&reason=ok".into(),
            400,
            "never from the address",
        ),
        (
            "everything in the query",
            Some(form.as_str()),
            form_headers(&[]),
            String::new(),
            400,
            "never from the address",
        ),
        (
            "a JSON body",
            None,
            json_headers,
            as_json,
            415,
            "x-www-form-urlencoded",
        ),
        (
            "no content type",
            None,
            HeaderMap::new(),
            form.clone(),
            415,
            "x-www-form-urlencoded",
        ),
        (
            "posted from another site",
            None,
            form_headers(&[("origin", "https://evil.example")]),
            form.clone(),
            403,
            "another site",
        ),
        (
            "an opaque origin",
            None,
            form_headers(&[("origin", "null")]),
            form.clone(),
            403,
            "another site",
        ),
        (
            "the same port-less host",
            None,
            form_headers(&[("origin", "http://127.0.0.1")]),
            form.clone(),
            403,
            "another site",
        ),
        (
            "a field twice",
            None,
            form_headers(&[]),
            format!("{form}&decision=deny"),
            400,
            "`decision` twice",
        ),
    ];
    for (what, q, headers, body, status, words) in refused {
        let (s, page) = w.call(Method::POST, &path, q, headers, &body).await;
        assert_eq!(s, status, "{what}: {page}");
        assert!(page.contains(words), "{what}: {page}");
        assert_eq!(w.get(&r.request_id).await, r, "{what}: nothing changed");
    }
    assert!(w.workflow.successes.lock().unwrap().is_empty());
    // WHEN the page's own form is posted from the configured origin
    let (s, page) = w
        .call(
            Method::POST,
            &path,
            None,
            form_headers(&[("origin", "http://127.0.0.1:3000")]),
            &form,
        )
        .await;
    // THEN it decides
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Approved"), "{page}");
    assert_eq!(w.workflow.successes.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn forged_moved_tampered_and_late_links_are_refused_with_nothing_changed() {
    let w = world();
    let a = w.pending("alice@example.com", "Admin").await;
    let b = w.pending("bob@example.com", "Admin").await;
    let (path_a, query_a) = w.emailed_link("lead@example.com");
    let swap = |q: &str, field: &str, value: &str| -> String {
        q.split('&')
            .map(|kv| {
                if kv.starts_with(&format!("{field}=")) {
                    format!("{field}={value}")
                } else {
                    kv.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    };
    let path_of = |r: &AccessRequest| format!("/approvals/{}", r.request_id);
    // the newest email to lead is for b; build a's link explicitly
    let query_a = if path_a == path_of(&a) {
        query_a
    } else {
        w.link_for(&a.request_id, "lead@example.com", 3600)
    };
    let later = (w.clock.now() + chrono::Duration::hours(5))
        .timestamp()
        .to_string();
    let cases: Vec<(&str, String, String, u16)> = vec![
        ("a link for A used on B", path_of(&b), query_a.clone(), 403),
        (
            "a tampered approver",
            path_of(&a),
            swap(&query_a, "a", "lead2%40example.com"),
            403,
        ),
        (
            "a tampered expiry",
            path_of(&a),
            swap(&query_a, "e", &later),
            403,
        ),
        (
            "a forged signature",
            path_of(&a),
            swap(&query_a, "s", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            403,
        ),
        (
            "a link signed for the requester",
            path_of(&a),
            w.link_for(&a.request_id, "alice@example.com", 3600),
            403,
        ),
        (
            "a link signed for a non-approver",
            path_of(&a),
            w.link_for(&a.request_id, "eve@example.com", 3600),
            403,
        ),
        (
            "an incomplete link",
            path_of(&a),
            "a=lead%40example.com".to_string(),
            400,
        ),
    ];
    for (what, path, query, want) in cases {
        let (status, page) = w.decide(&path, &query, "approve", "x").await;
        assert_eq!(status, want, "{what}: {page}");
        let (status, _) = w.open(&path, &query).await;
        assert_eq!(status, want, "{what} (GET)");
    }
    assert_eq!(w.get(&a.request_id).await, a, "A unchanged");
    assert_eq!(w.get(&b.request_id).await, b, "B unchanged");
    // AND after the window, even a genuine link is refused
    let genuine = w.link_for(&a.request_id, "lead@example.com", 3600);
    w.clock.advance(chrono::Duration::seconds(3601));
    let (status, page) = w.decide(&path_of(&a), &genuine, "approve", "late").await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("expired"), "{page}");
    assert_eq!(w.get(&a.request_id).await, a);
    assert!(w.workflow.successes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn quorum_of_two_needs_one_from_each_group_and_any_deny_rejects() {
    let w = world();
    let r = w.pending("alice@example.com", "Prod").await;
    let id = &r.request_id;
    let path = format!("/approvals/{id}");
    // WHEN one lead approves
    let (s, page) = w
        .decide(
            &path,
            &w.link_for(id, "lead@example.com", 3600),
            "approve",
            "ok",
        )
        .await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("still waits"), "{page}");
    // THEN it is still pending and the workflow is not resumed
    assert_eq!(w.get(id).await.status, Status::ApprovalPending);
    assert!(w.workflow.successes.lock().unwrap().is_empty());
    // AND a second lead does not make a security approval
    let (s, _) = w
        .decide(
            &path,
            &w.link_for(id, "lead2@example.com", 3600),
            "approve",
            "ok",
        )
        .await;
    assert_eq!(s, 200);
    assert!(
        w.workflow.successes.lock().unwrap().is_empty(),
        "still needs security"
    );
    let text = w
        .chat
        .updates
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .1
        .blocks
        .to_string();
    assert!(
        text.contains("security") && text.contains("jit_approve"),
        "progress shown, buttons kept: {text}"
    );
    // WHEN security approves, the quorum is met and the workflow resumes
    let (s, _) = w
        .decide(
            &path,
            &w.link_for(id, "sec@example.com", 3600),
            "approve",
            "ok",
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(w.workflow.successes.lock().unwrap().len(), 1);
    assert!(w.get(id).await.decided_at.is_some());

    // AND on another request a deny after one approval rejects it
    let r2 = w.pending("bob@example.com", "Prod").await;
    let path2 = format!("/approvals/{}", r2.request_id);
    w.decide(
        &path2,
        &w.link_for(&r2.request_id, "lead@example.com", 3600),
        "approve",
        "ok",
    )
    .await;
    let (s, page) = w
        .decide(
            &path2,
            &w.link_for(&r2.request_id, "sec@example.com", 3600),
            "deny",
            "",
        )
        .await;
    assert_eq!(s, 400, "a deny needs a reason: {page}");
    let (s, _) = w
        .decide(
            &path2,
            &w.link_for(&r2.request_id, "sec@example.com", 3600),
            "deny",
            "not during the freeze",
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(w.get(&r2.request_id).await.status, Status::Denied);
    assert_eq!(w.workflow.failures.lock().unwrap().as_slice(), ["Denied"]);
}

#[tokio::test]
async fn slack_buttons_decide_and_refusals_are_ephemeral() {
    let w = world();
    let r = w.pending("alice@example.com", "Admin").await;
    let id = &r.request_id;
    // self-approval, a non-approver, a deny without reason: refused, nothing changes
    for (user, action, reason, needle) in [
        (
            "U0ALICE",
            "jit_approve",
            None,
            "cannot decide your own request",
        ),
        ("U0EVE", "jit_approve", None, "not an approver"),
        ("U0LEAD", "jit_deny", None, "Type a reason in the box"),
    ] {
        let (_, answer) = w.press(user, action, id, reason).await;
        assert_eq!(answer["response_type"], "ephemeral");
        assert!(text_of(&answer).contains(needle), "{user}: {answer}");
        assert_eq!(w.get(id).await, r, "{user}: nothing changed");
    }
    // "Open approval page" gives the approver a personal link, privately
    let (_, answer) = w.press("U0LEAD", "jit_open_page", id, None).await;
    assert_eq!(answer["response_type"], "ephemeral");
    assert!(
        text_of(&answer).contains(&format!("/approvals/{id}?a=lead%40example.com")),
        "{answer}"
    );
    // an approver (mapped by the catalog) approves
    let (_, answer) = w.press("U0LEAD", "jit_approve", id, Some("go")).await;
    assert!(text_of(&answer).contains("Approved"), "{answer}");
    let after = w.get(id).await;
    assert_eq!(after.decisions[0].via.as_deref(), Some("slack"));
    assert_eq!(after.decisions[0].approver.as_str(), "lead@example.com");
    assert_eq!(w.workflow.successes.lock().unwrap().len(), 1);
    let (at, msg) = w.chat.updates.lock().unwrap().last().cloned().unwrap();
    assert_eq!(at.channel, "C0CHAN");
    assert!(
        msg.blocks.to_string().contains("Approved"),
        "the message shows it"
    );
    // and a second press is "already decided"
    let (_, answer) = w.press("U0LEAD", "jit_approve", id, None).await;
    assert!(text_of(&answer).contains("Already decided"), "{answer}");
}

#[tokio::test]
async fn slack_refuses_expired_requests() {
    let w = world();
    let r = w.pending("alice@example.com", "Admin").await;
    let change = Change {
        actor: "system:workflow".into(),
        at: w.clock.now(),
        reason: None,
        source: "workflow",
    };
    let (t, e) = r.transition(Status::ApprovalTimedOut, &change).unwrap();
    w.broker().store.transition(&r, &t, &e).await.unwrap();
    let (_, answer) = w.press("U0LEAD", "jit_approve", &r.request_id, None).await;
    assert!(text_of(&answer).contains("expired"), "{answer}");
    assert_eq!(w.get(&r.request_id).await, t);
}

#[tokio::test]
async fn forged_and_stale_slack_requests_are_refused_before_parsing() {
    let w = world();
    let r = w.pending("alice@example.com", "Admin").await;
    let body = w.button("U0LEAD", "jit_approve", &r.request_id, None);
    let now = w.clock.now().timestamp();
    let mut forged = w.slack_headers(&body, now);
    forged.insert(
        SIGNATURE_HEADER,
        sign_request("not-the-secret", now, body.as_bytes())
            .parse()
            .unwrap(),
    );
    let stale = w.slack_headers(&body, now - 301);
    for (what, h) in [
        ("forged", forged),
        ("stale", stale),
        ("unsigned", HeaderMap::new()),
    ] {
        for path in ["/slack/interactions", "/slack/commands"] {
            let (status, _) = w.call(Method::POST, path, None, h.clone(), &body).await;
            assert_eq!(status, 401, "{what} {path}");
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(w.get(&r.request_id).await, r);
    assert!(
        w.chat.responses.lock().unwrap().is_empty(),
        "nothing was run"
    );
}

#[tokio::test]
async fn slack_is_answered_at_once_even_when_a_lookup_is_slow() {
    let w = world();
    let r = w.pending("alice@example.com", "Admin").await;
    // GIVEN a Slack user only users.info knows, and a users.info that takes 4 s
    *w.chat.user_info_delay.lock().unwrap() = Some(Duration::from_secs(4));
    let body = w.button("U0MAPLESS", "jit_approve", &r.request_id, None);
    let h = w.slack_headers(&body, w.clock.now().timestamp());
    // WHEN the button is pressed
    let started = std::time::Instant::now();
    let (status, _) = w
        .call(Method::POST, "/slack/interactions", None, h, &body)
        .await;
    // THEN Slack gets its 200 well within 3 seconds
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // AND the decision lands, and the message is updated, once the lookup answers
    for _ in 0..100 {
        if !w.workflow.successes.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(w.workflow.successes.lock().unwrap().len(), 1);
    let after = w.get(&r.request_id).await;
    assert_eq!(after.decisions[0].approver.as_str(), "lead2@example.com");
    assert!(!w.chat.updates.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_slack_still_sends_email_and_the_failure_is_audited() {
    let w = world();
    *w.chat.fail_posts.lock().unwrap() = Some(ChannelError::Transient(
        "slack chat.postMessage: HTTP 503".into(),
    ));
    let r = w.pending("alice@example.com", "Admin").await;
    assert_eq!(w.mail.sent.lock().unwrap().len(), 2, "email still went out");
    let trail = w.trail(&r.request_id).await;
    assert!(
        trail.iter().any(
            |t| t.contains("approval notice via slack:#jit-approvals failed") && t.contains("503")
        ),
        "{trail:?}"
    );
    let n = r.notice.unwrap();
    assert_eq!(n.failed, ["slack:#jit-approvals"]);
    assert!(n.slack.is_none());
}

#[tokio::test]
async fn every_channel_failing_is_transient_and_a_retry_skips_what_went_out() {
    let w = world();
    *w.chat.fail_posts.lock().unwrap() = Some(ChannelError::Transient("slack: HTTP 503".into()));
    *w.mail.fail.lock().unwrap() = Some(ChannelError::Transient("SendEmail: Throttling".into()));
    let caller = Caller::person(
        Principal::parse("alice@example.com").unwrap(),
        AuthSource::Jwt,
        vec![],
    );
    let (r, _) = w
        .broker()
        .create(
            &caller,
            NewRequest {
                entitlement: Some("Admin".into()),
                entitlement_field: "entitlement",
                justification: Some("x".into()),
                justification_required: true,
                ..NewRequest::default()
            },
        )
        .await
        .unwrap();
    let notice = ApprovalNotice {
        request: r.clone(),
        approvers: w.broker().catalog.get("Admin").unwrap().approvers.clone(),
        deadline: w.clock.now() + chrono::Duration::hours(1),
    };
    let err = w
        .app
        .notifier
        .approval_requested(&notice)
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Transient(_)), "{err:?}");
    // WHEN only Slack recovers and the step is retried
    *w.chat.fail_posts.lock().unwrap() = None;
    w.app.notifier.approval_requested(&notice).await.unwrap();
    // AND then everything works and it is retried again (at-least-once delivery)
    *w.mail.fail.lock().unwrap() = None;
    w.app.notifier.approval_requested(&notice).await.unwrap();
    w.app.notifier.approval_requested(&notice).await.unwrap();
    // THEN Slack was posted once and each approver emailed once
    assert_eq!(w.chat.posts.lock().unwrap().len(), 1);
    assert_eq!(w.mail.sent.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn reminders_follow_the_interval_and_stop_after_the_limit() {
    let w = world();
    let r = w.pending("alice@example.com", "Admin").await;
    let local = jit_approvals::reminders::sweep;
    // nothing is due before 15 minutes
    w.clock.advance(chrono::Duration::minutes(14));
    assert_eq!(local(&w.app.notifier).await.unwrap().reminded, 0);
    w.clock.advance(chrono::Duration::minutes(1));
    assert_eq!(local(&w.app.notifier).await.unwrap().reminded, 1);
    assert_eq!(
        w.chat.posts.lock().unwrap().len(),
        2,
        "a new message with the buttons"
    );
    let superseded = w
        .chat
        .updates
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .1
        .blocks
        .to_string();
    assert!(
        superseded.contains("reminder") && !superseded.contains("jit_approve"),
        "{superseded}"
    );
    assert!(
        w.mail
            .sent
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .subject
            .starts_with("Reminder:")
    );
    // three reminders at most (the default), and none after the window
    for _ in 0..5 {
        w.clock.advance(chrono::Duration::minutes(15));
        local(&w.app.notifier).await.unwrap();
    }
    let n = w.get(&r.request_id).await.notice.unwrap();
    assert_eq!(n.round, 3);
    assert_eq!(w.chat.posts.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn deferred_jobs_run_only_with_a_valid_recent_tag() {
    let w = world();
    let r = w.pending("alice@example.com", "Admin").await;
    let job = jit_approvals::Job::SlackInteraction {
        body: w.button("U0LEAD", "jit_approve", &r.request_id, None),
    };
    let envelope = w.app.signed_job(&job);
    assert!(Approvals::is_deferred_job(&envelope));
    // a changed job, a forged tag, an old envelope: refused, nothing runs
    let mut changed = envelope.clone();
    changed["jitDeferred"]["body"] = json!(w.button("U0EVE", "jit_approve", &r.request_id, None));
    let mut forged = envelope.clone();
    forged["tag"] = json!("AAAA");
    for bad in [changed, forged] {
        assert!(w.app.run_signed_job(&bad).await.is_err());
    }
    w.clock.advance(chrono::Duration::minutes(16));
    assert!(w.app.run_signed_job(&envelope).await.is_err(), "too old");
    assert_eq!(w.get(&r.request_id).await, r);
    // a fresh, genuine one runs the decision
    let envelope = w.app.signed_job(&job);
    w.app.run_signed_job(&envelope).await.unwrap();
    assert_eq!(w.get(&r.request_id).await.decisions.len(), 1);
    let answered = w.chat.responses.lock().unwrap().len();
    // delivered again (Lambda's asynchronous invocations are at least once): nothing runs
    w.app.run_signed_job(&envelope).await.unwrap();
    assert_eq!(
        w.chat.responses.lock().unwrap().len(),
        answered,
        "not run twice"
    );
    assert_eq!(w.get(&r.request_id).await.decisions.len(), 1);
}

/// Waits until Slack's `response_url`s were answered `n` times in all.
async fn responses(w: &World, n: usize) -> Vec<(String, Value)> {
    for _ in 0..500 {
        if w.chat.responses.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    w.chat.responses.lock().unwrap().clone()
}

#[tokio::test]
async fn a_replayed_slash_command_creates_no_second_request() {
    let w = world();
    let alice = Principal::parse("alice@example.com").unwrap();
    let count = || async {
        w.broker()
            .store
            .list_by_requester(&alice, &jit_core::ports::PageRequest::first(10))
            .await
            .unwrap()
            .items
            .len()
    };
    // GIVEN a signed `/jit request` as Slack sent it
    let body = slash("U0ALICE", "request Admin 1h INC-7 failover");
    let h = w.slack_headers(&body, w.clock.now().timestamp());
    let (status, first) = w
        .call(Method::POST, "/slack/commands", None, h.clone(), &body)
        .await;
    assert_eq!(status, 200);
    assert!(first.contains("working on it"), "{first}");
    let done = responses(&w, 1).await;
    assert!(done[0].1.to_string().contains("Requested"), "{:?}", done[0]);
    assert_eq!(count().await, 1);
    // WHEN it is sent again: the same timestamp and signature
    let (status, again) = w
        .call(Method::POST, "/slack/commands", None, h, &body)
        .await;
    // THEN it is answered "already received" and runs nothing
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&again).unwrap();
    assert!(text_of(&v).contains("Already received"), "{v}");
    assert_eq!(v["response_type"], "ephemeral");
    // AND so is the same body re-signed later (same trigger_id and response_url)
    w.clock.advance(chrono::Duration::seconds(30));
    let h = w.slack_headers(&body, w.clock.now().timestamp());
    let (_, again) = w
        .call(Method::POST, "/slack/commands", None, h, &body)
        .await;
    assert!(again.contains("Already received"), "{again}");
    // AND a new invocation reusing only the response_url
    let reused = body.replace("trigger_id=trigger-", "trigger_id=other-");
    let h = w.slack_headers(&reused, w.clock.now().timestamp());
    let (_, again) = w
        .call(Method::POST, "/slack/commands", None, h, &reused)
        .await;
    assert!(again.contains("Already received"), "{again}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(count().await, 1, "one request, however often it was sent");
    assert_eq!(w.chat.responses.lock().unwrap().len(), 1);
    // AND a genuinely new command still works
    let body = slash("U0ALICE", "request Admin 1h INC-8 another");
    let h = w.slack_headers(&body, w.clock.now().timestamp());
    let (_, answer) = w
        .call(Method::POST, "/slack/commands", None, h, &body)
        .await;
    assert!(answer.contains("working on it"), "{answer}");
    responses(&w, 2).await;
    assert_eq!(count().await, 2);
}

#[tokio::test]
async fn a_replayed_button_press_decides_nothing_twice() {
    let w = world();
    let r = w.pending("alice@example.com", "Prod").await;
    // GIVEN lead's approval of a request that needs two, as Slack sent it
    let body = w.button("U0LEAD", "jit_approve", &r.request_id, None);
    let h = w.slack_headers(&body, w.clock.now().timestamp());
    let (status, text) = w
        .call(Method::POST, "/slack/interactions", None, h.clone(), &body)
        .await;
    assert_eq!((status, text.as_str()), (200, ""));
    responses(&w, 1).await;
    let once = w.get(&r.request_id).await;
    assert_eq!(once.decisions.len(), 1);
    // WHEN it is replayed, as sent and re-signed
    let (status, text) = w
        .call(Method::POST, "/slack/interactions", None, h, &body)
        .await;
    // THEN Slack gets the same empty 200 and nothing is decided or answered again
    assert_eq!((status, text.as_str()), (200, ""));
    w.clock.advance(chrono::Duration::seconds(5));
    let h = w.slack_headers(&body, w.clock.now().timestamp());
    let (status, _) = w
        .call(Method::POST, "/slack/interactions", None, h, &body)
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(w.chat.responses.lock().unwrap().len(), 1);
    let after = w.get(&r.request_id).await;
    assert_eq!(after.decisions, once.decisions);
    assert!(w.workflow.successes.lock().unwrap().is_empty());
}
