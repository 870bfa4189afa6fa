//! The broker's HTTP API as plain async functions over [`jit_core::Broker`].
//!
//! Both front doors — the `request` Lambda (API Gateway) and `jit-local`
//! (hyper on loopback) — turn their native request into an [`ApiRequest`] and
//! an authenticated [`Caller`], call [`handle`], and send back the
//! [`http::Response`] it returns. So there is one router, one set of body
//! checks and one error-to-HTTP mapping ([`error_response`]), whichever door a
//! request came through.
//!
//! This crate never authenticates anyone (the front door does) and never puts
//! internal error text in a response body.

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};
use jit_core::duration::DurationInput;
use jit_core::ports::PageRequest;
use jit_core::service::{ListQuery, NewRequest};
use jit_core::{AccessRequest, Broker, Caller, ServiceError, Status};
use serde_json::{Map, Value, json};

mod entitlements;
pub mod grants;
mod instant;
mod reports;
pub mod strict_json;

use strict_json::StrictJsonError;

/// Largest body accepted. Requests are small; anything bigger is a mistake or
/// an attack, refused before parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request as any front door sees it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    /// The path without the stage prefix, e.g. `/requests/01H…/cancel`.
    pub path: String,
    /// The raw query string without `?`.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Errors of the HTTP layer itself, before or around a use case.
#[derive(Debug)]
pub enum ApiError {
    Service(ServiceError),
    MalformedJson(String),
    PayloadTooLarge,
    UnsupportedMediaType,
    RouteNotFound,
    MethodNotAllowed(&'static [Method]),
    /// The front door is too far behind to take new work: `503` with
    /// `Retry-After`, so clients back off instead of queueing without bound.
    Overloaded {
        message: String,
        retry_after_secs: u64,
    },
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::Service(ServiceError::invalid(field, message))
}

/// The one mapping from errors to HTTP: status, stable `code`, a message for
/// people, and the offending `field` where there is one.
pub fn error_response(err: &ApiError) -> Response<String> {
    let (status, code, message, field): (StatusCode, &str, String, Option<&str>) = match err {
        ApiError::Service(e) => match e {
            ServiceError::Invalid {
                code,
                field,
                message,
            } => (
                StatusCode::BAD_REQUEST,
                code,
                message.clone(),
                field.as_deref(),
            ),
            ServiceError::Forbidden {
                code,
                field,
                message,
            } => (
                StatusCode::FORBIDDEN,
                code,
                message.clone(),
                field.as_deref(),
            ),
            ServiceError::NotFound { message } => {
                (StatusCode::NOT_FOUND, "not_found", message.clone(), None)
            }
            ServiceError::Conflict {
                code,
                field,
                message,
                ..
            } => (
                StatusCode::CONFLICT,
                code,
                message.clone(),
                field.as_deref(),
            ),
            ServiceError::Unavailable { code, message } => {
                (StatusCode::SERVICE_UNAVAILABLE, code, message.clone(), None)
            }
            ServiceError::Upstream { code, message } => {
                (StatusCode::BAD_GATEWAY, code, message.clone(), None)
            }
            ServiceError::Internal { detail } => {
                tracing::error!(error = %detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; it has been logged".to_string(),
                    None,
                )
            }
        },
        ApiError::MalformedJson(m) => (
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {m}"),
            None,
        ),
        ApiError::PayloadTooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            None,
        ),
        ApiError::UnsupportedMediaType => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`".to_string(),
            None,
        ),
        ApiError::RouteNotFound => (
            StatusCode::NOT_FOUND,
            "route_not_found",
            "no such endpoint".to_string(),
            None,
        ),
        ApiError::MethodNotAllowed(allowed) => {
            let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
            let mut resp = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &error_body(
                    "method_not_allowed",
                    &format!("use {}", names.join(" or ")),
                    None,
                ),
            );
            if let Ok(v) = names.join(", ").parse() {
                resp.headers_mut().insert(header::ALLOW, v);
            }
            return resp;
        }
        ApiError::Overloaded {
            message,
            retry_after_secs,
        } => {
            let mut resp = json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &error_body("overloaded", message, None),
            );
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                http::HeaderValue::from(*retry_after_secs),
            );
            return resp;
        }
    };
    json_response(status, &error_body(code, &message, field))
}

/// The `error.code` (and field) an error is answered with, for the log
/// line every refusal gets: an operator searches logs by code.
pub fn refusal_code(err: &ApiError) -> (&str, Option<&str>) {
    match err {
        ApiError::Service(e) => match e {
            ServiceError::Invalid { code, field, .. }
            | ServiceError::Forbidden { code, field, .. }
            | ServiceError::Conflict { code, field, .. } => (code, field.as_deref()),
            ServiceError::NotFound { .. } => ("not_found", None),
            ServiceError::Unavailable { code, .. } | ServiceError::Upstream { code, .. } => {
                (code, None)
            }
            ServiceError::Internal { .. } => ("internal", None),
        },
        ApiError::MalformedJson(_) => ("malformed_json", None),
        ApiError::PayloadTooLarge => ("payload_too_large", None),
        ApiError::UnsupportedMediaType => ("unsupported_media_type", None),
        ApiError::RouteNotFound => ("route_not_found", None),
        ApiError::MethodNotAllowed(_) => ("method_not_allowed", None),
        ApiError::Overloaded { .. } => ("overloaded", None),
    }
}

fn error_body(code: &str, message: &str, field: Option<&str>) -> Value {
    let mut e = json!({ "code": code, "message": message });
    if let Some(f) = field {
        e["field"] = json!(f);
    }
    json!({ "error": e })
}

/// A JSON response; what every answer of this API is.
pub fn json_response(status: StatusCode, body: &Value) -> Response<String> {
    let mut resp = Response::new(body.to_string());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// A request as the API shows it: the effective status (a GRANTED request
/// past `expiresAt` reads EXPIRED), without internal bookkeeping.
pub fn request_view(r: &AccessRequest, now: jit_core::request::Timestamp) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    to_the_second(&mut v);
    if let Value::Object(m) = &mut v {
        m.insert("status".into(), json!(r.effective_status(now)));
        strip_internal(m);
    }
    v
}

/// Fields of a request record no answer carries: the task token (a
/// capability), the create fingerprint, used link nonces, and the
/// notifier's bookkeeping (Slack message ids, reminder rounds).
const INTERNAL_FIELDS: &[&str] = &[
    "requestFingerprint",
    "taskToken",
    "usedLinkNonces",
    "notice",
    "breakGlassNotice",
];

fn strip_internal(m: &mut Map<String, Value>) {
    for k in INTERNAL_FIELDS {
        m.remove(*k);
    }
    // An extension's notifier bookkeeping, as the request's `notice`.
    if let Some(Value::Array(xs)) = m.get_mut("extensions") {
        for x in xs.iter_mut() {
            if let Value::Object(x) = x {
                x.remove("notice");
            }
        }
    }
}

/// Audit events as answers show them: times to the second, and the
/// record's snapshot and changes without its internal fields.
pub fn events_view(events: &[jit_core::request::AuditEvent]) -> Value {
    let mut v = serde_json::to_value(events).unwrap_or(Value::Null);
    to_the_second(&mut v);
    for e in v.as_array_mut().into_iter().flatten() {
        for k in ["snapshot", "changes"] {
            if let Some(Value::Object(m)) = e.get_mut(k) {
                strip_internal(m);
            }
        }
    }
    v
}

/// Times in answers are RFC 3339 to the second, in UTC with `Z` — the
/// one format people see everywhere (CLI, emails, Slack, the console); the
/// store keeps full precision. Only time fields are touched (keys ending
/// in `At`, and `at`, `deadline`), never text a person wrote.
pub fn to_the_second(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let is_time = k.ends_with("At") || k == "at" || k == "deadline";
                match x {
                    Value::String(s) if is_time => {
                        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                            *s = t
                                .with_timezone(&chrono::Utc)
                                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                        }
                    }
                    _ => to_the_second(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(to_the_second),
        _ => {}
    }
}

/// Routes one request. Never fails: every error becomes its JSON response.
pub async fn handle(broker: &Broker, caller: &Caller, req: ApiRequest) -> Response<String> {
    let method = req.method.clone();
    let path = req.path.clone();
    respond(method, path, route(broker, caller, req).await)
}

/// Routes only the grant routes (`/requests/{id}/credentials`, `/console`,
/// `/revoke`, `/extend…`); anything else is `route_not_found`. What the
/// `access` Lambda serves: the other routes' code is then not linked into
/// it at all (not even `GET /catalog/check`'s: see [`handle_catalog_check`]).
pub async fn handle_grants(broker: &Broker, caller: &Caller, req: ApiRequest) -> Response<String> {
    let method = req.method.clone();
    let path = req.path.clone();
    let routed = async {
        if req.body.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        let trimmed = req.path.trim_end_matches('/').to_string();
        let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
        match segments.as_slice() {
            ["requests", id, rest @ ..] if grants::handles(rest) => {
                grants::route(broker, caller, &req, id, rest).await
            }
            _ => Err(ApiError::RouteNotFound),
        }
    }
    .await;
    respond(method, path, routed)
}

/// Routes only `GET /catalog/check`; anything else is `route_not_found`.
/// What the `catalog-check` Lambda serves, from the catalog and the
/// check's ports alone (no `Broker`: no store, workflow or grant ports to
/// link): the check's IAM reads (`GetPolicy`, `GetUser`,
/// `SimulatePrincipalPolicy`) and its report are then linked into neither
/// `access` nor `request`.
pub async fn handle_catalog_check(
    catalog: &jit_core::Catalog,
    ports: Option<&jit_core::catalog_check::CatalogCheckPorts>,
    caller: &Caller,
    req: ApiRequest,
) -> Response<String> {
    let method = req.method.clone();
    let path = req.path.clone();
    let routed = async {
        if req.body.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        match req.path.trim_end_matches('/') {
            "/catalog/check" => catalog_check_with(catalog, ports, caller, &req).await,
            _ => Err(ApiError::RouteNotFound),
        }
    }
    .await;
    respond(method, path, routed)
}

/// A routed answer, or the error's response and its refusal log line.
fn respond(
    method: Method,
    path: String,
    routed: Result<Response<String>, ApiError>,
) -> Response<String> {
    match routed {
        Ok(resp) => resp,
        Err(e) => {
            let resp = error_response(&e);
            let (code, field) = refusal_code(&e);
            tracing::info!(
                %method,
                %path,
                status = resp.status().as_u16(),
                code,
                field = field.unwrap_or(""),
                "request refused"
            );
            resp
        }
    }
}

async fn route(
    broker: &Broker,
    caller: &Caller,
    req: ApiRequest,
) -> Result<Response<String>, ApiError> {
    if req.body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    let path = req.path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    const POST: &[Method] = &[Method::POST];
    const GET: &[Method] = &[Method::GET];
    const GET_POST: &[Method] = &[Method::GET, Method::POST];
    let now = broker.clock.now();
    match (segments.as_slice(), &req.method) {
        (["entitlements"], &Method::GET) => entitlements::list(broker, caller, &req).await,
        (["entitlements"], _) => Err(ApiError::MethodNotAllowed(GET)),
        (["request-access"], &Method::POST) => create(broker, caller, &req, BodyForm::Seed).await,
        (["request-access"], _) => Err(ApiError::MethodNotAllowed(POST)),
        (["policies", "preview"], &Method::POST) => preview_policy(broker, caller, &req).await,
        (["policies", "preview"], _) => Err(ApiError::MethodNotAllowed(POST)),
        (["requests"], &Method::POST) => create(broker, caller, &req, BodyForm::Canonical).await,
        (["requests"], &Method::GET) if reports::wants_all(&req)? => {
            reports::list_all(broker, caller, &req).await
        }
        (["requests"], &Method::GET) => list(broker, caller, &req).await,
        (["requests"], _) => Err(ApiError::MethodNotAllowed(GET_POST)),
        (["requests", id], &Method::GET) => {
            let (r, archived) = broker.get_or_archived(caller, id).await?;
            let mut view = request_view(&r, now);
            if archived {
                // Rebuilt from the audit trail after TTL removed the item.
                view["archived"] = json!(true);
            }
            Ok(json_response(StatusCode::OK, &view))
        }
        (["requests", _], _) => Err(ApiError::MethodNotAllowed(GET)),
        (["requests", id, "audit"], &Method::GET) => {
            let events = broker.audit(caller, id).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "events": events_view(&events) }),
            ))
        }
        (["requests", _, "audit"], _) => Err(ApiError::MethodNotAllowed(GET)),
        (["requests", id, "cancel"], &Method::POST) => {
            let body = optional_json_body(&req)?;
            body.reject_unknown(&["reason", "requester"])?;
            let reason = body.opt_str("reason")?;
            let on_behalf = body.opt_str("requester")?;
            let r = broker
                .cancel(caller, id, on_behalf.as_deref(), reason)
                .await?;
            Ok(json_response(
                StatusCode::OK,
                &request_view(&r, broker.clock.now()),
            ))
        }
        (["requests", _, "cancel"], _) => Err(ApiError::MethodNotAllowed(POST)),
        (["requests", id, verb @ ("approve" | "deny")], &Method::POST) => {
            let body = optional_json_body(&req)?;
            body.reject_unknown(&["reason", "requester"])?;
            let reason = body.opt_str("reason")?;
            let on_behalf = body.opt_str("requester")?;
            let r = if *verb == "approve" {
                broker
                    .approve(caller, id, on_behalf.as_deref(), reason)
                    .await?
            } else {
                broker
                    .deny(caller, id, on_behalf.as_deref(), reason)
                    .await?
            };
            Ok(json_response(
                StatusCode::OK,
                &request_view(&r, broker.clock.now()),
            ))
        }
        (["requests", _, "approve" | "deny"], _) => Err(ApiError::MethodNotAllowed(POST)),
        (["requests", id, "history"], &Method::GET) => {
            let events = broker.history(caller, id).await?;
            Ok(json_response(StatusCode::OK, &json!({ "events": events })))
        }
        (["requests", _, "history"], _) => Err(ApiError::MethodNotAllowed(GET)),
        (["requests", id, "review"], &Method::POST) => {
            let body = json_body(&req)?;
            body.reject_unknown(&["verdict", "reason", "requester"])?;
            let verdict = body.opt_str("verdict")?;
            let reason = body.opt_str("reason")?;
            let on_behalf = body.opt_str("requester")?;
            let r = broker
                .review(caller, id, on_behalf.as_deref(), verdict.as_deref(), reason)
                .await?;
            Ok(json_response(
                StatusCode::OK,
                &request_view(&r, broker.clock.now()),
            ))
        }
        (["requests", _, "review"], _) => Err(ApiError::MethodNotAllowed(POST)),
        (["analytics"], &Method::GET) => reports::analytics(broker, caller, &req).await,
        (["analytics"], _) => Err(ApiError::MethodNotAllowed(GET)),
        (["audit"], &Method::GET) => reports::audit(broker, caller, &req).await,
        (["audit"], _) => Err(ApiError::MethodNotAllowed(GET)),
        (["catalog", "check"], _) => catalog_check(broker, caller, &req).await,
        (["requests", id, rest @ ..], _) if grants::handles(rest) => {
            grants::route(broker, caller, &req, id, rest).await
        }
        _ => Err(ApiError::RouteNotFound),
    }
}

/// `GET /catalog/check` (admins): the catalog checked with the broker's own
/// principals. `200` whatever the rows say; `ok` is false when one is a
/// problem.
async fn catalog_check(
    broker: &Broker,
    caller: &Caller,
    req: &ApiRequest,
) -> Result<Response<String>, ApiError> {
    let ports = broker.grants.as_ref().and_then(|g| g.catalog_check.clone());
    catalog_check_with(&broker.catalog, ports.as_deref(), caller, req).await
}

/// [`catalog_check`] over the catalog and the check's ports alone.
async fn catalog_check_with(
    catalog: &jit_core::Catalog,
    ports: Option<&jit_core::catalog_check::CatalogCheckPorts>,
    caller: &Caller,
    req: &ApiRequest,
) -> Result<Response<String>, ApiError> {
    if req.method != Method::GET {
        return Err(ApiError::MethodNotAllowed(&[Method::GET]));
    }
    if let Some((k, _)) = parse_query(req.query.as_deref().unwrap_or(""))?.first() {
        return Err(invalid(
            k,
            "is not a query parameter; this route takes none",
        ));
    }
    let report = jit_core::catalog_check::check_catalog_as(catalog, caller, ports).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::to_value(&report).unwrap_or(Value::Null),
    ))
}

#[derive(Clone, Copy, PartialEq)]
enum BodyForm {
    /// The seed's `POST /request-access` body.
    Seed,
    /// `POST /requests`.
    Canonical,
}

/// A JSON object body with typed, field-naming accessors.
struct Body(Map<String, Value>);

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let mime = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

fn json_body(req: &ApiRequest) -> Result<Body, ApiError> {
    if !is_json(&req.headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson(
            "the body is empty; send a JSON object".into(),
        ));
    }
    let v = strict_json::parse(&req.body).map_err(|e| match e {
        StrictJsonError::DuplicateKey { path, key } => {
            invalid(&path, format!("duplicate key `{key}`"))
        }
        StrictJsonError::Syntax(m) => ApiError::MalformedJson(m),
    })?;
    match v {
        Value::Object(m) => Ok(Body(m)),
        _ => Err(ApiError::MalformedJson("expected a JSON object".into())),
    }
}

fn optional_json_body(req: &ApiRequest) -> Result<Body, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body(Map::new()));
    }
    json_body(req)
}

impl Body {
    fn reject_unknown(&self, allowed: &[&str]) -> Result<(), ApiError> {
        if let Some(k) = self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(invalid(
                k,
                format!(
                    "is not a field of this request; known fields: {}",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(())
    }

    fn opt_str(&self, field: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(field, "must be a string")),
        }
    }

    /// A list of strings (`accounts`): each element must be a string.
    fn opt_str_list(&self, field: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(invalid(
                        field,
                        "must be a list of 12-digit account ids (strings)",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(invalid(
                field,
                "must be a list of 12-digit account ids (strings)",
            )),
        }
    }

    /// `scope`: what the requester needs (see `jit_core::policy::Scope`).
    fn opt_scope(&self) -> Result<Option<jit_core::policy::Scope>, ApiError> {
        match self.0.get("scope") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => jit_core::policy::Scope::from_json(v)
                .map(Some)
                .map_err(|e| invalid(&e.field, e.message)),
        }
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(invalid(field, "must be true or false")),
        }
    }

    fn opt_duration(&self, field: &str) -> Result<Option<DurationInput>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(s) => Ok(Some(DurationInput::Secs(s))),
                None => Err(invalid(
                    field,
                    "must be a whole, positive number of seconds",
                )),
            },
            Some(Value::String(s)) => Ok(Some(DurationInput::Text(s.clone()))),
            Some(_) => Err(invalid(
                field,
                "must be seconds (900) or a text like \"1h\"",
            )),
        }
    }
}

const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// `POST /policies/preview`: `{"entitlement", "scope", "justification"?}`
/// -> the policy a request would carry, validated; nothing is created.
async fn preview_policy(
    broker: &Broker,
    caller: &Caller,
    req: &ApiRequest,
) -> Result<Response<String>, ApiError> {
    let body = json_body(req)?;
    body.reject_unknown(&["entitlement", "scope", "justification"])?;
    let entitlement = body
        .opt_str("entitlement")?
        .filter(|e| !e.trim().is_empty())
        .ok_or_else(|| {
            invalid(
                "entitlement",
                "is required: name an entitlement from the catalog",
            )
        })?;
    let scope = body.opt_scope()?;
    let justification = body.opt_str("justification")?.unwrap_or_default();
    let g = broker
        .preview_policy(caller, &entitlement, scope, &justification)
        .await?;
    let document: Value =
        serde_json::from_str(&g.document).unwrap_or(Value::String(g.document.clone()));
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "entitlement": entitlement,
            "policy": document,
            "generator": g.generator,
            "digest": jit_core::policy::digest(&g.document),
            "summary": g.summary,
            "notes": g.notes,
            "packedChars": g.packed_chars,
            "maxChars": jit_core::session_policy::MAX_SESSION_POLICY_CHARS,
            "valid": true,
        }),
    ))
}

async fn create(
    broker: &Broker,
    caller: &Caller,
    req: &ApiRequest,
    form: BodyForm,
) -> Result<Response<String>, ApiError> {
    let body = json_body(req)?;
    let new = match form {
        BodyForm::Seed => {
            body.reject_unknown(&[
                "requester",
                "role",
                "roleArn",
                "duration",
                "simulateApproval",
                "justification",
                "idempotencyKey",
                "wait",
                "scope",
            ])?;
            NewRequest {
                scope: body.opt_scope()?,
                entitlement: body.opt_str("role")?,
                entitlement_field: "role",
                role_arn: body.opt_str("roleArn")?,
                account: None,
                duration: body.opt_duration("duration")?,
                justification: body.opt_str("justification")?,
                justification_required: false,
                requester: body.opt_str("requester")?,
                idempotency_key: body.opt_str("idempotencyKey")?,
                simulate_approval: body.opt_bool("simulateApproval")?.unwrap_or(false),
                ..NewRequest::default()
            }
        }
        BodyForm::Canonical => {
            body.reject_unknown(&[
                "entitlement",
                "duration",
                "justification",
                "account",
                "accounts",
                "requester",
                "idempotencyKey",
                "wait",
                "scope",
                "breakGlass",
            ])?;
            NewRequest {
                scope: body.opt_scope()?,
                entitlement: body.opt_str("entitlement")?,
                entitlement_field: "entitlement",
                role_arn: None,
                account: body.opt_str("account")?,
                accounts: body.opt_str_list("accounts")?,
                duration: body.opt_duration("duration")?,
                justification: body.opt_str("justification")?,
                justification_required: true,
                requester: body.opt_str("requester")?,
                idempotency_key: body.opt_str("idempotencyKey")?,
                simulate_approval: false,
                break_glass: body.opt_bool("breakGlass")?.unwrap_or(false),
            }
        }
    };
    let header_key = match req.headers.get(IDEMPOTENCY_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| invalid("Idempotency-Key", "must be visible ASCII"))?
                .to_string(),
        ),
    };
    let idempotency_key = match (header_key, new.idempotency_key.clone()) {
        (Some(h), Some(b)) if h != b => {
            return Err(invalid(
                "idempotencyKey",
                "differs from the Idempotency-Key header; send one of them",
            ));
        }
        (h, b) => h.or(b),
    };
    let new = NewRequest {
        idempotency_key,
        ..new
    };
    let mut wait = instant::wait_asked(req, &body)?;
    if new.break_glass && wait.is_none() && body.opt_bool("wait")?.is_none() {
        // Break-glass is for when there is no time: the grant is immediate,
        // so the create waits for it unless told otherwise.
        wait = Some(std::time::Duration::from_secs(
            jit_core::instant::MAX_WAIT_SECS,
        ));
    }
    let (request, created, credentials) = match wait {
        None => {
            let (request, created) = broker.create(caller, new).await?;
            (request, created, None)
        }
        Some(wait) => instant::create_and_wait(broker, caller, new, wait).await?,
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut view = request_view(&request, broker.clock.now());
    if let Some(c) = credentials {
        instant::attach_credentials(&mut view, c);
    }
    let mut resp = json_response(status, &view);
    if let Some(wait) = wait
        && let Ok(v) = format!("wait={}", wait.as_secs()).parse()
    {
        resp.headers_mut().insert("preference-applied", v);
    }
    if let Ok(loc) = format!("/requests/{}", request.request_id).parse() {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

async fn list(
    broker: &Broker,
    caller: &Caller,
    req: &ApiRequest,
) -> Result<Response<String>, ApiError> {
    let params = parse_query(req.query.as_deref().unwrap_or(""))?;
    let mut q = ListQuery::default();
    let mut on_behalf = None;
    let mut review = false;
    for (k, v) in &params {
        match k.as_str() {
            "review" if v == "pending" => review = true,
            "review" => {
                return Err(invalid(
                    "review",
                    format!(
                        "must be `pending` (break-glass requests awaiting a review), not `{v}`"
                    ),
                ));
            }
            "status" => {
                q.status = Some(v.parse::<Status>().map_err(|m| invalid("status", m))?);
            }
            "limit" => {
                let n: u32 = v
                    .parse()
                    .map_err(|_| invalid("limit", "must be a whole number"))?;
                if !(1..=PageRequest::MAX_LIMIT).contains(&n) {
                    return Err(invalid(
                        "limit",
                        format!("must be between 1 and {}", PageRequest::MAX_LIMIT),
                    ));
                }
                q.page.limit = n;
            }
            "cursor" => q.page.cursor = Some(v.clone()),
            "requester" => on_behalf = Some(v.clone()),
            "scope" => {}
            other => {
                return Err(invalid(
                    other,
                    "is not a query parameter; use status, review, limit, cursor",
                ));
            }
        }
    }
    if review {
        if q.status.is_some() {
            return Err(invalid(
                "review",
                "lists break-glass requests awaiting a review, whatever their status: drop `status`",
            ));
        }
        let pending = broker.pending_reviews(caller, on_behalf.as_deref()).await?;
        let now = broker.clock.now();
        let items: Vec<Value> = pending.iter().map(|r| request_view(r, now)).collect();
        return Ok(json_response(
            StatusCode::OK,
            &json!({ "requests": items, "nextCursor": null }),
        ));
    }
    let page = broker.list(caller, on_behalf.as_deref(), &q).await?;
    let now = broker.clock.now();
    let items: Vec<Value> = page.items.iter().map(|r| request_view(r, now)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "requests": items, "nextCursor": page.next_cursor }),
    ))
}

/// Splits and percent-decodes a query string.
pub(crate) fn parse_query(q: &str) -> Result<Vec<(String, String)>, ApiError> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = jit_core::links::percent_decode(k)
                .ok_or_else(|| invalid("query", "is not valid percent-encoded UTF-8"))?;
            let v = jit_core::links::percent_decode(v)
                .ok_or_else(|| invalid(&k, "is not valid percent-encoded UTF-8"))?;
            Ok((k, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_answers_carry_no_internal_fields_and_times_to_the_second() {
        let at: jit_core::request::Timestamp = "2026-12-04T16:10:01.093560723Z".parse().unwrap();
        let id = jit_core::RequestId::generate(at);
        let mut e = jit_core::request::AuditEvent::new(
            &id,
            at,
            "system:workflow".into(),
            jit_core::request::AuditAction::Note,
            None,
            None,
            None,
            "workflow",
        );
        let mut changes = Map::new();
        for k in INTERNAL_FIELDS {
            changes.insert(k.to_string(), json!("x"));
        }
        changes.insert("expiresAt".into(), json!("2026-12-04T17:10:01.5Z"));
        e.changes = Some(changes);
        let v = events_view(&[e]);
        assert_eq!(v[0]["at"], "2026-12-04T16:10:01Z");
        assert_eq!(
            v[0]["changes"],
            json!({"expiresAt": "2026-12-04T17:10:01Z"})
        );
    }

    #[test]
    fn query_decoding() {
        let q = parse_query("status=APPROVAL_PENDING&cursor=a%2Bb&x=1+2").unwrap();
        assert_eq!(q[0], ("status".into(), "APPROVAL_PENDING".into()));
        assert_eq!(q[1], ("cursor".into(), "a+b".into()));
        assert_eq!(q[2], ("x".into(), "1 2".into()));
        assert!(parse_query("a=%zz").is_err());
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json(&h));
    }

    #[test]
    fn internal_errors_never_leak() {
        let e = ApiError::Service(ServiceError::Internal {
            detail: "dynamodb: secret table xyz".into(),
        });
        let r = error_response(&e);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!r.body().contains("xyz"));
        let v: Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!(v["error"]["code"], "internal");
    }

    #[test]
    fn overloaded_is_503_with_retry_after() {
        let r = error_response(&ApiError::Overloaded {
            message: "busy".into(),
            retry_after_secs: 2,
        });
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let v: Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!(v["error"]["code"], "overloaded");
        assert_eq!(v["error"]["message"], "busy");
    }
}
