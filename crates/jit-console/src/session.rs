//! Sessions and CSRF tokens, in signed cookies.
//!
//! A session is a small JSON object (who, their groups, when it ends, a
//! random nonce, and deployed the person's ID token) followed by its
//! HMAC-SHA256 under the console's key: the server keeps no session
//! table, and a cookie nobody signed, or one past its end, is no session.
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Lax` (other
//! sites' forms do not carry it) and, deployed, `Secure` with the
//! `__Host-` prefix. Every form carries a CSRF token derived from the
//! session's nonce (HMAC under the same key, a separate label), checked
//! in constant time on every POST.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The console's signing key (32 bytes or more).
#[derive(Clone)]
pub struct SessionKey(Vec<u8>);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(…)")
    }
}

/// Largest cookie a browser is sure to keep (RFC 6265 asks for at least
/// 4,096 bytes per cookie, name and attributes included).
pub const MAX_COOKIE_BYTES: usize = 4000;

impl SessionKey {
    /// A key from secret bytes (at least 32).
    pub fn new(bytes: &[u8]) -> Result<SessionKey, String> {
        if bytes.len() < 32 {
            return Err("the console's session key must be at least 32 bytes".into());
        }
        Ok(SessionKey(bytes.to_vec()))
    }

    /// A key derived from another secret under a label (e.g. `jit-local`'s
    /// API key): sessions then outlive a restart that keeps that secret,
    /// and the derived key reveals nothing of it.
    pub fn derived(secret: &[u8], label: &str) -> SessionKey {
        let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        m.update(label.as_bytes());
        SessionKey(m.finalize().into_bytes().to_vec())
    }

    fn mac(&self, label: &str, data: &[u8]) -> Vec<u8> {
        let mut m = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(label.as_bytes());
        m.update(b"\0");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }

    /// `payload.signature`, both base64url.
    pub fn seal(&self, label: &str, payload: &impl Serialize) -> String {
        let json = serde_json::to_vec(payload).expect("plain data serialises");
        let sig = self.mac(label, &json);
        format!("{}.{}", B64.encode(&json), B64.encode(sig))
    }

    /// The payload of a value [`SessionKey::seal`] made under `label`.
    pub fn open<T: for<'de> Deserialize<'de>>(&self, label: &str, sealed: &str) -> Option<T> {
        let (p, s) = sealed.split_once('.')?;
        let json = B64.decode(p).ok()?;
        let sig = B64.decode(s).ok()?;
        let want = self.mac(label, &json);
        if !bool::from(want.ct_eq(&sig)) {
            return None;
        }
        serde_json::from_slice(&json).ok()
    }

    /// The CSRF token of a session (or of a sign-in form) nonce.
    pub fn csrf(&self, nonce: &str) -> String {
        B64.encode(self.mac("csrf", nonce.as_bytes()))
    }

    /// Whether `token` is the CSRF token of `nonce`, in constant time.
    pub fn csrf_ok(&self, nonce: &str, token: &str) -> bool {
        bool::from(self.csrf(nonce).as_bytes().ct_eq(token.as_bytes()))
    }
}

/// A signed-in person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The person (an email, or the token's `sub`).
    #[serde(rename = "u")]
    pub user: String,
    /// Groups the sign-in asserted (local form, the token's groups claim).
    #[serde(rename = "g", default)]
    pub groups: Vec<String>,
    /// Seconds since the epoch when it ends.
    #[serde(rename = "x")]
    pub expires: i64,
    /// Random; the CSRF token is derived from it.
    #[serde(rename = "n")]
    pub nonce: String,
    /// Deployed: the OpenID Connect ID token the API's authorizer accepts.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// What the API let this person see at sign-in (the admin listing,
    /// analytics): only which links the pages show; every page asks the
    /// API again.
    #[serde(rename = "a", default)]
    pub admin: bool,
    #[serde(rename = "y", default)]
    pub analytics: bool,
}

impl Session {
    pub fn new(user: String, groups: Vec<String>, expires: i64) -> Session {
        Session {
            user,
            groups,
            expires,
            nonce: random_token(),
            token: None,
            admin: false,
            analytics: false,
        }
    }
}

/// 128 random bits, base64url.
pub fn random_token() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    B64.encode(b)
}

/// A cookie's value from the `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Path=/`, and
/// `Secure` when asked; `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        max_age.max(0),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::new(&[7u8; 32]).unwrap()
    }

    #[test]
    fn a_sealed_session_opens_only_with_its_key_and_label() {
        let s = Session::new("alice@example.com".into(), vec!["sre".into()], 99);
        let sealed = key().seal("session", &s);
        assert_eq!(key().open::<Session>("session", &sealed), Some(s.clone()));
        assert_eq!(key().open::<Session>("flash", &sealed), None);
        let other = SessionKey::new(&[8u8; 32]).unwrap();
        assert_eq!(other.open::<Session>("session", &sealed), None);
        // A changed payload (the user rewritten) no longer verifies.
        let (p, sig) = sealed.split_once('.').unwrap();
        let mut json = B64.decode(p).unwrap();
        let pos = json.windows(5).position(|w| w == b"alice").unwrap();
        json[pos] = b'm';
        let forged = format!("{}.{sig}", B64.encode(json));
        assert_eq!(key().open::<Session>("session", &forged), None);
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_nonce() {
        let k = key();
        let t = k.csrf("n1");
        assert!(k.csrf_ok("n1", &t));
        assert!(!k.csrf_ok("n2", &t));
        assert!(!k.csrf_ok("n1", ""));
    }

    #[test]
    fn short_keys_are_refused_and_cookies_carry_their_attributes() {
        assert!(SessionKey::new(&[1u8; 16]).is_err());
        let c = set_cookie("s", "v", 60, true);
        assert_eq!(c, "s=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure");
        let mut h = http::HeaderMap::new();
        h.insert(http::header::COOKIE, "a=1; s=two; b=3".parse().unwrap());
        assert_eq!(cookie(&h, "s"), Some("two"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
