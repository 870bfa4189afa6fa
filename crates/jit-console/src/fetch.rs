//! HTTP out of the console: to the identity provider (discovery, JWKS,
//! token endpoint) and, deployed, to the broker's API with the person's
//! token ([`HttpBackend`]).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::{ApiAnswer, ApiCall, Backend, Session};

/// One HTTP exchange. Errors are text for logs: never a token or a body.
#[async_trait::async_trait]
pub trait Fetch: Send + Sync {
    async fn send(&self, req: http::Request<Bytes>) -> Result<(u16, Bytes), String>;
}

/// Each call's limit.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The deployed backend: the broker's API at `base` (the console's own
/// HTTP API, whose JWT authorizer checks the token on every call), with
/// the session's ID token as the bearer.
pub struct HttpBackend {
    pub base: String,
    pub fetch: Arc<dyn Fetch>,
}

#[async_trait::async_trait]
impl Backend for HttpBackend {
    async fn call(&self, who: &Session, call: ApiCall) -> ApiAnswer {
        let Some(token) = &who.token else {
            return ApiAnswer::unreachable("the session carries no token");
        };
        let mut url = format!("{}{}", self.base.trim_end_matches('/'), call.path);
        if let Some(q) = &call.query {
            url.push('?');
            url.push_str(q);
        }
        let mut b = http::Request::builder()
            .method(call.method.clone())
            .uri(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::ACCEPT, "application/json");
        let body = match &call.body {
            Some(v) => {
                b = b.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let Ok(req) = b.body(body) else {
            return ApiAnswer::unreachable("bad API URL");
        };
        match self.fetch.send(req).await {
            Ok((status, bytes)) => ApiAnswer {
                status,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            },
            Err(e) => {
                tracing::warn!(error = %e, path = %call.path, "the console could not reach the API");
                ApiAnswer::unreachable("the API did not answer")
            }
        }
    }
}

/// HTTPS (and plain HTTP for loopback fakes) through the SDK's own
/// connector: hyper + rustls on ring, the platform's roots — the stack
/// every Lambda here already links.
#[cfg(feature = "https")]
pub struct SdkFetch(std::sync::OnceLock<aws_smithy_http_client::Connector>);

#[cfg(feature = "https")]
impl Default for SdkFetch {
    fn default() -> Self {
        SdkFetch(std::sync::OnceLock::new())
    }
}

#[cfg(feature = "https")]
#[async_trait::async_trait]
impl Fetch for SdkFetch {
    async fn send(&self, req: http::Request<Bytes>) -> Result<(u16, Bytes), String> {
        use aws_smithy_http_client::tls;
        use aws_smithy_runtime_api::client::http::HttpConnector;
        use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::byte_stream::ByteStream;
        let connector = self.0.get_or_init(|| {
            aws_smithy_http_client::Connector::builder()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::Ring,
                ))
                .build()
        });
        let (parts, body) = req.into_parts();
        let req = http::Request::from_parts(parts, SdkBody::from(body));
        let req = HttpRequest::try_from(req).map_err(|_| "bad request URL".to_string())?;
        let resp = tokio::time::timeout(CALL_TIMEOUT, connector.call(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| format!("unreachable ({e})"))?;
        let status = resp.status().as_u16();
        let body = tokio::time::timeout(CALL_TIMEOUT, ByteStream::new(resp.into_body()).collect())
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|_| "the answer broke off".to_string())?
            .into_bytes();
        Ok((status, body))
    }
}
