//! `--only-test-build`: what a first `./scripts/test` costs a newcomer.
//!
//! The README promises a time and a disk size for the first test run, and
//! issue #15 set a goal against the numbers measured before the test tree
//! was restructured. Both are only honest when measured the way a newcomer
//! meets them: a fresh clone of the committed tree, no `target/`, no
//! Python virtualenvs, `./scripts/test` run as written. That is what this
//! does, then it sizes what the run left behind.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::engine::SummaryRow;

pub const HEADING: &str = "## Test build (clean `./scripts/test`)";
pub const ROW_PREFIX: &str = "clean `./scripts/test`";

/// Before the restructure (issue #15, measured on this machine class):
/// 19 minutes wall and 16 GB under `target/`. The goal is half the time and
/// a quarter of the disk.
const BEFORE_WALL: Duration = Duration::from_secs(19 * 60);
const BEFORE_TARGET_BYTES: u64 = 16_000_000_000;

pub struct TestBuild {
    pub wall: Duration,
    /// User + system CPU of `./scripts/test` and everything it ran.
    pub cpu: Duration,
    /// The largest resident set of any one process it ran (the linker, most
    /// often), from `getrusage(RUSAGE_CHILDREN)`.
    pub max_rss_bytes: u64,
    pub target_bytes: u64,
    /// The pinned Python tools `./scripts/test` installed (`.venv*`).
    pub venv_bytes: u64,
    /// The script's last line: "N passed, N failed, N skipped".
    pub tally: String,
}

/// Clones the workspace's committed HEAD into a temporary directory, runs
/// `./scripts/test` there with cargo's and the shell's defaults (no
/// `CARGO_TARGET_DIR`, so `target/` is the clone's own), and measures it.
/// The clone is removed afterwards; the run's output is kept in
/// `target/test-build.log` of the workspace for a failed run.
pub fn run(root: &Path) -> anyhow::Result<TestBuild> {
    let tmp = tempfile::Builder::new()
        .prefix("jit-test-build-")
        .tempdir()
        .context("creating a temporary directory")?;
    let clone = tmp.path().join("jit-access");
    let status = Command::new("git")
        .args(["clone", "--quiet"])
        .arg(root)
        .arg(&clone)
        .status()
        .context("running git clone")?;
    if !status.success() {
        bail!("git clone of {} failed ({status})", root.display());
    }
    // `../shared` beside the clone, as CI has it, when the workspace has one.
    if let Some(shared) = root.parent().map(|p| p.join("shared"))
        && shared.is_dir()
    {
        std::os::unix::fs::symlink(&shared, tmp.path().join("shared"))
            .context("linking ../shared beside the clone")?;
    }
    let log_path = root.join("target/test-build.log");
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let before = children_usage();
    let started = Instant::now();
    let status = Command::new("./scripts/test")
        .current_dir(&clone)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating the log file")?)
        .stderr(log)
        .status()
        .context("running ./scripts/test in the clone")?;
    let wall = started.elapsed();
    let after = children_usage();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let tally = text
        .lines()
        .rev()
        .find(|l| l.contains(" passed, ") && l.ends_with(" skipped"))
        .unwrap_or("no tally line")
        .to_string();
    if !status.success() {
        bail!(
            "./scripts/test failed in the clean clone ({status}; {tally}); its output is in {}",
            log_path.display()
        );
    }
    let venv_bytes = std::fs::read_dir(&clone)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".venv"))
                .map(|e| tree_bytes(&e.path()))
                .sum()
        })
        .unwrap_or(0);
    Ok(TestBuild {
        wall,
        cpu: after.cpu.saturating_sub(before.cpu),
        max_rss_bytes: after.max_rss_bytes,
        target_bytes: tree_bytes(&clone.join("target")),
        venv_bytes,
        tally,
    })
}

struct Usage {
    cpu: Duration,
    max_rss_bytes: u64,
}

fn children_usage() -> Usage {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Usage {
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        // Linux reports kilobytes.
        max_rss_bytes: ru.ru_maxrss as u64 * 1024,
    }
}

/// Apparent size of every regular file under `dir` (what `du -sb` says),
/// symlinks not followed.
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// The section and its Summary rows.
pub fn markdown(run: &Result<TestBuild, String>) -> (String, Vec<SummaryRow>) {
    let goal_wall = BEFORE_WALL / 2;
    let goal_target = BEFORE_TARGET_BYTES / 4;
    let goal = format!(
        "≤ {} wall, ≤ {} target/",
        minutes(goal_wall),
        gb(goal_target)
    );
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    let _ = writeln!(
        s,
        "A fresh `git clone` of the committed tree (no `target/`, no `.venv*`), then `./scripts/test` as the README gives it: it installs the pinned Python tools from the package registry, starts moto, builds every test binary and runs every test. Wall time from start to exit; CPU is user + system of the script and everything it ran; peak RSS is the largest single process (usually the linker); sizes are apparent bytes (`du -sb`) after the run.\n"
    );
    let _ = writeln!(
        s,
        "Before the restructure (issue #15: one test binary per file, full debug info for dependencies): {} wall and {} under `target/` on this machine class. Goal: half the time and a quarter of the disk.\n",
        minutes(BEFORE_WALL),
        gb(BEFORE_TARGET_BYTES)
    );
    match run {
        Err(e) => {
            let _ = writeln!(s, "**ERROR**: {e}\n");
            (
                s,
                vec![(
                    format!("{ROW_PREFIX}: wall / target/"),
                    e.clone(),
                    goal,
                    None,
                )],
            )
        }
        Ok(r) => {
            let _ = writeln!(
                s,
                "| wall | CPU (user + sys) | peak RSS of one process | `target/` | `.venv*` | tests |\n|---|---|---|---|---|---|\n| {} | {:.0} s | {} | {} | {} | {} |\n",
                minutes(r.wall),
                r.cpu.as_secs_f64(),
                gb(r.max_rss_bytes),
                gb(r.target_bytes),
                gb(r.venv_bytes),
                r.tally
            );
            let pass = r.wall <= goal_wall && r.target_bytes <= goal_target;
            (
                s,
                vec![(
                    format!("{ROW_PREFIX}: wall / target/"),
                    format!("{} / {}", minutes(r.wall), gb(r.target_bytes)),
                    goal,
                    Some(pass),
                )],
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_row_passes_only_within_both_goals() {
        let run = |wall: u64, target: u64| TestBuild {
            wall: Duration::from_secs(wall),
            cpu: Duration::from_secs(400),
            max_rss_bytes: 1_500_000_000,
            target_bytes: target,
            venv_bytes: 300_000_000,
            tally: "600 passed, 0 failed, 4 skipped".into(),
        };
        let (section, rows) = markdown(&Ok(run(300, 2_400_000_000)));
        assert_eq!(rows[0].1, "5:00 / 2.40 GB");
        assert_eq!(rows[0].3, Some(true));
        assert!(section.contains("| 5:00 | 400 s | 1.50 GB | 2.40 GB | 0.30 GB | 600 passed"));
        assert_eq!(markdown(&Ok(run(600, 2_400_000_000))).1[0].3, Some(false));
        assert_eq!(markdown(&Ok(run(300, 4_100_000_000))).1[0].3, Some(false));
        assert_eq!(markdown(&Err("boom".into())).1[0].3, None);
    }

    #[test]
    fn tree_bytes_sums_files_below_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/x"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("y"), [0u8; 5]).unwrap();
        assert_eq!(tree_bytes(dir.path()), 15);
    }
}
