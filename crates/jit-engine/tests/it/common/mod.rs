//! Test helpers: a scripted task invoker, a fixed start time, a one-machine
//! engine on an in-memory database and a manual clock.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use jit_core::ports::ManualClock;
use jit_engine::{
    Definitions, Engine, EngineDb, ExecutionDescription, StateMachine, Substitutions, TaskCall,
    TaskError, TaskInvoker,
};
use serde_json::Value;

pub const MACHINE: &str = "approval";

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// One call the engine made.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub function: String,
    pub state: String,
    pub payload: Value,
    pub token: Option<String>,
    pub at: DateTime<Utc>,
}

type Reply = Result<Value, TaskError>;

/// Answers per function name, in order (the last one repeats); with none
/// queued a function echoes its payload. Records every call with the clock
/// time it was made at.
pub struct Scripted {
    replies: Mutex<HashMap<String, VecDeque<Reply>>>,
    pub calls: Mutex<Vec<Call>>,
    clock: Mutex<Option<Arc<ManualClock>>>,
}

impl Scripted {
    pub fn new() -> Arc<Self> {
        Arc::new(Scripted {
            replies: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
            clock: Mutex::new(None),
        })
    }

    pub fn reply(&self, function: &str, reply: Reply) {
        self.replies
            .lock()
            .unwrap()
            .entry(function.to_string())
            .or_default()
            .push_back(reply);
    }

    pub fn ok(&self, function: &str, v: Value) {
        self.reply(function, Ok(v));
    }

    pub fn err(&self, function: &str, error: &str, cause: &str) {
        self.reply(function, Err(TaskError::new(error, cause)));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn calls_to(&self, function: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.function == function)
            .collect()
    }

    /// The token passed to the last call of a callback task.
    pub fn last_token(&self) -> String {
        self.calls()
            .iter()
            .rev()
            .find_map(|c| c.token.clone())
            .expect("a callback task was invoked")
    }
}

#[async_trait]
impl TaskInvoker for Scripted {
    async fn invoke(&self, function: &str, payload: Value) -> Result<Value, TaskError> {
        let mut replies = self.replies.lock().unwrap();
        match replies.get_mut(function) {
            Some(q) if q.len() > 1 => q.pop_front().unwrap(),
            Some(q) if q.len() == 1 => q.front().cloned().unwrap(),
            _ => Ok(payload),
        }
    }

    async fn invoke_task(&self, call: TaskCall<'_>, payload: Value) -> Result<Value, TaskError> {
        let at = self
            .clock
            .lock()
            .unwrap()
            .as_ref()
            .map(|c| jit_core::ports::Clock::now(c.as_ref()))
            .unwrap_or_else(t0);
        self.calls.lock().unwrap().push(Call {
            function: call.function.to_string(),
            state: call.state.to_string(),
            payload: payload.clone(),
            token: call.task_token.map(str::to_string),
            at,
        });
        self.invoke(call.function, payload).await
    }
}

pub struct Harness {
    pub engine: Engine,
    pub clock: Arc<ManualClock>,
    pub tasks: Arc<Scripted>,
}

pub fn load(definition: &Value) -> StateMachine {
    StateMachine::load(&definition.to_string(), &Substitutions::new())
        .unwrap_or_else(|e| panic!("definition should load: {e}"))
}

pub fn harness(definition: &Value) -> Harness {
    harness_on(
        EngineDb::in_memory().unwrap(),
        definition,
        Scripted::new(),
        t0(),
    )
}

pub fn harness_on(
    db: EngineDb,
    definition: &Value,
    tasks: Arc<Scripted>,
    now: DateTime<Utc>,
) -> Harness {
    let clock = Arc::new(ManualClock::new(now));
    *tasks.clock.lock().unwrap() = Some(clock.clone());
    let engine = Engine::open(
        db,
        Definitions::new().with(MACHINE, load(definition)),
        tasks.clone(),
        clock.clone(),
    )
    .unwrap();
    Harness {
        engine,
        clock,
        tasks,
    }
}

impl Harness {
    pub fn start(&self, name: &str, input: Value) {
        self.engine.start_execution(MACHINE, name, input).unwrap();
    }

    pub async fn idle(&self) {
        self.engine.run_until_idle().await.unwrap();
    }

    pub fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }

    pub fn describe(&self, name: &str) -> ExecutionDescription {
        self.engine.describe_execution(name).unwrap()
    }

    /// Starts `name`, runs it until idle, and describes it.
    pub async fn run(&self, name: &str, input: Value) -> ExecutionDescription {
        self.start(name, input);
        self.idle().await;
        self.describe(name)
    }

    pub fn states(&self, name: &str) -> Vec<String> {
        self.engine.states_entered(name).unwrap()
    }

    pub fn event_types(&self, name: &str) -> Vec<String> {
        self.engine
            .history(name)
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }
}

pub const FN_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:grant";
