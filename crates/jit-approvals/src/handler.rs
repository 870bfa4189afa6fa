//! The approval callback's HTTP routes, shared by the `approval-callback`
//! Lambda and `jit-local`:
//!
//! - `GET /approvals/{id}?a=&e=&n=&s=` — a signed link opens a confirmation
//!   page. Nothing changes on a GET (mail scanners fetch links).
//! - `POST /approvals/{id}` — the page's form: the link's fields, a reason
//!   and `decision=approve|deny`; records the decision (consuming the link)
//!   and completes the workflow's task through the broker.
//! - `POST /slack/interactions` — Slack buttons; `POST /slack/commands` —
//!   `/jit`. Both verify Slack's signature before parsing anything, answer
//!   at once, and do the work afterwards ([`Job`]): identity lookups,
//!   decisions and message updates may take longer than Slack's 3 seconds.
//!
//! The signed link (or Slack's signature) is the authentication here; no
//! API key, no IAM. Pages carry no scripts and are never cached or framed.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Response, StatusCode, header};
use jit_api::ApiRequest;
use jit_core::channels::Deferrer;
use jit_core::decisions::Decider;
use jit_core::links::{LinkClaims, LinkError, LinkParams, parse_form};
use jit_core::ports::{PageRequest, Secret};
use jit_core::service::{ListQuery, NewRequest};
use jit_core::{
    AccessRequest, AuthSource, Broker, Caller, Principal, RequestId, ServiceError, Status,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::notifier::ApprovalNotifier;
use crate::render;
use crate::slack::{self, JitCommand};

/// Largest body accepted on these routes (Slack's payloads are small).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a deferred job's signature stays valid.
const JOB_MAX_AGE_SECS: i64 = 15 * 60;
/// How long a Slack request's marks are remembered: past Slack's 5-minute
/// signature window and a `response_url`'s 30-minute life, so no replay of
/// one can outlive its record.
const SLACK_SEEN_FOR_SECS: i64 = 60 * 60;
/// The longest a page waits for the Slack message update after a decision.
const OUTCOME_UPDATE_BUDGET: Duration = Duration::from_secs(5);

/// Work done after the answer went out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Job {
    /// A verified interaction body (`payload=…`).
    SlackInteraction { body: String },
    /// A verified slash command body.
    SlackCommand { body: String },
}

/// Where deferred jobs run.
#[derive(Clone)]
pub enum Deferral {
    /// On this process's runtime (`jit-local`, tests).
    InProcess,
    /// Elsewhere: the Lambda invokes itself asynchronously with a signed
    /// envelope ([`Approvals::signed_job`]).
    Remote(Arc<dyn Deferrer>),
}

/// The callback's dependencies, built once at start.
#[derive(Clone)]
pub struct Approvals {
    pub broker: Broker,
    pub notifier: ApprovalNotifier,
    /// Slack's signing secret; `None`: the Slack routes answer 404.
    pub slack_signing_secret: Option<Secret>,
    pub deferral: Deferral,
}

/// Whether a path belongs to this handler (the front door routes on it).
pub fn is_approvals_path(path: &str) -> bool {
    path.starts_with("/approvals/") || path == "/slack/interactions" || path == "/slack/commands"
}

fn html(status: StatusCode, body: String) -> Response<String> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: the link (a capability) still never
    // leaves for another site, and the browser sends the page's real
    // `Origin` with the decision's POST. Under `no-referrer` Chromium sends
    // `Origin: null`, which the foreign-origin check must refuse.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn json_resp(status: StatusCode, body: &Value) -> Response<String> {
    let mut resp = Response::new(body.to_string());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn plain_resp(status: StatusCode, text: &str) -> Response<String> {
    let mut resp = Response::new(text.to_string());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A refusal as people read it: HTTP status, heading, message. Every
/// refusal passes here, so it is logged here, once, with its code.
pub fn refusal(e: &ServiceError) -> (StatusCode, &'static str, String) {
    let out = refusal_page(e);
    let (code, field) = match e {
        ServiceError::Invalid { code, field, .. }
        | ServiceError::Forbidden { code, field, .. }
        | ServiceError::Conflict { code, field, .. } => (*code, field.as_deref()),
        ServiceError::NotFound { .. } => ("not_found", None),
        ServiceError::Unavailable { code, .. } | ServiceError::Upstream { code, .. } => {
            (*code, None)
        }
        ServiceError::Internal { .. } => ("internal", None),
    };
    tracing::info!(
        status = out.0.as_u16(),
        code,
        field = field.unwrap_or(""),
        "approval refused"
    );
    out
}

fn refusal_page(e: &ServiceError) -> (StatusCode, &'static str, String) {
    match e {
        ServiceError::Forbidden { code, message, .. } => match *code {
            "self_approval" => (
                StatusCode::FORBIDDEN,
                "You cannot decide your own request",
                "Nobody approves their own request: another approver must decide.".into(),
            ),
            "not_approver" => (
                StatusCode::FORBIDDEN,
                "You are not an approver",
                format!("{message}. Ask one of its approvers."),
            ),
            _ => (StatusCode::FORBIDDEN, "Not allowed", message.clone()),
        },
        ServiceError::Conflict {
            code,
            message,
            current,
            ..
        } => match (*code, current) {
            ("link_used", _) => (
                StatusCode::CONFLICT,
                "This link was already used",
                "Each approval link works once. The decision made with it stands.".into(),
            ),
            (_, Some(Status::ApprovalTimedOut)) => (
                StatusCode::GONE,
                "This request expired",
                "Nobody decided within the approval window; the requester must ask again.".into(),
            ),
            _ => (StatusCode::CONFLICT, "Already decided", message.clone()),
        },
        ServiceError::Invalid { field, message, .. } if field.as_deref() == Some("reason") => (
            StatusCode::BAD_REQUEST,
            "A reason is needed",
            format!("The reason {message}. Type a reason in the box, then press Deny."),
        ),
        ServiceError::Invalid { message, .. } => {
            (StatusCode::BAD_REQUEST, "Not accepted", message.clone())
        }
        ServiceError::NotFound { .. } => (
            StatusCode::NOT_FOUND,
            "No such request",
            "The request does not exist (or no longer exists).".into(),
        ),
        ServiceError::Unavailable { message, .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again",
            message.clone(),
        ),
        other => {
            if let ServiceError::Internal { detail } = other {
                tracing::error!(error = %detail, "internal error in the approval callback");
            }
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The error has been logged. Please try again in a moment.".into(),
            )
        }
    }
}

fn link_refusal(e: &LinkError) -> Response<String> {
    let (status, heading, code) = match e {
        LinkError::Incomplete => (
            StatusCode::BAD_REQUEST,
            "Incomplete link",
            "link_incomplete",
        ),
        LinkError::BadSignature => (StatusCode::FORBIDDEN, "Invalid link", "link_signature"),
        LinkError::Expired { .. } => (StatusCode::GONE, "This link expired", "link_expired"),
    };
    tracing::info!(status = status.as_u16(), code, "approval link refused");
    html(status, render::result_page(heading, &e.to_string()))
}

/// Whether the body is declared form-encoded (what an HTML form posts).
fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The origin (`scheme://host[:port]`, lower case, default port left out)
/// of a URL or of an `Origin` header; `None` for `null` or anything that
/// is not an http(s) URL.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?.to_ascii_lowercase();
    let (host, port) = match host_port.rfind(':') {
        Some(i) if !host_port[i..].contains(']') => (&host_port[..i], Some(&host_port[i + 1..])),
        _ => (host_port.as_str(), None),
    };
    if host.is_empty() {
        return None;
    }
    Some(match port {
        Some(p) if !p.is_empty() && p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// A fixed-length stand-in for a value in a seen-once key (a
/// `response_url` is long, and a key is a store's primary key).
fn seen_key_digest(value: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn pairs(text: &str) -> Vec<(String, String)> {
    parse_form(text).unwrap_or_default()
}

fn link_params(pairs: &[(String, String)]) -> LinkParams {
    LinkParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

impl Approvals {
    /// Routes one request. Never fails: every refusal is a page or a
    /// Slack-shaped answer.
    pub async fn handle(self: &Arc<Self>, req: ApiRequest) -> Response<String> {
        if req.body.len() > MAX_BODY_BYTES {
            return plain_resp(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        }
        let path = req.path.trim_end_matches('/').to_string();
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        match (segments.as_slice(), &req.method) {
            (["approvals", id, "extension", n], &Method::GET) => {
                self.extension_page(id, n, &req).await
            }
            (["approvals", id, "extension", n], &Method::POST) => {
                self.extension_decision(id, n, &req).await
            }
            (["approvals", _, "extension", _], _) => {
                let mut r = plain_resp(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
                r
            }
            (["approvals", id], &Method::GET) => self.link_page(id, &req).await,
            (["approvals", id], &Method::POST) => self.link_decision(id, &req).await,
            (["approvals", _], _) => {
                let mut r = plain_resp(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
                r
            }
            (["slack", "interactions"], &Method::POST) => self.slack_interaction(&req).await,
            (["slack", "commands"], &Method::POST) => self.slack_command(&req).await,
            _ => plain_resp(StatusCode::NOT_FOUND, "no such endpoint"),
        }
    }

    async fn link_page(&self, id: &str, req: &ApiRequest) -> Response<String> {
        let pairs = pairs(req.query.as_deref().unwrap_or(""));
        let now = self.broker.clock.now();
        let claims = match self.notifier.links.verify(id, &link_params(&pairs), now) {
            Ok(c) => c,
            Err(e) => return link_refusal(&e),
        };
        match self.broker.link_preview(&claims).await {
            Ok(r) => {
                let approvers = self
                    .broker
                    .catalog
                    .get(&r.entitlement)
                    .map(|e| e.approvers.clone())
                    .unwrap_or_default();
                let fields: Vec<(&str, &str)> = pairs
                    .iter()
                    .filter(|(k, _)| ["a", "e", "n", "s"].contains(&k.as_str()))
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                html(
                    StatusCode::OK,
                    render::confirmation_page(
                        &r,
                        &approvers,
                        claims.approver.as_str(),
                        claims.expires_at,
                        &fields,
                    ),
                )
            }
            Err(e) => {
                let (status, heading, message) = refusal(&e);
                html(status, render::result_page(heading, &message))
            }
        }
    }

    /// Refuses a decision POST that is not the confirmation page's own
    /// form: posted from another site (a foreign `Origin`; none at all is
    /// fine — mail clients and older browsers send none), not form-encoded,
    /// or with anything in the query string. A decision's fields come from
    /// the form body only, once each, so what the page showed is what is
    /// decided and a link pasted into another page's URL decides nothing.
    fn decision_form(
        &self,
        req: &ApiRequest,
    ) -> Result<Vec<(String, String)>, Box<Response<String>>> {
        let refuse = |status, heading: &str, message: &str| {
            Err(Box::new(html(
                status,
                render::result_page(heading, message),
            )))
        };
        if let Some(origin) = req.headers.get(header::ORIGIN) {
            let sent = origin.to_str().ok().and_then(origin_of);
            if sent.is_none() || sent != origin_of(&self.notifier.public_url) {
                tracing::info!(origin = ?origin, "refused a decision posted from another site");
                return refuse(
                    StatusCode::FORBIDDEN,
                    "Not accepted from another site",
                    "Decisions are taken only from the approval page itself: open your approval link and press a button there.",
                );
            }
        }
        if !is_form(&req.headers) {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Send the approval form",
                "A decision is the approval page's form (application/x-www-form-urlencoded): open your approval link and press a button there.",
            );
        }
        if req.query.as_deref().is_some_and(|q| !q.is_empty()) {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Send the approval form",
                "A decision takes its fields from the form only, never from the address: open your approval link and press a button there.",
            );
        }
        let body = std::str::from_utf8(&req.body).ok();
        let Some(fields) = body.and_then(parse_form) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Send the approval form",
                "The form could not be read: open your approval link again.",
            );
        };
        for (i, (k, _)) in fields.iter().enumerate() {
            if fields[..i].iter().any(|(seen, _)| seen == k) {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "Send the approval form",
                    &format!("The form gives `{k}` twice: open your approval link again."),
                );
            }
        }
        Ok(fields)
    }

    async fn link_decision(&self, id: &str, req: &ApiRequest) -> Response<String> {
        let fields = match self.decision_form(req) {
            Ok(f) => f,
            Err(resp) => return *resp,
        };
        let now = self.broker.clock.now();
        let claims = match self.notifier.links.verify(id, &link_params(&fields), now) {
            Ok(c) => c,
            Err(e) => return link_refusal(&e),
        };
        let get = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f == k)
                .map(|(_, v)| v.trim().to_string())
        };
        let reason = get("reason").filter(|r| !r.is_empty());
        let outcome = match get("decision").as_deref() {
            Some("approve") => self.broker.approve_with_link(&claims, reason).await,
            Some("deny") => self.broker.deny_with_link(&claims, reason).await,
            _ => {
                return html(
                    StatusCode::BAD_REQUEST,
                    render::result_page(
                        "Choose Approve or Deny",
                        "The form did not say which: open the link again and press a button.",
                    ),
                );
            }
        };
        match outcome {
            Ok(r) => {
                self.show_outcome_bounded(&r.request_id).await;
                let (heading, message) = decided_text(&r);
                html(StatusCode::OK, render::result_page(heading, &message))
            }
            Err(e) => {
                let (status, heading, message) = refusal(&e);
                html(status, render::result_page(heading, &message))
            }
        }
    }

    /// `GET /approvals/{id}/extension/{n}`: an extension link's page.
    async fn extension_page(&self, id: &str, n: &str, req: &ApiRequest) -> Response<String> {
        let pairs = pairs(req.query.as_deref().unwrap_or(""));
        let now = self.broker.clock.now();
        let (claims, index) =
            match self
                .notifier
                .links
                .verify_extension(id, n, &link_params(&pairs), now)
            {
                Ok(c) => c,
                Err(e) => return link_refusal(&e),
            };
        match self.broker.extension_link_preview(&claims, index).await {
            Ok(r) => {
                let fields: Vec<(&str, &str)> = pairs
                    .iter()
                    .filter(|(k, _)| ["a", "e", "n", "s"].contains(&k.as_str()))
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                html(
                    StatusCode::OK,
                    crate::extensions::confirmation_page(
                        &r,
                        &r.extensions[index],
                        index,
                        claims.approver.as_str(),
                        claims.expires_at,
                        &fields,
                    ),
                )
            }
            Err(e) => {
                let (status, heading, message) = refusal(&e);
                html(status, render::result_page(heading, &message))
            }
        }
    }

    /// `POST /approvals/{id}/extension/{n}`: the extension page's form.
    async fn extension_decision(&self, id: &str, n: &str, req: &ApiRequest) -> Response<String> {
        let fields = match self.decision_form(req) {
            Ok(f) => f,
            Err(resp) => return *resp,
        };
        let now = self.broker.clock.now();
        let (claims, index) =
            match self
                .notifier
                .links
                .verify_extension(id, n, &link_params(&fields), now)
            {
                Ok(c) => c,
                Err(e) => return link_refusal(&e),
            };
        let get = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f == k)
                .map(|(_, v)| v.trim().to_string())
        };
        let reason = get("reason").filter(|r| !r.is_empty());
        let approve = match get("decision").as_deref() {
            Some("approve") => true,
            Some("deny") => false,
            _ => {
                return html(
                    StatusCode::BAD_REQUEST,
                    render::result_page(
                        "Choose Approve or Deny",
                        "The form did not say which: open the link again and press a button.",
                    ),
                );
            }
        };
        match self
            .broker
            .decide_extension_with_link(&claims, index, approve, reason)
            .await
        {
            Ok(r) => {
                // The Slack message shows it at the next sweep (every
                // minute): updating it here took this function over the
                // 6 MB Lambda target (see docs/ARCHITECTURE.md).
                let x = &r.extensions[index];
                let (heading, message) = match x.status {
                    jit_core::extension::ExtensionStatus::Approved => (
                        "Extension approved",
                        format!(
                            "The grant now expires at {}.",
                            r.expires_at
                                .map(|e| e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                                .unwrap_or_default()
                        ),
                    ),
                    jit_core::extension::ExtensionStatus::Denied => (
                        "Extension denied",
                        "The requester is told; the grant ends as it was.".to_string(),
                    ),
                    _ => (
                        "Approval recorded",
                        "The extension waits for another approver.".to_string(),
                    ),
                };
                html(StatusCode::OK, render::result_page(heading, &message))
            }
            Err(e) => {
                let (status, heading, message) = refusal(&e);
                html(status, render::result_page(heading, &message))
            }
        }
    }

    async fn show_outcome_bounded(&self, id: &RequestId) {
        match tokio::time::timeout(OUTCOME_UPDATE_BUDGET, self.notifier.show_outcome(id)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(request_id = %id, error = %e, "could not update the Slack message")
            }
            Err(_) => tracing::warn!(request_id = %id, "updating the Slack message took too long"),
        }
    }

    fn verified_slack(&self, req: &ApiRequest) -> Result<(), Box<Response<String>>> {
        let Some(secret) = &self.slack_signing_secret else {
            return Err(Box::new(plain_resp(
                StatusCode::NOT_FOUND,
                "Slack is not configured",
            )));
        };
        slack::verify_request(secret, &req.headers, &req.body, self.broker.clock.now()).map_err(
            |e| {
                tracing::info!(error = %e, "refused an unsigned or stale Slack request");
                Box::new(plain_resp(
                    StatusCode::UNAUTHORIZED,
                    "invalid Slack signature",
                ))
            },
        )
    }

    /// Whether a verified Slack request is delivered for the first time.
    /// Its signature (one timestamp and body), its `trigger_id` and its
    /// `response_url` are each recorded once in the store, so the record
    /// holds across Lambda instances; any of them seen before is a replay.
    /// All are recorded even when an earlier one already says "replay", so
    /// a replay under a fresh signature still marks what it carries.
    async fn first_delivery(
        &self,
        req: &ApiRequest,
        trigger_id: Option<&str>,
        response_url: Option<&str>,
    ) -> Result<bool, jit_core::ports::StoreError> {
        let now = self.broker.clock.now();
        let until = now + chrono::Duration::seconds(SLACK_SEEN_FOR_SECS);
        let signature = req
            .headers
            .get(slack::SIGNATURE_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let marks = [
            ("signature", signature.as_deref()),
            ("trigger", trigger_id),
            ("response-url", response_url),
        ];
        let mut first = true;
        for (what, value) in marks {
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                continue;
            };
            let key = format!("slack:{what}:{}", seen_key_digest(value));
            if !self.broker.store.first_use(&key, now, until).await? {
                tracing::info!(mark = what, "a replayed Slack request: not processed again");
                first = false;
            }
        }
        Ok(first)
    }

    async fn slack_interaction(self: &Arc<Self>, req: &ApiRequest) -> Response<String> {
        if let Err(resp) = self.verified_slack(req) {
            return *resp;
        }
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let interaction = match slack::parse_interaction(body.as_bytes()) {
            Ok(i) => i,
            Err(e) => {
                tracing::info!(error = %e, "ignored a Slack interaction");
                return plain_resp(StatusCode::OK, "");
            }
        };
        match self
            .first_delivery(
                req,
                interaction.trigger_id.as_deref(),
                interaction.response_url.as_deref(),
            )
            .await
        {
            // A replay decides nothing twice; Slack gets the same empty 200
            // as the first delivery (the button press already had its answer).
            Ok(false) => return plain_resp(StatusCode::OK, ""),
            Ok(true) => {}
            Err(e) => {
                tracing::error!(error = %e, "could not record a Slack interaction as seen");
                return json_resp(
                    StatusCode::OK,
                    &render::ephemeral(
                        "Sorry, that did not go through. Please press the button again.",
                    ),
                );
            }
        }
        match self.defer(Job::SlackInteraction { body }).await {
            Ok(()) => plain_resp(StatusCode::OK, ""),
            Err(e) => {
                tracing::error!(error = %e, "could not defer a Slack interaction");
                json_resp(
                    StatusCode::OK,
                    &render::ephemeral(
                        "Sorry, that did not go through. Please press the button again.",
                    ),
                )
            }
        }
    }

    async fn slack_command(self: &Arc<Self>, req: &ApiRequest) -> Response<String> {
        if let Err(resp) = self.verified_slack(req) {
            return *resp;
        }
        let command = match slack::parse_slash_command(&req.body) {
            Ok(c) => c,
            Err(e) => {
                return json_resp(StatusCode::OK, &render::ephemeral(&format!("Sorry: {e}")));
            }
        };
        match self
            .first_delivery(
                req,
                command.trigger_id.as_deref(),
                command.response_url.as_deref(),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return json_resp(
                    StatusCode::OK,
                    &render::ephemeral(&format!(
                        ":information_source: Already received: this `{}` was handled once and is not run again.",
                        command.command
                    )),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record a slash command as seen");
                return json_resp(
                    StatusCode::OK,
                    &render::ephemeral("Sorry, that did not go through. Please try again."),
                );
            }
        }
        match slack::parse_command(&command.text, &self.broker.catalog) {
            Err(message) => json_resp(StatusCode::OK, &render::ephemeral(&message)),
            Ok(JitCommand::Help) => json_resp(StatusCode::OK, &render::ephemeral(slack::USAGE)),
            Ok(_) => {
                let body = String::from_utf8_lossy(&req.body).into_owned();
                match self.defer(Job::SlackCommand { body }).await {
                    Ok(()) => json_resp(
                        StatusCode::OK,
                        &render::ephemeral(&format!(
                            ":hourglass_flowing_sand: `{} {}` — working on it…",
                            command.command,
                            render::mrkdwn_escape(&command.text)
                        )),
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "could not defer a slash command");
                        json_resp(
                            StatusCode::OK,
                            &render::ephemeral("Sorry, that did not go through. Please try again."),
                        )
                    }
                }
            }
        }
    }

    async fn defer(self: &Arc<Self>, job: Job) -> Result<(), String> {
        match &self.deferral {
            Deferral::InProcess => {
                let this = self.clone();
                tokio::spawn(async move { this.run_job(job).await });
                Ok(())
            }
            Deferral::Remote(d) => d
                .defer(&self.signed_job(&job))
                .await
                .map_err(|e| e.to_string()),
        }
    }

    fn job_key(&self) -> jit_core::links::LinkKey {
        self.notifier.links.derive("deferred-jobs")
    }

    /// The envelope a remote deferral carries: the job, when, and a tag
    /// under a key derived from the link key.
    pub fn signed_job(&self, job: &Job) -> Value {
        let job = serde_json::to_value(job).unwrap_or(Value::Null);
        let at = self.broker.clock.now().timestamp();
        let tag = self.job_key().tag(format!("{at}:{job}").as_bytes());
        json!({ "jitDeferred": job, "at": at, "tag": tag })
    }

    /// Whether an event is a deferred job envelope (vs. an HTTP request).
    pub fn is_deferred_job(event: &Value) -> bool {
        event.get("jitDeferred").is_some()
    }

    /// Verifies and runs a deferred job envelope.
    pub async fn run_signed_job(&self, envelope: &Value) -> Result<(), String> {
        let job = envelope.get("jitDeferred").ok_or("not a deferred job")?;
        let at = envelope
            .get("at")
            .and_then(Value::as_i64)
            .ok_or("no timestamp")?;
        let tag = envelope
            .get("tag")
            .and_then(Value::as_str)
            .ok_or("no tag")?;
        if !self
            .job_key()
            .verify_tag(format!("{at}:{job}").as_bytes(), tag)
        {
            return Err("the deferred job's tag does not verify".into());
        }
        let age = self.broker.clock.now().timestamp() - at;
        if !(-60..=JOB_MAX_AGE_SECS).contains(&age) {
            return Err("the deferred job is too old".into());
        }
        let job: Job = serde_json::from_value(job.clone()).map_err(|e| e.to_string())?;
        // Lambda delivers an asynchronous invocation at least once: a second
        // delivery of the same envelope (its tag is unique) runs nothing.
        let now = self.broker.clock.now();
        let until = now + chrono::Duration::seconds(JOB_MAX_AGE_SECS + 120);
        let first = self
            .broker
            .store
            .first_use(
                &format!("deferred-job:{}", seen_key_digest(tag)),
                now,
                until,
            )
            .await
            .map_err(|e| format!("could not record the deferred job as run: {e}"))?;
        if !first {
            tracing::info!("a deferred job delivered again: already run");
            return Ok(());
        }
        self.run_job(job).await;
        Ok(())
    }

    /// Runs a job; its outcome reaches the person through Slack.
    pub async fn run_job(&self, job: Job) {
        match job {
            Job::SlackInteraction { body } => self.interaction_job(&body).await,
            Job::SlackCommand { body } => self.command_job(&body).await,
        }
    }

    async fn respond(&self, response_url: Option<&str>, body: Value) {
        let (Some(url), Some(chat)) = (response_url, &self.notifier.chat) else {
            tracing::warn!("no response_url or Slack client: an answer could not be shown");
            return;
        };
        if let Err(e) = chat.respond(url, &body).await {
            tracing::warn!(error = %e, "could not answer through Slack's response_url");
        }
    }

    /// The principal a Slack user acts as: the catalog's mapping, else the
    /// email Slack's `users.info` shares.
    async fn slack_principal(&self, user_id: &str) -> Result<Principal, String> {
        if let Some(p) = self.broker.catalog.slack_principal(user_id) {
            return Ok(p.clone());
        }
        let chat = self
            .notifier
            .chat
            .as_ref()
            .ok_or("Slack is not configured with a bot token")?;
        match chat.user_email(user_id).await {
            Ok(Some(email)) => Principal::parse(email).map_err(|e| e.0),
            Ok(None) => Err(format!(
                "I could not find an email for your Slack user. Ask an administrator to map `{user_id}` to you under `slack_users:` in the catalog."
            )),
            Err(e) => Err(format!(
                "I could not look up your Slack user ({e}). Please try again in a moment."
            )),
        }
    }

    async fn interaction_job(&self, body: &str) {
        let i = match slack::parse_interaction(body.as_bytes()) {
            Ok(i) => i,
            Err(e) => {
                tracing::info!(error = %e, "ignored a Slack interaction");
                return;
            }
        };
        let url = i.response_url.as_deref();
        let principal = match self.slack_principal(&i.user_id).await {
            Ok(p) => p,
            Err(message) => return self.respond(url, render::ephemeral(&message)).await,
        };
        let groups = match self.broker.groups_of(&principal, &[]).await {
            Ok(g) => g,
            Err(e) => return self.respond(url, render::ephemeral(&e.to_string())).await,
        };
        let who = Decider {
            groups,
            principal,
            slack_user: Some(i.user_id.clone()),
            via: "slack",
            through: None,
        };
        let outcome = match i.action_id.as_str() {
            render::ACTION_APPROVE => {
                self.broker
                    .approve_as(&who, &i.request_id, i.reason.clone())
                    .await
            }
            render::ACTION_DENY => {
                self.broker
                    .deny_as(&who, &i.request_id, i.reason.clone())
                    .await
            }
            _ => return self.open_page_job(&who, &i.request_id, url).await,
        };
        match outcome {
            Ok(r) => {
                if let Err(e) = self.notifier.show_outcome(&r.request_id).await {
                    tracing::warn!(request_id = %r.request_id, error = %e, "could not update the Slack message");
                }
                let (heading, message) = decided_text(&r);
                self.respond(url, render::ephemeral(&format!("*{heading}.* {message}")))
                    .await;
            }
            Err(e) => {
                let (_, heading, message) = refusal(&e);
                self.respond(url, render::ephemeral(&format!("*{heading}.* {message}")))
                    .await;
            }
        }
    }

    /// "Open approval page": a personal link, shown only to the approver
    /// who asked, after the same checks a decision makes.
    async fn open_page_job(&self, who: &Decider, id: &str, url: Option<&str>) {
        let Ok(rid) = RequestId::parse(id) else {
            return self
                .respond(url, render::ephemeral("That request id is not valid."))
                .await;
        };
        let stored = self.broker.store.get(&rid).await.ok().flatten();
        let deadline = stored
            .as_ref()
            .and_then(|r| r.notice.as_ref().map(|n| n.deadline))
            .unwrap_or_else(|| self.broker.clock.now() + chrono::Duration::hours(1));
        // The page decides as the principal, so the checks are the link's:
        // someone who approves only by Slack id (no catalog mapping) is
        // refused here and uses the buttons instead.
        let probe = LinkClaims::new(rid.clone(), who.principal.clone(), deadline);
        let checked = self.broker.link_preview(&probe).await;
        match checked {
            Ok(_) => {
                let link = self.notifier.approval_link(&rid, &who.principal, deadline);
                self.respond(
                    url,
                    render::ephemeral(&format!(
                        "Your personal approval page (works once, until {}): <{}|open it>",
                        deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        link
                    )),
                )
                .await;
            }
            Err(e) => {
                let (_, heading, message) = refusal(&e);
                self.respond(url, render::ephemeral(&format!("*{heading}.* {message}")))
                    .await;
            }
        }
    }

    async fn command_job(&self, body: &str) {
        let Ok(c) = slack::parse_slash_command(body.as_bytes()) else {
            return;
        };
        let url = c.response_url.as_deref();
        let cmd = match slack::parse_command(&c.text, &self.broker.catalog) {
            Ok(cmd) => cmd,
            Err(message) => return self.respond(url, render::ephemeral(&message)).await,
        };
        let principal = match self.slack_principal(&c.user_id).await {
            Ok(p) => p,
            Err(message) => return self.respond(url, render::ephemeral(&message)).await,
        };
        let caller = Caller::person(principal, AuthSource::Slack, vec![]);
        let now = || self.broker.clock.now();
        let answer = match cmd {
            JitCommand::Help => render::ephemeral(slack::USAGE),
            JitCommand::Request {
                entitlement,
                duration,
                reason,
            } => {
                let new = NewRequest {
                    entitlement: Some(entitlement.clone()),
                    entitlement_field: "entitlement",
                    duration: Some(jit_core::duration::DurationInput::Text(duration)),
                    justification: Some(reason),
                    justification_required: true,
                    ..NewRequest::default()
                };
                match self.broker.create(&caller, new).await {
                    Ok((r, _)) => render::ephemeral_blocks(
                        &format!("Requested {} ({})", r.entitlement, r.request_id),
                        vec![
                            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!(
                                "Requested *{}* for {}; the approvers are being told. Check on it with `/jit status {}`.",
                                render::mrkdwn_escape(&r.entitlement), r.duration, r.request_id)}}),
                            render::request_block(&r, now()),
                        ],
                    ),
                    Err(e) => render::ephemeral(&self.command_refusal(&e, &entitlement)),
                }
            }
            JitCommand::List => self.list_answer(&caller).await,
            JitCommand::Status(id) => match self.broker.get(&caller, &id).await {
                Ok(r) => render::ephemeral_blocks(
                    &format!("{} is {}", r.request_id, r.effective_status(now())),
                    vec![render::request_block(&r, now())],
                ),
                Err(ServiceError::NotFound { .. }) => render::ephemeral(&format!(
                    "No request `{}` that you can see. Type `/jit list` to see yours.",
                    render::mrkdwn_escape(&id)
                )),
                Err(e) => render::ephemeral(&refusal(&e).2),
            },
            JitCommand::Cancel(id) => match self
                .broker
                .cancel(&caller, &id, None, Some("cancelled from Slack".into()))
                .await
            {
                Ok(r) => {
                    if let Err(e) = self.notifier.show_outcome(&r.request_id).await {
                        tracing::warn!(request_id = %r.request_id, error = %e, "could not update the Slack message");
                    }
                    render::ephemeral_blocks(
                        &format!("Cancelled {}", r.request_id),
                        vec![render::request_block(&r, now())],
                    )
                }
                Err(ServiceError::NotFound { .. }) => render::ephemeral(&format!(
                    "No request `{}` that you can see. Type `/jit list` to see yours.",
                    render::mrkdwn_escape(&id)
                )),
                Err(e) => render::ephemeral(&format!(
                    "{} Type `/jit status {}` to see where it is.",
                    refusal(&e).2,
                    render::mrkdwn_escape(&id)
                )),
            },
        };
        self.respond(url, answer).await;
    }

    fn command_refusal(&self, e: &ServiceError, entitlement: &str) -> String {
        let names: Vec<String> = self
            .broker
            .catalog
            .entitlements()
            .iter()
            .take(20)
            .map(|e| format!("`{}`", e.name))
            .collect();
        match e {
            ServiceError::Invalid {
                code: "unknown_entitlement",
                ..
            } => format!(
                "There is no entitlement `{}`. Type `/jit request <entitlement> <duration> <reason>` with one of: {}.",
                render::mrkdwn_escape(entitlement),
                names.join(", ")
            ),
            ServiceError::Invalid { field, message, .. }
                if field.as_deref() == Some("duration") =>
            {
                format!(
                    "The duration {}. Type it like `30m`, `1h` or `1h30m`.",
                    render::mrkdwn_escape(message)
                )
            }
            ServiceError::Invalid { field, message, .. }
                if field.as_deref() == Some("justification") =>
            {
                format!(
                    "The reason {}. Type it after the duration.",
                    render::mrkdwn_escape(message)
                )
            }
            other => render::mrkdwn_escape(&refusal(other).2),
        }
    }

    async fn list_answer(&self, caller: &Caller) -> Value {
        let now = self.broker.clock.now();
        let mine = self
            .broker
            .list(
                caller,
                None,
                &ListQuery {
                    status: None,
                    page: PageRequest::first(10),
                },
            )
            .await;
        let waiting = self
            .broker
            .list(
                caller,
                None,
                &ListQuery {
                    status: Some(Status::ApprovalPending),
                    page: PageRequest::first(10),
                },
            )
            .await;
        let mut blocks = vec![];
        match mine {
            Ok(p) if p.items.is_empty() => blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": "You have no requests. Type `/jit request <entitlement> <duration> <reason>` to ask for access."}})),
            Ok(p) => {
                blocks.push(json!({"type": "header", "text": {"type": "plain_text", "text": "Your requests"}}));
                blocks.extend(p.items.iter().map(|r| render::request_block(r, now)));
            }
            Err(e) => return render::ephemeral(&refusal(&e).2),
        }
        if let Ok(p) = waiting
            && !p.items.is_empty()
        {
            blocks.push(json!({"type": "header", "text": {"type": "plain_text", "text": "Waiting for your approval"}}));
            blocks.extend(p.items.iter().map(|r| render::request_block(r, now)));
        }
        render::ephemeral_blocks("Your JIT access requests", blocks)
    }
}

/// What to tell the approver after a decision was recorded.
fn decided_text(r: &AccessRequest) -> (&'static str, String) {
    match r.status {
        Status::Denied => (
            "Denied",
            format!(
                "The request from {} for {} is denied; the requester is told.",
                r.requester.principal, r.entitlement
            ),
        ),
        _ if r.decided_at.is_some() => (
            "Approved",
            format!(
                "The request from {} for {} ({}) is approved; access is being granted.",
                r.requester.principal, r.entitlement, r.duration
            ),
        ),
        _ => (
            "Approval recorded",
            format!(
                "Your approval of {}'s request for {} is recorded; it still waits for another approver.",
                r.requester.principal, r.entitlement
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let api = origin_of("https://abc.execute-api.us-east-1.amazonaws.com/Prod");
        assert_eq!(
            api.as_deref(),
            Some("https://abc.execute-api.us-east-1.amazonaws.com")
        );
        for same in [
            "https://abc.execute-api.us-east-1.amazonaws.com",
            "HTTPS://ABC.execute-api.us-east-1.amazonaws.com:443",
        ] {
            assert_eq!(origin_of(same), api, "{same}");
        }
        for other in [
            "http://abc.execute-api.us-east-1.amazonaws.com",
            "https://abc.execute-api.us-east-1.amazonaws.com:8443",
            "https://evil.example",
            "https://abc.execute-api.us-east-1.amazonaws.com.evil.example",
        ] {
            assert_ne!(origin_of(other), api, "{other}");
        }
        assert_eq!(
            origin_of("http://127.0.0.1:3000").as_deref(),
            Some("http://127.0.0.1:3000")
        );
        assert_eq!(
            origin_of("http://[::1]:3000/x").as_deref(),
            Some("http://[::1]:3000")
        );
        assert_eq!(origin_of("http://[::1]/").as_deref(), Some("http://[::1]"));
        for nothing in ["null", "", "file:///x", "https://"] {
            assert_eq!(origin_of(nothing), None, "{nothing}");
        }
    }
}
