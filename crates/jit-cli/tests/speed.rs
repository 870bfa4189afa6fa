//! `jit credentials` runs on every AWS CLI call, so its cached path and the
//! binary's start are timed here: the median of 21 runs of the real binary.
//! Budgets (issue 5): cached credentials ≤ 20 ms, start ≤ 10 ms — for an
//! optimized build; an unoptimized test build gets 5× (it is what
//! `cargo test` builds; `cargo test --release -p jit-cli --test speed` checks
//! the real budgets).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 21;

fn slack() -> u32 {
    if cfg!(debug_assertions) { 5 } else { 1 }
}

fn median_run(args: &[&str], envs: &[(&str, &std::path::Path)]) -> Duration {
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jit"));
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let t = Instant::now();
        let st = cmd.status().expect("jit runs");
        times.push(t.elapsed());
        assert!(st.success(), "jit {args:?} failed");
    }
    times.sort();
    times[RUNS / 2]
}

#[test]
fn cached_credentials_and_start_are_within_budget() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let config = dir.path().join("config");
    // A cached answer valid for an hour; no config and no server at all, so
    // a run that is not served from the cache fails the test.
    let expiration = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let creds = serde_json::json!({
        "Version": 1,
        "AccessKeyId": "ASIAEXAMPLE",
        "SecretAccessKey": "secret",
        "SessionToken": "token",
        "Expiration": expiration,
    });
    std::fs::create_dir_all(cache.join("credentials")).unwrap();
    std::fs::write(
        cache.join("credentials").join("01TESTREQUEST.json"),
        creds.to_string(),
    )
    .unwrap();

    let envs = [
        ("JIT_CACHE_DIR", cache.as_path()),
        ("JIT_CONFIG_DIR", config.as_path()),
    ];
    let start = median_run(&["--version"], &envs);
    let cached = median_run(&["credentials", "01TESTREQUEST"], &envs);
    eprintln!(
        "jit start (--version) median {:.2} ms; cached `jit credentials` median {:.2} ms ({} build)",
        start.as_secs_f64() * 1e3,
        cached.as_secs_f64() * 1e3,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "optimized"
        }
    );
    assert!(
        start <= Duration::from_millis(10) * slack(),
        "start took {start:?}"
    );
    assert!(
        cached <= Duration::from_millis(20) * slack(),
        "cached credentials took {cached:?}"
    );
}
