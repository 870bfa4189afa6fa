//! A small HTTP/1.1 JSON client for the broker's API.

use std::time::Duration;

use anyhow::{Result, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::config::{Auth, Config};

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Client {
    cfg: Config,
    /// The key, read once per run (from `api_key_file` when configured so).
    api_key: String,
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    keys: crate::sigv4::KeyCache,
}

impl Client {
    pub fn new(cfg: Config) -> Result<Client> {
        let https = if cfg.api_url.starts_with("https://") {
            true
        } else if cfg.api_url.starts_with("http://") {
            false
        } else {
            return Err(anyhow!(
                "the API URL `{}` is not an http:// or https:// URL: run `jit configure --api-url <url>`",
                cfg.api_url
            ));
        };
        let http = HyperClient::builder(TokioExecutor::new()).build(connector(https)?);
        let api_key = cfg.key()?;
        Ok(Client {
            api_key,
            cfg,
            http,
            keys: Default::default(),
        })
    }

    /// Calls the API; a 2xx answer's JSON, or one line naming the error and
    /// the fix.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("{}{}", self.cfg.api_url.trim_end_matches('/'), path);
        let mut b = Request::builder()
            .method(method)
            .uri(&url)
            .header("x-api-key", &self.api_key)
            .header("accept", "application/json");
        match &self.cfg.auth {
            Auth::Local { user, groups } => {
                b = b.header("x-jit-user", user);
                if !groups.is_empty() {
                    b = b.header("x-jit-groups", groups.join(","));
                }
            }
            Auth::Bearer { token } => {
                b = b.header("authorization", format!("Bearer {token}"));
            }
            Auth::Sigv4 { .. } | Auth::ApiKeyOnly => {}
        }
        let payload = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let mut req = b
            .body(Full::new(payload.clone()))
            .map_err(|e| anyhow!("bad API URL `{url}` ({e}): run `jit configure --api-url …`"))?;
        if let Auth::Sigv4 { region, profile } = &self.cfg.auth {
            let keys = self.keys.get(profile.as_deref()).await?;
            crate::sigv4::sign_request(
                &mut req,
                &payload,
                &keys,
                region,
                std::time::SystemTime::now(),
            )?;
        }
        let resp = tokio::time::timeout(TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| {
                anyhow!(
                    "{} did not answer within {}s: check the API URL with `jit configure`",
                    self.cfg.api_url,
                    TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| {
                anyhow!(
                    "cannot reach {} ({}): is the API running? check `jit configure --api-url`",
                    self.cfg.api_url,
                    root_cause(&e)
                )
            })?;
        let status = resp.status();
        let bytes = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| anyhow!("{} stopped answering mid-response", self.cfg.api_url))?
            .map_err(|e| anyhow!("reading the answer from {}: {e}", self.cfg.api_url))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        if status.as_u16() == 403
            && value["error"]["field"] == "x-api-key"
            && let Some(file) = &self.cfg.api_key_file
        {
            return Err(anyhow!(
                "{} refused the API key in {}: that file belongs to another jit-local; run `jit configure --local --data-dir <the data dir of the jit-local at {}>`",
                self.cfg.api_url,
                file.display(),
                self.cfg.api_url
            ));
        }
        Err(anyhow!(api_error_line(status.as_u16(), &value)))
    }
}

/// Plain http needs no trust roots, so loading the platform's (a few ms) is
/// paid only for https URLs.
fn connector(https: bool) -> Result<HttpsConnector<HttpConnector>> {
    let ring = || std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = if https {
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(ring())
            .map_err(|e| {
                anyhow!("no trusted TLS root certificates on this machine ({e}): install the CA certificates package")
            })?
    } else {
        let config = rustls::ClientConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow!("TLS setup: {e}"))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
    };
    Ok(builder.https_or_http().enable_http1().build())
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The API's `error.message` plus what to do about it, on one line.
pub fn api_error_line(status: u16, body: &Value) -> String {
    let code = body["error"]["code"].as_str().unwrap_or("");
    let message = body["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("the API answered HTTP {status}"));
    let field = body["error"]["field"].as_str();
    let fix = match (status, code) {
        (403, "forbidden") if message.contains("API key") => {
            "check the API key: run `jit configure --api-key <key>`"
        }
        (_, "unauthenticated" | "identity_mismatch") => {
            "say who you are: run `jit configure` with `--local --user <email>` or `--bearer <token>`"
        }
        (_, "not_eligible") => "ask for an entitlement your groups may request",
        (_, "unknown_entitlement") => "`jit entitlements` lists the names you may request",
        (_, "self_approval" | "not_approver") => "ask one of the entitlement's approvers",
        (_, "not_found") => "check the id with `jit list`",
        (_, "route_not_found") => "check the API URL with `jit configure --api-url`",
        (_, "invalid_state" | "already_decided" | "conflict") => {
            "see the request's state with `jit show <id>`"
        }
        (401 | 403, _) => "check your credentials: run `jit configure`",
        (500..=599, _) => "try again later, or ask the platform team",
        _ => "",
    };
    let mut line = match field {
        Some(f) if !message.contains(f) => format!("{message} (field `{f}`)"),
        _ => message,
    };
    if !fix.is_empty() {
        line.push_str(": ");
        line.push_str(fix);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_lines_name_the_fix() {
        let l = api_error_line(
            403,
            &json!({"error": {"code": "forbidden", "message": "missing or invalid API key: send it in the x-api-key header"}}),
        );
        assert!(l.contains("jit configure --api-key"), "{l}");
        assert!(!l.contains('\n'));
        let l = api_error_line(
            400,
            &json!({"error": {"code": "invalid_field", "message": "must be a string", "field": "reason"}}),
        );
        assert_eq!(l, "must be a string (field `reason`)");
        let l = api_error_line(502, &Value::Null);
        assert!(l.starts_with("the API answered HTTP 502"), "{l}");
    }
}
