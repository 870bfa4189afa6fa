//! A fake Slack Web API on loopback, for tests of the Slack adapter and of
//! `jit-local --slack-url`: it records every call (method, whether the bot
//! token was sent, JSON body), answers like Slack, and can be told to fail
//! (`chat.postMessage` down with a 503, or `ok: false` with a code) or to be
//! slow (`users.info`). It also serves `response_url`s: posts to
//! `<base>/respond/<anything>` are recorded as `respond`.
//!
//! Binds 127.0.0.1 only; stops when dropped, and in any case after ten
//! minutes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// One call the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackCall {
    /// `chat.postMessage`, `chat.update`, `users.info`, `respond`.
    pub method: String,
    /// The `Authorization` header exactly (for checking the token was sent).
    pub authorization: Option<String>,
    /// The JSON body, or the query as `{"query": …}` for GETs.
    pub body: Value,
}

/// How the fake misbehaves.
#[derive(Debug, Clone, Default)]
pub struct SlackBehaviour {
    /// `chat.postMessage` answers HTTP 503.
    pub post_unavailable: bool,
    /// `chat.postMessage` answers `{"ok": false, "error": <code>}`.
    pub post_error: Option<String>,
    /// `users.info` waits this long before answering.
    pub users_info_delay: Option<Duration>,
    /// `users.info` emails by user id; unknown users get no email.
    pub emails: Vec<(String, String)>,
}

struct State {
    calls: Vec<SlackCall>,
    behaviour: SlackBehaviour,
    next_ts: u64,
}

/// The running fake. Its Web API base URL is [`FakeSlack::api_url`].
pub struct FakeSlack {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSlack {
    pub async fn start(behaviour: SlackBehaviour) -> FakeSlack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let addr = listener.local_addr().expect("a local address");
        let state = Arc::new(Mutex::new(State {
            calls: vec![],
            behaviour,
            next_ts: 1,
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let serve = async {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let state = shared.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: Request<Incoming>| {
                            let state = state.clone();
                            async move { Ok::<_, std::convert::Infallible>(answer(&state, req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(600), serve).await;
        });
        FakeSlack { addr, state, task }
    }

    /// The Web API base (what `--slack-url` takes).
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// A `response_url` served by this fake.
    pub fn response_url(&self, name: &str) -> String {
        format!("http://{}/respond/{name}", self.addr)
    }

    pub fn calls(&self) -> Vec<SlackCall> {
        self.state.lock().expect("fake slack lock").calls.clone()
    }

    /// The calls of one method, in order.
    pub fn calls_to(&self, method: &str) -> Vec<SlackCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    pub fn set_behaviour(&self, behaviour: SlackBehaviour) {
        self.state.lock().expect("fake slack lock").behaviour = behaviour;
    }

    /// Waits (polling, up to `within`) until `method` was called `n` times.
    pub async fn wait_for(&self, method: &str, n: usize, within: Duration) -> Vec<SlackCall> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let calls = self.calls_to(method);
            if calls.len() >= n || tokio::time::Instant::now() >= deadline {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).expect("a valid status");
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn answer(state: &Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let authorization = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let method = if let Some(m) = path.strip_prefix("/api/") {
        m.to_string()
    } else if path.starts_with("/respond/") {
        "respond".to_string()
    } else {
        return reply(404, json!({"ok": false, "error": "unknown_method"}));
    };
    let json_body = if body.is_empty() {
        json!({ "query": query })
    } else {
        serde_json::from_slice(&body).unwrap_or(json!({ "raw": String::from_utf8_lossy(&body) }))
    };
    let (behaviour, ts) = {
        let mut s = state.lock().expect("fake slack lock");
        s.calls.push(SlackCall {
            method: method.clone(),
            authorization,
            body: json_body.clone(),
        });
        s.next_ts += 1;
        (s.behaviour.clone(), s.next_ts)
    };
    match method.as_str() {
        "chat.postMessage" => {
            if behaviour.post_unavailable {
                return reply(503, json!({"ok": false, "error": "service_unavailable"}));
            }
            if let Some(code) = behaviour.post_error {
                return reply(200, json!({"ok": false, "error": code}));
            }
            reply(
                200,
                json!({"ok": true, "channel": "C0FAKECHAN", "ts": format!("1700000000.{ts:06}")}),
            )
        }
        "chat.update" => reply(
            200,
            json!({"ok": true, "channel": json_body["channel"], "ts": json_body["ts"]}),
        ),
        "users.info" => {
            if let Some(d) = behaviour.users_info_delay {
                tokio::time::sleep(d).await;
            }
            let user = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("user="))
                .unwrap_or("");
            match behaviour.emails.iter().find(|(u, _)| u == user) {
                Some((_, email)) => reply(
                    200,
                    json!({"ok": true, "user": {"id": user, "profile": {"email": email}}}),
                ),
                None => reply(
                    200,
                    json!({"ok": true, "user": {"id": user, "profile": {}}}),
                ),
            }
        }
        "respond" => reply(200, json!({"ok": true})),
        _ => reply(200, json!({"ok": false, "error": "unknown_method"})),
    }
}
