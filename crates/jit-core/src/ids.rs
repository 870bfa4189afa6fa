//! Identifier newtypes, each checked once at construction so the rest of the
//! code can never hold a malformed account, ARN or principal.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a value was refused; the caller attaches the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn invalid(msg: impl Into<String>) -> InvalidValue {
    InvalidValue(msg.into())
}

macro_rules! string_newtype {
    ($(#[$m:meta])* $name:ident, $check:path) => {
        string_newtype!($(#[$m])* $name, $check, String::from);
    };
    ($(#[$m:meta])* $name:ident, $check:path, $canonical:path) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Checks the value and keeps its canonical spelling.
            pub fn parse(s: impl Into<String>) -> Result<Self, InvalidValue> {
                let s = s.into();
                $check(&s)?;
                Ok(Self($canonical(s)))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn check_request_id(s: &str) -> Result<(), InvalidValue> {
    ulid::Ulid::from_string(s)
        .map(|_| ())
        .map_err(|_| invalid("must be a 26-character ULID"))?;
    if s.chars().any(|c| c.is_ascii_lowercase()) {
        return Err(invalid("must be an upper-case ULID"));
    }
    Ok(())
}

string_newtype!(
    /// A request id: a ULID, so ids sort by creation time and listing
    /// "newest first" is a key-order scan in every store.
    RequestId,
    check_request_id
);

impl RequestId {
    /// A fresh id for a request created at `at` (milliseconds resolution).
    ///
    /// Within a process, ids for one millisecond increase in the order they
    /// are made, whatever else is generated in between: audit event ids come
    /// from here too, stores sort a trail by event id, and events stamped
    /// with one instant (a manual clock, a fast workflow step) must keep the
    /// order they were written in.
    pub fn generate(at: chrono::DateTime<chrono::Utc>) -> Self {
        let ms = at.timestamp_millis().max(0) as u64;
        Self(ulid::Ulid::from_parts(ms, ordered_bits()).to_string())
    }
}

/// The 80 low bits of a ULID: 40 random bits fixed per process (so two
/// processes' ids differ), then a process-wide counter from a random start
/// (so one process's ids increase). Unique and ordered up to 2^39 ids per
/// process.
fn ordered_bits() -> u128 {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    const LOW: u32 = 40;
    static SEED: OnceLock<(u128, u64)> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (prefix, start) = *SEED.get_or_init(|| {
        let r = rand_bits();
        (r >> LOW, (r as u64) & ((1 << (LOW - 1)) - 1))
    });
    let n = start + COUNTER.fetch_add(1, Ordering::Relaxed);
    (prefix << LOW) | (n as u128 & ((1u128 << LOW) - 1))
}

/// 80 random bits for ULIDs. `ulid`'s own generator needs the `rand` feature;
/// std's `RandomState` is seeded from the OS per process and re-keyed per
/// instance, which is plenty for uniqueness (ids are not secrets).
fn rand_bits() -> u128 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut a = RandomState::new().build_hasher();
    a.write_u64(n);
    let mut b = RandomState::new().build_hasher();
    b.write_u64(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let hi = a.finish() as u128;
    let lo = b.finish() as u128;
    ((hi << 64) | lo) & ((1u128 << 80) - 1)
}

fn check_account_id(s: &str) -> Result<(), InvalidValue> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid("must be 12 digits"))
    }
}

string_newtype!(
    /// An AWS account id: exactly 12 digits (kept as a string: leading zeros matter).
    AccountId,
    check_account_id
);

fn check_role_arn(s: &str) -> Result<(), InvalidValue> {
    // arn:<partition>:iam::<account>:role/<path/>name
    let mut parts = s.splitn(6, ':');
    let (arn, partition, service, region, account, resource) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    );
    let ok_prefix = arn == Some("arn")
        && matches!(partition, Some("aws" | "aws-cn" | "aws-us-gov"))
        && service == Some("iam")
        && region == Some("");
    if !ok_prefix {
        return Err(invalid(
            "must look like arn:aws:iam::123456789012:role/RoleName",
        ));
    }
    check_account_id(account.unwrap_or_default())
        .map_err(|_| invalid("must contain a 12-digit account id"))?;
    let resource = resource.unwrap_or_default();
    let name = resource
        .strip_prefix("role/")
        .ok_or_else(|| invalid("must name a role (`role/NAME`)"))?;
    let role_name = name.rsplit('/').next().unwrap_or_default();
    if role_name.is_empty() || role_name.len() > 64 || !role_name.chars().all(is_iam_name_char) {
        return Err(invalid(
            "role name must be 1-64 characters of letters, digits and +=,.@_-",
        ));
    }
    if s.len() > 2048 {
        return Err(invalid("is longer than 2048 characters"));
    }
    Ok(())
}

fn is_iam_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)
}

string_newtype!(
    /// An IAM role ARN. Requests never carry one of their own: only the
    /// catalog names roles, so a caller cannot ask for an arbitrary role.
    RoleArn,
    check_role_arn
);

impl RoleArn {
    pub fn account(&self) -> AccountId {
        AccountId(self.0.split(':').nth(4).unwrap_or_default().to_string())
    }
    /// The role's name without its path.
    pub fn role_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }
}

fn check_policy_name(s: &str) -> Result<(), InvalidValue> {
    if s.is_empty() || s.len() > 128 || !s.chars().all(is_iam_name_char) {
        return Err(invalid(
            "must be 1-128 characters of letters, digits and +=,.@_- (IAM policy name)",
        ));
    }
    Ok(())
}

string_newtype!(
    /// An IAM managed policy name. Case-sensitive, like IAM itself: `ReadOnlyAccess`
    /// and `readonlyaccess` are different policies.
    PolicyName,
    check_policy_name
);

fn check_principal(s: &str) -> Result<(), InvalidValue> {
    if s.trim().is_empty() {
        return Err(invalid("must not be empty"));
    }
    if s.len() > 256 {
        return Err(invalid("must be at most 256 characters"));
    }
    if s.trim() != s || s.chars().any(|c| c.is_control()) {
        return Err(invalid(
            "must not contain control characters or surrounding spaces",
        ));
    }
    Ok(())
}

/// Emails are one person whatever their case (`Lead@Example.com` is
/// `lead@example.com`), so an email principal is kept in lower case: every
/// comparison (self-approval, quorum, eligibility, approver lists, the
/// catalog's group mapping), hash, store key and fingerprint then agrees
/// without each of them having to remember. IAM ARNs stay as written: AWS
/// compares them case-sensitively (and an assumed-role session name may
/// contain an `@`).
fn canonical_principal(s: String) -> String {
    if s.contains('@') && !s.starts_with("arn:") && s.chars().any(char::is_uppercase) {
        s.to_lowercase()
    } else {
        s
    }
}

string_newtype!(
    /// Who someone is, as the authenticator said it: an email, a JWT subject
    /// or an IAM principal ARN. Emails are compared case-insensitively (kept
    /// in lower case); anything else exactly.
    Principal,
    check_principal,
    canonical_principal
);

fn check_idempotency_key(s: &str) -> Result<(), InvalidValue> {
    if s.is_empty() || s.len() > 128 || !s.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid("must be 1-128 visible ASCII characters"));
    }
    Ok(())
}

string_newtype!(
    /// A client-chosen key that makes a retried create return the first request
    /// instead of a second one. Scoped to the requester.
    IdempotencyKey,
    check_idempotency_key
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids() {
        for ok in ["123456789012", "000000000000"] {
            assert!(AccountId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "12345678901",
            "1234567890123",
            "12345678901a",
            "",
            " 23456789012",
        ] {
            assert!(AccountId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn role_arns() {
        let arn =
            RoleArn::parse("arn:aws:iam::123456789012:role/ops/JIT-ElevatedAdminRole").unwrap();
        assert_eq!(arn.account().as_str(), "123456789012");
        assert_eq!(arn.role_name(), "JIT-ElevatedAdminRole");
        for bad in [
            "arn:aws:iam::123456789012:user/bob",
            "arn:aws:iam::12345678901:role/x",
            "arn:aws:s3:::bucket",
            "arn:aws:iam:us-east-1:123456789012:role/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/bad name",
            "JIT-ElevatedAdminRole",
        ] {
            assert!(RoleArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policy_names_are_case_sensitive_and_checked() {
        let a = PolicyName::parse("ReadOnlyAccess").unwrap();
        let b = PolicyName::parse("readonlyaccess").unwrap();
        assert_ne!(a, b);
        assert!(PolicyName::parse("has space").is_err());
        assert!(PolicyName::parse("x".repeat(129)).is_err());
    }

    #[test]
    fn email_principals_are_one_person_whatever_their_case() {
        let a = Principal::parse("Lead@Example.com").unwrap();
        let b = Principal::parse("lead@example.com").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "lead@example.com");
        let mut set = std::collections::HashSet::new();
        set.insert(a);
        assert!(set.contains(&b), "hashes agree");
        // Deserialising (a stored record, a catalog) canonicalises too.
        let c: Principal = serde_json::from_str("\"LEAD@EXAMPLE.COM\"").unwrap();
        assert_eq!(c, b);
        // IAM ARNs and other names stay as written: AWS compares them exactly.
        let arn = "arn:aws:sts::123456789012:assumed-role/Ops/Alice@Example.com";
        assert_eq!(Principal::parse(arn).unwrap().as_str(), arn);
        assert_ne!(
            Principal::parse("arn:aws:iam::123456789012:user/Bob").unwrap(),
            Principal::parse("arn:aws:iam::123456789012:user/bob").unwrap()
        );
        assert_eq!(Principal::parse("Sub-123").unwrap().as_str(), "Sub-123");
    }

    #[test]
    fn principals() {
        assert!(Principal::parse("alice@example.com").is_ok());
        assert!(Principal::parse("").is_err());
        assert!(Principal::parse(" alice").is_err());
        assert!(Principal::parse("a\nb").is_err());
    }

    #[test]
    fn request_ids_sort_by_time_and_are_unique() {
        let t1 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let t2 = chrono::DateTime::from_timestamp(1_700_000_001, 0).unwrap();
        let a = RequestId::generate(t1);
        let b = RequestId::generate(t2);
        assert!(a < b);
        let same: std::collections::HashSet<_> =
            (0..1000).map(|_| RequestId::generate(t1)).collect();
        assert_eq!(same.len(), 1000);
        // Same-millisecond ids keep their order, even with others made in between.
        let in_a_row: Vec<_> = (0..1000)
            .map(|i| {
                let _other = RequestId::generate(if i % 2 == 0 { t2 } else { t1 });
                RequestId::generate(t1)
            })
            .collect();
        assert!(in_a_row.windows(2).all(|w| w[0] < w[1]));
        assert!(RequestId::parse(a.as_str()).is_ok());
        assert!(RequestId::parse("not-a-ulid").is_err());
        assert!(RequestId::parse(a.as_str().to_lowercase()).is_err());
    }
}
