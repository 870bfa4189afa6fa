//! The approval workflow's costs: the local engine's own overhead, what
//! `jit-local` holds and how fast it resumes with 10,000 requests waiting for
//! approval, and what an approved request costs on Step Functions.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use async_trait::async_trait;
use jit_core::ports::SystemClock;
use jit_engine::{
    CannedAnswer, CannedTasks, Definitions, Engine, EngineDb, StateMachine, TaskError, TaskInvoker,
};
use serde_json::{Value, json};

use crate::procfs;
use crate::stats::{fmt_bytes, fmt_duration};

/// Targets from the workflow issue.
pub const TRANSITIONS_TARGET: f64 = 50_000.0;
pub const WAITING_RSS_TARGET: u64 = 100_000_000;
pub const RESUME_TARGET: Duration = Duration::from_secs(2);
pub const APPROVED_TRANSITIONS_TARGET: usize = 10;
/// Step Functions Standard price per state transition (USD).
pub const PRICE_PER_TRANSITION: f64 = 0.025 / 1000.0;

/// A summary row: what, value, target, and whether it passed (`None`: not
/// measured).
pub type SummaryRow = (String, String, String, Option<bool>);

pub struct Throughput {
    pub label: &'static str,
    pub executions: usize,
    pub transitions: usize,
    pub start_elapsed: Duration,
    pub run_elapsed: Duration,
}

impl Throughput {
    pub fn per_second(&self) -> f64 {
        self.transitions as f64 / self.run_elapsed.as_secs_f64().max(1e-9)
    }
}

pub struct Waiting {
    pub requests: usize,
    pub create_elapsed: Duration,
    pub rss: u64,
    pub hwm: u64,
    pub resume: Duration,
    pub resumed_line: String,
}

pub struct Cost {
    pub states: Vec<String>,
}

pub struct EngineResults {
    pub throughput: Vec<Result<Throughput, String>>,
    pub waiting: Result<Waiting, String>,
    pub cost: Result<Cost, String>,
}

struct Echo;

#[async_trait]
impl TaskInvoker for Echo {
    async fn invoke(&self, _f: &str, payload: Value) -> Result<Value, TaskError> {
        Ok(payload)
    }
}

/// Ten transitions per execution, three of them in-process tasks.
fn ten_states() -> String {
    let task = |next: &str| {
        json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
               "Parameters": {"FunctionName": "f", "Payload": {"id.$": "$.id"}},
               "ResultSelector": {"ok.$": "$.Payload.id"}, "ResultPath": "$.r", "Next": next})
    };
    json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Result": 1, "ResultPath": "$.a", "Next": "B"},
        "B": {"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEquals": 1, "Next": "C"}], "Default": "J"},
        "C": task("D"),
        "D": {"Type": "Pass", "Next": "E"},
        "E": {"Type": "Choice", "Choices": [{"Variable": "$.r.ok", "IsPresent": true, "Next": "F"}], "Default": "J"},
        "F": task("G"),
        "G": {"Type": "Pass", "Next": "H"},
        "H": {"Type": "Pass", "Next": "I"},
        "I": task("J"),
        "J": {"Type": "Succeed"}
    }})
    .to_string()
}

/// Starts `executions` of the ten-state machine, then runs them all on one
/// core; transitions/s counts only the run.
pub fn throughput(
    label: &'static str,
    db: EngineDb,
    executions: usize,
) -> anyhow::Result<Throughput> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let machine =
            StateMachine::load(&ten_states(), &Default::default()).map_err(|e| anyhow!("{e}"))?;
        let engine = Engine::open(
            db,
            Definitions::new().with("bench", machine),
            Arc::new(Echo),
            Arc::new(SystemClock),
        )
        .map_err(|e| anyhow!("{e}"))?;
        let t0 = Instant::now();
        for i in 0..executions {
            engine
                .start_execution("bench", &format!("e{i}"), json!({"id": i}))
                .map_err(|e| anyhow!("{e}"))?;
        }
        let start_elapsed = t0.elapsed();
        let t1 = Instant::now();
        let transitions = engine.run_until_idle().await.map_err(|e| anyhow!("{e}"))?;
        let run_elapsed = t1.elapsed();
        if transitions < executions * 10 {
            bail!("only {transitions} transitions for {executions} executions of 10 states");
        }
        Ok(Throughput {
            label,
            executions,
            transitions,
            start_elapsed,
            run_elapsed,
        })
    })
}

/// The states an approved request enters on the real definition.
pub fn approved_cost(root: &Path) -> anyhow::Result<Cost> {
    let def = std::fs::read_to_string(root.join("state-machine/approval.asl.json"))?;
    let subs = [
        "UpdateStatusFunctionArn",
        "GeneratePolicyFunctionArn",
        "SlackNotifyFunctionArn",
        "AssumeRoleFunctionArn",
        "ExpireFunctionArn",
    ]
    .into_iter()
    .map(|k| {
        (
            k.to_string(),
            format!("arn:aws:lambda:us-east-1:123456789012:function:{k}"),
        )
    })
    .collect();
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let canned = CannedTasks::new()
        .with_substitutions(subs)
        .answer(
            "RequestApproval",
            CannedAnswer::Output {
                output: json!({"decision": "approved"}),
            },
        )
        .answer(
            "RecordGranted",
            CannedAnswer::Output {
                output: json!({"expiresAt": expires}),
            },
        );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt
        .block_on(jit_engine::run_with_canned_tasks(
            &def,
            json!({"requestId": "R1", "autoApprove": false, "approvalTimeoutSeconds": 3600}),
            canned,
        ))
        .map_err(|e| anyhow!("{e}"))?;
    if report.status.as_str() != "SUCCEEDED" {
        bail!("the approved path ended {}", report.status.as_str());
    }
    Ok(Cost {
        states: report.states,
    })
}

pub(crate) const KEY: &str = "bench-key-0123456789abcdef";

/// Starts the release `jit-local` on a free loopback port with `extra`
/// flags; returns it with its address, start-up lines and start time.
pub(crate) fn spawn_local(
    bin: &Path,
    root: &Path,
    data: &Path,
    extra: &[&str],
) -> anyhow::Result<(Child, SocketAddr, Vec<String>, Duration)> {
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .args(["--addr", "127.0.0.1:0", "--api-key", KEY, "--catalog"])
        .arg(root.join("config/catalog.example.yaml"))
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env("JIT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("jit-local stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining after the reader is gone: jit-local prints every
        // approval notice, and a closed pipe would make it fail.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = vec![];
    let mut addr = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Everything up to the "workflow:" line is start-up (the resume happens
    // before the server binds).
    while !lines.iter().any(|l: &String| l.contains("workflow:")) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .map_err(|_| anyhow!("jit-local did not start within 60 s: {lines:?}"))?;
        if let Some(a) = line.strip_prefix("jit-local listening on http://") {
            addr = Some(a.trim().parse::<SocketAddr>()?);
        }
        lines.push(line);
    }
    let ready = t0.elapsed();
    let addr = addr.ok_or_else(|| anyhow!("no listening line: {lines:?}"))?;
    Ok((child, addr, lines, ready))
}

/// One request over a fresh connection; returns the status code.
fn post(addr: SocketAddr, path: &str, user: &str, body: &str) -> anyhow::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nx-api-key: {KEY}\r\nx-jit-user: {user}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad answer: {resp:.80}"))
}

/// One GET over a fresh connection; returns status and JSON body.
fn get(addr: SocketAddr, path: &str, user: &str) -> anyhow::Result<(u16, Value)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nx-api-key: {KEY}\r\nx-jit-user: {user}\r\nconnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad answer: {resp:.80}"))?;
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("null");
    Ok((code, serde_json::from_str(body)?))
}

/// Requests in APPROVAL_PENDING, as their approver lists them.
fn count_pending(addr: SocketAddr) -> anyhow::Result<usize> {
    let mut count = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/requests?status=APPROVAL_PENDING&limit=100&cursor={c}"),
            None => "/requests?status=APPROVAL_PENDING&limit=100".to_string(),
        };
        let (code, v) = get(addr, &path, "lead@example.com")?;
        if code != 200 {
            bail!("listing pending requests answered {code}: {v}");
        }
        count += v["requests"].as_array().map_or(0, Vec::len);
        match v["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(count),
        }
    }
}

/// Fills a `jit-local` with `n` requests waiting for approval, measures its
/// memory, kills it (SIGKILL) and measures the restart until it serves again
/// with every execution resumed.
pub fn waiting(bin: &Path, root: &Path, n: usize) -> anyhow::Result<Waiting> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let (mut child, addr, _, _) = spawn_local(bin, root, &data, &[])?;
    let result = (|| -> anyhow::Result<(Duration, procfs::Memory)> {
        let t0 = Instant::now();
        for i in 0..n {
            let body = format!(
                r#"{{"entitlement":"JIT-ElevatedAdminRole","duration":"1h","justification":"bench {i}"}}"#
            );
            let code = post(addr, "/requests", &format!("user{i}@example.com"), &body)?;
            if code != 201 {
                bail!("create {i} answered {code}");
            }
        }
        // Wait until the engine has moved every request to APPROVAL_PENDING,
        // as an approver listing them sees it.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let pending = count_pending(addr)?;
            if pending >= n {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {pending} of {n} requests waiting after 300 s");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let created = t0.elapsed();
        std::thread::sleep(Duration::from_millis(200));
        let mem = procfs::memory_of(child.id())?;
        Ok((created, mem))
    })();
    let _ = child.kill();
    let _ = child.wait();
    let (create_elapsed, mem) = result?;
    let (mut again, _, lines, resume) = spawn_local(bin, root, &data, &[])?;
    let _ = again.kill();
    let _ = again.wait();
    let resumed_line = lines
        .iter()
        .find(|l| l.contains("workflow:"))
        .cloned()
        .unwrap_or_default();
    if !resumed_line.contains(&format!("({n} executions resumed")) {
        bail!("the restart did not resume all {n} executions: {resumed_line}");
    }
    Ok(Waiting {
        requests: n,
        create_elapsed,
        rss: mem.rss_bytes,
        hwm: mem.hwm_bytes,
        resume,
        resumed_line,
    })
}

/// The section for `docs/BENCHMARKS.md`, and the summary rows
/// (what, value, target, pass).
pub fn markdown(r: &EngineResults) -> (String, Vec<SummaryRow>) {
    let mut rows = vec![];
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Approval workflow (`jit-engine`, `jit-local`, Step Functions cost)\n"
    );
    let (part, throughput_rows) = throughput_part(&r.throughput);
    s.push_str(&part);
    rows.extend(throughput_rows);
    let _ = writeln!(
        s,
        "\n**10,000 requests waiting for approval.** The release `jit-local` binary on a fresh data dir: N requests for `JIT-ElevatedAdminRole` (manual approval) created over HTTP, each driven by the engine to `APPROVAL_PENDING` (counted through the approver's listing, `GET /requests?status=APPROVAL_PENDING`); then the process's memory is read from `/proc`, it is killed with SIGKILL, and restarted on the same data: resume time is spawn until it serves again with every execution resumed (the resume runs before the server binds).\n"
    );
    match &r.waiting {
        Ok(w) => {
            let _ = writeln!(
                s,
                "| requests | created and waiting in | RSS | peak RSS | restart → serving, all resumed |\n|---|---|---|---|---|\n| {} | {} | {} | {} | {} |\n\nRestart said: `{}`\n",
                w.requests,
                fmt_duration(w.create_elapsed),
                fmt_bytes(w.rss),
                fmt_bytes(w.hwm),
                fmt_duration(w.resume),
                w.resumed_line.trim()
            );
            rows.push((
                format!("jit-local RSS, {} executions waiting", w.requests),
                fmt_bytes(w.rss),
                "≤ 100 MB".into(),
                Some(w.rss <= WAITING_RSS_TARGET),
            ));
            rows.push((
                format!(
                    "jit-local restart with {} waiting, until serving",
                    w.requests
                ),
                fmt_duration(w.resume),
                "≤ 2 s".into(),
                Some(w.resume <= RESUME_TARGET),
            ));
        }
        Err(e) => {
            let _ = writeln!(s, "Not measured: {e}\n");
            rows.push((
                "jit-local with 10,000 waiting".into(),
                format!("not measured: {e}"),
                "≤ 100 MB, ≤ 2 s".into(),
                None,
            ));
        }
    }
    let _ = writeln!(
        s,
        "**Step Functions cost of an approved request.** The states `state-machine/approval.asl.json` enters on the approved path (run on the engine with canned answers). Step Functions Standard bills one state transition per state entered, at $0.025 per 1,000.\n"
    );
    match &r.cost {
        Ok(c) => {
            let n = c.states.len();
            let _ = writeln!(
                s,
                "{} transitions: {} — ${:.6} per approved request (${:.2} per 10,000).\n",
                n,
                c.states.join(" → "),
                n as f64 * PRICE_PER_TRANSITION,
                n as f64 * PRICE_PER_TRANSITION * 10_000.0
            );
            rows.push((
                "state transitions per approved request".into(),
                format!("{n} (${:.6})", n as f64 * PRICE_PER_TRANSITION),
                format!("≤ {APPROVED_TRANSITIONS_TARGET}"),
                Some(n <= APPROVED_TRANSITIONS_TARGET),
            ));
        }
        Err(e) => {
            let _ = writeln!(s, "Not measured: {e}\n");
            rows.push((
                "state transitions per approved request".into(),
                format!("not measured: {e}"),
                "≤ 10".into(),
                None,
            ));
        }
    }
    (s, rows)
}

/// The Summary rows of the engine's overhead start with this.
pub const THROUGHPUT_ROW_PREFIX: &str = "engine transitions/s";
const THROUGHPUT_START: &str = "**Engine overhead.**";
const THROUGHPUT_END: &str = "\n**10,000 requests waiting";

/// The engine-overhead paragraph and table, and their Summary rows.
pub fn throughput_part(throughput: &[Result<Throughput, String>]) -> (String, Vec<SummaryRow>) {
    let mut rows = vec![];
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{THROUGHPUT_START} A ten-state machine (Pass, Choice, three in-process `lambda:invoke` tasks that echo, Succeed) started N times, then run to completion with `run_until_idle` on a current-thread runtime (one core). Transitions/s counts the run, not the starts.\n"
    );
    let _ = writeln!(
        s,
        "| store | executions | transitions | starts took | run took | transitions/s |\n|---|---|---|---|---|---|"
    );
    for t in throughput {
        match t {
            Ok(t) => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {:.0} |",
                    t.label,
                    t.executions,
                    t.transitions,
                    fmt_duration(t.start_elapsed),
                    fmt_duration(t.run_elapsed),
                    t.per_second()
                );
                rows.push((
                    format!("{THROUGHPUT_ROW_PREFIX} ({})", t.label),
                    format!("{:.0}/s", t.per_second()),
                    format!("≥ {TRANSITIONS_TARGET:.0}/s"),
                    Some(t.per_second() >= TRANSITIONS_TARGET),
                ));
            }
            Err(e) => {
                let _ = writeln!(s, "| — | not measured: {e} | | | | |");
                rows.push((
                    THROUGHPUT_ROW_PREFIX.into(),
                    format!("not measured: {e}"),
                    "≥ 50000/s".into(),
                    None,
                ));
            }
        }
    }
    (s, rows)
}

/// `report` with its engine-overhead part (paragraph and table, up to the
/// waiting-requests paragraph) replaced by `part`.
pub fn splice_throughput(report: &str, part: &str) -> anyhow::Result<String> {
    let start = report
        .find(THROUGHPUT_START)
        .context("the report has no engine-overhead part")?;
    let end = report[start..]
        .find(THROUGHPUT_END)
        .map(|e| start + e)
        .context("the report's engine-overhead part has no end")?;
    let mut text = report.to_string();
    // One newline here, and the part's end keeps its blank line before
    // the next paragraph.
    text.replace_range(start..end, &format!("{}\n", part.trim_end_matches('\n')));
    Ok(text)
}

fn file_throughput(executions: usize) -> anyhow::Result<Throughput> {
    let dir = tempfile::tempdir()?;
    let db = EngineDb::open(dir.path().join("engine.db")).map_err(|e| anyhow!("{e}"))?;
    throughput("SQLite file (WAL)", db, executions)
}

fn memory_throughput(executions: usize) -> anyhow::Result<Throughput> {
    throughput(
        "SQLite in memory",
        EngineDb::in_memory().map_err(|e| anyhow!("{e}"))?,
        executions,
    )
}

/// Each store measured `rounds` times; the fastest round of each is kept.
pub fn best_throughput(executions: usize, rounds: usize) -> Vec<Result<Throughput, String>> {
    let best = |f: fn(usize) -> anyhow::Result<Throughput>| -> Result<Throughput, String> {
        let mut best: Option<Throughput> = None;
        for _ in 0..rounds {
            let t = f(executions).map_err(|e| format!("{e:#}"))?;
            if best.as_ref().is_none_or(|b| t.run_elapsed < b.run_elapsed) {
                best = Some(t);
            }
        }
        best.ok_or_else(|| "no round ran".to_string())
    };
    eprintln!("jit-bench: engine throughput, best of {rounds} ...");
    vec![best(file_throughput), best(memory_throughput)]
}

/// Runs every workflow measurement. `bin` is the release `jit-local`.
pub fn run(root: &Path, bin: &Path, executions: usize, waiting_requests: usize) -> EngineResults {
    eprintln!("jit-bench: engine throughput ...");
    let throughput = vec![
        file_throughput(executions).map_err(|e| format!("{e:#}")),
        memory_throughput(executions).map_err(|e| format!("{e:#}")),
    ];
    eprintln!("jit-bench: jit-local with {waiting_requests} requests waiting ...");
    let waiting = waiting(bin, root, waiting_requests).map_err(|e| format!("{e:#}"));
    let cost = approved_cost(root).map_err(|e| format!("{e:#}"));
    EngineResults {
        throughput,
        waiting,
        cost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_throughput_replaces_only_the_engine_overhead_part() {
        let report = "## Approval workflow\n\n**Engine overhead.** old text\n\n| old | table |\n\n**10,000 requests waiting for approval.** kept\n";
        let t = Throughput {
            label: "SQLite in memory",
            executions: 10,
            transitions: 100,
            start_elapsed: Duration::from_millis(1),
            run_elapsed: Duration::from_millis(2),
        };
        let (part, rows) = throughput_part(&[Ok(t)]);
        let out = splice_throughput(report, &part).unwrap();
        assert!(out.starts_with("## Approval workflow\n\n**Engine overhead.** A ten-state"));
        assert!(out.contains("| SQLite in memory | 10 | 100 |"), "{out}");
        assert!(!out.contains("old text"));
        assert!(
            out.ends_with("\n\n**10,000 requests waiting for approval.** kept\n"),
            "{out}"
        );
        assert_eq!(rows[0].0, "engine transitions/s (SQLite in memory)");
        assert!(splice_throughput("no such part", &part).is_err());
    }
}
