//! Routes of the grant endpoints: credentials, console sign-in, revoke and
//! extension, under `/requests/{id}/…`.
//!
//! The credentials answer is the only place a secret leaves the broker: it
//! is built here, sent with `Cache-Control: no-store`, and never logged.

use http::{Method, Response, StatusCode};
use jit_core::ports::IssuedCredentials;
use jit_core::{Broker, Caller};
use serde::Serialize;
use serde_json::json;

use crate::{ApiError, ApiRequest, json_body, json_response, optional_json_body, request_view};

/// Whether `/requests/{id}/<rest>` is one of these endpoints.
pub(crate) fn handles(rest: &[&str]) -> bool {
    matches!(
        rest,
        ["credentials"] | ["console"] | ["revoke"] | ["extend"] | ["extend", "approve" | "deny"]
    )
}

/// The AWS CLI's `credential_process` output, field for field.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialProcess<'a> {
    version: u8,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    session_token: &'a str,
    /// RFC 3339, UTC.
    expiration: String,
}

/// `{"Version":1,"AccessKeyId","SecretAccessKey","SessionToken","Expiration"}`.
pub fn credential_process_body(c: &IssuedCredentials) -> serde_json::Value {
    serde_json::to_value(CredentialProcess {
        version: 1,
        access_key_id: &c.access_key_id,
        secret_access_key: c.secret_access_key.expose(),
        session_token: c.session_token.expose(),
        expiration: c.expiration.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    })
    .unwrap_or_default()
}

pub(crate) async fn route(
    broker: &Broker,
    caller: &Caller,
    req: &ApiRequest,
    id: &str,
    rest: &[&str],
) -> Result<Response<String>, ApiError> {
    const GET: &[Method] = &[Method::GET];
    const POST: &[Method] = &[Method::POST];
    match (rest, &req.method) {
        (["credentials"], &Method::GET) => {
            let creds = broker.credentials(caller, id).await?;
            Ok(json_response(
                StatusCode::OK,
                &credential_process_body(&creds),
            ))
        }
        (["console"], &Method::GET) => {
            let access = broker.console(caller, id).await?;
            let mut body = json!({ "url": access.url.expose() });
            if !access.portal.is_empty() {
                // A permission-set grant: the access portal, per account.
                body["accounts"] = access
                    .portal
                    .iter()
                    .map(|(a, url)| json!({ "account": a, "url": url }))
                    .collect();
            }
            Ok(json_response(StatusCode::OK, &body))
        }
        (["credentials"] | ["console"], _) => Err(ApiError::MethodNotAllowed(GET)),
        (["revoke"], &Method::POST) => {
            let body = optional_json_body(req)?;
            body.reject_unknown(&["reason", "requester"])?;
            let r = broker
                .revoke(
                    caller,
                    id,
                    body.opt_str("requester")?.as_deref(),
                    body.opt_str("reason")?,
                )
                .await?;
            Ok(json_response(
                StatusCode::OK,
                &request_view(&r, broker.clock.now()),
            ))
        }
        (["extend"], &Method::POST) => {
            let body = json_body(req)?;
            body.reject_unknown(&["duration", "reason", "requester"])?;
            let r = broker
                .extend(
                    caller,
                    id,
                    body.opt_str("requester")?.as_deref(),
                    body.opt_duration("duration")?,
                    body.opt_str("reason")?,
                )
                .await?;
            Ok(json_response(
                StatusCode::OK,
                &request_view(&r, broker.clock.now()),
            ))
        }
        (["extend", verb], &Method::POST) => {
            let body = optional_json_body(req)?;
            body.reject_unknown(&["reason", "requester"])?;
            let r = broker
                .decide_extension(
                    caller,
                    id,
                    body.opt_str("requester")?.as_deref(),
                    *verb == "approve",
                    body.opt_str("reason")?,
                )
                .await?;
            Ok(json_response(
                StatusCode::OK,
                &request_view(&r, broker.clock.now()),
            ))
        }
        _ => Err(ApiError::MethodNotAllowed(POST)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jit_core::ports::Secret;

    #[test]
    fn credential_process_shape() {
        let c = IssuedCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("s3cr3t"),
            session_token: Secret::new("t0k3n"),
            expiration: chrono::DateTime::from_timestamp(1_800_003_600, 0).unwrap(),
        };
        let v = credential_process_body(&c);
        assert_eq!(
            v,
            json!({
                "Version": 1,
                "AccessKeyId": "ASIAEXAMPLE",
                "SecretAccessKey": "s3cr3t",
                "SessionToken": "t0k3n",
                "Expiration": "2027-01-15T09:00:00Z"
            })
        );
    }
}
