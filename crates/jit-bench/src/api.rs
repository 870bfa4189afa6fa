//! API throughput: create + get pairs through `jit_api::handle`, the handler
//! both front doors use, on the real SQLite store, sequentially on a
//! current-thread runtime (what the Lambda runs on).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use jit_api::{ApiRequest, handle};
use jit_core::ports::{RequestStore, SystemClock, Workflow, WorkflowError, WorkflowInput};
use jit_core::request::TaskToken;
use jit_core::service::Settings;
use jit_core::{AuthSource, Broker, Caller, Catalog, Principal, RequestId};

use crate::stats::Summary;

/// Counts workflow starts and does nothing else: what is measured is the
/// API and the store, not a workflow engine.
#[derive(Default)]
pub(crate) struct CountingWorkflow {
    started: AtomicUsize,
}

#[async_trait]
impl Workflow for CountingWorkflow {
    async fn start(&self, _input: &WorkflowInput) -> Result<(), WorkflowError> {
        self.started.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn stop(&self, _id: &RequestId, _reason: &str) -> Result<(), WorkflowError> {
        Ok(())
    }
    async fn send_task_success(
        &self,
        _token: &TaskToken,
        _output: &serde_json::Value,
    ) -> Result<(), WorkflowError> {
        Ok(())
    }
    async fn send_task_failure(
        &self,
        _token: &TaskToken,
        _error: &str,
        _cause: &str,
    ) -> Result<(), WorkflowError> {
        Ok(())
    }
    async fn history(&self, _id: &RequestId) -> Result<Vec<serde_json::Value>, WorkflowError> {
        Ok(vec![])
    }
}

/// An on-call SRE asking for the auto-approved read-only role: the common
/// path, valid under the sample catalog.
const CALLER: &str = "sre@example.com";
const CREATE_BODY: &str = r#"{"entitlement":"OnCallReadOnly","duration":"30m","justification":"bench: investigating INC-1234"}"#;

/// One store's results.
#[derive(Debug, Clone)]
pub struct ApiRun {
    pub label: &'static str,
    pub pairs: usize,
    /// Wall time of the measured loop (both calls of every pair).
    pub elapsed: Duration,
    pub create: Summary,
    pub get: Summary,
}

/// Runs `warmup` then `pairs` create+get pairs against `store`.
pub fn run(
    label: &'static str,
    store: Arc<dyn RequestStore>,
    catalog: Catalog,
    pairs: usize,
    warmup: usize,
) -> anyhow::Result<ApiRun> {
    if pairs == 0 {
        bail!("--iterations must be at least 1");
    }
    let workflow = Arc::new(CountingWorkflow::default());
    let broker = Broker {
        store,
        workflow: workflow.clone(),
        catalog: Arc::new(catalog),
        clock: Arc::new(SystemClock),
        settings: Settings { demo_mode: true },
        grants: None,
        policy: None,
    };
    let caller = Caller::person(
        Principal::parse(CALLER).map_err(|e| anyhow!("principal: {}", e.0))?,
        AuthSource::Jwt,
        vec!["sre".to_string()],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let run = rt.block_on(async {
        for _ in 0..warmup {
            pair(&broker, &caller).await?;
        }
        let mut create = Vec::with_capacity(pairs);
        let mut get = Vec::with_capacity(pairs);
        let started = Instant::now();
        for _ in 0..pairs {
            let (c, g) = pair(&broker, &caller).await?;
            create.push(c);
            get.push(g);
        }
        let elapsed = started.elapsed();
        anyhow::Ok(ApiRun {
            label,
            pairs,
            elapsed,
            create: Summary::of(&create).context("no samples")?,
            get: Summary::of(&get).context("no samples")?,
        })
    })?;
    let starts = workflow.started.load(Ordering::Relaxed);
    if starts != warmup + pairs {
        bail!(
            "{label}: {starts} workflow starts for {} creates",
            warmup + pairs
        );
    }
    Ok(run)
}

/// Whether a SQLite database file is in WAL mode, from its header: bytes
/// 18 and 19 (file format write/read versions) are 2 for WAL, 1 for the
/// rollback journal. The header keeps saying so after the file is closed.
pub fn sqlite_header_says_wal(header: &[u8]) -> anyhow::Result<bool> {
    if header.get(..16) != Some(b"SQLite format 3\0".as_slice()) {
        bail!("not a SQLite 3 database file");
    }
    match (header.get(18), header.get(19)) {
        (Some(2), Some(2)) => Ok(true),
        (Some(_), Some(_)) => Ok(false),
        _ => bail!("SQLite header cut short"),
    }
}

/// One create and one get of what was created, each timed on its own.
/// Anything but 201 then 200 stops the run: a fast error is not a result.
async fn pair(broker: &Broker, caller: &Caller) -> anyhow::Result<(Duration, Duration)> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let create = ApiRequest {
        method: Method::POST,
        path: "/requests".into(),
        query: None,
        headers,
        body: Bytes::from_static(CREATE_BODY.as_bytes()),
    };
    let t = Instant::now();
    let resp = handle(broker, caller, create).await;
    let create_took = t.elapsed();
    if resp.status() != StatusCode::CREATED {
        bail!("POST /requests answered {}: {}", resp.status(), resp.body());
    }
    let location = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("POST /requests answered 201 without a Location")?
        .to_string();

    let get = ApiRequest {
        method: Method::GET,
        path: location.clone(),
        query: None,
        headers: HeaderMap::new(),
        body: Bytes::new(),
    };
    let t = Instant::now();
    let resp = handle(broker, caller, get).await;
    let get_took = t.elapsed();
    if resp.status() != StatusCode::OK {
        bail!("GET {location} answered {}: {}", resp.status(), resp.body());
    }
    Ok((create_took, get_took))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(write: u8, read: u8) -> Vec<u8> {
        let mut h = b"SQLite format 3\0".to_vec();
        h.extend_from_slice(&[0x10, 0x00, write, read]);
        h
    }

    #[test]
    fn reads_the_journal_mode_from_the_header() {
        assert!(sqlite_header_says_wal(&header(2, 2)).unwrap());
        assert!(!sqlite_header_says_wal(&header(1, 1)).unwrap());
        assert!(sqlite_header_says_wal(b"PK\x03\x04 not sqlite at all").is_err());
        assert!(sqlite_header_says_wal(&header(2, 2)[..18]).is_err());
    }
}
