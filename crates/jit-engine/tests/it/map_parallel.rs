//! Parallel and inline Map states as Step Functions documents them:
//! branches and iterations, combined output in order, ItemsPath,
//! ItemSelector with `$$.Map.Item`, MaxConcurrency, tolerated failures,
//! the first failure failing the state, Retry and Catch on both, AWS's
//! history event names — and durable across a restart.

use crate::common;

use common::*;
use jit_engine::{EngineDb, ExecutionStatus};
use serde_json::{Value, json};

fn task(function: &str) -> Value {
    json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
           "Parameters": {"FunctionName": function, "Payload.$": "$"},
           "ResultSelector": {"r.$": "$.Payload"}, "End": true})
}

fn parallel(extra: Value) -> Value {
    let mut p = json!({"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "Left", "States": {"Left": task("left")}},
        {"StartAt": "Right", "States": {
            "Right": {"Type": "Pass", "Result": "right", "Next": "RightDone"},
            "RightDone": {"Type": "Succeed"}
        }}
    ]});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    json!({"StartAt": "P", "States": {"P": p,
        "Handled": {"Type": "Pass", "End": true}}})
}

#[tokio::test]
async fn parallel_combines_branch_outputs_in_order() {
    // GIVEN a Parallel state with a task branch and a Pass branch
    let h = harness(&parallel(json!({"ResultPath": "$.both"})));
    // WHEN it runs
    let d = h.run("x", json!({"k": 1})).await;
    // THEN its result is the array of the branches' outputs, in branch order
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    assert_eq!(
        d.output,
        Some(json!({"k": 1, "both": [{"r": {"k": 1}}, "right"]}))
    );
    // AND the history reads as AWS's
    assert_eq!(
        h.event_types("x"),
        vec![
            "ExecutionStarted",
            "ParallelStateEntered",
            "ParallelStateStarted",
            // the branches take turns, as concurrent branches interleave
            "TaskStateEntered",
            "PassStateEntered",
            "PassStateExited",
            "TaskScheduled",
            "TaskStarted",
            "TaskSucceeded",
            "TaskStateExited",
            "SucceedStateEntered",
            "SucceedStateExited",
            "ParallelStateSucceeded",
            "ParallelStateExited",
            "ExecutionSucceeded"
        ]
    );
}

#[tokio::test]
async fn a_failing_branch_fails_the_parallel_and_catch_takes_it() {
    // GIVEN a Parallel whose task branch fails, with a catcher
    let h = harness(&parallel(json!({
        "Catch": [{"ErrorEquals": ["Boom"], "Next": "Handled", "ResultPath": "$.err"}]
    })));
    h.tasks.err("left", "Boom", "it broke");
    let d = h.run("x", json!({})).await;
    // THEN the branch's error is the Parallel's, caught
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    assert_eq!(
        d.output,
        Some(json!({"err": {"Error": "Boom", "Cause": "it broke"}}))
    );
    let types = h.event_types("x");
    assert!(
        types.contains(&"ParallelStateFailed".to_string()),
        "{types:?}"
    );
    assert_eq!(h.states("x").last().map(String::as_str), Some("Handled"));

    // AND without a catcher the execution fails with the branch's error
    let h = harness(&parallel(json!({})));
    h.tasks.err("left", "Boom", "it broke");
    let d = h.run("y", json!({})).await;
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(
        (d.error.as_deref(), d.cause.as_deref()),
        (Some("Boom"), Some("it broke"))
    );
}

#[tokio::test]
async fn retry_runs_the_whole_parallel_again() {
    // GIVEN a Parallel retried once on Boom, whose task fails once
    let h = harness(&parallel(json!({
        "Retry": [{"ErrorEquals": ["Boom"], "IntervalSeconds": 2, "MaxAttempts": 1}]
    })));
    h.tasks.err("left", "Boom", "first");
    h.tasks.ok("left", json!("second"));
    h.start("x", json!({}));
    h.idle().await;
    assert_eq!(h.describe("x").status, ExecutionStatus::Running);
    // WHEN the retry interval passes
    h.advance(2);
    h.idle().await;
    // THEN both branches ran again and the state succeeded
    let d = h.describe("x");
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    assert_eq!(d.output, Some(json!([{"r": "second"}, "right"])));
    assert_eq!(h.tasks.calls_to("left").len(), 2);
    let entered = |name: &str| h.states("x").iter().filter(|s| *s == name).count();
    assert_eq!((entered("Left"), entered("Right")), (2, 2));
}

fn map(extra: Value) -> Value {
    let mut m = json!({"Type": "Map", "ItemsPath": "$.items", "End": true,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Work",
            "States": {"Work": task("work")}}});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    json!({"StartAt": "M", "States": {"M": m, "Handled": {"Type": "Pass", "End": true}}})
}

#[tokio::test]
async fn map_runs_each_item_through_the_item_selector() {
    // GIVEN a Map with an ItemSelector reading $$.Map.Item and the input
    let h = harness(&map(json!({
        "ItemSelector": {"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value", "tag.$": "$.tag"},
        "ResultPath": "$.out"
    })));
    // WHEN it runs on three items
    let d = h
        .run("x", json!({"tag": "t", "items": ["a", "b", "c"]}))
        .await;
    // THEN each iteration saw its item, and the outputs are in item order
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    let out = d.output.unwrap();
    assert_eq!(
        out["out"],
        json!([
            {"r": {"i": 0, "v": "a", "tag": "t"}},
            {"r": {"i": 1, "v": "b", "tag": "t"}},
            {"r": {"i": 2, "v": "c", "tag": "t"}}
        ])
    );
    // AND the history has AWS's Map events, with the length and indexes
    let hist = h.engine.history("x").unwrap();
    let started = hist
        .iter()
        .find(|e| e.event_type == "MapStateStarted")
        .unwrap();
    assert_eq!(
        started.details["mapStateStartedEventDetails"],
        json!({"length": 3})
    );
    let iterations: Vec<(String, Value)> = hist
        .iter()
        .filter(|e| e.event_type.starts_with("MapIteration"))
        .map(|e| {
            let key = format!(
                "mapIteration{}EventDetails",
                e.event_type.trim_start_matches("MapIteration")
            );
            (e.event_type.clone(), e.details[&key].clone())
        })
        .collect();
    assert_eq!(iterations.len(), 6);
    assert_eq!(
        iterations[0],
        (
            "MapIterationStarted".to_string(),
            json!({"name": "M", "index": 0})
        )
    );
    assert!(iterations.contains(&(
        "MapIterationSucceeded".to_string(),
        json!({"name": "M", "index": 2})
    )));
    let types = h.event_types("x");
    let tail: Vec<&str> = types.iter().rev().take(3).map(String::as_str).collect();
    assert_eq!(
        tail,
        vec!["ExecutionSucceeded", "MapStateExited", "MapStateSucceeded"]
    );
}

#[tokio::test]
async fn a_runtime_error_in_an_iteration_fails_the_execution_naming_the_inner_state() {
    // GIVEN a Map whose iteration's OutputPath selects nothing, and a
    // Catch on the Map (which States.Runtime passes by)
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handled"}],
        "ItemProcessor": {"StartAt": "Inner", "States": {
            "Inner": {"Type": "Pass", "OutputPath": "$.nope", "End": true}}}},
        "Handled": {"Type": "Pass", "End": true}}});
    let h = harness(&def);
    let d = h.run("x", json!([1])).await;
    // THEN the execution fails, the cause prefixed once, for the inner state
    // (events: Started 1, MapStateEntered 2, MapStateStarted 3,
    // MapIterationStarted 4, PassStateEntered 5)
    assert_eq!(d.status, ExecutionStatus::Failed, "{d:?}");
    assert_eq!(d.error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        d.cause.as_deref(),
        Some(
            "An error occurred while executing the state 'Inner' (entered at the event id #5). Invalid path '$.nope' : No results for path: $['nope']"
        )
    );
}

#[tokio::test]
async fn an_empty_map_outputs_an_empty_array() {
    let h = harness(&map(json!({})));
    let d = h.run("x", json!({"items": []})).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    assert_eq!(d.output, Some(json!([])));
    assert!(h.tasks.calls().is_empty());
}

#[tokio::test]
async fn items_path_must_select_an_array() {
    let h = harness(&map(json!({})));
    let d = h.run("x", json!({"items": {"not": "an array"}})).await;
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        d.cause.as_deref(),
        Some(
            "An error occurred while executing the state 'M' (entered at the event id #2). Map state input must be an array but was: object"
        ),
    );
}

#[tokio::test]
async fn a_failing_iteration_fails_the_map_unless_tolerated() {
    // GIVEN a Map over three items whose second fails
    let def = map(json!({
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handled", "ResultPath": "$.err"}]
    }));
    let h = harness(&def);
    h.tasks.ok("work", json!("ok"));
    h.tasks.err("work", "Bad", "item 1");
    h.tasks.ok("work", json!("ok"));
    let d = h.run("x", json!({"items": [1, 2, 3]})).await;
    // THEN the iteration's error fails the Map and the catcher takes it
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    assert_eq!(
        d.output.unwrap()["err"],
        json!({"Error": "Bad", "Cause": "item 1"})
    );
    let types = h.event_types("x");
    for t in ["MapIterationFailed", "MapStateFailed"] {
        assert!(types.contains(&t.to_string()), "{t} in {types:?}");
    }

    // AND with ToleratedFailureCount 1 the Map succeeds, the failure in its slot
    let h = harness(&map(json!({"ToleratedFailureCount": 1})));
    h.tasks.ok("work", json!("ok"));
    h.tasks.err("work", "Bad", "item 1");
    h.tasks.ok("work", json!("ok"));
    let d = h.run("y", json!({"items": [1, 2, 3]})).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    assert_eq!(
        d.output,
        Some(json!([{"r": "ok"}, {"Error": "Bad", "Cause": "item 1"}, {"r": "ok"}]))
    );

    // AND past the tolerated count it fails with ExceedToleratedFailureThreshold
    let h = harness(&map(json!({"ToleratedFailureCount": 1})));
    h.tasks.err("work", "Bad", "every item");
    let d = h.run("z", json!({"items": [1, 2, 3]})).await;
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(
        d.error.as_deref(),
        Some("States.ExceedToleratedFailureThreshold")
    );
    // (the third iteration was never invoked: two failures already passed 1)
    assert_eq!(h.tasks.calls_to("work").len(), 2);

    // AND ToleratedFailurePercentage 50 tolerates one of three
    let h = harness(&map(json!({"ToleratedFailurePercentage": 50})));
    h.tasks.ok("work", json!("ok"));
    h.tasks.err("work", "Bad", "item 1");
    h.tasks.ok("work", json!("ok"));
    let d = h.run("w", json!({"items": [1, 2, 3]})).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
}

fn callback_map(max_concurrency: u64) -> Value {
    json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
        "MaxConcurrency": max_concurrency,
        "Iterator": {"StartAt": "Ask", "States": {"Ask": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "ask", "Payload": {"item.$": "$", "token.$": "$$.Task.Token"}},
            "End": true}}}}}})
}

#[tokio::test]
async fn max_concurrency_bounds_the_iterations_running_at_once() {
    // GIVEN a Map of callback tasks, MaxConcurrency 1
    let h = harness(&callback_map(1));
    h.start("x", json!(["a", "b"]));
    h.idle().await;
    // THEN only the first iteration has started
    assert_eq!(h.tasks.calls().len(), 1);
    // WHEN its token is answered
    h.engine
        .send_task_success(&h.tasks.last_token(), json!("A"))
        .unwrap();
    h.idle().await;
    // THEN the second starts, and answering it ends the Map
    assert_eq!(h.tasks.calls().len(), 2);
    assert_eq!(h.tasks.calls()[1].payload["item"], json!("b"));
    h.engine
        .send_task_success(&h.tasks.last_token(), json!("B"))
        .unwrap();
    h.idle().await;
    let d = h.describe("x");
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    assert_eq!(d.output, Some(json!(["A", "B"])));

    // AND with no bound (0) both wait at once, answered in any order
    let h = harness(&callback_map(0));
    h.start("y", json!(["a", "b"]));
    h.idle().await;
    let calls = h.tasks.calls();
    assert_eq!(calls.len(), 2);
    let second = calls[1].token.clone().unwrap();
    let first = calls[0].token.clone().unwrap();
    h.engine.send_task_success(&second, json!("B")).unwrap();
    h.idle().await;
    assert_eq!(h.describe("y").status, ExecutionStatus::Running);
    h.engine.send_task_success(&first, json!("A")).unwrap();
    h.idle().await;
    assert_eq!(h.describe("y").output, Some(json!(["A", "B"])));
}

#[tokio::test]
async fn waits_inside_iterations_and_a_map_inside_a_parallel() {
    // GIVEN a Parallel whose branch is a Map whose iterations Wait
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true,
    "Branches": [
        {"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
            "Iterator": {"StartAt": "Nap", "States": {
                "Nap": {"Type": "Wait", "SecondsPath": "$", "Next": "Done"},
                "Done": {"Type": "Pass", "End": true}}}}}},
        {"StartAt": "Quick", "States": {"Quick": {"Type": "Pass", "Result": "q", "End": true}}}
    ]}}});
    let h = harness(&def);
    h.start("x", json!([5, 10]));
    h.idle().await;
    assert_eq!(h.describe("x").status, ExecutionStatus::Running);
    assert_eq!(
        h.engine.next_timer().unwrap(),
        Some(t0() + chrono::Duration::seconds(5))
    );
    h.advance(5);
    h.idle().await;
    assert_eq!(h.describe("x").status, ExecutionStatus::Running);
    h.advance(5);
    h.idle().await;
    let d = h.describe("x");
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    assert_eq!(d.output, Some(json!([[5, 10], "q"])));
}

#[tokio::test]
async fn a_map_waiting_for_tokens_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    // GIVEN a Map of two callback iterations, both waiting, in a file database
    let tokens = {
        let first = Scripted::new();
        let h = harness_on(
            EngineDb::open(&path).unwrap(),
            &callback_map(0),
            first.clone(),
            t0(),
        );
        h.start("x", json!(["a", "b"]));
        h.idle().await;
        let t: Vec<String> = first
            .calls()
            .iter()
            .filter_map(|c| c.token.clone())
            .collect();
        assert_eq!(t.len(), 2);
        h.engine.send_task_success(&t[0], json!("A")).unwrap();
        h.idle().await;
        t
        // WHEN the engine is dropped
    };
    // AND reopened on the same file
    let second = Scripted::new();
    let h = harness_on(
        EngineDb::open(&path).unwrap(),
        &callback_map(0),
        second.clone(),
        t0(),
    );
    h.engine.resume().unwrap();
    h.idle().await;
    // THEN nothing ran again, and the other token still completes the Map
    assert!(second.calls().is_empty());
    h.engine.send_task_success(&tokens[1], json!("B")).unwrap();
    h.idle().await;
    let d = h.describe("x");
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    assert_eq!(d.output, Some(json!(["A", "B"])));
}

#[tokio::test]
async fn stopping_an_execution_closes_the_tokens_of_every_iteration() {
    let h = harness(&callback_map(0));
    h.start("x", json!(["a", "b"]));
    h.idle().await;
    let tokens: Vec<String> = h
        .tasks
        .calls()
        .iter()
        .filter_map(|c| c.token.clone())
        .collect();
    h.engine.stop_execution("x", None, None).unwrap();
    for t in tokens {
        assert!(h.engine.send_task_success(&t, json!(1)).is_err());
    }
}

#[test]
fn definitions_of_map_and_parallel_are_checked_at_load() {
    use jit_engine::{StateMachine, Substitutions};
    let refuse = |def: Value| {
        StateMachine::load(&def.to_string(), &Substitutions::new())
            .err()
            .unwrap_or_else(|| panic!("should be refused: {def}"))
            .to_string()
    };
    // A state name used twice, in the machine and in a branch.
    let e = refuse(
        json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true,
        "Branches": [{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}]}}}),
    );
    assert!(e.contains("unique"), "{e}");
    // A branch state may not jump out of its branch.
    let e = refuse(
        json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Next": "After",
        "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass", "Next": "After"}}}]},
        "After": {"Type": "Succeed"}}}),
    );
    assert!(
        e.contains(r#"state "B": field "Next": no state named "After""#),
        "{e}"
    );
    // Distributed maps are not run locally.
    let e = refuse(
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "W", "States": {"W": {"Type": "Pass", "End": true}}}}}}),
    );
    assert!(e.contains("ProcessorConfig.Mode"), "{e}");
    let e = refuse(
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject"},
        "ItemProcessor": {"StartAt": "W", "States": {"W": {"Type": "Pass", "End": true}}}}}}),
    );
    assert!(e.contains(r#"field "ItemReader""#), "{e}");
}
