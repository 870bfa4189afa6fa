//! The one log subscriber every Lambda installs.
//!
//! The Rust runtime's `init_default_subscriber` brings `tracing-subscriber`'s
//! env-filter (a regex engine) and ANSI colouring, which cost the `request`
//! binary hundreds of kilobytes to parse one level name. Our functions run
//! with `LoggingConfig.LogFormat: JSON`, so this writes JSON only, and the
//! level is a single level, not a filter expression.
//!
//! Lines keep the runtime's shape (`level`, `fields`, `span`, `spans`; no
//! target, no timestamp: CloudWatch stamps every line), so the runtime's
//! span carries `requestId` into each line. Never log a payload here: they
//! can carry task tokens and secrets.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Installs the JSON subscriber on stdout at the level from the environment.
/// Call once, first thing in `main`.
pub fn init() {
    tracing::subscriber::set_global_default(subscriber(
        level_from(|k| std::env::var(k).ok()),
        std::io::stdout,
    ))
    .expect("the log subscriber is installed once, at the start of main");
}

/// The subscriber [`init`] installs, writing to `writer` (a buffer in tests).
pub fn subscriber<W>(level: LevelFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .without_time()
        .with_max_level(level)
        .with_writer(writer)
        .finish()
}

/// `AWS_LAMBDA_LOG_LEVEL` (what `LoggingConfig.ApplicationLogLevel` sets)
/// wins over `RUST_LOG`; unset or unreadable means INFO, so a typo never
/// silences a function. Lambda's `FATAL` has no `tracing` level: ERROR is
/// the closest that still logs failures.
pub fn level_from(get: impl Fn(&str) -> Option<String>) -> LevelFilter {
    let Some(name) = get("AWS_LAMBDA_LOG_LEVEL").or_else(|| get("RUST_LOG")) else {
        return LevelFilter::INFO;
    };
    match name.trim().to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" | "warning" => LevelFilter::WARN,
        "error" | "fatal" => LevelFilter::ERROR,
        "off" => LevelFilter::OFF,
        _ => LevelFilter::INFO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(vars: &[(&str, &str)]) -> LevelFilter {
        level_from(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn writes_one_json_line_per_event_at_or_above_the_level_with_its_span() {
        // GIVEN the Lambda subscriber at INFO writing to a buffer
        let out = Buffer::default();
        let sub = subscriber(LevelFilter::INFO, out.clone());
        // WHEN an event is logged inside a span like the runtime's, and a
        // debug event too
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("Lambda runtime invoke", requestId = "req-1");
            let _g = span.enter();
            tracing::info!(request_id = "01J", status = "GRANTED", "decided");
            tracing::debug!("not written");
        });
        // THEN exactly one JSON line is written, shaped as before
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["fields"]["message"], "decided");
        assert_eq!(v["fields"]["status"], "GRANTED");
        assert_eq!(v["span"]["requestId"], "req-1");
        assert!(
            v.get("target").is_none() && v.get("timestamp").is_none(),
            "{v}"
        );
    }

    #[test]
    fn the_level_comes_from_lambda_first_then_rust_log_then_info() {
        let cases: &[(&[(&str, &str)], LevelFilter)] = &[
            (&[], LevelFilter::INFO),
            (&[("RUST_LOG", "debug")], LevelFilter::DEBUG),
            (
                &[("AWS_LAMBDA_LOG_LEVEL", "WARN"), ("RUST_LOG", "trace")],
                LevelFilter::WARN,
            ),
            (&[("AWS_LAMBDA_LOG_LEVEL", "TRACE")], LevelFilter::TRACE),
            (&[("AWS_LAMBDA_LOG_LEVEL", "ERROR")], LevelFilter::ERROR),
            (&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")], LevelFilter::ERROR),
            (&[("RUST_LOG", " Info ")], LevelFilter::INFO),
            (&[("RUST_LOG", "off")], LevelFilter::OFF),
            // a filter expression is not a level: the default, not silence
            (&[("RUST_LOG", "jit_aws=debug")], LevelFilter::INFO),
            (&[("RUST_LOG", "loud")], LevelFilter::INFO),
        ];
        for (vars, want) in cases {
            // GIVEN the environment, WHEN the level is read, THEN it is `want`
            assert_eq!(level(vars), *want, "{vars:?}");
        }
    }
}
