//! Lambda's `Invoke`, signed with SigV4 here rather than through
//! `aws-sdk-lambda`'s client.
//!
//! Why: that client costs about 200 KB per binary, and it took `request`
//! (through the Identity Center ports) and `approval-callback` (through its
//! deferred Slack work) over the 6 MB Lambda target, while the signer, the
//! credentials and the HTTPS connector are linked by every function
//! already. The wire format is the one the SDK speaks: `POST
//! /2015-03-31/functions/<name>/invocations` with `X-Amz-Invocation-Type`;
//! it is tested against a loopback fake of it and against moto.

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use serde::Deserialize;

/// How the function is invoked (`X-Amz-Invocation-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InvocationType {
    /// Synchronous: the answer is the function's result.
    RequestResponse,
    /// Queued by Lambda (`202`, no payload); Lambda retries a failed run.
    Event,
}

impl InvocationType {
    fn header(self) -> &'static str {
        match self {
            InvocationType::RequestResponse => "RequestResponse",
            InvocationType::Event => "Event",
        }
    }
}

/// A failed invoke: whether trying again may help, and what happened.
#[derive(Debug)]
pub(crate) struct InvokeError {
    pub transient: bool,
    pub message: String,
}

/// A completed invoke: the function's error kind (`X-Amz-Function-Error`,
/// set when the function itself failed) and its payload.
pub(crate) struct Invoked {
    pub function_error: Option<String>,
    pub payload: bytes::Bytes,
}

/// A function's own error payload (`X-Amz-Function-Error` set): what the
/// runtime reports for a failed invocation.
#[derive(Deserialize, Default)]
pub(crate) struct FunctionError {
    #[serde(rename = "errorType", default)]
    pub error_type: Option<String>,
    #[serde(rename = "errorMessage", default)]
    pub error_message: Option<String>,
}

/// Lambda's own error body (`{"Type": "User", "message": …}`).
#[derive(Deserialize, Default)]
struct ServiceError {
    #[serde(default, alias = "Message")]
    message: Option<String>,
}

/// Longest one invoke may take: the `assignments` function's own timeout
/// (45 s) and some.
const INVOKE_BOUND: std::time::Duration = std::time::Duration::from_secs(60);

/// Signs and sends `Invoke` requests.
#[derive(Clone)]
pub(crate) struct Invoker {
    credentials: Option<SharedCredentialsProvider>,
    region: String,
    /// `https://lambda.<region>.amazonaws.com`, or the configuration's
    /// endpoint (`AWS_ENDPOINT_URL`: moto, a test's fake).
    endpoint: String,
    connector: crate::sdk::LazyConnector,
}

impl std::fmt::Debug for Invoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invoker")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Invoker {
    pub(crate) fn new(config: &aws_config::SdkConfig) -> Invoker {
        let region = config
            .region()
            .map(|r| r.as_ref().to_string())
            .unwrap_or_else(|| "us-east-1".to_string());
        let endpoint = match config.endpoint_url() {
            Some(url) => url.trim_end_matches('/').to_string(),
            None if region.starts_with("cn-") => {
                format!("https://lambda.{region}.amazonaws.com.cn")
            }
            None => format!("https://lambda.{region}.amazonaws.com"),
        };
        Invoker {
            credentials: config.credentials_provider(),
            region,
            endpoint,
            connector: crate::sdk::LazyConnector::default(),
        }
    }

    /// One invoke of `function` (name or ARN): the function's status header
    /// and payload, or the transport's or Lambda's own failure.
    pub(crate) async fn invoke(
        &self,
        function: &str,
        kind: InvocationType,
        payload: Vec<u8>,
    ) -> Result<Invoked, InvokeError> {
        let transient = |message: String| InvokeError {
            transient: true,
            message,
        };
        let permanent = |message: String| InvokeError {
            transient: false,
            message,
        };
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| permanent("no credentials provider".into()))?;
        let creds = provider
            .provide_credentials()
            .await
            .map_err(|e| transient(format!("credentials: {e}")))?;
        let uri = format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.endpoint,
            encode_path(function)
        );
        let mut req = http::Request::builder()
            .method("POST")
            .uri(&uri)
            .header("content-type", "application/json")
            .header("x-amz-invocation-type", kind.header())
            .body(SdkBody::from(payload.clone()))
            .map_err(|e| permanent(format!("bad request: {e}")))?;
        let identity = creds.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("lambda")
            .time(std::time::SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| permanent(format!("SigV4: {e}")))?
            .into();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.to_string(), v.to_string())))
            .collect();
        let signable = SignableRequest::new(
            "POST",
            &uri,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(&payload),
        )
        .map_err(|e| permanent(format!("SigV4: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| permanent(format!("SigV4: {e}")))?
            .into_parts();
        instructions.apply_to_request_http1x(&mut req);
        let req = HttpRequest::try_from(req).map_err(|_| permanent("bad URL".into()))?;
        let call = async {
            let resp = self
                .connector
                .get()
                .call(req)
                .await
                .map_err(|e| transient(format!("unreachable ({e})")))?;
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .map(|v| v.to_string())
                    .filter(|v| !v.is_empty())
            };
            let function_error = header("x-amz-function-error");
            let error_code = header("x-amzn-errortype");
            let body = ByteStream::new(resp.into_body())
                .collect()
                .await
                .map_err(|_| transient("the answer broke off".into()))?
                .into_bytes();
            Ok::<_, InvokeError>((status, function_error, error_code, body))
        };
        let (status, function_error, error_code, body) = tokio::time::timeout(INVOKE_BOUND, call)
            .await
            .map_err(|_| transient(format!("no answer within {} s", INVOKE_BOUND.as_secs())))??;
        if (200..300).contains(&status) {
            return Ok(Invoked {
                function_error,
                payload: body,
            });
        }
        // Lambda's own error: its code (before any `:`) and message.
        let code = error_code
            .as_deref()
            .map(|c| c.split(':').next().unwrap_or(c).to_string())
            .unwrap_or_else(|| format!("HTTP {status}"));
        let message = serde_json::from_slice::<ServiceError>(&body)
            .unwrap_or_default()
            .message
            .unwrap_or_else(|| "(no message)".into());
        let text = format!("{code}: {message}");
        // Throttling, Lambda's 5xx and a function not ready yet are worth
        // retrying; a missing function or a denied invoke is a deployment
        // mistake.
        let retry = status == 429
            || status >= 500
            || matches!(
                code.as_str(),
                "TooManyRequestsException"
                    | "ResourceNotReadyException"
                    | "ResourceConflictException"
                    | "SnapStartNotReadyException"
            );
        Err(if retry {
            transient(text)
        } else {
            permanent(text)
        })
    }
}

/// A function name or ARN as one URL path segment (`:` kept, as Lambda's
/// own clients send it).
fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode_path;

    #[test]
    fn a_function_arn_stays_one_path_segment() {
        assert_eq!(
            encode_path("arn:aws:lambda:eu-west-1:123456789012:function:jit cb/x"),
            "arn:aws:lambda:eu-west-1:123456789012:function:jit%20cb%2Fx"
        );
    }
}
