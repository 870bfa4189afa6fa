//! Milliseconds since the epoch, the engine's one time representation in
//! storage, and the RFC 3339 form (`2026-01-02T03:04:05.678Z`) AWS prints.

use chrono::{DateTime, SecondsFormat, Utc};

pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(crate) fn fmt_ms(ms: i64) -> String {
    from_ms(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}
