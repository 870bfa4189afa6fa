//! Grant durations. Every grant is bounded: nothing outlives its window.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::InvalidValue;

/// How long a grant lasts, in whole seconds.
///
/// Bounded by the absolute limits below (STS's own: 15 minutes to 12 hours)
/// and, per entitlement, by the catalog's `min_duration`/`max_duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantDuration(u32);

impl GrantDuration {
    /// STS refuses shorter sessions; a shorter grant could never be used.
    pub const MIN: GrantDuration = GrantDuration(900);
    /// The longest role session STS issues; no entitlement may exceed it.
    pub const MAX: GrantDuration = GrantDuration(12 * 3600);
    /// The seed's default when a request names no duration.
    pub const DEFAULT: GrantDuration = GrantDuration(900);

    /// Checks against the absolute bounds.
    pub fn from_secs(secs: u64) -> Result<Self, InvalidValue> {
        if secs < Self::MIN.0 as u64 {
            return Err(InvalidValue(format!(
                "must be at least {} ({}s)",
                Self::MIN,
                Self::MIN.0
            )));
        }
        if secs > Self::MAX.0 as u64 {
            return Err(InvalidValue(format!(
                "must be at most {} ({}s)",
                Self::MAX,
                Self::MAX.0
            )));
        }
        Ok(Self(secs as u32))
    }

    pub fn secs(self) -> u32 {
        self.0
    }

    pub fn as_chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(self.0 as i64)
    }

    /// Parses `900`, `"900"`, `"15m"`, `"1h"`, `"1h30m"`, `"2h"`, `"90s"` or
    /// ISO-8601 `"PT1H30M"`, then checks the absolute bounds.
    pub fn parse_human(s: &str) -> Result<Self, InvalidValue> {
        Self::from_secs(parse_secs(s)?)
    }
}

/// Parses a duration text to seconds without range checks.
pub fn parse_secs(s: &str) -> Result<u64, InvalidValue> {
    let bad = || {
        InvalidValue(format!(
            "`{s}` is not a duration: use seconds (900) or units like 15m, 1h, 1h30m"
        ))
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    let body = t
        .strip_prefix("PT")
        .or_else(|| t.strip_prefix("pt"))
        .unwrap_or(t);
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut seen_unit = false;
    for c in body.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mult = match c.to_ascii_lowercase() {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        num.clear();
        seen_unit = true;
    }
    if !num.is_empty() || !seen_unit {
        return Err(bad());
    }
    Ok(total)
}

impl fmt::Display for GrantDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, (self.0 % 3600) / 60, self.0 % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        if s > 0 || out.is_empty() {
            out.push_str(&format!("{s}s"));
        }
        f.write_str(&out)
    }
}

impl Serialize for GrantDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for GrantDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = DurationInput::deserialize(d)?;
        v.to_secs()
            .and_then(GrantDuration::from_secs)
            .map_err(serde::de::Error::custom)
    }
}

/// A duration as users write it: a number of seconds or a text with units.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum DurationInput {
    Secs(u64),
    Text(String),
}

impl DurationInput {
    pub fn to_secs(&self) -> Result<u64, InvalidValue> {
        match self {
            DurationInput::Secs(n) => Ok(*n),
            DurationInput::Text(t) => parse_secs(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        let cases = [
            ("900", 900),
            ("15m", 900),
            ("1h", 3600),
            ("1h30m", 5400),
            ("PT1H30M", 5400),
            ("90s", 90),
            ("1d", 86_400),
        ];
        for (text, secs) in cases {
            assert_eq!(parse_secs(text).unwrap(), secs, "{text}");
        }
        for bad in ["", "h", "1x", "1h30", "-5", "1.5h", "99999999999999999999h"] {
            assert!(parse_secs(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bounds() {
        assert!(GrantDuration::from_secs(899).is_err());
        assert_eq!(
            GrantDuration::from_secs(900).unwrap(),
            GrantDuration::DEFAULT
        );
        assert!(GrantDuration::from_secs(43_200).is_ok());
        assert!(GrantDuration::from_secs(43_201).is_err());
        let ten_years = 10 * 365 * 86_400;
        assert!(GrantDuration::from_secs(ten_years).is_err());
    }

    #[test]
    fn serde_accepts_numbers_and_text_and_writes_seconds() {
        let d: GrantDuration = serde_json::from_str("\"1h\"").unwrap();
        assert_eq!(d.secs(), 3600);
        let d: GrantDuration = serde_json::from_str("1800").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "1800");
        assert!(serde_json::from_str::<GrantDuration>("315360000").is_err());
        assert_eq!(GrantDuration::from_secs(5400).unwrap().to_string(), "1h30m");
    }
}
