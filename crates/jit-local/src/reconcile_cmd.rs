//! `jit-local reconcile [--dry-run] [--output json]`: the reconciler
//! (`jit_core::reconcile`) by hand, on a data directory.
//!
//! Safe beside a running server: if the server holds the data directory's
//! lock (see `lock`), the command asks it to reconcile — `POST
//! /local/reconcile` on the address it wrote into the lock file, with the
//! API key from `<data-dir>/api-key` — so only one process ever writes the
//! local IAM files. Otherwise it takes the lock itself (a server started
//! meanwhile refuses to start) and reconciles in process.
//!
//! Exit codes: 0 nothing to fix, or everything fixed; 1 something is left
//! (drift a dry run found, a repair that failed, a foreign inline policy
//! flagged for a person); 2 the reconcile could not run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jit_core::ledger::{GrantIam, IamInventory};
use jit_core::ports::{Clock, SystemClock};
use jit_core::reconcile::{Finding, GRACE_SECS, ReconcileReport, Reconciler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::lock::{DataDirLock, LockError, read_info};
use crate::{GrantsMode, iam_state::LocalInventory};

/// The route the server answers a hand reconcile on (API key required).
pub const RECONCILE_PATH: &str = "/local/reconcile";

/// How long the command waits for the server's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(120);

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct ReconcileArgs {
    #[arg(long, env = "JIT_DATA_DIR", default_value = crate::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The catalog (its grantable roles are checked for foreign inline
    /// policies). Used when no server runs; a running server uses its own.
    #[arg(
        long,
        env = "JIT_CATALOG",
        default_value = "config/catalog.example.yaml"
    )]
    pub catalog: PathBuf,
    /// Report what would be done, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Leave alone anything changed less than this many seconds ago (a
    /// grant or revoke in progress).
    #[arg(long, default_value_t = GRACE_SECS, value_parser = clap::value_parser!(i64).range(0..=86_400))]
    pub grace_secs: i64,
    /// Where IAM is when no server runs: as the data directory was last
    /// served (`--grants`), which is checked.
    #[arg(long, env = "JIT_GRANTS", value_enum, default_value = "local")]
    pub grants: GrantsMode,
}

/// Runs it; returns the exit code.
pub async fn run(args: ReconcileArgs) -> i32 {
    let report = match DataDirLock::try_acquire(&args.data_dir) {
        Ok(lock) => in_process(&args, lock).await,
        Err(LockError::Held { .. }) => ask_server(&args).await,
        Err(e) => Err(e.to_string()),
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jit-local reconcile: {e}");
            return 2;
        }
    };
    let text = match args.output {
        Output::Json => serde_json::to_string_pretty(&report).expect("plain data serialises"),
        Output::Text => render(&report),
    };
    crate::print_out(&text);
    if report.needs_attention() { 1 } else { 0 }
}

/// No server: the lock is ours while this runs.
async fn in_process(args: &ReconcileArgs, _lock: DataDirLock) -> Result<ReconcileReport, String> {
    let last = read_info(&args.data_dir).map(|i| i.grants);
    let wanted = args.grants.label();
    if let Some(last) = last.filter(|l| l != wanted) {
        return Err(format!(
            "{} was last served with --grants {last}; reconcile it with --grants {last}",
            args.data_dir.display()
        ));
    }
    let db = args.data_dir.join(crate::STORE_FILE);
    if !db.exists() {
        return Err(format!(
            "{} has no {} (no jit-local has run on it)",
            args.data_dir.display(),
            crate::STORE_FILE
        ));
    }
    let catalog = crate::load_catalog(&args.catalog).map_err(|e| e.to_string())?;
    let store = Arc::new(
        jit_store_sqlite::SqliteStore::open(&db)
            .map_err(|e| format!("opening {}: {e}", db.display()))?,
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let iam = match args.grants {
        GrantsMode::Local => {
            let attacher = Arc::new(
                crate::grants::LocalAttacher::open(args.data_dir.join(crate::ATTACHMENTS_FILE))
                    .map_err(|e| format!("reading {}: {e}", crate::ATTACHMENTS_FILE))?,
            );
            let roles = Arc::new(
                crate::access::LocalRoleRevoker::open(
                    args.data_dir.join(crate::ROLE_POLICIES_FILE),
                )
                .map_err(|e| format!("reading {}: {e}", crate::ROLE_POLICIES_FILE))?,
            );
            let inventory: Arc<dyn IamInventory> = Arc::new(LocalInventory {
                attacher: attacher.clone(),
                roles: roles.clone(),
            });
            let iam = GrantIam::new(attacher, roles, store.clone(), clock.clone())
                .with_inventory(inventory);
            // The catalog's fake Identity Center, as the server uses it.
            match crate::local_identity_center(&catalog, &args.data_dir)
                .map_err(|e| e.to_string())?
            {
                Some(ports) => iam.with_assignments(ports.assignments),
                None => iam,
            }
        }
        GrantsMode::Aws => {
            let sdk = jit_aws::sdk::load_config().await;
            let iam = GrantIam::new(
                Arc::new(jit_aws::IamAttacher::from_config(&sdk)),
                Arc::new(jit_aws::IamRoleRevoker::from_config(&sdk)),
                store.clone(),
                clock.clone(),
            )
            .with_inventory(Arc::new(jit_aws::IamLister::from_config(&sdk)));
            match catalog.identity_center() {
                Some(idc) => iam.with_assignments(Arc::new(
                    jit_aws::identity_center::IdentityCenterClient::new(&sdk, idc),
                )),
                None => iam,
            }
        }
    };
    Reconciler {
        store: store.as_ref(),
        iam: &iam,
        catalog: &catalog,
        clock: clock.as_ref(),
        grace: chrono::Duration::seconds(args.grace_secs),
    }
    .run(args.dry_run)
    .await
    .map_err(|e| e.to_string())
}

/// The server holds the lock: it reconciles, we print.
async fn ask_server(args: &ReconcileArgs) -> Result<ReconcileReport, String> {
    let info = read_info(&args.data_dir).ok_or_else(|| {
        format!(
            "a jit-local holds {} but has not said where it listens; try again in a moment",
            args.data_dir.display()
        )
    })?;
    let mut addr: SocketAddr = info
        .addr
        .parse()
        .map_err(|_| format!("the lock file names `{}`, not an address", info.addr))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let key_file = args.data_dir.join("api-key");
    let key = std::fs::read_to_string(&key_file)
        .map_err(|e| format!("reading the server's API key {}: {e}", key_file.display()))?;
    let path = format!(
        "{RECONCILE_PATH}?dryRun={}&graceSecs={}",
        args.dry_run, args.grace_secs
    );
    let (status, body) = tokio::time::timeout(ANSWER_WITHIN, post(addr, key.trim(), &path))
        .await
        .map_err(|_| format!("the server at {addr} did not answer within {ANSWER_WITHIN:?}"))?
        .map_err(|e| format!("asking the server (pid {}) at {addr}: {e}", info.pid))?;
    if status != 200 {
        return Err(format!("the server at {addr} answered {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("the server's answer is not a report: {e}"))
}

/// One HTTP/1.1 POST on loopback, read to the end.
async fn post(addr: SocketAddr, key: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{}: {key}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        crate::API_KEY_HEADER
    );
    s.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let body = text.split_once("\r\n\r\n").ok_or_else(bad)?.1.to_string();
    Ok((status, body))
}

/// The report for people.
pub fn render(r: &ReconcileReport) -> String {
    let g = &r.grants;
    let mut out = format!(
        "reconcile at {}{}: {} checked, IAM {}\n",
        r.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        if r.dry_run { " (dry run)" } else { "" },
        g.checked,
        if g.iam_listed {
            "listed"
        } else {
            "not listed (ledger only)"
        }
    );
    let mut line = |tag: &str, f: &Finding| {
        let state = match (tag, f.done) {
            ("FLAG" | "IN-FLIGHT" | "FAILED", _) => "",
            (_, true) => " [done]",
            (_, false) => " [not done]",
        };
        let request = f
            .request_id
            .as_ref()
            .map(|id| format!(" (request {id})"))
            .unwrap_or_default();
        out += &format!(
            "{tag:<9} {} {} on {}{request}: {}{state}\n",
            f.kind.describe(),
            f.policy,
            f.target,
            f.reason
        );
    };
    for f in &g.removed {
        line("REMOVE", f);
    }
    for f in &g.finished {
        line("FINISH", f);
    }
    for f in &g.flagged {
        line("FLAG", f);
    }
    for f in &g.failed {
        line("FAILED", f);
    }
    for f in &g.in_flight {
        line("IN-FLIGHT", f);
    }
    out += if r.needs_attention() {
        "something is left to fix (exit 1)"
    } else if g.removed.is_empty() && g.finished.is_empty() {
        "nothing to fix"
    } else {
        "fixed"
    };
    out
}

/// Whether `path` is the hand-reconcile route.
pub fn is_reconcile_path(path: &str) -> bool {
    path == RECONCILE_PATH
}

/// The route's query: `dryRun` (`true`/`false`, default false) and
/// `graceSecs` (default [`GRACE_SECS`]).
pub fn parse_query(query: Option<&str>) -> Result<(bool, i64), (String, String)> {
    let mut dry_run = false;
    let mut grace = GRACE_SECS;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "dryRun" => {
                dry_run = match v {
                    "true" => true,
                    "false" => false,
                    _ => return Err(("dryRun".into(), "must be true or false".into())),
                }
            }
            "graceSecs" => {
                grace = v
                    .parse()
                    .ok()
                    .filter(|g| (0..=86_400).contains(g))
                    .ok_or_else(|| ("graceSecs".into(), "must be 0 to 86400".into()))?
            }
            other => return Err((other.into(), "is not a parameter of this route".into())),
        }
    }
    Ok((dry_run, grace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_query_is_checked() {
        assert_eq!(parse_query(None), Ok((false, GRACE_SECS)));
        assert_eq!(parse_query(Some("dryRun=true&graceSecs=0")), Ok((true, 0)));
        assert_eq!(parse_query(Some("dryRun=yes")).unwrap_err().0, "dryRun");
        assert_eq!(
            parse_query(Some("graceSecs=-1")).unwrap_err().0,
            "graceSecs"
        );
        assert_eq!(parse_query(Some("force=1")).unwrap_err().0, "force");
    }
}
