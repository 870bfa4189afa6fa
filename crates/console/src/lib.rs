//! The `console` Lambda: API Gateway (HTTP API) events in, the web console's
//! pages out. Sign-in is OpenID Connect only — this crate never builds the
//! local sign-in — and every page is made from the broker's API, called at
//! `JIT_CONSOLE_URL` with the person's ID token, which the HTTP API's JWT
//! authorizer checks. So this function holds no table, workflow or IAM
//! permission: its role reads one secret (the session key), nothing else.

use std::sync::Arc;

use bytes::Bytes;
use jit_console::fetch::{HttpBackend, SdkFetch};
use jit_console::oidc::{OidcClient, OidcConfig};
use jit_console::{Console, ConsoleRequest, SessionKey, SignIn};
use lambda_http::{Body, Request, RequestExt, Response};

/// How long a deployed session lasts at most (it also ends with its token).
pub const SESSION_SECS: i64 = 8 * 3600;

/// The function's configuration, from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub issuer: String,
    pub client_id: String,
    pub groups_claim: String,
    pub email_verified_claim: String,
    /// The console's public base URL (`https://…execute-api…amazonaws.com`):
    /// the OIDC redirect goes to `<it>/ui/auth/callback`, API calls to `<it>/…`.
    pub console_url: String,
    /// The Secrets Manager id of the session-signing key.
    pub session_key_id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl Config {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let need = |var: &'static str| {
            get(var)
                .filter(|v| !v.trim().is_empty())
                .ok_or(ConfigError {
                    var,
                    message: "is required".into(),
                })
        };
        let https = |var: &'static str, v: String| {
            // Plain HTTP only on loopback (tests, jit-bench).
            let loopback = v.starts_with("http://127.0.0.1") || v.starts_with("http://localhost");
            if v.starts_with("https://") || loopback {
                Ok(v.trim_end_matches('/').to_string())
            } else {
                Err(ConfigError {
                    var,
                    message: format!(
                        "must be an https:// URL (http:// on loopback only), not `{v}`"
                    ),
                })
            }
        };
        Ok(Config {
            issuer: https("JIT_OIDC_ISSUER", need("JIT_OIDC_ISSUER")?)?,
            client_id: need("JIT_OIDC_CLIENT_ID")?,
            groups_claim: get("JIT_GROUPS_CLAIM")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "cognito:groups".into()),
            email_verified_claim: get("JIT_EMAIL_VERIFIED_CLAIM")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "email_verified".into()),
            console_url: https("JIT_CONSOLE_URL", need("JIT_CONSOLE_URL")?)?,
            session_key_id: need("JIT_SESSION_KEY_ID")?,
        })
    }
}

/// The console over the deployed API, signing people in with OIDC.
pub fn console(cfg: &Config, session_key: SessionKey) -> Console {
    let fetch = Arc::new(SdkFetch::default());
    let oidc = OidcClient::new(
        OidcConfig {
            issuer: cfg.issuer.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: None,
            redirect_uri: format!("{}/ui/auth/callback", cfg.console_url),
            groups_claim: cfg.groups_claim.clone(),
            email_verified_claim: cfg.email_verified_claim.clone(),
        },
        fetch.clone(),
    );
    Console {
        backend: Arc::new(HttpBackend {
            base: cfg.console_url.clone(),
            fetch,
        }),
        sign_in: SignIn::Oidc(Arc::new(oidc)),
        key: session_key,
        secure_cookies: true,
        session_secs: SESSION_SECS,
        clock: Arc::new(jit_core::ports::SystemClock),
    }
}

/// Translates one API Gateway event.
pub async fn handle(console: &Console, event: Request) -> Response<Body> {
    let path = event.raw_http_path().to_string();
    let (parts, body) = event.into_parts();
    let body = match body {
        Body::Text(t) => Bytes::from(t),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    console
        .handle(ConsoleRequest {
            method: parts.method,
            path,
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            body,
        })
        .await
        .map(Body::Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    const OK: &[(&str, &str)] = &[
        (
            "JIT_OIDC_ISSUER",
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc",
        ),
        ("JIT_OIDC_CLIENT_ID", "client"),
        (
            "JIT_CONSOLE_URL",
            "https://x.execute-api.us-east-1.amazonaws.com/",
        ),
        ("JIT_SESSION_KEY_ID", "jit/console-session-key"),
    ];

    #[tokio::test]
    async fn the_sample_event_is_sent_to_sign_in() {
        // GIVEN the console and events/console-home.json (no session cookie)
        let cfg = Config::from_lookup(env(OK)).unwrap();
        let c = console(&cfg, SessionKey::new(&[1u8; 32]).unwrap());
        let event =
            lambda_http::request::from_str(include_str!("../../../events/console-home.json"))
                .unwrap();
        // WHEN it is handled THEN the browser goes to the sign-in, with the
        // strict policy, and nothing left the function
        let r = handle(&c, event).await;
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/ui/signin?next=%2F");
        assert!(
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
    }

    #[test]
    fn configuration_defaults_and_checks() {
        let c = Config::from_lookup(env(OK)).unwrap();
        assert_eq!(c.groups_claim, "cognito:groups");
        assert_eq!(
            c.console_url,
            "https://x.execute-api.us-east-1.amazonaws.com"
        );
        let mut bad = OK.to_vec();
        bad[0] = ("JIT_OIDC_ISSUER", "http://idp.example.com");
        assert_eq!(
            Config::from_lookup(env(&bad)).unwrap_err().var,
            "JIT_OIDC_ISSUER"
        );
        assert_eq!(
            Config::from_lookup(env(&OK[1..])).unwrap_err(),
            ConfigError {
                var: "JIT_OIDC_ISSUER",
                message: "is required".into()
            }
        );
    }
}
