//! A create that waits: `"wait": true` in the body, or `Prefer: wait=N`
//! (RFC 7240; N ≤ 25 seconds). The request answered is GRANTED — with the
//! `credential_process` JSON under `credentials` for assume-role — when a
//! rule approved it, or whatever it is after at most N seconds when it
//! needs a person (see `jit_core::instant`).

use std::time::{Duration, Instant};

use jit_core::instant::MAX_WAIT_SECS;
use jit_core::ports::IssuedCredentials;
use jit_core::service::NewRequest;
use jit_core::{AccessRequest, Broker, Caller, ServiceError};
use serde_json::{Value, json};

use crate::{ApiError, ApiRequest, Body, invalid};

/// How long the create may wait: `Prefer: wait=N` wins over `"wait"`.
pub(crate) fn wait_asked(req: &ApiRequest, body: &Body) -> Result<Option<Duration>, ApiError> {
    let mut asked = match body.opt_bool("wait")? {
        Some(true) => Some(MAX_WAIT_SECS),
        _ => None,
    };
    for value in req.headers.get_all("prefer") {
        let text = value
            .to_str()
            .map_err(|_| invalid("Prefer", "must be visible ASCII"))?;
        for pref in text.split(',') {
            let (name, v) = pref.trim().split_once('=').unwrap_or((pref.trim(), ""));
            if !name.trim().eq_ignore_ascii_case("wait") {
                // Other preferences (`return=minimal`, …) are not ours to refuse.
                continue;
            }
            let v = v.split(';').next().unwrap_or("").trim().trim_matches('"');
            let n: u64 = v.parse().map_err(|_| {
                invalid(
                    "Prefer",
                    format!("`wait={v}` must be a whole number of seconds (0-{MAX_WAIT_SECS})"),
                )
            })?;
            if n > MAX_WAIT_SECS {
                return Err(invalid(
                    "Prefer",
                    format!(
                        "`wait={n}` is longer than the {MAX_WAIT_SECS} seconds a create may wait; ask for at most wait={MAX_WAIT_SECS} and poll GET /requests/{{id}} after"
                    ),
                ));
            }
            asked = Some(n);
        }
    }
    Ok(asked.map(Duration::from_secs))
}

/// First pause between looks at a request that waits for someone; it
/// doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(250);

pub(crate) async fn create_and_wait(
    broker: &Broker,
    caller: &Caller,
    new: NewRequest,
    wait: Duration,
) -> Result<
    (
        AccessRequest,
        bool,
        Option<Result<IssuedCredentials, ServiceError>>,
    ),
    ApiError,
> {
    let started = Instant::now();
    let out = broker.create_instant(caller, new, wait).await?;
    let mut r = out.request;
    let id = r.request_id.to_string();
    let mut pause = FIRST_POLL;
    while !broker.settled(&r) {
        let left = wait.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(MAX_POLL);
        r = broker.get(caller, &id).await?;
    }
    // The request exists whatever happens now: a refused vend is reported
    // beside it (`credentialsError`), not instead of it.
    let credentials = broker.credentials_on_create(caller, &r).await.transpose();
    Ok((r, out.created, credentials))
}

/// `credentials` (the AWS CLI's `credential_process` JSON) or
/// `credentialsError` (`{code, message}`) in the create's answer.
pub(crate) fn attach_credentials(
    view: &mut Value,
    credentials: Result<IssuedCredentials, ServiceError>,
) {
    match credentials {
        Ok(c) => view["credentials"] = crate::grants::credential_process_body(&c),
        Err(e) => {
            let resp = crate::error_response(&ApiError::Service(e));
            let body: Value = serde_json::from_str(resp.body()).unwrap_or(Value::Null);
            view["credentialsError"] = body.get("error").cloned().unwrap_or(json!({}));
        }
    }
}
