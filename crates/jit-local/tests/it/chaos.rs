//! The chaos suite (issue #9): the real `jit-local` binary on loopback,
//! attacked the ways that let access outlive its grant — `kill -9` under
//! load, clients that hang up mid-request, decisions racing cancels and
//! denials, revokes racing extensions. After each attack the system gets a
//! bounded time to settle, then the invariants are checked through the API,
//! the local IAM state (`jit-local iam state`) and the raw IAM stand-in files:
//!
//! - every request answered 201 is stored;
//! - none rests in a non-terminal status other than `APPROVAL_PENDING` or
//!   `GRANTED` (`APPROVED` is allowed only while settling), and none waits
//!   for a decision that was already made;
//! - every `GRANTED` request has a live execution waiting for its expiry;
//! - the local IAM state holds nothing without a live grant in its window;
//! - in a race, exactly one call wins (the loser gets a 409) and the outcome
//!   is the winner's;
//! - after the test clock has moved past every window, nothing is left: no
//!   attachment, no inline policy, every request terminal.
//!
//! Each test runs its own server on a temporary data dir with the
//! `--test-clock` (windows are at least 15 minutes). Randomness comes from
//! fixed seeds; every loop is bounded in count and time; the child process
//! is killed when its guard drops. A failure lists every broken invariant
//! with the request id, its status and the tail of its execution history.
//! Run alone: `./scripts/test -p jit-local --test chaos`.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::binary::{Client, Launch, Running};
use serde_json::{Value, json};

const KEY: &str = "chaos-suite-key-0123456789abcdef";
/// Every random choice derives from this.
const SEED: u64 = 0x0009_C4A0_5EED_0009;
const LEAD: &str = "lead@example.com";
const SECURITY: &str = "security@example.com";
const ACCOUNT: &str = "123456789012";

/// One call's connect/read/write bound.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the system gets to settle after an attack, at most.
const SETTLE_WITHIN: Duration = Duration::from_secs(20);
/// Settling ends early when no status has changed for this long.
const QUIET: Duration = Duration::from_secs(5);
/// A settle first moves the test clock this far: past any grace period a
/// repair pass waits out (the clock advance also runs the periodic sweeps),
/// and far below any window (15 minutes at least) or approval timeout.
const NUDGE_SECS: u64 = 120;
/// Past every window: the longest grant (2h, extensions included), the
/// approval timeout (1h), and an early revoke's deny (1h + margins).
const PAST_WINDOWS_SECS: [u64; 2] = [4 * 3600, 2 * 3600];
/// At most this many lines per broken invariant in the report.
const SHOWN: usize = 12;

const CATALOG: &str = r#"
defaults:
  max_duration: 1h
  approval_timeout: 1h
  approvers: { emails: [lead@example.com, security@example.com] }
entitlements:
  - name: Admin
    role_arn: "arn:aws:iam::123456789012:role/JIT-Admin"
  - name: OnCall
    role_arn: "arn:aws:iam::123456789012:role/JIT-OnCall"
    auto_approve: { groups: [sre], max_duration: 1h }
  - name: PowerUser
    policy_name: PowerUserAccess
    account: "123456789012"
  - name: ReadOnly
    policy_name: ReadOnlyAccess
    account: "123456789012"
    max_duration: 2h
    auto_approve: { groups: [sre], max_duration: 1h }
"#;

/// The catalog above: (name, managed policy for attach-policy, auto-approved
/// for the `sre` group).
const ENTITLEMENTS: [(&str, Option<&str>, bool); 4] = [
    ("Admin", None, false),
    ("OnCall", None, true),
    ("PowerUser", Some("PowerUserAccess"), false),
    ("ReadOnly", Some("ReadOnlyAccess"), true),
];

fn policy_of(entitlement: &str) -> Option<&'static str> {
    ENTITLEMENTS
        .iter()
        .find(|(n, _, _)| *n == entitlement)
        .and_then(|(_, p, _)| *p)
}

/// Every status a build may know; one it does not know is skipped (the
/// `APPROVED` status of the lifecycle fix, on a build without it).
const STATUSES: [&str; 12] = [
    "REQUESTED",
    "VALIDATING",
    "POLICY_GENERATION",
    "APPROVAL_PENDING",
    "APPROVED",
    "GRANTED",
    "EXPIRED",
    "DENIED",
    "CANCELLED",
    "REVOKED",
    "APPROVAL_TIMED_OUT",
    "FAILED",
];
const TERMINAL: [&str; 6] = [
    "EXPIRED",
    "DENIED",
    "CANCELLED",
    "REVOKED",
    "APPROVAL_TIMED_OUT",
    "FAILED",
];
/// Where a request may rest indefinitely before its windows end.
const RESTING: [&str; 2] = ["APPROVAL_PENDING", "GRANTED"];

/// splitmix64: small, fixed, good enough to pick actions and moments.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A request as the store holds it (the status list it was found in) and
/// as the API shows it (the effective status: GRANTED past its expiry reads
/// EXPIRED).
#[derive(Clone, Debug)]
struct Snap {
    stored: String,
    view: Value,
}

impl Snap {
    fn status(&self) -> &str {
        self.view["status"].as_str().unwrap_or("?")
    }
    fn requester(&self) -> &str {
        self.view["requester"]["principal"].as_str().unwrap_or("?")
    }
    fn entitlement(&self) -> &str {
        self.view["entitlement"].as_str().unwrap_or("?")
    }
    fn approved(&self) -> bool {
        self.view["decisions"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["verdict"] == "approve"))
    }
}

/// What the local IAM stand-in files hold right now.
#[derive(Default, Debug)]
struct RawIam {
    /// (principal, policy)
    attached: BTreeSet<(String, String)>,
    /// (role ARN, policy name)
    inline: BTreeSet<(String, String)>,
}

/// An execution's history, as far as the invariants need it.
struct History {
    /// `None`: the API has no execution for the request.
    events: Option<Vec<Value>>,
}

impl History {
    fn ended(&self) -> Option<&str> {
        self.events.as_ref()?.iter().rev().find_map(|e| {
            let t = e["type"].as_str()?;
            (t.starts_with("Execution") && t != "ExecutionStarted").then_some(t)
        })
    }
    /// The type of the last `…StateEntered` event (`WaitStateEntered`, …).
    fn last_state_entered(&self) -> Option<&str> {
        self.events.as_ref()?.iter().rev().find_map(|e| {
            let t = e["type"].as_str()?;
            t.ends_with("StateEntered").then_some(t)
        })
    }
    /// Not ended, and the last state entered is a Wait: in the approval
    /// workflow the only Wait is the one until `expiresAt`.
    fn waiting_for_expiry(&self) -> bool {
        self.ended().is_none() && self.last_state_entered() == Some("WaitStateEntered")
    }
    /// The last few events, `type name/error`, oldest first.
    fn tail(&self) -> String {
        let Some(events) = &self.events else {
            return "no execution".into();
        };
        let shown: Vec<String> = events
            .iter()
            .rev()
            .take(6)
            .map(|e| {
                let mut s = e["type"].as_str().unwrap_or("?").to_string();
                if let Some(m) = e.as_object() {
                    for (k, d) in m {
                        if !k.ends_with("EventDetails") {
                            continue;
                        }
                        if let Some(n) = d["name"].as_str() {
                            s.push_str(&format!(" {n}"));
                        }
                        if let Some(err) = d["error"].as_str() {
                            s.push_str(&format!(" ({err})"));
                        }
                    }
                }
                s
            })
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{}", shown.join(" → "))
    }
}

/// One server under attack and the report of what broke.
struct Chaos {
    name: &'static str,
    dir: tempfile::TempDir,
    launch: Launch,
    server: Option<Running>,
    /// Where the current process listens (a restart picks a new port).
    addr: Arc<RwLock<SocketAddr>>,
    broken: Vec<String>,
    started: Instant,
    iam_state_missing: bool,
}

impl Chaos {
    fn start(name: &'static str) -> Chaos {
        let dir = tempfile::tempdir().unwrap();
        let catalog = dir.path().join("catalog.yaml");
        std::fs::write(&catalog, CATALOG).unwrap();
        let launch = Launch {
            key: KEY.into(),
            catalog,
            args: vec!["--test-clock".into()],
            log: Some(dir.path().join("jit-local.log")),
        };
        let (server, addr, _) = launch.start(&dir.path().join("data"));
        Chaos {
            name,
            dir,
            launch,
            server: Some(server),
            addr: Arc::new(RwLock::new(addr)),
            broken: vec![],
            started: Instant::now(),
            iam_state_missing: false,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn client(&self) -> Client {
        client_at(&self.addr)
    }

    /// `kill -9`, then start again on the same data.
    fn kill_and_restart(&mut self, down_for: Duration) {
        if let Some(s) = self.server.take() {
            s.kill();
        }
        std::thread::sleep(down_for);
        let (server, addr, _) = self.launch.start(&self.data());
        *self.addr.write().unwrap() = addr;
        self.server = Some(server);
    }

    /// A call the server must answer (it is up): an I/O error is a failure.
    fn call(&self, method: &str, path: &str, user: &str, groups: &str, body: &str) -> (u16, Value) {
        self.client()
            .try_send(method, path, user, groups, body)
            .unwrap_or_else(|e| panic!("[{}] {method} {path} as {user}: {e}", self.name))
    }

    fn advance(&self, secs: u64) {
        // The advance runs every timer now due, the workflow reconcile pass
        // and the revocation sweep before it answers: more than one call's
        // work, so it gets the settle bound rather than a call's.
        let mut client = self.client();
        client.timeout = SETTLE_WITHIN;
        let (code, v) = client
            .try_send(
                "POST",
                "/_test/clock/advance",
                "",
                "",
                &json!({ "seconds": secs }).to_string(),
            )
            .unwrap_or_else(|e| panic!("[{}] advancing the test clock: {e}", self.name));
        assert_eq!(code, 200, "[{}] advancing the test clock: {v}", self.name);
    }

    /// Creates a request and returns its id (the call must be answered 201).
    fn create(&self, user: &str, entitlement: &str, duration: &str) -> String {
        let groups = if ENTITLEMENTS
            .iter()
            .any(|(n, _, auto)| *n == entitlement && *auto)
        {
            "sre"
        } else {
            ""
        };
        let body =
            json!({"entitlement": entitlement, "duration": duration, "justification": "chaos"});
        let (code, v) = self.call("POST", "/requests", user, groups, &body.to_string());
        assert_eq!(
            code, 201,
            "[{}] creating {entitlement} for {user}: {v}",
            self.name
        );
        v["requestId"].as_str().unwrap().to_string()
    }

    /// Every stored request, found through the approver's status lists.
    fn all_requests(&self) -> BTreeMap<String, Snap> {
        let mut all = BTreeMap::new();
        for status in STATUSES {
            let mut cursor: Option<String> = None;
            for _page in 0..10_000 {
                let mut path = format!("/requests?status={status}&limit=100");
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={}", percent_encode(c)));
                }
                let (code, v) = self.call("GET", &path, LEAD, "", "");
                if code == 400 && v["error"]["field"] == "status" {
                    break; // a status this build does not know
                }
                assert_eq!(code, 200, "[{}] listing {status}: {v}", self.name);
                for r in v["requests"].as_array().into_iter().flatten() {
                    let id = r["requestId"].as_str().unwrap().to_string();
                    all.insert(
                        id,
                        Snap {
                            stored: status.to_string(),
                            view: r.clone(),
                        },
                    );
                }
                match v["nextCursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
        }
        all
    }

    fn history(&self, id: &str) -> History {
        let (code, v) = self.call("GET", &format!("/requests/{id}/history"), LEAD, "", "");
        History {
            events: (code == 200).then(|| v["events"].as_array().cloned().unwrap_or_default()),
        }
    }

    /// One line naming a request: id, entitlement, requester, statuses,
    /// history tail.
    fn describe(&self, id: &str, snap: Option<&Snap>) -> String {
        let history = self.history(id).tail();
        match snap {
            Some(s) => format!(
                "{id} {} for {}: stored {}, reads {}; history {history}",
                s.entitlement(),
                s.requester(),
                s.stored,
                s.status()
            ),
            None => format!("{id}: not stored; history {history}"),
        }
    }

    /// Lets the system settle: moves the test clock a little (repair passes
    /// and timers get their turn), then polls until no request is in a
    /// transient status and two polls agree — or nothing has moved for
    /// [`QUIET`] (what is left is stuck), or [`SETTLE_WITHIN`] is up.
    fn settle(&self) -> BTreeMap<String, Snap> {
        self.advance(NUDGE_SECS);
        let started = Instant::now();
        let mut last_change = Instant::now();
        let mut previous: Option<Vec<(String, String)>> = None;
        loop {
            let all = self.all_requests();
            let statuses: Vec<(String, String)> = all
                .iter()
                .map(|(id, s)| (id.clone(), s.stored.clone()))
                .collect();
            let transient = all
                .values()
                .filter(|s| {
                    !TERMINAL.contains(&s.stored.as_str()) && !RESTING.contains(&s.stored.as_str())
                })
                .count();
            let same = previous.as_ref() == Some(&statuses);
            if !same {
                last_change = Instant::now();
            }
            if (transient == 0 && same)
                || last_change.elapsed() >= QUIET
                || started.elapsed() >= SETTLE_WITHIN
            {
                return all;
            }
            previous = Some(statuses);
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn raw_iam(&self) -> RawIam {
        let mut raw = RawIam::default();
        let read = |name: &str| -> Option<Value> {
            let text = std::fs::read_to_string(self.data().join(name)).ok()?;
            Some(serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!(
                    "[{}] {name} is not the JSON this suite reads ({e}): {text}",
                    self.name
                )
            }))
        };
        if let Some(rows) = read("iam-attachments.json") {
            for r in rows.as_array().into_iter().flatten() {
                raw.attached.insert((
                    r["principal"].as_str().unwrap_or("?").to_string(),
                    r["policy"].as_str().unwrap_or("?").to_string(),
                ));
            }
        }
        if let Some(roles) = read("iam-role-policies.json") {
            for (role, ps) in roles.as_object().into_iter().flatten() {
                for name in ps.as_object().into_iter().flatten().map(|(n, _)| n) {
                    raw.inline.insert((role.clone(), name.clone()));
                }
            }
        }
        raw
    }

    /// `jit-local iam state --output json`, or `None` (said loudly, once)
    /// when this build has no such command.
    fn iam_state(&mut self) -> Option<Value> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jit-local"))
            .args(["iam", "state", "--data-dir"])
            .arg(self.data())
            .args(["--output", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.broken.push(format!(
                    "[{}] IAM STATE UNREADABLE: `jit-local iam state` ran over 20 s",
                    self.name
                ));
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && stderr.contains("'iam'") {
            if !self.iam_state_missing {
                eprintln!(
                    "\n!!! CHAOS [{}]: this jit-local has no `iam state` command: the IAM state \
                     is checked only through the raw files (iam-attachments.json, \
                     iam-role-policies.json), not through the ledger's view !!!\n",
                    self.name
                );
            }
            self.iam_state_missing = true;
            return None;
        }
        match serde_json::from_slice::<Value>(&out.stdout) {
            Ok(v) if out.status.success() => Some(v),
            _ => {
                self.broken.push(format!(
                    "[{}] IAM STATE UNREADABLE: `jit-local iam state --output json` exited {:?}: {} {}",
                    self.name,
                    out.status.code(),
                    String::from_utf8_lossy(&out.stdout),
                    stderr
                ));
                None
            }
        }
    }

    /// Records one broken invariant with the lines that show it.
    fn broke(&mut self, phase: &str, invariant: &str, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        let n = lines.len();
        let mut text = format!("[{} / {phase}] {invariant} ({n}):", self.name);
        for l in lines.iter().take(SHOWN) {
            text.push_str(&format!("\n      {l}"));
        }
        if n > SHOWN {
            text.push_str(&format!("\n      … and {} more", n - SHOWN));
        }
        self.broken.push(text);
    }

    /// The invariants over everything stored. `answered` holds the ids the
    /// API answered 201; `past_windows` asks for the end state (nothing
    /// left at all).
    fn check(
        &mut self,
        phase: &str,
        all: &BTreeMap<String, Snap>,
        answered: &BTreeSet<String>,
        past_windows: bool,
    ) {
        // Every request answered 201 is stored.
        let mut lost = vec![];
        for id in answered {
            if !all.contains_key(id) {
                let (code, v) = self.call("GET", &format!("/requests/{id}"), LEAD, "", "");
                if code != 200 {
                    lost.push(format!(
                        "{} (GET answers {code} {v})",
                        self.describe(id, None)
                    ));
                }
            }
        }
        self.broke(phase, "LOST: answered 201 but not stored", lost);

        // Nothing rests in a transient status; no decided request waits.
        let mut stuck = vec![];
        let mut decided_pending = vec![];
        for (id, s) in all {
            let stored = s.stored.as_str();
            if !TERMINAL.contains(&stored) && !RESTING.contains(&stored) {
                stuck.push(self.describe(id, Some(s)));
            }
            if stored == "APPROVAL_PENDING" && s.approved() {
                decided_pending.push(self.describe(id, Some(s)));
            }
        }
        self.broke(
            phase,
            "STUCK: left in a non-terminal status other than APPROVAL_PENDING/GRANTED",
            stuck,
        );
        self.broke(
            phase,
            "DECIDED BUT PENDING: an approval meeting the quorum is recorded, the request still waits",
            decided_pending,
        );

        // Every GRANTED request has a live execution waiting for its expiry
        // (a grant recorded a moment ago enters its Wait next: look twice).
        let mut not_waiting: Vec<&String> = all
            .iter()
            .filter(|(id, s)| s.status() == "GRANTED" && !self.history(id).waiting_for_expiry())
            .map(|(id, _)| id)
            .collect();
        if !not_waiting.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
            not_waiting.retain(|id| !self.history(id).waiting_for_expiry());
        }
        let orphans = not_waiting
            .into_iter()
            .map(|id| self.describe(id, all.get(id)))
            .collect();
        self.broke(
            phase,
            "GRANTED WITHOUT A LIVE EXECUTION waiting for its expiry",
            orphans,
        );

        // The IAM state holds nothing without a live grant in its window.
        let live: BTreeSet<(String, String)> = all
            .values()
            .filter(|s| s.status() == "GRANTED")
            .filter_map(|s| {
                Some((
                    s.requester().to_string(),
                    policy_of(s.entitlement())?.to_string(),
                ))
            })
            .collect();
        let raw = self.raw_iam();
        let mut attached = vec![];
        for (principal, policy) in &raw.attached {
            if !live.contains(&(principal.clone(), policy.clone())) {
                let theirs: Vec<String> = all
                    .iter()
                    .filter(|(_, s)| {
                        s.requester() == principal && policy_of(s.entitlement()) == Some(policy)
                    })
                    .map(|(id, s)| self.describe(id, Some(s)))
                    .collect();
                attached.push(format!(
                    "{policy} attached to {principal} (iam-attachments.json); their requests for it: [{}]",
                    theirs.join("; ")
                ));
            }
        }
        self.broke(phase, "ATTACHED WITHOUT A LIVE GRANT", attached);
        let mut unattached = vec![];
        for (principal, policy) in &live {
            if !raw.attached.contains(&(principal.clone(), policy.clone())) {
                let ids: Vec<String> = all
                    .iter()
                    .filter(|(_, s)| {
                        s.status() == "GRANTED"
                            && s.requester() == principal
                            && policy_of(s.entitlement()) == Some(policy)
                    })
                    .map(|(id, s)| self.describe(id, Some(s)))
                    .collect();
                unattached.push(format!("{policy} for {principal}: {}", ids.join("; ")));
            }
        }
        self.broke(phase, "GRANTED BUT NOT ATTACHED", unattached);
        let mut inline = vec![];
        for (role, name) in &raw.inline {
            let owner = name
                .strip_prefix("jit-revoke-")
                .or_else(|| name.strip_prefix("jit-"));
            let ok = match owner.and_then(|id| all.get(id).map(|s| (id, s))) {
                Some((_, s)) if name.starts_with("jit-revoke-") => {
                    s.stored == "REVOKED" && !past_windows
                }
                Some((_, s)) => s.status() == "GRANTED",
                None => false,
            };
            if !ok {
                let who = owner
                    .map(|id| self.describe(id, all.get(id)))
                    .unwrap_or_default();
                inline.push(format!("{name} on {role} (iam-role-policies.json): {who}"));
            }
        }
        self.broke(
            phase,
            "INLINE POLICY WITHOUT A LIVE GRANT (or past its use)",
            inline,
        );

        if let Some(state) = self.iam_state() {
            let mut ledger = vec![];
            for a in state["attachedPolicies"].as_array().into_iter().flatten() {
                let id = a["requestId"].as_str().unwrap_or("?");
                let policy = a["policy"].as_str().unwrap_or("?");
                let ok = all.get(id).is_some_and(|s| {
                    s.status() == "GRANTED"
                        && policy_of(s.entitlement())
                            .is_some_and(|p| policy == p || policy.ends_with(&format!("/{p}")))
                });
                if !ok {
                    ledger.push(format!("attached {a}: {}", self.describe(id, all.get(id))));
                }
            }
            for p in state["inlinePolicies"].as_array().into_iter().flatten() {
                let id = p["requestId"].as_str().unwrap_or("?");
                let name = p["name"].as_str().unwrap_or("?");
                let ok = all.get(id).is_some_and(|s| {
                    if name.starts_with("jit-revoke-") {
                        s.stored == "REVOKED" && !past_windows
                    } else {
                        s.status() == "GRANTED"
                    }
                });
                if !ok {
                    ledger.push(format!("inline {p}: {}", self.describe(id, all.get(id))));
                }
            }
            if state.get("attachedPolicies").is_none() || state.get("inlinePolicies").is_none() {
                ledger.push(format!("not the documented shape: {state}"));
            }
            self.broke(
                phase,
                "IAM STATE (jit-local iam state) HOLDS ACCESS WITHOUT A LIVE GRANT",
                ledger,
            );
        }

        if past_windows {
            let mut open = vec![];
            for (id, s) in all {
                if !TERMINAL.contains(&s.stored.as_str()) {
                    open.push(self.describe(id, Some(s)));
                }
            }
            self.broke(
                phase,
                "NOT TERMINAL after every window ended (stored status)",
                open,
            );
        }
    }

    /// Moves the clock past every window, settles, and checks that nothing
    /// is left.
    fn end_all_windows(&mut self, answered: &BTreeSet<String>) {
        let mut all = BTreeMap::new();
        for secs in PAST_WINDOWS_SECS {
            self.advance(secs);
            all = self.settle();
        }
        self.check("after every window ended", &all, answered, true);
    }

    /// Passes, or fails with every broken invariant.
    fn finish(self) {
        eprintln!(
            "chaos [{}]: {:.1} s, {} broken invariant(s); server log: {}",
            self.name,
            self.started.elapsed().as_secs_f64(),
            self.broken.len(),
            self.dir.path().join("jit-local.log").display()
        );
        if !self.broken.is_empty() {
            let log =
                std::fs::read_to_string(self.dir.path().join("jit-local.log")).unwrap_or_default();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let log = if tail.is_empty() {
                String::new()
            } else {
                format!(
                    "\n\nlast lines of the server's log (JIT_LOG=warn):\n{}",
                    tail.join("\n")
                )
            };
            panic!(
                "chaos [{}]: {} invariant(s) broken\n\n{}{log}\n",
                self.name,
                self.broken.len(),
                self.broken.join("\n\n"),
            );
        }
    }
}

fn client_at(addr: &RwLock<SocketAddr>) -> Client {
    Client {
        addr: *addr.read().unwrap(),
        key: KEY.into(),
        timeout: CALL_TIMEOUT,
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn create_body(entitlement: &str, duration: &str) -> String {
    json!({"entitlement": entitlement, "duration": duration, "justification": "chaos"}).to_string()
}

/// Waits (bounded) until every one of `ids` is stored in `status`.
fn wait_all(c: &Chaos, ids: &[String], status: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = c.all_requests();
        let behind: Vec<&String> = ids
            .iter()
            .filter(|id| all.get(*id).is_none_or(|s| s.stored != status))
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] {} request(s) never became {status}: {}",
            c.name,
            behind.len(),
            behind
                .iter()
                .take(5)
                .map(|id| c.describe(id, all.get(*id)))
                .collect::<Vec<_>>()
                .join("\n  ")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One POST of a race.
#[derive(Clone, Copy)]
struct Post<'a> {
    path: &'a str,
    user: &'a str,
    groups: &'a str,
    body: &'a str,
}

/// Two calls released together from a barrier, `b` after `lag` (rounds
/// sweep the lag so the second call lands at every point of the first's
/// work); an I/O error reads as status 0.
fn race(c: &Client, a: Post, b: Post, lag: Duration) -> [(u16, Value); 2] {
    let barrier = Barrier::new(2);
    let send = |p: Post, lag: Duration| {
        barrier.wait();
        std::thread::sleep(lag);
        c.try_send("POST", p.path, p.user, p.groups, p.body)
            .unwrap_or_else(|e| (0, json!({"io error": e.to_string()})))
    };
    std::thread::scope(|s| {
        let ha = s.spawn(|| send(a, Duration::ZERO));
        let hb = s.spawn(|| send(b, lag));
        [ha.join().unwrap(), hb.join().unwrap()]
    })
}

/// The lag of round `i`: 0 to 2.75 ms in steps of 250 µs.
fn lag(i: usize) -> Duration {
    Duration::from_micros(250 * (i % 12) as u64)
}

// ---------------------------------------------------------------------------
// (a) kill -9 at random moments under concurrent creates, approvals, cancels

const KILLS: usize = 12;
const CLIENTS: u64 = 4;
const OPS_PER_CLIENT: u64 = 700;

#[test]
fn kill_9_at_random_moments_under_load() {
    let mut c = Chaos::start("kill-9");
    let answered = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    // (id, requester) of requests that need a decision
    let pending = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load_deadline = Instant::now() + Duration::from_secs(90);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (answered, pending, stop, addr) = (
                answered.clone(),
                pending.clone(),
                stop.clone(),
                c.addr.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = Rng::new(SEED ^ (k + 1).wrapping_mul(0xA076_1D64_78BD_642F));
                for n in 0..OPS_PER_CLIENT {
                    if stop.load(Ordering::SeqCst) || Instant::now() >= load_deadline {
                        break;
                    }
                    let mut client = client_at(&addr);
                    client.timeout = Duration::from_secs(2);
                    let roll = rng.below(100);
                    let picked = if roll >= 55 {
                        let mut p = pending.lock().unwrap();
                        if p.is_empty() {
                            None
                        } else {
                            let i = rng.below(p.len() as u64) as usize;
                            Some(p.swap_remove(i))
                        }
                    } else {
                        None
                    };
                    let outcome = match picked {
                        Some((id, _)) if roll < 80 => client.try_send(
                            "POST",
                            &format!("/requests/{id}/approve"),
                            LEAD,
                            "",
                            "{}",
                        ),
                        Some((id, requester)) => client.try_send(
                            "POST",
                            &format!("/requests/{id}/cancel"),
                            &requester,
                            "",
                            r#"{"reason":"chaos"}"#,
                        ),
                        None => {
                            let (name, _, auto) = ENTITLEMENTS[rng.below(4) as usize];
                            let duration = ["15m", "30m", "1h"][rng.below(3) as usize];
                            let requester = format!("k{k}n{n}@example.com");
                            let r = client.try_send(
                                "POST",
                                "/requests",
                                &requester,
                                if auto { "sre" } else { "" },
                                &create_body(name, duration),
                            );
                            if let Ok((201, v)) = &r {
                                let id = v["requestId"].as_str().unwrap().to_string();
                                answered.lock().unwrap().insert(id.clone());
                                if !auto {
                                    pending.lock().unwrap().push((id, requester));
                                }
                            }
                            r
                        }
                    };
                    if outcome.is_err() {
                        // the server is down (killed) or restarting
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();

    let mut rng = Rng::new(SEED);
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(150 + rng.below(850)));
        let down = Duration::from_millis(rng.below(100));
        c.kill_and_restart(down);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for t in clients {
        t.join().unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    eprintln!(
        "chaos [kill-9]: {KILLS} kills, {} creates answered 201, load over after {:.1} s",
        answered.len(),
        c.started.elapsed().as_secs_f64()
    );
    assert!(
        answered.len() >= 50,
        "the load made too few requests to mean anything: {}",
        answered.len()
    );

    let all = c.settle();
    c.check(
        &format!("after {KILLS} kills, settled"),
        &all,
        &answered,
        false,
    );
    c.end_all_windows(&answered);
    c.finish();
}

// ---------------------------------------------------------------------------
// (b) clients that hang up mid-request

const ABANDONED_CREATES: u64 = 300;
const TRUNCATED_CREATES: u64 = 100;
const ABANDONED_APPROVALS: usize = 40;

/// Writes `bytes` on a fresh connection, waits `linger` (so the hang-up
/// lands at different moments of the handler's work) and closes it without
/// reading a byte.
fn write_and_hang_up(addr: SocketAddr, bytes: &[u8], linger: Duration) {
    if let Ok(mut s) = TcpStream::connect_timeout(&addr, CALL_TIMEOUT) {
        let _ = s.set_write_timeout(Some(CALL_TIMEOUT));
        let _ = s.write_all(bytes);
        std::thread::sleep(linger);
    }
}

fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    user: &str,
    groups: &str,
    body: &str,
) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nx-api-key: {KEY}\r\nx-jit-user: {user}\r\nx-jit-groups: {groups}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn hundreds_of_clients_hang_up_mid_request() {
    let mut c = Chaos::start("disconnects");
    let addr = *c.addr.read().unwrap();

    // Requests that need a decision, for approvals whose caller hangs up.
    let mut to_approve = vec![];
    for i in 0..ABANDONED_APPROVALS {
        let ent = if i % 2 == 0 { "PowerUser" } else { "Admin" };
        to_approve.push(c.create(&format!("approve{i}@example.com"), ent, "1h"));
    }
    wait_all(&c, &to_approve, "APPROVAL_PENDING");

    // Four hangers-up at once: whole creates, creates cut half-way through
    // the body, and approvals — each written and the socket closed unread.
    std::thread::scope(|s| {
        for k in 0..4u64 {
            let to_approve = &to_approve;
            s.spawn(move || {
                let mut rng = Rng::new(SEED ^ (0xD15C + k));
                for n in (k..ABANDONED_CREATES).step_by(4) {
                    let (name, _, auto) = ENTITLEMENTS[rng.below(4) as usize];
                    let req = raw_request(
                        addr,
                        "POST",
                        "/requests",
                        &format!("gone{n}@example.com"),
                        if auto { "sre" } else { "" },
                        &create_body(name, "30m"),
                    );
                    let linger = Duration::from_micros(rng.below(6000));
                    write_and_hang_up(addr, req.as_bytes(), linger);
                }
                for n in (k..TRUNCATED_CREATES).step_by(4) {
                    let (name, _, auto) = ENTITLEMENTS[rng.below(4) as usize];
                    let req = raw_request(
                        addr,
                        "POST",
                        "/requests",
                        &format!("half{n}@example.com"),
                        if auto { "sre" } else { "" },
                        &create_body(name, "30m"),
                    );
                    let cut = req.len() - 1 - rng.below(20) as usize;
                    write_and_hang_up(addr, &req.as_bytes()[..cut], Duration::ZERO);
                }
                for id in to_approve.iter().skip(k as usize).step_by(4) {
                    let req = raw_request(
                        addr,
                        "POST",
                        &format!("/requests/{id}/approve"),
                        LEAD,
                        "",
                        "{}",
                    );
                    let linger = Duration::from_micros(rng.below(6000));
                    write_and_hang_up(addr, req.as_bytes(), linger);
                }
            });
        }
    });

    // Ordinary creates afterwards: the server still answers, and keeps them.
    let mut answered: BTreeSet<String> = to_approve.iter().cloned().collect();
    for (i, (name, _, _)) in ENTITLEMENTS.iter().enumerate() {
        answered.insert(c.create(&format!("after{i}@example.com"), name, "30m"));
    }

    let all = c.settle();
    let stored_from_gone = all
        .values()
        .filter(|s| s.requester().starts_with("gone"))
        .count();
    eprintln!(
        "chaos [disconnects]: {stored_from_gone} of {ABANDONED_CREATES} abandoned creates stored, after {:.1} s",
        c.started.elapsed().as_secs_f64()
    );
    let truncated: Vec<String> = all
        .iter()
        .filter(|(_, s)| s.requester().starts_with("half"))
        .map(|(id, s)| c.describe(id, Some(s)))
        .collect();
    c.broke("settled", "STORED FROM A TRUNCATED BODY", truncated);
    c.check("after the hang-ups, settled", &all, &answered, false);
    c.end_all_windows(&answered);
    c.finish();
}

// ---------------------------------------------------------------------------
// (c) approve versus cancel, approve versus deny

const DECISION_ROUNDS: usize = 96;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Rival {
    /// the requester cancels
    Cancel,
    /// another approver denies
    Deny,
}

#[test]
fn approve_races_cancel_and_deny() {
    let mut c = Chaos::start("decision races");
    let mut rounds = vec![];
    for rival in [Rival::Cancel, Rival::Deny] {
        for i in 0..DECISION_ROUNDS {
            let requester = format!("{rival:?}{i}@example.com").to_lowercase();
            let id = c.create(&requester, "PowerUser", "1h");
            rounds.push((rival, requester, id));
        }
    }
    let ids: Vec<String> = rounds.iter().map(|(_, _, id)| id.clone()).collect();
    wait_all(&c, &ids, "APPROVAL_PENDING");

    let client = c.client();
    let mut answers = vec![];
    for (i, (rival, requester, id)) in rounds.iter().enumerate() {
        let approve = format!("/requests/{id}/approve");
        let (path, user) = match rival {
            Rival::Cancel => (format!("/requests/{id}/cancel"), requester.as_str()),
            Rival::Deny => (format!("/requests/{id}/deny"), SECURITY),
        };
        let body = r#"{"reason":"race"}"#;
        let got = race(
            &client,
            Post {
                path: &approve,
                user: LEAD,
                groups: "",
                body,
            },
            Post {
                path: &path,
                user,
                groups: "",
                body,
            },
            lag(i),
        );
        answers.push(got);
    }

    let all = c.settle();
    let raw = c.raw_iam();
    let mut both = vec![];
    let mut neither = vec![];
    let mut odd = vec![];
    let mut wrong = vec![];
    let mut attached_after_loss = vec![];
    let mut tally = BTreeMap::<String, usize>::new();
    for ((rival, requester, id), [a, b]) in rounds.iter().zip(&answers) {
        let rival_name = format!("{rival:?}").to_lowercase();
        let line = |c: &Chaos| {
            format!(
                "approve {} {} | {rival_name} {} {} | {}",
                a.0,
                a.1["error"]["code"].as_str().unwrap_or(""),
                b.0,
                b.1["error"]["code"].as_str().unwrap_or(""),
                c.describe(id, all.get(id))
            )
        };
        let status = all
            .get(id)
            .map(|s| s.status().to_string())
            .unwrap_or_else(|| "NOT STORED".into());
        *tally
            .entry(format!("approve {} / {rival_name} {} → {status}", a.0, b.0))
            .or_default() += 1;
        match (a.0, b.0) {
            (200, 200) => both.push(line(&c)),
            (200, 409) | (409, 200) => {}
            (409, 409) => neither.push(line(&c)),
            _ => odd.push(line(&c)),
        }
        let want = match (a.0 == 200, b.0 == 200, rival) {
            (true, false, _) => Some("GRANTED"),
            (false, true, Rival::Cancel) => Some("CANCELLED"),
            (false, true, Rival::Deny) => Some("DENIED"),
            _ => None,
        };
        if let Some(want) = want
            && status != want
        {
            wrong.push(format!("want {want}: {}", line(&c)));
        }
        if matches!(status.as_str(), "CANCELLED" | "DENIED")
            && raw
                .attached
                .contains(&(requester.clone(), "PowerUserAccess".into()))
        {
            attached_after_loss.push(line(&c));
        }
    }
    eprintln!("chaos [decision races]: {tally:#?}");
    c.broke(
        "races",
        "BOTH WON: approve and its rival both answered 200",
        both,
    );
    c.broke("races", "NEITHER WON: both answered 409", neither);
    c.broke("races", "UNEXPECTED ANSWER (not 200/409)", odd);
    c.broke(
        "races",
        "WRONG OUTCOME: the final status is not the winner's",
        wrong,
    );
    c.broke(
        "races",
        "CANCELLED/DENIED WITH THE POLICY ATTACHED",
        attached_after_loss,
    );
    c.check(
        "after the races, settled",
        &all,
        &ids.iter().cloned().collect(),
        false,
    );
    c.end_all_windows(&ids.into_iter().collect());
    c.finish();
}

// ---------------------------------------------------------------------------
// (d) revoke versus extend

const EXTEND_ROUNDS: usize = 24;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Extension {
    /// attach-policy grant; an extension the auto-approve rule accepts
    AutoAttach,
    /// attach-policy grant; a pending extension approved by the lead
    ApprovedAttach,
    /// assume-role grant; an extension the auto-approve rule accepts
    AutoRole,
}

#[test]
fn revoke_races_extend() {
    let mut c = Chaos::start("revoke vs extend");
    let mut rounds = vec![];
    for kind in [
        Extension::AutoAttach,
        Extension::ApprovedAttach,
        Extension::AutoRole,
    ] {
        for i in 0..EXTEND_ROUNDS {
            let requester = format!("{kind:?}{i}@example.com").to_lowercase();
            let (ent, duration) = match kind {
                Extension::AutoAttach => ("ReadOnly", "30m"),
                Extension::ApprovedAttach => ("ReadOnly", "1h"),
                Extension::AutoRole => ("OnCall", "30m"),
            };
            let id = c.create(&requester, ent, duration);
            rounds.push((kind, requester, id));
        }
    }
    let ids: Vec<String> = rounds.iter().map(|(_, _, id)| id.clone()).collect();
    wait_all(&c, &ids, "GRANTED");
    // The extensions that need an approver are asked for first.
    for (_, requester, id) in rounds
        .iter()
        .filter(|(k, _, _)| *k == Extension::ApprovedAttach)
    {
        let (code, v) = c.call(
            "POST",
            &format!("/requests/{id}/extend"),
            requester,
            "sre",
            r#"{"duration":"30m","reason":"overran"}"#,
        );
        assert_eq!(
            (code, v["extensions"][0]["status"].as_str()),
            (200, Some("PENDING")),
            "[revoke vs extend] asking to extend {id}: {v}"
        );
    }

    let client = c.client();
    let mut answers = vec![];
    for (i, (kind, requester, id)) in rounds.iter().enumerate() {
        let (ext_path, ext_user, ext_body) = match kind {
            Extension::ApprovedAttach => (
                format!("/requests/{id}/extend/approve"),
                LEAD,
                r#"{"reason":"ok"}"#,
            ),
            _ => (
                format!("/requests/{id}/extend"),
                requester.as_str(),
                r#"{"duration":"15m","reason":"more"}"#,
            ),
        };
        // The requester revokes attach grants; the lead revokes roles.
        let revoker = if *kind == Extension::AutoRole {
            LEAD
        } else {
            requester.as_str()
        };
        let revoke = format!("/requests/{id}/revoke");
        answers.push(race(
            &client,
            Post {
                path: &ext_path,
                user: ext_user,
                groups: "sre",
                body: ext_body,
            },
            Post {
                path: &revoke,
                user: revoker,
                groups: "",
                body: r#"{"reason":"race"}"#,
            },
            lag(i),
        ));
    }

    let all = c.settle();
    let raw = c.raw_iam();
    let mut refused = vec![];
    let mut odd = vec![];
    let mut wrong = vec![];
    let mut attached = vec![];
    let mut no_deny = vec![];
    let mut tally = BTreeMap::<String, usize>::new();
    for ((kind, requester, id), [ext, rev]) in rounds.iter().zip(&answers) {
        let line = |c: &Chaos| {
            format!(
                "{kind:?}: extend {} {} | revoke {} {} | {}",
                ext.0,
                ext.1["error"]["code"].as_str().unwrap_or(""),
                rev.0,
                rev.1["error"]["code"].as_str().unwrap_or(""),
                c.describe(id, all.get(id))
            )
        };
        let stored = all
            .get(id)
            .map(|s| s.stored.clone())
            .unwrap_or_else(|| "NOT STORED".into());
        *tally
            .entry(format!(
                "{kind:?}: extend {} / revoke {} → {stored}",
                ext.0, rev.0
            ))
            .or_default() += 1;
        if rev.0 != 200 {
            refused.push(line(&c));
        }
        if !matches!(ext.0, 200 | 409) {
            odd.push(line(&c));
        }
        if stored != "REVOKED" {
            wrong.push(line(&c));
        }
        if *kind != Extension::AutoRole
            && raw
                .attached
                .contains(&(requester.clone(), "ReadOnlyAccess".into()))
        {
            attached.push(line(&c));
        }
        if *kind == Extension::AutoRole
            && !raw.inline.contains(&(
                format!("arn:aws:iam::{ACCOUNT}:role/JIT-OnCall"),
                format!("jit-revoke-{id}"),
            ))
        {
            no_deny.push(line(&c));
        }
    }
    eprintln!("chaos [revoke vs extend]: {tally:#?}");
    c.broke("races", "REVOKE REFUSED on a granted request", refused);
    c.broke("races", "UNEXPECTED EXTEND ANSWER (not 200/409)", odd);
    c.broke(
        "races",
        "NOT REVOKED after a revoke answered or raced",
        wrong,
    );
    c.broke("races", "REVOKED WITH THE POLICY STILL ATTACHED", attached);
    c.broke(
        "races",
        "REVOKED ROLE GRANT WITHOUT ITS SESSION DENY",
        no_deny,
    );
    c.check(
        "after the races, settled",
        &all,
        &ids.iter().cloned().collect(),
        false,
    );
    c.end_all_windows(&ids.into_iter().collect());
    c.finish();
}
