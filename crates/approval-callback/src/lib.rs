//! The `approval-callback` Lambda's adapter: API Gateway events in, the
//! shared handler ([`jit_approvals::Approvals`]) in the middle, API Gateway
//! responses out; and the function's own deferred jobs (Slack work that
//! must finish after Slack got its answer), which arrive as direct,
//! asynchronous invocations — never through API Gateway — and carry a tag
//! the handler verifies.
//!
//! Decides nothing and logs no body: bodies carry signed links and Slack's
//! `response_url`s.

use std::path::PathBuf;

use bytes::Bytes;
use jit_api::ApiRequest;
use jit_approvals::Approvals;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

/// The function's configuration, read once at init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub table: String,
    pub audit_table: String,
    pub state_machine_arn: String,
    pub catalog_path: PathBuf,
    /// This function's own name, for asynchronous self-invocation.
    pub function_name: String,
    pub approvals: jit_lambda::approvals::ApprovalsEnv,
}

impl Config {
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, jit_lambda::ConfigError> {
        let tasks = jit_lambda::TaskConfig::from_lookup(&get)?;
        let state_machine_arn = get("JIT_STATE_MACHINE_ARN")
            .filter(|v| v.starts_with("arn:"))
            .ok_or(jit_lambda::ConfigError {
                var: "JIT_STATE_MACHINE_ARN",
                message: "is required: the approval state machine's ARN".into(),
            })?;
        let function_name = get("AWS_LAMBDA_FUNCTION_NAME").ok_or(jit_lambda::ConfigError {
            var: "AWS_LAMBDA_FUNCTION_NAME",
            message: "is not set: Lambda sets it; deferred Slack work invokes this function".into(),
        })?;
        Ok(Config {
            table: tasks.table,
            audit_table: tasks.audit_table,
            state_machine_arn,
            catalog_path: tasks.catalog_path,
            function_name,
            approvals: jit_lambda::approvals::ApprovalsEnv::from_lookup(&get)?,
        })
    }
}

/// Whether an event is a direct invocation (our deferred job), which API
/// Gateway can never produce.
pub fn is_direct_invocation(event: &Request) -> bool {
    matches!(
        event.request_context_ref(),
        Some(RequestContext::PassThrough)
    )
}

fn body_bytes(body: &Body) -> Bytes {
    match body {
        Body::Empty => Bytes::new(),
        Body::Text(t) => Bytes::from(t.clone()),
        Body::Binary(b) => Bytes::from(b.clone()),
        _ => Bytes::new(),
    }
}

/// An API Gateway event as the shared handler's request.
pub fn api_request(event: Request) -> ApiRequest {
    let path = event.raw_http_path().to_string();
    let (parts, body) = event.into_parts();
    ApiRequest {
        method: parts.method,
        path,
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body: body_bytes(&body),
    }
}

/// One event: a deferred job, or an HTTP request.
pub async fn handle(app: &std::sync::Arc<Approvals>, event: Request) -> Response<Body> {
    if is_direct_invocation(&event) {
        let body = body_bytes(event.body());
        let outcome = match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) if Approvals::is_deferred_job(&v) => app.run_signed_job(&v).await,
            _ => Err("not a deferred job".to_string()),
        };
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, "refused a direct invocation");
        }
        let answer = serde_json::json!({ "ok": outcome.is_ok() });
        return Response::new(Body::Text(answer.to_string()));
    }
    if !jit_approvals::is_approvals_path(event.raw_http_path()) {
        let mut resp = Response::new(Body::Text("no such endpoint".into()));
        *resp.status_mut() = http::StatusCode::NOT_FOUND;
        return resp;
    }
    app.handle(api_request(event)).await.map(Body::Text)
}
