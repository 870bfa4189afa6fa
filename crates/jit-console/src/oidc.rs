//! OpenID Connect sign-in: the authorization code flow with PKCE (S256).
//!
//! `GET /ui/signin` sends the browser to the issuer's authorization
//! endpoint with a random `state`, `nonce` and PKCE challenge, whose
//! secrets wait in a signed, 10-minute cookie. `GET /ui/auth/callback`
//! checks `state`, exchanges the code (with the PKCE verifier) at the
//! token endpoint, and accepts the ID token only when its RS256 signature
//! verifies under the issuer's JWKS and its `iss`, `aud`, `exp` and
//! `nonce` are right. The person is the verified `email` (else `sub`), as
//! the API's authorizer path reads the same token; their groups come from
//! the configured claim. The session then carries the ID token, which the
//! API's JWT authorizer checks again on every call.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::fetch::Fetch;
use crate::pages::{OIDC_LABEL, field, form_fields};
use crate::session::{Session, random_token};
use crate::{Console, ConsoleRequest, see_other};

/// Allowed clock difference with the issuer.
const SKEW_SECS: i64 = 60;
/// How long a sign-in may take at the identity provider.
const SIGNIN_SECS: i64 = 600;
/// A JWKS is fetched again after this long (keys rotate).
const JWKS_TTL_SECS: i64 = 3600;

#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// `https://cognito-idp.<region>.amazonaws.com/<pool>`, `https://<org>.okta.com`, …
    pub issuer: String,
    pub client_id: String,
    /// Confidential clients only; a public client relies on PKCE alone.
    pub client_secret: Option<String>,
    /// `https://<console>/ui/auth/callback`.
    pub redirect_uri: String,
    /// The claim holding groups (`cognito:groups`, `groups`).
    pub groups_claim: String,
    /// The claim that must be `true` for `email` to name the person.
    pub email_verified_claim: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OidcError {
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the identity provider's answer is not usable: {0}")]
    BadAnswer(String),
    #[error("the ID token is refused: {0}")]
    Token(String),
}

#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
}

/// A verified ID token's person.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub user: String,
    pub groups: Vec<String>,
    pub expires: i64,
    pub claims: Map<String, Value>,
}

pub struct OidcClient {
    pub cfg: OidcConfig,
    fetch: Arc<dyn Fetch>,
    meta: Mutex<Option<Metadata>>,
    jwks: Mutex<Option<(i64, Vec<Jwk>)>>,
}

/// What waits in the signed cookie during a sign-in.
#[derive(Serialize, Deserialize)]
struct Pending {
    s: String,
    n: String,
    v: String,
    next: String,
    x: i64,
}

impl OidcClient {
    pub fn new(cfg: OidcConfig, fetch: Arc<dyn Fetch>) -> OidcClient {
        OidcClient {
            cfg,
            fetch,
            meta: Mutex::new(None),
            jwks: Mutex::new(None),
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, OidcError> {
        let req = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Bytes::new())
            .map_err(|_| OidcError::BadAnswer(format!("bad URL {url}")))?;
        let (status, body) = self.fetch.send(req).await.map_err(OidcError::Unreachable)?;
        if status != 200 {
            return Err(OidcError::BadAnswer(format!(
                "{url} answered HTTP {status}"
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|_| OidcError::BadAnswer(format!("{url} is not JSON")))
    }

    async fn metadata(&self) -> Result<Metadata, OidcError> {
        if let Some(m) = self.meta.lock().expect("not poisoned").clone() {
            return Ok(m);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let m: Metadata = serde_json::from_value(self.get_json(&url).await?)
            .map_err(|e| OidcError::BadAnswer(format!("discovery document: {e}")))?;
        if m.issuer.trim_end_matches('/') != self.cfg.issuer.trim_end_matches('/') {
            return Err(OidcError::BadAnswer(format!(
                "the discovery document names issuer `{}`, not the configured `{}`",
                m.issuer, self.cfg.issuer
            )));
        }
        *self.meta.lock().expect("not poisoned") = Some(m.clone());
        Ok(m)
    }

    async fn keys(&self, now: i64, refresh: bool) -> Result<Vec<Jwk>, OidcError> {
        if !refresh
            && let Some((at, k)) = self.jwks.lock().expect("not poisoned").clone()
            && now - at < JWKS_TTL_SECS
        {
            return Ok(k);
        }
        let m = self.metadata().await?;
        let v = self.get_json(&m.jwks_uri).await?;
        let keys: Vec<Jwk> = serde_json::from_value(v["keys"].clone())
            .map_err(|e| OidcError::BadAnswer(format!("JWKS: {e}")))?;
        *self.jwks.lock().expect("not poisoned") = Some((now, keys.clone()));
        Ok(keys)
    }

    /// The authorization URL, and the cookie value holding its secrets.
    pub async fn authorization(
        &self,
        next: &str,
        now: i64,
        key: &crate::SessionKey,
    ) -> Result<(String, String), OidcError> {
        let m = self.metadata().await?;
        let mut verifier = [0u8; 32];
        getrandom::fill(&mut verifier).expect("the OS random source is available");
        let verifier = B64.encode(verifier);
        let challenge = B64.encode(Sha256::digest(verifier.as_bytes()));
        let p = Pending {
            s: random_token(),
            n: random_token(),
            v: verifier,
            next: next.to_string(),
            x: now + SIGNIN_SECS,
        };
        let enc = jit_core::links::percent_encode;
        let sep = if m.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!(
            "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&nonce={}&code_challenge={}&code_challenge_method=S256",
            m.authorization_endpoint,
            enc(&self.cfg.client_id),
            enc(&self.cfg.redirect_uri),
            enc("openid email profile"),
            enc(&p.s),
            enc(&p.n),
            enc(&challenge),
        );
        Ok((url, key.seal(OIDC_LABEL, &p)))
    }

    /// Exchanges a code for tokens; the ID token, verified.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
        now: i64,
    ) -> Result<(String, Verified), OidcError> {
        let m = self.metadata().await?;
        let enc = jit_core::links::percent_encode;
        let mut form = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&client_id={}&code_verifier={}",
            enc(code),
            enc(&self.cfg.redirect_uri),
            enc(&self.cfg.client_id),
            enc(verifier)
        );
        if let Some(secret) = &self.cfg.client_secret {
            form.push_str(&format!("&client_secret={}", enc(secret)));
        }
        let req = http::Request::post(&m.token_endpoint)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(Bytes::from(form))
            .map_err(|_| OidcError::BadAnswer("bad token endpoint URL".into()))?;
        let (status, body) = self.fetch.send(req).await.map_err(OidcError::Unreachable)?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status != 200 {
            // The provider's error code only (its description may echo input).
            return Err(OidcError::BadAnswer(format!(
                "the token endpoint answered HTTP {status} ({})",
                v["error"].as_str().unwrap_or("no error code")
            )));
        }
        let id_token = v["id_token"]
            .as_str()
            .ok_or_else(|| OidcError::BadAnswer("the token answer has no id_token".into()))?
            .to_string();
        let verified = self.verify(&id_token, Some(nonce), now).await?;
        Ok((id_token, verified))
    }

    /// Verifies an ID token: RS256 under the issuer's JWKS (fetched again
    /// once for an unknown `kid`), issuer, audience, expiry, nonce.
    pub async fn verify(
        &self,
        token: &str,
        nonce: Option<&str>,
        now: i64,
    ) -> Result<Verified, OidcError> {
        let bad = |m: &str| OidcError::Token(m.to_string());
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not a JWS compact token"));
        };
        let header: Value = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad("unreadable header"))?;
        if header["alg"] != "RS256" {
            return Err(bad("only RS256 is accepted"));
        }
        let kid = header["kid"].as_str();
        let sig = B64.decode(sig).map_err(|_| bad("unreadable signature"))?;
        let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
        let mut keys = self.keys(now, false).await?;
        if !keys.iter().any(|k| k.kid.as_deref() == kid) {
            keys = self.keys(now, true).await?;
        }
        let key = keys
            .iter()
            .find(|k| {
                k.kty == "RSA"
                    && k.kid.as_deref() == kid
                    && k.use_.as_deref().unwrap_or("sig") == "sig"
            })
            .ok_or_else(|| bad("no RSA signing key in the issuer's JWKS has its kid"))?;
        let n = B64
            .decode(key.n.as_deref().unwrap_or_default())
            .map_err(|_| bad("the JWK's modulus is unreadable"))?;
        let e = B64
            .decode(key.e.as_deref().unwrap_or_default())
            .map_err(|_| bad("the JWK's exponent is unreadable"))?;
        ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
            .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, signed, &sig)
            .map_err(|_| bad("the signature does not verify"))?;
        let claims: Map<String, Value> = B64
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad("unreadable claims"))?;
        if claims
            .get("iss")
            .and_then(Value::as_str)
            .map(|i| i.trim_end_matches('/'))
            != Some(self.cfg.issuer.trim_end_matches('/'))
        {
            return Err(bad("issued by another issuer"));
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.cfg.client_id,
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(&self.cfg.client_id)),
            _ => false,
        };
        if !aud_ok {
            return Err(bad("issued for another client (aud)"));
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("no exp"))?;
        if exp + SKEW_SECS <= now {
            return Err(bad("expired"));
        }
        if let Some(n) = nonce
            && claims.get("nonce").and_then(Value::as_str) != Some(n)
        {
            return Err(bad("the nonce is not this sign-in's"));
        }
        let verified = match claims.get(&self.cfg.email_verified_claim) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        let user = claims
            .get("email")
            .and_then(Value::as_str)
            .filter(|_| verified)
            .or_else(|| claims.get("sub").and_then(Value::as_str))
            .ok_or_else(|| bad("names nobody (no verified email, no sub)"))?
            .to_string();
        let groups = match claims.get(&self.cfg.groups_claim) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect(),
            Some(Value::String(s)) => s
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect(),
            _ => vec![],
        };
        Ok(Verified {
            user,
            groups,
            expires: exp,
            claims,
        })
    }
}

/// `GET /ui/signin` with OIDC: off to the identity provider.
pub(crate) async fn begin(c: &Console, o: &OidcClient, next: &str) -> Response<String> {
    let now = c.now().timestamp();
    match o.authorization(next, now, &c.key).await {
        Ok((url, cookie)) => {
            let mut r = see_other(&url);
            if let Ok(v) = c.oidc_cookie(&cookie, SIGNIN_SECS).parse() {
                r.headers_mut().append(http::header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "OIDC sign-in could not start");
            crate::pages::plain_error(
                c,
                StatusCode::BAD_GATEWAY,
                "Cannot sign in",
                "the identity provider could not be reached; try again in a minute",
            )
        }
    }
}

/// `GET /ui/auth/callback?code=…&state=…`.
pub(crate) async fn callback(c: &Console, req: &ConsoleRequest) -> Response<String> {
    let crate::SignIn::Oidc(o) = &c.sign_in else {
        return crate::pages::plain_error(c, StatusCode::NOT_FOUND, "Not found", "no such page");
    };
    let q = form_fields(req.query.as_deref().unwrap_or("").as_bytes()).unwrap_or_default();
    let fail = |m: &str| crate::pages::plain_error(c, StatusCode::FORBIDDEN, "Cannot sign in", m);
    if !field(&q, "error").is_empty() {
        tracing::info!(
            error = field(&q, "error"),
            "the identity provider refused the sign-in"
        );
        return fail(&format!(
            "the identity provider said `{}`: sign in again",
            field(&q, "error")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect::<String>()
        ));
    }
    let now = c.now().timestamp();
    let pending: Option<Pending> = c
        .oidc_cookie_value(&req.headers)
        .and_then(|v| c.key.open(OIDC_LABEL, v));
    let Some(p) = pending.filter(|p| p.x > now) else {
        return fail("this sign-in expired or was started in another browser: sign in again");
    };
    let state_ok: bool =
        subtle::ConstantTimeEq::ct_eq(p.s.as_bytes(), field(&q, "state").as_bytes()).into();
    if !state_ok {
        tracing::info!("OIDC callback refused: state mismatch");
        return fail("the sign-in answer does not belong to this sign-in: sign in again");
    }
    match o.exchange(field(&q, "code"), &p.v, &p.n, now).await {
        Ok((token, v)) => {
            let mut s = Session::new(v.user, v.groups, v.expires.min(now + c.session_secs));
            s.token = Some(token);
            let mut r = c.start_session(s, &p.next).await;
            if let Ok(v) = c.oidc_cookie("", 0).parse() {
                r.headers_mut().append(http::header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "OIDC sign-in refused");
            fail("the identity provider's answer could not be verified: sign in again")
        }
    }
}
