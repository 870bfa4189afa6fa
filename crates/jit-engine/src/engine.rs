//! The engine: executions stepped state by state, every step committed to
//! SQLite, tasks invoked through a [`TaskInvoker`], timers driven by an
//! injected [`Clock`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jit_core::ports::Clock;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::db::{Commit, EngineDb, ExecRow, NewToken, token_status};
use crate::definition::{
    Catcher, FanState, Kind, PercentSource, Resource, Retrier, Seconds, Source, State,
    StateMachine, TaskState, WaitFor,
};
use crate::error::{EngineError, StateError, states};
use crate::history::{self, HistoryEvent, NewEvent, TaskResource, lambda_fn};
use crate::interp::{Ctx, ROLE_ARN, error_matches, is_handleable, retry_delay_ms};
use crate::time::{fmt_ms, from_ms, to_ms};
use crate::{choice, token};

/// The account and region in the ARNs this engine makes up.
const ARN_PREFIX: &str = "arn:aws:states:local:000000000000";
const REGION: &str = "local";
/// AWS fails an execution whose history would pass 25,000 events.
const MAX_HISTORY_EVENTS: u64 = 25_000;
/// Transitions one execution may make before yielding to others.
const TURN_TRANSITIONS: usize = 500;
/// Executions the driver advances at once. Each task invocation first waits
/// for the group commit holding its schedule, so many executions must be in
/// flight for commits to be shared.
const DRIVER_CONCURRENCY: usize = 256;
/// Task invocations in flight at once. Far more executions than this wait
/// for their commits; only this many run tasks, so a task port with one
/// connection behind a mutex (the SQLite store) is not hit by hundreds of
/// blocked threads at once.
const MAX_INVOCATIONS: usize = 32;
/// Free slots the driver waits for before listing runnable executions again
/// (when it is busy; an idle driver lists at once).
const DRIVER_REFILL: usize = 16;
/// Payload limit for inputs and outputs (256 KiB), as on AWS.
const MAX_PAYLOAD: usize = 262_144;

/// A task's failure as the Lambda reports it: `error` is its `errorType`
/// (what `Retry`/`Catch` match), `cause` the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    pub error: String,
    pub cause: String,
}

impl TaskError {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        TaskError {
            error: error.into(),
            cause: cause.into(),
        }
    }
}

/// Which task is being invoked, for invokers that care (the canned-answer
/// runner keys its answers by state name). Its `Debug` hides the token.
#[derive(Clone, Copy)]
pub struct TaskCall<'a> {
    /// The (substituted) `FunctionName`, or the Lambda ARN used as Resource.
    pub function: &'a str,
    pub execution_name: &'a str,
    pub state: &'a str,
    /// Set for `.waitForTaskToken` tasks. Never log it.
    pub task_token: Option<&'a str>,
}

impl std::fmt::Debug for TaskCall<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskCall")
            .field("function", &self.function)
            .field("execution_name", &self.execution_name)
            .field("state", &self.state)
            .field("task_token", &self.task_token.map(|_| "<redacted>"))
            .finish()
    }
}

/// What a Lambda task got back.
#[derive(Debug, Clone, PartialEq)]
pub enum Invoked {
    /// The function's return value: the engine wraps it in the `Invoke`
    /// response AWS's `lambda:invoke` integration returns.
    Return(Value),
    /// AWS's whole `lambda:invoke` response (`Payload`, `StatusCode`,
    /// `ExecutedVersion`, `SdkHttpMetadata`, …), used as is — e.g. one
    /// recorded on AWS. A `FunctionError` in it fails the task with the
    /// payload's `errorType`, as on AWS.
    Response(Value),
}

/// Runs task Lambdas. In `jit-local` this dispatches in-process to the same
/// handlers the deployed Lambdas run. Called at least once per attempt: a
/// task interrupted by a crash is invoked again on resume.
#[async_trait]
pub trait TaskInvoker: Send + Sync {
    async fn invoke(&self, function: &str, payload: Value) -> Result<Value, TaskError>;

    /// What the engine calls; forwards to [`TaskInvoker::invoke`] unless
    /// overridden.
    async fn invoke_task(&self, call: TaskCall<'_>, payload: Value) -> Result<Value, TaskError> {
        self.invoke(call.function, payload).await
    }

    /// What the engine calls for a Lambda task; forwards to
    /// [`TaskInvoker::invoke_task`] (a return value) unless overridden to
    /// hand over whole `Invoke` responses.
    async fn invoke_lambda(
        &self,
        call: TaskCall<'_>,
        payload: Value,
    ) -> Result<Invoked, TaskError> {
        self.invoke_task(call, payload).await.map(Invoked::Return)
    }
}

/// The state machines an engine can start, by name.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    machines: HashMap<String, Arc<StateMachine>>,
}

impl Definitions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, name: impl Into<String>, machine: StateMachine) -> Self {
        self.insert(name, machine);
        self
    }

    pub fn insert(&mut self, name: impl Into<String>, machine: StateMachine) {
        self.machines.insert(name.into(), Arc::new(machine));
    }
}

/// `DescribeExecution`'s status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Aborted => "ABORTED",
        }
    }

    fn parse(s: &str) -> Result<Self, EngineError> {
        Ok(match s {
            "RUNNING" => ExecutionStatus::Running,
            "SUCCEEDED" => ExecutionStatus::Succeeded,
            "FAILED" => ExecutionStatus::Failed,
            "TIMED_OUT" => ExecutionStatus::TimedOut,
            "ABORTED" => ExecutionStatus::Aborted,
            other => return Err(EngineError::Db(format!("unknown execution status {other}"))),
        })
    }
}

/// What `start_execution` returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedExecution {
    pub execution_arn: String,
    pub start_date: DateTime<Utc>,
    /// True when a running execution with this name and input already
    /// existed (AWS's idempotent StartExecution).
    #[serde(skip)]
    pub already_running: bool,
}

/// What `describe_execution` returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionDescription {
    pub execution_arn: String,
    pub state_machine_arn: String,
    pub name: String,
    pub status: ExecutionStatus,
    pub input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    pub start_date: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_date: Option<DateTime<Utc>>,
}

/// What `resume` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeReport {
    /// Executions still RUNNING.
    pub running: u64,
    /// Of those, how many wait on an open task token (with or without a
    /// timeout): in the approval workflow, a decision.
    pub waiting_for_callback: u64,
    /// Of those, how many wait only for a timer (a Wait state, a retry's
    /// back-off): in the approval workflow, a grant's expiry.
    pub waiting_for_timer: u64,
    /// Executions whose stored definition no longer loads; failed with
    /// `States.Runtime`.
    pub failed_on_load: u64,
}

pub(crate) fn machine_arn(machine: &str) -> String {
    format!("{ARN_PREFIX}:stateMachine:{machine}")
}

pub(crate) fn execution_arn(machine: &str, name: &str) -> String {
    format!("{ARN_PREFIX}:execution:{machine}:{name}")
}

/// Accepts an execution name or its ARN.
fn name_of(execution: &str) -> &str {
    if execution.starts_with("arn:") {
        execution.rsplit(':').next().unwrap_or(execution)
    } else {
        execution
    }
}

/// AWS's execution-name rules: 1–80 characters, none of whitespace,
/// brackets, wildcards, `"#%\^|~`$&,;:/` or control characters.
fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=80).contains(&n)
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c))
}

// ---------------------------------------------------------------------------
// Persisted phases

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// About to enter `state` with `input`.
    Enter {
        state: String,
        input: Value,
    },
    /// In a Wait state until `until_ms`; `output` is what it will pass on.
    Wait {
        state: String,
        output: Value,
        until_ms: i64,
    },
    Task(TaskPhase),
    /// In a Parallel or Map state.
    Fan(Box<FanPhase>),
    Done,
}

/// A Parallel or Map state under way: its children (branches or
/// iterations) are nested phases, stepped in index order, all persisted
/// with the execution like any other phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FanPhase {
    state: String,
    /// The state's raw input (what ResultPath writes into).
    input: Value,
    entered_ms: i64,
    entered_event: u64,
    retry_count: u32,
    counters: Vec<u32>,
    step: FanStep,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
enum FanStep {
    /// Ready to start an attempt (select the items, start the children).
    Start,
    Running(Box<FanRun>),
    RetryAt {
        until_ms: i64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FanRun {
    /// Inputs of the children not yet started, from index `next` on.
    waiting: std::collections::VecDeque<Value>,
    next: usize,
    /// Children running now (at most `max_concurrency`, 0 = no bound).
    active: Vec<Child>,
    max_concurrency: usize,
    /// Each child's output by index (`null` until it ends).
    results: Vec<Value>,
    failed: u64,
    tolerated_count: u64,
    tolerated_percentage: f64,
    /// The error that fails the state, once one child's failure does.
    failure: Option<(String, String)>,
    /// The active child to step first: children take turns, one unit of
    /// work each, as concurrent branches would (so a quick failure in one
    /// branch is not held up behind a long one).
    #[serde(default)]
    cursor: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Child {
    index: usize,
    phase: Phase,
}

/// The task tokens a phase (and everything nested in it) holds open.
fn phase_tokens(phase: &Phase, out: &mut Vec<String>) {
    match phase {
        Phase::Task(tp) => match &tp.step {
            TaskStep::AwaitToken { token }
            | TaskStep::Invoking(Invoking {
                token: Some(token), ..
            }) => out.push(token.clone()),
            _ => {}
        },
        Phase::Fan(fp) => {
            if let FanStep::Running(run) = &fp.step {
                for c in &run.active {
                    phase_tokens(&c.phase, out);
                }
            }
        }
        _ => {}
    }
}

/// Does `phase` (or a child nested in it) hold a task invocation in flight
/// — one interrupted by a restart, to be invoked again first?
fn phase_invoking(phase: &Phase) -> bool {
    match phase {
        Phase::Task(TaskPhase {
            step: TaskStep::Invoking(_),
            ..
        }) => true,
        Phase::Fan(fp) => match &fp.step {
            FanStep::Running(run) => run.active.iter().any(|c| phase_invoking(&c.phase)),
            _ => false,
        },
        _ => false,
    }
}

/// Is `phase` (or a child nested in it) waiting for `invocation`?
fn phase_awaits(phase: &Phase, invocation: u64) -> bool {
    match phase {
        Phase::Task(TaskPhase {
            step: TaskStep::Invoking(inv),
            ..
        }) => inv.invocation == invocation,
        Phase::Fan(fp) => match &fp.step {
            FanStep::Running(run) => run
                .active
                .iter()
                .any(|c| phase_awaits(&c.phase, invocation)),
            _ => false,
        },
        _ => false,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskPhase {
    state: String,
    /// The state's raw input (what ResultPath writes into).
    input: Value,
    entered_ms: i64,
    /// The id of the `TaskStateEntered` event (AWS cites it in runtime causes).
    #[serde(default)]
    entered_event: u64,
    retry_count: u32,
    /// Attempts used per retrier.
    counters: Vec<u32>,
    step: TaskStep,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
enum TaskStep {
    /// Ready to start an attempt.
    Schedule,
    /// The invoker has (maybe) been called; if the process died, call again.
    Invoking(Invoking),
    /// The callback Lambda returned; waiting for SendTask*.
    AwaitToken { token: String },
    /// Waiting out a retry interval.
    RetryAt { until_ms: i64 },
}

/// An attempt in flight. Persisted with the execution, so a process that
/// stopped mid-invoke invokes it again on load.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Invoking {
    invocation: u64,
    function: String,
    payload: Value,
    token: Option<String>,
    timeout_ms: Option<i64>,
    event: bool,
    /// `LogType: Tail`: the response carries a `LogResult`.
    #[serde(default)]
    tail: bool,
}

enum End {
    Succeeded(Value),
    Failed {
        error: String,
        cause: String,
    },
    TimedOut {
        error: String,
        cause: String,
    },
    Aborted {
        error: Option<String>,
        cause: Option<String>,
    },
}

enum Flow {
    Continue,
    /// Nothing to do until `Some(wake)`, or until something external.
    Block(Option<i64>),
    Invoke(InvokeRequest),
    Finished,
}

#[derive(Debug, Clone)]
struct InvokeRequest {
    invocation: u64,
    function: String,
    payload: Value,
    state: String,
    execution: String,
    token: Option<String>,
    /// Real-time bound on the call, from the task's TimeoutSeconds.
    timeout: Option<Duration>,
}

enum InvokeOutcome {
    Ok(Value),
    /// AWS's whole `Invoke` response, handed over as is.
    Response(Value),
    Err(TaskError),
    TimedOut,
}

enum Turn {
    /// (transitions, whether anything was committed)
    Idle(usize, bool),
    Yield(usize),
    /// A task to invoke once the batch holding its schedule (if still open)
    /// is durable; the run is kept (already committed) for the result.
    Invoke(InvokeRequest, usize, Box<Run>, Option<u64>),
}

// ---------------------------------------------------------------------------
// One execution being stepped, in memory, between a load and a commit.

struct Run {
    row: ExecRow,
    machine: Arc<StateMachine>,
    exec_arn: String,
    machine_arn: String,
    start_time: String,
    phase: Phase,
    events: Vec<NewEvent>,
    new_tokens: Vec<NewToken>,
    closed_tokens: Vec<String>,
    end: Option<End>,
    transitions: usize,
    /// `transitions` when the current turn began.
    turn_start: usize,
    now: i64,
    /// How deep in Parallel/Map children the step in progress is (0: the
    /// execution's own states).
    depth: u32,
    /// How the child being stepped ended (when `depth > 0`).
    frame_end: Option<End>,
}

fn resource_name(r: &Resource) -> &'static str {
    match r {
        Resource::Invoke | Resource::FunctionArn(_) => "invoke",
        Resource::InvokeCallback => "invoke.waitForTaskToken",
    }
}

impl Run {
    fn new(row: ExecRow, machine: Arc<StateMachine>, now: i64) -> Result<Self, EngineError> {
        let phase: Phase = serde_json::from_str(&row.phase)?;
        Ok(Run {
            exec_arn: execution_arn(&row.machine, &row.name),
            machine_arn: machine_arn(&row.machine),
            start_time: fmt_ms(row.start_ms),
            row,
            machine,
            phase,
            events: Vec::new(),
            new_tokens: Vec::new(),
            closed_tokens: Vec::new(),
            end: None,
            transitions: 0,
            turn_start: 0,
            now,
            depth: 0,
            frame_end: None,
        })
    }

    /// The `lambda:invoke` response for attempt `invocation` now (or the
    /// whole `response` handed over), and the event `event` makes of it.
    fn envelope(
        &self,
        invocation: u64,
        payload: Value,
        status: u16,
        tail: bool,
        response: Option<Value>,
        event: impl Fn(history::Output<'_>) -> (String, String),
    ) -> ((String, String), Value) {
        if let Some(r) = response {
            return (event(history::Output::Raw(&r)), r);
        }
        let hex = history::invoke_hex(&self.exec_arn, invocation);
        let ev = event(history::Output::Lambda {
            hex: &hex,
            payload: &payload,
            status,
            now_ms: self.now,
            tail,
        });
        let out = history::lambda_response(&hex, payload, status, self.now, tail);
        (ev, out)
    }

    fn emit(&mut self, (event_type, details): (String, String)) {
        self.events.push(NewEvent {
            event_type,
            details,
            at_ms: self.now,
        });
    }

    fn next_event_id(&self) -> u64 {
        self.row.next_event + self.events.len() as u64
    }

    fn ctx<'a>(
        &'a self,
        state: &'a str,
        entered: &'a str,
        retry_count: u32,
        token: Option<&'a str>,
    ) -> Ctx<'a> {
        Ctx::new(
            &self.exec_arn,
            &self.row.name,
            &self.row.input,
            &self.start_time,
            &self.machine_arn,
            &self.row.machine,
            state,
            entered,
            retry_count,
            token,
        )
    }

    fn finish(&mut self, end: End) -> Flow {
        if self.depth > 0 {
            // A branch or iteration ended: its parent decides what follows.
            let old = std::mem::replace(&mut self.phase, Phase::Done);
            phase_tokens(&old, &mut self.closed_tokens);
            self.frame_end = Some(end);
            return Flow::Finished;
        }
        match &end {
            End::Succeeded(out) => self.emit(history::execution_succeeded(out)),
            End::Failed { error, cause } => {
                self.emit(history::execution_failed(Some(error), Some(cause)))
            }
            End::TimedOut { error, cause } => self.emit(history::execution_timed_out(error, cause)),
            End::Aborted { error, cause } => self.emit(history::execution_aborted(
                error.as_deref(),
                cause.as_deref(),
            )),
        }
        let old = std::mem::replace(&mut self.phase, Phase::Done);
        phase_tokens(&old, &mut self.closed_tokens);
        self.end = Some(end);
        Flow::Finished
    }

    fn fail(&mut self, e: StateError) -> Flow {
        self.finish(End::Failed {
            error: e.error,
            cause: e.cause,
        })
    }

    /// Fails the execution from inside state `state` (entered at event
    /// `entered_event`): AWS prefixes a `States.Runtime` cause with where it
    /// happened.
    fn fail_at(&mut self, state: &str, entered_event: u64, mut e: StateError) -> Flow {
        // One prefix only: a runtime error inside a Parallel branch or Map
        // iteration names the inner state, and passes through its parent as is.
        if e.error == states::RUNTIME && !e.cause.starts_with(RUNTIME_PREFIX) {
            e.cause = runtime_prefix(state, entered_event, &e.cause);
        }
        self.fail(e)
    }

    /// Emits `…StateExited` with `output`, unless the output is over the
    /// payload limit: then the execution fails with
    /// `States.DataLimitExceeded`, as on AWS (no catcher sees it). The size is
    /// read off the event being written, so checking costs nothing extra.
    /// Returns the flow that ends the execution when the output is too big.
    fn exit_state(&mut self, prefix: &str, name: &str, output: &Value) -> Option<Flow> {
        let ev = history::state_exited(prefix, name, output);
        if ev.1.len() > MAX_PAYLOAD && json_len(output) > MAX_PAYLOAD {
            return Some(self.fail(StateError::new(
                states::DATA_LIMIT_EXCEEDED,
                data_limit_cause(name),
            )));
        }
        self.emit(ev);
        None
    }

    fn go_next(&mut self, st: &State, output: Value) -> Flow {
        match &st.next {
            Some(n) => {
                self.phase = Phase::Enter {
                    state: n.clone(),
                    input: output,
                };
                Flow::Continue
            }
            None => self.finish(End::Succeeded(output)),
        }
    }

    /// Advances by one unit of work.
    fn step(&mut self, db: &mut EngineDb) -> Result<Flow, EngineError> {
        if matches!(self.phase, Phase::Done) {
            return Ok(Flow::Finished);
        }
        if let Some(deadline) = self.row.deadline_ms
            && self.now >= deadline
            && self.depth == 0
        {
            let secs = self.machine.timeout_seconds.unwrap_or_default();
            return Ok(self.finish(End::TimedOut {
                error: states::TIMEOUT.into(),
                cause: format!(
                    "The execution timed out after {secs} seconds (state machine TimeoutSeconds)."
                ),
            }));
        }
        if self.depth == 0 && self.next_event_id() > MAX_HISTORY_EVENTS {
            return Ok(self.fail(StateError::runtime(format!(
                "The execution reached the maximum number of history events ({MAX_HISTORY_EVENTS})."
            ))));
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        match phase {
            Phase::Done => Ok(Flow::Finished),
            Phase::Enter { state, input } => Ok(self.enter(&state, input)),
            Phase::Wait {
                state,
                output,
                until_ms,
            } => {
                if self.now >= until_ms {
                    if let Some(flow) = self.exit_state("Wait", &state, &output) {
                        return Ok(flow);
                    }
                    let m = self.machine.clone();
                    match m.states.get(&state) {
                        Some(st) => Ok(self.go_next(st, output)),
                        None => Ok(self.fail(missing_state(&state))),
                    }
                } else {
                    self.phase = Phase::Wait {
                        state,
                        output,
                        until_ms,
                    };
                    Ok(Flow::Block(Some(until_ms)))
                }
            }
            Phase::Task(tp) => self.task_step(db, tp),
            Phase::Fan(fp) => self.fan_step(db, *fp),
        }
    }

    fn enter(&mut self, name: &str, input: Value) -> Flow {
        let m = self.machine.clone();
        let Some(st) = m.states.get(name) else {
            return self.fail(missing_state(name));
        };
        let prefix = st.kind.event_prefix();
        let entered_event = self.next_event_id();
        self.emit(history::state_entered(prefix, name, &input));
        self.transitions += 1;
        let entered = fmt_ms(self.now);
        match &st.kind {
            Kind::Pass {
                parameters,
                result,
                result_path,
            } => {
                let out = (|| {
                    let ctx = self.ctx(name, &entered, 0, None);
                    let mut eff = st.input_path.apply(&input, &ctx)?;
                    if let Some(p) = parameters {
                        // On a Pass state AWS reports a path to nothing as
                        // States.Runtime (a Task says ParameterPathFailure).
                        eff = p
                            .eval(&eff, &ctx)
                            .map_err(|e| StateError::runtime(e.cause))?;
                    }
                    let res = result.clone().unwrap_or(eff);
                    let out = result_path.apply(&input, res)?;
                    st.output_path.apply_owned(out, &ctx)
                })();
                match out {
                    Ok(out) => match self.exit_state(prefix, name, &out) {
                        None => self.go_next(st, out),
                        Some(flow) => flow,
                    },
                    Err(e) => self.fail_at(name, entered_event, e),
                }
            }
            Kind::Choice { rules, default } => {
                let chosen = (|| {
                    let ctx = self.ctx(name, &entered, 0, None);
                    let eff = st.input_path.apply(&input, &ctx)?;
                    let mut next = None;
                    for r in rules {
                        if r.cond.eval(&eff, &ctx)? {
                            next = Some(r.next.clone());
                            break;
                        }
                    }
                    let next = next
                        .or_else(|| default.clone())
                        .ok_or_else(|| StateError::new(states::NO_CHOICE_MATCHED, "No Matches!"))?;
                    let out = st.output_path.apply_owned(eff, &ctx)?;
                    Ok::<_, StateError>((next, out))
                })();
                match chosen {
                    Ok((next, out)) => {
                        if let Some(flow) = self.exit_state(prefix, name, &out) {
                            return flow;
                        }
                        self.phase = Phase::Enter {
                            state: next,
                            input: out,
                        };
                        Flow::Continue
                    }
                    Err(e) => self.fail_at(name, entered_event, e),
                }
            }
            Kind::Succeed => {
                let ctx = self.ctx(name, &entered, 0, None);
                let out = st
                    .input_path
                    .apply_owned(input, &ctx)
                    .and_then(|v| st.output_path.apply_owned(v, &ctx));
                drop(ctx);
                match out {
                    Ok(out) => match self.exit_state(prefix, name, &out) {
                        None => self.finish(End::Succeeded(out)),
                        Some(flow) => flow,
                    },
                    Err(e) => self.fail_at(name, entered_event, e),
                }
            }
            Kind::Fail { error, cause } => {
                let resolved = (|| {
                    let ctx = self.ctx(name, &entered, 0, None);
                    let get = |s: &Option<Source>| -> Result<Option<String>, StateError> {
                        match s {
                            None => Ok(None),
                            Some(Source::Literal(l)) => Ok(Some(l.clone())),
                            Some(Source::Intrinsic(call)) => {
                                match crate::intrinsic::eval(call, &input, &ctx)? {
                                    Value::String(s) => Ok(Some(s)),
                                    other => Ok(Some(other.to_string())),
                                }
                            }
                            Some(Source::Path(p)) => match ctx.resolve(p, &input) {
                                Some(Value::String(s)) => Ok(Some(s.clone())),
                                Some(other) => Ok(Some(other.to_string())),
                                None => Err(StateError::runtime(format!(
                                    "Invalid path '{}' : No results for path: {}",
                                    p.text,
                                    p.normalized()
                                ))),
                            },
                        }
                    };
                    Ok::<_, StateError>((get(error)?, get(cause)?))
                })();
                match resolved {
                    Ok((error, cause)) if self.depth > 0 => self.finish(End::Failed {
                        error: error.unwrap_or_default(),
                        cause: cause.unwrap_or_default(),
                    }),
                    Ok((error, cause)) => {
                        let ev = history::execution_failed(error.as_deref(), cause.as_deref());
                        self.emit(ev);
                        self.end = Some(End::Failed {
                            error: error.unwrap_or_default(),
                            cause: cause.unwrap_or_default(),
                        });
                        self.phase = Phase::Done;
                        Flow::Finished
                    }
                    Err(e) => self.fail_at(name, entered_event, e),
                }
            }
            Kind::Wait(w) => {
                let planned = (|| {
                    let ctx = self.ctx(name, &entered, 0, None);
                    let eff = st.input_path.apply(&input, &ctx)?;
                    let until = match w {
                        WaitFor::Seconds(s) => self.now + (*s as i64) * 1000,
                        WaitFor::Timestamp(t) => to_ms(*t),
                        WaitFor::SecondsPath(p) => {
                            self.now + wait_seconds(p, ctx.resolve(p, &eff))?.saturating_mul(1000)
                        }
                        WaitFor::TimestampPath(p) => match ctx.resolve(p, &eff) {
                            None => {
                                return Err(StateError::runtime(format!(
                                    "The TimestampPath parameter does not reference an input value: {}",
                                    p.text
                                )));
                            }
                            Some(v) => match v.as_str().and_then(choice::parse_timestamp) {
                                Some(t) => to_ms(t),
                                None => {
                                    return Err(StateError::runtime(format!(
                                        "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {} == {}",
                                        p.text,
                                        shown_value(v)
                                    )));
                                }
                            },
                        },
                    };
                    let out = st.output_path.apply_owned(eff, &ctx)?;
                    Ok::<_, StateError>((until, out))
                })();
                match planned {
                    Ok((until_ms, output)) => {
                        self.phase = Phase::Wait {
                            state: name.to_string(),
                            output,
                            until_ms,
                        };
                        Flow::Continue
                    }
                    Err(e) => self.fail_at(name, entered_event, e),
                }
            }
            Kind::Fan(f) => {
                self.phase = Phase::Fan(Box::new(FanPhase {
                    state: name.to_string(),
                    input,
                    entered_ms: self.now,
                    entered_event,
                    retry_count: 0,
                    counters: vec![0; f.retry.len()],
                    step: FanStep::Start,
                }));
                Flow::Continue
            }
            Kind::Task(t) => {
                self.phase = Phase::Task(TaskPhase {
                    state: name.to_string(),
                    input,
                    entered_ms: self.now,
                    entered_event,
                    retry_count: 0,
                    counters: vec![0; t.retry.len()],
                    step: TaskStep::Schedule,
                });
                Flow::Continue
            }
        }
    }

    fn task_step(&mut self, db: &mut EngineDb, mut tp: TaskPhase) -> Result<Flow, EngineError> {
        let m = self.machine.clone();
        let Some(st) = m.states.get(&tp.state) else {
            return Ok(self.fail(missing_state(&tp.state)));
        };
        let Kind::Task(t) = &st.kind else {
            return Ok(self.fail(missing_state(&tp.state)));
        };
        match std::mem::replace(&mut tp.step, TaskStep::Schedule) {
            TaskStep::Schedule => self.schedule(st, t, tp),
            TaskStep::RetryAt { until_ms } => {
                if self.now >= until_ms {
                    self.schedule(st, t, tp)
                } else {
                    tp.step = TaskStep::RetryAt { until_ms };
                    self.phase = Phase::Task(tp);
                    Ok(Flow::Block(Some(until_ms)))
                }
            }
            TaskStep::Invoking(inv) => {
                // Found on load: the process stopped mid-invoke. Unless the
                // task has timed out meanwhile, invoke it again.
                if let Some(d) = inv.timeout_ms
                    && self.now >= d
                {
                    tp.step = TaskStep::Invoking(inv);
                    return self.apply_invoke(InvokeOutcome::TimedOut, st, t, tp);
                }
                let left = inv
                    .timeout_ms
                    .map(|d| Duration::from_millis((d - self.now).max(0) as u64));
                Ok(self.hand_out(tp, inv, left))
            }
            TaskStep::AwaitToken { token } => {
                let res = TaskResource {
                    resource: resource_name(&t.resource),
                };
                let Some(row) = db.token(&token)? else {
                    return Ok(self.fail(StateError::runtime("the task token record is missing")));
                };
                match row.status {
                    token_status::SUCCEEDED => {
                        self.closed_tokens.push(token);
                        let answer: Value = match row.answer.as_deref() {
                            Some(a) => serde_json::from_str(a)?,
                            None => Value::Null,
                        };
                        self.emit(res.succeeded(history::Output::Raw(&answer)));
                        Ok(self.task_success(st, t, tp, answer))
                    }
                    token_status::FAILED => {
                        self.closed_tokens.push(token);
                        let e: TaskError = match row.answer.as_deref() {
                            Some(a) => serde_json::from_str(a)?,
                            None => TaskError::new("", ""),
                        };
                        self.emit(res.failed(&e.error, &e.cause));
                        Ok(self.task_error(
                            st,
                            t,
                            tp,
                            StateError {
                                error: e.error,
                                cause: e.cause,
                            },
                        ))
                    }
                    token_status::PENDING => {
                        let timed_out = row.timeout_ms.is_some_and(|d| self.now >= d);
                        let hb_out = row.heartbeat_ms.is_some_and(|d| self.now >= d);
                        if timed_out || hb_out {
                            self.closed_tokens.push(token);
                            let (error, cause) = if timed_out {
                                // AWS reports a task timeout with an empty
                                // cause (seen in real executions and moto).
                                (states::TIMEOUT, "")
                            } else {
                                (
                                    states::HEARTBEAT_TIMEOUT,
                                    "The task did not send a heartbeat within HeartbeatSeconds.",
                                )
                            };
                            self.emit(res.timed_out(error, cause));
                            return Ok(self.task_error(st, t, tp, StateError::new(error, cause)));
                        }
                        let wake = match (row.timeout_ms, row.heartbeat_ms) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        tp.step = TaskStep::AwaitToken { token };
                        self.phase = Phase::Task(tp);
                        Ok(Flow::Block(wake))
                    }
                    _ => Ok(self.fail(StateError::runtime("the task token was closed"))),
                }
            }
        }
    }

    fn schedule(&mut self, st: &State, t: &TaskState, tp: TaskPhase) -> Result<Flow, EngineError> {
        let token = if t.resource.is_callback() {
            Some(token::generate()?)
        } else {
            None
        };
        let entered = fmt_ms(tp.entered_ms);
        let prepared = (|| {
            let ctx = self.ctx(&tp.state, &entered, tp.retry_count, token.as_deref());
            let eff = st.input_path.apply(&tp.input, &ctx)?;
            let params = match &t.parameters {
                Some(p) => p.eval(&eff, &ctx)?,
                None => eff.clone(),
            };
            let secs = |s: &Option<Seconds>, field: &str| -> Result<Option<u64>, StateError> {
                match s {
                    None => Ok(None),
                    Some(Seconds::Literal(n)) => Ok(Some(*n)),
                    Some(Seconds::Path(p)) => match ctx.resolve(p, &eff).and_then(Value::as_u64) {
                        Some(n) if n >= 1 => Ok(Some(n)),
                        _ => Err(StateError::runtime(format!(
                            "The {field} '{}' does not reference a positive integer",
                            p.text
                        ))),
                    },
                }
            };
            let timeout = secs(&t.timeout, "TimeoutSecondsPath")?;
            let heartbeat = secs(&t.heartbeat, "HeartbeatSecondsPath")?;
            let (function, payload, event) = match &t.resource {
                Resource::FunctionArn(arn) => (arn.clone(), params.clone(), false),
                _ => {
                    let function = params
                        .get("FunctionName")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            StateError::runtime(
                                "The Lambda Invoke parameter FunctionName must be a string",
                            )
                        })?
                        .to_string();
                    let payload = params.get("Payload").cloned().unwrap_or_else(|| json!({}));
                    let event = match params.get("InvocationType") {
                        None => false,
                        Some(Value::String(s)) if s == "RequestResponse" => false,
                        Some(Value::String(s)) if s == "Event" => true,
                        Some(other) => {
                            return Err(StateError::runtime(format!(
                                "unsupported InvocationType {other}"
                            )));
                        }
                    };
                    (function, payload, event)
                }
            };
            Ok::<_, StateError>((params, timeout, heartbeat, function, payload, event))
        })();
        let tail = matches!(&t.resource, Resource::Invoke | Resource::InvokeCallback)
            && prepared
                .as_ref()
                .is_ok_and(|p| p.0.get("LogType").and_then(Value::as_str) == Some("Tail"));
        let (params, timeout, heartbeat, function, payload, event) = match prepared {
            Ok(v) => v,
            Err(e) => return Ok(self.task_error(st, t, tp, e)),
        };
        let invocation = self.next_event_id();
        match &t.resource {
            Resource::FunctionArn(arn) => {
                self.emit(lambda_fn::scheduled(arn, &params, timeout));
                self.emit(lambda_fn::started());
            }
            r => {
                let res = TaskResource {
                    resource: resource_name(r),
                };
                self.emit(res.scheduled(REGION, &params, timeout, heartbeat));
                self.emit(res.started());
            }
        }
        let timeout_ms = timeout.map(|s| self.now + (s as i64) * 1000);
        if let Some(tok) = &token {
            let hb = heartbeat.map(|s| s as i64);
            self.new_tokens.push(NewToken {
                token: tok.clone(),
                timeout_ms,
                heartbeat_s: hb,
                heartbeat_ms: hb.map(|s| self.now + s * 1000),
            });
        }
        let inv = Invoking {
            invocation,
            function,
            payload,
            token,
            timeout_ms,
            event,
            tail,
        };
        Ok(self.hand_out(tp, inv, timeout.map(Duration::from_secs)))
    }

    /// Records the attempt as in flight and hands it to the caller: a first
    /// attempt and one invoked again after a restart take this same path.
    fn hand_out(&mut self, mut tp: TaskPhase, inv: Invoking, timeout: Option<Duration>) -> Flow {
        let req = InvokeRequest {
            invocation: inv.invocation,
            function: inv.function.clone(),
            payload: inv.payload.clone(),
            state: tp.state.clone(),
            execution: self.row.name.clone(),
            token: inv.token.clone(),
            timeout,
        };
        tp.step = TaskStep::Invoking(inv);
        self.phase = Phase::Task(tp);
        Flow::Invoke(req)
    }

    /// Is this execution still waiting for the result of `invocation`?
    fn awaits(&self, invocation: u64) -> bool {
        phase_awaits(&self.phase, invocation)
    }

    fn apply_outcome(
        &mut self,
        invocation: u64,
        outcome: InvokeOutcome,
    ) -> Result<Flow, EngineError> {
        let m = self.machine.clone();
        let tp = match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Task(tp) => tp,
            Phase::Fan(mut fp) => {
                // The task is in a child: apply it there.
                let FanStep::Running(run) = &mut fp.step else {
                    self.phase = Phase::Fan(fp);
                    return Ok(Flow::Continue);
                };
                let Some(i) = run
                    .active
                    .iter()
                    .position(|c| phase_awaits(&c.phase, invocation))
                else {
                    self.phase = Phase::Fan(fp);
                    return Ok(Flow::Continue);
                };
                let child = std::mem::replace(&mut run.active[i].phase, Phase::Done);
                let (child, applied, end) =
                    self.in_child(child, |run| run.apply_outcome(invocation, outcome));
                run.active[i].phase = child;
                let name = fp.state.clone();
                if let Some(end) = end {
                    let c = run.active.remove(i);
                    if run.cursor > i {
                        run.cursor -= 1;
                    }
                    let map = fan_is_map(&m, &name);
                    self.child_ended(&name, map, run, c.index, end);
                }
                self.phase = Phase::Fan(fp);
                applied?;
                return Ok(Flow::Continue);
            }
            other => {
                self.phase = other;
                return Ok(Flow::Finished);
            }
        };
        let Some(st) = m.states.get(&tp.state) else {
            return Ok(self.fail(missing_state(&tp.state)));
        };
        let Kind::Task(t) = &st.kind else {
            return Ok(self.fail(missing_state(&tp.state)));
        };
        self.apply_invoke(outcome, st, t, tp)
    }

    fn apply_invoke(
        &mut self,
        outcome: InvokeOutcome,
        st: &State,
        t: &TaskState,
        mut tp: TaskPhase,
    ) -> Result<Flow, EngineError> {
        let TaskStep::Invoking(Invoking {
            invocation,
            token,
            timeout_ms,
            event,
            tail,
            ..
        }) = std::mem::replace(&mut tp.step, TaskStep::Schedule)
        else {
            self.phase = Phase::Task(tp);
            return Ok(Flow::Continue);
        };
        // A whole Invoke response: its FunctionError fails the task as on
        // AWS; otherwise it is the task's result as is (a function ARN as
        // Resource sees only its Payload).
        let mut response = None;
        let outcome = match outcome {
            InvokeOutcome::Response(r) => {
                let payload = r.get("Payload").cloned().unwrap_or(Value::Null);
                if r.get("FunctionError").is_some_and(|f| !f.is_null()) {
                    let error = payload
                        .get("errorType")
                        .and_then(Value::as_str)
                        .unwrap_or("Lambda.Unknown")
                        .to_string();
                    InvokeOutcome::Err(TaskError::new(error, payload.to_string()))
                } else {
                    if !matches!(t.resource, Resource::FunctionArn(_)) {
                        response = Some(r);
                    }
                    InvokeOutcome::Ok(payload)
                }
            }
            other => other,
        };
        let late = timeout_ms.is_some_and(|d| self.now >= d);
        // AWS reports a task timeout with an empty cause.
        let timeout_cause = "";
        match &t.resource {
            Resource::InvokeCallback => {
                let res = TaskResource {
                    resource: resource_name(&t.resource),
                };
                let token = token.unwrap_or_default();
                let submit = |o: history::Output<'_>| res.submitted(o);
                let submitted = match outcome {
                    InvokeOutcome::Ok(v) | InvokeOutcome::Response(v) => Some(if event {
                        self.envelope(
                            invocation,
                            Value::String(String::new()),
                            202,
                            tail,
                            response.take(),
                            submit,
                        )
                    } else {
                        self.envelope(invocation, v, 200, tail, response.take(), submit)
                    }),
                    InvokeOutcome::Err(e) if !event => {
                        self.closed_tokens.push(token);
                        self.emit(res.failed(&e.error, &e.cause));
                        return Ok(self.task_error(
                            st,
                            t,
                            tp,
                            StateError {
                                error: e.error,
                                cause: e.cause,
                            },
                        ));
                    }
                    InvokeOutcome::Err(e) => {
                        tracing::warn!(execution = %self.row.name, state = %tp.state, error = %e.error,
                            "asynchronous (Event) invocation failed; as on AWS, the task keeps waiting for its token");
                        Some(self.envelope(
                            invocation,
                            Value::String(String::new()),
                            202,
                            tail,
                            None,
                            submit,
                        ))
                    }
                    InvokeOutcome::TimedOut => None,
                };
                match submitted {
                    Some((ev, _out)) => {
                        self.emit(ev);
                        tp.step = TaskStep::AwaitToken { token };
                        self.phase = Phase::Task(tp);
                        Ok(Flow::Continue)
                    }
                    None => {
                        self.closed_tokens.push(token);
                        self.emit(res.timed_out(states::TIMEOUT, timeout_cause));
                        Ok(self.task_error(
                            st,
                            t,
                            tp,
                            StateError::new(states::TIMEOUT, timeout_cause),
                        ))
                    }
                }
            }
            Resource::Invoke => {
                let res = TaskResource {
                    resource: resource_name(&t.resource),
                };
                match outcome {
                    InvokeOutcome::TimedOut => {
                        self.emit(res.timed_out(states::TIMEOUT, timeout_cause));
                        Ok(self.task_error(
                            st,
                            t,
                            tp,
                            StateError::new(states::TIMEOUT, timeout_cause),
                        ))
                    }
                    _ if late => {
                        self.emit(res.timed_out(states::TIMEOUT, timeout_cause));
                        Ok(self.task_error(
                            st,
                            t,
                            tp,
                            StateError::new(states::TIMEOUT, timeout_cause),
                        ))
                    }
                    InvokeOutcome::Ok(v) | InvokeOutcome::Response(v) => {
                        let succeed = |o: history::Output<'_>| res.succeeded(o);
                        let (ev, out) = if event {
                            let empty = Value::String(String::new());
                            self.envelope(invocation, empty, 202, tail, response.take(), succeed)
                        } else {
                            self.envelope(invocation, v, 200, tail, response.take(), succeed)
                        };
                        // The stored event is smaller than the response (its
                        // headers are rebuilt on reading): a margin covers them.
                        if ev.1.len() + 4096 > MAX_PAYLOAD && json_len(&out) > MAX_PAYLOAD {
                            let cause = data_limit_cause("lambda");
                            let failed = res.failed(states::DATA_LIMIT_EXCEEDED, &cause);
                            return Ok(self.result_too_large(st, t, tp, failed, cause));
                        }
                        self.emit(ev);
                        Ok(self.task_success(st, t, tp, out))
                    }
                    InvokeOutcome::Err(e) if event => {
                        tracing::warn!(execution = %self.row.name, state = %tp.state, error = %e.error,
                            "asynchronous (Event) invocation failed; as on AWS, the task does not see it");
                        let (ev, out) = self.envelope(
                            invocation,
                            Value::String(String::new()),
                            202,
                            tail,
                            None,
                            |o| res.succeeded(o),
                        );
                        self.emit(ev);
                        Ok(self.task_success(st, t, tp, out))
                    }
                    InvokeOutcome::Err(e) => {
                        self.emit(res.failed(&e.error, &e.cause));
                        Ok(self.task_error(
                            st,
                            t,
                            tp,
                            StateError {
                                error: e.error,
                                cause: e.cause,
                            },
                        ))
                    }
                }
            }
            Resource::FunctionArn(_) => match outcome {
                InvokeOutcome::TimedOut => {
                    self.emit(lambda_fn::timed_out(states::TIMEOUT, timeout_cause));
                    Ok(self.task_error(st, t, tp, StateError::new(states::TIMEOUT, timeout_cause)))
                }
                _ if late => {
                    self.emit(lambda_fn::timed_out(states::TIMEOUT, timeout_cause));
                    Ok(self.task_error(st, t, tp, StateError::new(states::TIMEOUT, timeout_cause)))
                }
                InvokeOutcome::Ok(v) | InvokeOutcome::Response(v) => {
                    let ev = lambda_fn::succeeded(&v);
                    if ev.1.len() > MAX_PAYLOAD && json_len(&v) > MAX_PAYLOAD {
                        let cause = data_limit_cause("lambda");
                        let failed = lambda_fn::failed(states::DATA_LIMIT_EXCEEDED, &cause);
                        return Ok(self.result_too_large(st, t, tp, failed, cause));
                    }
                    self.emit(ev);
                    Ok(self.task_success(st, t, tp, v))
                }
                InvokeOutcome::Err(e) => {
                    self.emit(lambda_fn::failed(&e.error, &e.cause));
                    Ok(self.task_error(
                        st,
                        t,
                        tp,
                        StateError {
                            error: e.error,
                            cause: e.cause,
                        },
                    ))
                }
            },
        }
    }

    /// A task's result over the payload limit: the task fails with
    /// `States.DataLimitExceeded`, which its retriers and catchers see (AWS
    /// catches it with `States.DataLimitExceeded` or `States.ALL`).
    fn result_too_large(
        &mut self,
        st: &State,
        t: &TaskState,
        tp: TaskPhase,
        failed_event: (String, String),
        cause: String,
    ) -> Flow {
        self.emit(failed_event);
        self.task_error(
            st,
            t,
            tp,
            StateError::new(states::DATA_LIMIT_EXCEEDED, cause),
        )
    }

    fn task_success(&mut self, st: &State, t: &TaskState, tp: TaskPhase, result: Value) -> Flow {
        let entered = fmt_ms(tp.entered_ms);
        let out = (|| {
            let ctx = self.ctx(&tp.state, &entered, tp.retry_count, None);
            let selected = match &t.result_selector {
                Some(rs) => rs.eval(&result, &ctx)?,
                None => result,
            };
            let out = t.result_path.apply(&tp.input, selected)?;
            st.output_path.apply_owned(out, &ctx)
        })();
        match out {
            Ok(out) => match self.exit_state("Task", &st.name, &out) {
                None => self.go_next(st, out),
                Some(flow) => flow,
            },
            Err(e) => self.task_error(st, t, tp, e),
        }
    }

    /// Retry, catch, or fail the execution.
    fn task_error(&mut self, st: &State, t: &TaskState, mut tp: TaskPhase, e: StateError) -> Flow {
        let handled = self.on_error(
            st,
            &t.retry,
            &t.catch,
            &mut tp.counters,
            &mut tp.retry_count,
            &tp.input,
            tp.entered_event,
            e,
        );
        match handled {
            Handled::RetryAt(until_ms) => {
                tp.step = TaskStep::RetryAt { until_ms };
                self.phase = Phase::Task(tp);
                Flow::Continue
            }
            Handled::Done(flow) => flow,
        }
    }

    /// What a state with `Retry`/`Catch` (Task, Parallel, Map) does with an
    /// error: the first retrier that matches decides (when it is spent, the
    /// error goes on to the catchers); then the first matching catcher;
    /// else the execution (or the enclosing branch) fails.
    #[allow(clippy::too_many_arguments)]
    fn on_error(
        &mut self,
        st: &State,
        retry: &[Retrier],
        catch: &[Catcher],
        counters: &mut [u32],
        retry_count: &mut u32,
        raw_input: &Value,
        entered_event: u64,
        e: StateError,
    ) -> Handled {
        if is_handleable(&e.error) {
            for (i, r) in retry.iter().enumerate() {
                if !r.errors.iter().any(|p| error_matches(p, &e.error)) {
                    continue;
                }
                if counters[i] < r.max_attempts {
                    let jitter = match r.jitter {
                        crate::definition::Jitter::None => None,
                        crate::definition::Jitter::Full => Some(token::unit().unwrap_or(1.0)),
                    };
                    let delay = retry_delay_ms(
                        r.interval_seconds,
                        r.backoff_rate,
                        r.max_delay_seconds,
                        counters[i],
                        jitter,
                    );
                    counters[i] += 1;
                    *retry_count += 1;
                    tracing::debug!(execution = %self.row.name, state = %st.name, error = %e.error,
                        retry = *retry_count, delay_ms = delay, "state failed; retry scheduled");
                    return Handled::RetryAt(self.now + delay);
                }
                break;
            }
            for c in catch {
                if !c.errors.iter().any(|p| error_matches(p, &e.error)) {
                    continue;
                }
                let error_output = json!({ "Error": e.error, "Cause": e.cause });
                return Handled::Done(match c.result_path.apply(raw_input, error_output) {
                    Ok(out) => {
                        if let Some(flow) = self.exit_state(st.kind.event_prefix(), &st.name, &out)
                        {
                            return Handled::Done(flow);
                        }
                        self.phase = Phase::Enter {
                            state: c.next.clone(),
                            input: out,
                        };
                        Flow::Continue
                    }
                    Err(e2) => self.fail_at(&st.name, entered_event, e2),
                });
            }
        }
        Handled::Done(self.fail_at(&st.name, entered_event, e))
    }

    /// Runs `f` on `child` as the phase being stepped, one level deeper;
    /// returns the child's phase after it, `f`'s result, and how the child
    /// ended if it did.
    fn in_child<T>(
        &mut self,
        child: Phase,
        f: impl FnOnce(&mut Self) -> T,
    ) -> (Phase, T, Option<End>) {
        let saved_phase = std::mem::replace(&mut self.phase, child);
        let saved_end = self.frame_end.take();
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        let child = std::mem::replace(&mut self.phase, saved_phase);
        let end = std::mem::replace(&mut self.frame_end, saved_end);
        (child, r, end)
    }

    /// Steps a Parallel or Map state.
    fn fan_step(&mut self, db: &mut EngineDb, mut fp: FanPhase) -> Result<Flow, EngineError> {
        let m = self.machine.clone();
        let Some(st) = m.states.get(&fp.state) else {
            return Ok(self.fail(missing_state(&fp.state)));
        };
        let Kind::Fan(f) = &st.kind else {
            return Ok(self.fail(missing_state(&fp.state)));
        };
        match std::mem::replace(&mut fp.step, FanStep::Start) {
            FanStep::Start => Ok(self.fan_start(st, f, fp)),
            FanStep::RetryAt { until_ms } => {
                if self.now >= until_ms {
                    Ok(self.fan_start(st, f, fp))
                } else {
                    fp.step = FanStep::RetryAt { until_ms };
                    self.phase = Phase::Fan(Box::new(fp));
                    Ok(Flow::Block(Some(until_ms)))
                }
            }
            FanStep::Running(run) => self.fan_running(db, st, f, fp, run),
        }
    }

    /// Starts an attempt: the effective input, the children's inputs (a
    /// Map's items through its ItemSelector), and the `…Started` event.
    fn fan_start(&mut self, st: &State, f: &FanState, mut fp: FanPhase) -> Flow {
        let entered = fmt_ms(fp.entered_ms);
        let prepared = (|| {
            let ctx = self.ctx(&fp.state, &entered, fp.retry_count, None);
            let eff = st.input_path.apply(&fp.input, &ctx)?;
            if !f.map {
                let eff = match &f.parameters {
                    Some(p) => p.eval(&eff, &ctx)?,
                    None => eff,
                };
                return Ok::<_, StateError>((vec![eff; f.starts.len()], 0, 0, 0.0));
            }
            let items = match &f.items_path {
                None => Some(&eff),
                Some(p) => ctx.resolve(p, &eff),
            };
            let items = match items {
                Some(Value::Array(items)) => items,
                Some(other) => {
                    return Err(StateError::runtime(format!(
                        "Map state input must be an array but was: {}",
                        match other {
                            Value::Null => "null",
                            Value::Bool(_) => "boolean",
                            Value::Number(_) => "number",
                            Value::String(_) => "string",
                            Value::Object(_) => "object",
                            Value::Array(_) => "array",
                        }
                    )));
                }
                None => {
                    let p = f.items_path.as_ref().map_or("$", |p| p.text.as_str());
                    return Err(StateError::runtime(format!(
                        "Invalid path '{p}' : No results for path: {}",
                        f.items_path.as_ref().map_or("$".into(), |p| p.normalized())
                    )));
                }
            };
            let mut inputs = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                inputs.push(match &f.parameters {
                    Some(sel) => {
                        let item_ctx = self
                            .ctx(&fp.state, &entered, fp.retry_count, None)
                            .with_map_item(i, item);
                        sel.eval(&eff, &item_ctx)?
                    }
                    None => item.clone(),
                });
            }
            let count = |s: &Option<Seconds>, field: &str| -> Result<u64, StateError> {
                match s {
                    None => Ok(0),
                    Some(Seconds::Literal(n)) => Ok(*n),
                    Some(Seconds::Path(p)) => ctx.resolve(p, &eff).and_then(Value::as_u64).ok_or_else(|| {
                        StateError::runtime(format!(
                            "The {field} field '{}' does not reference a non-negative integer value",
                            p.text
                        ))
                    }),
                }
            };
            let max = count(&f.max_concurrency, "MaxConcurrencyPath")?;
            let tolerated = count(&f.tolerated_count, "ToleratedFailureCountPath")?;
            let pct = match &f.tolerated_percentage {
                None => 0.0,
                Some(PercentSource::Literal(p)) => *p,
                Some(PercentSource::Path(p)) => ctx
                    .resolve(p, &eff)
                    .and_then(Value::as_f64)
                    .filter(|x| (0.0..=100.0).contains(x))
                    .ok_or_else(|| {
                        StateError::runtime(format!(
                            "The ToleratedFailurePercentagePath field '{}' does not reference a number from 0 to 100",
                            p.text
                        ))
                    })?,
            };
            Ok((inputs, max as usize, tolerated, pct))
        })();
        let (inputs, max_concurrency, tolerated_count, tolerated_percentage) = match prepared {
            Ok(v) => v,
            Err(e) => return self.fan_error(st, f, fp, e),
        };
        let n = inputs.len();
        self.emit(if f.map {
            history::map_started(n)
        } else {
            history::bare("ParallelStateStarted")
        });
        fp.step = FanStep::Running(Box::new(FanRun {
            waiting: inputs.into(),
            next: 0,
            active: Vec::new(),
            max_concurrency,
            results: vec![Value::Null; n],
            failed: 0,
            tolerated_count,
            tolerated_percentage,
            failure: None,
            cursor: 0,
        }));
        self.phase = Phase::Fan(Box::new(fp));
        Flow::Continue
    }

    /// One unit of work of a running Parallel/Map: settle a failure, start
    /// children up to the concurrency bound, finish when all are done, or
    /// step the first child that can move (children blocked on timers or
    /// tokens are skipped; when all are, the state blocks until the
    /// earliest).
    fn fan_running(
        &mut self,
        db: &mut EngineDb,
        st: &State,
        f: &FanState,
        mut fp: FanPhase,
        mut run: Box<FanRun>,
    ) -> Result<Flow, EngineError> {
        let kind = st.kind.event_prefix();
        if let Some((error, cause)) = run.failure.take() {
            for c in run.active.drain(..) {
                phase_tokens(&c.phase, &mut self.closed_tokens);
                if f.map {
                    self.emit(history::map_iteration("Aborted", &st.name, c.index));
                }
            }
            self.emit(history::bare(&format!("{kind}StateFailed")));
            return Ok(self.fan_error(st, f, fp, StateError { error, cause }));
        }
        while !run.waiting.is_empty()
            && (run.max_concurrency == 0 || run.active.len() < run.max_concurrency)
        {
            let input = run.waiting.pop_front().unwrap_or(Value::Null);
            let index = run.next;
            run.next += 1;
            if f.map {
                self.emit(history::map_iteration("Started", &st.name, index));
            }
            let start = if f.map {
                &f.starts[0]
            } else {
                &f.starts[index]
            };
            run.active.push(Child {
                index,
                phase: Phase::Enter {
                    state: start.clone(),
                    input,
                },
            });
        }
        if run.active.is_empty() {
            self.emit(history::bare(&format!("{kind}StateSucceeded")));
            let results = Value::Array(std::mem::take(&mut run.results));
            return Ok(self.fan_success(st, f, fp, results));
        }
        let mut wake: Option<i64> = None;
        let n = run.active.len();
        // A task interrupted in flight (by a restart) is invoked again
        // before any other child moves: the execution resumes at most one
        // task back, as outside a Parallel or Map.
        if let Some(i) = run.active.iter().position(|c| phase_invoking(&c.phase)) {
            run.cursor = i;
        }
        for k in 0..n {
            let i = (run.cursor + k) % n;
            let child = std::mem::replace(&mut run.active[i].phase, Phase::Done);
            let (child, flow, end) = self.in_child(child, |r| r.step(db));
            run.active[i].phase = child;
            if let Some(end) = end {
                let c = run.active.remove(i);
                run.cursor = i;
                self.child_ended(&st.name, f.map, &mut run, c.index, end);
                fp.step = FanStep::Running(run);
                self.phase = Phase::Fan(Box::new(fp));
                flow?;
                return Ok(Flow::Continue);
            }
            match flow {
                Ok(Flow::Block(w)) => {
                    if let Some(w) = w {
                        wake = Some(wake.map_or(w, |x| x.min(w)));
                    }
                }
                other => {
                    run.cursor = i + 1;
                    fp.step = FanStep::Running(run);
                    self.phase = Phase::Fan(Box::new(fp));
                    return match other? {
                        Flow::Finished => Ok(Flow::Continue),
                        flow => Ok(flow),
                    };
                }
            }
        }
        fp.step = FanStep::Running(run);
        self.phase = Phase::Fan(Box::new(fp));
        Ok(Flow::Block(wake))
    }

    /// Records how a child ended: its output in its slot, or a failure —
    /// which fails the state (a Parallel's first failure always; a Map's
    /// once the failures pass what it tolerates).
    fn child_ended(&mut self, name: &str, map: bool, run: &mut FanRun, index: usize, end: End) {
        match end {
            End::Succeeded(out) => {
                if map {
                    self.emit(history::map_iteration("Succeeded", name, index));
                }
                if let Some(slot) = run.results.get_mut(index) {
                    *slot = out;
                }
            }
            End::Failed { error, cause }
            | End::TimedOut { error, cause }
            | End::Aborted {
                error: Some(error),
                cause: Some(cause),
            } => {
                if map {
                    self.emit(history::map_iteration("Failed", name, index));
                }
                run.failed += 1;
                let total = run.results.len().max(1) as f64;
                let tolerating = run.tolerated_count > 0 || run.tolerated_percentage > 0.0;
                let over_count = run.failed > run.tolerated_count;
                let over_pct = run.failed as f64 * 100.0 / total > run.tolerated_percentage;
                if !map || !tolerating {
                    run.failure.get_or_insert((error, cause));
                } else if over_count && over_pct {
                    run.failure.get_or_insert((
                        "States.ExceedToleratedFailureThreshold".into(),
                        "The specified tolerated failure threshold was exceeded".into(),
                    ));
                } else if let Some(slot) = run.results.get_mut(index) {
                    *slot = json!({ "Error": error, "Cause": cause });
                }
            }
            End::Aborted { .. } => {
                run.failure
                    .get_or_insert((states::RUNTIME.into(), "a child was aborted".into()));
            }
        }
    }

    fn fan_success(&mut self, st: &State, f: &FanState, fp: FanPhase, results: Value) -> Flow {
        let entered = fmt_ms(fp.entered_ms);
        let out = (|| {
            let ctx = self.ctx(&fp.state, &entered, fp.retry_count, None);
            let selected = match &f.result_selector {
                Some(rs) => rs.eval(&results, &ctx)?,
                None => results,
            };
            let out = f.result_path.apply(&fp.input, selected)?;
            st.output_path.apply_owned(out, &ctx)
        })();
        match out {
            Ok(out) => match self.exit_state(st.kind.event_prefix(), &st.name, &out) {
                None => self.go_next(st, out),
                Some(flow) => flow,
            },
            Err(e) => self.fan_error(st, f, fp, e),
        }
    }

    fn fan_error(&mut self, st: &State, f: &FanState, mut fp: FanPhase, e: StateError) -> Flow {
        let handled = self.on_error(
            st,
            &f.retry,
            &f.catch,
            &mut fp.counters,
            &mut fp.retry_count,
            &fp.input,
            fp.entered_event,
            e,
        );
        match handled {
            Handled::RetryAt(until_ms) => {
                fp.step = FanStep::RetryAt { until_ms };
                self.phase = Phase::Fan(Box::new(fp));
                Flow::Continue
            }
            Handled::Done(flow) => flow,
        }
    }

    /// Writes what this run did since it was loaded (or last committed).
    /// Returns false, writing nothing, if the row changed meanwhile.
    fn commit(
        &mut self,
        db: &mut EngineDb,
        wake: Option<i64>,
        invoking: bool,
    ) -> Result<bool, EngineError> {
        let phase = serde_json::to_string(&self.phase)?;
        let (status, output, error, cause) = match &self.end {
            None => ("RUNNING", None, None, None),
            Some(End::Succeeded(v)) => ("SUCCEEDED", Some(v.to_string()), None, None),
            Some(End::Failed { error, cause }) => {
                ("FAILED", None, Some(error.clone()), Some(cause.clone()))
            }
            Some(End::TimedOut { error, cause }) => {
                ("TIMED_OUT", None, Some(error.clone()), Some(cause.clone()))
            }
            Some(End::Aborted { error, cause }) => ("ABORTED", None, error.clone(), cause.clone()),
        };
        let wake_ms = if self.end.is_some() {
            None
        } else {
            match (wake, self.row.deadline_ms) {
                (Some(w), Some(d)) => Some(w.min(d)),
                (None, Some(d)) if !invoking => Some(d),
                (w, _) => w,
            }
        };
        let written = db.commit(&Commit {
            id: self.row.id,
            expected_version: self.row.version,
            status,
            output: output.as_deref(),
            error: error.as_deref(),
            cause: cause.as_deref(),
            stop_ms: self.end.as_ref().map(|_| self.now),
            wake_ms,
            invoking,
            phase: &phase,
            first_event: self.row.next_event,
            events: &self.events,
            new_tokens: &self.new_tokens,
            closed_tokens: &self.closed_tokens,
        })?;
        if written {
            self.row.version += 1;
            self.row.next_event += self.events.len() as u64;
            self.events.clear();
            self.new_tokens.clear();
            self.closed_tokens.clear();
        } else {
            tracing::warn!(execution = %self.row.name, "execution changed under a step; the step is dropped");
        }
        Ok(written)
    }
}

const RUNTIME_PREFIX: &str = "An error occurred while executing the state '";

/// AWS's prefix on a `States.Runtime` cause raised inside a state.
fn runtime_prefix(state: &str, entered_event: u64, cause: &str) -> String {
    format!("{RUNTIME_PREFIX}{state}' (entered at the event id #{entered_event}). {cause}")
}

/// AWS's cause for a result or output over the payload limit; `what` is
/// the state's name, or the resource type for a task's result.
fn data_limit_cause(what: &str) -> String {
    format!(
        "The state/task '{what}' returned a result with a size exceeding the maximum number of bytes service limit."
    )
}

/// The length of a value's JSON text, without keeping the text.
pub(crate) fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// A value as AWS quotes it after `==` in a cause: strings bare, anything
/// else as JSON text.
fn shown_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A Wait's `SecondsPath` value: a non-negative integer, else the
/// `States.Runtime` cause AWS gives for a missing, non-integer or negative
/// value.
fn wait_seconds(p: &crate::path::RefPath, v: Option<&Value>) -> Result<i64, StateError> {
    let v = v.ok_or_else(|| {
        StateError::runtime(format!(
            "The SecondsPath parameter does not reference an input value: {}",
            p.text
        ))
    })?;
    match v.as_i64() {
        Some(n) if n < 0 => Err(StateError::runtime(format!(
            "The SecondsPath parameter references a negative value: {} == {}",
            p.text,
            shown_value(v)
        ))),
        Some(n) => Ok(n.min(i64::MAX / 1000)),
        None if v.as_u64().is_some() => Ok(i64::MAX / 1000),
        None => Err(StateError::runtime(format!(
            "The SecondsPath parameter cannot be parsed as a long value: {} == {}",
            p.text,
            shown_value(v)
        ))),
    }
}

/// What `on_error` decided.
enum Handled {
    /// Retry the state at this time.
    RetryAt(i64),
    /// Caught (moving on) or failed.
    Done(Flow),
}

fn fan_is_map(m: &StateMachine, name: &str) -> bool {
    matches!(m.states.get(name).map(|s| &s.kind), Some(Kind::Fan(f)) if f.map)
}

fn missing_state(name: &str) -> StateError {
    StateError::runtime(format!(
        "no state named \"{name}\" in the execution's definition"
    ))
}

// ---------------------------------------------------------------------------
// The engine

struct Inner {
    db: Mutex<EngineDb>,
    /// Startable machines: name → (definition id, machine).
    machines: HashMap<String, (i64, Arc<StateMachine>)>,
    /// Every definition loaded so far, by stored id.
    by_definition: Mutex<HashMap<i64, Arc<StateMachine>>>,
    invoker: Arc<dyn TaskInvoker>,
    clock: Arc<dyn Clock>,
    /// Executions some worker is advancing right now.
    claims: Mutex<HashSet<i64>>,
    wake: Notify,
    /// Workers stepping right now (not waiting for a commit or a task).
    busy: AtomicUsize,
    /// Workers waiting for their batch to become durable.
    waiters: AtomicUsize,
    /// The backlog: executions started or answered (SendTask*) that have not
    /// yet been advanced to their next wait (for a token or a timer) or to
    /// their end. See [`Engine::backlog`].
    backlog: Mutex<HashSet<i64>>,
    backlog_len: AtomicUsize,
    /// Bounds the task invocations in flight ([`MAX_INVOCATIONS`]).
    invocations: tokio::sync::Semaphore,
}

impl Inner {
    fn backlog_add(&self, id: i64) {
        let mut b = lock(&self.backlog);
        b.insert(id);
        self.backlog_len.store(b.len(), Ordering::Relaxed);
    }

    fn backlog_remove(&self, id: i64) {
        let mut b = lock(&self.backlog);
        if b.remove(&id) {
            self.backlog_len.store(b.len(), Ordering::Relaxed);
        }
    }

    /// The last worker to stop stepping commits the open batch when others
    /// wait for it: nothing more is coming soon to share the commit with.
    fn flush_if_last(&self) {
        if self.busy.load(Ordering::SeqCst) == 0 && self.waiters.load(Ordering::SeqCst) > 0 {
            let mut db = lock(&self.db);
            if db.batch_open()
                && let Err(e) = db.flush()
            {
                tracing::error!(error = %e, "engine: group commit");
            }
        }
    }
}

/// Counts a worker waiting for durability while it is held.
struct Waiting<'a>(&'a Inner);

impl<'a> Waiting<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.waiters.fetch_add(1, Ordering::SeqCst);
        Waiting(inner)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The local Step Functions: start, stop, describe executions, answer task
/// tokens, and drive them (a background driver, or `run_until_idle` in
/// tests). Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("machines", &self.inner.machines.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// One worker's hold on one execution. It counts as *stepping* (see
/// [`Inner::busy`]) from the claim on, except while paused (waiting for a
/// commit or a task), so a batch is not committed while a claimed
/// execution that will write to it has yet to run.
struct Claim {
    inner: Arc<Inner>,
    id: i64,
    active: bool,
}

impl Claim {
    fn pause(&mut self) {
        if self.active {
            self.active = false;
            self.inner.busy.fetch_sub(1, Ordering::SeqCst);
            self.inner.flush_if_last();
        }
    }

    fn resume(&mut self) {
        if !self.active {
            self.active = true;
            self.inner.busy.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.inner.claims).remove(&self.id);
        self.pause();
    }
}

/// A poisoned lock is taken over: every write is one SQLite transaction, so
/// a panic mid-write rolled back and left the connection consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Engine {
    /// Opens the engine on `db` with the machines it may start. Executions
    /// already in `db` continue on the definitions they started with (stored
    /// in `db`); tasks that were mid-invoke when the last process stopped
    /// are made runnable again (they will be invoked once more).
    pub fn open(
        mut db: EngineDb,
        definitions: Definitions,
        invoker: Arc<dyn TaskInvoker>,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine, EngineError> {
        let mut machines = HashMap::new();
        let mut by_definition = HashMap::new();
        for (name, sm) in definitions.machines {
            let id = db.put_definition(&name, sm.source())?;
            by_definition.insert(id, sm.clone());
            machines.insert(name, (id, sm));
        }
        let now = to_ms(clock.now());
        let rearmed = db.rearm_interrupted_invocations(now)?;
        if rearmed > 0 {
            tracing::info!(
                executions = rearmed,
                "tasks interrupted by the last shutdown will be invoked again"
            );
        }
        let backlog: HashSet<i64> = db.runnable_or_invoking(now)?.into_iter().collect();
        let backlog_len = AtomicUsize::new(backlog.len());
        Ok(Engine {
            inner: Arc::new(Inner {
                db: Mutex::new(db),
                machines,
                by_definition: Mutex::new(by_definition),
                invoker,
                clock,
                claims: Mutex::new(HashSet::new()),
                wake: Notify::new(),
                busy: AtomicUsize::new(0),
                waiters: AtomicUsize::new(0),
                backlog: Mutex::new(backlog),
                backlog_len,
                invocations: tokio::sync::Semaphore::new(MAX_INVOCATIONS),
            }),
        })
    }

    fn now_ms(&self) -> i64 {
        to_ms(self.inner.clock.now())
    }

    fn machine_for(
        &self,
        db: &mut EngineDb,
        definition_id: i64,
    ) -> Result<Arc<StateMachine>, EngineError> {
        if let Some(m) = lock(&self.inner.by_definition).get(&definition_id) {
            return Ok(m.clone());
        }
        let (name, source) = db.definition(definition_id)?;
        let sm = StateMachine::load_substituted(&source).map_err(|error| {
            EngineError::InvalidDefinition {
                machine: name,
                error,
            }
        })?;
        let sm = Arc::new(sm);
        lock(&self.inner.by_definition).insert(definition_id, sm.clone());
        Ok(sm)
    }

    /// Checks what the database holds after `open`: loads every definition a
    /// running execution uses (failing, with `States.Runtime`, executions
    /// whose stored definition this build refuses) and wakes the driver so
    /// Waits and timeouts that passed while the process was down fire now.
    pub fn resume(&self) -> Result<ResumeReport, EngineError> {
        let now = self.now_ms();
        let mut failed_on_load = 0;
        {
            let mut db = lock(&self.inner.db);
            for def in db.running_definitions()? {
                if let Err(EngineError::InvalidDefinition { error, .. }) =
                    self.machine_for(&mut db, def)
                {
                    for id in db.running_with_definition(def)? {
                        let Some(row) = db.load(id)? else { continue };
                        let cause = format!("the stored definition no longer loads: {error}");
                        let phase = serde_json::to_string(&Phase::Done)?;
                        let ev = history::execution_failed(Some(states::RUNTIME), Some(&cause));
                        db.commit(&Commit {
                            id,
                            expected_version: row.version,
                            status: "FAILED",
                            output: None,
                            error: Some(states::RUNTIME),
                            cause: Some(&cause),
                            stop_ms: Some(now),
                            wake_ms: None,
                            invoking: false,
                            phase: &phase,
                            first_event: row.next_event,
                            events: &[NewEvent {
                                event_type: ev.0,
                                details: ev.1,
                                at_ms: now,
                            }],
                            new_tokens: &[],
                            closed_tokens: &[],
                        })?;
                        self.inner.backlog_remove(id);
                        failed_on_load += 1;
                    }
                }
            }
        }
        let (running, waiting_for_callback, waiting_for_timer) = {
            let mut db = lock(&self.inner.db);
            db.flush()?;
            db.count_running()?
        };
        self.inner.wake.notify_one();
        Ok(ResumeReport {
            running,
            waiting_for_callback,
            waiting_for_timer,
            failed_on_load,
        })
    }

    /// Starts an execution named `name` (unique in this engine). As AWS does
    /// for Standard workflows: a RUNNING execution with the same name and
    /// input is returned as is; any other reuse of the name (different
    /// input, or the first execution has closed) is `ExecutionAlreadyExists`.
    pub fn start_execution(
        &self,
        state_machine: &str,
        name: &str,
        input: Value,
    ) -> Result<StartedExecution, EngineError> {
        if !valid_name(name) {
            return Err(EngineError::InvalidName(name.to_string()));
        }
        let Some((definition_id, sm)) = self.inner.machines.get(state_machine) else {
            return Err(EngineError::StateMachineDoesNotExist(machine_arn(
                state_machine,
            )));
        };
        let input_text = input.to_string();
        if input_text.len() > MAX_PAYLOAD {
            return Err(EngineError::InvalidExecutionInput(format!(
                "{} bytes; the limit is {MAX_PAYLOAD}",
                input_text.len()
            )));
        }
        let arn = execution_arn(state_machine, name);
        let mut db = lock(&self.inner.db);
        if let Some(found) = db.find_execution(name)? {
            let same_input =
                serde_json::from_str::<Value>(&found.input).ok().as_ref() == Some(&input);
            if found.machine == state_machine && found.status == "RUNNING" && same_input {
                return Ok(StartedExecution {
                    execution_arn: arn,
                    start_date: from_ms(found.start_ms),
                    already_running: true,
                });
            }
            return Err(EngineError::ExecutionAlreadyExists(execution_arn(
                &found.machine,
                name,
            )));
        }
        let now = self.now_ms();
        let (event_type, details) = history::execution_started(&input, ROLE_ARN);
        let phase = serde_json::to_string(&Phase::Enter {
            state: sm.start_at.clone(),
            input,
        })?;
        let id = db.insert_execution(
            name,
            state_machine,
            *definition_id,
            &input_text,
            now,
            sm.timeout_seconds.map(|s| now + (s as i64) * 1000),
            &phase,
            &NewEvent {
                event_type,
                details,
                at_ms: now,
            },
        )?;
        db.flush()?;
        // Under the database lock: no worker can advance it before it counts.
        self.inner.backlog_add(id);
        drop(db);
        tracing::debug!(execution = %name, machine = %state_machine, "execution started");
        self.inner.wake.notify_one();
        Ok(StartedExecution {
            execution_arn: arn,
            start_date: from_ms(now),
            already_running: false,
        })
    }

    /// `StartSyncExecution`, as for an Express workflow: starts the
    /// execution and advances it on a task of its own — not waiting for the
    /// driver's next round — then answers with its description once it
    /// closes, or, still `RUNNING`, when `timeout` has passed (it goes on
    /// in the background; AWS would answer with a timeout then). The
    /// execution is durable and recorded like any other (an Express one on
    /// AWS is not, and keeps only what its logging configuration sends to
    /// CloudWatch): what it records is what a test can read.
    pub async fn start_sync_execution(
        &self,
        state_machine: &str,
        name: &str,
        input: Value,
        timeout: Duration,
    ) -> Result<ExecutionDescription, EngineError> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.start_execution(state_machine, name, input)?;
        let id = lock(&self.inner.db)
            .find_execution(name)?
            .ok_or_else(|| EngineError::ExecutionDoesNotExist(name.to_string()))?
            .id;
        let mut pause = Duration::from_micros(200);
        loop {
            if let Some(claim) = self.try_claim(id) {
                let engine = self.clone();
                // Spawned: a caller that stops waiting does not cancel a
                // step halfway (its task would stay in flight until restart).
                let step = tokio::spawn(async move { engine.advance(claim).await });
                match tokio::time::timeout_at(deadline, step).await {
                    Ok(Ok(r)) => {
                        r?;
                    }
                    Ok(Err(e)) => {
                        return Err(EngineError::Db(format!(
                            "the synchronous execution's step was cancelled: {e}"
                        )));
                    }
                    Err(_) => return self.describe_execution(name),
                }
            }
            let d = self.describe_execution(name)?;
            let now = tokio::time::Instant::now();
            if d.status != ExecutionStatus::Running || now >= deadline {
                return Ok(d);
            }
            // The driver holds it (it claimed it first), or it waits on a
            // timer (a retry interval): look again shortly.
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    fn pending_token(
        &self,
        db: &mut EngineDb,
        token: &str,
    ) -> Result<crate::db::TokenRow, EngineError> {
        if !token::well_formed(token) {
            return Err(EngineError::InvalidToken);
        }
        let row = db.token(token)?.ok_or(EngineError::TaskDoesNotExist)?;
        if row.status != token_status::PENDING {
            return Err(EngineError::TaskTimedOut);
        }
        let now = self.now_ms();
        let expired =
            row.timeout_ms.is_some_and(|d| now >= d) || row.heartbeat_ms.is_some_and(|d| now >= d);
        if expired {
            return Err(EngineError::TaskTimedOut);
        }
        Ok(row)
    }

    /// `SendTaskSuccess`: the waiting task succeeds with `output` as its
    /// result. `InvalidToken` for a malformed token, `TaskDoesNotExist` for
    /// one never issued, `TaskTimedOut` for one already answered, timed out
    /// or belonging to a closed execution.
    pub fn send_task_success(&self, task_token: &str, output: Value) -> Result<(), EngineError> {
        let text = output.to_string();
        if text.len() > MAX_PAYLOAD {
            return Err(EngineError::InvalidOutput(format!(
                "{} bytes; the limit is {MAX_PAYLOAD}",
                text.len()
            )));
        }
        let mut db = lock(&self.inner.db);
        let row = self.pending_token(&mut db, task_token)?;
        let now = self.now_ms();
        db.update_token(
            task_token,
            row.execution_id,
            token_status::SUCCEEDED,
            Some(&text),
            None,
            Some(now),
        )?;
        db.flush()?;
        self.inner.backlog_add(row.execution_id);
        drop(db);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// `SendTaskFailure`: the waiting task fails with `error` (what Retry
    /// and Catch match) and `cause`.
    pub fn send_task_failure(
        &self,
        task_token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), EngineError> {
        let answer = serde_json::to_string(&TaskError::new(error, cause))?;
        let mut db = lock(&self.inner.db);
        let row = self.pending_token(&mut db, task_token)?;
        let now = self.now_ms();
        db.update_token(
            task_token,
            row.execution_id,
            token_status::FAILED,
            Some(&answer),
            None,
            Some(now),
        )?;
        db.flush()?;
        self.inner.backlog_add(row.execution_id);
        drop(db);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// `SendTaskHeartbeat`: restarts the task's HeartbeatSeconds window.
    pub fn send_task_heartbeat(&self, task_token: &str) -> Result<(), EngineError> {
        let mut db = lock(&self.inner.db);
        let row = self.pending_token(&mut db, task_token)?;
        if let Some(h) = row.heartbeat_s {
            let next = self.now_ms() + h * 1000;
            db.update_token(
                task_token,
                row.execution_id,
                token_status::PENDING,
                None,
                Some(next),
                None,
            )?;
            db.flush()?;
        }
        Ok(())
    }

    /// `StopExecution`: a RUNNING execution becomes ABORTED now (an
    /// in-flight task's result is discarded when it arrives; a pending task
    /// token stops being accepted). Stopping a closed execution changes
    /// nothing. Returns the stop date.
    pub fn stop_execution(
        &self,
        execution: &str,
        error: Option<&str>,
        cause: Option<&str>,
    ) -> Result<DateTime<Utc>, EngineError> {
        let name = name_of(execution);
        let mut db = lock(&self.inner.db);
        let id = db
            .find_execution(name)?
            .ok_or_else(|| EngineError::ExecutionDoesNotExist(execution.to_string()))?
            .id;
        let row = db
            .load(id)?
            .ok_or_else(|| EngineError::ExecutionDoesNotExist(execution.to_string()))?;
        if row.status != "RUNNING" {
            let d = db.describe(name)?;
            return Ok(from_ms(d.and_then(|d| d.stop_ms).unwrap_or(row.start_ms)));
        }
        let now = self.now_ms();
        let machine = self.machine_for(&mut db, row.definition_id)?;
        let mut run = Run::new(row, machine, now)?;
        run.finish(End::Aborted {
            error: error.map(str::to_string),
            cause: cause.map(str::to_string),
        });
        if !run.commit(&mut db, None, false)? {
            return Err(EngineError::Db(
                "the execution changed while being stopped".into(),
            ));
        }
        db.flush()?;
        self.inner.backlog_remove(id);
        drop(db);
        tracing::debug!(execution = %name, "execution aborted");
        self.inner.wake.notify_one();
        Ok(from_ms(now))
    }

    /// `DescribeExecution`, by name or ARN.
    pub fn describe_execution(&self, execution: &str) -> Result<ExecutionDescription, EngineError> {
        let mut db = lock(&self.inner.db);
        // What a caller can see is durable.
        db.flush()?;
        let d = db
            .describe(name_of(execution))?
            .ok_or_else(|| EngineError::ExecutionDoesNotExist(execution.to_string()))?;
        Ok(ExecutionDescription {
            execution_arn: execution_arn(&d.machine, &d.name),
            state_machine_arn: machine_arn(&d.machine),
            status: ExecutionStatus::parse(&d.status)?,
            input: serde_json::from_str(&d.input)?,
            output: d.output.as_deref().map(serde_json::from_str).transpose()?,
            error: d.error,
            cause: d.cause,
            start_date: from_ms(d.start_ms),
            stop_date: d.stop_ms.map(from_ms),
            name: d.name,
        })
    }

    /// `GetExecutionHistory`, oldest first.
    pub fn history(&self, execution: &str) -> Result<Vec<HistoryEvent>, EngineError> {
        let mut db = lock(&self.inner.db);
        db.flush()?;
        let id = db
            .find_execution(name_of(execution))?
            .ok_or_else(|| EngineError::ExecutionDoesNotExist(execution.to_string()))?
            .id;
        db.events(id)
    }

    /// The names of the states entered, in order (for cross-checking a run
    /// against another interpreter, e.g. moto's).
    pub fn states_entered(&self, execution: &str) -> Result<Vec<String>, EngineError> {
        let mut db = lock(&self.inner.db);
        db.flush()?;
        let id = db
            .find_execution(name_of(execution))?
            .ok_or_else(|| EngineError::ExecutionDoesNotExist(execution.to_string()))?
            .id;
        db.states_entered(id)
    }

    /// When the next timer (Wait, retry interval, task or execution timeout)
    /// of an execution nobody is advancing falls due.
    pub fn next_timer(&self) -> Result<Option<DateTime<Utc>>, EngineError> {
        let claims = lock(&self.inner.claims).clone();
        let wakes = lock(&self.inner.db).next_wakes(claims.len() + 1)?;
        Ok(wakes
            .into_iter()
            .find(|(id, _)| !claims.contains(id))
            .map(|(_, w)| from_ms(w)))
    }

    fn try_claim(&self, id: i64) -> Option<Claim> {
        let mut claims = lock(&self.inner.claims);
        if claims.insert(id) {
            self.inner.busy.fetch_add(1, Ordering::SeqCst);
            Some(Claim {
                inner: self.inner.clone(),
                id,
                active: true,
            })
        } else {
            None
        }
    }

    /// Up to `limit` runnable executions nobody is advancing. Claimed ones
    /// leave the runnable index with their first commit, so only those
    /// claimed and not yet started can be in the way: twice the limit is
    /// read, and a short answer only means the next listing finds the rest.
    fn runnable_unclaimed(&self, limit: usize) -> Result<Vec<i64>, EngineError> {
        let now = self.now_ms();
        let ids = lock(&self.inner.db).runnable(now, limit * 2)?;
        let claims = lock(&self.inner.claims);
        Ok(ids
            .into_iter()
            .filter(|id| !claims.contains(id))
            .take(limit)
            .collect())
    }

    /// Advances everything runnable at the clock's current time, including
    /// what becomes runnable meanwhile (tasks, retries whose interval is 0),
    /// without sleeping. Returns the number of state transitions made.
    ///
    /// The runnable executions are advanced together (on this task, polled
    /// in order), so their task invocations share group commits as under
    /// the driver.
    pub async fn run_until_idle(&self) -> Result<usize, EngineError> {
        let mut total = 0;
        loop {
            lock(&self.inner.db).flush()?;
            let ids = self.runnable_unclaimed(256)?;
            if ids.is_empty() {
                return Ok(total);
            }
            let claims: Vec<Claim> = ids
                .into_iter()
                .filter_map(|id| self.try_claim(id))
                .collect();
            let results =
                futures::future::join_all(claims.into_iter().map(|c| self.advance(c))).await;
            let mut progressed = false;
            for r in results {
                let (n, moved) = r?;
                total += n;
                progressed |= moved;
            }
            if !progressed {
                lock(&self.inner.db).flush()?;
                return Ok(total);
            }
        }
    }

    /// How many executions the engine is behind: those started, or whose
    /// task token was answered, that it has not yet advanced to their next
    /// wait (for a task token or a timer) or to their end — mid-task ones
    /// included, each counted once. An execution woken by its own timer
    /// (a Wait, a retry interval, a timeout) is not counted: only work the
    /// outside asked for is. At open, every execution runnable then (or
    /// interrupted mid-task) counts. A counter kept in memory: O(1), for a
    /// front door to refuse new work while the engine is behind.
    pub fn backlog(&self) -> usize {
        self.inner.backlog_len.load(Ordering::Relaxed)
    }

    /// Steps one claimed execution until it blocks, finishes or has had its
    /// turn. Returns (transitions, whether anything happened).
    ///
    /// Durability (the invariant the crash test checks): a task — request-
    /// response or callback — is invoked only once the commit that
    /// schedules it, and with it everything the execution did before
    /// (the previous task's result included), is durable; the task's
    /// result is applied to the run kept in memory, and the next commit
    /// records it before anything else is invoked. So a process killed at
    /// any instant resumes each execution at the task that was in flight
    /// (or whose result was not yet committed), never at an earlier one:
    /// tasks run at least once, at most one task is repeated. The wait
    /// shares commits: the invocation waits for the open batch to be
    /// committed (when no worker is stepping any more, or when it is
    /// [`crate::db`]'s 10 ms old), not for a commit of its own.
    async fn advance(&self, mut claim: Claim) -> Result<(usize, bool), EngineError> {
        let id = claim.id;
        let mut carried: Option<Box<Run>> = None;
        let mut pending: Option<(u64, InvokeOutcome)> = None;
        let mut total = 0;
        let mut progressed = false;
        loop {
            let turn = {
                let mut db = lock(&self.inner.db);
                self.turn(&mut db, id, carried.take(), pending.take())?
            };
            match turn {
                Turn::Idle(n, wrote) => {
                    return Ok((total + n, progressed || wrote));
                }
                Turn::Yield(n) => {
                    self.inner.wake.notify_one();
                    return Ok((total + n, true));
                }
                Turn::Invoke(req, n, run, batch) => {
                    total += n;
                    progressed = true;
                    claim.pause();
                    if let Some(seq) = batch {
                        self.durable(seq).await?;
                    }
                    let outcome = {
                        let _slot = self.inner.invocations.acquire().await;
                        self.call(&req).await
                    };
                    claim.resume();
                    pending = Some((req.invocation, outcome));
                    carried = Some(run);
                }
            }
        }
    }

    /// Waits until batch `seq` is committed, sharing the commit with
    /// whatever else is written meanwhile: it commits the batch itself when
    /// no worker is stepping (nothing more is coming to share it with) or
    /// the batch is due, else waits for whoever commits it. An error if the
    /// batch was rolled back (its writes are gone; the task must not run).
    async fn durable(&self, seq: u64) -> Result<(), EngineError> {
        let _waiting = Waiting::new(&self.inner);
        let mut settled = lock(&self.inner.db).subscribe_settled();
        loop {
            {
                let mut db = lock(&self.inner.db);
                if db.settled() >= seq {
                    return if db.committed(seq) {
                        Ok(())
                    } else {
                        Err(EngineError::Db(
                            "the group commit holding a task's schedule failed".into(),
                        ))
                    };
                }
                if self.inner.busy.load(Ordering::SeqCst) == 0 || db.flush_due() {
                    db.flush()?;
                    continue;
                }
            }
            if settled.changed().await.is_err() {
                return Err(EngineError::Db("the engine database was closed".into()));
            }
        }
    }

    /// One critical section: load (or take back the run kept across a task
    /// call), step until something blocks, commit.
    fn turn(
        &self,
        db: &mut EngineDb,
        id: i64,
        carried: Option<Box<Run>>,
        result: Option<(u64, InvokeOutcome)>,
    ) -> Result<Turn, EngineError> {
        let now = self.now_ms();
        let (mut run, mut flow) = match carried {
            Some(mut run) => {
                // Anything written meanwhile (a stop) wins over the call's result.
                let unchanged = db
                    .version(id)?
                    .is_some_and(|(v, status)| v == run.row.version && status == "RUNNING");
                let Some((invocation, outcome)) = result.filter(|_| unchanged) else {
                    return Ok(Turn::Idle(0, false));
                };
                if !run.awaits(invocation) {
                    return Ok(Turn::Idle(0, false));
                }
                run.now = now;
                let flow = run.apply_outcome(invocation, outcome)?;
                (run, flow)
            }
            None => {
                let Some(row) = db.load(id)? else {
                    self.inner.backlog_remove(id);
                    return Ok(Turn::Idle(0, false));
                };
                if row.status != "RUNNING" {
                    self.inner.backlog_remove(id);
                    return Ok(Turn::Idle(0, false));
                }
                let applying = result.is_some();
                if !applying && (row.invoking || row.wake_ms.is_none_or(|w| w > now)) {
                    return Ok(Turn::Idle(0, false));
                }
                let machine = match self.machine_for(db, row.definition_id) {
                    Ok(m) => m,
                    Err(EngineError::InvalidDefinition { error, .. }) => {
                        tracing::error!(execution = %row.name, %error, "stored definition no longer loads");
                        return Ok(Turn::Idle(0, false));
                    }
                    Err(e) => return Err(e),
                };
                let mut run = Box::new(Run::new(row, machine, now)?);
                let mut flow = Flow::Continue;
                if let Some((invocation, outcome)) = result {
                    if !run.awaits(invocation) {
                        // Stopped (or otherwise moved on) while the task ran:
                        // the result is discarded, as AWS discards a stopped
                        // task's.
                        return Ok(Turn::Idle(0, false));
                    }
                    flow = run.apply_outcome(invocation, outcome)?;
                }
                (run, flow)
            }
        };
        let start = run.turn_start;
        loop {
            match flow {
                Flow::Continue => {
                    if run.transitions >= TURN_TRANSITIONS {
                        run.commit(db, Some(now), false)?;
                        return Ok(Turn::Yield(run.transitions - start));
                    }
                    flow = run.step(db)?;
                }
                Flow::Block(wake) => {
                    run.commit(db, wake, false)?;
                    self.inner.backlog_remove(id);
                    return Ok(Turn::Idle(run.transitions - start, true));
                }
                Flow::Finished => {
                    run.commit(db, None, false)?;
                    self.inner.backlog_remove(id);
                    tracing::debug!(execution = %run.row.name, "execution closed");
                    return Ok(Turn::Idle(run.transitions - start, true));
                }
                Flow::Invoke(req) => {
                    let n = run.transitions - start;
                    run.turn_start = run.transitions;
                    // The attempt is recorded as in flight, with everything
                    // before it (the last task's result); the caller invokes
                    // it only once this is durable. A callback's token is
                    // thus durable before any Lambda can hand it out.
                    if !run.commit(db, None, true)? {
                        return Ok(Turn::Idle(n, false));
                    }
                    return Ok(Turn::Invoke(req, n, run, db.pending_batch()));
                }
            }
        }
    }

    /// Calls the invoker on its own task, so a panicking handler fails the
    /// task (`Lambda.Unknown`) instead of the engine.
    async fn call(&self, req: &InvokeRequest) -> InvokeOutcome {
        tracing::debug!(execution = %req.execution, state = %req.state, function = %req.function, "invoking task");
        let invoker = self.inner.invoker.clone();
        let (function, execution, state, token, payload) = (
            req.function.clone(),
            req.execution.clone(),
            req.state.clone(),
            req.token.clone(),
            req.payload.clone(),
        );
        let handle = tokio::spawn(async move {
            let call = TaskCall {
                function: &function,
                execution_name: &execution,
                state: &state,
                task_token: token.as_deref(),
            };
            invoker.invoke_lambda(call, payload).await
        });
        let abort = handle.abort_handle();
        let joined = match req.timeout {
            Some(d) => match tokio::time::timeout(d, handle).await {
                Ok(j) => j,
                Err(_) => {
                    abort.abort();
                    return InvokeOutcome::TimedOut;
                }
            },
            None => handle.await,
        };
        match joined {
            Ok(Ok(Invoked::Return(v))) => InvokeOutcome::Ok(v),
            Ok(Ok(Invoked::Response(r))) => InvokeOutcome::Response(r),
            Ok(Err(e)) => InvokeOutcome::Err(e),
            Err(e) => {
                tracing::error!(execution = %req.execution, state = %req.state, "task handler panicked or was cancelled");
                InvokeOutcome::Err(TaskError::new(
                    "Lambda.Unknown",
                    if e.is_panic() {
                        "The task handler panicked."
                    } else {
                        "The task handler was cancelled."
                    },
                ))
            }
        }
    }

    /// Makes the driver look again at once (it sleeps up to a minute when no
    /// timer is near): after a test clock jumps forward, Waits and timeouts
    /// now due fire without waiting out that sleep.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Starts the background driver: it advances runnable executions (up to
    /// 32 at once), then sleeps until the next timer or until woken by a
    /// start, a SendTask* or a stop. It stops when the handle is dropped or
    /// shut down. Needs a tokio runtime with time enabled.
    pub fn spawn_driver(&self) -> DriverHandle {
        let (stop_tx, stop_rx) = watch::channel(false);
        let engine = self.clone();
        let join = tokio::spawn(async move { engine.drive(stop_rx).await });
        DriverHandle {
            stop: stop_tx,
            join: Some(join),
        }
    }

    async fn drive(self, mut stop: watch::Receiver<bool>) {
        let mut tasks: JoinSet<Result<(usize, bool), EngineError>> = JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            {
                let mut db = lock(&self.inner.db);
                if (tasks.is_empty() || db.flush_due())
                    && let Err(e) = db.flush()
                {
                    tracing::error!(error = %e, "engine driver: group commit");
                }
            }
            // Claim in chunks: each listing reads the runnable index, so
            // under load it is read once per DRIVER_REFILL finished tasks,
            // not once per task.
            let free = DRIVER_CONCURRENCY.saturating_sub(tasks.len());
            if free >= DRIVER_REFILL || (free > 0 && tasks.len() < DRIVER_REFILL) {
                match self.runnable_unclaimed(free) {
                    Ok(ids) => {
                        for id in ids {
                            if let Some(claim) = self.try_claim(id) {
                                let engine = self.clone();
                                tasks.spawn(async move { engine.advance(claim).await });
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "engine driver: listing runnable executions")
                    }
                }
            }
            let now = self.now_ms();
            let next_wake = lock(&self.inner.db).next_future_wake(now);
            let sleep_for = match next_wake {
                Ok(Some(at)) => Duration::from_millis((at - now).clamp(0, 60_000) as u64),
                Ok(None) => Duration::from_secs(60),
                Err(e) => {
                    tracing::error!(error = %e, "engine driver: reading timers");
                    Duration::from_secs(1)
                }
            };
            // With every slot busy, only a finishing task frees one — but an
            // open group commit must still be flushed in time.
            let batch_open = lock(&self.inner.db).batch_open();
            let sleep_for = if batch_open {
                sleep_for.min(crate::db::BATCH_AGE)
            } else {
                sleep_for
            };
            let timer_useful = tasks.len() < DRIVER_CONCURRENCY || batch_open;
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(Err(e)) = done {
                        tracing::error!(error = %e, "engine driver: advancing an execution");
                    }
                }
                _ = tokio::time::sleep(sleep_for), if timer_useful => {}
                _ = stop.changed() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
        if let Err(e) = lock(&self.inner.db).flush() {
            tracing::error!(error = %e, "engine driver: last group commit");
        }
    }
}

/// Owns the background driver. Dropping it stops the driver at once
/// (in-flight steps are cancelled; everything committed stays, and an
/// interrupted task runs again on the next open). `shutdown` lets in-flight
/// steps finish first.
pub struct DriverHandle {
    stop: watch::Sender<bool>,
    join: Option<tokio::task::JoinHandle<()>>,
}

impl DriverHandle {
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(j) = self.join.take() {
            let _ = j.await;
        }
    }
}

impl Drop for DriverHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(j) = self.join.take() {
            j.abort();
        }
    }
}
