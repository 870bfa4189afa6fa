//! `run_with_canned_tasks`: the `jit-local asl run` hook.

use jit_engine::{
    CannedAnswer, CannedTasks, EngineError, ExecutionStatus, Substitutions, run_with_canned_tasks,
};
use serde_json::{Value, json};

fn flow() -> String {
    json!({
        "StartAt": "Validate",
        "States": {
            "Validate": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "${ValidateFn}", "Payload.$": "$"},
                "ResultSelector": {"ok.$": "$.Payload.ok"},
                "ResultPath": "$.validation",
                "Retry": [{"ErrorEquals": ["Transient"], "IntervalSeconds": 30}],
                "Next": "RequestApproval"
            },
            "RequestApproval": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "notify", "Payload": {"token.$": "$$.Task.Token"}},
                "TimeoutSeconds": 3600,
                "ResultPath": "$.decision",
                "Catch": [
                    {"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"},
                    {"ErrorEquals": ["Denied"], "Next": "Denied"}
                ],
                "Next": "HoldGrant"
            },
            "HoldGrant": {"Type": "Wait", "Seconds": 86400, "Next": "Done"},
            "Done": {"Type": "Succeed"},
            "TimedOut": {"Type": "Fail", "Error": "ApprovalTimedOut"},
            "Denied": {"Type": "Fail", "Error": "Denied"}
        }
    })
    .to_string()
}

fn subs() -> Substitutions {
    [("ValidateFn".to_string(), "validate".to_string())].into()
}

#[tokio::test]
async fn canned_answers_drive_the_run_and_waits_fast_forward() {
    // GIVEN Validate fails once (retried), then ok; the approval answers yes
    let canned = CannedTasks::from_json(
        r#"{
            "Validate": [{"error": "Transient", "cause": "blip"}, {"output": {"ok": true}}],
            "RequestApproval": [{"output": {"approved": true}}]
        }"#,
    )
    .unwrap()
    .with_substitutions(subs());
    // WHEN it runs (a one-day Wait included)
    let started = std::time::Instant::now();
    let report = run_with_canned_tasks(&flow(), json!({"id": "r1"}), canned)
        .await
        .unwrap();
    // THEN it succeeds at once, through every state
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(report.status, ExecutionStatus::Succeeded);
    assert_eq!(
        report.states,
        vec!["Validate", "RequestApproval", "HoldGrant", "Done"]
    );
    assert_eq!(
        report.output,
        Some(json!({"id": "r1", "validation": {"ok": true}, "decision": {"approved": true}}))
    );
    // AND the history shows the retry (two TaskScheduled for Validate)
    let scheduled = report
        .history
        .iter()
        .filter(|e| e.event_type == "TaskScheduled")
        .count();
    assert_eq!(scheduled, 3);
    // AND the report serializes as {status, output, states, history}
    let wire = serde_json::to_value(&report).unwrap();
    assert_eq!(wire["status"], json!("SUCCEEDED"));
    assert!(wire.get("error").is_none());
    assert_eq!(wire["states"][0], json!("Validate"));
    assert!(wire["history"].as_array().unwrap().len() > 10);
}

#[tokio::test]
async fn callback_failure_and_timeout_answers_take_their_branches() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"error": "Denied", "cause": "no"}),
            "Denied",
            "Denied",
        ),
        (json!({"timeout": true}), "TimedOut", "ApprovalTimedOut"),
    ];
    for (answer, last_state, error) in cases {
        // GIVEN the approval answer
        let answer: CannedAnswer = serde_json::from_value(answer).unwrap();
        let canned = CannedTasks::new()
            .answer("RequestApproval", answer)
            .with_substitutions(subs());
        // WHEN it runs (Validate echoes its input, which has "ok")
        let report = run_with_canned_tasks(&flow(), json!({"ok": true}), canned)
            .await
            .unwrap();
        // THEN
        assert_eq!(report.status, ExecutionStatus::Failed, "{last_state}");
        assert_eq!(report.states.last().map(String::as_str), Some(last_state));
        assert_eq!(report.error.as_deref(), Some(error));
        let wire = serde_json::to_value(&report).unwrap();
        assert!(wire.get("output").is_none());
        assert_eq!(wire["error"], json!(error));
    }
}

#[tokio::test]
async fn tasks_without_answers_echo_their_payload() {
    // GIVEN no canned answers at all
    let report = run_with_canned_tasks(
        &flow(),
        json!({"ok": "echoed"}),
        CannedTasks::new().with_substitutions(subs()),
    )
    .await
    .unwrap();
    // THEN Validate's Payload is its input, and the approval's answer is the notify payload
    assert_eq!(report.status, ExecutionStatus::Succeeded);
    let out = report.output.unwrap();
    assert_eq!(out["validation"], json!({"ok": "echoed"}));
    assert!(out["decision"]["token"].is_string());
}

#[tokio::test]
async fn the_last_answer_repeats() {
    // GIVEN Validate always fails with Transient (one answer, repeated)
    let canned = CannedTasks::new()
        .answer(
            "Validate",
            CannedAnswer::Error {
                error: "Transient".into(),
                cause: "down".into(),
            },
        )
        .with_substitutions(subs());
    // WHEN it runs
    let report = run_with_canned_tasks(&flow(), json!({}), canned)
        .await
        .unwrap();
    // THEN it is tried 1 + 3 times, then fails
    assert_eq!(report.status, ExecutionStatus::Failed);
    assert_eq!(report.error.as_deref(), Some("Transient"));
    let failed = report
        .history
        .iter()
        .filter(|e| e.event_type == "TaskFailed")
        .count();
    assert_eq!(failed, 4);
}

#[tokio::test]
async fn bad_inputs_are_refused_with_reasons() {
    // an unresolved placeholder
    let e = run_with_canned_tasks(&flow(), json!({}), CannedTasks::new())
        .await
        .unwrap_err();
    assert!(matches!(e, EngineError::InvalidDefinition { .. }), "{e}");
    assert!(e.to_string().contains("${ValidateFn}"), "{e}");
    // an answer for a state that does not exist
    let canned = CannedTasks::from_json(r#"{"Nope": [{"output": 1}]}"#)
        .unwrap()
        .with_substitutions(subs());
    let e = run_with_canned_tasks(&flow(), json!({}), canned)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no state named \"Nope\""), "{e}");
    // a malformed tasks file
    let e = CannedTasks::from_json(r#"{"Validate": [{"outptu": 1}]}"#).unwrap_err();
    assert!(matches!(e, EngineError::InvalidCannedTasks(_)), "{e}");
    // a timeout answer for a request-response task without TimeoutSeconds
    let canned = CannedTasks::new()
        .answer("Validate", CannedAnswer::Timeout { timeout: true })
        .with_substitutions(subs());
    let e = run_with_canned_tasks(&flow(), json!({}), canned)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("literal TimeoutSeconds"), "{e}");
}

#[tokio::test]
async fn a_request_response_timeout_answer_times_the_task_out() {
    // GIVEN a task with TimeoutSeconds and a canned timeout
    let def = json!({"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f",
        "TimeoutSeconds": 30, "End": true
    }}})
    .to_string();
    let canned = CannedTasks::new().answer("T", CannedAnswer::Timeout { timeout: true });
    // WHEN it runs
    let report = run_with_canned_tasks(&def, json!({}), canned)
        .await
        .unwrap();
    // THEN States.Timeout
    assert_eq!(report.error.as_deref(), Some("States.Timeout"));
}

#[tokio::test]
async fn a_timeout_answer_for_a_callback_without_any_timeout_is_refused() {
    // GIVEN a callback with neither TimeoutSeconds nor HeartbeatSeconds
    let def = json!({"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "f", "Payload": {"t.$": "$$.Task.Token"}},
        "End": true
    }}})
    .to_string();
    // WHEN a canned answer says it times out
    let e = run_with_canned_tasks(
        &def,
        json!({}),
        CannedTasks::new().answer("T", CannedAnswer::Timeout { timeout: true }),
    )
    .await
    .unwrap_err();
    // THEN the run is refused up front instead of hanging
    assert!(e.to_string().contains("waits for ever"), "{e}");
}
