//! Create load against a release `jit-local`: how many creates a second the
//! local engine keeps pace with, and what backpressure does past that.
//!
//! A closed loop of C clients on 127.0.0.1 (one keep-alive HTTP/1.1
//! connection each, hyper, on one thread of this process), each sending
//! `POST /requests` for the auto-approved `OnCallReadOnly` with local
//! grants, so every accepted create makes the engine run Validate → Grant →
//! RecordGranted → WaitForExpiry. Clients honour `Retry-After` on a `503`,
//! as a well-behaved client does. Two runs: *saturation* (as fast as the
//! server answers) and *paced* at the goal rate. `GET /local/engine` is
//! sampled every 100 ms for the backlog; after the load, the time until the
//! backlog is 0 is the drain, and the last accepted request must then read
//! GRANTED.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::engine::{KEY, SummaryRow, spawn_local};
use crate::stats::fmt_duration;

/// The issue's goal: creates a second with the engine keeping pace.
pub const CREATES_TARGET: f64 = 5_000.0;
/// The section's heading, also how a section-only run finds it.
pub const HEADING: &str = "## Create load (`jit-local`, loopback)";
/// Summary rows of this section start with this.
pub const ROW_PREFIX: &str = "create load";
/// `--max-backlog` for the runs: `jit-local`'s default.
const MAX_BACKLOG: usize = 10_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub label: &'static str,
    pub clients: usize,
    pub duration: Duration,
    /// Total creates a second to offer; `None`: as fast as answered.
    pub pace: Option<f64>,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct LoadRun {
    pub spec: LoadSpec,
    pub elapsed: Duration,
    pub sent: u64,
    pub created: u64,
    pub refused: u64,
    pub other: u64,
    pub peak_backlog: usize,
    pub backlog_end: usize,
    pub drain: Duration,
}

impl LoadRun {
    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Creates a second the engine finished: accepted creates over the
    /// load and its drain.
    pub fn engine_pace(&self) -> f64 {
        self.created as f64 / (self.elapsed + self.drain).as_secs_f64().max(1e-9)
    }

    /// Kept pace: nothing refused, and what was left at the end drained
    /// within a second.
    pub fn kept_pace(&self) -> bool {
        self.refused == 0 && self.other == 0 && self.drain <= Duration::from_secs(1)
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    created: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
    peak: AtomicUsize,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request; (status, `Retry-After` seconds, JSON body).
async fn send(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Option<u64>, Value)> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let retry = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = resp.into_body().collect().await?.to_bytes();
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((status, retry, v))
}

fn get(addr: SocketAddr, path: &str, user: &str) -> anyhow::Result<Request<Full<Bytes>>> {
    Ok(Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .header("x-api-key", KEY)
        .header("x-jit-user", user)
        .body(Full::new(Bytes::new()))?)
}

async fn backlog(sender: &mut Sender, addr: SocketAddr) -> anyhow::Result<usize> {
    let (status, _, v) = send(sender, get(addr, "/local/engine", "ops@example.com")?).await?;
    if status != StatusCode::OK {
        bail!("GET /local/engine answered {status}: {v}");
    }
    v["backlog"]
        .as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| anyhow!("no backlog in {v}"))
}

/// One client's closed loop until `until`; returns its last accepted
/// request (user, id).
async fn client(
    addr: SocketAddr,
    n: usize,
    until: Instant,
    interval: Option<Duration>,
    c: Arc<Counters>,
) -> anyhow::Result<Option<(String, String)>> {
    let mut sender = connect(addr).await?;
    let user = format!("load{n}@example.com");
    let mut last = None;
    let mut next = tokio::time::Instant::now();
    let mut i = 0u64;
    while Instant::now() < until {
        if let Some(iv) = interval {
            tokio::time::sleep_until(next).await;
            next += iv;
        }
        i += 1;
        let body = format!(
            r#"{{"entitlement":"OnCallReadOnly","duration":"30m","justification":"load {n}-{i}"}}"#
        );
        let req = Request::post("/requests")
            .header(http::header::HOST, addr.to_string())
            .header("x-api-key", KEY)
            .header("x-jit-user", &user)
            .header("x-jit-groups", "sre")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        c.sent.fetch_add(1, Ordering::Relaxed);
        let (status, retry, v) = send(&mut sender, req).await?;
        match status {
            StatusCode::CREATED => {
                c.created.fetch_add(1, Ordering::Relaxed);
                if let Some(id) = v["requestId"].as_str() {
                    last = Some((user.clone(), id.to_string()));
                }
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                c.refused.fetch_add(1, Ordering::Relaxed);
                let wait = Duration::from_secs(retry.unwrap_or(1));
                let left = until.saturating_duration_since(Instant::now());
                tokio::time::sleep(wait.min(left)).await;
                next = tokio::time::Instant::now();
            }
            _ => {
                c.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(last)
}

async fn load(addr: SocketAddr, spec: &LoadSpec) -> anyhow::Result<LoadRun> {
    let c = Arc::new(Counters::default());
    let t0 = Instant::now();
    let until = t0 + spec.duration;
    let interval = spec
        .pace
        .map(|rate| Duration::from_secs_f64(spec.clients as f64 / rate));
    let mut sampler = connect(addr).await?;
    let sampling = {
        let c = c.clone();
        tokio::spawn(async move {
            while Instant::now() < until {
                if let Ok(b) = backlog(&mut sampler, addr).await {
                    c.peak.fetch_max(b, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let clients: Vec<_> = (0..spec.clients)
        .map(|n| tokio::spawn(client(addr, n, until, interval, c.clone())))
        .collect();
    let mut last: Option<(String, String)> = None;
    for h in clients {
        if let Some(l) = h.await.context("a client panicked")?? {
            // Request ids are ULIDs: the greatest was created last.
            if last.as_ref().is_none_or(|(_, id)| l.1 > *id) {
                last = Some(l);
            }
        }
    }
    let elapsed = t0.elapsed();
    let _ = sampling.await;
    let mut probe = connect(addr).await?;
    let backlog_end = backlog(&mut probe, addr).await?;
    let drained_by = Instant::now() + Duration::from_secs(300);
    loop {
        if backlog(&mut probe, addr).await? == 0 {
            break;
        }
        if Instant::now() > drained_by {
            bail!("the backlog did not drain within 300 s of the load");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = t0.elapsed() - elapsed;
    let (user, id) = last.ok_or_else(|| anyhow!("no create was accepted"))?;
    let (status, _, v) = send(&mut probe, get(addr, &format!("/requests/{id}"), &user)?).await?;
    if status != StatusCode::OK || v["status"] != "GRANTED" {
        bail!("the last accepted request reads {status} {v} after the drain, not GRANTED");
    }
    Ok(LoadRun {
        spec: spec.clone(),
        elapsed,
        sent: c.sent.load(Ordering::Relaxed),
        created: c.created.load(Ordering::Relaxed),
        refused: c.refused.load(Ordering::Relaxed),
        other: c.other.load(Ordering::Relaxed),
        peak_backlog: c.peak.load(Ordering::Relaxed).max(backlog_end),
        backlog_end,
        drain,
    })
}

/// Runs each spec against a fresh release `jit-local` (its own data dir).
pub fn run(bin: &Path, root: &Path, specs: &[LoadSpec]) -> Vec<Result<LoadRun, String>> {
    specs
        .iter()
        .map(|spec| {
            eprintln!(
                "jit-bench: create load, {} ({} clients, {} s) ...",
                spec.label,
                spec.clients,
                spec.duration.as_secs()
            );
            one(bin, root, spec).map_err(|e| format!("{e:#}"))
        })
        .collect()
}

fn one(bin: &Path, root: &Path, spec: &LoadSpec) -> anyhow::Result<LoadRun> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let max = MAX_BACKLOG.to_string();
    let (mut child, addr, _, _) = spawn_local(bin, root, &data, &["--max-backlog", &max])?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(load(addr, spec));
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The section for `docs/BENCHMARKS.md` and its summary rows.
pub fn markdown(runs: &[Result<LoadRun, String>]) -> (String, Vec<SummaryRow>) {
    let mut s = String::new();
    let mut rows = vec![];
    let _ = writeln!(s, "{HEADING}\n");
    let _ = writeln!(
        s,
        "The release `jit-local` (local grants, `--max-backlog {MAX_BACKLOG}`) on a fresh data dir, loaded by `jit-bench` itself on 127.0.0.1: a closed loop of C clients, one keep-alive HTTP/1.1 connection each (hyper, all on one thread of the bench, so the bench and `jit-local` share the machine's cores), each sending `POST /requests` for the auto-approved `OnCallReadOnly`; every accepted create makes the engine run Validate → Grant → RecordGranted → WaitForExpiry, each task after its schedule is committed. Clients honour `Retry-After` on a `503`. *Saturation*: as fast as answered; *paced*: the goal rate offered in total. The backlog (`GET /local/engine`) is sampled every 100 ms; *drain* is the time from the end of the load until it is 0 (then the last accepted request must read GRANTED). *Engine pace* = accepted ÷ (load + drain). *Kept pace*: no create refused and the drain within 1 s. What limits it (instruction profiles of `jit-local` under this load) is in `docs/ARCHITECTURE.md`, `crates/jit-engine`.\n"
    );
    let _ = writeln!(
        s,
        "| run | clients | load | offered/s | accepted (201) | accepted/s | refused (503) | other | peak backlog | backlog at end | drain | engine pace/s | kept pace |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in runs {
        match r {
            Ok(r) => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {} |",
                    r.spec.label,
                    r.spec.clients,
                    fmt_duration(r.elapsed),
                    r.rate(r.sent),
                    r.created,
                    r.rate(r.created),
                    r.refused,
                    r.other,
                    r.peak_backlog,
                    r.backlog_end,
                    fmt_duration(r.drain),
                    r.engine_pace(),
                    if r.kept_pace() { "yes" } else { "no" }
                );
                rows.push((
                    format!(
                        "{ROW_PREFIX} ({}): accepted creates/s, engine kept pace",
                        r.spec.label
                    ),
                    format!(
                        "{:.0}/s accepted, {} refused, drain {}, engine pace {:.0}/s",
                        r.rate(r.created),
                        r.refused,
                        fmt_duration(r.drain),
                        r.engine_pace()
                    ),
                    format!("≥ {CREATES_TARGET:.0}/s, kept pace"),
                    Some(r.kept_pace() && r.rate(r.created) >= CREATES_TARGET),
                ));
            }
            Err(e) => {
                let _ = writeln!(s, "| not measured: {e} | | | | | | | | | | | | |");
                rows.push((
                    format!("{ROW_PREFIX}: accepted creates/s"),
                    format!("not measured: {e}"),
                    format!("≥ {CREATES_TARGET:.0}/s, kept pace"),
                    None,
                ));
            }
        }
    }
    s.push('\n');
    (s, rows)
}
