//! A fake Amazon Bedrock runtime on loopback, speaking Converse's wire
//! format (`POST /model/{modelId}/converse`, restJson1: a JSON body, errors
//! named by the `x-amzn-ErrorType` header), for tests of the AI policy
//! generator through the real SDK. moto does not implement Bedrock.
//!
//! It records every call (model id, whether it was SigV4-signed, the JSON
//! body) and answers from a queue of scripted answers, then a default one:
//! a text, an error, a stop reason, or a slow answer.
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

/// One Converse call the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct ConverseCall {
    /// The model id from the path, percent-decoded.
    pub model_id: String,
    /// An `Authorization: AWS4-HMAC-SHA256 …` header was sent.
    pub signed: bool,
    /// The request body (`messages`, `system`, `inferenceConfig`).
    pub body: Value,
}

impl ConverseCall {
    /// The system prompt's text.
    pub fn system(&self) -> String {
        self.body["system"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The (first) user message's text.
    pub fn user(&self) -> String {
        self.body["messages"][0]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// What the fake answers one call with.
#[derive(Debug, Clone, PartialEq)]
pub enum ConverseAnswer {
    /// The assistant's text, `stopReason: end_turn`.
    Text(String),
    /// The text with another stop reason (`max_tokens`, `guardrail_intervened`).
    Stopped { text: String, stop_reason: String },
    /// An error: HTTP status, `x-amzn-ErrorType`, message.
    Error {
        status: u16,
        error_type: String,
        message: String,
    },
    /// The text, after a delay.
    Slow(Duration, String),
}

struct State {
    calls: Vec<ConverseCall>,
    queue: VecDeque<ConverseAnswer>,
    default: ConverseAnswer,
}

/// The running fake; point the SDK at [`FakeBedrock::endpoint`].
pub struct FakeBedrock {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBedrock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeBedrock {
    /// Starts the fake; every call gets `default` unless answers are queued.
    pub async fn start(default: ConverseAnswer) -> FakeBedrock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let addr = listener.local_addr().expect("a local address");
        let state = Arc::new(Mutex::new(State {
            calls: vec![],
            queue: VecDeque::new(),
            default,
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
        FakeBedrock { addr, state, task }
    }

    /// The endpoint URL (`JIT_BEDROCK_ENDPOINT`, `--bedrock-endpoint`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next call with `a` (before the default).
    pub fn push(&self, a: ConverseAnswer) {
        self.state
            .lock()
            .expect("fake bedrock lock")
            .queue
            .push_back(a);
    }

    pub fn set_default(&self, a: ConverseAnswer) {
        self.state.lock().expect("fake bedrock lock").default = a;
    }

    pub fn calls(&self) -> Vec<ConverseCall> {
        self.state.lock().expect("fake bedrock lock").calls.clone()
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

fn converse_output(text: &str, stop_reason: &str) -> Value {
    json!({
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 100, "outputTokens": 50, "totalTokens": 150},
        "metrics": {"latencyMs": 7}
    })
}

async fn answer(state: &Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
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
    let model = path
        .strip_prefix("/model/")
        .and_then(|rest| rest.strip_suffix("/converse"));
    let (Some(model), true) = (model, is_post) else {
        return reply(
            404,
            json!({"message": format!("the fake serves only POST /model/{{modelId}}/converse, not {path}")}),
            Some("UnknownOperationException"),
        );
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                400,
                json!({"message": format!("the body is not JSON: {e}")}),
                Some("ValidationException"),
            );
        }
    };
    let next = {
        let mut s = state.lock().expect("fake bedrock lock");
        s.calls.push(ConverseCall {
            model_id: percent_decode(model),
            signed,
            body,
        });
        s.queue.pop_front().unwrap_or_else(|| s.default.clone())
    };
    match next {
        ConverseAnswer::Text(t) => reply(200, converse_output(&t, "end_turn"), None),
        ConverseAnswer::Stopped { text, stop_reason } => {
            reply(200, converse_output(&text, &stop_reason), None)
        }
        ConverseAnswer::Error {
            status,
            error_type,
            message,
        } => reply(status, json!({"message": message}), Some(&error_type)),
        ConverseAnswer::Slow(d, t) => {
            tokio::time::sleep(d).await;
            reply(200, converse_output(&t, "end_turn"), None)
        }
    }
}
