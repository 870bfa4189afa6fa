//! Signed approval links: the capability an email gives one approver to
//! decide one request, until the approval window closes, once.
//!
//! A link names the request in its path and carries, in its query, the
//! approver (`a`), the expiry in Unix seconds (`e`), a nonce (`n`) and an
//! HMAC-SHA256 tag (`s`) over all four. Verification recomputes the tag with
//! the request id taken from the *path*, so a link for request A presented
//! on request B, or with any field changed, fails the comparison — which is
//! constant-time. Single use is the decision's business: the nonce is
//! recorded on the request in the same guarded write as the decision
//! (`Broker::approve_with_link`), so a replay finds it there.
//!
//! Pure: no I/O, no clock (the caller passes `now`), no randomness beyond
//! the ULID a nonce is made of. A link never carries the workflow's task
//! token, and nothing here logs a link or the key.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::{InvalidValue, Principal, RequestId};
use crate::request::Timestamp;

type HmacSha256 = Hmac<Sha256>;

/// Domain separation: a tag made for anything else never verifies here.
const CONTEXT: &str = "jit-access/approval-link/v1";
/// The shortest key accepted (bytes of secret text).
pub const MIN_KEY_BYTES: usize = 32;

/// The HMAC key links are signed with. `Debug` never shows it.
#[derive(Clone)]
pub struct LinkKey(Vec<u8>);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(<redacted>)")
    }
}

impl LinkKey {
    /// A key from secret text (Secrets Manager value, `JIT_LINK_SECRET`):
    /// at least 32 bytes, so a short password is refused at start.
    pub fn from_secret(text: &str) -> Result<LinkKey, InvalidValue> {
        let t = text.trim();
        if t.len() < MIN_KEY_BYTES {
            return Err(InvalidValue(format!(
                "must be at least {MIN_KEY_BYTES} characters of random text (e.g. `openssl rand -hex 32`)"
            )));
        }
        Ok(LinkKey(t.as_bytes().to_vec()))
    }

    /// A sub-key for another purpose (e.g. signing deferred jobs), so one
    /// secret serves several uses without one tag verifying as another.
    pub fn derive(&self, purpose: &str) -> LinkKey {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"jit-access/derive/");
        mac.update(purpose.as_bytes());
        LinkKey(mac.finalize().into_bytes().to_vec())
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length")
    }

    /// The tag over arbitrary bytes (base64url, no padding).
    pub fn tag(&self, data: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(data);
        b64(&mac.finalize().into_bytes())
    }

    /// Whether `tag` is this key's tag over `data`, in constant time.
    pub fn verify_tag(&self, data: &[u8], tag: &str) -> bool {
        let Some(bytes) = unb64(tag) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(data);
        mac.verify_slice(&bytes).is_ok()
    }

    /// Signs a link's claims; the answer is the query string (without `?`).
    pub fn sign(&self, claims: &LinkClaims) -> String {
        self.sign_subject(claims.request_id.as_str(), claims)
    }

    /// The key extension links are signed with: derived for that purpose
    /// only, so a request's link never verifies as an extension's and
    /// an extension's never as a request's.
    fn extension_key(&self) -> LinkKey {
        self.derive("extension-link/v1")
    }

    /// Signs a link to decide the extension at `index` of the claims'
    /// request (`/approvals/{id}/extension/{index}`): bound to that one
    /// extension, under the extension key.
    pub fn sign_extension(&self, claims: &LinkClaims, index: usize) -> String {
        self.extension_key().sign_subject(
            &extension_subject(claims.request_id.as_str(), index),
            claims,
        )
    }

    /// Checks an extension link presented for `path_id` and the path's
    /// extension index, as [`LinkKey::verify`] checks a request's.
    pub fn verify_extension(
        &self,
        path_id: &str,
        index: &str,
        params: &LinkParams,
        now: Timestamp,
    ) -> Result<(LinkClaims, usize), LinkError> {
        let n: usize = match index.parse() {
            Ok(n) if index.len() <= 4 && !index.starts_with('+') => n,
            _ => return Err(LinkError::BadSignature),
        };
        let claims = self.extension_key().verify_subject(
            &extension_subject(path_id, n),
            path_id,
            params,
            now,
        )?;
        Ok((claims, n))
    }

    fn sign_subject(&self, subject: &str, claims: &LinkClaims) -> String {
        let tag = self.tag(&canonical(
            subject,
            claims.approver.as_str(),
            claims.expires_at.timestamp(),
            &claims.nonce,
        ));
        format!(
            "a={}&e={}&n={}&s={}",
            percent_encode(claims.approver.as_str()),
            claims.expires_at.timestamp(),
            percent_encode(&claims.nonce),
            tag
        )
    }

    /// Checks a link presented for `path_id` at `now`. Everything is checked
    /// before anything is trusted: the tag first (over the path's id), then
    /// the expiry.
    pub fn verify(
        &self,
        path_id: &str,
        params: &LinkParams,
        now: Timestamp,
    ) -> Result<LinkClaims, LinkError> {
        self.verify_subject(path_id, path_id, params, now)
    }

    fn verify_subject(
        &self,
        subject: &str,
        path_id: &str,
        params: &LinkParams,
        now: Timestamp,
    ) -> Result<LinkClaims, LinkError> {
        let (Some(a), Some(e), Some(n), Some(s)) = (
            params.approver.as_deref(),
            params.expires.as_deref(),
            params.nonce.as_deref(),
            params.signature.as_deref(),
        ) else {
            return Err(LinkError::Incomplete);
        };
        let expires: i64 = e.parse().map_err(|_| LinkError::Incomplete)?;
        if a.len() > 256 || n.len() > 64 || path_id.len() > 64 {
            return Err(LinkError::BadSignature);
        }
        if !self.verify_tag(&canonical(subject, a, expires, n), s) {
            return Err(LinkError::BadSignature);
        }
        let expires_at =
            chrono::DateTime::from_timestamp(expires, 0).ok_or(LinkError::BadSignature)?;
        if now >= expires_at {
            return Err(LinkError::Expired { at: expires_at });
        }
        Ok(LinkClaims {
            request_id: RequestId::parse(path_id).map_err(|_| LinkError::BadSignature)?,
            approver: Principal::parse(a).map_err(|_| LinkError::BadSignature)?,
            expires_at,
            nonce: n.to_string(),
        })
    }
}

/// What a link grants: `approver` may decide `request_id` once, before
/// `expires_at` (whole seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaims {
    pub request_id: RequestId,
    pub approver: Principal,
    pub expires_at: Timestamp,
    pub nonce: String,
}

impl LinkClaims {
    /// Fresh claims with a new nonce: a ULID from the process-wide ordered
    /// generator, so unique (the tag, not the nonce, is what is unguessable).
    pub fn new(request_id: RequestId, approver: Principal, expires_at: Timestamp) -> LinkClaims {
        let expires_at =
            chrono::DateTime::from_timestamp(expires_at.timestamp(), 0).unwrap_or(expires_at);
        LinkClaims {
            request_id,
            approver,
            expires_at,
            nonce: RequestId::generate(expires_at).to_string(),
        }
    }
}

/// A link's query fields as received (from a query string or a form).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkParams {
    pub approver: Option<String>,
    pub expires: Option<String>,
    pub nonce: Option<String>,
    pub signature: Option<String>,
}

impl LinkParams {
    /// Picks the link fields out of decoded `key=value` pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> LinkParams {
        let mut p = LinkParams::default();
        for (k, v) in pairs {
            let slot = match k {
                "a" => &mut p.approver,
                "e" => &mut p.expires,
                "n" => &mut p.nonce,
                "s" => &mut p.signature,
                _ => continue,
            };
            *slot = Some(v.to_string());
        }
        p
    }
}

/// Why a link was refused. Messages are for the person holding the link;
/// none says which field was wrong (that would help a forger).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this approval link is incomplete; open the whole link from the email")]
    Incomplete,
    #[error("this approval link is not valid")]
    BadSignature,
    #[error("this approval link expired at {at}; the approval window is over")]
    Expired { at: Timestamp },
}

/// What an extension link signs in place of the request id.
fn extension_subject(request_id: &str, index: usize) -> String {
    format!("{request_id}/extension/{index}")
}

/// The signed bytes: each field length-prefixed, so no choice of values can
/// make two different claims read the same.
fn canonical(request_id: &str, approver: &str, expires: i64, nonce: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let expires = expires.to_string();
    for field in [CONTEXT, request_id, approver, &expires, nonce] {
        out.extend_from_slice(field.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(field.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` and `+` (form encoding); `None` on bad escapes or UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Splits and decodes `k=v&k2=v2` (a query string or a form body).
pub fn parse_form(s: &str) -> Option<Vec<(String, String)>> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LinkKey {
        LinkKey::from_secret("0123456789abcdef0123456789abcdef-test-key").unwrap()
    }

    fn t(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn params(query: &str) -> LinkParams {
        let pairs = parse_form(query).unwrap();
        LinkParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    fn claims() -> LinkClaims {
        LinkClaims::new(
            RequestId::generate(t(0)),
            Principal::parse("lead+ops@example.com").unwrap(),
            t(3600),
        )
    }

    #[test]
    fn a_signed_link_verifies_for_its_request_until_it_expires() {
        // GIVEN a link signed for one request and approver
        let c = claims();
        let q = key().sign(&c);
        // WHEN it is presented on that request before the expiry
        let got = key().verify(c.request_id.as_str(), &params(&q), t(10));
        // THEN it yields exactly the signed claims
        assert_eq!(got, Ok(c.clone()));
        // AND at or after the expiry it is refused
        assert_eq!(
            key().verify(c.request_id.as_str(), &params(&q), t(3600)),
            Err(LinkError::Expired { at: t(3600) })
        );
    }

    #[test]
    fn every_tampering_is_refused() {
        let c = claims();
        let q = key().sign(&c);
        let other = RequestId::generate(t(1));
        let swap = |field: &str, value: &str| -> String {
            q.split('&')
                .map(|kv| {
                    if kv.starts_with(&format!("{field}=")) {
                        format!("{field}={value}")
                    } else {
                        kv.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("&")
        };
        let cases: Vec<(&str, String, String)> = vec![
            ("another request", other.to_string(), q.clone()),
            (
                "another approver",
                c.request_id.to_string(),
                swap("a", "mallory%40example.com"),
            ),
            (
                "a later expiry",
                c.request_id.to_string(),
                swap("e", &(t(7200).timestamp()).to_string()),
            ),
            (
                "another nonce",
                c.request_id.to_string(),
                swap("n", "01J00000000000000000000000"),
            ),
            (
                "a truncated tag",
                c.request_id.to_string(),
                swap("s", "AAAA"),
            ),
            (
                "a tag from another key",
                c.request_id.to_string(),
                LinkKey::from_secret("another-key-another-key-another-key-!!")
                    .unwrap()
                    .sign(&c),
            ),
        ];
        for (what, id, query) in cases {
            assert_eq!(
                key().verify(&id, &params(&query), t(10)),
                Err(LinkError::BadSignature),
                "{what}"
            );
        }
        assert_eq!(
            key().verify(c.request_id.as_str(), &params("a=x&e=1"), t(10)),
            Err(LinkError::Incomplete)
        );
    }

    #[test]
    fn keys_are_long_and_never_printed() {
        assert!(LinkKey::from_secret("short").is_err());
        let k = key();
        assert!(!format!("{k:?}").contains("0123456789"));
        // A derived key signs differently from its parent.
        assert_ne!(k.tag(b"x"), k.derive("jobs").tag(b"x"));
        assert!(
            k.derive("jobs")
                .verify_tag(b"x", &k.derive("jobs").tag(b"x"))
        );
    }

    #[test]
    fn nonces_are_fresh() {
        assert_ne!(claims().nonce, claims().nonce);
    }

    #[test]
    fn form_decoding() {
        let q = parse_form("a=lead%2Bops%40example.com&reason=one+two").unwrap();
        assert_eq!(q[0].1, "lead+ops@example.com");
        assert_eq!(q[1].1, "one two");
        assert!(parse_form("a=%zz").is_none());
        assert_eq!(percent_encode("a+b@c d"), "a%2Bb%40c%20d");
    }
}
