//! `jit-local asl run`: one execution of a definition, in memory, with
//! canned task answers and a clock that jumps to the next timer — a dry run
//! of a state machine in milliseconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jit_core::ports::{Clock, ManualClock};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::definition::{Kind, StateMachine, Substitutions};
use crate::engine::{
    Definitions, Engine, ExecutionStatus, Invoked, TaskCall, TaskError, TaskInvoker,
};
use crate::error::EngineError;
use crate::history::HistoryEvent;
use crate::{EngineDb, time};

/// One canned answer for a Task state: `{"output": …}`,
/// `{"error": "X", "cause": "Y"}` or `{"timeout": true}`. For a
/// `.waitForTaskToken` state it is the SendTaskSuccess / SendTaskFailure
/// answer (or no answer at all, so the task times out). For a Lambda task,
/// `output` is the function's return value — or AWS's whole
/// `lambda:invoke` response (an object with `Payload` and a numeric
/// `StatusCode`, and no field an Invoke response lacks), e.g. copied from
/// a recorded execution, which the task then returns as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum CannedAnswer {
    Output {
        output: Value,
    },
    Error {
        error: String,
        #[serde(default)]
        cause: String,
    },
    Timeout {
        timeout: bool,
    },
}

/// Canned answers per state name, used in order; the last one repeats. A
/// task with no entry returns its input payload (like moto's echo).
#[derive(Debug, Clone, Default)]
pub struct CannedTasks {
    answers: HashMap<String, Vec<CannedAnswer>>,
    substitutions: Substitutions,
}

impl CannedTasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a tasks file: `{"<StateName>": [ <answer>, … ], …}`.
    pub fn from_json(text: &str) -> Result<Self, EngineError> {
        let answers: HashMap<String, Vec<CannedAnswer>> = serde_json::from_str(text).map_err(|e| {
            EngineError::InvalidCannedTasks(format!(
                "expected {{\"<StateName>\": [{{\"output\": ...}} | {{\"error\": \"X\", \"cause\": \"Y\"}} | {{\"timeout\": true}}]}}: {e}"
            ))
        })?;
        Ok(CannedTasks {
            answers,
            substitutions: Substitutions::new(),
        })
    }

    /// Adds an answer for `state` (after any it already has).
    pub fn answer(mut self, state: impl Into<String>, answer: CannedAnswer) -> Self {
        self.answers.entry(state.into()).or_default().push(answer);
        self
    }

    /// The `${…}` substitutions to load the definition with.
    pub fn with_substitutions(mut self, substitutions: Substitutions) -> Self {
        self.substitutions = substitutions;
        self
    }

    fn validate(&self, sm: &StateMachine) -> Result<(), EngineError> {
        let bad = |m: String| Err(EngineError::InvalidCannedTasks(m));
        for (state, answers) in &self.answers {
            let Some(st) = sm.states.get(state) else {
                return bad(format!("no state named \"{state}\" in the definition"));
            };
            let Kind::Task(t) = &st.kind else {
                return bad(format!("state \"{state}\" is not a Task state"));
            };
            if answers.is_empty() {
                return bad(format!("state \"{state}\": the list of answers is empty"));
            }
            for a in answers {
                match a {
                    CannedAnswer::Timeout { timeout: false } => {
                        return bad(format!(
                            "state \"{state}\": {{\"timeout\": false}} means nothing; leave the entry out"
                        ));
                    }
                    CannedAnswer::Timeout { timeout: true } => {
                        let callback = t.resource.is_callback();
                        let literal_timeout =
                            matches!(t.timeout, Some(crate::definition::Seconds::Literal(_)));
                        if callback && t.timeout.is_none() && t.heartbeat.is_none() {
                            return bad(format!(
                                "state \"{state}\": a timeout answer needs TimeoutSeconds or HeartbeatSeconds (without them the task waits for ever)"
                            ));
                        }
                        if !callback && !literal_timeout {
                            return bad(format!(
                                "state \"{state}\": a timeout answer for a request-response task needs a literal TimeoutSeconds"
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// The result of a dry run; serializes as
/// `{status, output | error + cause, states, history}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub status: ExecutionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// The states entered, in order.
    pub states: Vec<String>,
    pub history: Vec<HistoryEvent>,
    /// Why a run stopped while still RUNNING.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

enum Callback {
    Answer(CannedAnswer),
    Echo(Value),
}

struct CannedInvoker {
    answers: HashMap<String, Vec<CannedAnswer>>,
    used: Mutex<HashMap<String, usize>>,
    callbacks: Mutex<Vec<(String, Callback)>>,
    /// Literal TimeoutSeconds per state, to simulate a hung request-response task.
    timeouts: HashMap<String, u64>,
    clock: Arc<ManualClock>,
}

impl CannedInvoker {
    fn next(&self, state: &str) -> Option<CannedAnswer> {
        let list = self.answers.get(state)?;
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let n = used.entry(state.to_string()).or_insert(0);
        let a = list.get((*n).min(list.len().saturating_sub(1))).cloned();
        *n += 1;
        a
    }
}

/// The fields of Lambda's `Invoke` response as Step Functions returns it.
const INVOKE_RESPONSE_FIELDS: &[&str] = &[
    "ExecutedVersion",
    "FunctionError",
    "LogResult",
    "Payload",
    "SdkHttpMetadata",
    "SdkResponseMetadata",
    "StatusCode",
];

/// Is a canned output AWS's whole `lambda:invoke` response rather than a
/// function's return value?
pub(crate) fn is_invoke_response(v: &Value) -> bool {
    v.as_object().is_some_and(|m| {
        m.contains_key("Payload")
            && m.get("StatusCode").is_some_and(Value::is_u64)
            && m.keys()
                .all(|k| INVOKE_RESPONSE_FIELDS.contains(&k.as_str()))
    })
}

#[async_trait]
impl TaskInvoker for CannedInvoker {
    async fn invoke(&self, _function: &str, payload: Value) -> Result<Value, TaskError> {
        Ok(payload)
    }

    async fn invoke_task(&self, call: TaskCall<'_>, payload: Value) -> Result<Value, TaskError> {
        let answer = self.next(call.state);
        if let Some(token) = call.task_token {
            let cb = match answer {
                Some(a) => Callback::Answer(a),
                None => Callback::Echo(payload.clone()),
            };
            self.callbacks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((token.to_string(), cb));
            return Ok(payload);
        }
        match answer {
            None => Ok(payload),
            Some(CannedAnswer::Output { output }) => Ok(output),
            Some(CannedAnswer::Error { error, cause }) => Err(TaskError { error, cause }),
            Some(CannedAnswer::Timeout { .. }) => {
                // The task "hangs" until its TimeoutSeconds has passed.
                let secs = self.timeouts.get(call.state).copied().unwrap_or(0);
                self.clock.advance(chrono::Duration::seconds(secs as i64));
                Ok(payload)
            }
        }
    }

    async fn invoke_lambda(
        &self,
        call: TaskCall<'_>,
        payload: Value,
    ) -> Result<Invoked, TaskError> {
        let v = self.invoke_task(call, payload).await?;
        Ok(if call.task_token.is_none() && is_invoke_response(&v) {
            Invoked::Response(v)
        } else {
            Invoked::Return(v)
        })
    }
}

const MACHINE: &str = "asl-run";

/// Runs `definition_json` once on `input` with canned task answers, in
/// memory, jumping the clock to each next timer. Refuses a definition the
/// engine would refuse, and a tasks file naming unknown or non-Task states.
pub async fn run_with_canned_tasks(
    definition_json: &str,
    input: Value,
    canned: CannedTasks,
) -> Result<RunReport, EngineError> {
    let sm = StateMachine::load(definition_json, &canned.substitutions).map_err(|error| {
        EngineError::InvalidDefinition {
            machine: MACHINE.into(),
            error,
        }
    })?;
    canned.validate(&sm)?;
    let timeouts = sm
        .states
        .iter()
        .filter_map(|(name, st)| match &st.kind {
            Kind::Task(t) => match t.timeout {
                Some(crate::definition::Seconds::Literal(s)) => Some((name.clone(), s)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    // Whole seconds, so the history's timestamps read cleanly.
    let start = time::from_ms(chrono::Utc::now().timestamp() * 1000);
    let clock = Arc::new(ManualClock::new(start));
    let invoker = Arc::new(CannedInvoker {
        answers: canned.answers,
        used: Mutex::new(HashMap::new()),
        callbacks: Mutex::new(Vec::new()),
        timeouts,
        clock: clock.clone(),
    });
    let engine = Engine::open(
        EngineDb::in_memory()?,
        Definitions::new().with(MACHINE, sm),
        invoker.clone(),
        clock.clone(),
    )?;
    engine.start_execution(MACHINE, MACHINE, input)?;
    let mut note = None;
    loop {
        engine.run_until_idle().await?;
        let callbacks =
            std::mem::take(&mut *invoker.callbacks.lock().unwrap_or_else(|p| p.into_inner()));
        let mut answered = false;
        for (token, cb) in callbacks {
            let sent = match cb {
                Callback::Echo(v) | Callback::Answer(CannedAnswer::Output { output: v }) => {
                    Some(engine.send_task_success(&token, v))
                }
                Callback::Answer(CannedAnswer::Error { error, cause }) => {
                    Some(engine.send_task_failure(&token, &error, &cause))
                }
                Callback::Answer(CannedAnswer::Timeout { .. }) => None,
            };
            if let Some(r) = sent {
                answered = true;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "canned callback answer not accepted");
                }
            }
        }
        if answered {
            continue;
        }
        if engine.describe_execution(MACHINE)?.status != ExecutionStatus::Running {
            break;
        }
        match engine.next_timer()? {
            Some(at) => {
                if at > clock.now() {
                    clock.set(at);
                }
            }
            None => {
                note = Some(
                    "the execution waits for a task token that no canned answer resolves and that has no timeout"
                        .to_string(),
                );
                break;
            }
        }
    }
    let d = engine.describe_execution(MACHINE)?;
    Ok(RunReport {
        status: d.status,
        output: d.output,
        error: d.error,
        cause: d.cause,
        states: engine.states_entered(MACHINE)?,
        history: engine.history(MACHINE)?,
        note,
    })
}
