//! SigV4 (`execute-api`) signing with the user's base AWS credentials, found
//! the way the AWS CLI finds them: aws-config's default chain (environment,
//! the shared config and credentials files with `credential_process`, SSO
//! and `source_profile` role chains, web identity, container and instance
//! metadata). The profile is the one given to `jit configure --profile`,
//! else `AWS_PROFILE`, else `default`. Only this path loads aws-config, so
//! `jit credentials` answering from its cache never pays for it.

use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow};
use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_http_client::tls;

#[derive(Debug, Clone, PartialEq)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// Renew base credentials this long before they expire, so a request is
/// never signed with keys that lapse in flight.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// The base credentials for one `jit` run: found once, not per request — a
/// `--wait` poll or `list --all` pages would otherwise rerun a
/// `credential_process` or re-read the SSO cache for every call — and found
/// again only when what the chain gave is about to expire.
#[derive(Default)]
pub struct KeyCache(tokio::sync::Mutex<Option<(Keys, Option<SystemTime>)>>);

impl KeyCache {
    pub async fn get(&self, profile: Option<&str>) -> Result<Keys> {
        self.get_or_load(SystemTime::now(), || load_keys(profile))
            .await
    }

    async fn get_or_load<F, Fut>(&self, now: SystemTime, load: F) -> Result<Keys>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(Keys, Option<SystemTime>)>>,
    {
        let mut slot = self.0.lock().await;
        if let Some((keys, expiry)) = slot.as_ref()
            && expiry.is_none_or(|t| t > now + RENEW_BEFORE)
        {
            return Ok(keys.clone());
        }
        let (keys, expiry) = load().await?;
        *slot = Some((keys.clone(), expiry));
        Ok(keys)
    }
}

/// The user's base credentials (see the module doc) and when they expire,
/// or one line saying what to do.
async fn load_keys(profile: Option<&str>) -> Result<(Keys, Option<SystemTime>)> {
    // rustls on ring, as everywhere else in the workspace (SSO and STS
    // calls of the chain go through it).
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    let sdk = loader.load().await;
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| no_credentials(profile))?;
    let creds = provider
        .provide_credentials()
        .await
        .map_err(|e| explain(&e, profile))?;
    let keys = Keys {
        access_key_id: creds.access_key_id().to_string(),
        secret_access_key: creds.secret_access_key().to_string(),
        session_token: creds.session_token().map(str::to_string),
    };
    Ok((keys, creds.expiry()))
}

fn profile_name(profile: Option<&str>) -> String {
    profile
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()))
        .unwrap_or_else(|| "default".into())
}

fn no_credentials(profile: Option<&str>) -> anyhow::Error {
    anyhow!(
        "no AWS credentials for SigV4 (profile `{}`): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, run `aws configure` or `aws sso login`, pick a profile with `jit configure --sigv4 --profile <name>`, or use --bearer",
        profile_name(profile)
    )
}

/// One line: the chain's own reason (which file, which profile, which
/// process failed) and the usual fix.
fn explain(e: &CredentialsError, profile: Option<&str>) -> anyhow::Error {
    if matches!(e, CredentialsError::CredentialsNotLoaded(_)) {
        return no_credentials(profile);
    }
    // The innermost cause is the one that names the file, profile or
    // process; the layers above it only repeat "error loading credentials".
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let why = root.to_string();
    let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
    anyhow!(
        "AWS credentials for SigV4 (profile `{}`) failed: {why}; for an SSO profile run `aws sso login`",
        profile_name(profile)
    )
}

/// Signs `req` (whose body is `body`) for API Gateway in `region`.
pub fn sign_request<B>(
    req: &mut http::Request<B>,
    body: &[u8],
    keys: &Keys,
    region: &str,
    time: SystemTime,
) -> Result<()> {
    sign_for(req, body, keys, region, "execute-api", time)
}

fn sign_for<B>(
    req: &mut http::Request<B>,
    body: &[u8],
    keys: &Keys,
    region: &str,
    service: &str,
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
        .name(service)
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

    fn keys(id: &str) -> Keys {
        Keys {
            access_key_id: id.into(),
            secret_access_key: "secret".into(),
            session_token: None,
        }
    }

    #[tokio::test]
    async fn base_keys_are_found_once_and_again_only_near_expiry() {
        let cache = KeyCache::default();
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let load = |id: &'static str, expiry: Option<SystemTime>| {
            loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok((keys(id), expiry)) }
        };
        let later = Some(now + Duration::from_secs(3600));
        let a = cache.get_or_load(now, || load("A", later)).await.unwrap();
        let b = cache.get_or_load(now, || load("B", later)).await.unwrap();
        assert_eq!(
            (a.access_key_id.as_str(), b.access_key_id.as_str()),
            ("A", "A")
        );
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Within a minute of the expiry: found again.
        let near = now + Duration::from_secs(3600 - 30);
        let c = cache.get_or_load(near, || load("C", None)).await.unwrap();
        assert_eq!(c.access_key_id, "C");
        // Keys without an expiry (static keys) are kept.
        let d = cache.get_or_load(near, || load("D", None)).await.unwrap();
        assert_eq!(d.access_key_id, "C");
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_load_is_not_cached() {
        let cache = KeyCache::default();
        let now = SystemTime::UNIX_EPOCH;
        let err = cache
            .get_or_load(now, || async { Err(anyhow!("no AWS credentials")) })
            .await;
        assert!(err.is_err());
        let ok = cache
            .get_or_load(now, || async { Ok((keys("A"), None)) })
            .await
            .unwrap();
        assert_eq!(ok.access_key_id, "A");
    }

    /// AWS's published SigV4 test suite, case `get-vanilla`: an independent
    /// check that what we sign is what AWS verifies.
    #[test]
    fn the_aws_test_suite_vanilla_get_signs_as_published() {
        let keys = Keys {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        // 2015-08-30T12:36:00Z
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        let mut req = http::Request::builder()
            .method("GET")
            .uri("https://example.amazonaws.com/")
            .body(())
            .unwrap();
        sign_for(&mut req, b"", &keys, "us-east-1", "service", time).unwrap();
        assert_eq!(req.headers()["x-amz-date"], "20150830T123600Z");
        assert_eq!(
            req.headers()["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
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
