//! A fake IAM Access Analyzer on loopback, speaking `ValidatePolicy`'s wire
//! format (`POST /policy/validation?maxResults=&nextToken=`, restJson1), for
//! tests of the analyzer adapter through the real SDK. moto does not
//! implement `ValidatePolicy`.
//!
//! It records every call (the JSON body, the query, whether it was
//! SigV4-signed) and answers from a queue, then a default: findings (split
//! into pages when asked), or an error.
//!
//! Binds 127.0.0.1 only; stops when dropped, and in any case after ten
//! minutes.

use std::collections::VecDeque;
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

/// One `ValidatePolicy` call.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidateCall {
    pub signed: bool,
    /// The query string (`nextToken=…` on a later page).
    pub query: String,
    /// `policyDocument`, `policyType`, `locale`.
    pub body: Value,
}

/// A finding: `findingType` (`ERROR`, `SECURITY_WARNING`, `WARNING`,
/// `SUGGESTION`), `issueCode`, `findingDetails`.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeFinding {
    pub finding_type: String,
    pub issue_code: String,
    pub details: String,
}

impl FakeFinding {
    pub fn new(finding_type: &str, issue_code: &str, details: &str) -> Self {
        FakeFinding {
            finding_type: finding_type.into(),
            issue_code: issue_code.into(),
            details: details.into(),
        }
    }
}

/// What the fake answers one analysis with.
#[derive(Debug, Clone, PartialEq)]
pub enum ValidateAnswer {
    /// These findings, one per page when `paged` (so the adapter must
    /// follow `nextToken`).
    Findings {
        findings: Vec<FakeFinding>,
        paged: bool,
    },
    Error {
        status: u16,
        error_type: String,
        message: String,
    },
}

impl ValidateAnswer {
    pub fn clean() -> Self {
        ValidateAnswer::Findings {
            findings: vec![],
            paged: false,
        }
    }
}

struct State {
    calls: Vec<ValidateCall>,
    queue: VecDeque<ValidateAnswer>,
    default: ValidateAnswer,
    /// The findings still to page out, by token.
    pages: Vec<FakeFinding>,
}

pub struct FakeAccessAnalyzer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAccessAnalyzer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAccessAnalyzer {
    pub async fn start(default: ValidateAnswer) -> FakeAccessAnalyzer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let addr = listener.local_addr().expect("a local address");
        let state = Arc::new(Mutex::new(State {
            calls: vec![],
            queue: VecDeque::new(),
            default,
            pages: vec![],
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
        FakeAccessAnalyzer { addr, state, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next analysis with `a` (before the default).
    pub fn push(&self, a: ValidateAnswer) {
        self.state
            .lock()
            .expect("fake analyzer lock")
            .queue
            .push_back(a);
    }

    pub fn calls(&self) -> Vec<ValidateCall> {
        self.state.lock().expect("fake analyzer lock").calls.clone()
    }
}

fn reply(status: u16, body: Value, error_type: Option<&str>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).expect("a valid status");
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Some(t) = error_type
        && let Ok(v) = hyper::header::HeaderValue::from_str(t)
    {
        h.insert("x-amzn-errortype", v);
    }
    resp
}

fn finding_json(f: &FakeFinding) -> Value {
    let pos = json!({"line": 1, "column": 1, "offset": 1});
    json!({
        "findingDetails": f.details,
        "findingType": f.finding_type,
        "issueCode": f.issue_code,
        "learnMoreLink": format!("https://docs.aws.amazon.com/IAM/latest/UserGuide/access-analyzer-reference-policy-checks.html#{}", f.issue_code),
        "locations": [{"path": [{"value": "Statement"}, {"index": 0}], "span": {"start": pos, "end": pos}}]
    })
}

async fn answer(state: &Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let signed = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
    let is_post = req.method() == hyper::Method::POST;
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if path != "/policy/validation" || !is_post {
        return reply(
            404,
            json!({"message": format!("the fake serves only POST /policy/validation, not {path}")}),
            Some("ResourceNotFoundException"),
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return reply(
            400,
            json!({"message": "the body is not JSON"}),
            Some("ValidationException"),
        );
    };
    let mut s = state.lock().expect("fake analyzer lock");
    s.calls.push(ValidateCall {
        signed,
        query: query.clone(),
        body,
    });
    // A later page of a paged answer.
    if query.contains("nextToken=") {
        if s.pages.is_empty() {
            return reply(
                400,
                json!({"message": "unknown nextToken"}),
                Some("ValidationException"),
            );
        }
        let f = s.pages.remove(0);
        let more = !s.pages.is_empty();
        let mut out = json!({"findings": [finding_json(&f)]});
        if more {
            out["nextToken"] = json!("page-token");
        }
        return reply(200, out, None);
    }
    let next = s.queue.pop_front().unwrap_or_else(|| s.default.clone());
    match next {
        ValidateAnswer::Error {
            status,
            error_type,
            message,
        } => reply(status, json!({"message": message}), Some(&error_type)),
        ValidateAnswer::Findings { findings, paged } => {
            if paged && findings.len() > 1 {
                let first = finding_json(&findings[0]);
                s.pages = findings[1..].to_vec();
                reply(
                    200,
                    json!({"findings": [first], "nextToken": "page-token"}),
                    None,
                )
            } else {
                let all: Vec<Value> = findings.iter().map(finding_json).collect();
                reply(200, json!({"findings": all}), None)
            }
        }
    }
}
