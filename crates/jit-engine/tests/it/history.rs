//! History: AWS's event names, order, ids and details for a small machine.

use crate::common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn a_small_machine_records_aws_event_names_in_order() {
    // GIVEN Pass → Choice → Task (lambda:invoke) → Wait → Succeed
    let def = json!({
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Result": {"go": true}, "ResultPath": "$.p", "Next": "Decide"},
            "Decide": {"Type": "Choice", "Choices": [
                {"Variable": "$.p.go", "BooleanEquals": true, "Next": "Grant"}
            ]},
            "Grant": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "grant", "Payload.$": "$"},
                "ResultSelector": {"ok.$": "$.Payload.ok"},
                "ResultPath": "$.grant",
                "Next": "Hold"
            },
            "Hold": {"Type": "Wait", "Seconds": 5, "Next": "Done"},
            "Done": {"Type": "Succeed"}
        }
    });
    let h = harness(&def);
    h.tasks.ok("grant", json!({"ok": true}));
    // WHEN it runs to the end
    h.start("x", json!({"id": "r1"}));
    h.idle().await;
    h.advance(5);
    h.idle().await;
    // THEN the events are AWS's, in AWS's order
    let hist = h.engine.history("x").unwrap();
    let types: Vec<&str> = hist.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "ExecutionStarted",
            "PassStateEntered",
            "PassStateExited",
            "ChoiceStateEntered",
            "ChoiceStateExited",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskSucceeded",
            "TaskStateExited",
            "WaitStateEntered",
            "WaitStateExited",
            "SucceedStateEntered",
            "SucceedStateExited",
            "ExecutionSucceeded",
        ]
    );
    // AND ids count from 1, each pointing at the one before
    for (i, e) in hist.iter().enumerate() {
        assert_eq!(e.id, i as u64 + 1);
        assert_eq!(e.previous_event_id, i as u64);
    }
    // AND details carry names and JSON-string inputs/outputs like AWS's
    let ev = |t: &str| hist.iter().find(|e| e.event_type == t).unwrap();
    assert_eq!(
        ev("ExecutionStarted").details["executionStartedEventDetails"]["input"],
        json!(r#"{"id":"r1"}"#)
    );
    let entered = &ev("TaskStateEntered").details["stateEnteredEventDetails"];
    assert_eq!(entered["name"], json!("Grant"));
    let input: Value = serde_json::from_str(entered["input"].as_str().unwrap()).unwrap();
    assert_eq!(input, json!({"id": "r1", "p": {"go": true}}));
    let scheduled = &ev("TaskScheduled").details["taskScheduledEventDetails"];
    assert_eq!(scheduled["resourceType"], json!("lambda"));
    assert_eq!(scheduled["resource"], json!("invoke"));
    let params: Value = serde_json::from_str(scheduled["parameters"].as_str().unwrap()).unwrap();
    assert_eq!(params["FunctionName"], json!("grant"));
    let succeeded = &ev("TaskSucceeded").details["taskSucceededEventDetails"];
    let out: Value = serde_json::from_str(succeeded["output"].as_str().unwrap()).unwrap();
    assert_eq!(out["Payload"], json!({"ok": true}));
    let exited = &ev("TaskStateExited").details["stateExitedEventDetails"];
    assert_eq!(exited["name"], json!("Grant"));
    let done = &ev("ExecutionSucceeded").details["executionSucceededEventDetails"];
    let final_out: Value = serde_json::from_str(done["output"].as_str().unwrap()).unwrap();
    assert_eq!(
        final_out,
        json!({"id": "r1", "p": {"go": true}, "grant": {"ok": true}})
    );
    // AND the serialized event is shaped like GetExecutionHistory's
    let wire = serde_json::to_value(ev("WaitStateExited")).unwrap();
    assert_eq!(wire["type"], json!("WaitStateExited"));
    assert_eq!(wire["previousEventId"], json!(11));
    assert_eq!(wire["timestamp"], json!("2026-01-01T00:00:05.000Z"));
    assert_eq!(wire["stateExitedEventDetails"]["name"], json!("Hold"));
    // AND the states-entered helper lists just the names
    assert_eq!(
        h.states("x"),
        vec!["Prepare", "Decide", "Grant", "Hold", "Done"]
    );
}

#[tokio::test]
async fn fail_and_lambda_arn_tasks_record_their_own_event_types() {
    // GIVEN a function-ARN task then a Fail state
    let def = json!({
        "StartAt": "Call",
        "States": {
            "Call": {"Type": "Task", "Resource": FN_ARN, "Next": "Stop"},
            "Stop": {"Type": "Fail", "Error": "Nope", "Cause": "because"}
        }
    });
    let h = harness(&def);
    // WHEN it runs
    let d = h.run("x", json!({})).await;
    // THEN
    assert_eq!(
        h.event_types("x"),
        vec![
            "ExecutionStarted",
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionSucceeded",
            "TaskStateExited",
            "FailStateEntered",
            "ExecutionFailed",
        ]
    );
    assert_eq!(
        (d.error.as_deref(), d.cause.as_deref()),
        (Some("Nope"), Some("because"))
    );
    let hist = h.engine.history("x").unwrap();
    assert_eq!(
        hist.last().unwrap().details["executionFailedEventDetails"],
        json!({"error": "Nope", "cause": "because"})
    );
}

#[tokio::test]
async fn fail_state_paths_read_error_and_cause_from_the_input() {
    // GIVEN ErrorPath and CausePath
    let def = json!({"StartAt": "F", "States": {
        "F": {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"}
    }});
    let h = harness(&def);
    // WHEN it runs
    let d = h
        .run("x", json!({"e": "Custom.Error", "c": "details"}))
        .await;
    // THEN
    assert_eq!(d.error.as_deref(), Some("Custom.Error"));
    assert_eq!(d.cause.as_deref(), Some("details"));
}

#[tokio::test]
async fn an_execution_timeout_ends_it_as_timed_out() {
    // GIVEN a machine TimeoutSeconds of 60 and a 600 s Wait
    let def = json!({"StartAt": "W", "TimeoutSeconds": 60, "States": {
        "W": {"Type": "Wait", "Seconds": 600, "End": true}
    }});
    let h = harness(&def);
    h.start("x", json!({}));
    h.idle().await;
    // WHEN 60 s pass
    assert_eq!(
        h.engine.next_timer().unwrap(),
        Some(t0() + chrono::Duration::seconds(60))
    );
    h.advance(60);
    h.idle().await;
    // THEN TIMED_OUT with States.Timeout, and ExecutionTimedOut in the history
    let d = h.describe("x");
    assert_eq!(d.status, jit_engine::ExecutionStatus::TimedOut);
    assert_eq!(d.error.as_deref(), Some("States.Timeout"));
    assert_eq!(h.event_types("x").last().unwrap(), "ExecutionTimedOut");
}

#[tokio::test]
async fn a_runaway_loop_stops_at_the_history_limit() {
    // GIVEN a Pass state that loops on itself for ever
    let def = json!({"StartAt": "Loop", "States": {
        "Loop": {"Type": "Pass", "Next": "Loop"}
    }});
    let h = harness(&def);
    // WHEN it runs
    let d = h.run("x", json!({})).await;
    // THEN it fails at AWS's 25,000-event limit instead of running for ever
    assert_eq!(d.status, jit_engine::ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("States.Runtime"));
    let n = h.engine.history("x").unwrap().len();
    assert!((25_000..=25_002).contains(&n), "{n}");
}
