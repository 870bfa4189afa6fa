//! Pure pieces of the interpreter: the context object, payload templates
//! (`Parameters`, `ResultSelector`), input/output processing, error matching
//! and retry delays. No I/O, no clock.

use std::cell::OnceCell;

use serde_json::{Map, Value, json};

use crate::error::{DefinitionError, StateError, states};
use crate::jsonpath::{JsonPath, Step};
use crate::path::{self, RefPath};

/// What `$$` resolves to while a state runs.
pub(crate) struct Ctx<'a> {
    pub execution_arn: &'a str,
    pub execution_name: &'a str,
    /// The execution input as stored (JSON text); parsed only if a path asks.
    pub execution_input: &'a str,
    pub start_time: &'a str,
    pub machine_arn: &'a str,
    pub machine_name: &'a str,
    pub state_name: &'a str,
    pub entered_time: &'a str,
    pub retry_count: u32,
    pub token: Option<&'a str>,
    /// `$$.Map.Item` while a Map state's ItemSelector runs: (index, value).
    pub map_item: Option<(usize, &'a Value)>,
    root: OnceCell<Value>,
}

pub(crate) const ROLE_ARN: &str = "arn:aws:iam::000000000000:role/jit-local-engine";

impl<'a> Ctx<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        execution_arn: &'a str,
        execution_name: &'a str,
        execution_input: &'a str,
        start_time: &'a str,
        machine_arn: &'a str,
        machine_name: &'a str,
        state_name: &'a str,
        entered_time: &'a str,
        retry_count: u32,
        token: Option<&'a str>,
    ) -> Self {
        Ctx {
            execution_arn,
            execution_name,
            execution_input,
            start_time,
            machine_arn,
            machine_name,
            state_name,
            entered_time,
            retry_count,
            token,
            map_item: None,
            root: OnceCell::new(),
        }
    }

    /// The same context with `$$.Map.Item` set.
    pub fn with_map_item(mut self, index: usize, value: &'a Value) -> Self {
        self.map_item = Some((index, value));
        self.root = OnceCell::new();
        self
    }

    /// The context object, built on first use.
    pub fn root(&self) -> &Value {
        self.root.get_or_init(|| {
            let input: Value = serde_json::from_str(self.execution_input).unwrap_or(Value::Null);
            let mut root = json!({
                "Execution": {
                    "Id": self.execution_arn,
                    "Input": input,
                    "Name": self.execution_name,
                    "RoleArn": ROLE_ARN,
                    "StartTime": self.start_time,
                    "RedriveCount": 0,
                },
                "State": {
                    "EnteredTime": self.entered_time,
                    "Name": self.state_name,
                    "RetryCount": self.retry_count,
                },
                "StateMachine": {
                    "Id": self.machine_arn,
                    "Name": self.machine_name,
                },
            });
            if let Some(t) = self.token {
                root["Task"] = json!({ "Token": t });
            }
            if let Some((index, value)) = self.map_item {
                root["Map"] = json!({ "Item": { "Index": index, "Value": value } });
            }
            root
        })
    }

    pub fn resolve<'v>(&'v self, p: &RefPath, input: &'v Value) -> Option<&'v Value> {
        if p.context {
            p.get(self.root())
        } else {
            p.get(input)
        }
    }

    /// What a (full) JSONPath selects in `input`, or in the context object
    /// for `$$…`.
    pub fn select(&self, p: &JsonPath, input: &Value) -> Option<Value> {
        if p.context {
            p.select(self.root())
        } else {
            p.select(input)
        }
    }
}

/// A compiled `Parameters` / `ResultSelector` object: literal subtrees stay
/// literal; `key.$` entries become paths.
#[derive(Debug, Clone)]
pub(crate) enum Template {
    Literal(Value),
    Path { field: String, path: JsonPath },
    Intrinsic { call: crate::intrinsic::Call },
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
}

impl Template {
    /// Compiles a payload template, refusing non-reference paths and
    /// intrinsic functions with the state and the field's full name.
    pub fn compile(state: &str, field: &str, v: &Value) -> Result<Template, DefinitionError> {
        match v {
            Value::Object(map) => {
                let mut entries = Vec::with_capacity(map.len());
                let mut dynamic = false;
                for (k, child) in map {
                    let f = format!("{field}.{k}");
                    if let Some(name) = k.strip_suffix(".$") {
                        let text = child.as_str().ok_or_else(|| {
                            DefinitionError::at(
                                state,
                                &f,
                                "a field ending in .$ needs a path string",
                            )
                        })?;
                        if path::is_intrinsic(text) {
                            let call = crate::intrinsic::parse(text)
                                .map_err(|m| DefinitionError::at(state, &f, m))?;
                            entries.push((name.to_string(), Template::Intrinsic { call }));
                            dynamic = true;
                            continue;
                        }
                        let path =
                            JsonPath::parse(text).map_err(|m| DefinitionError::at(state, &f, m))?;
                        entries.push((
                            name.to_string(),
                            Template::Path {
                                field: k.clone(),
                                path,
                            },
                        ));
                        dynamic = true;
                    } else {
                        let t = Template::compile(state, &f, child)?;
                        dynamic |= !matches!(t, Template::Literal(_));
                        entries.push((k.clone(), t));
                    }
                }
                Ok(if dynamic {
                    Template::Object(entries)
                } else {
                    Template::Literal(v.clone())
                })
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut dynamic = false;
                for (i, child) in items.iter().enumerate() {
                    let t = Template::compile(state, &format!("{field}[{i}]"), child)?;
                    dynamic |= !matches!(t, Template::Literal(_));
                    out.push(t);
                }
                Ok(if dynamic {
                    Template::Array(out)
                } else {
                    Template::Literal(v.clone())
                })
            }
            other => Ok(Template::Literal(other.clone())),
        }
    }

    /// Fills the template from `input` (and `$$` from the context).
    /// A path that selects nothing is `States.ParameterPathFailure`.
    pub fn eval(&self, input: &Value, ctx: &Ctx<'_>) -> Result<Value, StateError> {
        match self {
            Template::Literal(v) => Ok(v.clone()),
            Template::Path { field, path } => match ctx.select(path, input) {
                Some(v) => Ok(v),
                None => Err(StateError::new(
                    states::PARAMETER_PATH_FAILURE,
                    format!(
                        "The JSONPath '{}' specified for the field '{}' could not be found in the input '{}'",
                        path.text,
                        field,
                        if path.context {
                            ctx.root().to_string()
                        } else {
                            input.to_string()
                        }
                    ),
                )),
            },
            Template::Intrinsic { call } => crate::intrinsic::eval(call, input, ctx),
            Template::Object(entries) => {
                let mut map = Map::new();
                for (k, t) in entries {
                    map.insert(k.clone(), t.eval(input, ctx)?);
                }
                Ok(Value::Object(map))
            }
            Template::Array(items) => items
                .iter()
                .map(|t| t.eval(input, ctx))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
        }
    }

    /// Whether evaluation can read `$$.Task.Token`.
    pub fn mentions_task_token(&self) -> bool {
        match self {
            Template::Literal(_) => false,
            Template::Path { path, .. } => {
                path.context
                    && matches!(path.steps.first(), Some(Step::Names(n)) if n.first().is_some_and(|f| f == "Task"))
            }
            Template::Intrinsic { call } => call_mentions_task_token(call),
            Template::Object(e) => e.iter().any(|(_, t)| t.mentions_task_token()),
            Template::Array(a) => a.iter().any(Template::mentions_task_token),
        }
    }
}

fn call_mentions_task_token(call: &crate::intrinsic::Call) -> bool {
    call.args.iter().any(|a| match a {
        crate::intrinsic::Arg::Path(p) => {
            p.context
                && matches!(p.steps.first(), Some(Step::Names(n)) if n.first().is_some_and(|f| f == "Task"))
        }
        crate::intrinsic::Arg::Call(c) => call_mentions_task_token(c),
        crate::intrinsic::Arg::Literal(_) => false,
    })
}

/// `InputPath` / `OutputPath`: absent (`$`), `null` (`{}`), or a path —
/// any JSONPath, the context object (`$$.Execution.Input`) included.
#[derive(Debug, Clone)]
pub(crate) enum IoPath {
    Whole,
    Null,
    Path(JsonPath),
}

impl IoPath {
    pub fn apply(&self, v: &Value, ctx: &Ctx<'_>) -> Result<Value, StateError> {
        match self {
            IoPath::Whole => Ok(v.clone()),
            IoPath::Null => Ok(Value::Object(Map::new())),
            IoPath::Path(p) => ctx.select(p, v).ok_or_else(|| {
                StateError::runtime(format!(
                    "Invalid path '{}' : No results for path: {}",
                    p.text,
                    p.normalized()
                ))
            }),
        }
    }

    /// Same as `apply` but consumes the value when the path is `$`.
    pub fn apply_owned(&self, v: Value, ctx: &Ctx<'_>) -> Result<Value, StateError> {
        match self {
            IoPath::Whole => Ok(v),
            _ => self.apply(&v, ctx),
        }
    }
}

/// `ResultPath`: absent (`$`: the result replaces the input), `null` (the
/// result is discarded, the input passes through), or a path into the input.
#[derive(Debug, Clone)]
pub(crate) enum ResultPath {
    Whole,
    Discard,
    Path(RefPath),
}

impl ResultPath {
    pub fn apply(&self, raw_input: &Value, result: Value) -> Result<Value, StateError> {
        match self {
            ResultPath::Whole => Ok(result),
            ResultPath::Discard => Ok(raw_input.clone()),
            ResultPath::Path(p) => {
                let mut out = raw_input.clone();
                p.set(&mut out, result)
                    .map_err(|cause| StateError::new(states::RESULT_PATH_MATCH_FAILURE, cause))?;
                Ok(out)
            }
        }
    }
}

/// Does an `ErrorEquals` entry match a raised error name?
///
/// `States.ALL` matches everything but `States.Runtime` (which AWS never
/// lets a retrier or catcher handle). A task's `States.DataLimitExceeded`
/// (its result over the limit) is caught, as on AWS; a state's output over
/// the limit fails the execution without reaching here. `States.TaskFailed` matches everything `States.ALL` does except
/// the timeouts. `States.Timeout` also matches `States.HeartbeatTimeout`
/// (AWS documents a missed heartbeat as a kind of `States.Timeout`).
pub(crate) fn error_matches(pattern: &str, error: &str) -> bool {
    if !is_handleable(error) {
        return false;
    }
    match pattern {
        states::ALL => true,
        states::TASK_FAILED => error != states::TIMEOUT && error != states::HEARTBEAT_TIMEOUT,
        states::TIMEOUT => error == states::TIMEOUT || error == states::HEARTBEAT_TIMEOUT,
        p => p == error,
    }
}

/// `States.Runtime` is terminal: no retrier or catcher ever sees it.
pub(crate) fn is_handleable(error: &str) -> bool {
    error != states::RUNTIME
}

/// The delay before retry number `n` (0 for the first retry):
/// `IntervalSeconds × BackoffRate^n`, capped by `MaxDelaySeconds`, in
/// milliseconds. With full jitter, `unit` (in [0, 1)) scales it.
pub(crate) fn retry_delay_ms(
    interval_s: u64,
    backoff: f64,
    max_delay_s: Option<u64>,
    n: u32,
    jitter_unit: Option<f64>,
) -> i64 {
    let mut secs = interval_s as f64 * backoff.powi(n.min(1000) as i32);
    if let Some(cap) = max_delay_s {
        secs = secs.min(cap as f64);
    }
    // AWS caps any retry interval at one year of seconds.
    secs = secs.min(31_622_400.0);
    if let Some(u) = jitter_unit {
        secs *= u;
    }
    (secs * 1000.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_matching_follows_aws_wildcards() {
        let cases = [
            ("States.ALL", "Custom.Error", true),
            ("States.ALL", "States.Timeout", true),
            ("States.ALL", "States.Runtime", false),
            ("States.TaskFailed", "Lambda.ServiceException", true),
            ("States.TaskFailed", "States.Timeout", false),
            ("States.TaskFailed", "States.HeartbeatTimeout", false),
            ("States.Timeout", "States.HeartbeatTimeout", true),
            ("States.HeartbeatTimeout", "States.Timeout", false),
            ("States.HeartbeatTimeout", "States.HeartbeatTimeout", true),
            ("Retryable", "Retryable", true),
            ("Retryable", "NonRetryable", false),
            ("States.Runtime", "States.Runtime", false),
            ("States.ALL", "States.DataLimitExceeded", true),
            ("States.DataLimitExceeded", "States.DataLimitExceeded", true),
        ];
        for (pattern, error, want) in cases {
            assert_eq!(error_matches(pattern, error), want, "{pattern} vs {error}");
        }
    }

    #[test]
    fn retry_delays_grow_and_are_capped() {
        // GIVEN IntervalSeconds 2, BackoffRate 3, MaxDelaySeconds 30
        let d: Vec<i64> = (0..5)
            .map(|n| retry_delay_ms(2, 3.0, Some(30), n, None))
            .collect();
        // THEN 2, 6, 18, then capped at 30
        assert_eq!(d, vec![2_000, 6_000, 18_000, 30_000, 30_000]);
        assert_eq!(retry_delay_ms(1, 1.5, None, 1, None), 1_500);
        assert_eq!(retry_delay_ms(10, 2.0, None, 0, Some(0.25)), 2_500);
    }
}
