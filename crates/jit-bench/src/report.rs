//! The Markdown report: a summary table of every number against its target,
//! then the details and how each was measured.

use std::fmt::Write as _;
use std::time::Duration;

use crate::api::ApiRun;
use crate::binaries::BinaryInfo;
use crate::lambda::{EventResult, InitResult};
use crate::stats::{fmt_bytes, fmt_duration, per_second};

/// Binary size target for the `request` Lambda (decimal MB).
pub const SIZE_TARGET: u64 = 6_000_000;
/// Cold init target: spawn → first `next`.
pub const INIT_TARGET: Duration = Duration::from_millis(15);
/// Memory target after one event (decimal MB).
pub const MEMORY_TARGET: u64 = 12_000_000;

/// Where and how the run happened.
pub struct Machine {
    pub date: String,
    pub nproc: usize,
    pub cpu: String,
    pub kernel: String,
    pub rustc: String,
    pub commit: String,
    pub load_start: String,
    pub load_end: String,
}

pub struct Inputs {
    pub invocation: String,
    pub iterations: usize,
    pub warmup: usize,
    pub built: Result<Option<Duration>, String>,
    /// Where the measured binaries are, e.g. `target/release`.
    pub bin_dir: String,
    pub env: Vec<(&'static str, String)>,
}

pub struct Results {
    /// Summary rows of the workflow section: (what, value, target, pass).
    pub workflow_rows: Vec<crate::engine::SummaryRow>,
    /// The workflow section's Markdown (`crate::engine::markdown`).
    pub workflow_section: String,
    pub api: Vec<Result<ApiRun, String>>,
    pub request_bin: Result<BinaryInfo, String>,
    pub local_bin: Result<BinaryInfo, String>,
    pub request_crates: Option<usize>,
    pub init: Result<InitResult, String>,
    pub event: Result<EventResult, String>,
}

struct Row {
    what: String,
    value: String,
    target: String,
    verdict: &'static str,
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "**FAIL**" }
}

fn info(what: String, value: String) -> Row {
    Row {
        what,
        value,
        target: "— (none set)".into(),
        verdict: "info",
    }
}

fn error_row(what: &str, e: &str) -> Row {
    Row {
        what: what.into(),
        value: format!("not measured: {}", first_line(e)),
        target: "—".into(),
        verdict: "**ERROR**",
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// How a value sits against its (upper-bound) target, in words.
fn over(value: f64, target: f64) -> String {
    if value < target {
        format!("{:.0}% of target", value / target * 100.0)
    } else {
        format!("{:.1}% over target", (value / target - 1.0) * 100.0)
    }
}

fn rows(r: &Results) -> Vec<Row> {
    let mut rows = Vec::new();
    for run in &r.api {
        match run {
            Ok(a) => {
                rows.push(info(
                    format!("API {}: create+get pairs/s", a.label),
                    format!(
                        "{:.0} pairs/s ({:.0} requests/s)",
                        per_second(a.pairs, a.elapsed),
                        per_second(2 * a.pairs, a.elapsed)
                    ),
                ));
                rows.push(info(
                    format!("API {}: create p50 / p99 / max", a.label),
                    format!(
                        "{} / {} / {}",
                        fmt_duration(a.create.p50),
                        fmt_duration(a.create.p99),
                        fmt_duration(a.create.max)
                    ),
                ));
                rows.push(info(
                    format!("API {}: get p50 / p99 / max", a.label),
                    format!(
                        "{} / {} / {}",
                        fmt_duration(a.get.p50),
                        fmt_duration(a.get.p99),
                        fmt_duration(a.get.max)
                    ),
                ));
            }
            Err(e) => rows.push(error_row("API throughput", e)),
        }
    }
    match &r.request_bin {
        Ok(b) => rows.push(Row {
            what: "`request` Lambda binary size".into(),
            value: format!(
                "{} — {}",
                fmt_bytes(b.size),
                over(b.size as f64, SIZE_TARGET as f64)
            ),
            target: "< 6 MB".into(),
            verdict: verdict(b.size < SIZE_TARGET),
        }),
        Err(e) => rows.push(error_row("`request` binary size", e)),
    }
    if let Ok(b) = &r.local_bin {
        rows.push(info("`jit-local` binary size".into(), fmt_bytes(b.size)));
    }
    match &r.init {
        Ok(i) => {
            for (name, d) in [
                ("p50", i.summary.p50),
                ("p99", i.summary.p99),
                ("min", i.summary.min),
            ] {
                rows.push(Row {
                    what: format!("Lambda cold init {name} (spawn → first `next`, wall)"),
                    value: format!(
                        "{} — {}",
                        fmt_duration(d),
                        over(d.as_secs_f64(), INIT_TARGET.as_secs_f64())
                    ),
                    target: "< 15 ms".into(),
                    verdict: verdict(d < INIT_TARGET),
                });
            }
            rows.push(info(
                "Lambda cold init CPU time p50 / max (user + sys)".into(),
                format!(
                    "{} / {}",
                    fmt_duration(i.cpu_summary.p50),
                    fmt_duration(i.cpu_summary.max)
                ),
            ));
        }
        Err(e) => rows.push(error_row("Lambda cold init", e)),
    }
    match &r.event {
        Ok(ev) => {
            for (name, b) in [
                ("VmHWM (peak RSS)", ev.memory_after_event.hwm_bytes),
                ("VmRSS", ev.memory_after_event.rss_bytes),
            ] {
                rows.push(Row {
                    what: format!("Lambda memory after one event, {name}"),
                    value: format!(
                        "{} — {}",
                        fmt_bytes(b),
                        over(b as f64, MEMORY_TARGET as f64)
                    ),
                    target: "< 12 MB".into(),
                    verdict: verdict(b < MEMORY_TARGET),
                });
            }
        }
        Err(e) => rows.push(error_row("Lambda memory", e)),
    }
    for (what, value, target, pass) in &r.workflow_rows {
        rows.push(Row {
            what: what.clone(),
            value: value.clone(),
            target: target.clone(),
            verdict: match pass {
                Some(p) => verdict(*p),
                None => "**ERROR**",
            },
        });
    }
    rows
}

/// The whole report.
pub fn render(m: &Machine, i: &Inputs, r: &Results) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Generated by `jit-bench`; do not edit by hand. Regenerate with:\n\n\
         ```sh\ncargo run --release -p jit-bench\n```\n\n\
         Options (after `--`): `--iterations N` (API create+get pairs, default 2000), \
         `--warmup N` (unmeasured pairs first, default 200), `--init-runs N` \
         (Lambda cold starts, default 20), `--no-build` (use the existing \
         `target/release` binaries instead of running `cargo build --release -p request` \
         and then `-p jit-local`), `--bin-dir DIR` (measure the binaries in `DIR`, \
         e.g. `target/<profile>`; implies `--no-build`), \
         `--out PATH` (default `docs/BENCHMARKS.md`, relative to the workspace root).\n"
    );
    let _ = writeln!(w, "This run: `{}`\n", i.invocation);
    let _ = writeln!(
        w,
        "MB = 1,000,000 bytes throughout (stricter than MiB). Timings are wall-clock \
         `Instant` measurements; percentiles are nearest-rank.\n"
    );

    let _ = writeln!(w, "## Summary\n");
    let _ = writeln!(w, "| measurement | value | target | result |");
    let _ = writeln!(w, "|---|---|---|---|");
    if let Err(e) = &i.built {
        let row = error_row("release build (binaries below may be stale)", e);
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} |",
            row.what, row.value, row.target, row.verdict
        );
    }
    for row in rows(r) {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} |",
            row.what, row.value, row.target, row.verdict
        );
    }
    let _ = writeln!(
        w,
        "\nThe API numbers have no target yet: they are recorded to catch regressions.\n"
    );

    let _ = writeln!(w, "## Machine\n");
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(w, "| date | {} |", m.date);
    let _ = writeln!(w, "| CPU | {} |", m.cpu);
    let _ = writeln!(w, "| nproc | {} |", m.nproc);
    let _ = writeln!(w, "| kernel | {} |", m.kernel);
    let _ = writeln!(w, "| rustc | {} |", m.rustc);
    let _ = writeln!(w, "| commit | {} |", m.commit);
    let _ = writeln!(
        w,
        "| load average (1/5/15 min) at start / end | {} / {} |",
        m.load_start, m.load_end
    );
    let _ = writeln!(
        w,
        "\nA shared build machine: other compilations may have been running, \
         which shows in the load average and mostly in the p99 and max columns.\n"
    );

    api_section(w, i, r);
    size_section(w, i, r);
    lambda_section(w, i, r);
    s
}

fn api_section(w: &mut String, i: &Inputs, r: &Results) {
    let _ = writeln!(w, "## 1. API throughput (`jit_api::handle` on SQLite)\n");
    let _ = writeln!(
        w,
        "Each pair is `POST /requests` (an on-call SRE asking for the auto-approved \
         `OnCallReadOnly` for 30m) then `GET /requests/{{id}}` of what was created, \
         called through `jit_api::handle` — the handler both front doors use — with the \
         sample catalog `config/catalog.example.yaml`, `SystemClock`, and a workflow \
         that only counts starts (the API and store cost is what is measured). \
         Sequential, on a current-thread tokio runtime, {} warm-up pairs first, then {} \
         measured pairs; every create must answer 201 and every get 200, and the run \
         checks one workflow start per create. Each call is timed on its own; \
         throughput is pairs over the wall time of the measured loop.\n",
        i.warmup, i.iterations
    );
    let _ = writeln!(
        w,
        "| store | pairs/s | requests/s | create p50 | create p99 | create max | get p50 | get p99 | get max |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|");
    for run in &r.api {
        match run {
            Ok(a) => {
                let _ = writeln!(
                    w,
                    "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} |",
                    a.label,
                    per_second(a.pairs, a.elapsed),
                    per_second(2 * a.pairs, a.elapsed),
                    fmt_duration(a.create.p50),
                    fmt_duration(a.create.p99),
                    fmt_duration(a.create.max),
                    fmt_duration(a.get.p50),
                    fmt_duration(a.get.p99),
                    fmt_duration(a.get.max),
                );
            }
            Err(e) => {
                let _ = writeln!(w, "| ERROR: {} | | | | | | | | |", first_line(e));
            }
        }
    }
    let _ = writeln!(w);
}

fn size_section(w: &mut String, i: &Inputs, r: &Results) {
    let _ = writeln!(w, "## 2. Binary size\n");
    match &i.built {
        Ok(Some(d)) => {
            let _ = writeln!(
                w,
                "Built by the bench: `cargo build --release -p request`, then the same for \
                 `jit-local`, in separate invocations so `request` is built with only its \
                 own features, as `sam build` builds it ({} in all; short when already up \
                 to date). Release profile: `opt-level = \"s\"`, \
                 fat LTO, `codegen-units = 1`, `panic = \"abort\"`, `strip = \"symbols\"`.\n",
                fmt_duration(*d)
            );
        }
        Ok(None) => {
            let _ = writeln!(
                w,
                "Not built by this run: measured the binaries already in `{}`.\n",
                i.bin_dir
            );
        }
        Err(e) => {
            let _ = writeln!(w, "The build failed: {}\n", first_line(e));
        }
    }
    for (name, bin) in [("request", &r.request_bin), ("jit-local", &r.local_bin)] {
        match bin {
            Ok(b) => {
                let _ = writeln!(
                    w,
                    "**`{name}`** (`{}`) — {}",
                    b.path.display(),
                    fmt_bytes(b.size)
                );
                let _ = writeln!(
                    w,
                    "- stripped: {} (`.symtab` {}, `.debug_*` {})",
                    if b.has_symtab || b.has_debug {
                        "**no**"
                    } else {
                        "yes"
                    },
                    if b.has_symtab { "present" } else { "absent" },
                    if b.has_debug { "present" } else { "absent" },
                );
                if let Some(f) = &b.file_says {
                    let _ = writeln!(w, "- `file`: {f}");
                }
                let largest: Vec<String> = b
                    .largest_sections
                    .iter()
                    .map(|s| format!("`{}` {:.2} MB", s.name, s.size as f64 / 1e6))
                    .collect();
                let _ = writeln!(w, "- largest sections: {}", largest.join(", "));
                if name == "request"
                    && let Some(n) = r.request_crates
                {
                    let _ = writeln!(
                        w,
                        "- crates linked (`cargo tree -p request -e normal`, distinct): {n}"
                    );
                }
                let _ = writeln!(w);
            }
            Err(e) => {
                let _ = writeln!(w, "**`{name}`** — not measured: {}\n", first_line(e));
            }
        }
    }
}

fn lambda_section(w: &mut String, i: &Inputs, r: &Results) {
    let _ = writeln!(w, "## 3. Lambda cold init and memory\n");
    let _ = writeln!(
        w,
        "`{}/request` is spawned against a fake Lambda Runtime API \
         (HTTP/1.1 on a free 127.0.0.1 port, `AWS_LAMBDA_RUNTIME_API`). The child gets \
         only this environment (no HOME, no `~/.aws`, as on Lambda):\n",
        i.bin_dir
    );
    let _ = writeln!(w, "```");
    for (k, v) in &i.env {
        let _ = writeln!(w, "{k}={v}");
    }
    let _ = writeln!(w, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:<free port>");
    let _ = writeln!(w, "```\n");
    match &r.init {
        Ok(init) => {
            let _ = writeln!(
                w,
                "**Init** = spawn → the first `GET /2018-06-01/runtime/invocation/next` \
                 arriving (ready for the first event): configuration, catalog, SDK \
                 config and clients, runtime start. {} runs after {} discarded warm-up \
                 run(s); each child is killed once it asks for an event. With {} runs, \
                 p99 is the slowest run.\n",
                init.runs.len(),
                init.warmup,
                init.runs.len()
            );
            let _ = writeln!(
                w,
                "| | min | p50 | p99 | max | mean |\n|---|---|---|---|---|---|"
            );
            for (what, s) in [
                ("wall (the target)", &init.summary),
                ("CPU, user + sys", &init.cpu_summary),
            ] {
                let _ = writeln!(
                    w,
                    "| {what} | {} | {} | {} | {} | {} |",
                    fmt_duration(s.min),
                    fmt_duration(s.p50),
                    fmt_duration(s.p99),
                    fmt_duration(s.max),
                    fmt_duration(s.mean)
                );
            }
            let _ = writeln!(
                w,
                "\nCPU time is the child's own, all threads, from exec until it is killed \
                 just after its `next` arrives (`wait4` rusage at reaping): init's work, \
                 plus whatever little it does between sending `next` and the kill. \
                 Parallel threads can make it exceed wall time. Wall time well above CPU \
                 time is waiting: for the disk, the loader, or a CPU when other work \
                 competes for this machine's cores. A wall-time outlier with an ordinary \
                 CPU time is the machine, not the binary.\n"
            );
            let all: Vec<String> = init
                .runs
                .iter()
                .zip(&init.cpu)
                .map(|(wall, cpu)| format!("{} ({} CPU)", fmt_duration(*wall), fmt_duration(*cpu)))
                .collect();
            let _ = writeln!(w, "All runs, in order: {}.\n", all.join(", "));
            let mut hwm = init.hwm_at_ready.clone();
            hwm.sort_unstable();
            if let (Some(lo), Some(hi)) = (hwm.first(), hwm.last()) {
                let _ = writeln!(
                    w,
                    "Peak RSS when ready (before any event): {:.2}–{:.2} MB.\n",
                    *lo as f64 / 1e6,
                    *hi as f64 / 1e6
                );
            }
        }
        Err(e) => {
            let _ = writeln!(w, "**Init**: not measured:\n\n```\n{e}\n```\n");
        }
    }
    match &r.event {
        Ok(ev) => {
            let _ = writeln!(
                w,
                "**Memory serving an event**: a fresh child answers its first `next` with \
                 `events/request-list.json` (API Gateway REST, `GET /requests?limit=10`, \
                 an IAM caller). That lists from DynamoDB, and the only DynamoDB here is \
                 the refused dummy endpoint `http://127.0.0.1:1`, so the event is *meant* \
                 to fail: the numbers are for a request that went all the way through \
                 the API and the SDK (including its retries) and came back as an error \
                 response, not for a successful query.\n"
            );
            let _ = writeln!(w, "| | |\n|---|---|");
            let _ = writeln!(
                w,
                "| answer posted to | `/runtime/invocation/<id>/{}` |",
                ev.posted_to
            );
            let _ = writeln!(
                w,
                "| API Gateway `statusCode` | {} |",
                ev.status_code
                    .map_or("(none)".to_string(), |c| c.to_string())
            );
            let _ = writeln!(
                w,
                "| API `error.code` | {} |",
                ev.error_code.as_deref().unwrap_or("(none)")
            );
            let _ = writeln!(
                w,
                "| event handed out → answer posted | {} (not a latency: mostly the SDK's jittered backoff between retries of the refused connection, so it varies from run to run) |",
                fmt_duration(ev.took)
            );
            let _ = writeln!(
                w,
                "| VmHWM / VmRSS when ready | {} / {} |",
                fmt_bytes(ev.memory_at_ready.hwm_bytes),
                fmt_bytes(ev.memory_at_ready.rss_bytes)
            );
            let _ = writeln!(
                w,
                "| VmHWM / VmRSS waiting for the 2nd event | {} / {} |",
                fmt_bytes(ev.memory_after_event.hwm_bytes),
                fmt_bytes(ev.memory_after_event.rss_bytes)
            );
            let levels: Vec<String> = ev
                .log_levels
                .iter()
                .map(|(l, n)| format!("{n} {l}"))
                .collect();
            let _ = writeln!(
                w,
                "| function log lines | {} ({}) |",
                ev.log_lines,
                levels.join(", ")
            );
            let _ = writeln!(
                w,
                "| first ERROR log line's fields | {} |\n",
                ev.first_error
                    .as_deref()
                    .map_or("(none)".to_string(), |e| format!(
                        "`{}`",
                        e.replace('|', "\\|")
                    ))
            );
            let _ = writeln!(
                w,
                "Memory is read from `/proc/<pid>/status` while the function waits on its \
                 second `next`. Lambda bills and limits the whole sandbox, which this \
                 does not include; it is the function process alone.\n"
            );
        }
        Err(e) => {
            let _ = writeln!(w, "**Memory**: not measured:\n\n```\n{e}\n```\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_how_far_from_the_target() {
        assert_eq!(over(6_635_120.0, 6e6), "10.6% over target");
        assert_eq!(over(6e6, 6e6), "0.0% over target");
        assert_eq!(over(6.3, 15.0), "42% of target");
    }
}
