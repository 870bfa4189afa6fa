//! The web console in `jit-local`: served at `/` and `/ui/…` before the API
//! key check (the console authenticates by its own session cookie, made
//! only by a sign-in that proved the API key), with the API's handler in
//! process as its backend.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use jit_api::ApiRequest;
use jit_console::{ApiAnswer, ApiCall, Backend, Console, SessionKey, SignIn};
use jit_core::{AuthSource, Broker, Caller, Identity, Principal};
use serde_json::Value;

/// Calls `jit_api::handle` as the signed-in person: the same router, body
/// checks, rules and messages as the HTTP API — without the API key's
/// trusted-caller powers (the person acts as themself only).
pub struct InProcess {
    pub broker: Broker,
}

#[async_trait::async_trait]
impl Backend for InProcess {
    async fn call(&self, who: &jit_console::Session, call: ApiCall) -> ApiAnswer {
        let identity = Principal::parse(who.user.clone())
            .ok()
            .map(|principal| Identity {
                principal,
                auth: AuthSource::Local,
                groups: who.groups.clone(),
            });
        let caller = Caller {
            identity,
            trusted_as: None,
            trusted_to_decide: false,
            identify_hint: Some(crate::LOCAL_IDENTIFY_HINT),
        };
        let mut headers = HeaderMap::new();
        let body = match &call.body {
            Some(v) => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let resp = jit_api::handle(
            &self.broker,
            &caller,
            ApiRequest {
                method: call.method,
                path: call.path,
                query: call.query,
                headers,
                body,
            },
        )
        .await;
        ApiAnswer {
            status: resp.status().as_u16(),
            body: serde_json::from_str(resp.body()).unwrap_or(Value::Null),
        }
    }
}

/// The console over `broker`, with local sign-in proven by `api_key`
/// (its session key derived from it: sessions survive a restart that keeps
/// the key, and end when the key changes).
pub fn local_console(broker: &Broker, api_key: &str, key_hint: String) -> Console {
    Console {
        backend: Arc::new(InProcess {
            broker: broker.clone(),
        }),
        sign_in: SignIn::Local {
            api_key: api_key.to_string(),
            key_hint,
        },
        key: SessionKey::derived(api_key.as_bytes(), "jit-local console sessions v1"),
        secure_cookies: false,
        session_secs: jit_console::DEFAULT_SESSION_SECS,
        clock: broker.clock.clone(),
    }
}

/// Whether a request is for the console (`/`, `/ui/…`); the API owns
/// every other path.
pub fn is_console(path: &str) -> bool {
    jit_console::is_console_path(path)
}
