//! SigV4 (`execute-api`) signing with the user's base AWS credentials: from
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, else
//! the shared credentials file's profile (`AWS_SHARED_CREDENTIALS_FILE` or
//! `~/.aws/credentials`; profile from the config, `AWS_PROFILE`, or
//! `default`). SSO and process credentials are not read.

use std::time::SystemTime;

use anyhow::{Result, anyhow};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

#[derive(Debug, Clone, PartialEq)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The user's base credentials (see the module doc).
pub fn load_keys(profile: Option<&str>) -> Result<Keys> {
    if profile.is_none()
        && let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
    {
        return Ok(Keys {
            access_key_id: id,
            secret_access_key: secret,
            session_token: env("AWS_SESSION_TOKEN"),
        });
    }
    let profile = profile
        .map(str::to_string)
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    let path = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".aws").join("credentials")))
        .ok_or_else(|| {
            anyhow!("no AWS credentials for SigV4: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        })?;
    let text = std::fs::read_to_string(&path).map_err(|_| {
        anyhow!(
            "no AWS credentials for SigV4 (no AWS_ACCESS_KEY_ID and no {}): set them, or run `jit configure` with --bearer",
            path.display()
        )
    })?;
    parse_profile(&text, &profile).ok_or_else(|| {
        anyhow!(
            "{} has no [{profile}] with aws_access_key_id and aws_secret_access_key: add it, or pick one with `jit configure --sigv4 --profile <name>`",
            path.display()
        )
    })
}

/// One profile of a shared credentials (INI) file.
fn parse_profile(text: &str, profile: &str) -> Option<Keys> {
    let mut in_section = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name.trim() == profile;
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Keys {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

/// Signs `req` (whose body is `body`) for API Gateway in `region`.
pub fn sign_request<B>(
    req: &mut http::Request<B>,
    body: &[u8],
    keys: &Keys,
    region: &str,
    time: SystemTime,
) -> Result<()> {
    let identity = Credentials::new(
        &keys.access_key_id,
        &keys.secret_access_key,
        keys.session_token.clone(),
        None,
        "jit-cli",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("execute-api")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| anyhow!("SigV4 setup: {e}"))?
        .into();
    let uri = req.uri().to_string();
    let headers: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let signable = SignableRequest::new(
        req.method().as_str(),
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| anyhow!("SigV4: {e}"))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| anyhow!("SigV4 signing failed: {e}"))?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_from_the_shared_file() {
        let text = "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s1\n\n[work]\naws_access_key_id=AKIAWORK\naws_secret_access_key=s2\naws_session_token = tok\n";
        let d = parse_profile(text, "default").unwrap();
        assert_eq!(d.access_key_id, "AKIADEFAULT");
        assert_eq!(d.session_token, None);
        let w = parse_profile(text, "work").unwrap();
        assert_eq!(w.secret_access_key, "s2");
        assert_eq!(w.session_token.as_deref(), Some("tok"));
        assert!(parse_profile(text, "missing").is_none());
    }

    #[test]
    fn requests_are_signed_for_execute_api() {
        let keys = Keys {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: Some("session".into()),
        };
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let build = || {
            http::Request::builder()
                .method("POST")
                .uri("https://abc.execute-api.eu-west-1.amazonaws.com/prod/requests")
                .header("content-type", "application/json")
                .body(())
                .unwrap()
        };
        let mut a = build();
        sign_request(&mut a, b"{}", &keys, "eu-west-1", time).unwrap();
        let auth = a.headers()["authorization"].to_str().unwrap().to_string();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/eu-west-1/execute-api/aws4_request"
            ),
            "{auth}"
        );
        assert_eq!(a.headers()["x-amz-date"], "20231114T221320Z");
        assert_eq!(a.headers()["x-amz-security-token"], "session");
        // Same input, same signature; another body, another signature.
        let mut b = build();
        sign_request(&mut b, b"{}", &keys, "eu-west-1", time).unwrap();
        assert_eq!(b.headers()["authorization"], auth.as_str());
        let mut c = build();
        sign_request(&mut c, b"{\"x\":1}", &keys, "eu-west-1", time).unwrap();
        assert_ne!(c.headers()["authorization"], auth.as_str());
    }
}
