//! The `jit` CLI's speed: it runs on every AWS CLI call as a
//! `credential_process`, so its start and its cached `jit credentials` path
//! have budgets (10 ms and 20 ms).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::stats::Summary;

pub const START_TARGET: Duration = Duration::from_millis(10);
pub const CACHED_TARGET: Duration = Duration::from_millis(20);

pub struct CliRun {
    pub runs: usize,
    pub start: Summary,
    pub cached: Summary,
}

fn timed_runs(
    bin: &Path,
    args: &[&str],
    envs: &[(&str, &Path)],
    runs: usize,
) -> anyhow::Result<Summary> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut cmd = Command::new(bin);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let t = Instant::now();
        let st = cmd
            .status()
            .with_context(|| format!("running {}", bin.display()))?;
        times.push(t.elapsed());
        if !st.success() {
            bail!("`jit {}` failed", args.join(" "));
        }
    }
    Summary::of(&times).context("no runs")
}

/// Median and p99 of `runs` runs of `jit --version` and of a cached
/// `jit credentials <id>` (no config and no server: a run not served from
/// the cache fails the measurement).
pub fn run(bin: &Path, runs: usize) -> anyhow::Result<CliRun> {
    let dir = tempfile::tempdir()?;
    let cache = dir.path().join("cache");
    let config = dir.path().join("config");
    let expiration = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let creds = serde_json::json!({
        "Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "secret",
        "SessionToken": "token", "Expiration": expiration,
    });
    std::fs::create_dir_all(cache.join("credentials"))?;
    std::fs::write(
        cache.join("credentials").join("01TESTREQUEST.json"),
        creds.to_string(),
    )?;
    let envs = [
        ("JIT_CACHE_DIR", cache.as_path()),
        ("JIT_CONFIG_DIR", config.as_path()),
    ];
    let start = timed_runs(bin, &["--version"], &envs, runs)?;
    let cached = timed_runs(bin, &["credentials", "01TESTREQUEST"], &envs, runs)?;
    Ok(CliRun {
        runs,
        start,
        cached,
    })
}
