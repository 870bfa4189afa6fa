//! Instant credentials, measured: one `POST /requests` with `"wait": true`
//! against a release `jit-local` on 127.0.0.1 — request → validated →
//! granted (the instant workflow on the engine) → credentials vended — and
//! the time until its answer, which must be `201`, `GRANTED` and carry a
//! `credential_process` document (`credentials.Version == 1`, an access key
//! and a secret): usable credentials in one call.
//!
//! One client, one keep-alive HTTP/1.1 connection (hyper), requests one
//! after another, each for the auto-approved `OnCallReadOnly` as an `sre`
//! (a fresh requester per request, so nothing is an idempotent replay).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::engine::{KEY, SummaryRow, spawn_local};
use crate::stats::{Summary, fmt_duration};

/// The issue's goal: p50 of request → usable credentials on loopback.
pub const P50_TARGET: Duration = Duration::from_millis(5);
/// The section's heading, also how a section-only run finds it.
pub const HEADING: &str = "## Instant credentials (`jit-local`, loopback)";
/// Summary rows of this section start with this.
pub const ROW_PREFIX: &str = "request → credentials";

/// What one run measured.
#[derive(Debug, Clone)]
pub struct InstantRun {
    pub warmup: usize,
    pub latency: Summary,
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

/// One waiting create; checks the answer is usable credentials.
async fn one(sender: &mut Sender, addr: SocketAddr, i: usize) -> anyhow::Result<Duration> {
    let body = format!(
        r#"{{"entitlement":"OnCallReadOnly","duration":"15m","justification":"bench {i}","wait":true}}"#
    );
    let req = Request::post("/requests")
        .header(http::header::HOST, addr.to_string())
        .header("x-api-key", KEY)
        .header("x-jit-user", format!("sre{i}@example.com"))
        .header("x-jit-groups", "sre")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let t0 = Instant::now();
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let took = t0.elapsed();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let c = &v["credentials"];
    let usable = status == StatusCode::CREATED
        && v["status"] == "GRANTED"
        && c["Version"] == 1
        && c["AccessKeyId"].as_str().is_some_and(|s| !s.is_empty())
        && c["SecretAccessKey"].as_str().is_some_and(|s| !s.is_empty())
        && c["SessionToken"].as_str().is_some_and(|s| !s.is_empty());
    if !usable {
        // Never print the body: it may hold a secret.
        bail!(
            "request {i}: answered {status} {} without usable credentials",
            v["status"]
        );
    }
    Ok(took)
}

async fn measure(addr: SocketAddr, warmup: usize, n: usize) -> anyhow::Result<InstantRun> {
    let mut sender = connect(addr).await?;
    for i in 0..warmup {
        one(&mut sender, addr, i).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in warmup..warmup + n {
        samples.push(one(&mut sender, addr, i).await?);
    }
    Ok(InstantRun {
        warmup,
        latency: Summary::of(&samples).ok_or_else(|| anyhow!("no samples"))?,
    })
}

/// Starts the release `jit-local` on a fresh data dir and measures `n`
/// waiting creates after `warmup` unmeasured ones.
pub fn run(bin: &Path, root: &Path, warmup: usize, n: usize) -> Result<InstantRun, String> {
    let go = || -> anyhow::Result<InstantRun> {
        let dir = tempfile::tempdir()?;
        let (mut child, addr, _, _) = spawn_local(bin, root, &dir.path().join("data"), &[])?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let result = rt.block_on(measure(addr, warmup, n));
        let _ = child.kill();
        let _ = child.wait();
        result
    };
    go().map_err(|e| format!("{e:#}"))
}

/// The section for `docs/BENCHMARKS.md` and its summary row.
pub fn markdown(run: &Result<InstantRun, String>) -> (String, Vec<SummaryRow>) {
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    let _ = writeln!(
        s,
        "The release `jit-local` (local grants, the example catalog) on a fresh data dir; `jit-bench` sends `POST /requests` with `\"wait\": true` for the auto-approved `OnCallReadOnly` as an `sre`, one after another on one keep-alive HTTP/1.1 connection on 127.0.0.1, and times each call until its whole answer is read. Every answer must be `201`, `GRANTED`, with `credentials` holding a `credential_process` document (Version 1, key, secret, token): the create, the instant workflow on the engine (Validate → Grant → RecordGranted, `state-machine/instant.asl.json`), the start of the Standard workflow and the credential vending (local issuer), in one call. A fresh requester per call, so none is an idempotent replay.\n"
    );
    let row = match run {
        Ok(r) => {
            let l = &r.latency;
            let _ = writeln!(
                s,
                "| calls | warm-up | min | p50 | p99 | max | mean |\n|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} | {} |\n",
                l.n,
                r.warmup,
                fmt_duration(l.min),
                fmt_duration(l.p50),
                fmt_duration(l.p99),
                fmt_duration(l.max),
                fmt_duration(l.mean),
            );
            (
                format!("{ROW_PREFIX} in one call, p50 (`jit-local`, loopback)"),
                fmt_duration(l.p50),
                format!("≤ {}", fmt_duration(P50_TARGET)),
                Some(l.p50 <= P50_TARGET),
            )
        }
        Err(e) => {
            let _ = writeln!(s, "Not measured: {e}\n");
            (
                format!("{ROW_PREFIX} in one call, p50 (`jit-local`, loopback)"),
                "not measured".into(),
                format!("≤ {}", fmt_duration(P50_TARGET)),
                None,
            )
        }
    };
    (s, vec![row])
}
