//! Step Functions history events as JSON, in the shape the local engine
//! (`jit-engine`) writes them and `GetExecutionHistory` documents them:
//! `id`, `previousEventId`, `timestamp` (RFC 3339, milliseconds), `type`, and
//! one `…EventDetails` object whose `input`/`output`/`parameters` are JSON
//! *strings*.
//!
//! The SDK's types are not serde-serialisable, so the detail objects are
//! written out here for the events this project's state machine produces
//! (execution, state and task events); other events keep their id, type and
//! time only.
//!
//! Task tokens never leave: a waitForTaskToken task's parameters carry the
//! token (`"taskToken.$": "$$.Task.Token"`), so inside every JSON string the
//! value of any key containing "token" (any case) is replaced by
//! `"<redacted>"`.

use aws_sdk_sfn::types::HistoryEvent;
use chrono::SecondsFormat;
use serde_json::{Map, Value, json};

pub(crate) const REDACTED: &str = "<redacted>";

/// One history event as JSON, task tokens redacted.
pub(crate) fn to_json(event: &HistoryEvent) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(event.id()));
    out.insert("previousEventId".into(), json!(event.previous_event_id()));
    let t = event.timestamp();
    let timestamp = chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
    out.insert("timestamp".into(), json!(timestamp));
    out.insert("type".into(), json!(event.r#type().as_str()));
    if let Some((key, details)) = details(event) {
        out.insert(key.into(), details);
    }
    Value::Object(out)
}

fn details(e: &HistoryEvent) -> Option<(&'static str, Value)> {
    if let Some(d) = e.execution_started_event_details() {
        return Some((
            "executionStartedEventDetails",
            json!({ "input": d.input().map(redact_json), "roleArn": d.role_arn() }),
        ));
    }
    if let Some(d) = e.execution_succeeded_event_details() {
        return Some((
            "executionSucceededEventDetails",
            json!({ "output": d.output().map(redact_json) }),
        ));
    }
    if let Some(d) = e.execution_failed_event_details() {
        return Some((
            "executionFailedEventDetails",
            json!({ "error": d.error(), "cause": d.cause() }),
        ));
    }
    if let Some(d) = e.execution_aborted_event_details() {
        return Some((
            "executionAbortedEventDetails",
            json!({ "error": d.error(), "cause": d.cause() }),
        ));
    }
    if let Some(d) = e.execution_timed_out_event_details() {
        return Some((
            "executionTimedOutEventDetails",
            json!({ "error": d.error(), "cause": d.cause() }),
        ));
    }
    if let Some(d) = e.state_entered_event_details() {
        return Some((
            "stateEnteredEventDetails",
            json!({ "name": d.name(), "input": d.input().map(redact_json) }),
        ));
    }
    if let Some(d) = e.state_exited_event_details() {
        return Some((
            "stateExitedEventDetails",
            json!({ "name": d.name(), "output": d.output().map(redact_json) }),
        ));
    }
    if let Some(d) = e.task_scheduled_event_details() {
        return Some((
            "taskScheduledEventDetails",
            json!({
                "resourceType": d.resource_type(),
                "resource": d.resource(),
                "region": d.region(),
                "parameters": redact_json(d.parameters()),
                "timeoutInSeconds": d.timeout_in_seconds(),
                "heartbeatInSeconds": d.heartbeat_in_seconds(),
            }),
        ));
    }
    if let Some(d) = e.task_started_event_details() {
        return Some((
            "taskStartedEventDetails",
            json!({ "resourceType": d.resource_type(), "resource": d.resource() }),
        ));
    }
    if let Some(d) = e.task_submitted_event_details() {
        return Some((
            "taskSubmittedEventDetails",
            json!({
                "resourceType": d.resource_type(),
                "resource": d.resource(),
                "output": d.output().map(redact_json),
            }),
        ));
    }
    if let Some(d) = e.task_succeeded_event_details() {
        return Some((
            "taskSucceededEventDetails",
            json!({
                "resourceType": d.resource_type(),
                "resource": d.resource(),
                "output": d.output().map(redact_json),
            }),
        ));
    }
    if let Some(d) = e.task_failed_event_details() {
        return Some((
            "taskFailedEventDetails",
            json!({
                "resourceType": d.resource_type(),
                "resource": d.resource(),
                "error": d.error(),
                "cause": d.cause(),
            }),
        ));
    }
    if let Some(d) = e.task_timed_out_event_details() {
        return Some((
            "taskTimedOutEventDetails",
            json!({
                "resourceType": d.resource_type(),
                "resource": d.resource(),
                "error": d.error(),
                "cause": d.cause(),
            }),
        ));
    }
    None
}

/// A JSON text with the value of every key containing "token" replaced.
/// Text that is not JSON is replaced whole if it mentions a token at all.
pub(crate) fn redact_json(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(mut value) => {
            redact_value(&mut value);
            value.to_string()
        }
        Err(_) if text.to_ascii_lowercase().contains("token") => REDACTED.to_string(),
        Err(_) => text.to_string(),
    }
}

fn redact_value(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key.to_ascii_lowercase().contains("token") {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact_value(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_are_redacted_at_any_depth_and_the_rest_is_kept() {
        let text = r#"{"FunctionName":"f","Payload":{"taskToken":"AQC-secret","requestId":"X",
            "list":[{"TaskToken":"AQC-secret-2"}],"tokens":["a"]}}"#;
        let redacted: Value = serde_json::from_str(&redact_json(text)).expect("JSON");
        assert_eq!(
            redacted,
            json!({"FunctionName":"f","Payload":{"taskToken":REDACTED,"requestId":"X",
                "list":[{"TaskToken":REDACTED}],"tokens":REDACTED}})
        );
    }

    #[test]
    fn non_json_text_is_kept_unless_it_mentions_a_token() {
        assert_eq!(redact_json("plain cause"), "plain cause");
        assert_eq!(redact_json("taskToken=AQC-secret"), REDACTED);
    }
}
