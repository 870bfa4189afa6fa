//! The web console: pages for requesters (ask, follow, use a grant),
//! approvers (an inbox to decide from) and admins (every request, drift,
//! analytics as charts), rendered on the server as small HTML pages with
//! one embedded stylesheet and one small script.
//!
//! The console holds no rules of its own: every page is built from the
//! broker's HTTP API answers and every action is an API call made as the
//! signed-in person, through a [`Backend`] — in `jit-local` the API's
//! handler in process, deployed the API itself over HTTPS with the
//! person's OpenID Connect token. So nobody sees or decides anything the
//! API would refuse them, and a refusal shows the API's own message.
//!
//! It must never: trust an identity it did not establish (the signed
//! session cookie, made only by a sign-in it ran), change state on a GET
//! (every action is a POST carrying the session's CSRF token), load
//! anything from another host, or put a credential in a log line or a URL.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};
use serde_json::Value;

pub mod charts;
pub mod fetch;
mod html;
pub mod oidc;
mod pages;
pub mod session;

pub use session::{Session, SessionKey};

/// The path prefix of every console page but the home page (`/`). The API
/// owns the other paths (`/requests`, `/analytics`, …), so a console page
/// never shadows an API route.
pub const PREFIX: &str = "/ui";

/// Whether a path is the console's (`/`, `/ui`, `/ui/…`).
pub fn is_console_path(path: &str) -> bool {
    path == "/" || path == PREFIX || path.starts_with("/ui/")
}

/// Largest form body accepted (a justification is at most 1,024 characters).
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// A request as the front door saw it.
#[derive(Debug, Clone)]
pub struct ConsoleRequest {
    pub method: Method,
    pub path: String,
    /// The raw query string without `?`.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// One call to the broker's HTTP API, made as the signed-in person.
#[derive(Debug, Clone)]
pub struct ApiCall {
    pub method: Method,
    /// `/requests/01H…/cancel`.
    pub path: String,
    /// Already percent-encoded.
    pub query: Option<String>,
    pub body: Option<Value>,
}

impl ApiCall {
    pub fn get(path: impl Into<String>) -> ApiCall {
        ApiCall {
            method: Method::GET,
            path: path.into(),
            query: None,
            body: None,
        }
    }

    pub fn post(path: impl Into<String>, body: Value) -> ApiCall {
        ApiCall {
            method: Method::POST,
            path: path.into(),
            query: None,
            body: Some(body),
        }
    }

    pub fn query(mut self, q: &[(&str, &str)]) -> ApiCall {
        let s: Vec<String> = q
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", jit_core::links::percent_encode(v)))
            .collect();
        self.query = (!s.is_empty()).then(|| s.join("&"));
        self
    }
}

/// The API's answer: its status and JSON body.
#[derive(Debug, Clone)]
pub struct ApiAnswer {
    pub status: u16,
    pub body: Value,
}

impl ApiAnswer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The API's refusal as a person reads it: its message, and the field
    /// it names.
    pub fn refusal(&self) -> String {
        let e = &self.body["error"];
        let message = e["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the API answered HTTP {}", self.status));
        match e["field"].as_str() {
            Some(f) if !message.starts_with(f) => format!("{f}: {message}"),
            _ => message,
        }
    }

    /// The API's error code (`not_eligible`, …), when it refused.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// An answer made here, for a backend that could not reach the API.
    pub fn unreachable(detail: &str) -> ApiAnswer {
        ApiAnswer {
            status: 502,
            body: serde_json::json!({"error": {"code": "api_unreachable", "message": format!("the console could not reach the API: {detail}")}}),
        }
    }
}

/// Where API calls go: the API's handler in process (`jit-local`) or the
/// deployed API over HTTPS with the person's token.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    async fn call(&self, who: &Session, call: ApiCall) -> ApiAnswer;
}

/// How people sign in.
pub enum SignIn {
    /// `jit-local` only: pick an identity and groups, proven by the local
    /// API key. Never built by the deployed console.
    Local {
        /// The key `jit-local` prints and keeps in its data directory.
        api_key: String,
        /// Where the key is, for the sign-in page.
        key_hint: String,
    },
    /// OpenID Connect, authorization code with PKCE.
    Oidc(Arc<oidc::OidcClient>),
}

/// The console: its backend, how people sign in, and its cookie settings.
pub struct Console {
    pub backend: Arc<dyn Backend>,
    pub sign_in: SignIn,
    pub key: SessionKey,
    /// Deployed (HTTPS): cookies are `Secure` and `__Host-` prefixed.
    pub secure_cookies: bool,
    /// Longest a session lasts (an OIDC session also ends with its token).
    pub session_secs: i64,
    /// Now, as seconds since the epoch (a test clock may stand in).
    pub clock: Arc<dyn jit_core::Clock>,
}

/// A local session lasts a working day.
pub const DEFAULT_SESSION_SECS: i64 = 12 * 3600;

impl Console {
    /// Serves one console request. Never fails: every error is a page.
    pub async fn handle(&self, req: ConsoleRequest) -> Response<String> {
        let mut resp = pages::route(self, req).await;
        html::security_headers(resp.headers_mut());
        resp
    }

    /// A page saying why something was refused (the front door's own
    /// refusals, e.g. `jit-local`'s backpressure), with the security headers.
    pub fn refusal_page(
        &self,
        status: StatusCode,
        heading: &str,
        message: &str,
    ) -> Response<String> {
        let mut resp = pages::plain_error(self, status, heading, message);
        html::security_headers(resp.headers_mut());
        resp
    }

    pub(crate) fn now(&self) -> jit_core::request::Timestamp {
        self.clock.now()
    }
}

/// A `303 See Other` to `location` (after a POST: the browser GETs it).
pub(crate) fn see_other(location: &str) -> Response<String> {
    let mut r = Response::new(String::new());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = location.parse() {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
