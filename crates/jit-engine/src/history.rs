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

    /// A task's output: raw, or (`^k`) the parts of a `lambda:invoke`
    /// response, which [`expand`] rebuilds.
    fn output(mut self, k: &str, o: Output<'_>) -> Self {
        match o {
            Output::Raw(v) => self.raw(k, v),
            Output::Lambda {
                hex,
                payload,
                status,
                now_ms,
                tail,
            } => {
                self.key(&format!("^{k}"));
                self.0.extend_from_slice(b"{\"h\":");
                push_str(&mut self.0, hex);
                self.0.extend_from_slice(
                    format!(",\"s\":{status},\"t\":{now_ms},\"l\":{tail},\"p\":").as_bytes(),
                );
                let _ = serde_json::to_writer(&mut self.0, payload);
                self.0.push(b'}');
                self
            }
        }
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
                        if let Some(name) = k.strip_prefix('^') {
                            let response = lambda_response(
                                v.get("h").and_then(Value::as_str).unwrap_or_default(),
                                v.get("p").cloned().unwrap_or(Value::Null),
                                v.get("s").and_then(Value::as_u64).unwrap_or(200) as u16,
                                v.get("t").and_then(Value::as_i64).unwrap_or_default(),
                                v.get("l").and_then(Value::as_bool).unwrap_or(false),
                            );
                            out.insert(name.to_string(), Value::String(response.to_string()));
                            out.insert(format!("{name}Details"), json!({"truncated": false}));
                            continue;
                        }
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

    pub fn submitted(&self, output: Output<'_>) -> (String, String) {
        self.base("taskSubmittedEventDetails")
            .output("output", output)
            .done("TaskSubmitted")
    }

    pub fn succeeded(&self, output: Output<'_>) -> (String, String) {
        self.base("taskSucceededEventDetails")
            .output("output", output)
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

/// The response AWS's `lambda:invoke` integration returns: the payload
/// with `ExecutedVersion`, the status code, and the SDK's HTTP metadata with
/// the header set Lambda answers with (`Date` from the engine's clock, a
/// `Content-Length` of the payload, a stable request and trace id per
/// execution and attempt, from [`invoke_hex`]). With `LogType: Tail`, a `LogResult`: the base64
/// of the invocation's last log lines, as Lambda sends them.
pub(crate) fn lambda_response(
    h: &str,
    payload: Value,
    status: u16,
    now_ms: i64,
    tail: bool,
) -> Value {
    use base64::Engine as _;
    use chrono::{Datelike, Timelike};
    use std::fmt::Write as _;
    // Ids formatted as Lambda's are, from the attempt's hash (`h`, 64 hex
    // digits). This runs for every task: it is written to allocate little.
    let request_id = format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    let mut trace_id = String::with_capacity(48);
    let _ = write!(
        trace_id,
        "root=1-{:08x}-{};sampled=0",
        (now_ms / 1000).max(0),
        &h[32..56]
    );
    let t = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    let mut date = String::with_capacity(29);
    let _ = write!(
        date,
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[t.weekday().num_days_from_monday() as usize],
        t.day(),
        MONTHS[t.month0() as usize],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let length = if status == 202 {
        0
    } else {
        crate::engine::json_len(&payload)
    };
    let log = tail.then(|| {
        base64::engine::general_purpose::STANDARD.encode(format!(
            "START RequestId: {request_id} Version: $LATEST\nEND RequestId: {request_id}\nREPORT RequestId: {request_id}\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: 64 MB\t\n"
        ))
    });
    let mut single = serde_json::Map::new();
    let mut all = serde_json::Map::new();
    let mut header = |k: &str, v: String| {
        all.insert(k.to_string(), Value::Array(vec![Value::String(v.clone())]));
        single.insert(k.to_string(), Value::String(v));
    };
    header("Connection", "keep-alive".into());
    header("Content-Length", length.to_string());
    header("Content-Type", "application/json".into());
    header("Date", date);
    header("X-Amz-Executed-Version", "$LATEST".into());
    header("X-Amzn-Trace-Id", trace_id);
    header("x-amzn-Remapped-Content-Length", "0".into());
    header("x-amzn-RequestId", request_id.clone());
    if let Some(l) = &log {
        header("X-Amz-Log-Result", l.clone());
    }
    let mut meta = serde_json::Map::new();
    meta.insert("AllHttpHeaders".into(), Value::Object(all));
    meta.insert("HttpHeaders".into(), Value::Object(single));
    meta.insert("HttpStatusCode".into(), Value::from(status));
    let mut sdk = serde_json::Map::new();
    sdk.insert("RequestId".into(), Value::String(request_id));
    let mut out = serde_json::Map::new();
    out.insert("ExecutedVersion".into(), Value::String("$LATEST".into()));
    if let Some(l) = log {
        out.insert("LogResult".into(), Value::String(l));
    }
    out.insert("Payload".into(), payload);
    out.insert("SdkHttpMetadata".into(), Value::Object(meta));
    out.insert("SdkResponseMetadata".into(), Value::Object(sdk));
    out.insert("StatusCode".into(), Value::from(status));
    Value::Object(out)
}

const HEX: &[u8; 16] = b"0123456789abcdef";
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The hash an attempt's request and trace ids come from: stable per
/// (execution, attempt), so an attempt invoked again after a restart
/// answers with the same ids.
pub(crate) fn invoke_hex(exec_arn: &str, invocation: u64) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{exec_arn}#{invocation}").as_bytes());
    let mut h = String::with_capacity(64);
    for b in digest.iter() {
        h.push(HEX[(b >> 4) as usize] as char);
        h.push(HEX[(b & 15) as usize] as char);
    }
    h
}

/// A task's output as an event stores it: a JSON value, or the parts a
/// `lambda:invoke` response is rebuilt from when the history is read (the
/// header set is most of its bytes, and writing is the hot path).
pub(crate) enum Output<'a> {
    Raw(&'a Value),
    Lambda {
        hex: &'a str,
        payload: &'a Value,
        status: u16,
        now_ms: i64,
        tail: bool,
    },
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
