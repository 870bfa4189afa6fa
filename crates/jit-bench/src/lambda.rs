//! The Lambda binaries under a fake Runtime API: cold init time (spawn →
//! first `next`) and memory after serving one event. [`LAMBDAS`] says what
//! differs between them: each one's own environment and sample event.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};

use crate::procfs::{self, Memory};
use crate::runtime_api::{Event, FakeRuntimeApi, Msg, Route};
use crate::stats::Summary;

/// Longest a cold start may take before the run is called broken.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the first event may take (the SDK retries a refused connection
/// with backoff; this is far above that).
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);
const REQUEST_ID: &str = "8f5c3a4e-bench-0001-0000-000000000001";
/// Every AWS endpoint: a refused loopback port, so nothing leaves the
/// machine and every call fails at once (the fake Secrets Manager aside).
pub const REFUSED_ENDPOINT: &str = "http://127.0.0.1:1";
const STATE_MACHINE_ARN: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:jit";

/// One Lambda as the bench runs it: what differs from the others.
#[derive(Debug, Clone, Copy)]
pub struct LambdaSpec {
    /// The Cargo package, which is also the binary's name.
    pub package: &'static str,
    /// Its own variables (its `Environment` in `template.yaml`, with local
    /// values), besides [`common_env`]'s.
    pub env: &'static [(&'static str, &'static str)],
    /// Reads secrets from Secrets Manager at init: it gets the fake one
    /// (`AWS_ENDPOINT_URL_SECRETS_MANAGER`), or it could never start.
    pub reads_secrets: bool,
    /// The sample event under `events/` served once before memory is read;
    /// `None`: memory is read when it is ready for its first event.
    pub event: Option<&'static str>,
    /// What serving that event does here, for the report.
    pub event_note: &'static str,
}

/// Slack's Web API: the refused port too (not AWS, but nothing leaves the
/// machine either). The secrets' ids (`JIT_*_ID`) are the template's
/// kind; the fake Secrets Manager answers any id.
const SLACK_URL: (&str, &str) = ("JIT_SLACK_URL", REFUSED_ENDPOINT);

/// The Lambdas, in the order the report lists them.
pub const LAMBDAS: &[LambdaSpec] = &[
    LambdaSpec {
        package: "request",
        env: &[("JIT_STATE_MACHINE_ARN", STATE_MACHINE_ARN)],
        reads_secrets: false,
        event: Some("events/request-list.json"),
        event_note: "API Gateway REST `GET /requests?limit=10` from an IAM caller: lists from DynamoDB (refused), answers an error response",
    },
    LambdaSpec {
        package: "access",
        env: &[("JIT_STATE_MACHINE_ARN", STATE_MACHINE_ARN)],
        reads_secrets: false,
        event: Some("events/request-credentials.json"),
        event_note: "API Gateway REST `GET /requests/{id}/credentials` from an IAM caller: reads the request from DynamoDB (refused), answers an error response",
    },
    LambdaSpec {
        package: "catalog-check",
        env: &[("JIT_STATE_MACHINE_ARN", STATE_MACHINE_ARN)],
        reads_secrets: false,
        event: Some("events/catalog-check.json"),
        event_note: "API Gateway REST `GET /catalog/check` from a JWT caller outside the catalog's admin_groups: a 403 `not_admin`, before any AWS call",
    },
    LambdaSpec {
        package: "approval-callback",
        env: &[
            ("JIT_STATE_MACHINE_ARN", STATE_MACHINE_ARN),
            ("JIT_LINK_SECRET_ID", "jit/link-key"),
            ("JIT_PUBLIC_URL_ID", "jit-public-url"),
            ("JIT_SLACK_BOT_TOKEN_ID", "jit/slack-bot-token"),
            ("JIT_SLACK_SIGNING_SECRET_ID", "jit/slack-signing-secret"),
            SLACK_URL,
        ],
        reads_secrets: true,
        event: Some("events/approval-callback-get.json"),
        event_note: "API Gateway REST `GET /approvals/{id}` with a signed-link query whose signature does not verify (the sample's is a placeholder): a 403 page, before any AWS call",
    },
    LambdaSpec {
        package: "slack-notify",
        env: &[
            ("JIT_LINK_SECRET_ID", "jit/link-key"),
            ("JIT_PUBLIC_URL_ID", "jit-public-url"),
            ("JIT_SLACK_BOT_TOKEN_ID", "jit/slack-bot-token"),
            ("JIT_EMAIL_FROM", "jit@example.com"),
            SLACK_URL,
        ],
        reads_secrets: true,
        event: Some("events/slack-notify.json"),
        event_note: "the workflow's approval task (`requestId`, `taskToken`): reads the request from DynamoDB (refused) to store the token on it, fails the task",
    },
    LambdaSpec {
        package: "expire",
        env: &[],
        reads_secrets: false,
        event: Some("events/expire.json"),
        event_note: "the workflow's Revoke step (`requestId`): reads the request from DynamoDB (refused), fails the task",
    },
    LambdaSpec {
        package: "update-status",
        env: &[],
        reads_secrets: false,
        event: Some("events/update-status.json"),
        event_note: "a guarded transition to `VALIDATING`: reads the request from DynamoDB (refused), fails the task",
    },
    LambdaSpec {
        package: "generate-policy",
        env: &[],
        reads_secrets: false,
        event: Some("events/generate-policy.json"),
        event_note: "the workflow's GeneratePolicy step (`requestId`): reads the request from DynamoDB (refused), fails the task",
    },
    LambdaSpec {
        package: "audit-export",
        env: &[("JIT_EXPORT_BUCKET", "jit-audit-export")],
        reads_secrets: false,
        event: Some("events/audit-export-stream.json"),
        event_note: "one audit-table stream INSERT: puts its day's JSON lines into S3 (refused), fails the batch",
    },
    LambdaSpec {
        package: "console",
        env: &[
            ("JIT_OIDC_ISSUER", REFUSED_ENDPOINT),
            ("JIT_OIDC_CLIENT_ID", "jit-console"),
            ("JIT_CONSOLE_URL", REFUSED_ENDPOINT),
            ("JIT_SESSION_KEY_ID", "jit/console-session-key"),
        ],
        reads_secrets: true,
        event: Some("events/console-home.json"),
        event_note: "API Gateway HTTP API `GET /` without a session: a 303 to the sign-in page, before any network call",
    },
    LambdaSpec {
        package: "identity-center",
        env: &[("JIT_IDENTITY_CENTER_MODE", "directory")],
        reads_secrets: false,
        event: Some("events/identity-center.json"),
        event_note: "a `groupsOf` call as the HTTP API functions send it: the sample catalog names no Identity Center instance, so it is refused (permanent), before any AWS call",
    },
    LambdaSpec {
        package: "assume-role",
        env: &[],
        reads_secrets: false,
        event: Some("events/assume-role.json"),
        event_note: "the workflow's Grant step (`requestId`): reads the request from DynamoDB (refused), fails the task",
    },
];

/// What Lambda itself sets, and the template's `Globals` (the catalog),
/// the same for every function but its name.
pub fn common_env(function_name: &str, catalog: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "AKIDJITBENCHDUMMY000".into()),
        ("AWS_SECRET_ACCESS_KEY", "jit-bench-dummy-secret".into()),
        ("JIT_CATALOG", catalog.display().to_string()),
        // Nothing leaves the machine: every AWS call is refused at once.
        ("AWS_ENDPOINT_URL", REFUSED_ENDPOINT.into()),
    ]
}

/// What the child is started with.
pub struct Setup {
    pub binary: PathBuf,
    /// The environment, besides `AWS_LAMBDA_RUNTIME_API`; the child gets
    /// nothing else (no HOME, no ~/.aws: as on Lambda).
    pub env: Vec<(&'static str, String)>,
    pub function_arn: String,
    pub logs: PathBuf,
}

impl Setup {
    /// `spec`'s function: `binary`, the common environment with its own on
    /// top, and `secrets` (the fake Secrets Manager's endpoint) if it reads
    /// secrets. Its logs go to `logs/<package>/`.
    pub fn new(
        spec: &LambdaSpec,
        binary: PathBuf,
        catalog: &Path,
        secrets: &str,
        logs: &Path,
    ) -> anyhow::Result<Setup> {
        let function_name = format!("jit-{}", spec.package);
        let mut env = common_env(&function_name, catalog);
        env.extend(spec.env.iter().map(|(k, v)| (*k, v.to_string())));
        if spec.reads_secrets {
            env.push(("AWS_ENDPOINT_URL_SECRETS_MANAGER", secrets.to_string()));
        }
        let logs = logs.join(spec.package);
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        Ok(Setup {
            binary,
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}"),
            env,
            logs,
        })
    }

    fn spawn(&self, api: &FakeRuntimeApi, log_name: &str) -> anyhow::Result<Child> {
        let log = self.logs.join(log_name);
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        Command::new(&self.binary)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", api.host_port())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))
    }
}

/// A child we started; killed and reaped when dropped, whatever its state.
struct Running(Option<Child>);

impl Running {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the child is only taken by finish")
    }

    /// Kills the child (by its handle: only ever a process we started) and
    /// reaps it with `wait4`, returning the CPU time (user + system) it
    /// used in its whole life. Bounded: gives up after 5 s.
    #[expect(
        clippy::zombie_processes,
        reason = "reaped below with wait4, which std does not offer, for its rusage"
    )]
    fn finish(mut self) -> anyhow::Result<Duration> {
        let mut child = self.0.take().expect("finish is called once");
        child.kill().context("killing the function")?;
        let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut status = 0;
            // SAFETY: `rusage` is plain old data; all zeroes is a valid value.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: both pointers are to live locals; `pid` is our own child,
            // not yet reaped (std never waited on it), so it names no other process.
            let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if r == pid {
                return Ok(cpu_time(&usage));
            }
            if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                bail!("wait4: {}", std::io::Error::last_os_error());
            }
            if Instant::now() > deadline {
                bail!("the killed function was not reaped within 5 s");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
}

/// User plus system CPU time of a reaped process.
fn cpu_time(u: &libc::rusage) -> Duration {
    timeval(u.ru_utime) + timeval(u.ru_stime)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.chars().take(400).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits for the child's next `GET .../next`, failing fast if it exits or
/// reports an init error.
fn wait_for_next(
    api: &FakeRuntimeApi,
    child: &mut Running,
    timeout: Duration,
    log: &Path,
) -> anyhow::Result<(Instant, Sender<Event>)> {
    let deadline = Instant::now() + timeout;
    loop {
        match api.recv(POLL) {
            Ok(Msg::Next { arrived, reply }) => return Ok((arrived, reply)),
            Ok(Msg::Posted {
                route: Route::InitError,
                body,
                ..
            }) => bail!(
                "the function reported an init error: {}",
                String::from_utf8_lossy(&body)
            ),
            Ok(Msg::Posted { route, body, .. }) => bail!(
                "unexpected call while waiting for `next`: {route:?} {}",
                String::from_utf8_lossy(&body)
            ),
            Err(RecvTimeoutError::Disconnected) => bail!("the fake Runtime API stopped"),
            Err(RecvTimeoutError::Timeout) => {
                if let Some(status) = child.child().try_wait()? {
                    bail!(
                        "the function exited ({status}) before asking for an event; its log ends:\n{}",
                        log_tail(log, 10)
                    );
                }
                if Instant::now() > deadline {
                    bail!("no `next` within {timeout:?}");
                }
            }
        }
    }
}

/// Cold init timings.
#[derive(Debug, Clone)]
pub struct InitResult {
    pub runs: Vec<Duration>,
    pub summary: Summary,
    /// CPU time (user + system, all threads) each run used up to the kill
    /// just after its first `next`: init's cost without the waiting a busy
    /// machine adds.
    pub cpu: Vec<Duration>,
    pub cpu_summary: Summary,
    /// Discarded first runs (page cache, first exec).
    pub warmup: usize,
    /// Peak resident memory at the first `next`, per run.
    pub hwm_at_ready: Vec<u64>,
}

/// Spawns the function `warmup + runs` times, each time measuring spawn →
/// first `next`, then killing it.
pub fn measure_init(setup: &Setup, runs: usize, warmup: usize) -> anyhow::Result<InitResult> {
    if runs == 0 {
        bail!("--init-runs must be at least 1");
    }
    let mut times = Vec::with_capacity(runs);
    let mut cpu = Vec::with_capacity(runs);
    let mut hwm = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        // A fresh port per run: nothing a killed child sent can leak into
        // the next run.
        let api = FakeRuntimeApi::start().context("starting the fake Runtime API")?;
        let log_name = format!("init-{i}.log");
        let started = Instant::now();
        let mut child = Running(Some(setup.spawn(&api, &log_name)?));
        let (arrived, reply) =
            wait_for_next(&api, &mut child, INIT_TIMEOUT, &setup.logs.join(&log_name))
                .with_context(|| format!("init run {}", i + 1))?;
        let mem = procfs::memory_of(child.child().id())?;
        // It has just asked for an event: the CPU time it has used is its
        // init's, plus the little it did after sending `next`.
        let used = child.finish()?;
        drop(reply);
        if i >= warmup {
            times.push(arrived.saturating_duration_since(started));
            cpu.push(used);
            hwm.push(mem.hwm_bytes);
        }
    }
    Ok(InitResult {
        summary: Summary::of(&times).context("no init samples")?,
        runs: times,
        cpu_summary: Summary::of(&cpu).context("no init samples")?,
        cpu,
        warmup,
        hwm_at_ready: hwm,
    })
}

/// How the function answered the event.
#[derive(Debug, Clone)]
pub struct EventResult {
    /// `response` or `error`: which Runtime API path it posted to.
    pub posted_to: &'static str,
    /// Event handed out → answer posted.
    pub took: Duration,
    /// The API Gateway response's `statusCode`, when it is one.
    pub status_code: Option<u64>,
    /// The API's `error.code` in that response's body, when there is one.
    pub error_code: Option<String>,
    /// The `errorType` of a task's error, when it posted one.
    pub error_type: Option<String>,
    pub memory_at_ready: Memory,
    pub memory_after_event: Memory,
    pub log_lines: usize,
    pub log_levels: Vec<(String, usize)>,
    /// The `fields` of the first ERROR line, shortened: why it failed.
    pub first_error: Option<String>,
}

/// Starts the function, serves it `event` once, and reads its memory while
/// it waits for the second event. Without an event, it reads the memory
/// when the function is ready for its first one, and the answer fields say
/// nothing was served.
pub fn measure_event(setup: &Setup, event: Option<&[u8]>) -> anyhow::Result<EventResult> {
    let api = FakeRuntimeApi::start().context("starting the fake Runtime API")?;
    let log = setup.logs.join("event.log");
    let mut child = Running(Some(setup.spawn(&api, "event.log")?));
    let pid = child.child().id();

    let (_, reply) = wait_for_next(&api, &mut child, INIT_TIMEOUT, &log)?;
    let memory_at_ready = procfs::memory_of(pid)?;
    let Some(event) = event else {
        drop(child);
        drop(reply);
        let (log_lines, log_levels, first_error) =
            log_summary(&std::fs::read_to_string(&log).unwrap_or_default());
        return Ok(EventResult {
            posted_to: "(no event served)",
            took: Duration::ZERO,
            status_code: None,
            error_code: None,
            error_type: None,
            memory_at_ready,
            memory_after_event: memory_at_ready,
            log_lines,
            log_levels,
            first_error,
        });
    };
    let deadline_epoch_ms = (SystemTime::now() + Duration::from_secs(30))
        .duration_since(UNIX_EPOCH)?
        .as_millis();
    let sent = Instant::now();
    reply
        .send(Event {
            request_id: REQUEST_ID.into(),
            deadline_epoch_ms,
            function_arn: setup.function_arn.clone(),
            body: event.to_vec(),
        })
        .map_err(|_| anyhow!("the connection asking for the event closed"))?;

    let end = Instant::now() + EVENT_TIMEOUT;
    let (posted_to, took, body) = loop {
        match api.recv(POLL) {
            Ok(Msg::Posted {
                route: Route::Response(id),
                arrived,
                body,
            }) if id == REQUEST_ID => break ("response", arrived - sent, body),
            Ok(Msg::Posted {
                route: Route::Error(id),
                arrived,
                body,
            }) if id == REQUEST_ID => break ("error", arrived - sent, body),
            Ok(other) => bail!(
                "unexpected call while the event was served: {other:?}; its log ends:\n{}",
                log_tail(&log, 10)
            ),
            Err(RecvTimeoutError::Disconnected) => bail!("the fake Runtime API stopped"),
            Err(RecvTimeoutError::Timeout) => {
                if let Some(status) = child.child().try_wait()? {
                    bail!(
                        "the function exited ({status}) serving the event; its log ends:\n{}",
                        log_tail(&log, 10)
                    );
                }
                if Instant::now() > end {
                    bail!("no answer to the event within {EVENT_TIMEOUT:?}");
                }
            }
        }
    };

    let (_, second) = wait_for_next(&api, &mut child, INIT_TIMEOUT, &log)
        .context("waiting for the second `next`")?;
    let memory_after_event = procfs::memory_of(pid)?;
    drop(child);
    drop(second);

    let (status_code, error_code) = describe_answer(&body);
    let error_type = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errorType"].as_str().map(str::to_string));
    let (log_lines, log_levels, first_error) =
        log_summary(&std::fs::read_to_string(&log).unwrap_or_default());
    Ok(EventResult {
        posted_to,
        took,
        status_code,
        error_code,
        error_type,
        memory_at_ready,
        memory_after_event,
        log_lines,
        log_levels,
        first_error,
    })
}

/// Everything measured for one Lambda.
pub struct LambdaRun {
    pub spec: LambdaSpec,
    pub bin: Result<crate::binaries::BinaryInfo, String>,
    /// Distinct crates it links (`cargo tree`), when cargo could say.
    pub crates: Option<usize>,
    pub init: Result<InitResult, String>,
    pub event: Result<EventResult, String>,
    /// The environment it ran with (for the report).
    pub env: Vec<(&'static str, String)>,
}

impl LambdaRun {
    pub fn complete(&self) -> bool {
        self.bin.is_ok() && self.init.is_ok() && self.event.is_ok()
    }
}

/// Cold starts and the memory after one event of `setup`'s function, whose
/// binary `bin` describes (nothing runs when it could not be read).
pub fn measure(
    spec: &LambdaSpec,
    setup: &Setup,
    root: &Path,
    bin: Result<crate::binaries::BinaryInfo, String>,
    crates: Option<usize>,
    init_runs: usize,
) -> LambdaRun {
    let (init, event) = if bin.is_ok() {
        eprintln!("jit-bench: `{}` cold init x{init_runs} ...", spec.package);
        let init = measure_init(setup, init_runs, 1).map_err(|e| format!("{e:#}"));
        eprintln!(
            "jit-bench: `{}` memory serving {} ...",
            spec.package,
            spec.event.unwrap_or("no event")
        );
        let event = spec
            .event
            .map(|e| std::fs::read(root.join(e)).with_context(|| format!("reading {e}")))
            .transpose()
            .and_then(|ev| measure_event(setup, ev.as_deref()))
            .map_err(|e| format!("{e:#}"));
        (init, event)
    } else {
        let why = format!("no `{}` binary to run", spec.package);
        (Err(why.clone()), Err(why))
    };
    LambdaRun {
        spec: *spec,
        bin,
        crates,
        init,
        event,
        env: setup.env.clone(),
    }
}

/// The status code and API error code of an API Gateway proxy response.
fn describe_answer(body: &[u8]) -> (Option<u64>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None);
    };
    let status = v["statusCode"].as_u64();
    let code = v["body"]
        .as_str()
        .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
        .and_then(|b| b["error"]["code"].as_str().map(str::to_string));
    (status, code)
}

/// How many log lines, how many of each JSON `level`, and the `fields` of
/// the first ERROR (at most 300 characters).
fn log_summary(text: &str) -> (usize, Vec<(String, usize)>, Option<String>) {
    let mut levels: Vec<(String, usize)> = Vec::new();
    let mut lines = 0;
    let mut first_error = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        lines += 1;
        let v = serde_json::from_str::<serde_json::Value>(line).ok();
        let level = v
            .as_ref()
            .and_then(|v| v["level"].as_str().map(str::to_string))
            .unwrap_or_else(|| "(not JSON)".into());
        if level == "ERROR" && first_error.is_none() {
            let fields = v
                .as_ref()
                .map(|v| v["fields"].to_string())
                .unwrap_or_default();
            first_error = Some(fields.chars().take(300).collect());
        }
        match levels.iter_mut().find(|(l, _)| *l == level) {
            Some((_, n)) => *n += 1,
            None => levels.push((level, 1)),
        }
    }
    (lines, levels, first_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lambda_is_listed_once_with_an_event_that_exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut names: Vec<&str> = LAMBDAS.iter().map(|l| l.package).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), LAMBDAS.len(), "listed twice");
        // Every function the template builds is measured, and nothing else.
        let template = std::fs::read_to_string(root.join("template.yaml")).unwrap();
        let mut built: Vec<&str> = template
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Binary: "))
            .map(str::trim)
            .collect();
        built.sort_unstable();
        built.dedup();
        assert_eq!(names, built, "LAMBDAS and template.yaml's functions");
        for l in LAMBDAS {
            assert!(
                root.join("crates")
                    .join(l.package)
                    .join("Cargo.toml")
                    .is_file(),
                "{}",
                l.package
            );
            if let Some(e) = l.event {
                assert!(root.join(e).is_file(), "{e}");
            }
        }
    }

    #[test]
    fn no_lambda_is_given_a_real_endpoint() {
        // GIVEN every Lambda's environment
        for l in LAMBDAS {
            let setup = Setup::new(
                l,
                PathBuf::from("/bin/true"),
                Path::new("/c.yaml"),
                "http://127.0.0.1:9",
                &std::env::temp_dir().join("jit-bench-test-logs"),
            )
            .unwrap();
            // THEN every URL in it is on loopback
            for (k, v) in &setup.env {
                if v.contains("://") {
                    assert!(v.starts_with("http://127.0.0.1:"), "{}: {k}={v}", l.package);
                }
            }
            assert!(
                setup
                    .env
                    .iter()
                    .any(|(k, v)| *k == "AWS_ENDPOINT_URL" && v == REFUSED_ENDPOINT)
            );
        }
    }

    #[test]
    fn cpu_time_is_user_plus_system() {
        // SAFETY: plain old data; all zeroes is valid.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        u.ru_utime = libc::timeval {
            tv_sec: 1,
            tv_usec: 500_000,
        };
        u.ru_stime = libc::timeval {
            tv_sec: 0,
            tv_usec: 250,
        };
        assert_eq!(cpu_time(&u), Duration::from_micros(1_500_250));
    }

    #[test]
    fn reads_status_and_error_code_of_a_proxy_response() {
        let body = br#"{"statusCode":500,"headers":{},"body":"{\"error\":{\"code\":\"internal\",\"message\":\"x\"}}","isBase64Encoded":false}"#;
        assert_eq!(describe_answer(body), (Some(500), Some("internal".into())));
        assert_eq!(describe_answer(b"not json"), (None, None));
    }

    #[test]
    fn counts_log_levels_and_keeps_the_first_error() {
        // GIVEN a JSON log with two errors and a stray plain line
        let log = "{\"level\":\"INFO\"}\n\
                   {\"level\":\"ERROR\",\"fields\":{\"message\":\"boom\"}}\n\
                   {\"level\":\"INFO\"}\nplain\n\
                   {\"level\":\"ERROR\",\"fields\":{\"message\":\"later\"}}\n";
        // WHEN summarised
        let (n, levels, first_error) = log_summary(log);
        // THEN every line is counted by level, and the first error is kept
        assert_eq!(n, 5);
        assert_eq!(
            levels,
            vec![
                ("INFO".to_string(), 2),
                ("ERROR".to_string(), 2),
                ("(not JSON)".to_string(), 1)
            ]
        );
        assert_eq!(first_error.as_deref(), Some("{\"message\":\"boom\"}"));
    }
}
