//! `GET /analytics` over a large trail: `requests` requests spread over 30
//! days (creates through `jit_api::handle`, then the lifecycle's guarded
//! transitions on the store, as the workflow writes them) in a SQLite file,
//! then the whole range read by an admin through `jit_api::handle`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use jit_api::{ApiRequest, handle};
use jit_core::lifecycle::Status;
use jit_core::ports::{Clock, ManualClock, RequestStore};
use jit_core::request::{AuditAction, AuditEvent, Change, Timestamp};
use jit_core::service::Settings;
use jit_core::{AuthSource, Broker, Caller, Catalog, Principal, RequestId};

use crate::engine::SummaryRow;
use crate::stats::{Summary, fmt_duration};

pub const HEADING: &str = "## Analytics (`GET /analytics`, SQLite)";
/// Summary rows of this section start with this.
pub const ROW_PREFIX: &str = "analytics";
/// The goal: one range over 100,000 requests' events within a second.
pub const GOAL: Duration = Duration::from_secs(1);
/// Timed reads of the whole range.
const RUNS: usize = 5;

pub struct AnalyticsRun {
    pub requests: usize,
    pub events: u64,
    pub seed: Duration,
    pub db_bytes: u64,
    pub answer_bytes: usize,
    pub read: Summary,
}

fn at(t0: Timestamp, secs: i64) -> Timestamp {
    t0 + chrono::Duration::seconds(secs)
}

/// Seeds the trail and reads it `RUNS` times.
pub fn run(catalog_text: &str, requests: usize) -> anyhow::Result<AnalyticsRun> {
    if requests == 0 {
        bail!("--analytics-requests must be at least 1");
    }
    let catalog = Catalog::parse(
        &format!("{catalog_text}\nadmin_groups: [secops]\n"),
        "catalog.example.yaml",
    )
    .map_err(|e| anyhow!("catalog: {e}"))?;
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let path = dir.path().join("jit.db");
    let store: Arc<dyn RequestStore> =
        Arc::new(jit_store_sqlite::SqliteStore::open(&path).context("opening SQLite")?);
    let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
    let clock = Arc::new(ManualClock::new(t0));
    let broker = Broker {
        store: store.clone(),
        workflow: Arc::new(crate::api::CountingWorkflow::default()),
        catalog: Arc::new(catalog),
        clock: clock.clone(),
        settings: Settings { demo_mode: true },
        grants: None,
        policy: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let span = 30 * 86_400_i64;
    let step = (span / requests as i64).max(1);

    let started = Instant::now();
    rt.block_on(seed(&broker, &clock, &store, t0, step, requests))?;
    let seed_took = started.elapsed();

    let admin = Caller::person(
        Principal::parse("sec@example.com").map_err(|e| anyhow!("{}", e.0))?,
        AuthSource::Jwt,
        vec!["secops".to_string()],
    );
    let query = format!(
        "from={}&to={}",
        t0.format("%Y-%m-%d"),
        at(t0, span + 2 * 86_400).format("%Y-%m-%d")
    );
    let mut times = Vec::with_capacity(RUNS);
    let mut answer = String::new();
    for _ in 0..RUNS {
        let req = ApiRequest {
            method: Method::GET,
            path: "/analytics".into(),
            query: Some(query.clone()),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        let t = Instant::now();
        let resp = rt.block_on(handle(&broker, &admin, req));
        times.push(t.elapsed());
        if resp.status() != StatusCode::OK {
            bail!("GET /analytics answered {}: {}", resp.status(), resp.body());
        }
        answer = resp.into_body();
    }
    let v: serde_json::Value = serde_json::from_str(&answer).context("the answer")?;
    let created = v["patterns"]["requestsByEntitlement"]["total"]
        .as_u64()
        .unwrap_or(0);
    if created != requests as u64 {
        bail!("the report counts {created} requests, {requests} were made");
    }
    Ok(AnalyticsRun {
        requests,
        events: v["eventsRead"].as_u64().unwrap_or(0),
        seed: seed_took,
        db_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(path.with_extension("db-wal"))
                .map(|m| m.len())
                .unwrap_or(0),
        answer_bytes: answer.len(),
        read: Summary::of(&times).context("no samples")?,
    })
}

/// The mix, by request number: 6 in 10 auto-approved, 2 approved by a
/// lead after 45 s, 1 denied, 1 timed out; granted ones expire; half of the
/// grants fetch credentials; one ineligible attempt per 50 requests.
async fn seed(
    broker: &Broker,
    clock: &ManualClock,
    store: &Arc<dyn RequestStore>,
    t0: Timestamp,
    step: i64,
    requests: usize,
) -> anyhow::Result<()> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = Bytes::from_static(
        br#"{"entitlement":"OnCallReadOnly","duration":"30m","justification":"bench"}"#,
    );
    for i in 0..requests {
        let t = at(t0, i as i64 * step);
        clock.set(t);
        let who = Principal::parse(format!("user{}@example.com", i % 200))
            .map_err(|e| anyhow!("{}", e.0))?;
        let caller = Caller::person(who.clone(), AuthSource::Jwt, vec!["sre".into()]);
        let resp = handle(
            broker,
            &caller,
            ApiRequest {
                method: Method::POST,
                path: "/requests".into(),
                query: None,
                headers: headers.clone(),
                body: body.clone(),
            },
        )
        .await;
        if resp.status() != StatusCode::CREATED {
            bail!("POST /requests answered {}: {}", resp.status(), resp.body());
        }
        let v: serde_json::Value = serde_json::from_str(resp.body())?;
        let id = RequestId::parse(v["requestId"].as_str().unwrap_or_default())
            .map_err(|_| anyhow!("no request id"))?;
        let mut r = store
            .get(&id)
            .await?
            .ok_or_else(|| anyhow!("{id} not stored"))?;
        let system = |secs: i64| Change {
            actor: "system:workflow".into(),
            at: at(t, secs),
            reason: None,
            source: "workflow",
        };
        let lead = |secs: i64| Change {
            actor: "lead@example.com".into(),
            at: at(t, secs),
            reason: Some("ok".into()),
            source: "api",
        };
        let kind = i % 10;
        let mut path: Vec<(Status, Change)> = vec![(Status::Validating, system(1))];
        match kind {
            0..=5 => path.extend([
                (Status::Approved, system(2)),
                (Status::Granted, system(3)),
                (Status::Expired, system(3 + 1800)),
            ]),
            6 | 7 => path.extend([
                (Status::ApprovalPending, system(2)),
                (Status::Approved, lead(45)),
                (Status::Granted, system(46)),
                (Status::Expired, system(46 + 1800)),
            ]),
            8 => path.extend([
                (Status::ApprovalPending, system(2)),
                (Status::Denied, lead(300)),
            ]),
            _ => path.extend([
                (Status::ApprovalPending, system(2)),
                (Status::ApprovalTimedOut, system(3600)),
            ]),
        }
        for (to, change) in path {
            let (next, ev) = r.transition(to, &change)?;
            store.transition(&r, &next, &ev).await?;
            if to == Status::Granted && i % 2 == 0 {
                store
                    .append_audit(&AuditEvent::new(
                        &id,
                        at(change.at, 5),
                        who.to_string(),
                        AuditAction::CredentialsIssued,
                        None,
                        None,
                        Some("access key ASIA…".into()),
                        "api",
                    ))
                    .await?;
            }
            r = next;
        }
        if i % 50 == 0 {
            let mut e = AuditEvent::new(
                &RequestId::generate(t),
                at(t, 7),
                who.to_string(),
                AuditAction::Rejected,
                None,
                None,
                Some("not eligible".into()),
                "api",
            );
            e.entitlement = Some("JIT-ElevatedAdminRole".into());
            e.code = Some("not_eligible".into());
            store.append_audit(&e).await?;
        }
    }
    let _ = clock.now();
    Ok(())
}

/// The section and its Summary row.
pub fn markdown(run: &Result<AnalyticsRun, String>) -> (String, Vec<SummaryRow>) {
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    match run {
        Err(e) => {
            let _ = writeln!(s, "**ERROR**: {e}\n");
            (
                s,
                vec![(
                    format!("{ROW_PREFIX}: GET /analytics over the trail"),
                    e.clone(),
                    format!("≤ {}", fmt_duration(GOAL)),
                    None,
                )],
            )
        }
        Ok(r) => {
            let _ = writeln!(
                s,
                "{} requests over 30 days ({} audit events: created with its snapshot, every transition with its changes, credentials for half of the grants, an ineligible attempt per 50 requests) in one SQLite file (WAL, {:.1} MB), seeded in {:.1} s through `jit_api::handle` and the store's guarded transitions. Then `GET /analytics` for the whole range, as an admin, through `jit_api::handle` on a current-thread runtime, {RUNS} times: the events are read through the `audit_events_by_time` index {} at a time and folded by `jit_core::analytics`; first-time use reads each (person, entitlement) pair's earlier requests (200 people here).\n",
                r.requests,
                r.events,
                r.db_bytes as f64 / 1e6,
                r.seed.as_secs_f64(),
                jit_core::ports::MAX_EVENT_PAGE,
            );
            let _ = writeln!(
                s,
                "| measurement | min | p50 | max | answer |\n|---|---|---|---|---|\n| `GET /analytics` | {} | {} | {} | {} bytes |\n",
                fmt_duration(r.read.min),
                fmt_duration(r.read.p50),
                fmt_duration(r.read.max),
                r.answer_bytes
            );
            let pass = r.read.p50 <= GOAL;
            (
                s,
                vec![(
                    format!(
                        "{ROW_PREFIX}: GET /analytics over {} requests ({} events), p50",
                        r.requests, r.events
                    ),
                    fmt_duration(r.read.p50),
                    format!("≤ {}", fmt_duration(GOAL)),
                    Some(pass),
                )],
            )
        }
    }
}
