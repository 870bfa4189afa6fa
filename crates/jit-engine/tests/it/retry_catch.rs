//! Retry (intervals, backoff, caps, per-retrier counters, order) and Catch
//! (routing, ResultPath of the error output), with the States.* wildcards.

use crate::common;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use common::*;
use jit_core::ports::{Clock, ManualClock};
use jit_engine::{Definitions, Engine, EngineDb, ExecutionStatus, TaskError, TaskInvoker};
use serde_json::{Value, json};

fn task(extra: Value) -> Value {
    let mut t = json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "f", "Payload": {"retry.$": "$$.State.RetryCount"}},
        "ResultSelector": {"v.$": "$.Payload"},
        "End": true
    });
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    t
}

fn with_handlers(t: Value) -> Value {
    json!({
        "StartAt": "T",
        "States": {
            "T": t,
            "Recover": {"Type": "Pass", "End": true},
            "OnTimeout": {"Type": "Pass", "End": true}
        }
    })
}

/// Runs to completion, jumping the clock to each next timer.
async fn run_jumping(h: &Harness, name: &str, input: Value) {
    h.start(name, input);
    loop {
        h.idle().await;
        if h.describe(name).status != ExecutionStatus::Running {
            return;
        }
        let next = h
            .engine
            .next_timer()
            .unwrap()
            .expect("a timer while running");
        h.clock.set(next);
    }
}

fn offsets(h: &Harness) -> Vec<i64> {
    h.tasks
        .calls()
        .iter()
        .map(|c| (c.at - t0()).num_milliseconds())
        .collect()
}

#[tokio::test]
async fn retries_back_off_by_rate_and_are_capped_by_max_delay() {
    // GIVEN IntervalSeconds 2, BackoffRate 3, MaxDelaySeconds 10, and a function
    // failing four times before it succeeds
    let h = harness(&with_handlers(task(json!({"Retry": [{
        "ErrorEquals": ["Transient"], "IntervalSeconds": 2, "BackoffRate": 3,
        "MaxDelaySeconds": 10, "MaxAttempts": 5
    }]}))));
    for _ in 0..4 {
        h.tasks.err("f", "Transient", "try again");
    }
    h.tasks.ok("f", json!("done"));
    // WHEN it runs
    run_jumping(&h, "x", json!({})).await;
    // THEN the attempts were at 0, 2, 2+6, 8+10 (18 capped to 10), 18+10 seconds
    assert_eq!(offsets(&h), vec![0, 2_000, 8_000, 18_000, 28_000]);
    // AND each attempt saw its retry count in $$.State.RetryCount
    let counts: Vec<Value> = h
        .tasks
        .calls()
        .iter()
        .map(|c| c.payload["retry"].clone())
        .collect();
    assert_eq!(
        counts,
        vec![json!(0), json!(1), json!(2), json!(3), json!(4)]
    );
    let d = h.describe("x");
    assert_eq!(d.status, ExecutionStatus::Succeeded);
    assert_eq!(d.output, Some(json!({"v": "done"})));
}

#[tokio::test]
async fn defaults_are_one_second_three_attempts_rate_two() {
    // GIVEN a retrier with only ErrorEquals and a function that always fails
    let h = harness(&with_handlers(task(
        json!({"Retry": [{"ErrorEquals": ["States.ALL"]}]}),
    )));
    h.tasks.err("f", "Boom", "always");
    // WHEN it runs
    run_jumping(&h, "x", json!({})).await;
    // THEN 1 + 3 attempts at 0, 1, 1+2, 3+4 seconds, then the execution fails
    assert_eq!(offsets(&h), vec![0, 1_000, 3_000, 7_000]);
    let d = h.describe("x");
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(
        (d.error.as_deref(), d.cause.as_deref()),
        (Some("Boom"), Some("always"))
    );
}

#[tokio::test]
async fn max_attempts_zero_never_retries() {
    // GIVEN MaxAttempts 0 and a catcher
    let h = harness(&with_handlers(task(json!({
        "Retry": [{"ErrorEquals": ["Boom"], "MaxAttempts": 0}],
        "Catch": [{"ErrorEquals": ["Boom"], "Next": "Recover"}]
    }))));
    h.tasks.err("f", "Boom", "once");
    // WHEN it runs
    run_jumping(&h, "x", json!({})).await;
    // THEN one attempt, then caught
    assert_eq!(h.tasks.calls().len(), 1);
    assert_eq!(h.states("x"), vec!["T", "Recover"]);
}

#[tokio::test]
async fn each_retrier_counts_its_own_attempts() {
    // GIVEN retrier A (1 attempt) and B (2 attempts), errors A, B, B, A
    let h = harness(&with_handlers(task(json!({"Retry": [
        {"ErrorEquals": ["A"], "MaxAttempts": 1, "IntervalSeconds": 1},
        {"ErrorEquals": ["B"], "MaxAttempts": 2, "IntervalSeconds": 1}
    ]}))));
    for e in ["A", "B", "B", "A"] {
        h.tasks.err("f", e, "");
    }
    h.tasks.ok("f", json!("unreached"));
    // WHEN it runs
    run_jumping(&h, "x", json!({})).await;
    // THEN A, B, B were retried and the second A (A spent) failed the execution
    assert_eq!(h.tasks.calls().len(), 4);
    let d = h.describe("x");
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("A"));
}

#[tokio::test]
async fn the_first_matching_retrier_decides_even_when_spent() {
    // GIVEN a spent specific retrier before a generous States.ALL one
    let h = harness(&with_handlers(task(json!({"Retry": [
        {"ErrorEquals": ["X"], "MaxAttempts": 1},
        {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5}
    ]}))));
    h.tasks.err("f", "X", "");
    // WHEN it runs
    run_jumping(&h, "x", json!({})).await;
    // THEN X is retried once only: the later retrier is not consulted
    assert_eq!(h.tasks.calls().len(), 2);
    assert_eq!(h.describe("x").status, ExecutionStatus::Failed);
}

#[tokio::test]
async fn full_jitter_delays_are_within_the_backoff() {
    // GIVEN FULL jitter on a 10 s interval
    let h = harness(&with_handlers(task(json!({"Retry": [{
        "ErrorEquals": ["E"], "IntervalSeconds": 10, "MaxAttempts": 1, "JitterStrategy": "FULL"
    }]}))));
    h.tasks.err("f", "E", "");
    h.tasks.ok("f", json!(1));
    // WHEN it runs
    run_jumping(&h, "x", json!({})).await;
    // THEN the retry came no later than 10 s after the failure
    let o = offsets(&h);
    assert_eq!(o.len(), 2);
    assert!((0..=10_000).contains(&o[1]), "{o:?}");
}

#[tokio::test]
async fn catchers_route_in_order_and_place_the_error_output() {
    // (Catch, expected next state, expected output)
    let input = json!({"id": "r1"});
    let cases: Vec<(Value, &str, Value)> = vec![
        (
            json!([{"ErrorEquals": ["Other"], "Next": "OnTimeout"},
                   {"ErrorEquals": ["Denied"], "Next": "Recover"}]),
            "Recover",
            json!({"Error": "Denied", "Cause": "no"}),
        ),
        (
            json!([{"ErrorEquals": ["States.TaskFailed"], "Next": "Recover", "ResultPath": "$.error"}]),
            "Recover",
            json!({"id": "r1", "error": {"Error": "Denied", "Cause": "no"}}),
        ),
        (
            json!([{"ErrorEquals": ["States.ALL"], "Next": "Recover", "ResultPath": null}]),
            "Recover",
            json!({"id": "r1"}),
        ),
    ];
    for (catch, next, want) in cases {
        // GIVEN a task failing with Denied
        let h = harness(&with_handlers(task(json!({"Catch": catch}))));
        h.tasks.err("f", "Denied", "no");
        // WHEN it runs
        let d = h.run("x", input.clone()).await;
        // THEN the matching catcher routes, with the error where ResultPath says
        assert_eq!(h.states("x"), vec!["T", next], "{catch}");
        assert_eq!(d.output, Some(want), "{catch}");
    }
}

#[tokio::test]
async fn an_uncaught_error_fails_the_execution_with_its_name_and_cause() {
    // GIVEN a catcher for another error
    let h = harness(&with_handlers(task(json!({
        "Catch": [{"ErrorEquals": ["Other"], "Next": "Recover"}]
    }))));
    h.tasks.err("f", "Denied", "no");
    // WHEN it runs
    let d = h.run("x", json!({})).await;
    // THEN
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(
        (d.error.as_deref(), d.cause.as_deref()),
        (Some("Denied"), Some("no"))
    );
    assert_eq!(
        h.event_types("x"),
        vec![
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskFailed",
            "ExecutionFailed"
        ]
    );
}

#[tokio::test]
async fn states_runtime_is_never_caught_or_retried() {
    // GIVEN an OutputPath that selects nothing, with catch-all handlers
    let h = harness(&with_handlers(task(json!({
        "OutputPath": "$.missing",
        "Retry": [{"ErrorEquals": ["States.ALL"]}],
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recover"}]
    }))));
    // WHEN it runs
    let d = h.run("x", json!({})).await;
    // THEN States.Runtime fails the execution after the single attempt
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("States.Runtime"));
    assert_eq!(h.tasks.calls().len(), 1);
}

#[tokio::test]
async fn a_catcher_result_path_that_cannot_apply_fails_the_execution() {
    // GIVEN an input that is a string and a catcher writing into it
    let h = harness(&with_handlers(task(json!({
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recover", "ResultPath": "$.err"}]
    }))));
    h.tasks.err("f", "Denied", "no");
    // WHEN it runs
    let d = h.run("x", json!("just a string")).await;
    // THEN
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("States.ResultPathMatchFailure"));
}

/// An invoker whose call takes `secs` seconds of the manual clock.
struct Slow {
    clock: Arc<ManualClock>,
    secs: i64,
}

#[async_trait]
impl TaskInvoker for Slow {
    async fn invoke(&self, _f: &str, payload: Value) -> Result<Value, TaskError> {
        self.clock.advance(Duration::seconds(self.secs));
        Ok(payload)
    }
}

#[tokio::test]
async fn a_request_response_task_past_timeout_seconds_times_out() {
    for (resource, timed_out_event) in [
        ("arn:aws:states:::lambda:invoke", "TaskTimedOut"),
        (FN_ARN, "LambdaFunctionTimedOut"),
    ] {
        // GIVEN TimeoutSeconds 10, a call taking 11 s, TaskFailed retried but Timeout caught
        let mut t = json!({
            "Type": "Task", "Resource": resource, "TimeoutSeconds": 10,
            "Retry": [{"ErrorEquals": ["States.TaskFailed"]}],
            "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "OnTimeout"}],
            "End": true
        });
        if resource.starts_with("arn:aws:states") {
            t["Parameters"] = json!({"FunctionName": "f"});
        }
        let clock = Arc::new(ManualClock::new(t0()));
        let engine = Engine::open(
            EngineDb::in_memory().unwrap(),
            Definitions::new().with(MACHINE, load(&with_handlers(t))),
            Arc::new(Slow {
                clock: clock.clone(),
                secs: 11,
            }),
            clock.clone(),
        )
        .unwrap();
        // WHEN it runs
        engine.start_execution(MACHINE, "x", json!({})).unwrap();
        engine.run_until_idle().await.unwrap();
        // THEN States.Timeout: not retried by States.TaskFailed, caught by States.Timeout
        let d = engine.describe_execution("x").unwrap();
        assert_eq!(
            engine.states_entered("x").unwrap(),
            vec!["T", "OnTimeout"],
            "{resource}"
        );
        assert_eq!(d.output.unwrap()["Error"], json!("States.Timeout"));
        let types: Vec<String> = engine
            .history("x")
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert!(types.contains(&timed_out_event.to_string()), "{types:?}");
        assert_eq!(clock.now(), t0() + Duration::seconds(11));
    }
}

/// An invoker that never answers.
struct Hangs;

#[async_trait]
impl TaskInvoker for Hangs {
    async fn invoke(&self, _f: &str, _payload: Value) -> Result<Value, TaskError> {
        std::future::pending().await
    }
}

/// An invoker that panics.
struct Panics;

#[async_trait]
impl TaskInvoker for Panics {
    async fn invoke(&self, _f: &str, _payload: Value) -> Result<Value, TaskError> {
        panic!("handler bug")
    }
}

#[tokio::test]
async fn a_hung_handler_is_cut_off_after_timeout_seconds_of_real_time() {
    // GIVEN TimeoutSeconds 1 and a handler that never returns
    let t = json!({"Type": "Task", "Resource": FN_ARN, "TimeoutSeconds": 1, "End": true});
    let clock = Arc::new(ManualClock::new(t0()));
    let engine = Engine::open(
        EngineDb::in_memory().unwrap(),
        Definitions::new().with(MACHINE, load(&with_handlers(t))),
        Arc::new(Hangs),
        clock,
    )
    .unwrap();
    // WHEN it runs
    engine.start_execution(MACHINE, "x", json!({})).unwrap();
    let started = std::time::Instant::now();
    engine.run_until_idle().await.unwrap();
    // THEN after about a second the task timed out
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    let d = engine.describe_execution("x").unwrap();
    assert_eq!(d.error.as_deref(), Some("States.Timeout"));
}

#[tokio::test]
async fn a_panicking_handler_fails_the_task_not_the_engine() {
    // GIVEN a handler that panics and a catch-all
    let t = json!({"Type": "Task", "Resource": FN_ARN,
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recover"}], "End": true});
    let clock = Arc::new(ManualClock::new(t0()));
    let engine = Engine::open(
        EngineDb::in_memory().unwrap(),
        Definitions::new().with(MACHINE, load(&with_handlers(t))),
        Arc::new(Panics),
        clock,
    )
    .unwrap();
    // WHEN it runs
    engine.start_execution(MACHINE, "x", json!({})).unwrap();
    engine.run_until_idle().await.unwrap();
    // THEN the task failed with Lambda.Unknown and was caught
    let d = engine.describe_execution("x").unwrap();
    assert_eq!(d.status, ExecutionStatus::Succeeded);
    assert_eq!(d.output.unwrap()["Error"], json!("Lambda.Unknown"));
}
