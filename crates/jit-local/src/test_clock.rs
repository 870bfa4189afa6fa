//! A clock tests can move forward, for the real `jit-local` binary
//! (`--test-clock`, demo mode only): grants last at least 15 minutes, and a
//! test of what happens when windows end cannot wait that long.
//!
//! Time is the system clock plus an offset that only grows. The offset
//! lives in `<data-dir>/test-clock.json` and is written (synced, renamed)
//! *before* the process uses it, so after a `kill -9` and a restart on the
//! same data the clock never goes back to before an advance anyone saw.
//! Time keeps flowing between advances, so retry intervals and approval
//! timeouts behave as they do on the system clock.
//!
//! `POST /_test/clock/advance` `{"seconds": N}` (API key required) moves it,
//! wakes the engine's driver (which otherwise sleeps up to a minute) and
//! runs the periodic sweeps once, as if the skipped time had passed. The
//! route exists only in a `jit-local` started with the flag; no Lambda and
//! no other front door has it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{Method, Response, StatusCode};
use jit_core::ServiceError;
use jit_core::ports::{Clock, GrantError};
use serde_json::{Value, json};

/// The route that moves the clock.
pub const ADVANCE_PATH: &str = "/_test/clock/advance";
/// The file the offset is kept in, inside the data directory.
pub const FILE_NAME: &str = "test-clock.json";
/// The longest single step (a year and a day): enough for any window, and
/// far from overflowing a timestamp.
pub const MAX_ADVANCE_SECS: u64 = 366 * 24 * 3600;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Stored {
    offset_ms: i64,
}

/// The system clock plus a persisted, growing offset.
pub struct TestClock {
    path: PathBuf,
    offset_ms: AtomicI64,
    /// The latest instant handed out: `now` never goes back, even if the
    /// system clock is stepped back under the process.
    high_water_ms: AtomicI64,
    /// Serialises advances, so two of them cannot both write the file with
    /// the same base.
    writer: Mutex<()>,
}

impl TestClock {
    /// Opens the offset kept in `data_dir` (zero the first time; the
    /// directory is created if needed).
    pub fn open(data_dir: &Path) -> std::io::Result<TestClock> {
        create_private_dir(data_dir)?;
        let path = data_dir.join(FILE_NAME);
        let stored: Stored = crate::json_file::load(&path)?;
        if stored.offset_ms < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: offsetMs is negative; the test clock only moves forward",
                    path.display()
                ),
            ));
        }
        Ok(TestClock {
            path,
            offset_ms: AtomicI64::new(stored.offset_ms),
            high_water_ms: AtomicI64::new(i64::MIN),
            writer: Mutex::new(()),
        })
    }

    /// How far ahead of the system clock this clock is.
    pub fn offset(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Moves the clock `secs` seconds forward; durable before it returns
    /// (and before anything reads the new time). Returns the new now.
    pub fn advance(&self, secs: u64) -> Result<DateTime<Utc>, GrantError> {
        if secs == 0 || secs > MAX_ADVANCE_SECS {
            return Err(GrantError::Other(format!(
                "an advance is 1 to {MAX_ADVANCE_SECS} seconds"
            )));
        }
        let _one_at_a_time = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let next = self
            .offset_ms
            .load(Ordering::SeqCst)
            .checked_add(secs as i64 * 1000)
            .ok_or_else(|| GrantError::Other("the test clock's offset overflows".into()))?;
        crate::json_file::replace(&self.path, &Stored { offset_ms: next })?;
        self.offset_ms.store(next, Ordering::SeqCst);
        Ok(self.now())
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        let ms = Utc::now().timestamp_millis() + self.offset_ms.load(Ordering::SeqCst);
        let ms = self.high_water_ms.fetch_max(ms, Ordering::SeqCst).max(ms);
        DateTime::from_timestamp_millis(ms).unwrap_or_else(Utc::now)
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// The seconds asked for, from `{"seconds": N}` and nothing else.
fn seconds(body: &[u8]) -> Result<u64, jit_api::ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| jit_api::ApiError::MalformedJson(e.to_string()))?;
    let Value::Object(m) = v else {
        return Err(jit_api::ApiError::MalformedJson(
            "expected a JSON object".into(),
        ));
    };
    if let Some(other) = m.keys().find(|k| *k != "seconds") {
        return Err(jit_api::ApiError::Service(ServiceError::invalid(
            other.as_str(),
            "is not a field of a clock advance; send {\"seconds\": N}",
        )));
    }
    m.get("seconds")
        .and_then(Value::as_u64)
        .filter(|s| (1..=MAX_ADVANCE_SECS).contains(s))
        .ok_or_else(|| {
            jit_api::ApiError::Service(ServiceError::invalid(
                "seconds",
                format!("must be a whole number of seconds from 1 to {MAX_ADVANCE_SECS}"),
            ))
        })
}

/// `POST /_test/clock/advance`: moves the clock, wakes the engine, runs the
/// sweeps that would have run in the skipped time. The API key was checked.
pub(crate) async fn serve_advance(
    app: &crate::App,
    clock: &TestClock,
    method: &Method,
    body: &Bytes,
) -> Response<String> {
    if method != Method::POST {
        return jit_api::error_response(&jit_api::ApiError::MethodNotAllowed(&[Method::POST]));
    }
    let secs = match seconds(body) {
        Ok(s) => s,
        Err(e) => return jit_api::error_response(&e),
    };
    let now = match clock.advance(secs) {
        Ok(now) => now,
        Err(e) => {
            tracing::error!(error = %e, "advancing the test clock failed");
            return jit_api::error_response(&jit_api::ApiError::Service(ServiceError::Internal {
                detail: e.to_string(),
            }));
        }
    };
    tracing::warn!(seconds = secs, now = %now, "test clock advanced");
    if let Some(engine) = app.engine() {
        engine.wake();
    }
    // Every periodic pass `jit-local` runs on a timer belongs here too, so
    // that skipped time has its effects at once (the chaos suite settles
    // on that): the workflow reconcile pass and the revocation sweep.
    if let Err(e) = app.broker.recover_workflows(false).await {
        tracing::warn!(error = %e, "the workflow reconcile pass after a clock advance failed");
    }
    if let Err(e) = app.sweep_revocations().await {
        tracing::warn!(error = %e, "sweeping revocation denies after a clock advance failed");
    }
    jit_api::json_response(
        StatusCode::OK,
        &json!({
            "now": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "offsetSeconds": clock.offset().num_seconds(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advance_is_kept_across_a_reopen_and_time_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let c = TestClock::open(&data).unwrap();
        let before = c.now();
        assert!(
            (before - Utc::now()).num_seconds().abs() < 5,
            "starts at system time"
        );
        let moved = c.advance(3600).unwrap();
        assert!(moved - before >= chrono::Duration::seconds(3600));
        drop(c); // as a kill -9 would: nothing but the file is left
        let again = TestClock::open(&data).unwrap();
        assert_eq!(again.offset(), chrono::Duration::seconds(3600));
        assert!(again.now() >= moved, "the reopened clock is not behind");
        again.advance(60).unwrap();
        let third = TestClock::open(&data).unwrap();
        assert_eq!(third.offset(), chrono::Duration::seconds(3660));
    }

    #[test]
    fn advances_are_bounded_and_a_refused_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = TestClock::open(dir.path()).unwrap();
        assert!(c.advance(0).is_err());
        assert!(c.advance(MAX_ADVANCE_SECS + 1).is_err());
        assert_eq!(c.offset(), chrono::Duration::zero());
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn a_damaged_or_negative_offset_file_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        std::fs::write(&file, r#"{"offsetMs": -5}"#).unwrap();
        let e = TestClock::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("negative"), "{e}");
        std::fs::write(&file, "{").unwrap();
        assert!(TestClock::open(dir.path()).is_err());
    }

    #[test]
    fn the_body_is_seconds_only() {
        assert_eq!(seconds(br#"{"seconds": 900}"#).unwrap(), 900);
        for (body, field) in [
            (&br#"{"seconds": 0}"#[..], "seconds"),
            (br#"{"seconds": -1}"#, "seconds"),
            (br#"{"seconds": "1h"}"#, "seconds"),
            (br#"{}"#, "seconds"),
            (br#"{"seconds": 1, "minutes": 1}"#, "minutes"),
        ] {
            match seconds(body) {
                Err(jit_api::ApiError::Service(ServiceError::Invalid { field: f, .. })) => {
                    assert_eq!(
                        f.as_deref(),
                        Some(field),
                        "{}",
                        String::from_utf8_lossy(body)
                    )
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
        assert!(matches!(
            seconds(b"[1]"),
            Err(jit_api::ApiError::MalformedJson(_))
        ));
    }
}
