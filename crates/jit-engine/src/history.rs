//! Execution history events, shaped like `GetExecutionHistory`'s: `id`,
//! `previousEventId`, `timestamp`, `type`, and one `…EventDetails` object
//! whose `input`/`output` are JSON *strings*, as AWS returns them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEvent {
    pub id: u64,
    pub previous_event_id: u64,
    #[serde(with = "millis_rfc3339")]
    pub timestamp: DateTime<Utc>,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The `…EventDetails` member(s), keyed as AWS keys them.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl HistoryEvent {
    /// `stateEnteredEventDetails.name` (or exited), if this is a state event.
    pub fn state_name(&self) -> Option<&str> {
        self.details
            .get("stateEnteredEventDetails")
            .or_else(|| self.details.get("stateExitedEventDetails"))
            .and_then(|d| d.get("name"))
            .and_then(Value::as_str)
    }
}

pub(crate) mod millis_rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// An event not yet written: its type and details; ids and time are given
/// when it is appended.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub event_type: String,
    /// JSON object text of the details map.
    pub details: String,
    pub at_ms: i64,
}

fn details(key: &str, body: Value) -> String {
    let mut m = Map::with_capacity(1);
    m.insert(key.to_string(), body);
    Value::Object(m).to_string()
}

fn not_truncated() -> Value {
    json!({ "truncated": false })
}

pub(crate) fn execution_started(input: &str, role_arn: &str) -> (String, String) {
    (
        "ExecutionStarted".into(),
        details(
            "executionStartedEventDetails",
            json!({ "input": input, "inputDetails": not_truncated(), "roleArn": role_arn }),
        ),
    )
}

pub(crate) fn state_entered(prefix: &str, name: &str, input: &Value) -> (String, String) {
    (
        format!("{prefix}StateEntered"),
        details(
            "stateEnteredEventDetails",
            json!({ "name": name, "input": input.to_string(), "inputDetails": not_truncated() }),
        ),
    )
}

pub(crate) fn state_exited(prefix: &str, name: &str, output: &Value) -> (String, String) {
    (
        format!("{prefix}StateExited"),
        details(
            "stateExitedEventDetails",
            json!({ "name": name, "output": output.to_string(), "outputDetails": not_truncated() }),
        ),
    )
}

/// `resourceType`/`resource` as AWS reports an optimized Lambda integration.
pub(crate) struct TaskResource<'a> {
    pub resource: &'a str,
}

impl TaskResource<'_> {
    fn base(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("resourceType".into(), Value::String("lambda".into()));
        m.insert("resource".into(), Value::String(self.resource.into()));
        m
    }

    pub fn scheduled(
        &self,
        region: &str,
        parameters: &Value,
        timeout: Option<u64>,
        heartbeat: Option<u64>,
    ) -> (String, String) {
        let mut m = self.base();
        m.insert("region".into(), Value::String(region.into()));
        m.insert("parameters".into(), Value::String(parameters.to_string()));
        if let Some(t) = timeout {
            m.insert("timeoutInSeconds".into(), json!(t));
        }
        if let Some(h) = heartbeat {
            m.insert("heartbeatInSeconds".into(), json!(h));
        }
        (
            "TaskScheduled".into(),
            details("taskScheduledEventDetails", Value::Object(m)),
        )
    }

    pub fn started(&self) -> (String, String) {
        (
            "TaskStarted".into(),
            details("taskStartedEventDetails", Value::Object(self.base())),
        )
    }

    pub fn with_output(&self, event: &str, key: &str, output: &Value) -> (String, String) {
        let mut m = self.base();
        m.insert("output".into(), Value::String(output.to_string()));
        m.insert("outputDetails".into(), not_truncated());
        (event.into(), details(key, Value::Object(m)))
    }

    pub fn submitted(&self, output: &Value) -> (String, String) {
        self.with_output("TaskSubmitted", "taskSubmittedEventDetails", output)
    }

    pub fn succeeded(&self, output: &Value) -> (String, String) {
        self.with_output("TaskSucceeded", "taskSucceededEventDetails", output)
    }

    pub fn failed(&self, error: &str, cause: &str) -> (String, String) {
        let mut m = self.base();
        m.insert("error".into(), Value::String(error.into()));
        m.insert("cause".into(), Value::String(cause.into()));
        (
            "TaskFailed".into(),
            details("taskFailedEventDetails", Value::Object(m)),
        )
    }

    pub fn timed_out(&self, error: &str, cause: &str) -> (String, String) {
        let mut m = self.base();
        m.insert("error".into(), Value::String(error.into()));
        m.insert("cause".into(), Value::String(cause.into()));
        (
            "TaskTimedOut".into(),
            details("taskTimedOutEventDetails", Value::Object(m)),
        )
    }
}

/// Events of a Task whose Resource is a Lambda function ARN.
pub(crate) mod lambda_fn {
    use super::*;

    pub fn scheduled(arn: &str, input: &Value, timeout: Option<u64>) -> (String, String) {
        let mut m = Map::new();
        m.insert("resource".into(), Value::String(arn.into()));
        m.insert("input".into(), Value::String(input.to_string()));
        m.insert("inputDetails".into(), not_truncated());
        if let Some(t) = timeout {
            m.insert("timeoutInSeconds".into(), json!(t));
        }
        (
            "LambdaFunctionScheduled".into(),
            details("lambdaFunctionScheduledEventDetails", Value::Object(m)),
        )
    }

    pub fn started() -> (String, String) {
        ("LambdaFunctionStarted".into(), "{}".into())
    }

    pub fn succeeded(output: &Value) -> (String, String) {
        (
            "LambdaFunctionSucceeded".into(),
            details(
                "lambdaFunctionSucceededEventDetails",
                json!({ "output": output.to_string(), "outputDetails": not_truncated() }),
            ),
        )
    }

    pub fn failed(error: &str, cause: &str) -> (String, String) {
        (
            "LambdaFunctionFailed".into(),
            details(
                "lambdaFunctionFailedEventDetails",
                json!({ "error": error, "cause": cause }),
            ),
        )
    }

    pub fn timed_out(error: &str, cause: &str) -> (String, String) {
        (
            "LambdaFunctionTimedOut".into(),
            details(
                "lambdaFunctionTimedOutEventDetails",
                json!({ "error": error, "cause": cause }),
            ),
        )
    }
}

pub(crate) fn execution_succeeded(output: &Value) -> (String, String) {
    (
        "ExecutionSucceeded".into(),
        details(
            "executionSucceededEventDetails",
            json!({ "output": output.to_string(), "outputDetails": not_truncated() }),
        ),
    )
}

fn error_cause(error: Option<&str>, cause: Option<&str>) -> Value {
    let mut m = Map::new();
    if let Some(e) = error {
        m.insert("error".into(), Value::String(e.into()));
    }
    if let Some(c) = cause {
        m.insert("cause".into(), Value::String(c.into()));
    }
    Value::Object(m)
}

pub(crate) fn execution_failed(error: Option<&str>, cause: Option<&str>) -> (String, String) {
    (
        "ExecutionFailed".into(),
        details("executionFailedEventDetails", error_cause(error, cause)),
    )
}

pub(crate) fn execution_aborted(error: Option<&str>, cause: Option<&str>) -> (String, String) {
    (
        "ExecutionAborted".into(),
        details("executionAbortedEventDetails", error_cause(error, cause)),
    )
}

pub(crate) fn execution_timed_out(error: &str, cause: &str) -> (String, String) {
    (
        "ExecutionTimedOut".into(),
        details(
            "executionTimedOutEventDetails",
            error_cause(Some(error), Some(cause)),
        ),
    )
}
