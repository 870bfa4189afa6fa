//! The one way the in-process tests drive `jit-local`: a request through the
//! app's HTTP handler (API key check, local identity headers, the shared
//! router), then the engine run until nothing is runnable at the clock's
//! current time, so every test sees the workflow's effects at once.
//! [`binary`] is the other way: the real binary as a child process.
#![allow(dead_code)] // each test file uses a different part

pub mod bin;
pub mod binary;
pub mod served;

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

/// Sends one request as `user` with the API key `key` and returns the
/// whole response, leaving the engine as it is (for tests of what happens
/// before it runs).
pub async fn respond(
    app: &App,
    key: &str,
    method: &str,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> http::Response<String> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("x-api-key", key)
        .header("x-jit-user", user);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    app.serve_http(req.body(Full::new(body)).unwrap()).await
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
    call_as(app, key, method, path, Some(user), body).await
}

/// Like [`call`]; `user: None` sends no `x-jit-user`: the API key alone,
/// acting as the trusted caller it is.
pub async fn call_as(
    app: &App,
    key: &str,
    method: &str,
    path: &str,
    user: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut headers = vec![("x-api-key", key)];
    if let Some(user) = user {
        headers.push(("x-jit-user", user));
    }
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    send(app, method, path, &headers, body).await
}

/// Sends exactly these headers and body (a curl line from the README);
/// returns status and JSON, after the engine has settled.
pub async fn send(
    app: &App,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (u16, Value) {
    let mut req = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app.serve_http(req.body(Full::new(body)).unwrap()).await;
    let status = resp.status().as_u16();
    let v: Value = serde_json::from_str(resp.body()).unwrap();
    settle(app).await;
    (status, v)
}

/// The local issuer, keeping every `AssumeRole` it was asked for: tests see
/// the `DurationSeconds` and session policy the broker passed.
pub struct RecordingIssuer {
    inner: jit_local::grants::LocalIssuer,
    specs: std::sync::Mutex<Vec<jit_core::ports::AssumeRoleSpec>>,
}

impl RecordingIssuer {
    pub fn new(clock: std::sync::Arc<dyn jit_core::ports::Clock>) -> std::sync::Arc<Self> {
        std::sync::Arc::new(RecordingIssuer {
            inner: jit_local::grants::LocalIssuer::new(clock),
            specs: Default::default(),
        })
    }

    /// Every call so far, oldest first.
    pub fn specs(&self) -> Vec<jit_core::ports::AssumeRoleSpec> {
        self.specs.lock().unwrap().clone()
    }

    /// The latest call.
    pub fn last(&self) -> jit_core::ports::AssumeRoleSpec {
        self.specs().pop().expect("the issuer was called")
    }

    /// Overrides that put this issuer in place of the local one.
    pub fn overrides(self: &std::sync::Arc<Self>) -> jit_local::Overrides {
        jit_local::Overrides {
            issuer: Some(self.clone()),
            ..Default::default()
        }
    }
}

#[async_trait::async_trait]
impl jit_core::ports::CredentialIssuer for RecordingIssuer {
    async fn assume_role(
        &self,
        spec: &jit_core::ports::AssumeRoleSpec,
    ) -> Result<jit_core::ports::IssuedCredentials, jit_core::ports::GrantError> {
        self.specs.lock().unwrap().push(spec.clone());
        self.inner.assume_role(spec).await
    }
}

/// jit-local in process on a manual clock, driven through its HTTP handler
/// as one API key. Each test file adds what only it needs in its own
/// `impl Local` block.
pub struct Local {
    pub app: App,
    pub clock: std::sync::Arc<jit_core::ports::ManualClock>,
    pub key: &'static str,
}

/// A config for in-process tests: loopback, no printing, no background
/// driver (tests settle the engine themselves).
pub fn config(
    data_dir: &std::path::Path,
    catalog: &std::path::Path,
    key: &str,
) -> jit_local::Config {
    jit_local::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        catalog: catalog.to_path_buf().into(),
        api_key: Some(key.into()),
        demo_mode: false,
        print_notifications: false,
        run_driver: false,
        max_backlog: jit_local::DEFAULT_MAX_BACKLOG,
    }
}

/// A manual clock at a fixed, round instant (2027-01-15T08:00:00Z).
pub fn fixed_clock() -> std::sync::Arc<jit_core::ports::ManualClock> {
    std::sync::Arc::new(jit_core::ports::ManualClock::new(
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    ))
}

impl Local {
    /// A request approved by the lead: GRANTED.
    pub async fn granted(&self, user: &str, entitlement: &str, duration: &str) -> String {
        let id = self.request(user, entitlement, duration).await;
        if self.get(&id).await["status"] == "APPROVAL_PENDING" {
            let (s, v) = self
                .post(
                    &format!("/requests/{id}/approve"),
                    "lead@example.com",
                    serde_json::json!({}),
                )
                .await;
            assert_eq!(s, 200, "{v}");
        }
        assert_eq!(self.get(&id).await["status"], "GRANTED");
        id
    }

    pub fn open(
        cfg: &jit_local::Config,
        clock: std::sync::Arc<jit_core::ports::ManualClock>,
        overrides: jit_local::Overrides,
        key: &'static str,
    ) -> Local {
        let (app, _) = App::build_with(cfg, clock.clone(), overrides).expect("app starts");
        Local { app, clock, key }
    }

    pub async fn settle(&self) {
        settle(&self.app).await;
    }

    /// Moves the clock on and runs whatever became due.
    pub async fn forward(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
        self.settle().await;
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        use jit_core::ports::Clock;
        self.clock.now()
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        user: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        call(&self.app, self.key, method, path, user, body).await
    }

    pub async fn post(&self, path: &str, user: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, user, Some(body)).await
    }

    /// Creates a request; returns its id.
    pub async fn request(&self, user: &str, entitlement: &str, duration: &str) -> String {
        let body = serde_json::json!({
            "entitlement": entitlement, "duration": duration, "justification": "INC-7"
        });
        let (status, v) = self.post("/requests", user, body).await;
        assert_eq!(status, 201, "{v}");
        v["requestId"].as_str().unwrap().to_string()
    }

    /// The request as an approver sees it.
    pub async fn get(&self, id: &str) -> Value {
        let (s, v) = self
            .call("GET", &format!("/requests/{id}"), "lead@example.com", None)
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    pub async fn status(&self, id: &str) -> String {
        self.get(id).await["status"].as_str().unwrap().to_string()
    }

    /// The states the execution has entered, in order.
    pub async fn states(&self, id: &str) -> Vec<String> {
        self.app.engine().unwrap().states_entered(id).unwrap()
    }
}
