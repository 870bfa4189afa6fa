//! The credential cache: one 0600 file per request under the user's cache
//! dir, used while more than [`REFRESH_BEFORE`] remains before `Expiration`.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use chrono::{DateTime, Utc};

use crate::config::{cache_dir, write_private};

/// Credentials this close to expiry are fetched again.
pub const REFRESH_BEFORE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

fn path_for(id: &str) -> Result<PathBuf> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(anyhow!(
            "`{id}` is not a request id: find it with `jit list`"
        ));
    }
    Ok(cache_dir()?.join("credentials").join(format!("{id}.json")))
}

/// Cached credential_process JSON for `id`, if it has more than five minutes
/// left.
pub fn fresh(id: &str) -> Result<Option<String>> {
    let path = path_for(id)?;
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    Ok(is_fresh(&text, Utc::now()).then_some(text))
}

fn is_fresh(text: &str, now: DateTime<Utc>) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    let Some(exp) = v["Expiration"].as_str() else {
        return false;
    };
    match DateTime::parse_from_rfc3339(exp) {
        Ok(t) => t.with_timezone(&Utc) - now > REFRESH_BEFORE,
        Err(_) => false,
    }
}

/// Drops the cached credentials of `id` (revoked, cancelled, seen ended).
pub fn forget(id: &str) -> Result<()> {
    match std::fs::remove_file(path_for(id)?) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow!("cannot drop cached credentials of {id}: {e}")),
    }
}

pub fn store(id: &str, text: &str) -> Result<()> {
    write_private(&path_for(id)?, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_means_more_than_five_minutes_left() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let at = |e: &str| format!(r#"{{"Version":1,"Expiration":"{e}"}}"#);
        assert!(is_fresh(&at("2026-01-01T00:05:01Z"), now));
        assert!(!is_fresh(&at("2026-01-01T00:05:00Z"), now));
        assert!(!is_fresh(&at("2025-12-31T23:00:00Z"), now));
        assert!(!is_fresh("not json", now));
        assert!(!is_fresh(r#"{"Version":1}"#, now));
    }

    #[test]
    fn ids_cannot_escape_the_cache_dir() {
        assert!(path_for("../x").is_err());
        assert!(path_for("a/b").is_err());
    }
}
