//! Console sign-in through the AWS federation endpoint: `getSigninToken`
//! with the role session's credentials, then the `login` URL.
//!
//! The HTTP call goes through the same hyper + rustls-on-*ring* stack the
//! SDK clients use (`aws-smithy-http-client`'s connector), so nothing new
//! is linked. The endpoint is configurable (`JIT_FEDERATION_URL`) so tests
//! point it at a loopback fake. The session JSON (secret key, token) and
//! the sign-in token never appear in a log line or an error: errors carry
//! the HTTP status only.
//!
//! No `SessionDuration` is sent: the federation endpoint refuses it for
//! role-chained credentials (a Lambda assuming a role), and without it the
//! console session lasts as long as the credentials, which the broker clips
//! to the request's window.

use std::time::Duration;

use async_trait::async_trait;
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::byte_stream::ByteStream;
use jit_core::grant_ports::ConsoleSignin;
use jit_core::ports::{GrantError, IssuedCredentials, Secret};

/// AWS's federation endpoint (the default of `JIT_FEDERATION_URL`).
pub const DEFAULT_FEDERATION_URL: &str = "https://signin.aws.amazon.com/federation";
/// Where the console opens.
pub const DEFAULT_DESTINATION: &str = "https://console.aws.amazon.com/";
/// How the sign-in page names who sent the user.
pub const ISSUER: &str = "jit-access";

/// The longest the `getSigninToken` call may take (well inside the
/// request Lambda's 10 s timeout).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// `application/x-www-form-urlencoded` / RFC 3986 component encoding.
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidFederationUrl(String);

/// The federation endpoint behind the [`ConsoleSignin`] port.
#[derive(Clone)]
pub struct FederationSignin {
    endpoint: String,
    destination: String,
    /// Built on first use: its trust roots are loaded then, not at init.
    connector: crate::sdk::LazyConnector,
}

impl std::fmt::Debug for FederationSignin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederationSignin")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl FederationSignin {
    /// An endpoint URL: `https://…`, or `http://` on loopback (tests).
    pub fn new(endpoint: &str) -> Result<FederationSignin, InvalidFederationUrl> {
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|_| InvalidFederationUrl(format!("`{endpoint}` is not a URL")))?;
        let host = uri.host().unwrap_or_default();
        let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1");
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if loopback => {}
            _ => {
                return Err(InvalidFederationUrl(format!(
                    "`{endpoint}` must be an https:// URL (http:// only on loopback)"
                )));
            }
        }
        if uri.query().is_some() {
            return Err(InvalidFederationUrl(format!(
                "`{endpoint}` must not carry a query"
            )));
        }
        Ok(FederationSignin {
            endpoint: endpoint.to_string(),
            destination: DEFAULT_DESTINATION.to_string(),
            connector: crate::sdk::LazyConnector::default(),
        })
    }

    fn connector(&self) -> &aws_smithy_http_client::Connector {
        self.connector.get()
    }

    /// Where the console opens after sign-in (default: the console home).
    pub fn with_destination(mut self, destination: impl Into<String>) -> Self {
        self.destination = destination.into();
        self
    }

    async fn signin_token(&self, creds: &IssuedCredentials) -> Result<Secret, GrantError> {
        let session = serde_json::json!({
            "sessionId": creds.access_key_id,
            "sessionKey": creds.secret_access_key.expose(),
            "sessionToken": creds.session_token.expose(),
        })
        .to_string();
        let url = format!(
            "{}?Action=getSigninToken&Session={}",
            self.endpoint,
            encode_component(&session)
        );
        let request = HttpRequest::get(url).map_err(|_| {
            GrantError::Other("federation endpoint: the request could not be built".into())
        })?;
        let call = async {
            let response = self.connector().call(request).await.map_err(|e| {
                // Connection-level: no part of the request in the text.
                GrantError::Transient(format!(
                    "federation endpoint {}: {}",
                    self.endpoint,
                    if e.is_timeout() {
                        "timed out"
                    } else {
                        "could not be reached"
                    }
                ))
            })?;
            let status = response.status().as_u16();
            let body = ByteStream::new(response.into_body())
                .collect()
                .await
                .map_err(|_| {
                    GrantError::Transient(format!(
                        "federation endpoint {}: the answer could not be read",
                        self.endpoint
                    ))
                })?
                .into_bytes();
            Ok::<_, GrantError>((status, body))
        };
        let (status, body) = tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| {
                GrantError::Transient(format!(
                    "federation endpoint {}: no answer within {}s",
                    self.endpoint,
                    CALL_TIMEOUT.as_secs()
                ))
            })??;
        match status {
            200 => {}
            429 | 500..=599 => {
                return Err(GrantError::Transient(format!(
                    "federation endpoint {}: HTTP {status}",
                    self.endpoint
                )));
            }
            _ => {
                return Err(GrantError::Other(format!(
                    "federation endpoint {} refused the session credentials: HTTP {status}",
                    self.endpoint
                )));
            }
        }
        let token = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("SigninToken")?.as_str().map(str::to_string))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                GrantError::Other(format!(
                    "federation endpoint {} answered without a SigninToken",
                    self.endpoint
                ))
            })?;
        Ok(Secret::new(token))
    }
}

#[async_trait]
impl ConsoleSignin for FederationSignin {
    async fn signin_url(&self, creds: &IssuedCredentials) -> Result<Secret, GrantError> {
        let token = self.signin_token(creds).await?;
        Ok(Secret::new(format!(
            "{}?Action=login&Issuer={}&Destination={}&SigninToken={}",
            self.endpoint,
            encode_component(ISSUER),
            encode_component(&self.destination),
            encode_component(token.expose())
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_https_or_loopback() {
        assert!(FederationSignin::new(DEFAULT_FEDERATION_URL).is_ok());
        assert!(FederationSignin::new("http://127.0.0.1:9/federation").is_ok());
        for bad in [
            "http://signin.aws.amazon.com/federation",
            "ftp://x/",
            "not a url",
            "https://signin.aws.amazon.com/federation?x=1",
        ] {
            assert!(FederationSignin::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(
            encode_component(r#"{"a":"b c/+="}"#),
            "%7B%22a%22%3A%22b%20c%2F%2B%3D%22%7D"
        );
        assert_eq!(encode_component("AZaz09-_.~"), "AZaz09-_.~");
    }
}
