//! `jit-bench`: measures what the project has targets for and writes
//! `docs/BENCHMARKS.md`. It is a measurement, not a test: it exits 0 when a
//! target fails (the report says FAIL), and non-zero only when something
//! could not be measured (then the report is printed but not written).
//!
//! ```sh
//! cargo run --release -p jit-bench
//! cargo run --release -p jit-bench -- --iterations 5000 --init-runs 50
//! ```
//!
//! Options: `--iterations N` (API create+get pairs, default 2000),
//! `--warmup N` (unmeasured pairs first, default 200), `--init-runs N`
//! (cold starts per Lambda, default 20), `--no-build` (measure the binaries
//! already in `target/release` instead of running
//! `cargo build --release -p <package>` for each Lambda, then `jit-local`
//! and `jit-cli`, one package per invocation),
//! `--bin-dir DIR` (measure the binaries in `DIR`, e.g. `target/<profile>`
//! for a profile experiment; implies `--no-build`), `--out PATH` (default
//! `docs/BENCHMARKS.md`, relative to the workspace root), `--load-secs N`
//! and `--load-clients N` (create load, default 20 s and 32 clients),
//! `--only-create-load` (only the create load, spliced into the report),
//! `--only-lambdas` (only the Lambdas: sections 2 and 3, spliced in),
//! `--only-analytics` (only `GET /analytics` over 100,000 requests' trail),
//! `--only-test-build` (only a first `./scripts/test` on a fresh clone of
//! HEAD: wall time, CPU, `target/` size),
//! `--only-engine` (only the engine's overhead, best of `--engine-rounds`,
//! spliced in), `--only-instant` (only request → usable credentials in one
//! call against the release `jit-local`, spliced in).
//!
//! What it measures:
//! 1. API throughput and latency: create+get pairs through `jit_api::handle`
//!    on SQLite (a WAL file in a temp dir, as `jit-local` uses, and in memory).
//! 2. The size of each Lambda binary ([`lambda::LAMBDAS`]),
//!    each built alone (and of `jit-local`).
//! 3. Each Lambda's cold init (spawn → first `next` on a fake Lambda
//!    Runtime API on 127.0.0.1) and its memory after one sample event.
//! 4. The local workflow engine and the `jit` CLI.
//! 5. Create load against the release `jit-local` ([`load`]): the creates a
//!    second the engine keeps pace with, and backpressure past that.
//!    `--only-create-load` measures just this and splices it into the
//!    existing report (its section and its Summary rows), leaving every
//!    other number as the last full run wrote it.
//!
//! A full run carries over the sections only an `--only-*` run measures
//! (create load, analytics, test build) from the existing report.
//!
//! It never reaches the network: the fake Runtime API and the fake Secrets
//! Manager (the secrets two Lambdas read at init) listen on loopback only,
//! and every other AWS endpoint is a refused loopback port.

mod analytics;
mod api;
mod binaries;
mod cli;
mod elf;
mod engine;
mod instant;
mod lambda;
mod load;
mod procfs;
mod report;
mod runtime_api;
mod secrets;
mod stats;
mod testbuild;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use jit_core::Catalog;
use jit_core::ports::RequestStore;

/// Measures the API, the Lambda binaries and their cold starts; writes docs/BENCHMARKS.md.
#[derive(Parser, Debug)]
#[command(name = "jit-bench")]
struct Args {
    /// Measured API create+get pairs per store.
    #[arg(long, default_value_t = 2000)]
    iterations: usize,
    /// Unmeasured create+get pairs before each store's measured ones.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Measured cold starts per Lambda (after one discarded warm-up start).
    #[arg(long, default_value_t = 20)]
    init_runs: usize,
    /// Measure the binaries already in target/release; do not run cargo build.
    #[arg(long)]
    no_build: bool,
    /// Measure the binaries in this directory (e.g. `target/<profile>`)
    /// instead of `target/release`; implies --no-build.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Executions of the ten-state machine for the engine's throughput.
    #[arg(long, default_value_t = 2000)]
    engine_executions: usize,
    /// Requests left waiting for approval in `jit-local` (memory, resume).
    #[arg(long, default_value_t = 10_000)]
    waiting: usize,
    /// Where to write the report, relative to the workspace root.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    out: PathBuf,
    /// Seconds of create load per run against `jit-local`.
    #[arg(long, default_value_t = 20)]
    load_secs: u64,
    /// Concurrent clients of the create load.
    #[arg(long, default_value_t = 32)]
    load_clients: usize,
    /// Measure only the create load (building only `jit-local`) and replace
    /// its section and Summary rows in the existing report.
    #[arg(long)]
    only_create_load: bool,
    /// Build (each alone) and measure only the Lambdas, and replace
    /// sections 2 and 3 and the Lambdas' Summary rows in the existing report.
    #[arg(long, conflicts_with = "only_create_load")]
    only_lambdas: bool,
    /// Measure only `GET /analytics` over a large trail (no build of other
    /// binaries) and replace its section and Summary row in the report.
    #[arg(long, conflicts_with_all = ["only_create_load", "only_lambdas"])]
    only_analytics: bool,
    /// Requests in the trail `--only-analytics` reads.
    #[arg(long, default_value_t = 100_000)]
    analytics_requests: usize,
    /// Measure only the engine's overhead (no build, no binaries), best of
    /// `--engine-rounds` rounds per store, and replace its table and Summary
    /// rows in the existing report.
    #[arg(long, conflicts_with_all = ["only_create_load", "only_lambdas", "only_analytics"])]
    only_engine: bool,
    /// Measure only what a first `./scripts/test` costs (a fresh clone of
    /// HEAD, its wall time, CPU and the `target/` it leaves) and replace its
    /// section and Summary row in the report. Takes minutes.
    #[arg(long, conflicts_with_all = ["only_create_load", "only_lambdas", "only_analytics", "only_engine"])]
    only_test_build: bool,
    /// Rounds of the engine measurement with `--only-engine`; the best is kept.
    #[arg(long, default_value_t = 5)]
    engine_rounds: usize,
    /// Measure only request → usable credentials in one call (`"wait":
    /// true`) against the release `jit-local` (building only it), and
    /// replace its section and Summary row in the existing report.
    #[arg(long, conflicts_with_all = ["only_create_load", "only_lambdas", "only_analytics", "only_engine"])]
    only_instant: bool,
    /// Measured calls of `--only-instant` (after `--warmup` / 4 unmeasured ones).
    #[arg(long, default_value_t = 1000)]
    instant_calls: usize,
}

/// The create-load runs: saturation, then paced at the goal rate.
fn load_specs(args: &Args) -> Vec<load::LoadSpec> {
    let duration = std::time::Duration::from_secs(args.load_secs);
    vec![
        load::LoadSpec {
            label: "saturation",
            clients: args.load_clients,
            duration,
            pace: None,
        },
        load::LoadSpec {
            label: "paced at 5000/s",
            clients: args.load_clients,
            duration,
            pace: Some(load::CREATES_TARGET),
        },
    ]
}

/// Where, when and how a section-only run measured.
fn provenance(m: &report::Machine, invocation: &str) -> String {
    format!(
        "Measured {} at commit {} on {} ({} CPUs; load average {} at start, {} at end), by `{invocation}`.\n",
        m.date, m.commit, m.cpu, m.nproc, m.load_start, m.load_end
    )
}

/// `--only-create-load`: measure the create load and splice it into the
/// existing report.
fn only_create_load(
    args: &Args,
    root: &Path,
    machine: &mut report::Machine,
    invocation: &str,
) -> anyhow::Result<()> {
    if !(args.no_build || args.bin_dir.is_some()) {
        binaries::build_release(root, &["jit-local"]).map_err(|e| anyhow!("{e:#}"))?;
    }
    let bin = match &args.bin_dir {
        Some(dir) => root.join(dir).join("jit-local"),
        None => binaries::target_dir(root)?.join("release/jit-local"),
    };
    let runs = load::run(&bin, root, &load_specs(args));
    machine.load_end = load_average();
    let (mut section, rows) = load::markdown(&runs);
    section.push_str(&provenance(machine, invocation));
    section.push('\n');
    eprintln!("{section}");
    for r in &rows {
        eprintln!("{}", report::summary_line(r));
    }
    if runs.iter().any(Result::is_err) {
        bail!(
            "some create-load runs failed; {} left as it was",
            args.out.display()
        );
    }
    write_section(
        &root.join(&args.out),
        load::HEADING,
        &section,
        load::ROW_PREFIX,
        &rows,
        "create-load",
    )
}

/// Splices one section and its Summary rows into the report at `out`,
/// every other number left as it was.
fn write_section(
    out: &Path,
    heading: &str,
    section: &str,
    prefix: &str,
    rows: &[engine::SummaryRow],
    what: &str,
) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
    let text = report::splice(&old, heading, section, prefix, rows)?;
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("jit-bench: wrote the {what} section of {}", out.display());
    Ok(())
}

/// `--only-instant`: request → usable credentials in one call against the
/// release `jit-local`, spliced into the existing report.
fn only_instant(
    args: &Args,
    root: &Path,
    machine: &mut report::Machine,
    invocation: &str,
) -> anyhow::Result<()> {
    if !(args.no_build || args.bin_dir.is_some()) {
        binaries::build_release(root, &["jit-local"]).map_err(|e| anyhow!("{e:#}"))?;
    }
    let bin = match &args.bin_dir {
        Some(dir) => root.join(dir).join("jit-local"),
        None => binaries::target_dir(root)?.join("release/jit-local"),
    };
    eprintln!(
        "jit-bench: request → credentials, {} calls ...",
        args.instant_calls
    );
    let run = instant::run(&bin, root, args.warmup / 4, args.instant_calls);
    machine.load_end = load_average();
    let (mut section, rows) = instant::markdown(&run);
    section.push_str(&provenance(machine, invocation));
    section.push('\n');
    eprintln!("{section}");
    for r in &rows {
        eprintln!("{}", report::summary_line(r));
    }
    if let Err(e) = &run {
        bail!(
            "the instant run failed ({e}); {} left as it was",
            args.out.display()
        );
    }
    let out = root.join(&args.out);
    let old =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let text = report::splice(&old, instant::HEADING, &section, instant::ROW_PREFIX, &rows)?;
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "jit-bench: wrote the instant-credentials section of {}",
        out.display()
    );
    Ok(())
}

/// `--only-engine`: the engine's overhead alone (in-process, no binaries),
/// spliced into the existing report's workflow section and Summary rows.
/// The machine is shared, so each store is measured `--engine-rounds` times
/// and the best round is kept: the least disturbed by other load.
fn only_engine(
    args: &Args,
    root: &Path,
    machine: &mut report::Machine,
    invocation: &str,
) -> anyhow::Result<()> {
    let throughput = engine::best_throughput(args.engine_executions, args.engine_rounds.max(1));
    machine.load_end = load_average();
    let (mut part, rows) = engine::throughput_part(&throughput);
    part.push('\n');
    part.push_str(&provenance(machine, invocation));
    part.push('\n');
    eprintln!("{part}");
    for r in &rows {
        eprintln!("{}", report::summary_line(r));
    }
    if throughput.iter().any(Result::is_err) {
        bail!(
            "the engine measurement failed; {} left as it was",
            args.out.display()
        );
    }
    let out = root.join(&args.out);
    let old =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let text = report::splice_rows(
        &old,
        &[engine::THROUGHPUT_ROW_PREFIX.to_string()],
        &rows.iter().map(report::summary_line).collect::<Vec<_>>(),
    )?;
    let text = engine::splice_throughput(&text, &part)?;
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "jit-bench: wrote the engine overhead part of {}",
        out.display()
    );
    Ok(())
}

/// `--only-analytics`: seed a trail, time `GET /analytics` over it and
/// splice its section and Summary row into the existing report.
fn only_analytics(
    args: &Args,
    root: &Path,
    machine: &mut report::Machine,
    invocation: &str,
) -> anyhow::Result<()> {
    let catalog = std::fs::read_to_string(root.join("config/catalog.example.yaml"))
        .context("reading config/catalog.example.yaml")?;
    let run = analytics::run(&catalog, args.analytics_requests).map_err(|e| format!("{e:#}"));
    machine.load_end = load_average();
    let (mut section, rows) = analytics::markdown(&run);
    section.push_str(&provenance(machine, invocation));
    section.push('\n');
    eprintln!("{section}");
    for r in &rows {
        eprintln!("{}", report::summary_line(r));
    }
    if let Err(e) = &run {
        bail!(
            "the analytics run failed ({e}); {} left as it was",
            args.out.display()
        );
    }
    write_section(
        &root.join(&args.out),
        analytics::HEADING,
        &section,
        analytics::ROW_PREFIX,
        &rows,
        "analytics",
    )
}

/// `--only-test-build`: a first `./scripts/test` on a fresh clone,
/// spliced into the existing report.
fn only_test_build(
    root: &Path,
    out: &Path,
    machine: &mut report::Machine,
    invocation: &str,
) -> anyhow::Result<()> {
    let run = testbuild::run(root).map_err(|e| format!("{e:#}"));
    machine.load_end = load_average();
    let (mut section, rows) = testbuild::markdown(&run);
    section.push_str(&provenance(machine, invocation));
    section.push('\n');
    eprintln!("{section}");
    for r in &rows {
        eprintln!("{}", report::summary_line(r));
    }
    if let Err(e) = &run {
        bail!(
            "the test-build run failed ({e}); {} left as it was",
            out.display()
        );
    }
    write_section(
        &root.join(out),
        testbuild::HEADING,
        &section,
        testbuild::ROW_PREFIX,
        &rows,
        "test-build",
    )
}

/// `--only-lambdas`: build each Lambda alone, measure them, and splice
/// sections 2 and 3 and their Summary rows into the existing report. The
/// `jit-local` size line of section 2 says it was not measured; its Summary
/// row stays as the last full run wrote it.
fn only_lambdas(
    args: &Args,
    root: &Path,
    machine: &mut report::Machine,
    invocation: String,
) -> anyhow::Result<()> {
    let packages: Vec<&str> = lambda::LAMBDAS.iter().map(|l| l.package).collect();
    let built = if args.no_build || args.bin_dir.is_some() {
        None
    } else {
        Some(binaries::build_release(root, &packages).map_err(|e| anyhow!("{e:#}"))?)
    };
    let target_dir = binaries::target_dir(root).ok();
    let target = match (&args.bin_dir, &target_dir) {
        (Some(dir), _) => root.join(dir),
        (None, Some(t)) => t.join("release"),
        (None, None) => bail!("cannot find the cargo target directory"),
    };
    let shown = |p: &Path| shown(p, root, target_dir.as_deref());
    let inspect = |p: &Path| {
        binaries::inspect(p)
            .map(|mut b| {
                b.path = PathBuf::from(shown(&b.path));
                b
            })
            .map_err(|e| format!("{e:#}"))
    };
    let (lambdas, secrets_served) = measure_lambdas(root, &target, &inspect, args.init_runs)?;
    machine.load_end = load_average();
    let complete = lambdas.iter().all(lambda::LambdaRun::complete);
    let results = report::Results {
        workflow_rows: Vec::new(),
        workflow_section: String::new(),
        api: Vec::new(),
        lambdas,
        local_bin: Err(
            "not built or measured by `--only-lambdas`; its Summary row is from the last full run"
                .into(),
        ),
        secrets_served,
    };
    let inputs = report::Inputs {
        invocation: invocation.clone(),
        iterations: args.iterations,
        warmup: args.warmup,
        built: Ok(built),
        bin_dir: shown(&target),
        lambdas_only: true,
        profile: release_profile(root),
    };
    let (size, mut init, rows) = report::lambda_part(&inputs, &results);
    init.push_str(&provenance(machine, &invocation));
    init.push('\n');
    eprintln!("{size}{init}");
    for r in &rows {
        eprintln!("{r}");
    }
    if !complete {
        bail!(
            "some Lambda measurements failed (marked ERROR above); {} left as it was",
            args.out.display()
        );
    }
    let out = root.join(&args.out);
    let old =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let prefixes: Vec<String> = packages
        .iter()
        .map(|p| report::lambda_row_prefix(p))
        .collect();
    let text = report::splice_rows(&old, &prefixes, &rows)?;
    let text = report::splice_section(&text, report::SIZE_HEADING, &size);
    let text = report::splice_section(&text, report::LAMBDA_HEADING, &init);
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("jit-bench: wrote the Lambda sections of {}", out.display());
    Ok(())
}

/// The workspace's `[profile.release]` as the report quotes it.
fn release_profile(root: &Path) -> String {
    std::fs::read_to_string(root.join("Cargo.toml"))
        .ok()
        .and_then(|t| binaries::release_profile(&t))
        .unwrap_or_else(|| "(could not read `[profile.release]` from `Cargo.toml`)".into())
}

const CATALOG: &str = "config/catalog.example.yaml";

/// How a path is shown in the report: relative to the workspace when it is
/// inside it (`target/release/request`), else relative to the cargo target
/// directory (`<target>/release/request`), else as it is.
fn shown(path: &Path, root: &Path, target_dir: Option<&Path>) -> String {
    if let Ok(rel) = path.strip_prefix(root) {
        return rel.display().to_string();
    }
    if let Some(rel) = target_dir.and_then(|t| path.strip_prefix(t).ok()) {
        return Path::new("<target>").join(rel).display().to_string();
    }
    path.display().to_string()
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .context("finding the workspace root")
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn machine(root: &Path) -> report::Machine {
    let root = root.display().to_string();
    let commit = command_line("git", &["-C", &root, "rev-parse", "--short", "HEAD"])
        .map(|c| {
            let dirty = command_line("git", &["-C", &root, "status", "--porcelain"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c} + uncommitted changes")
            } else {
                c
            }
        })
        .unwrap_or_else(|| "unknown".into());
    report::Machine {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu: std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| procfs::cpu_model(&t))
            .unwrap_or_else(|| "unknown".into()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into()),
        rustc: command_line("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
        commit,
        load_start: load_average(),
        load_end: String::new(),
    }
}

fn catalog(root: &Path) -> anyhow::Result<Catalog> {
    let path = root.join(CATALOG);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Catalog::parse(&text, CATALOG).map_err(|e| anyhow!("{CATALOG}: {e}"))
}

/// Both API runs: the WAL file store `jit-local` uses, then in memory.
fn api_runs(root: &Path, args: &Args) -> Vec<Result<api::ApiRun, String>> {
    let file = || -> anyhow::Result<api::ApiRun> {
        let dir = tempfile::tempdir().context("creating a temp dir")?;
        let db = dir.path().join("jit.db");
        let store = jit_store_sqlite::SqliteStore::open(&db)
            .map_err(|e| anyhow!("opening {}: {e}", db.display()))?;
        let store: Arc<dyn RequestStore> = Arc::new(store);
        eprintln!("jit-bench: API on a SQLite file ...");
        let mut run = api::run(
            "SQLite file",
            store,
            catalog(root)?,
            args.iterations,
            args.warmup,
        )?;
        // Say WAL only if the file says so.
        let head = std::fs::read(&db).with_context(|| format!("reading {}", db.display()))?;
        run.label = if api::sqlite_header_says_wal(&head)? {
            "SQLite file (WAL)"
        } else {
            "SQLite file (rollback journal, not WAL)"
        };
        Ok(run)
    };
    let memory = || -> anyhow::Result<api::ApiRun> {
        let store = jit_store_sqlite::SqliteStore::in_memory()
            .map_err(|e| anyhow!("opening an in-memory store: {e}"))?;
        let store: Arc<dyn RequestStore> = Arc::new(store);
        eprintln!("jit-bench: API on SQLite in memory ...");
        api::run(
            "SQLite in memory",
            store,
            catalog(root)?,
            args.iterations,
            args.warmup,
        )
    };
    vec![
        file().map_err(|e| format!("{e:#}")),
        memory().map_err(|e| format!("{e:#}")),
    ]
}

/// Each Lambda's binary in `target`: size, cold init, memory after one
/// event. Returns the runs and how many `GetSecretValue` calls the fake
/// Secrets Manager answered.
fn measure_lambdas(
    root: &Path,
    target: &Path,
    inspect: &dyn Fn(&Path) -> Result<binaries::BinaryInfo, String>,
    init_runs: usize,
) -> anyhow::Result<(Vec<lambda::LambdaRun>, usize)> {
    let secrets =
        secrets::FakeSecretsManager::start().context("starting the fake Secrets Manager")?;
    let logs = tempfile::tempdir().context("creating a temp dir for the Lambdas' logs")?;
    let mut lambdas = Vec::with_capacity(lambda::LAMBDAS.len());
    for spec in lambda::LAMBDAS {
        let bin = target.join(spec.package);
        let setup = lambda::Setup::new(
            spec,
            bin.clone(),
            &root.join(CATALOG),
            &secrets.endpoint(),
            logs.path(),
        )?;
        let mut run = lambda::measure(
            spec,
            &setup,
            root,
            inspect(&bin),
            binaries::crate_count(root, spec.package),
            init_runs,
        );
        // The report shows the environment without this run's details.
        for (_, v) in &mut run.env {
            *v = v.replace(&root.display().to_string(), "<repo>").replace(
                &secrets.endpoint(),
                "http://127.0.0.1:<fake Secrets Manager>",
            );
        }
        lambdas.push(run);
    }
    Ok((lambdas, secrets.served()))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = workspace_root()?;
    let mut machine = machine(&root);
    let passed: Vec<String> = std::env::args().skip(1).collect();
    let invocation = if passed.is_empty() {
        "cargo run --release -p jit-bench".to_string()
    } else {
        format!("cargo run --release -p jit-bench -- {}", passed.join(" "))
    };
    if args.only_create_load {
        return only_create_load(&args, &root, &mut machine, &invocation);
    }
    if args.only_lambdas {
        return only_lambdas(&args, &root, &mut machine, invocation);
    }
    if args.only_engine {
        return only_engine(&args, &root, &mut machine, &invocation);
    }
    if args.only_instant {
        return only_instant(&args, &root, &mut machine, &invocation);
    }
    if args.only_analytics {
        return only_analytics(&args, &root, &mut machine, &invocation);
    }
    if args.only_test_build {
        return only_test_build(&root, &args.out, &mut machine, &invocation);
    }

    // Build first, so a broken build shows before minutes of measuring.
    let built = if args.no_build || args.bin_dir.is_some() {
        Ok(None)
    } else {
        let packages: Vec<&str> = lambda::LAMBDAS
            .iter()
            .map(|l| l.package)
            .chain(["jit-local", "jit-cli"])
            .collect();
        binaries::build_release(&root, &packages)
            .map(Some)
            .map_err(|e| format!("{e:#}"))
    };
    let target_dir = binaries::target_dir(&root);
    let target = match &args.bin_dir {
        Some(dir) => root.join(dir),
        None => match &target_dir {
            Ok(dir) => dir.join("release"),
            // `cargo run --release` put this binary in the same directory.
            Err(e) => {
                let exe = std::env::current_exe().context("finding this binary")?;
                let dir = exe.parent().context("this binary has no directory")?;
                eprintln!(
                    "jit-bench: {e:#}; looking for the binaries next to this one, in {}",
                    dir.display()
                );
                dir.to_path_buf()
            }
        },
    };
    let target_dir = target_dir.ok();
    let shown = |p: &Path| shown(p, &root, target_dir.as_deref());

    let api = api_runs(&root, &args);

    let inspect = |p: &Path| {
        binaries::inspect(p)
            .map(|mut b| {
                // Shown as `target/release/request` or `<target>/release/request`.
                b.path = PathBuf::from(shown(&b.path));
                b
            })
            .map_err(|e| format!("{e:#}"))
    };
    let local_info = inspect(&target.join("jit-local"));

    let (lambdas, secrets_served) = measure_lambdas(&root, &target, &inspect, args.init_runs)?;
    let workflow = engine::run(
        &root,
        &target.join("jit-local"),
        args.engine_executions,
        args.waiting,
    );
    let loads = load::run(&target.join("jit-local"), &root, &load_specs(&args));
    let workflow_complete = workflow.throughput.iter().all(Result::is_ok)
        && workflow.waiting.is_ok()
        && workflow.cost.is_ok()
        && loads.iter().all(Result::is_ok);
    let (mut workflow_section, mut workflow_rows) = engine::markdown(&workflow);
    let (load_section, load_rows) = load::markdown(&loads);
    workflow_section.push_str(&load_section);
    workflow_rows.extend(load_rows);
    eprintln!("jit-bench: jit CLI start and cached credentials ...");
    let cli = cli::run(&target.join("jit"), 51).map_err(|e| format!("{e:#}"));
    let fmt = crate::stats::fmt_duration;
    match &cli {
        Ok(c) => {
            for (what, s, target) in [
                (
                    "`jit` start (`jit --version`) p50",
                    &c.start,
                    cli::START_TARGET,
                ),
                (
                    "`jit credentials` from its cache p50",
                    &c.cached,
                    cli::CACHED_TARGET,
                ),
            ] {
                workflow_rows.push((
                    what.into(),
                    format!("{} (p99 {})", fmt(s.p50), fmt(s.p99)),
                    format!("≤ {}", fmt(target)),
                    Some(s.p50 <= target),
                ));
            }
            workflow_section.push_str(&format!(
                "\n## The `jit` CLI\n\n`{}` run {} times each, wall time from spawn to exit: `jit --version`, and `jit credentials <id>` answered from a cached entry valid for an hour, with no config and no server (a run not served from the cache would fail). It runs on every AWS CLI call as a `credential_process`.\n\n| command | p50 | p99 | max | target |\n|---|---|---|---|---|\n| `jit --version` | {} | {} | {} | ≤ 10 ms |\n| `jit credentials <id>` (cached) | {} | {} | {} | ≤ 20 ms |\n",
                shown(&target.join("jit")), c.runs, fmt(c.start.p50), fmt(c.start.p99), fmt(c.start.max), fmt(c.cached.p50), fmt(c.cached.p99), fmt(c.cached.max)
            ));
        }
        Err(e) => workflow_rows.push((
            "`jit` CLI speed".into(),
            format!("not measured: {e}"),
            "≤ 10 ms / ≤ 20 ms".into(),
            None,
        )),
    }
    machine.load_end = load_average();

    let results = report::Results {
        workflow_rows,
        workflow_section,
        api,
        lambdas,
        local_bin: local_info,
        secrets_served,
    };
    let inputs = report::Inputs {
        invocation,
        iterations: args.iterations,
        warmup: args.warmup,
        built: built.clone(),
        bin_dir: shown(&target),
        lambdas_only: false,
        profile: release_profile(&root),
    };
    let mut text = report::render(&machine, &inputs, &results);
    text.push('\n');
    text.push_str(&results.workflow_section);
    // The sections only their own `--only-*` run measures (minutes each)
    // are carried over from the existing report, with their Summary rows.
    if let Ok(old) = std::fs::read_to_string(root.join(&args.out)) {
        for (heading, prefix) in [
            (load::HEADING, load::ROW_PREFIX),
            (analytics::HEADING, analytics::ROW_PREFIX),
            (testbuild::HEADING, testbuild::ROW_PREFIX),
        ] {
            text = report::carry_over(&old, &text, heading, prefix)?;
        }
    }
    println!("{text}");

    let complete = built.is_ok()
        && results.api.iter().all(Result::is_ok)
        && results.lambdas.iter().all(lambda::LambdaRun::complete)
        && (results.local_bin.is_ok() || args.bin_dir.is_some())
        && workflow_complete
        && cli.is_ok();
    if !complete {
        eprintln!(
            "jit-bench: some measurements failed (marked ERROR above); {} left as it was",
            args.out.display()
        );
        std::process::exit(1);
    }
    let out = root.join(&args.out);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("jit-bench: wrote {}", out.display());
    Ok(())
}
