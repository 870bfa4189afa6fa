//! The one way the in-process tests drive `jit-local`: a request through the
//! app's HTTP handler (API key check, local identity headers, the shared
//! router), then the engine run until nothing is runnable at the clock's
//! current time, so every test sees the workflow's effects at once.
#![allow(dead_code)] // each test file uses a different part

use bytes::Bytes;
use http_body_util::Full;
use jit_local::App;
use serde_json::Value;

/// Runs the engine until nothing is runnable at the current time.
pub async fn settle(app: &App) {
    app.engine()
        .expect("the app runs the local engine")
        .run_until_idle()
        .await
        .expect("engine runs");
}

/// Calls the API as `user` with the API key `key`; returns status and JSON,
/// after the engine has settled.
pub async fn call(
    app: &App,
    key: &str,
    method: &str,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("x-api-key", key)
        .header("x-jit-user", user);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let resp = app.serve_http(req.body(Full::new(body)).unwrap()).await;
    let status = resp.status().as_u16();
    let v: Value = serde_json::from_str(resp.body()).unwrap();
    settle(app).await;
    (status, v)
}
