//! `jit-engine`: a durable local executor of the Amazon States Language, so
//! `jit-local` runs `state-machine/approval.asl.json` — the very file Step
//! Functions runs on AWS — with no AWS account.
//!
//! It implements the JSONPath flavour of ASL with AWS's semantics for Task
//! (Lambda `invoke`, `invoke.waitForTaskToken`, and a function ARN as
//! Resource), Choice, Wait, Pass, Succeed and Fail; `InputPath`,
//! `Parameters`, `ResultSelector`, `ResultPath`, `OutputPath`, the context
//! object; `Retry`, `Catch`, task timeouts and heartbeats; the full
//! JSONPath Step Functions accepts in paths (filters, wildcards, slices,
//! unions, `length()`), the context object in `InputPath`/`OutputPath`;
//! Parallel and inline Map states; every intrinsic function. A
//! definition that uses anything else (other service integrations,
//! JSONata) is refused when it loads, with the state and field named —
//! never half-run.
//!
//! Durability: executions, their current state and data, task tokens with
//! their deadlines, timers and history live in SQLite ([`EngineDb`]; WAL,
//! `synchronous=NORMAL`); nothing needed to continue lives only in memory.
//! Each step is atomic (a savepoint); steps are committed in groups. The
//! invariant: **a task is invoked only once the commit that schedules it —
//! and everything before it, the previous task's result included — is
//! durable**; invocations wait for the shared group commit rather than
//! forcing one each. Whatever an API call returned or showed is durable
//! too. Kill the process at any point, [`Engine::open`] the same file and
//! [`Engine::resume`]: tokens still accept `SendTaskSuccess`, Waits and
//! timeouts whose time passed fire at once, and each execution resumes at
//! most one task back — the task that was in flight (or whose result was
//! not yet committed) is **invoked again**, an earlier one never. Tasks run
//! at least once per attempt; task handlers must be idempotent (ours are
//! guarded writes).
//!
//! Backpressure: [`Engine::backlog`] says, in O(1), how many executions the
//! engine has been asked to advance and has not yet.
//!
//! Running: [`Engine::spawn_driver`] in a server (a background task woken
//! by starts, answers and stops, sleeping until the next timer), or
//! [`Engine::run_until_idle`] in tests, with a
//! [`jit_core::ports::ManualClock`] moved by hand. [`run_with_canned_tasks`]
//! is the `jit-local asl run` dry run.
//!
//! This crate must never: log a task token; sleep in real time in tests
//! (time comes from the injected [`jit_core::ports::Clock`]); or accept a
//! definition it would run differently from AWS.
//!
//! Why not the `asl` crate (0.2.0, MIT): its `Execution` is a synchronous
//! iterator that borrows the definition and keeps its state in a `RefCell`,
//! so an execution cannot be persisted between steps or resumed after a
//! restart; tasks are a blocking `execute_task` call (no task tokens, no
//! callbacks) and Wait calls `thread::sleep`. It also has no Retry, no task
//! timeouts, and its Catch drops the error output — so the interpreter is
//! written here instead.

mod choice;
mod db;
mod definition;
mod digest;
mod engine;
mod error;
mod history;
mod interp;
mod intrinsic;
mod jsonpath;
mod path;
mod run;
mod time;
mod token;

pub use db::EngineDb;
pub use definition::{StateMachine, Substitutions};
pub use engine::{
    Definitions, DriverHandle, Engine, ExecutionDescription, ExecutionStatus, Invoked,
    ResumeReport, StartedExecution, TaskCall, TaskError, TaskInvoker,
};
pub use error::{DefinitionError, EngineError, states};
pub use history::HistoryEvent;
pub use run::{CannedAnswer, CannedTasks, RunReport, run_with_canned_tasks};
