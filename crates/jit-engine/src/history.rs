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
    /// Stored details: a JSON object `{"<key>EventDetails": {…}}` in which
    /// JSON payloads are embedded raw under `~input` / `~output` /
    /// `~parameters`; [`expand`] turns them into AWS's JSON strings when the
    /// history is read. Writing is the hot path, reading is rare.
    pub details: String,
    pub at_ms: i64,
}

/// A details object under construction.
struct Details(Vec<u8>);

fn push_str(buf: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, s);
}

impl Details {
    fn new(key: &str) -> Self {
        let mut b = Vec::with_capacity(160);
        b.push(b'{');
        push_str(&mut b, key);
        b.extend_from_slice(b":{");
        Details(b)
    }

    fn key(&mut self, k: &str) {
        if self.0.last() != Some(&b'{') {
            self.0.push(b',');
        }
        push_str(&mut self.0, k);
        self.0.push(b':');
    }

    fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        push_str(&mut self.0, v);
        self
    }

    fn opt_str(self, k: &str, v: Option<&str>) -> Self {
        match v {
            Some(v) => self.str(k, v),
            None => self,
        }
    }

    fn num(mut self, k: &str, v: Option<u64>) -> Self {
        if let Some(v) = v {
            self.key(k);
            self.0.extend_from_slice(v.to_string().as_bytes());
        }
        self
    }

    /// A JSON payload, stored raw; AWS shows it as a string.
    fn raw(mut self, k: &str, v: &Value) -> Self {
        self.key(&format!("~{k}"));
        let _ = serde_json::to_writer(&mut self.0, v);
        self
    }

    fn done(mut self, event: &str) -> (String, String) {
        self.0.extend_from_slice(b"}}");
        let text = String::from_utf8(self.0)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        (event.to_string(), text)
    }
}

/// Turns stored details into AWS's shape: raw payloads become JSON strings
/// and `input`/`output` get their `…Details: {"truncated": false}`.
pub(crate) fn expand(stored: Map<String, Value>) -> Map<String, Value> {
    stored
        .into_iter()
        .map(|(key, body)| {
            let body = match body {
                Value::Object(fields) => {
                    let mut out = Map::with_capacity(fields.len() + 1);
                    for (k, v) in fields {
                        match k.strip_prefix('~') {
                            Some(name) => {
                                out.insert(name.to_string(), Value::String(v.to_string()));
                                if name == "input" || name == "output" {
                                    out.insert(
                                        format!("{name}Details"),
                                        json!({"truncated": false}),
                                    );
                                }
                            }
                            None => {
                                out.insert(k, v);
                            }
                        }
                    }
                    Value::Object(out)
                }
                other => other,
            };
            (key, body)
        })
        .collect()
}

pub(crate) fn execution_started(input: &Value, role_arn: &str) -> (String, String) {
    Details::new("executionStartedEventDetails")
        .raw("input", input)
        .str("roleArn", role_arn)
        .done("ExecutionStarted")
}

pub(crate) fn state_entered(prefix: &str, name: &str, input: &Value) -> (String, String) {
    Details::new("stateEnteredEventDetails")
        .str("name", name)
        .raw("input", input)
        .done(&format!("{prefix}StateEntered"))
}

pub(crate) fn state_exited(prefix: &str, name: &str, output: &Value) -> (String, String) {
    Details::new("stateExitedEventDetails")
        .str("name", name)
        .raw("output", output)
        .done(&format!("{prefix}StateExited"))
}

/// `resourceType`/`resource` as AWS reports an optimized Lambda integration.
pub(crate) struct TaskResource<'a> {
    pub resource: &'a str,
}

impl TaskResource<'_> {
    fn base(&self, key: &str) -> Details {
        Details::new(key)
            .str("resourceType", "lambda")
            .str("resource", self.resource)
    }

    pub fn scheduled(
        &self,
        region: &str,
        parameters: &Value,
        timeout: Option<u64>,
        heartbeat: Option<u64>,
    ) -> (String, String) {
        self.base("taskScheduledEventDetails")
            .str("region", region)
            .raw("parameters", parameters)
            .num("timeoutInSeconds", timeout)
            .num("heartbeatInSeconds", heartbeat)
            .done("TaskScheduled")
    }

    pub fn started(&self) -> (String, String) {
        self.base("taskStartedEventDetails").done("TaskStarted")
    }

    pub fn submitted(&self, output: &Value) -> (String, String) {
        self.base("taskSubmittedEventDetails")
            .raw("output", output)
            .done("TaskSubmitted")
    }

    pub fn succeeded(&self, output: &Value) -> (String, String) {
        self.base("taskSucceededEventDetails")
            .raw("output", output)
            .done("TaskSucceeded")
    }

    pub fn failed(&self, error: &str, cause: &str) -> (String, String) {
        self.base("taskFailedEventDetails")
            .str("error", error)
            .str("cause", cause)
            .done("TaskFailed")
    }

    pub fn timed_out(&self, error: &str, cause: &str) -> (String, String) {
        self.base("taskTimedOutEventDetails")
            .str("error", error)
            .str("cause", cause)
            .done("TaskTimedOut")
    }
}

/// Events of a Task whose Resource is a Lambda function ARN.
pub(crate) mod lambda_fn {
    use super::*;

    pub fn scheduled(arn: &str, input: &Value, timeout: Option<u64>) -> (String, String) {
        Details::new("lambdaFunctionScheduledEventDetails")
            .str("resource", arn)
            .raw("input", input)
            .num("timeoutInSeconds", timeout)
            .done("LambdaFunctionScheduled")
    }

    pub fn started() -> (String, String) {
        ("LambdaFunctionStarted".into(), "{}".into())
    }

    pub fn succeeded(output: &Value) -> (String, String) {
        Details::new("lambdaFunctionSucceededEventDetails")
            .raw("output", output)
            .done("LambdaFunctionSucceeded")
    }

    pub fn failed(error: &str, cause: &str) -> (String, String) {
        Details::new("lambdaFunctionFailedEventDetails")
            .str("error", error)
            .str("cause", cause)
            .done("LambdaFunctionFailed")
    }

    pub fn timed_out(error: &str, cause: &str) -> (String, String) {
        Details::new("lambdaFunctionTimedOutEventDetails")
            .str("error", error)
            .str("cause", cause)
            .done("LambdaFunctionTimedOut")
    }
}

/// Events of Parallel and Map states (`ParallelStateStarted`,
/// `MapStateSucceeded`, …) that carry no details.
pub(crate) fn bare(event: &str) -> (String, String) {
    (event.to_string(), "{}".into())
}

/// `MapStateStarted` with the number of iterations.
pub(crate) fn map_started(length: usize) -> (String, String) {
    Details::new("mapStateStartedEventDetails")
        .num("length", Some(length as u64))
        .done("MapStateStarted")
}

/// `MapIteration{Started,Succeeded,Failed,Aborted}`: the Map state's name
/// and the iteration's index.
pub(crate) fn map_iteration(what: &str, name: &str, index: usize) -> (String, String) {
    let key = format!("mapIteration{what}EventDetails");
    Details::new(&key)
        .str("name", name)
        .num("index", Some(index as u64))
        .done(&format!("MapIteration{what}"))
}

pub(crate) fn execution_succeeded(output: &Value) -> (String, String) {
    Details::new("executionSucceededEventDetails")
        .raw("output", output)
        .done("ExecutionSucceeded")
}

pub(crate) fn execution_failed(error: Option<&str>, cause: Option<&str>) -> (String, String) {
    Details::new("executionFailedEventDetails")
        .opt_str("error", error)
        .opt_str("cause", cause)
        .done("ExecutionFailed")
}

pub(crate) fn execution_aborted(error: Option<&str>, cause: Option<&str>) -> (String, String) {
    Details::new("executionAbortedEventDetails")
        .opt_str("error", error)
        .opt_str("cause", cause)
        .done("ExecutionAborted")
}

pub(crate) fn execution_timed_out(error: &str, cause: &str) -> (String, String) {
    Details::new("executionTimedOutEventDetails")
        .str("error", error)
        .str("cause", cause)
        .done("ExecutionTimedOut")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_details_expand_to_aws_strings() {
        // GIVEN a stored event with a raw payload, including a string payload
        let (ty, stored) = state_entered("Task", "Grant \"x\"", &json!({"a": [1, "two"]}));
        assert_eq!(ty, "TaskStateEntered");
        let stored: Map<String, Value> = serde_json::from_str(&stored).unwrap();
        // WHEN expanded
        let d = expand(stored);
        // THEN the payload is a JSON string and inputDetails is added
        assert_eq!(
            Value::Object(d),
            json!({"stateEnteredEventDetails": {
                "name": "Grant \"x\"",
                "input": "{\"a\":[1,\"two\"]}",
                "inputDetails": {"truncated": false}
            }})
        );
        let (_, s) = execution_succeeded(&json!("just text"));
        let d = expand(serde_json::from_str(&s).unwrap());
        assert_eq!(
            d["executionSucceededEventDetails"]["output"],
            json!("\"just text\"")
        );
        let (_, s) =
            TaskResource { resource: "invoke" }.scheduled("local", &json!({"k": 1}), Some(5), None);
        let d = expand(serde_json::from_str(&s).unwrap());
        assert_eq!(
            Value::Object(d),
            json!({"taskScheduledEventDetails": {
                "resourceType": "lambda", "resource": "invoke", "region": "local",
                "parameters": "{\"k\":1}", "timeoutInSeconds": 5
            }})
        );
    }
}
