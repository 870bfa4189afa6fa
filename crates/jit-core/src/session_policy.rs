//! The session policy every `AssumeRole` the broker makes carries: what the
//! grant allows, and nothing after the window's end.
//!
//! STS issues no session shorter than 900 seconds, so a window with less
//! left than that would be stretched by the credentials' own lifetime. The
//! bound closes that gap: a `Deny` of everything once `aws:CurrentTime` is
//! past the window's end, which IAM evaluates on every call the session
//! makes. A session policy can only narrow the role's permissions, never
//! widen them, so the `Allow *` used when the request has no policy of its
//! own grants nothing the role does not already have.
//!
//! One function builds it ([`bounded`]) for credential vending, console
//! sign-in and the Grant step's proof call alike.

use crate::request::Timestamp;
use serde_json::Value;

/// STS's limit on a plaintext session policy (`Policy` of `AssumeRole`).
pub const MAX_SESSION_POLICY_CHARS: usize = 2048;

/// The policy language version used when the request's policy names none.
const VERSION: &str = "2012-10-17";

/// Why a session policy cannot be passed to STS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionPolicyError {
    /// The request's policy is not a policy document (not JSON, no
    /// `Statement`).
    #[error("the request's session policy is not a policy document: {0}")]
    NotAPolicy(String),
    /// With the window's bound added, the document is over STS's limit.
    #[error(
        "the session policy with its window bound is {chars} characters; AWS STS accepts at most {MAX_SESSION_POLICY_CHARS} (the bound takes {bound} of them): narrow the request's policy"
    )]
    TooLong { chars: usize, bound: usize },
}

/// The window's end as IAM compares it: RFC 3339, UTC, whole seconds
/// (truncated, so the deny never starts after the window ends).
pub fn window_end_text(window_end: Timestamp) -> String {
    window_end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The statement that stops a session at the window's end.
pub fn window_deny(window_end: Timestamp) -> String {
    format!(
        r#"{{"Effect":"Deny","Action":"*","Resource":"*","Condition":{{"DateGreaterThan":{{"aws:CurrentTime":"{}"}}}}}}"#,
        window_end_text(window_end)
    )
}

/// Everything the role allows: the grant without a policy of its own.
const ALLOW_ALL: &str = r#"{"Effect":"Allow","Action":"*","Resource":"*"}"#;

/// The session policy for a session of a grant whose window ends at
/// `window_end`: the request's own policy (its statements kept, as
/// compact JSON) or `Allow *` on `*`, plus the window's deny. Refused when
/// the request's policy is not a policy document, or when the result is
/// over STS's 2,048-character limit. The bound's length does not depend
/// on the time, so a validator may call this with any `window_end` to
/// learn whether a policy still fits once bounded.
pub fn bounded(policy: Option<&str>, window_end: Timestamp) -> Result<String, SessionPolicyError> {
    let deny = window_deny(window_end);
    let (version, statements) = match policy {
        None => (VERSION.to_string(), vec![ALLOW_ALL.to_string()]),
        Some(text) => statements_of(text)?,
    };
    let version = serde_json::to_string(&version).expect("a string serializes");
    let document = format!(
        r#"{{"Version":{version},"Statement":[{},{deny}]}}"#,
        statements.join(",")
    );
    let chars = document.chars().count();
    if chars > MAX_SESSION_POLICY_CHARS {
        return Err(SessionPolicyError::TooLong {
            chars,
            bound: deny.chars().count() + 1,
        });
    }
    Ok(document)
}

/// The policy's `Version` and its statements, each as compact JSON.
fn statements_of(text: &str) -> Result<(String, Vec<String>), SessionPolicyError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| SessionPolicyError::NotAPolicy(format!("not JSON: {e}")))?;
    let Value::Object(doc) = doc else {
        return Err(SessionPolicyError::NotAPolicy("not a JSON object".into()));
    };
    let version = match doc.get("Version") {
        None => VERSION.to_string(),
        Some(Value::String(v)) => v.clone(),
        Some(_) => {
            return Err(SessionPolicyError::NotAPolicy(
                "`Version` is not a string".into(),
            ));
        }
    };
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => {
            return Err(SessionPolicyError::NotAPolicy(
                "no `Statement` (an object or a non-empty array)".into(),
            ));
        }
    };
    let mut out = Vec::with_capacity(statements.len());
    for s in statements {
        if !s.is_object() {
            return Err(SessionPolicyError::NotAPolicy(
                "a statement is not a JSON object".into(),
            ));
        }
        out.push(serde_json::to_string(&s).expect("a JSON value serializes"));
    }
    Ok((version, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn without_a_policy_the_role_is_allowed_until_the_window_ends() {
        // 1_800_000_900 = 2027-01-15T08:15:00Z
        assert_eq!(
            bounded(None, at(1_800_000_900)).unwrap(),
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2027-01-15T08:15:00Z"}}}]}"#
        );
    }

    #[test]
    fn a_requests_policy_keeps_its_statements_and_gains_the_deny() {
        let policy = r#"{
            "Version": "2012-10-17",
            "Id": "generated",
            "Statement": [
                {"Sid": "Read", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::logs/*"},
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::logs",
                 "Condition": {"StringLike": {"s3:prefix": ["app/*"]}}}
            ]
        }"#;
        // Statements come out compact, keys in serde_json's (sorted) order.
        assert_eq!(
            bounded(Some(policy), at(1_800_003_600)).unwrap(),
            concat!(
                r#"{"Version":"2012-10-17","Statement":["#,
                r#"{"Action":["s3:GetObject"],"Effect":"Allow","Resource":"arn:aws:s3:::logs/*","Sid":"Read"},"#,
                r#"{"Action":"s3:ListBucket","Condition":{"StringLike":{"s3:prefix":["app/*"]}},"Effect":"Allow","Resource":"arn:aws:s3:::logs"},"#,
                r#"{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2027-01-15T09:00:00Z"}}}]}"#
            )
        );
        // A single statement object, and the request's own Version
        let single = r#"{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}}"#;
        assert_eq!(
            bounded(Some(single), at(1_800_000_000)).unwrap(),
            r#"{"Version":"2008-10-17","Statement":[{"Action":"ec2:Describe*","Effect":"Allow","Resource":"*"},{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2027-01-15T08:00:00Z"}}}]}"#
        );
    }

    #[test]
    fn the_window_end_is_whole_seconds_utc_truncated() {
        let t = chrono::DateTime::parse_from_rfc3339("2027-01-15T10:15:00.999+02:00")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(window_end_text(t), "2027-01-15T08:15:00Z");
        let doc: Value = serde_json::from_str(&bounded(None, t).unwrap()).unwrap();
        assert_eq!(
            doc["Statement"][1]["Condition"]["DateGreaterThan"]["aws:CurrentTime"],
            "2027-01-15T08:15:00Z"
        );
    }

    #[test]
    fn stss_size_limit_counts_the_bound() {
        let statement = |n: usize| {
            format!(
                r#"{{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::{}"}}"#,
                "b".repeat(n)
            )
        };
        let doc = |n: usize| {
            format!(
                r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
                statement(n)
            )
        };
        let bound = window_deny(at(0)).chars().count() + 1;
        // The largest policy that fits once bounded, and one character more.
        let mut n = 1;
        while bounded(Some(&doc(n + 1)), at(0)).is_ok() {
            n += 1;
        }
        assert_eq!(
            bounded(Some(&doc(n)), at(0)).unwrap().chars().count(),
            MAX_SESSION_POLICY_CHARS
        );
        let err = bounded(Some(&doc(n + 1)), at(0)).unwrap_err();
        assert_eq!(
            err,
            SessionPolicyError::TooLong {
                chars: MAX_SESSION_POLICY_CHARS + 1,
                bound
            }
        );
        let text = err.to_string();
        assert!(text.contains("2049") && text.contains("2048"), "{text}");
        // The bound's length does not depend on the time
        assert_eq!(
            window_deny(at(0)).len(),
            window_deny(at(4_000_000_000)).len()
        );
    }

    #[test]
    fn what_is_not_a_policy_is_refused() {
        for bad in [
            "not json",
            "[]",
            r#"{"Version":"2012-10-17"}"#,
            r#"{"Statement":[]}"#,
            r#"{"Statement":["s3:*"]}"#,
            r#"{"Version":1,"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
        ] {
            assert!(
                matches!(
                    bounded(Some(bad), at(0)),
                    Err(SessionPolicyError::NotAPolicy(_))
                ),
                "{bad}"
            );
        }
    }
}
