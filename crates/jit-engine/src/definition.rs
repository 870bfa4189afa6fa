//! Loading a state machine: `${…}` substitution, then every check that
//! lets the interpreter trust the definition afterwards. A refusal always
//! names the state and the field.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

use crate::choice::{self, ChoiceRule};
use crate::error::{DefinitionError, states};
use crate::interp::{IoPath, ResultPath, Template};
use crate::jsonpath::JsonPath;
use crate::path::{self, RefPath};

/// `DefinitionSubstitutions`: placeholder name → replacement text.
pub type Substitutions = HashMap<String, String>;

/// A loaded, validated state machine definition.
#[derive(Debug, Clone)]
pub struct StateMachine {
    pub(crate) start_at: String,
    /// Every state, those inside Parallel branches and Map processors
    /// included: AWS requires state names to be unique in the whole machine,
    /// so one flat map serves every scope (transitions are checked per scope
    /// at load).
    pub(crate) states: HashMap<String, State>,
    pub(crate) timeout_seconds: Option<u64>,
    /// The definition after substitution; what executions store and reload.
    pub(crate) source: String,
}

#[derive(Debug, Clone)]
pub(crate) struct State {
    pub name: String,
    pub kind: Kind,
    pub input_path: IoPath,
    pub output_path: IoPath,
    /// `None` for terminal states (End, Succeed, Fail) and Choice.
    pub next: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Pass {
        parameters: Option<Template>,
        result: Option<Value>,
        result_path: ResultPath,
    },
    Task(Box<TaskState>),
    Choice {
        rules: Vec<ChoiceRule>,
        default: Option<String>,
    },
    Wait(WaitFor),
    Succeed,
    Fail {
        error: Option<Source>,
        cause: Option<Source>,
    },
    /// Parallel and (inline) Map: child executions of nested scopes.
    Fan(Box<FanState>),
}

/// A Parallel or inline Map state.
#[derive(Debug, Clone)]
pub(crate) struct FanState {
    pub map: bool,
    /// The `StartAt` of each Parallel branch, or of the Map's processor.
    pub starts: Vec<String>,
    /// Parallel `Parameters`; Map `ItemSelector` (or its older name,
    /// `Parameters`), evaluated per item with `$$.Map.Item`.
    pub parameters: Option<Template>,
    pub items_path: Option<RefPath>,
    pub max_concurrency: Option<Seconds>,
    pub tolerated_count: Option<Seconds>,
    pub tolerated_percentage: Option<PercentSource>,
    pub result_selector: Option<Template>,
    pub result_path: ResultPath,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

/// `ToleratedFailurePercentage` or its `…Path`.
#[derive(Debug, Clone)]
pub(crate) enum PercentSource {
    Literal(f64),
    Path(RefPath),
}

impl Kind {
    /// The prefix of the history event names (`TaskStateEntered` …).
    pub fn event_prefix(&self) -> &'static str {
        match self {
            Kind::Pass { .. } => "Pass",
            Kind::Task(_) => "Task",
            Kind::Choice { .. } => "Choice",
            Kind::Wait(_) => "Wait",
            Kind::Succeed => "Succeed",
            Kind::Fail { .. } => "Fail",
            Kind::Fan(f) if f.map => "Map",
            Kind::Fan(_) => "Parallel",
        }
    }
}

/// A literal or a path (Fail's `Error`/`ErrorPath`, `Cause`/`CausePath`).
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Literal(String),
    Path(RefPath),
    /// A string-returning intrinsic function.
    Intrinsic(crate::intrinsic::Call),
}

#[derive(Debug, Clone)]
pub(crate) enum WaitFor {
    Seconds(u64),
    SecondsPath(RefPath),
    Timestamp(chrono::DateTime<chrono::Utc>),
    TimestampPath(RefPath),
}

/// A number of seconds given literally or by a path (`TimeoutSeconds[Path]`).
#[derive(Debug, Clone)]
pub(crate) enum Seconds {
    Literal(u64),
    Path(RefPath),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resource {
    /// `arn:aws:states:::lambda:invoke`
    Invoke,
    /// `arn:aws:states:::lambda:invoke.waitForTaskToken`
    InvokeCallback,
    /// A Lambda function ARN used directly as the resource.
    FunctionArn(String),
}

impl Resource {
    pub fn is_callback(&self) -> bool {
        matches!(self, Resource::InvokeCallback)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TaskState {
    pub resource: Resource,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
    pub result_path: ResultPath,
    pub timeout: Option<Seconds>,
    pub heartbeat: Option<Seconds>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Jitter {
    None,
    Full,
}

#[derive(Debug, Clone)]
pub(crate) struct Retrier {
    pub errors: Vec<String>,
    pub interval_seconds: u64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<u64>,
    pub jitter: Jitter,
}

#[derive(Debug, Clone)]
pub(crate) struct Catcher {
    pub errors: Vec<String>,
    pub next: String,
    pub result_path: ResultPath,
}

/// AWS's bound on TimeoutSeconds / HeartbeatSeconds.
const MAX_SECONDS: u64 = 99_999_999;

impl StateMachine {
    /// Loads a definition, replacing each `${name}` placeholder from
    /// `substitutions` first (as `DefinitionSubstitutions` does). Refuses
    /// unresolved placeholders, unknown fields, unsupported state types,
    /// resources and JSONPath, and dangling `Next`s.
    pub fn load(
        definition_json: &str,
        substitutions: &Substitutions,
    ) -> Result<Self, DefinitionError> {
        let (text, unresolved) = substitute(definition_json, substitutions);
        let doc: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                if let Some(name) = unresolved.iter().next() {
                    return Err(DefinitionError::top(
                        "DefinitionSubstitutions",
                        format!(
                            "unresolved placeholder ${{{name}}} (and the definition is not valid JSON without it: {e})"
                        ),
                    ));
                }
                return Err(DefinitionError::top("", format!("not valid JSON: {e}")));
            }
        };
        if !unresolved.is_empty() {
            return Err(find_placeholder(&doc, &unresolved));
        }
        let mut sm = parse_machine(&doc)?;
        sm.source = text;
        Ok(sm)
    }

    /// Loads a definition stored after substitution (no placeholders left).
    pub(crate) fn load_substituted(text: &str) -> Result<Self, DefinitionError> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| DefinitionError::top("", format!("not valid JSON: {e}")))?;
        let mut sm = parse_machine(&doc)?;
        sm.source = text.to_string();
        Ok(sm)
    }

    /// The names of every state (those inside Parallel branches and Map
    /// processors included), sorted.
    pub fn state_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.states.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The definition text after substitution.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Replaces every resolvable `${name}`; returns the text and the names left.
fn substitute(text: &str, subs: &Substitutions) -> (String, BTreeSet<String>) {
    let mut out = String::with_capacity(text.len());
    let mut unresolved = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match subs.get(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        unresolved.insert(name.to_string());
                        out.push_str(&rest[start..start + 2 + end + 1]);
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    (out, unresolved)
}

fn find_placeholder(doc: &Value, unresolved: &BTreeSet<String>) -> DefinitionError {
    fn walk(v: &Value, field: &str, names: &BTreeSet<String>) -> Option<(String, String)> {
        match v {
            Value::String(s) => names
                .iter()
                .find(|n| s.contains(&format!("${{{n}}}")))
                .map(|n| (field.to_string(), n.clone())),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, x)| walk(x, &format!("{field}[{i}]"), names)),
            Value::Object(map) => map.iter().find_map(|(k, x)| {
                let f = if field.is_empty() {
                    k.clone()
                } else {
                    format!("{field}.{k}")
                };
                walk(x, &f, names)
            }),
            _ => None,
        }
    }
    let msg = |n: &str| format!("unresolved substitution placeholder ${{{n}}}");
    if let Some(states) = doc.get("States").and_then(Value::as_object) {
        for (name, state) in states {
            if let Some((field, n)) = walk(state, "", unresolved) {
                return DefinitionError::at(name, field, msg(&n));
            }
        }
    }
    match walk(doc, "", unresolved) {
        Some((field, n)) => DefinitionError::top(field, msg(&n)),
        None => DefinitionError::top(
            "DefinitionSubstitutions",
            msg(unresolved.iter().next().map(String::as_str).unwrap_or("")),
        ),
    }
}

fn parse_machine(doc: &Value) -> Result<StateMachine, DefinitionError> {
    let top = doc
        .as_object()
        .ok_or_else(|| DefinitionError::top("", "a definition must be a JSON object"))?;
    for k in top.keys() {
        match k.as_str() {
            "StartAt" | "States" | "Comment" | "Version" | "TimeoutSeconds" => {}
            "QueryLanguage" => {
                if top[k] != Value::String("JSONPath".into()) {
                    return Err(DefinitionError::top(
                        k,
                        "only JSONPath is supported by the local engine",
                    ));
                }
            }
            _ => return Err(DefinitionError::top(k, "unknown or unsupported field")),
        }
    }
    let start_at = top
        .get("StartAt")
        .and_then(Value::as_str)
        .ok_or_else(|| DefinitionError::top("StartAt", "required, must be a string"))?
        .to_string();
    let raw_states = top
        .get("States")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| DefinitionError::top("States", "required, must be a non-empty object"))?;
    if !raw_states.contains_key(&start_at) {
        return Err(DefinitionError::top(
            "StartAt",
            format!("no state named \"{start_at}\""),
        ));
    }
    let timeout_seconds =
        match top.get("TimeoutSeconds") {
            None => None,
            Some(v) => Some(positive_seconds(v).ok_or_else(|| {
                DefinitionError::top("TimeoutSeconds", "must be a positive integer")
            })?),
        };

    let mut states = HashMap::with_capacity(raw_states.len());
    parse_scope(raw_states, &mut states)?;
    Ok(StateMachine {
        start_at,
        states,
        timeout_seconds,
        source: String::new(),
    })
}

/// Parses the states of one scope (the machine's, a branch's, a Map
/// processor's) into `all`, checking that names are unique machine-wide
/// and that every transition stays inside the scope.
fn parse_scope(
    raw_states: &Map<String, Value>,
    all: &mut HashMap<String, State>,
) -> Result<(), DefinitionError> {
    let mut names = Vec::with_capacity(raw_states.len());
    for (name, raw) in raw_states {
        if all.contains_key(name) {
            return Err(DefinitionError::at(
                name,
                "",
                "state names must be unique in the whole state machine",
            ));
        }
        let st = parse_state(name, raw, all)?;
        if all.insert(name.clone(), st).is_some() {
            // A state nested in this one took the name.
            return Err(DefinitionError::at(
                name,
                "",
                "state names must be unique in the whole state machine",
            ));
        }
        names.push(name);
    }
    // Every transition target must exist in this scope.
    let exists = |target: &str| raw_states.contains_key(target);
    for st in names.iter().filter_map(|n| all.get(n.as_str())) {
        let missing = |field: String, target: &str| {
            DefinitionError::at(&st.name, field, format!("no state named \"{target}\""))
        };
        if let Some(n) = &st.next
            && !exists(n)
        {
            return Err(missing("Next".into(), n));
        }
        match &st.kind {
            Kind::Choice { rules, default } => {
                for (i, r) in rules.iter().enumerate() {
                    if !exists(&r.next) {
                        return Err(missing(format!("Choices[{i}].Next"), &r.next));
                    }
                }
                if let Some(d) = default
                    && !exists(d)
                {
                    return Err(missing("Default".into(), d));
                }
            }
            Kind::Task(t) => {
                for (i, c) in t.catch.iter().enumerate() {
                    if !exists(&c.next) {
                        return Err(missing(format!("Catch[{i}].Next"), &c.next));
                    }
                }
            }
            Kind::Fan(f) => {
                for (i, c) in f.catch.iter().enumerate() {
                    if !exists(&c.next) {
                        return Err(missing(format!("Catch[{i}].Next"), &c.next));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A nested scope (`Branches[i]`, `ItemProcessor`/`Iterator`): parses its
/// states into `all` and returns its `StartAt`.
fn parse_branch(
    state: &str,
    field: &str,
    v: &Value,
    map: bool,
    all: &mut HashMap<String, State>,
) -> Result<String, DefinitionError> {
    let err = |f: &str, m: &str| DefinitionError::at(state, format!("{field}{f}"), m);
    let obj = v.as_object().ok_or_else(|| err("", "must be an object"))?;
    for k in obj.keys() {
        match k.as_str() {
            "StartAt" | "States" | "Comment" => {}
            "ProcessorConfig" if map => {
                let mode = obj[k]
                    .get("Mode")
                    .and_then(Value::as_str)
                    .unwrap_or("INLINE");
                if mode != "INLINE" {
                    return Err(err(
                        ".ProcessorConfig.Mode",
                        "only INLINE Map states are supported by the local engine",
                    ));
                }
            }
            _ => return Err(err(&format!(".{k}"), "unknown or unsupported field")),
        }
    }
    let start_at = obj
        .get("StartAt")
        .and_then(Value::as_str)
        .ok_or_else(|| err(".StartAt", "required, must be a string"))?;
    let raw = obj
        .get("States")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| err(".States", "required, must be a non-empty object"))?;
    if !raw.contains_key(start_at) {
        return Err(err(".StartAt", &format!("no state named \"{start_at}\"")));
    }
    parse_scope(raw, all)?;
    Ok(start_at.to_string())
}

fn parse_fan(
    name: &str,
    ty: &str,
    obj: &Map<String, Value>,
    all: &mut HashMap<String, State>,
) -> Result<FanState, DefinitionError> {
    let err = |field: &str, msg: &str| DefinitionError::at(name, field, msg);
    let map = ty == "Map";
    let mut starts = Vec::new();
    let mut parameters = template(name, "Parameters", obj)?;
    let mut items_path = None;
    let mut max_concurrency = None;
    let mut tolerated_count = None;
    let mut tolerated_percentage = None;
    if map {
        let (field, processor) = match (obj.get("ItemProcessor"), obj.get("Iterator")) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "Iterator",
                    "ItemProcessor and Iterator are mutually exclusive",
                ));
            }
            (Some(p), None) => ("ItemProcessor", p),
            (None, Some(p)) => ("Iterator", p),
            (None, None) => return Err(err("ItemProcessor", "required for a Map state")),
        };
        starts.push(parse_branch(name, field, processor, true, all)?);
        if obj.contains_key("ItemSelector") {
            if parameters.is_some() {
                return Err(err(
                    "ItemSelector",
                    "ItemSelector and Parameters are mutually exclusive",
                ));
            }
            parameters = template(name, "ItemSelector", obj)?;
        }
        items_path = match obj.get("ItemsPath") {
            None => None,
            Some(v) => Some(path_field(name, "ItemsPath", v)?),
        };
        max_concurrency = match (obj.get("MaxConcurrency"), obj.get("MaxConcurrencyPath")) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "MaxConcurrencyPath",
                    "MaxConcurrency and MaxConcurrencyPath are mutually exclusive",
                ));
            }
            (Some(v), None) => {
                Some(Seconds::Literal(v.as_u64().ok_or_else(|| {
                    err("MaxConcurrency", "must be a non-negative integer")
                })?))
            }
            (None, Some(v)) => Some(Seconds::Path(path_field(name, "MaxConcurrencyPath", v)?)),
            (None, None) => None,
        };
        tolerated_count = match (
            obj.get("ToleratedFailureCount"),
            obj.get("ToleratedFailureCountPath"),
        ) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "ToleratedFailureCountPath",
                    "ToleratedFailureCount and ToleratedFailureCountPath are mutually exclusive",
                ));
            }
            (Some(v), None) => Some(Seconds::Literal(v.as_u64().ok_or_else(|| {
                err("ToleratedFailureCount", "must be a non-negative integer")
            })?)),
            (None, Some(v)) => Some(Seconds::Path(path_field(
                name,
                "ToleratedFailureCountPath",
                v,
            )?)),
            (None, None) => None,
        };
        tolerated_percentage = match (
            obj.get("ToleratedFailurePercentage"),
            obj.get("ToleratedFailurePercentagePath"),
        ) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "ToleratedFailurePercentagePath",
                    "ToleratedFailurePercentage and ToleratedFailurePercentagePath are mutually exclusive",
                ));
            }
            (Some(v), None) => Some(PercentSource::Literal(
                v.as_f64()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| {
                        err(
                            "ToleratedFailurePercentage",
                            "must be a number from 0 to 100",
                        )
                    })?,
            )),
            (None, Some(v)) => Some(PercentSource::Path(path_field(
                name,
                "ToleratedFailurePercentagePath",
                v,
            )?)),
            (None, None) => None,
        };
    } else {
        let branches = obj
            .get("Branches")
            .and_then(Value::as_array)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| err("Branches", "required, must be a non-empty array"))?;
        for (i, b) in branches.iter().enumerate() {
            starts.push(parse_branch(
                name,
                &format!("Branches[{i}]"),
                b,
                false,
                all,
            )?);
        }
    }
    let mut retry = Vec::new();
    if let Some(v) = obj.get("Retry") {
        let items = v
            .as_array()
            .ok_or_else(|| err("Retry", "must be an array"))?;
        for (i, item) in items.iter().enumerate() {
            retry.push(parse_retrier(name, i, items.len(), item)?);
        }
    }
    let mut catch = Vec::new();
    if let Some(v) = obj.get("Catch") {
        let items = v
            .as_array()
            .ok_or_else(|| err("Catch", "must be an array"))?;
        for (i, item) in items.iter().enumerate() {
            catch.push(parse_catcher(name, i, items.len(), item)?);
        }
    }
    Ok(FanState {
        map,
        starts,
        parameters,
        items_path,
        max_concurrency,
        tolerated_count,
        tolerated_percentage,
        result_selector: template(name, "ResultSelector", obj)?,
        result_path: result_path(name, "ResultPath", obj)?,
        retry,
        catch,
    })
}

fn positive_seconds(v: &Value) -> Option<u64> {
    v.as_u64().filter(|s| (1..=MAX_SECONDS).contains(s))
}

const COMMON: &[&str] = &["Type", "Comment"];

fn allowed_fields(ty: &str) -> &'static [&'static str] {
    match ty {
        "Pass" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "Result",
        ],
        "Task" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Retry",
            "Catch",
            "Resource",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
        ],
        "Choice" => &["InputPath", "OutputPath", "Choices", "Default"],
        "Wait" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Seconds",
            "SecondsPath",
            "Timestamp",
            "TimestampPath",
        ],
        "Succeed" => &["InputPath", "OutputPath"],
        "Fail" => &["Error", "ErrorPath", "Cause", "CausePath"],
        "Parallel" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Retry",
            "Catch",
            "Branches",
        ],
        "Map" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ItemSelector",
            "ResultSelector",
            "Retry",
            "Catch",
            "ItemsPath",
            "ItemProcessor",
            "Iterator",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "Label",
        ],
        _ => &[],
    }
}

fn parse_state(
    name: &str,
    raw: &Value,
    all: &mut HashMap<String, State>,
) -> Result<State, DefinitionError> {
    let err = |field: &str, msg: &str| DefinitionError::at(name, field, msg);
    if name.is_empty() || name.chars().count() > 80 {
        return Err(err("", "a state name must be 1 to 80 characters"));
    }
    let obj = raw
        .as_object()
        .ok_or_else(|| err("", "a state must be a JSON object"))?;
    let ty = obj
        .get("Type")
        .and_then(Value::as_str)
        .ok_or_else(|| err("Type", "required, must be a string"))?;
    match ty {
        "Pass" | "Task" | "Choice" | "Wait" | "Succeed" | "Fail" | "Parallel" | "Map" => {}
        other => return Err(err("Type", &format!("unknown state type {other}"))),
    }
    let allowed = allowed_fields(ty);
    for k in obj.keys() {
        if !COMMON.contains(&k.as_str()) && !allowed.contains(&k.as_str()) {
            return Err(err(
                k,
                &format!("unknown or unsupported field for a {ty} state"),
            ));
        }
    }

    // Next / End
    let next = match ty {
        "Choice" | "Succeed" | "Fail" => None,
        _ => {
            let end = match obj.get("End") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(err("End", "must be a boolean")),
            };
            match (obj.get("Next"), end) {
                (Some(_), true) => {
                    return Err(err("Next", "Next and End: true are mutually exclusive"));
                }
                (Some(Value::String(n)), false) => Some(n.clone()),
                (Some(_), false) => return Err(err("Next", "must be a string")),
                (None, true) => None,
                (None, false) => {
                    return Err(err("Next", "missing: a state needs Next or End: true"));
                }
            }
        }
    };

    let input_path = io_path(name, "InputPath", obj)?;
    let output_path = io_path(name, "OutputPath", obj)?;

    let kind = match ty {
        "Pass" => Kind::Pass {
            parameters: template(name, "Parameters", obj)?,
            result: obj.get("Result").cloned(),
            result_path: result_path(name, "ResultPath", obj)?,
        },
        "Task" => Kind::Task(Box::new(parse_task(name, obj)?)),
        "Choice" => {
            let items = obj
                .get("Choices")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| err("Choices", "required, must be a non-empty array"))?;
            let mut rules = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let (cond, next) = choice::parse_rule(name, &format!("Choices[{i}]"), item, true)?;
                rules.push(ChoiceRule {
                    cond,
                    next: next.unwrap_or_default(),
                });
            }
            let default = match obj.get("Default") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(err("Default", "must be a string")),
            };
            Kind::Choice { rules, default }
        }
        "Wait" => {
            let given: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]
                .into_iter()
                .filter(|k| obj.contains_key(*k))
                .collect();
            if given.len() != 1 {
                return Err(err(
                    given.get(1).copied().unwrap_or("Seconds"),
                    "a Wait state needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath",
                ));
            }
            let f = given[0];
            let v = &obj[f];
            Kind::Wait(match f {
                "Seconds" => WaitFor::Seconds(
                    v.as_u64()
                        .ok_or_else(|| err(f, "must be a non-negative integer"))?,
                ),
                "Timestamp" => WaitFor::Timestamp(
                    v.as_str()
                        .and_then(choice::parse_timestamp)
                        .ok_or_else(|| err(f, "must be an RFC 3339 timestamp string"))?,
                ),
                "SecondsPath" => WaitFor::SecondsPath(path_field(name, f, v)?),
                _ => WaitFor::TimestampPath(path_field(name, f, v)?),
            })
        }
        "Succeed" => Kind::Succeed,
        "Parallel" | "Map" => Kind::Fan(Box::new(parse_fan(name, ty, obj, all)?)),
        _ => {
            let source = |lit: &str, p: &str| -> Result<Option<Source>, DefinitionError> {
                match (obj.get(lit), obj.get(p)) {
                    (Some(_), Some(_)) => {
                        Err(err(p, &format!("{lit} and {p} are mutually exclusive")))
                    }
                    (Some(Value::String(s)), None) => Ok(Some(Source::Literal(s.clone()))),
                    (Some(_), None) => Err(err(lit, "must be a string")),
                    (None, Some(Value::String(t))) if path::is_intrinsic(t) => {
                        let call = crate::intrinsic::parse(t).map_err(|m| err(p, &m))?;
                        if !crate::intrinsic::STRING_FUNCTIONS.contains(&call.name.as_str()) {
                            return Err(err(p, &format!("{} does not return a string", call.name)));
                        }
                        Ok(Some(Source::Intrinsic(call)))
                    }
                    (None, Some(v)) => Ok(Some(Source::Path(path_field(name, p, v)?))),
                    (None, None) => Ok(None),
                }
            };
            Kind::Fail {
                error: source("Error", "ErrorPath")?,
                cause: source("Cause", "CausePath")?,
            }
        }
    };
    Ok(State {
        name: name.to_string(),
        kind,
        input_path,
        output_path,
        next,
    })
}

fn path_field(state: &str, field: &str, v: &Value) -> Result<RefPath, DefinitionError> {
    let s = v
        .as_str()
        .ok_or_else(|| DefinitionError::at(state, field, "must be a path string"))?;
    path::parse(s).map_err(|m| DefinitionError::at(state, field, m))
}

/// A path into the state's data: `$$` is not allowed here.
fn data_path(state: &str, field: &str, v: &Value) -> Result<RefPath, DefinitionError> {
    let p = path_field(state, field, v)?;
    if p.context {
        return Err(DefinitionError::at(
            state,
            field,
            "the context object ($$) cannot be used here",
        ));
    }
    Ok(p)
}

/// `InputPath` / `OutputPath`: any JSONPath AWS accepts, the context
/// object included.
fn io_path(state: &str, field: &str, obj: &Map<String, Value>) -> Result<IoPath, DefinitionError> {
    Ok(match obj.get(field) {
        None => IoPath::Whole,
        Some(Value::Null) => IoPath::Null,
        Some(v) => {
            let text = v
                .as_str()
                .ok_or_else(|| DefinitionError::at(state, field, "must be a path string"))?;
            let p = JsonPath::parse(text).map_err(|m| DefinitionError::at(state, field, m))?;
            if !p.context && p.steps.is_empty() && !p.length {
                IoPath::Whole
            } else {
                IoPath::Path(p)
            }
        }
    })
}

fn result_path(
    state: &str,
    field: &str,
    obj: &Map<String, Value>,
) -> Result<ResultPath, DefinitionError> {
    optional_path(
        state,
        field,
        obj,
        ResultPath::Whole,
        ResultPath::Discard,
        ResultPath::Path,
    )
}

/// A path field read the way AWS reads them all: absent or `$` is the whole
/// document, `null` is "nothing" (whose meaning differs per field), anything
/// else a data path.
fn optional_path<T>(
    state: &str,
    field: &str,
    obj: &Map<String, Value>,
    whole: T,
    null: T,
    path: impl FnOnce(RefPath) -> T,
) -> Result<T, DefinitionError> {
    Ok(match obj.get(field) {
        None => whole,
        Some(Value::Null) => null,
        Some(v) => {
            let p = data_path(state, field, v)?;
            if p.is_root() { whole } else { path(p) }
        }
    })
}

fn template(
    state: &str,
    field: &str,
    obj: &Map<String, Value>,
) -> Result<Option<Template>, DefinitionError> {
    obj.get(field)
        .map(|v| Template::compile(state, field, v))
        .transpose()
}

fn seconds(
    state: &str,
    obj: &Map<String, Value>,
    lit: &str,
    path: &str,
) -> Result<Option<Seconds>, DefinitionError> {
    match (obj.get(lit), obj.get(path)) {
        (Some(_), Some(_)) => Err(DefinitionError::at(
            state,
            path,
            format!("{lit} and {path} are mutually exclusive"),
        )),
        (Some(v), None) => positive_seconds(v)
            .map(|s| Some(Seconds::Literal(s)))
            .ok_or_else(|| {
                DefinitionError::at(
                    state,
                    lit,
                    format!("must be an integer from 1 to {MAX_SECONDS}"),
                )
            }),
        (None, Some(v)) => Ok(Some(Seconds::Path(path_field(state, path, v)?))),
        (None, None) => Ok(None),
    }
}

const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";
const LAMBDA_INVOKE_CALLBACK: &str = "arn:aws:states:::lambda:invoke.waitForTaskToken";
const LAMBDA_PARAMETERS: &[&str] = &[
    "FunctionName",
    "Payload",
    "InvocationType",
    "Qualifier",
    "ClientContext",
    "LogType",
];

fn is_lambda_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    (parts.len() == 7 || parts.len() == 8)
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "lambda"
        && parts[5] == "function"
        && !parts[6].is_empty()
}

fn parse_task(name: &str, obj: &Map<String, Value>) -> Result<TaskState, DefinitionError> {
    let err = |field: &str, msg: String| DefinitionError::at(name, field, msg);
    let res = obj
        .get("Resource")
        .and_then(Value::as_str)
        .ok_or_else(|| err("Resource", "required, must be a string".into()))?;
    let resource = match res {
        LAMBDA_INVOKE => Resource::Invoke,
        LAMBDA_INVOKE_CALLBACK => Resource::InvokeCallback,
        s if is_lambda_arn(s) => Resource::FunctionArn(s.to_string()),
        other => return Err(err("Resource", format!("unsupported resource {other}"))),
    };
    let parameters = template(name, "Parameters", obj)?;
    if matches!(resource, Resource::Invoke | Resource::InvokeCallback) {
        let params = obj
            .get("Parameters")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                err(
                    "Parameters",
                    format!("{res} needs Parameters with a FunctionName"),
                )
            })?;
        for k in params.keys() {
            let base = k.strip_suffix(".$").unwrap_or(k);
            if !LAMBDA_PARAMETERS.contains(&base) {
                return Err(err(
                    &format!("Parameters.{k}"),
                    format!(
                        "not a parameter of Lambda Invoke (expected one of {})",
                        LAMBDA_PARAMETERS.join(", ")
                    ),
                ));
            }
        }
        if !params.contains_key("FunctionName") && !params.contains_key("FunctionName.$") {
            return Err(err(
                "Parameters.FunctionName",
                "required by lambda:invoke".into(),
            ));
        }
        if let Some(t) = params.get("InvocationType") {
            let ok = matches!(t.as_str(), Some("RequestResponse") | Some("Event"));
            if !ok {
                return Err(err(
                    "Parameters.InvocationType",
                    format!("unsupported invocation type {t} (RequestResponse or Event)"),
                ));
            }
        }
    }
    if resource.is_callback() {
        let mentions = parameters
            .as_ref()
            .is_some_and(Template::mentions_task_token);
        if !mentions {
            return Err(err(
                "Parameters",
                "a .waitForTaskToken task must pass $$.Task.Token in its Parameters".into(),
            ));
        }
    }
    let timeout = seconds(name, obj, "TimeoutSeconds", "TimeoutSecondsPath")?;
    let heartbeat = seconds(name, obj, "HeartbeatSeconds", "HeartbeatSecondsPath")?;
    if let (Some(Seconds::Literal(t)), Some(Seconds::Literal(h))) = (&timeout, &heartbeat)
        && h >= t
    {
        return Err(err(
            "HeartbeatSeconds",
            format!("must be smaller than TimeoutSeconds ({h} >= {t})"),
        ));
    }

    let mut retry = Vec::new();
    if let Some(v) = obj.get("Retry") {
        let items = v
            .as_array()
            .ok_or_else(|| err("Retry", "must be an array".into()))?;
        for (i, item) in items.iter().enumerate() {
            retry.push(parse_retrier(name, i, items.len(), item)?);
        }
    }
    let mut catch = Vec::new();
    if let Some(v) = obj.get("Catch") {
        let items = v
            .as_array()
            .ok_or_else(|| err("Catch", "must be an array".into()))?;
        for (i, item) in items.iter().enumerate() {
            catch.push(parse_catcher(name, i, items.len(), item)?);
        }
    }
    Ok(TaskState {
        resource,
        parameters,
        result_selector: template(name, "ResultSelector", obj)?,
        result_path: result_path(name, "ResultPath", obj)?,
        timeout,
        heartbeat,
        retry,
        catch,
    })
}

fn error_equals(
    state: &str,
    field: &str,
    obj: &Map<String, Value>,
    index: usize,
    count: usize,
) -> Result<Vec<String>, DefinitionError> {
    let f = format!("{field}[{index}].ErrorEquals");
    let items = obj
        .get("ErrorEquals")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| DefinitionError::at(state, &f, "required, must be a non-empty array"))?;
    let mut out = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let s = item
            .as_str()
            .ok_or_else(|| DefinitionError::at(state, format!("{f}[{j}]"), "must be a string"))?;
        if s.starts_with("States.") && !states::KNOWN.contains(&s) {
            return Err(DefinitionError::at(
                state,
                format!("{f}[{j}]"),
                format!("unknown predefined error {s}"),
            ));
        }
        out.push(s.to_string());
    }
    if out.iter().any(|e| e == states::ALL) {
        if out.len() != 1 {
            return Err(DefinitionError::at(
                state,
                &f,
                "States.ALL must appear alone in ErrorEquals",
            ));
        }
        if index + 1 != count {
            return Err(DefinitionError::at(
                state,
                &f,
                format!(
                    "States.ALL must be in the last {}",
                    if field == "Retry" {
                        "retrier"
                    } else {
                        "catcher"
                    }
                ),
            ));
        }
    }
    Ok(out)
}

fn parse_retrier(
    state: &str,
    index: usize,
    count: usize,
    v: &Value,
) -> Result<Retrier, DefinitionError> {
    let f = |k: &str| format!("Retry[{index}].{k}");
    let obj = v.as_object().ok_or_else(|| {
        DefinitionError::at(state, format!("Retry[{index}]"), "must be an object")
    })?;
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "ErrorEquals"
                | "IntervalSeconds"
                | "MaxAttempts"
                | "BackoffRate"
                | "MaxDelaySeconds"
                | "JitterStrategy"
                | "Comment"
        ) {
            return Err(DefinitionError::at(
                state,
                f(k),
                "unknown field for a retrier",
            ));
        }
    }
    let errors = error_equals(state, "Retry", obj, index, count)?;
    let interval_seconds = match obj.get("IntervalSeconds") {
        None => 1,
        Some(v) => v
            .as_u64()
            .filter(|s| (1..=MAX_SECONDS).contains(s))
            .ok_or_else(|| {
                DefinitionError::at(state, f("IntervalSeconds"), "must be a positive integer")
            })?,
    };
    let max_attempts = match obj.get("MaxAttempts") {
        None => 3,
        Some(v) => v.as_u64().filter(|n| *n <= 99_999_999).ok_or_else(|| {
            DefinitionError::at(state, f("MaxAttempts"), "must be a non-negative integer")
        })? as u32,
    };
    let backoff_rate = match obj.get("BackoffRate") {
        None => 2.0,
        Some(v) => v.as_f64().filter(|r| *r >= 1.0).ok_or_else(|| {
            DefinitionError::at(state, f("BackoffRate"), "must be a number >= 1.0")
        })?,
    };
    let max_delay_seconds = match obj.get("MaxDelaySeconds") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|s| (1..=31_622_400).contains(s))
                .ok_or_else(|| {
                    DefinitionError::at(
                        state,
                        f("MaxDelaySeconds"),
                        "must be an integer from 1 to 31622400",
                    )
                })?,
        ),
    };
    let jitter = match obj.get("JitterStrategy").map(|v| v.as_str()) {
        None | Some(Some("NONE")) => Jitter::None,
        Some(Some("FULL")) => Jitter::Full,
        Some(_) => {
            return Err(DefinitionError::at(
                state,
                f("JitterStrategy"),
                "must be FULL or NONE",
            ));
        }
    };
    Ok(Retrier {
        errors,
        interval_seconds,
        max_attempts,
        backoff_rate,
        max_delay_seconds,
        jitter,
    })
}

fn parse_catcher(
    state: &str,
    index: usize,
    count: usize,
    v: &Value,
) -> Result<Catcher, DefinitionError> {
    let f = |k: &str| format!("Catch[{index}].{k}");
    let obj = v.as_object().ok_or_else(|| {
        DefinitionError::at(state, format!("Catch[{index}]"), "must be an object")
    })?;
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "ErrorEquals" | "Next" | "ResultPath" | "Comment"
        ) {
            return Err(DefinitionError::at(
                state,
                f(k),
                "unknown or unsupported field for a catcher",
            ));
        }
    }
    let errors = error_equals(state, "Catch", obj, index, count)?;
    let next = obj
        .get("Next")
        .and_then(Value::as_str)
        .ok_or_else(|| DefinitionError::at(state, f("Next"), "required, must be a string"))?
        .to_string();
    let rp = match obj.get("ResultPath") {
        None => ResultPath::Whole,
        Some(Value::Null) => ResultPath::Discard,
        Some(v) => {
            let p = data_path(state, &f("ResultPath"), v)?;
            if p.is_root() {
                ResultPath::Whole
            } else {
                ResultPath::Path(p)
            }
        }
    };
    Ok(Catcher {
        errors,
        next,
        result_path: rp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_replaces_known_and_reports_unknown() {
        let subs: Substitutions = [("Fn".to_string(), "arn:x".to_string())].into();
        let (out, left) = substitute("a ${Fn} b ${Other} c ${", &subs);
        assert_eq!(out, "a arn:x b ${Other} c ${");
        assert_eq!(
            left.into_iter().collect::<Vec<_>>(),
            vec!["Other".to_string()]
        );
    }

    #[test]
    fn lambda_arns_are_recognised() {
        assert!(is_lambda_arn(
            "arn:aws:lambda:us-east-1:123456789012:function:grant"
        ));
        assert!(is_lambda_arn(
            "arn:aws:lambda:us-east-1:123456789012:function:grant:live"
        ));
        assert!(!is_lambda_arn("arn:aws:states:::sqs:sendMessage"));
        assert!(!is_lambda_arn("grant"));
    }
}
