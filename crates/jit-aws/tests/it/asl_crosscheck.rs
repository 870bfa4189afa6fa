//! Fidelity cross-check: `state-machine/approval.asl.json` run by moto's Step
//! Functions interpreter and by `jit-engine`, with the same input and the
//! same task answers, must take the same path.
//!
//! For each scenario the test creates, on moto (started by `scripts/test`,
//! which switches on `stepfunctions.execute_state_machine` and
//! `lambda.use_docker=false` first): one IAM role, the four task Lambdas
//! (`CreateFunction`; their code never runs) and the state machine with
//! their ARNs substituted for `${…FunctionArn}`. The Lambdas' answers are
//! queued, in invocation order, at
//! `POST /moto-api/static/lambda-simple/response`; the approval decision is
//! sent with `SendTaskSuccess`/`SendTaskFailure` using the token read from
//! the `TaskScheduled` event. `jit-engine` runs the same file with the same
//! substitutions through [`run_with_canned_tasks`]. Compared: the states
//! entered, every state's input, the sequence of history event types, the
//! Lambda calls (function and payload), and the final status, error, cause
//! and output.
//!
//! What moto 5.2.5 cannot do faithfully, and how the test deals with it:
//! - Its no-Docker Lambda answers every invoke from one queue per
//!   account/region (any function, first in first out; the request body when
//!   the queue is empty) and never looks the function up: a missing function
//!   is *not* `Lambda.ResourceNotFoundException`. The scenarios therefore run
//!   one at a time (a lock) and check that exactly as many Lambda calls were
//!   made as answers were queued.
//! - It raises a Lambda function error (`FunctionError`) only when the
//!   answer exceeds 6,000,000 bytes, as `Function.ResponseSizeTooLarge`. The
//!   task-failure scenario uses exactly that (an oversized queued answer),
//!   so it exercises the real path (function error → `errorType` as the
//!   error name → no retrier → `Catch` `States.ALL` → RecordFailed → Fail).
//!   Our own error types (`Transient` retried, `NoLongerApplies` caught) and
//!   Lambda service errors cannot be raised on moto; they are covered by
//!   jit-engine's tests only. moto's Step Functions mock-config mode
//!   (`MockedResponses`) is stubbed out in 5.2.5 (it never loads a config).
//! - `SendTaskFailure`'s `cause` is dropped (the caught error's `Cause` is
//!   null; AWS keeps it). The deny scenario checks that moto drops it and
//!   jit-engine keeps it, then compares the rest ([`Bridge`]).
//! - Waits and timeouts run in real time, so every wait here is ≤ 2 s
//!   (jit-engine's clock jumps instead); a timestamp Wait is computed in
//!   whole seconds (truncated), so it may end up to a second early. Only the
//!   path is compared, never timings.
//! - moto's task results carry only `StatusCode` and `Payload` (AWS and
//!   jit-engine add `ExecutedVersion` and `Sdk*Metadata`); no state of the
//!   definition keeps the whole result, so states' inputs still compare.
//! - Neither interpreter is AWS on `States.Runtime`: AWS documents that
//!   `States.ALL` does not catch it and reports path failures in a state's
//!   fields as `States.Runtime`, failing the execution. For a
//!   `ResultSelector` path missing from a task's result, moto raises
//!   `States.Runtime` and catches it anyway; jit-engine raises
//!   `States.ParameterPathFailure` and catches it. They take the same path,
//!   which [`a_result_selector_failure_takes_the_same_path_on_both`] checks —
//!   a path AWS itself would not take.
//!
//! One difference this test found was jit-engine's: a `.waitForTaskToken`
//! timeout is caught as `{"Error": "States.Timeout", "Cause": ""}` on AWS
//! and moto, and jit-engine used to fill in a cause text. Fixed in the
//! engine; the timeout scenario now compares the caught error exactly.

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::HistoryEvent;
use jit_engine::{CannedAnswer, CannedTasks, RunReport, Substitutions, run_with_canned_tasks};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEFINITION: &str = include_str!("../../../../state-machine/approval.asl.json");

/// An empty zip archive: moto stores the code but never runs it.
const EMPTY_ZIP: [u8; 22] = [
    0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// How long one scenario may take on moto before the test gives up.
const PATIENCE: Duration = Duration::from_secs(30);
/// The bound on the whole test (all scenarios, both executors).
const WHOLE_TEST: Duration = Duration::from_secs(150);

/// moto's no-Docker Lambda raises a function error only above this size.
const MOTO_OVERSIZE: usize = 6_000_000;
/// What moto's Lambda answers instead of an oversized payload.
const OVERSIZE_ERROR: &str = "Function.ResponseSizeTooLarge";
const OVERSIZE_CAUSE: &str = r#"{"errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}"#;

const DENY_CAUSE: &str = "lead@example.com: not during the change freeze";

/// The task functions, as `template.yaml` substitutes them.
const FUNCTIONS: [&str; 5] = [
    "UpdateStatusFunctionArn",
    "GeneratePolicyFunctionArn",
    "SlackNotifyFunctionArn",
    "AssumeRoleFunctionArn",
    "ExpireFunctionArn",
];

/// Scenarios share moto's one Lambda answer queue: one at a time.
static MOTO_QUEUE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a task Lambda answers.
#[derive(Debug, Clone)]
enum Answer {
    Returns(Value),
    /// `{"expiresAt": <now + n s>}`, fixed when the scenario starts
    /// ([`Scenario::resolved`]), so the Wait really waits on moto.
    ExpiresIn(i64),
    /// A function error; on moto, the oversized answer.
    FunctionError,
}

/// The approver's decision for RequestApproval.
#[derive(Debug, Clone)]
enum Decision {
    Approve(Value),
    Deny {
        error: &'static str,
        cause: &'static str,
    },
    /// Nobody decides: the task times out.
    None,
}

#[derive(Debug, Clone)]
struct Scenario {
    name: &'static str,
    input: Value,
    /// Every Lambda call in order, by state (RequestApproval's call is the
    /// notification; its answer is ignored, the decision comes by token).
    calls: Vec<(&'static str, Answer)>,
    decision: Option<Decision>,
    /// The last state the design says this path enters.
    ends_in: &'static str,
    /// Known differences to check and then set aside (see [`Bridge`]).
    bridges: &'static [Bridge],
}

/// A known difference between the two executors, in one field. Each is
/// checked from both sides before the field is set aside, so the test fails
/// (and says what to remove) as soon as either side changes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bridge {
    /// moto drops `SendTaskFailure`'s cause (the caught error's `Cause` is
    /// null); jit-engine keeps it, as AWS does.
    MotoDropsFailureCause,
    /// A `ResultSelector` path missing from the task result: moto reports
    /// `States.Runtime` (and records a `TaskFailed` event after the
    /// `TaskSucceeded`), jit-engine `States.ParameterPathFailure` (its own
    /// cause text, no extra event); both catch it with `States.ALL`.
    ResultSelectorErrorName,
}

/// One executor's account of a run, in comparable form.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    status: String,
    states: Vec<String>,
    /// Each entered state's input (parsed).
    state_inputs: Vec<Value>,
    event_types: Vec<String>,
    /// (function, payload) of every Lambda task, task token redacted.
    invocations: Vec<(String, Value)>,
    output: Option<Value>,
    error: Option<String>,
    cause: Option<String>,
}

fn rfc3339_in(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Scenario {
    /// The same scenario with its times fixed from now.
    fn resolved(mut self) -> Scenario {
        for (_, answer) in &mut self.calls {
            if let Answer::ExpiresIn(n) = answer {
                *answer = Answer::Returns(json!({ "expiresAt": rfc3339_in(*n) }));
            }
        }
        self
    }
}

fn ok(status: &str) -> Answer {
    Answer::Returns(json!({ "requestId": "R1", "status": status }))
}

fn scenarios() -> Vec<Scenario> {
    let auto = json!({ "requestId": "R1", "autoApprove": true, "approvalTimeoutSeconds": 60 });
    let manual = json!({ "requestId": "R1", "autoApprove": false, "approvalTimeoutSeconds": 60 });
    vec![
        Scenario {
            name: "auto-approve",
            input: auto.clone(),
            calls: vec![
                ("Validate", ok("VALIDATING")),
                (
                    "Grant",
                    Answer::Returns(json!({ "requestId": "R1", "granted": true })),
                ),
                ("RecordGranted", Answer::ExpiresIn(2)),
                ("Revoke", ok("EXPIRED")),
            ],
            decision: None,
            ends_in: "Expired",
            bridges: &[],
        },
        Scenario {
            name: "manual approve",
            input: manual.clone(),
            calls: vec![
                ("Validate", ok("VALIDATING")),
                ("RequestApproval", ok("APPROVAL_PENDING")),
                (
                    "Grant",
                    Answer::Returns(json!({ "requestId": "R1", "granted": true })),
                ),
                ("RecordGranted", Answer::ExpiresIn(2)),
                ("Revoke", ok("EXPIRED")),
            ],
            decision: Some(Decision::Approve(
                json!({ "approved": true, "approvers": ["lead@example.com"] }),
            )),
            ends_in: "Expired",
            bridges: &[],
        },
        Scenario {
            name: "deny",
            input: manual.clone(),
            calls: vec![
                ("Validate", ok("VALIDATING")),
                ("RequestApproval", ok("APPROVAL_PENDING")),
            ],
            decision: Some(Decision::Deny {
                error: "Denied",
                cause: DENY_CAUSE,
            }),
            ends_in: "Denied",
            bridges: &[Bridge::MotoDropsFailureCause],
        },
        Scenario {
            name: "approval timeout",
            input: json!({ "requestId": "R1", "autoApprove": false, "approvalTimeoutSeconds": 1 }),
            calls: vec![
                ("Validate", ok("VALIDATING")),
                ("RequestApproval", ok("APPROVAL_PENDING")),
                ("RecordTimedOut", ok("APPROVAL_TIMED_OUT")),
            ],
            decision: Some(Decision::None),
            ends_in: "TimedOut",
            bridges: &[],
        },
        Scenario {
            name: "grant fails",
            input: auto,
            calls: vec![
                ("Validate", ok("VALIDATING")),
                ("Grant", Answer::FunctionError),
                ("RecordFailed", ok("FAILED")),
            ],
            decision: None,
            ends_in: "Failed",
            bridges: &[],
        },
    ]
}

// --- moto -------------------------------------------------------------------

/// POSTs a JSON body to moto's own API (plain HTTP/1.1 on loopback).
async fn moto_api_post(path: &str, body: &str) {
    let endpoint = common::endpoint();
    let authority = endpoint
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("moto endpoint {endpoint} is not http://host:port"))
        .trim_end_matches('/')
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&authority)
        .await
        .unwrap_or_else(|e| panic!("connecting to moto at {authority}: {e}"));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or_default();
    assert!(
        status.starts_with("HTTP/1.1 2") || status.starts_with("HTTP/1.0 2"),
        "POST {path}: {status}"
    );
}

/// Queues the Lambda answers on moto, in call order.
async fn queue_answers(calls: &[(&str, Answer)]) {
    let results: Vec<String> = calls
        .iter()
        .map(|(_, a)| match a {
            Answer::Returns(v) => v.to_string(),
            Answer::ExpiresIn(_) => panic!("queue_answers: resolve the scenario first"),
            Answer::FunctionError => "x".repeat(MOTO_OVERSIZE),
        })
        .collect();
    let body = json!({ "results": results, "region": "us-east-1" }).to_string();
    moto_api_post("/moto-api/static/lambda-simple/response", &body).await;
}

struct Moto {
    sfn: aws_sdk_sfn::Client,
    role_arn: String,
    substitutions: Substitutions,
}

async fn moto() -> Moto {
    let config = common::sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&config);
    let lambda = aws_sdk_lambda::Client::new(&config);
    let role_arn = iam
        .create_role()
        .role_name(common::unique_name("jit-xcheck"))
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await
        .expect("create role")
        .role()
        .expect("a role")
        .arn()
        .to_string();
    let mut substitutions = Substitutions::new();
    for placeholder in FUNCTIONS {
        let arn = lambda
            .create_function()
            .function_name(common::unique_name(
                placeholder.trim_end_matches("FunctionArn"),
            ))
            .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
            .role(&role_arn)
            .handler("bootstrap")
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .zip_file(aws_sdk_lambda::primitives::Blob::new(EMPTY_ZIP.to_vec()))
                    .build(),
            )
            .send()
            .await
            .expect("create function")
            .function_arn()
            .expect("a function ARN")
            .to_string();
        substitutions.insert(placeholder.to_string(), arn);
    }
    Moto {
        sfn: aws_sdk_sfn::Client::new(&config),
        role_arn,
        substitutions,
    }
}

/// `DefinitionSubstitutions` as CloudFormation applies them: plain text.
fn substituted(definition: &str, subs: &Substitutions) -> String {
    let mut text = definition.to_string();
    for (name, value) in subs {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    assert!(
        !text.contains("${"),
        "a placeholder is left in the definition"
    );
    text
}

impl Moto {
    async fn run(&self, definition: &str, s: &Scenario) -> Observed {
        let machine = self
            .sfn
            .create_state_machine()
            .name(common::unique_name("jit-xcheck"))
            .definition(substituted(definition, &self.substitutions))
            .role_arn(&self.role_arn)
            .send()
            .await
            .expect("moto accepts the definition")
            .state_machine_arn()
            .to_string();
        queue_answers(&s.calls).await;
        let execution = self
            .sfn
            .start_execution()
            .state_machine_arn(&machine)
            .name(common::unique_name("x"))
            .input(s.input.to_string())
            .send()
            .await
            .expect("start execution")
            .execution_arn()
            .to_string();
        let deadline = Instant::now() + PATIENCE;
        if let Some(decision) = &s.decision {
            let token = self.wait_for_token(&execution, deadline).await;
            match decision {
                Decision::Approve(output) => {
                    self.sfn
                        .send_task_success()
                        .task_token(&token)
                        .output(output.to_string())
                        .send()
                        .await
                        .expect("send task success");
                }
                Decision::Deny { error, cause } => {
                    self.sfn
                        .send_task_failure()
                        .task_token(&token)
                        .error(*error)
                        .cause(*cause)
                        .send()
                        .await
                        .expect("send task failure");
                }
                Decision::None => {}
            }
        }
        let described = loop {
            let d = self
                .sfn
                .describe_execution()
                .execution_arn(&execution)
                .send()
                .await
                .expect("describe execution");
            if d.status().as_str() != "RUNNING" {
                break d;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the moto execution is still RUNNING after {PATIENCE:?}",
                s.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let history = self.history(&execution).await;
        Observed {
            status: described.status().as_str().to_string(),
            states: history
                .iter()
                .filter_map(|e| e.state_entered_event_details())
                .map(|d| d.name().to_string())
                .collect(),
            state_inputs: history
                .iter()
                .filter_map(|e| e.state_entered_event_details())
                .map(|d| parse_json(d.input().unwrap_or("null")))
                .collect(),
            event_types: history
                .iter()
                .map(|e| e.r#type().as_str().to_string())
                .collect(),
            invocations: history
                .iter()
                .filter_map(|e| e.task_scheduled_event_details())
                .map(|d| invocation(&parse_json(d.parameters())))
                .collect(),
            output: described.output().map(parse_json),
            error: described.error().map(str::to_string),
            cause: described.cause().map(str::to_string),
        }
    }

    /// Waits until RequestApproval waits for its token; returns the token.
    async fn wait_for_token(&self, execution: &str, deadline: Instant) -> String {
        loop {
            let history = self.history(execution).await;
            let submitted = history
                .iter()
                .any(|e| e.r#type().as_str() == "TaskSubmitted");
            let token = history
                .iter()
                .filter_map(|e| e.task_scheduled_event_details())
                .filter_map(|d| {
                    parse_json(d.parameters())["Payload"]["taskToken"]
                        .as_str()
                        .map(str::to_string)
                })
                .next();
            if let (true, Some(token)) = (submitted, token) {
                return token;
            }
            assert!(
                Instant::now() < deadline,
                "RequestApproval never waited for its token on moto"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn history(&self, execution: &str) -> Vec<HistoryEvent> {
        let mut events = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .sfn
                .get_execution_history()
                .execution_arn(execution)
                .set_next_token(next)
                .send()
                .await
                .expect("execution history");
            events.extend(page.events().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return events,
            }
        }
    }
}

// --- jit-engine ---------------------------------------------------------------

fn canned(s: &Scenario, substitutions: &Substitutions) -> CannedTasks {
    let mut canned = CannedTasks::new();
    for (state, answer) in &s.calls {
        if *state == "RequestApproval" {
            continue; // answered by the decision below
        }
        canned = canned.answer(
            *state,
            match answer {
                Answer::Returns(v) => CannedAnswer::Output { output: v.clone() },
                Answer::ExpiresIn(_) => panic!("canned: resolve the scenario first"),
                Answer::FunctionError => CannedAnswer::Error {
                    error: OVERSIZE_ERROR.into(),
                    cause: OVERSIZE_CAUSE.into(),
                },
            },
        );
    }
    if let Some(decision) = &s.decision {
        canned = canned.answer(
            "RequestApproval",
            match decision {
                Decision::Approve(v) => CannedAnswer::Output { output: v.clone() },
                Decision::Deny { error, cause } => CannedAnswer::Error {
                    error: error.to_string(),
                    cause: cause.to_string(),
                },
                Decision::None => CannedAnswer::Timeout { timeout: true },
            },
        );
    }
    canned.with_substitutions(substitutions.clone())
}

async fn engine_run(definition: &str, s: &Scenario, substitutions: &Substitutions) -> Observed {
    let report: RunReport =
        run_with_canned_tasks(definition, s.input.clone(), canned(s, substitutions))
            .await
            .unwrap_or_else(|e| panic!("{}: jit-engine refused the run: {e}", s.name));
    let details = |e: &jit_engine::HistoryEvent, key: &str, field: &str| -> Option<Value> {
        e.details
            .get(key)
            .and_then(|d| d.get(field))
            .and_then(Value::as_str)
            .map(parse_json)
    };
    Observed {
        status: report.status.as_str().to_string(),
        states: report.states.clone(),
        state_inputs: report
            .history
            .iter()
            .filter_map(|e| details(e, "stateEnteredEventDetails", "input"))
            .collect(),
        event_types: report
            .history
            .iter()
            .map(|e| e.event_type.clone())
            .collect(),
        invocations: report
            .history
            .iter()
            .filter_map(|e| details(e, "taskScheduledEventDetails", "parameters"))
            .map(|p| invocation(&p))
            .collect(),
        output: report.output.clone(),
        error: report.error.clone(),
        cause: report.cause.clone(),
    }
}

// --- comparison -------------------------------------------------------------

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// (FunctionName, Payload) with the task token redacted: each executor
/// mints its own.
fn invocation(parameters: &Value) -> (String, Value) {
    let function = parameters["FunctionName"]
        .as_str()
        .unwrap_or_else(|| panic!("no FunctionName in {parameters}"))
        .to_string();
    let mut payload = parameters["Payload"].clone();
    if let Some(token) = payload.get_mut("taskToken") {
        *token = json!("<task token>");
    }
    (function, payload)
}

/// The caught-error objects (`{"Error", "Cause"}` under `error`) in the
/// states' inputs and the output whose `Error` is `error`.
fn caught_errors<'a>(o: &'a mut Observed, error: &str) -> Vec<&'a mut Value> {
    o.state_inputs
        .iter_mut()
        .chain(o.output.iter_mut())
        .filter_map(|v| v.get_mut("error"))
        .filter(|e| e["Error"] == error)
        .collect()
}

/// Checks a known difference from both sides, then sets it aside.
fn bridge(b: Bridge, name: &str, moto: &mut Observed, engine: &mut Observed) {
    let (error, moto_cause, engine_cause) = match b {
        Bridge::MotoDropsFailureCause => ("Denied", Value::Null, json!(DENY_CAUSE)),
        Bridge::ResultSelectorErrorName => {
            // Different names and causes for the same failure: compare
            // only where they appear.
            let at = |o: &mut Observed, want: &str| -> usize {
                let found = caught_errors(o, want);
                let n = found.len();
                for e in found {
                    *e = json!({ "Error": "<ResultSelector failure>", "Cause": "<its cause>" });
                }
                n
            };
            let (m, e) = (
                at(moto, "States.Runtime"),
                at(engine, "States.ParameterPathFailure"),
            );
            assert!(
                m > 0 && m == e,
                "{name}: moto reported States.Runtime {m} times, jit-engine \
                 States.ParameterPathFailure {e} times: has either changed? Update {b:?}"
            );
            let extra = |types: &[String]| -> Vec<usize> {
                types
                    .windows(2)
                    .enumerate()
                    .filter(|(_, w)| w[0] == "TaskSucceeded" && w[1] == "TaskFailed")
                    .map(|(i, _)| i + 1)
                    .collect()
            };
            let (on_moto, on_engine) = (extra(&moto.event_types), extra(&engine.event_types));
            assert!(
                on_moto.len() == 1 && on_engine.is_empty(),
                "{name}: TaskSucceeded+TaskFailed at {on_moto:?} on moto, {on_engine:?} on \
                 jit-engine: has either changed? Update {b:?}"
            );
            moto.event_types.remove(on_moto[0]);
            return;
        }
    };
    let on_engine = caught_errors(engine, error);
    assert!(
        !on_engine.is_empty(),
        "{name}: no caught {error} on jit-engine"
    );
    let n = on_engine.len();
    for e in on_engine {
        assert_eq!(
            e["Cause"], engine_cause,
            "{name}: jit-engine's cause for {error} changed: update or remove {b:?}"
        );
        e["Cause"] = moto_cause.clone();
    }
    let on_moto = caught_errors(moto, error);
    assert_eq!(on_moto.len(), n, "{name}: caught {error} on moto");
    for e in on_moto {
        assert_eq!(
            e["Cause"], moto_cause,
            "{name}: moto's cause for {error} changed: update or remove {b:?}"
        );
    }
}

fn assert_same(name: &str, moto: &Observed, engine: &Observed) {
    assert_eq!(
        moto.states, engine.states,
        "{name}: states entered (left: moto, right: jit-engine)"
    );
    assert_eq!(moto.status, engine.status, "{name}: final status");
    assert_eq!(
        (&moto.error, &moto.cause),
        (&engine.error, &engine.cause),
        "{name}: error and cause"
    );
    assert_eq!(moto.output, engine.output, "{name}: output");
    assert_eq!(moto.invocations, engine.invocations, "{name}: Lambda calls");
    for (i, (m, e)) in moto
        .state_inputs
        .iter()
        .zip(&engine.state_inputs)
        .enumerate()
    {
        assert_eq!(m, e, "{name}: input of {}", moto.states[i]);
    }
    assert_eq!(
        moto.event_types, engine.event_types,
        "{name}: history event types"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_and_jit_engine_take_the_same_paths_through_the_approval_workflow() {
    tokio::time::timeout(WHOLE_TEST, async {
        let _queue = MOTO_QUEUE.lock().await;
        let moto = moto().await;
        for scenario in scenarios() {
            let scenario = scenario.resolved();
            let started = Instant::now();
            let mut on_moto = moto.run(DEFINITION, &scenario).await;
            let mut on_engine = engine_run(DEFINITION, &scenario, &moto.substitutions).await;
            // Every queued answer was used, by the calls expected.
            assert_eq!(
                on_moto.invocations.len(),
                scenario.calls.len(),
                "{}: Lambda calls on moto: {:?}",
                scenario.name,
                on_moto.invocations
            );
            for b in scenario.bridges {
                bridge(*b, scenario.name, &mut on_moto, &mut on_engine);
            }
            assert_same(scenario.name, &on_moto, &on_engine);
            // The path is the one the design says.
            assert_eq!(
                on_engine.states.last().map(String::as_str),
                Some(scenario.ends_in),
                "{}: {:?}",
                scenario.name,
                on_engine.states
            );
            eprintln!(
                "{}: same {} states on moto and jit-engine ({:?}): {:?}",
                scenario.name,
                on_engine.states.len(),
                started.elapsed(),
                on_engine.states
            );
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the cross-check took more than {WHOLE_TEST:?}"));
}

/// RecordGranted's Lambda answers without `expiresAt`, so its
/// `ResultSelector` (`$.Payload.expiresAt`) fails. moto (`States.Runtime`)
/// and jit-engine (`States.ParameterPathFailure`) both catch it with
/// `States.ALL` and go on to Revoke: the same path, checked like the others.
///
/// AWS is documented to differ: `States.ALL` does not catch `States.Runtime`,
/// and AWS reports path failures in a state's fields as `States.Runtime`
/// (execution FAILED, nothing revoked by the workflow). Neither local
/// interpreter can show that; see docs/ARCHITECTURE.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_selector_failure_takes_the_same_path_on_both() {
    tokio::time::timeout(WHOLE_TEST, async {
        let _queue = MOTO_QUEUE.lock().await;
        let moto = moto().await;
        let scenario = Scenario {
            name: "RecordGranted without expiresAt",
            input: json!({ "requestId": "R1", "autoApprove": true, "approvalTimeoutSeconds": 60 }),
            calls: vec![
                ("Validate", ok("VALIDATING")),
                (
                    "Grant",
                    Answer::Returns(json!({ "requestId": "R1", "granted": true })),
                ),
                ("RecordGranted", ok("GRANTED")),
                ("Revoke", ok("EXPIRED")),
            ],
            decision: None,
            ends_in: "Expired",
            bridges: &[Bridge::ResultSelectorErrorName],
        };
        let mut on_moto = moto.run(DEFINITION, &scenario).await;
        let mut on_engine = engine_run(DEFINITION, &scenario, &moto.substitutions).await;
        assert_eq!(on_moto.invocations.len(), scenario.calls.len());
        for b in scenario.bridges {
            bridge(*b, scenario.name, &mut on_moto, &mut on_engine);
        }
        assert_same(scenario.name, &on_moto, &on_engine);
        assert_eq!(
            on_engine.states.last().map(String::as_str),
            Some(scenario.ends_in)
        );
    })
    .await
    .unwrap_or_else(|_| panic!("the ResultSelector check took more than {WHOLE_TEST:?}"));
}

#[test]
fn every_placeholder_in_the_definition_is_a_task_function() {
    // The cross-check substitutes exactly the functions template.yaml
    // passes; a new placeholder would go unnoticed otherwise.
    let mut found: HashMap<String, usize> = HashMap::new();
    let mut rest = DEFINITION;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let end = after.find('}').expect("a closed placeholder");
        *found.entry(after[..end].to_string()).or_default() += 1;
        rest = &after[end + 1..];
    }
    let mut names: Vec<&str> = found.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected = FUNCTIONS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
}
