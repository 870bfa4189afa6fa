//! `.waitForTaskToken`: success, failure, timeout, heartbeat; the token API's
//! errors; StopExecution; idempotent StartExecution.

use crate::common;

use common::*;
use jit_engine::{EngineError, ExecutionStatus};
use serde_json::{Value, json};

fn approval(extra: Value) -> Value {
    let mut t = json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {
            "FunctionName": "notify",
            "Payload": {"requestId.$": "$.id", "taskToken.$": "$$.Task.Token"}
        },
        "ResultPath": "$.decision",
        "Next": "Grant"
    });
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    json!({
        "StartAt": "RequestApproval",
        "States": {
            "RequestApproval": t,
            "Grant": {"Type": "Pass", "End": true},
            "TimedOut": {"Type": "Pass", "End": true},
            "Denied": {"Type": "Pass", "End": true}
        }
    })
}

#[tokio::test]
async fn send_task_success_resumes_with_its_output_as_the_result() {
    // GIVEN an execution waiting for approval
    let h = harness(&approval(json!({})));
    h.start("req-1", json!({"id": "req-1"}));
    h.idle().await;
    // THEN the notify function got the token in its payload, and the execution waits
    let call = &h.tasks.calls()[0];
    let token = h.tasks.last_token();
    assert_eq!(
        call.payload,
        json!({"requestId": "req-1", "taskToken": token})
    );
    assert!(token.len() >= 22, "at least 128 bits");
    assert_eq!(h.describe("req-1").status, ExecutionStatus::Running);
    assert_eq!(
        h.event_types("req-1"),
        vec![
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskSubmitted"
        ]
    );
    // WHEN the approver answers
    h.engine
        .send_task_success(&token, json!({"approved": true, "by": "lead"}))
        .unwrap();
    h.idle().await;
    // THEN the state's result is that output itself (no Payload wrapper)
    let d = h.describe("req-1");
    assert_eq!(d.status, ExecutionStatus::Succeeded);
    assert_eq!(
        d.output,
        Some(json!({"id": "req-1", "decision": {"approved": true, "by": "lead"}}))
    );
    assert_eq!(h.states("req-1"), vec!["RequestApproval", "Grant"]);
    // AND the token is spent
    assert!(matches!(
        h.engine.send_task_success(&token, json!({})),
        Err(EngineError::TaskTimedOut)
    ));
}

#[tokio::test]
async fn send_task_failure_is_caught_by_its_error_name() {
    // GIVEN a catcher for Denied
    let h = harness(&approval(json!({
        "Catch": [{"ErrorEquals": ["Denied"], "Next": "Denied", "ResultPath": "$.why"}]
    })));
    h.start("req-1", json!({"id": "req-1"}));
    h.idle().await;
    // WHEN the approver denies
    h.engine
        .send_task_failure(&h.tasks.last_token(), "Denied", "not today")
        .unwrap();
    h.idle().await;
    // THEN
    let d = h.describe("req-1");
    assert_eq!(h.states("req-1"), vec!["RequestApproval", "Denied"]);
    assert_eq!(
        d.output.unwrap()["why"],
        json!({"Error": "Denied", "Cause": "not today"})
    );
    assert!(h.event_types("req-1").contains(&"TaskFailed".to_string()));
}

#[tokio::test]
async fn no_answer_within_timeout_seconds_is_states_timeout() {
    // GIVEN TimeoutSeconds 3600 and a catcher for States.Timeout
    let h = harness(&approval(json!({
        "TimeoutSeconds": 3600,
        "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}]
    })));
    h.start("req-1", json!({"id": "req-1"}));
    h.idle().await;
    let token = h.tasks.last_token();
    // WHEN nobody answers for 3599 s, nothing happens
    h.advance(3599);
    h.idle().await;
    assert_eq!(h.describe("req-1").status, ExecutionStatus::Running);
    // AND at 3600 s the task times out
    h.advance(1);
    h.idle().await;
    // THEN
    assert_eq!(h.states("req-1"), vec!["RequestApproval", "TimedOut"]);
    let types = h.event_types("req-1");
    assert!(types.contains(&"TaskTimedOut".to_string()), "{types:?}");
    assert_eq!(
        h.describe("req-1").output.unwrap()["Error"],
        json!("States.Timeout")
    );
    // AND a late answer is refused as AWS refuses it
    assert!(matches!(
        h.engine.send_task_success(&token, json!({})),
        Err(EngineError::TaskTimedOut)
    ));
}

#[tokio::test]
async fn timeout_seconds_path_sets_the_window_from_the_input() {
    // GIVEN TimeoutSecondsPath reading the approval window
    let h = harness(&approval(json!({
        "TimeoutSecondsPath": "$.window",
        "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}]
    })));
    h.start("req-1", json!({"id": "req-1", "window": 120}));
    h.idle().await;
    // WHEN 120 s pass
    assert_eq!(
        h.engine.next_timer().unwrap(),
        Some(t0() + chrono::Duration::seconds(120))
    );
    h.advance(120);
    h.idle().await;
    // THEN it timed out
    assert_eq!(h.states("req-1"), vec!["RequestApproval", "TimedOut"]);
}

#[tokio::test]
async fn heartbeats_keep_a_task_alive_and_missing_one_is_heartbeat_timeout() {
    // GIVEN HeartbeatSeconds 60 within TimeoutSeconds 1000
    let h = harness(&approval(json!({
        "TimeoutSeconds": 1000,
        "HeartbeatSeconds": 60,
        "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "TimedOut", "ResultPath": "$.err"}]
    })));
    h.start("req-1", json!({"id": "req-1"}));
    h.idle().await;
    let token = h.tasks.last_token();
    // WHEN a heartbeat comes every 50 s for 200 s
    for _ in 0..4 {
        h.advance(50);
        h.idle().await;
        h.engine.send_task_heartbeat(&token).unwrap();
    }
    h.idle().await;
    // THEN it is still waiting
    assert_eq!(h.describe("req-1").status, ExecutionStatus::Running);
    // WHEN the heartbeats stop for 60 s
    h.advance(60);
    h.idle().await;
    // THEN States.HeartbeatTimeout
    assert_eq!(h.states("req-1"), vec!["RequestApproval", "TimedOut"]);
    assert_eq!(
        h.describe("req-1").output.unwrap()["err"]["Error"],
        json!("States.HeartbeatTimeout")
    );
    assert!(matches!(
        h.engine.send_task_heartbeat(&token),
        Err(EngineError::TaskTimedOut)
    ));
}

#[tokio::test]
async fn a_heartbeat_timeout_is_also_a_states_timeout_for_catchers() {
    // GIVEN only a States.Timeout catcher
    let h = harness(&approval(json!({
        "HeartbeatSeconds": 10,
        "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}]
    })));
    h.start("req-1", json!({"id": "req-1"}));
    h.idle().await;
    // WHEN no heartbeat comes
    h.advance(10);
    h.idle().await;
    // THEN the catcher takes it
    assert_eq!(h.states("req-1"), vec!["RequestApproval", "TimedOut"]);
}

#[tokio::test]
async fn each_retry_of_a_callback_task_gets_a_new_token() {
    // GIVEN a retrier for Busy
    let h = harness(&approval(json!({
        "Retry": [{"ErrorEquals": ["Busy"], "IntervalSeconds": 5}]
    })));
    h.start("req-1", json!({"id": "req-1"}));
    h.idle().await;
    let first = h.tasks.last_token();
    // WHEN the first attempt is failed with Busy and the retry interval passes
    h.engine.send_task_failure(&first, "Busy", "").unwrap();
    h.idle().await;
    h.advance(5);
    h.idle().await;
    // THEN notify was called again with a fresh token; the old one is dead
    let second = h.tasks.last_token();
    assert_eq!(h.tasks.calls().len(), 2);
    assert_ne!(first, second);
    assert!(matches!(
        h.engine.send_task_success(&first, json!({})),
        Err(EngineError::TaskTimedOut)
    ));
    h.engine.send_task_success(&second, json!("ok")).unwrap();
    h.idle().await;
    assert_eq!(h.describe("req-1").status, ExecutionStatus::Succeeded);
}

#[tokio::test]
async fn a_failing_callback_lambda_fails_the_task() {
    // GIVEN the notify function itself fails
    let h = harness(&approval(json!({})));
    h.tasks.err("notify", "SlackDown", "503");
    // WHEN it runs
    let d = h.run("req-1", json!({"id": "req-1"})).await;
    // THEN the task fails with the function's error and the token is closed
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("SlackDown"));
    assert!(matches!(
        h.engine.send_task_success(&h.tasks.last_token(), json!({})),
        Err(EngineError::TaskTimedOut)
    ));
}

#[tokio::test]
async fn token_api_errors_are_named_like_aws() {
    let h = harness(&approval(json!({})));
    // WHEN tokens are malformed or unknown
    // THEN InvalidToken / TaskDoesNotExist
    assert!(matches!(
        h.engine.send_task_success("", json!({})),
        Err(EngineError::InvalidToken)
    ));
    assert!(matches!(
        h.engine.send_task_success("not a token!", json!({})),
        Err(EngineError::InvalidToken)
    ));
    assert!(matches!(
        h.engine
            .send_task_failure("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "E", ""),
        Err(EngineError::TaskDoesNotExist)
    ));
    assert!(matches!(
        h.engine
            .send_task_heartbeat("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        Err(EngineError::TaskDoesNotExist)
    ));
}

#[tokio::test]
async fn stop_aborts_a_waiting_execution_and_kills_its_token() {
    // GIVEN an execution waiting for approval
    let h = harness(&approval(json!({"TimeoutSeconds": 100})));
    h.start("req-1", json!({"id": "req-1"}));
    h.idle().await;
    let token = h.tasks.last_token();
    // WHEN it is stopped
    h.advance(5);
    let stopped = h
        .engine
        .stop_execution("req-1", Some("Cancelled"), Some("requester cancelled"))
        .unwrap();
    // THEN it is ABORTED with the error and cause, at the stop time
    let d = h.describe("req-1");
    assert_eq!(d.status, ExecutionStatus::Aborted);
    assert_eq!(d.error.as_deref(), Some("Cancelled"));
    assert_eq!(d.cause.as_deref(), Some("requester cancelled"));
    assert_eq!(d.stop_date, Some(stopped));
    assert_eq!(stopped, t0() + chrono::Duration::seconds(5));
    assert_eq!(h.event_types("req-1").last().unwrap(), "ExecutionAborted");
    // AND the token is refused, the timeout never fires, nothing else runs
    assert!(matches!(
        h.engine.send_task_success(&token, json!({})),
        Err(EngineError::TaskTimedOut)
    ));
    assert_eq!(h.engine.next_timer().unwrap(), None);
    h.advance(1000);
    h.idle().await;
    assert_eq!(h.describe("req-1").status, ExecutionStatus::Aborted);
    // AND stopping again changes nothing; an unknown execution is an error
    assert_eq!(
        h.engine.stop_execution("req-1", None, None).unwrap(),
        stopped
    );
    assert!(matches!(
        h.engine.stop_execution("nope", None, None),
        Err(EngineError::ExecutionDoesNotExist(_))
    ));
}

#[tokio::test]
async fn start_is_idempotent_per_name_and_input_like_standard_workflows() {
    let h = harness(&approval(json!({})));
    // GIVEN a running execution
    let first = h
        .engine
        .start_execution(MACHINE, "req-1", json!({"id": "req-1", "n": 1}))
        .unwrap();
    assert!(!first.already_running);
    h.idle().await;
    // WHEN started again with the same name and an equal input (other key order)
    h.advance(10);
    let again = h
        .engine
        .start_execution(MACHINE, "req-1", json!({"n": 1, "id": "req-1"}))
        .unwrap();
    // THEN the same execution comes back and nothing new runs
    assert!(again.already_running);
    assert_eq!(again.execution_arn, first.execution_arn);
    assert_eq!(again.start_date, first.start_date);
    h.idle().await;
    assert_eq!(h.tasks.calls().len(), 1);
    // WHEN started with the same name and another input
    // THEN ExecutionAlreadyExists
    assert!(matches!(
        h.engine
            .start_execution(MACHINE, "req-1", json!({"id": "other"})),
        Err(EngineError::ExecutionAlreadyExists(_))
    ));
    // AND once the execution has closed, even the same input is refused (AWS)
    h.engine.stop_execution("req-1", None, None).unwrap();
    assert!(matches!(
        h.engine
            .start_execution(MACHINE, "req-1", json!({"id": "req-1", "n": 1})),
        Err(EngineError::ExecutionAlreadyExists(_))
    ));
    // AND bad names and unknown machines are refused
    assert!(matches!(
        h.engine.start_execution(MACHINE, "has space", json!({})),
        Err(EngineError::InvalidName(_))
    ));
    assert!(matches!(
        h.engine.start_execution("nope", "a", json!({})),
        Err(EngineError::StateMachineDoesNotExist(_))
    ));
}

#[tokio::test]
async fn an_answer_arriving_during_the_callback_invocation_is_kept() {
    use std::sync::{Arc, OnceLock};

    use async_trait::async_trait;
    use jit_core::ports::ManualClock;
    use jit_engine::{Definitions, Engine, EngineDb, TaskCall, TaskError, TaskInvoker};

    /// A notify handler that approves at once, from inside the invocation
    /// (demo mode's simulated approval does exactly this).
    struct ApprovesInline(OnceLock<Engine>);

    #[async_trait]
    impl TaskInvoker for ApprovesInline {
        async fn invoke(&self, _f: &str, p: Value) -> Result<Value, TaskError> {
            Ok(p)
        }
        async fn invoke_task(&self, call: TaskCall<'_>, p: Value) -> Result<Value, TaskError> {
            let engine = self.0.get().expect("engine set");
            engine
                .send_task_success(call.task_token.unwrap(), json!({"approved": "inline"}))
                .map_err(|e| TaskError::new("Engine", e.to_string()))?;
            Ok(p)
        }
    }

    // GIVEN a callback handler that sends the token back before returning
    let invoker = Arc::new(ApprovesInline(OnceLock::new()));
    let engine = Engine::open(
        EngineDb::in_memory().unwrap(),
        Definitions::new().with(MACHINE, load(&approval(json!({})))),
        invoker.clone(),
        Arc::new(ManualClock::new(t0())),
    )
    .unwrap();
    invoker.0.set(engine.clone()).ok();
    // WHEN it runs
    engine
        .start_execution(MACHINE, "req-1", json!({"id": "req-1"}))
        .unwrap();
    engine.run_until_idle().await.unwrap();
    // THEN the early answer was not lost and no deadlock happened
    let d = engine.describe_execution("req-1").unwrap();
    assert_eq!(d.status, ExecutionStatus::Succeeded);
    assert_eq!(d.output.unwrap()["decision"], json!({"approved": "inline"}));
    let types: Vec<String> = engine
        .history("req-1")
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    let submitted = types.iter().position(|t| t == "TaskSubmitted").unwrap();
    let succeeded = types.iter().position(|t| t == "TaskSucceeded").unwrap();
    assert!(submitted < succeeded, "{types:?}");
}

#[tokio::test]
async fn a_stop_during_a_request_response_call_discards_its_result() {
    use std::sync::{Arc, OnceLock};

    use async_trait::async_trait;
    use jit_core::ports::ManualClock;
    use jit_engine::{Definitions, Engine, EngineDb, TaskCall, TaskError, TaskInvoker};

    /// A handler during whose call the execution gets cancelled.
    struct CancelledMeanwhile(OnceLock<Engine>);

    #[async_trait]
    impl TaskInvoker for CancelledMeanwhile {
        async fn invoke(&self, _f: &str, p: Value) -> Result<Value, TaskError> {
            Ok(p)
        }
        async fn invoke_task(&self, call: TaskCall<'_>, p: Value) -> Result<Value, TaskError> {
            let engine = self.0.get().expect("engine set");
            engine
                .stop_execution(call.execution_name, Some("Cancelled"), None)
                .map_err(|e| TaskError::new("Engine", e.to_string()))?;
            Ok(p)
        }
    }

    // GIVEN Grant → Record, and a stop arriving while Grant runs
    let def = json!({"StartAt": "Grant", "States": {
        "Grant": {"Type": "Task", "Resource": FN_ARN, "Next": "Record"},
        "Record": {"Type": "Pass", "End": true}
    }});
    let invoker = Arc::new(CancelledMeanwhile(OnceLock::new()));
    let engine = Engine::open(
        EngineDb::in_memory().unwrap(),
        Definitions::new().with(MACHINE, load(&def)),
        invoker.clone(),
        Arc::new(ManualClock::new(t0())),
    )
    .unwrap();
    invoker.0.set(engine.clone()).ok();
    // WHEN it runs
    engine.start_execution(MACHINE, "x", json!({})).unwrap();
    engine.run_until_idle().await.unwrap();
    // THEN the stop wins: ABORTED, Record never entered
    let d = engine.describe_execution("x").unwrap();
    assert_eq!(d.status, ExecutionStatus::Aborted);
    assert_eq!(d.error.as_deref(), Some("Cancelled"));
    assert!(
        !engine
            .states_entered("x")
            .unwrap()
            .contains(&"Record".to_string())
    );
    let types: Vec<String> = engine
        .history("x")
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types.last().map(String::as_str), Some("ExecutionAborted"));
}
