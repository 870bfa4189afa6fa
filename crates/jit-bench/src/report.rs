//! The Markdown report: a summary table of every number against its target,
//! then the details and how each was measured.

use std::fmt::Write as _;
use std::time::Duration;

use crate::api::ApiRun;
use crate::binaries::BinaryInfo;
use crate::lambda::{LambdaRun, REFUSED_ENDPOINT};
use crate::stats::{fmt_bytes, fmt_duration, per_second};

/// Binary size target for every Lambda (decimal MB).
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
    /// Only the Lambdas were built (`--only-lambdas`), not `jit-local` and `jit-cli`.
    pub lambdas_only: bool,
    /// The workspace's `[profile.release]` as it reads, e.g.
    /// `opt-level = "z"`, `lto = "fat"` (from `Cargo.toml`, so the report
    /// cannot drift from it).
    pub profile: String,
}

pub struct Results {
    /// Summary rows of the workflow section: (what, value, target, pass).
    pub workflow_rows: Vec<crate::engine::SummaryRow>,
    /// The workflow section's Markdown (`crate::engine::markdown`).
    pub workflow_section: String,
    pub api: Vec<Result<ApiRun, String>>,
    /// One per Lambda, in `lambda::LAMBDAS` order.
    pub lambdas: Vec<LambdaRun>,
    pub local_bin: Result<BinaryInfo, String>,
    /// `GetSecretValue` calls the fake Secrets Manager answered.
    pub secrets_served: usize,
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
    for l in &r.lambdas {
        lambda_rows(&mut rows, l);
    }
    if let Ok(b) = &r.local_bin {
        rows.push(info("`jit-local` binary size".into(), fmt_bytes(b.size)));
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

/// One Lambda's rows against the three targets: size, init p50 and p99,
/// memory (VmHWM and VmRSS).
fn lambda_rows(rows: &mut Vec<Row>, l: &LambdaRun) {
    let name = l.spec.package;
    match &l.bin {
        Ok(b) => rows.push(Row {
            what: format!("`{name}` binary size (stripped)"),
            value: format!(
                "{} — {}",
                fmt_bytes(b.size),
                over(b.size as f64, SIZE_TARGET as f64)
            ),
            target: "< 6 MB".into(),
            verdict: verdict(b.size < SIZE_TARGET && !b.has_symtab && !b.has_debug),
        }),
        Err(e) => rows.push(error_row(&format!("`{name}` binary size"), e)),
    }
    match &l.init {
        Ok(i) => {
            for (p, d) in [("p50", i.summary.p50), ("p99", i.summary.p99)] {
                rows.push(Row {
                    what: format!("`{name}` cold init {p} (spawn → first `next`, wall)"),
                    value: format!(
                        "{} — {}",
                        fmt_duration(d),
                        over(d.as_secs_f64(), INIT_TARGET.as_secs_f64())
                    ),
                    target: "< 15 ms".into(),
                    verdict: verdict(d < INIT_TARGET),
                });
            }
        }
        Err(e) => rows.push(error_row(&format!("`{name}` cold init"), e)),
    }
    let when = if l.spec.event.is_some() {
        "after one event"
    } else {
        "when ready (no event)"
    };
    match &l.event {
        Ok(ev) => {
            for (m, b) in [
                ("VmHWM (peak RSS)", ev.memory_after_event.hwm_bytes),
                ("VmRSS", ev.memory_after_event.rss_bytes),
            ] {
                rows.push(Row {
                    what: format!("`{name}` memory {when}, {m}"),
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
        Err(e) => rows.push(error_row(&format!("`{name}` memory"), e)),
    }
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
         (cold starts per Lambda, default 20), `--no-build` (use the existing \
         `target/release` binaries instead of running `cargo build --release -p <package>` \
         for each Lambda, then `jit-local` and `jit-cli`), \
         `--engine-executions N` (state machine runs, default 2000), `--waiting N` \
         (requests left waiting in `jit-local`, default 10000), \
         `--bin-dir DIR` (measure the binaries in `DIR`, \
         e.g. `target/<profile>`; implies `--no-build`), \
         `--out PATH` (default `docs/BENCHMARKS.md`, relative to the workspace root), \
         `--load-secs N` and `--load-clients N` (create load against `jit-local`, \
         default 20 s, 32 clients), `--only-create-load` (measure only the create \
         load and replace its section and Summary rows here), `--only-lambdas` (build \
         and measure only the Lambdas and replace sections 2 and 3 and their Summary \
         rows here), `--only-engine` with `--engine-rounds N` (measure only the \
         engine's overhead, best of N rounds per store, default 5, and replace its \
         table and Summary rows here), `--only-analytics` (only `GET /analytics` over \
         a 100,000-request trail), `--only-test-build` (only a first `./scripts/test` \
         on a fresh clone of HEAD). A full run keeps the create-load, analytics and \
         test-build sections of the existing report, which only their own runs \
         measure.\n"
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
                "Built by the bench: `cargo build --release -p <package>` for each Lambda, \
                 {}one package per invocation so each Lambda \
                 is built with only its own features, as `sam build` builds it ({} in all; \
                 short when already up to date). Release profile (`Cargo.toml`): {}.\n",
                if i.lambdas_only {
                    ""
                } else {
                    "then `jit-local` and `jit-cli`, "
                },
                fmt_duration(*d),
                i.profile
            );
        }
        Ok(None) => {
            let _ = writeln!(
                w,
                "Not built by this run: measured the binaries already in `{}` (if several \
                 packages were built in one cargo invocation, their features were unified \
                 and the sizes are not what `sam build` ships).\n",
                i.bin_dir
            );
        }
        Err(e) => {
            let _ = writeln!(w, "The build failed: {}\n", first_line(e));
        }
    }
    let _ = writeln!(
        w,
        "Every Lambda's target: under 6 MB, stripped (no `.symtab`, no `.debug_*`).\n"
    );
    let _ = writeln!(
        w,
        "| Lambda | binary | size | result | stripped | largest sections | crates linked |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    for l in &r.lambdas {
        let name = l.spec.package;
        match &l.bin {
            Ok(b) => {
                let _ = writeln!(
                    w,
                    "| `{name}` | `{}` | {} | {} | {} | {} | {} |",
                    b.path.display(),
                    fmt_bytes(b.size),
                    verdict(b.size < SIZE_TARGET && !b.has_symtab && !b.has_debug),
                    stripped(b),
                    largest(b, 3),
                    l.crates.map_or("?".to_string(), |n| n.to_string())
                );
            }
            Err(e) => {
                let _ = writeln!(
                    w,
                    "| `{name}` | not measured: {} | | **ERROR** | | | |",
                    first_line(e)
                );
            }
        }
    }
    let _ = writeln!(
        w,
        "\nCrates linked: distinct crates in `cargo tree -p <package> -e normal`, the \
         package itself included.\n"
    );
    if let Some(f) = r
        .lambdas
        .iter()
        .find_map(|l| l.bin.as_ref().ok().and_then(|b| b.file_says.as_ref()))
    {
        let _ = writeln!(w, "`file` on the first: {f}\n");
    }
    match &r.local_bin {
        Ok(b) => {
            let _ = writeln!(
                w,
                "**`jit-local`** (`{}`, no target) — {}; stripped: {}; largest sections: {}\n",
                b.path.display(),
                fmt_bytes(b.size),
                stripped(b),
                largest(b, 6)
            );
        }
        Err(e) => {
            let _ = writeln!(w, "**`jit-local`** — not measured: {}\n", first_line(e));
        }
    }
}

fn stripped(b: &BinaryInfo) -> String {
    match (b.has_symtab, b.has_debug) {
        (false, false) => "yes".into(),
        (symtab, debug) => format!(
            "**no** (`.symtab` {}, `.debug_*` {})",
            if symtab { "present" } else { "absent" },
            if debug { "present" } else { "absent" }
        ),
    }
}

fn largest(b: &BinaryInfo, n: usize) -> String {
    b.largest_sections
        .iter()
        .take(n)
        .map(|s| format!("`{}` {:.2} MB", s.name, s.size as f64 / 1e6))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A variable's value as the report shows it (`|` escaped for tables).
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn lambda_section(w: &mut String, i: &Inputs, r: &Results) {
    let _ = writeln!(w, "## 3. Lambda cold init and memory\n");
    let _ = writeln!(
        w,
        "Each Lambda's binary in `{}` is spawned against a fake Lambda Runtime API \
         (HTTP/1.1 on a free 127.0.0.1 port, `AWS_LAMBDA_RUNTIME_API`). A child gets \
         only the environment below (no HOME, no `~/.aws`, as on Lambda): what Lambda \
         sets and the template's `Globals`, the same for all but the function name,\n",
        i.bin_dir
    );
    let _ = writeln!(w, "```");
    if let Some(first) = r.lambdas.first() {
        let common = crate::lambda::common_env("jit-<package>", std::path::Path::new(""));
        for (k, v) in &first.env {
            if let Some((_, c)) = common.iter().find(|(ck, _)| ck == k) {
                let v = if *k == "AWS_LAMBDA_FUNCTION_NAME" {
                    c
                } else {
                    v
                };
                let _ = writeln!(w, "{k}={v}");
            }
        }
    }
    let _ = writeln!(w, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:<free port>");
    let _ = writeln!(w, "```\n");
    let _ = writeln!(
        w,
        "and its own variables (the function's `Environment` in `template.yaml`, with \
         local values). Every AWS endpoint is the refused port `{REFUSED_ENDPOINT}`, so \
         nothing leaves the machine; the exception is Secrets Manager for the two \
         functions that read their secrets at init (`slack-notify`, \
         `approval-callback`: they cannot start without them). They get a fake \
         Secrets Manager on loopback that answers `GetSecretValue` with dummy \
         values ({} calls answered in this run), so their init includes those \
         round trips over loopback — faster than to the real service.\n",
        r.secrets_served
    );
    let _ = writeln!(w, "| Lambda | its own variables |\n|---|---|");
    let common = crate::lambda::common_env("", std::path::Path::new(""));
    for l in &r.lambdas {
        let own: Vec<String> = l
            .env
            .iter()
            .filter(|(k, _)| !common.iter().any(|(ck, _)| ck == k))
            .map(|(k, v)| format!("`{}`", cell(&format!("{k}={v}"))))
            .collect();
        let own = if own.is_empty() {
            "(none)".to_string()
        } else {
            own.join("<br>")
        };
        let _ = writeln!(w, "| `{}` | {own} |", l.spec.package);
    }
    let _ = writeln!(w);

    init_tables(w, r);
    memory_tables(w, r);
}

fn init_tables(w: &mut String, r: &Results) {
    let first_ok = r.lambdas.iter().find_map(|l| l.init.as_ref().ok());
    let (runs, warmup) = first_ok.map_or((0, 0), |i| (i.runs.len(), i.warmup));
    let _ = writeln!(
        w,
        "### Cold init\n\n**Init** = spawn → the first `GET /2018-06-01/runtime/invocation/next` \
         arriving (ready for the first event): configuration, catalog, SDK config and \
         clients (and the secrets, where read), runtime start. {runs} runs per Lambda after \
         {warmup} discarded warm-up run(s); each child is killed once it asks for an event. \
         With {runs} runs, p99 is the slowest run. Target: p50 and p99 under 15 ms.\n"
    );
    let _ = writeln!(
        w,
        "| Lambda | min | p50 | p99 | max | mean | CPU p50 | CPU max | peak RSS when ready | result |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    for l in &r.lambdas {
        let name = l.spec.package;
        match &l.init {
            Ok(i) => {
                let mut hwm = i.hwm_at_ready.clone();
                hwm.sort_unstable();
                let hwm = match (hwm.first(), hwm.last()) {
                    (Some(lo), Some(hi)) => {
                        format!("{:.2}–{:.2} MB", *lo as f64 / 1e6, *hi as f64 / 1e6)
                    }
                    _ => "?".into(),
                };
                let s = &i.summary;
                let _ = writeln!(
                    w,
                    "| `{name}` | {} | {} | {} | {} | {} | {} | {} | {hwm} | {} |",
                    fmt_duration(s.min),
                    fmt_duration(s.p50),
                    fmt_duration(s.p99),
                    fmt_duration(s.max),
                    fmt_duration(s.mean),
                    fmt_duration(i.cpu_summary.p50),
                    fmt_duration(i.cpu_summary.max),
                    verdict(s.p50 < INIT_TARGET && s.p99 < INIT_TARGET)
                );
            }
            Err(e) => {
                let _ = writeln!(
                    w,
                    "| `{name}` | not measured: {} | | | | | | | | **ERROR** |",
                    cell(first_line(e))
                );
            }
        }
    }
    let _ = writeln!(
        w,
        "\nWall time is the target. CPU time is the child's own, all threads, from exec \
         until it is killed just after its `next` arrives (`wait4` rusage at reaping): \
         init's work, plus whatever little it does between sending `next` and the kill. \
         Parallel threads can make it exceed wall time. Wall time well above CPU time is \
         waiting: for the disk, the loader, or a CPU when other work competes for this \
         machine's cores. A wall-time outlier with an ordinary CPU time is the machine, \
         not the binary.\n"
    );
    let _ = writeln!(w, "All runs, in order, wall (CPU):\n");
    for l in &r.lambdas {
        match &l.init {
            Ok(i) => {
                let all: Vec<String> = i
                    .runs
                    .iter()
                    .zip(&i.cpu)
                    .map(|(wall, cpu)| format!("{} ({})", fmt_duration(*wall), fmt_duration(*cpu)))
                    .collect();
                let _ = writeln!(w, "- `{}`: {}", l.spec.package, all.join(", "));
            }
            Err(e) => {
                let _ = writeln!(
                    w,
                    "- `{}`: not measured:\n\n```\n{e}\n```\n",
                    l.spec.package
                );
            }
        }
    }
    let _ = writeln!(w);
}

fn memory_tables(w: &mut String, r: &Results) {
    let _ = writeln!(
        w,
        "### Memory after one event\n\nA fresh child of each Lambda answers its first \
         `next` with a sample event from `events/`, and its memory is read from \
         `/proc/<pid>/status` while it waits on its second `next`. The events that \
         reach an AWS call meet only the refused port, so they are *meant* to fail: \
         those numbers are for an event that went all the way through the handler and \
         the SDK (including its retries) and came back as an error, not for a \
         successful one. Target: VmHWM and VmRSS under 12 MB. Lambda bills \
         and limits the whole sandbox, which this does not include; it is the \
         function process alone.\n"
    );
    let _ = writeln!(w, "| Lambda | event | what it does here |\n|---|---|---|");
    for l in &r.lambdas {
        let _ = writeln!(
            w,
            "| `{}` | {} | {} |",
            l.spec.package,
            l.spec
                .event
                .map_or("(none: memory read when ready)".to_string(), |e| format!(
                    "`{e}`"
                )),
            l.spec.event_note
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "| Lambda | answer | event → answer | VmHWM / VmRSS when ready | VmHWM / VmRSS after the event | result | log lines | first ERROR log line's fields |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
    for l in &r.lambdas {
        let name = l.spec.package;
        match &l.event {
            Ok(ev) => {
                let mut answer = format!("`{}`", ev.posted_to);
                if let Some(c) = ev.status_code {
                    answer.push_str(&format!(", `statusCode` {c}"));
                }
                if let Some(c) = &ev.error_code {
                    answer.push_str(&format!(", `error.code` `{c}`"));
                }
                if let Some(t) = &ev.error_type {
                    answer.push_str(&format!(", `errorType` `{}`", cell(t)));
                }
                let levels: Vec<String> = ev
                    .log_levels
                    .iter()
                    .map(|(l, n)| format!("{n} {l}"))
                    .collect();
                let m = &ev.memory_after_event;
                let _ = writeln!(
                    w,
                    "| `{name}` | {answer} | {} | {} / {} | {} / {} | {} | {} ({}) | {} |",
                    fmt_duration(ev.took),
                    fmt_bytes(ev.memory_at_ready.hwm_bytes),
                    fmt_bytes(ev.memory_at_ready.rss_bytes),
                    fmt_bytes(m.hwm_bytes),
                    fmt_bytes(m.rss_bytes),
                    verdict(m.hwm_bytes < MEMORY_TARGET && m.rss_bytes < MEMORY_TARGET),
                    ev.log_lines,
                    levels.join(", "),
                    ev.first_error
                        .as_deref()
                        .map_or("(none)".to_string(), |e| format!("`{}`", cell(e)))
                );
            }
            Err(e) => {
                let _ = writeln!(
                    w,
                    "| `{name}` | not measured: {} | | | | **ERROR** | | |",
                    cell(first_line(e))
                );
            }
        }
    }
    let _ = writeln!(
        w,
        "\nEvent → answer is not a latency: it is mostly the SDK's jittered backoff \
         between retries of the refused connection, so it varies from run to run.\n"
    );
    for l in &r.lambdas {
        if let Err(e) = &l.event {
            let _ = writeln!(
                w,
                "`{}` memory not measured:\n\n```\n{e}\n```\n",
                l.spec.package
            );
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

/// Section 2's heading (binary sizes).
pub const SIZE_HEADING: &str = "## 2. Binary size";
/// Section 3's heading (Lambda cold init and memory).
pub const LAMBDA_HEADING: &str = "## 3. Lambda cold init and memory";

/// The Lambda part alone, for `--only-lambdas`: section 2, section 3 and
/// the Lambdas' Summary lines (`r`'s API and workflow parts are not read).
pub fn lambda_part(i: &Inputs, r: &Results) -> (String, String, Vec<String>) {
    let mut size = String::new();
    size_section(&mut size, i, r);
    let mut init = String::new();
    lambda_section(&mut init, i, r);
    let mut rows = Vec::new();
    for l in &r.lambdas {
        lambda_rows(&mut rows, l);
    }
    let lines = rows
        .iter()
        .map(|row| {
            format!(
                "| {} | {} | {} | {} |",
                row.what, row.value, row.target, row.verdict
            )
        })
        .collect();
    (size, init, lines)
}

/// The Summary-row prefix of one Lambda's rows (`| `request` `).
pub fn lambda_row_prefix(package: &str) -> String {
    format!("`{package}` ")
}

/// A summary row as the Summary table shows it.
pub fn summary_line((what, value, target, pass): &crate::engine::SummaryRow) -> String {
    let verdict = match pass {
        Some(p) => verdict(*p),
        None => "**ERROR**",
    };
    format!("| {what} | {value} | {target} | {verdict} |")
}

/// A report with one section measured again: the section starting at
/// `heading` (up to the next `## ` heading) is replaced by `section`, or
/// appended when absent, and the Summary rows starting with `| {prefix}`
/// are replaced by `rows` (placed at the end of the Summary table). Every
/// other number stays as the last full run wrote it.
pub fn splice(
    report: &str,
    heading: &str,
    section: &str,
    prefix: &str,
    rows: &[crate::engine::SummaryRow],
) -> anyhow::Result<String> {
    let rows: Vec<String> = rows.iter().map(summary_line).collect();
    let text = splice_rows(report, &[prefix.to_string()], &rows)?;
    Ok(splice_section(&text, heading, section))
}

/// The Summary rows starting with `| {prefix}` for any of `prefixes`
/// replaced by `rows`, placed where the first of the old ones was (at the
/// end of the Summary table when there was none).
pub fn splice_rows(report: &str, prefixes: &[String], rows: &[String]) -> anyhow::Result<String> {
    let mut lines: Vec<String> = report.lines().map(str::to_string).collect();
    let summary = lines
        .iter()
        .position(|l| l == "## Summary")
        .ok_or_else(|| anyhow::anyhow!("the report has no Summary section"))?;
    let own: Vec<String> = prefixes.iter().map(|p| format!("| {p}")).collect();
    let is_own = |l: &str| own.iter().any(|o| l.starts_with(o.as_str()));
    let first_old = (summary..lines.len()).find(|&i| is_own(&lines[i]));
    lines.retain(|l| !is_own(l));
    // The table: its header two lines after the heading, rows until a blank line.
    let table_start = (summary + 1..lines.len())
        .find(|&i| lines[i].starts_with('|'))
        .ok_or_else(|| anyhow::anyhow!("the Summary section has no table"))?;
    let table_end = (table_start..lines.len())
        .find(|&i| !lines[i].starts_with('|'))
        .unwrap_or(lines.len());
    let at = first_old.map_or(table_end, |i| i.min(table_end));
    for (k, row) in rows.iter().enumerate() {
        lines.insert(at + k, row.clone());
    }
    let mut text = lines.join("\n");
    text.push('\n');
    Ok(text)
}

/// The section starting at `heading` (up to the next `## ` heading)
/// replaced by `section`, or `section` appended when there is none.
pub fn splice_section(report: &str, heading: &str, section: &str) -> String {
    let mut text = report.to_string();
    match text.find(&format!("\n{heading}\n")) {
        Some(at) => {
            let body = at + 1;
            let end = text[body + heading.len()..]
                .find("\n## ")
                .map_or(text.len(), |e| body + heading.len() + e + 1);
            text.replace_range(body..end, section);
        }
        None => {
            text.push('\n');
            text.push_str(section);
        }
    }
    text
}

/// `new` with the section at `heading` and the Summary rows starting with
/// `| {prefix}` taken from `old`, when `old` has that section: a full run
/// keeps what only a section-only run measures.
pub fn carry_over(old: &str, new: &str, heading: &str, prefix: &str) -> anyhow::Result<String> {
    let Some(at) = old.find(&format!("\n{heading}\n")) else {
        return Ok(new.to_string());
    };
    let body = &old[at + 1..];
    let end = body[heading.len()..]
        .find("\n## ")
        .map_or(body.len(), |e| heading.len() + e + 1);
    let section = &body[..end];
    let own = format!("| {prefix}");
    let rows: Vec<String> = old
        .lines()
        .filter(|l| l.starts_with(&own))
        .map(str::to_string)
        .collect();
    let text = splice_rows(new, &[prefix.to_string()], &rows)?;
    Ok(splice_section(&text, heading, section))
}

#[cfg(test)]
mod splice_tests {
    use super::*;

    #[test]
    fn a_full_run_carries_over_a_section_it_does_not_measure() {
        let old = "# B\n\n## Summary\n\n| m | v | t | r |\n|---|---|---|---|\n| api | 1 | — | info |\n| load x | 5 | ≥ 9 | **FAIL** |\n\n## Load\n\nold numbers\n\n## CLI\n\ncli\n";
        let new = "# B\n\n## Summary\n\n| m | v | t | r |\n|---|---|---|---|\n| api | 2 | — | info |\n\n## CLI\n\nnew cli\n";
        let out = carry_over(old, new, "## Load", "load").unwrap();
        assert!(out.contains("| api | 2 | — | info |\n| load x | 5 | ≥ 9 | **FAIL** |\n"));
        assert!(out.contains("## Load\n\nold numbers\n"));
        assert!(out.contains("new cli"));
        assert_eq!(carry_over(old, new, "## Absent", "absent").unwrap(), new);
    }

    #[test]
    fn splice_replaces_one_section_and_its_summary_rows() {
        let report = "# B\n\n## Summary\n\n| m | v | t | r |\n|---|---|---|---|\n| api | 1 | — | info |\n| load x | 5 | ≥ 9 | **FAIL** |\n\nnote\n\n## Load\n\nold numbers\n\n## CLI\n\ncli\n";
        let row = ("load x".to_string(), "10".into(), "≥ 9".into(), Some(true));
        let out = splice(
            report,
            "## Load",
            "## Load\n\nnew numbers\n\n",
            "load",
            &[row],
        )
        .unwrap();
        assert_eq!(
            out,
            "# B\n\n## Summary\n\n| m | v | t | r |\n|---|---|---|---|\n| api | 1 | — | info |\n| load x | 10 | ≥ 9 | PASS |\n\nnote\n\n## Load\n\nnew numbers\n\n## CLI\n\ncli\n"
        );
        // A report without the section gets it appended.
        let out = splice(
            "## Summary\n\n| a |\n",
            "## Load",
            "## Load\n\nn\n",
            "load",
            &[],
        )
        .unwrap();
        assert_eq!(out, "## Summary\n\n| a |\n\n## Load\n\nn\n");
    }

    #[test]
    fn lambda_rows_are_replaced_where_they_were() {
        let report = "## Summary\n\n| m | r |\n|---|---|\n| api | info |\n| `request` binary size | **FAIL** |\n| `request` cold init | PASS |\n| `expire` binary size | PASS |\n| `jit-local` binary size | info |\n\n## 2. Binary size\n\nold\n\n## 3. Lambda cold init and memory\n\nold\n\n## Approval workflow\n\nw\n";
        let prefixes = ["request", "expire"].map(lambda_row_prefix);
        let rows = [
            "| `request` binary size | PASS |".to_string(),
            "| `request` cold init | PASS |".to_string(),
            "| `expire` binary size | PASS |".to_string(),
        ];
        let text = splice_rows(report, &prefixes, &rows).unwrap();
        let text = splice_section(&text, SIZE_HEADING, "## 2. Binary size\n\nnew 2\n\n");
        let text = splice_section(
            &text,
            LAMBDA_HEADING,
            "## 3. Lambda cold init and memory\n\nnew 3\n\n",
        );
        assert_eq!(
            text,
            "## Summary\n\n| m | r |\n|---|---|\n| api | info |\n| `request` binary size | PASS |\n| `request` cold init | PASS |\n| `expire` binary size | PASS |\n| `jit-local` binary size | info |\n\n## 2. Binary size\n\nnew 2\n\n## 3. Lambda cold init and memory\n\nnew 3\n\n## Approval workflow\n\nw\n"
        );
    }
}
