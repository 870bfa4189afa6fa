//! Input and output processing: InputPath, Parameters (with the context
//! object), ResultSelector, ResultPath, OutputPath — table-driven.

use crate::common;

use common::*;
use jit_engine::ExecutionStatus;
use serde_json::{Value, json};

fn one_state(mut state: Value) -> Value {
    state["End"] = json!(true);
    json!({ "StartAt": "S", "States": { "S": state } })
}

enum Want {
    Output(Value),
    Fails(&'static str),
}

async fn check(case: &str, state: Value, input: Value, want: Want) {
    // GIVEN a one-state machine
    let h = harness(&one_state(state));
    // WHEN it runs on the input
    let d = h.run("x", input).await;
    // THEN the output (or the error) is AWS's
    match want {
        Want::Output(v) => {
            assert_eq!(d.status, ExecutionStatus::Succeeded, "{case}: {d:?}");
            assert_eq!(d.output, Some(v), "{case}");
        }
        Want::Fails(error) => {
            assert_eq!(d.status, ExecutionStatus::Failed, "{case}: {d:?}");
            assert_eq!(d.error.as_deref(), Some(error), "{case}: {d:?}");
        }
    }
}

#[tokio::test]
async fn pass_state_processing_matches_aws() {
    let input = json!({ "a": { "b": 1 }, "c": [10, 20], "d": "dee", "a b": true });
    let cases: Vec<(&str, Value, Want)> = vec![
        (
            "no paths: input passes through",
            json!({"Type": "Pass"}),
            Want::Output(input.clone()),
        ),
        (
            "InputPath selects",
            json!({"Type": "Pass", "InputPath": "$.a"}),
            Want::Output(json!({"b": 1})),
        ),
        (
            "InputPath null gives {}",
            json!({"Type": "Pass", "InputPath": null}),
            Want::Output(json!({})),
        ),
        (
            "bracket notation",
            json!({"Type": "Pass", "InputPath": "$['a b']"}),
            Want::Output(json!(true)),
        ),
        (
            "array index",
            json!({"Type": "Pass", "InputPath": "$.c[1]"}),
            Want::Output(json!(20)),
        ),
        (
            "Parameters: literals, paths, nesting, arrays",
            json!({"Type": "Pass", "Parameters": {
                "lit": 1,
                "x.$": "$.a.b",
                "nested": { "y.$": "$.c[0]", "keep": "k" },
                "list": [ { "z.$": "$.d" }, 5 ]
            }}),
            Want::Output(
                json!({"lit": 1, "x": 1, "nested": {"y": 10, "keep": "k"}, "list": [{"z": "dee"}, 5]}),
            ),
        ),
        (
            "Parameters apply after InputPath",
            json!({"Type": "Pass", "InputPath": "$.a", "Parameters": {"v.$": "$.b"}}),
            Want::Output(json!({"v": 1})),
        ),
        (
            "Result with ResultPath into the input",
            json!({"Type": "Pass", "Result": {"r": 2}, "ResultPath": "$.res"}),
            Want::Output(
                json!({ "a": { "b": 1 }, "c": [10, 20], "d": "dee", "a b": true, "res": {"r": 2} }),
            ),
        ),
        (
            "ResultPath null discards the result",
            json!({"Type": "Pass", "Result": {"r": 2}, "ResultPath": null}),
            Want::Output(input.clone()),
        ),
        (
            "ResultPath creates nested objects",
            json!({"Type": "Pass", "Result": 7, "ResultPath": "$.new.deep.value"}),
            Want::Output(
                json!({ "a": { "b": 1 }, "c": [10, 20], "d": "dee", "a b": true, "new": {"deep": {"value": 7}} }),
            ),
        ),
        (
            "ResultPath writes into an existing object",
            json!({"Type": "Pass", "Result": 7, "ResultPath": "$.a.z"}),
            Want::Output(
                json!({ "a": { "b": 1, "z": 7 }, "c": [10, 20], "d": "dee", "a b": true }),
            ),
        ),
        (
            "ResultPath applies to the raw input, not InputPath's",
            json!({"Type": "Pass", "InputPath": "$.a", "ResultPath": "$.copy"}),
            Want::Output(
                json!({ "a": { "b": 1 }, "c": [10, 20], "d": "dee", "a b": true, "copy": {"b": 1} }),
            ),
        ),
        (
            "OutputPath selects last",
            json!({"Type": "Pass", "Result": {"r": 2}, "ResultPath": "$.res", "OutputPath": "$.res.r"}),
            Want::Output(json!(2)),
        ),
        (
            "OutputPath null gives {}",
            json!({"Type": "Pass", "OutputPath": null}),
            Want::Output(json!({})),
        ),
        (
            "InputPath to nothing is States.Runtime",
            json!({"Type": "Pass", "InputPath": "$.missing"}),
            Want::Fails("States.Runtime"),
        ),
        (
            "OutputPath to nothing is States.Runtime",
            json!({"Type": "Pass", "OutputPath": "$.missing"}),
            Want::Fails("States.Runtime"),
        ),
        (
            "a Pass state's Parameters path to nothing is States.Runtime (as on AWS)",
            json!({"Type": "Pass", "Parameters": {"x.$": "$.missing"}}),
            Want::Fails("States.Runtime"),
        ),
        (
            "ResultPath through a string is States.ResultPathMatchFailure",
            json!({"Type": "Pass", "Result": 1, "ResultPath": "$.d.x"}),
            Want::Fails("States.ResultPathMatchFailure"),
        ),
    ];
    for (case, state, want) in cases {
        check(case, state, input.clone(), want).await;
    }
}

#[tokio::test]
async fn parameters_read_the_context_object() {
    // GIVEN a Pass state whose Parameters read $$
    let h = harness(&one_state(json!({"Type": "Pass", "Parameters": {
        "id.$": "$$.Execution.Id",
        "name.$": "$$.Execution.Name",
        "input.$": "$$.Execution.Input",
        "started.$": "$$.Execution.StartTime",
        "state.$": "$$.State.Name",
        "entered.$": "$$.State.EnteredTime",
        "retries.$": "$$.State.RetryCount",
        "machine.$": "$$.StateMachine.Id"
    }})));
    // WHEN it runs 30 s after the execution started (clock moved before the step)
    h.start("req-1", json!({"k": "v"}));
    h.advance(30);
    h.idle().await;
    // THEN every field is filled like AWS fills it
    let out = h.describe("req-1").output.unwrap();
    assert_eq!(
        out,
        json!({
            "id": "arn:aws:states:local:000000000000:execution:approval:req-1",
            "name": "req-1",
            "input": {"k": "v"},
            "started": "2026-01-01T00:00:00.000Z",
            "state": "S",
            "entered": "2026-01-01T00:00:30.000Z",
            "retries": 0,
            "machine": "arn:aws:states:local:000000000000:stateMachine:approval"
        })
    );
}

#[tokio::test]
async fn lambda_invoke_result_is_wrapped_and_selectable() {
    // GIVEN a lambda:invoke task with Payload from the input and no selector
    let h = harness(&one_state(json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "update-status", "Payload": {"id.$": "$.id", "to": "GRANTED"}},
        "ResultPath": "$.res"
    })));
    h.tasks.ok("update-status", json!({"ok": true}));
    // WHEN it runs
    let d = h.run("x", json!({"id": "r1"})).await;
    // THEN the function got the Payload, and the result is AWS's wrapper
    let calls = h.tasks.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].function, "update-status");
    assert_eq!(calls[0].payload, json!({"id": "r1", "to": "GRANTED"}));
    let res = &d.output.unwrap()["res"];
    assert_eq!(res["Payload"], json!({"ok": true}));
    assert_eq!(res["StatusCode"], json!(200));
    assert_eq!(res["ExecutedVersion"], json!("$LATEST"));
    assert_eq!(res["SdkHttpMetadata"]["HttpStatusCode"], json!(200));
}

#[tokio::test]
async fn task_result_selector_result_path_output_path_compose() {
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "ResultSelector picks from the wrapper",
            json!({"ResultSelector": {"p.$": "$.Payload.v", "code.$": "$.StatusCode", "lit": "x"}}),
            json!({"p": 42, "code": 200, "lit": "x"}),
        ),
        (
            "ResultSelector then ResultPath",
            json!({"ResultSelector": {"p.$": "$.Payload.v"}, "ResultPath": "$.out"}),
            json!({"id": "r1", "out": {"p": 42}}),
        ),
        (
            "ResultSelector, ResultPath, OutputPath",
            json!({"ResultSelector": {"p.$": "$.Payload.v"}, "ResultPath": "$.out", "OutputPath": "$.out.p"}),
            json!(42),
        ),
        (
            "ResultPath null keeps the input",
            json!({"ResultPath": null}),
            json!({"id": "r1"}),
        ),
        (
            "ResultSelector reads the context too",
            json!({"ResultSelector": {"state.$": "$$.State.Name"}}),
            json!({"state": "S"}),
        ),
    ];
    for (case, extra, want) in cases {
        let mut state = json!({
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "f", "Payload.$": "$"}
        });
        for (k, v) in extra.as_object().unwrap() {
            state[k] = v.clone();
        }
        // GIVEN the task's function returns {"v": 42}
        let h = harness(&one_state(state));
        h.tasks.ok("f", json!({"v": 42}));
        // WHEN it runs
        let d = h.run("x", json!({"id": "r1"})).await;
        // THEN
        assert_eq!(d.status, ExecutionStatus::Succeeded, "{case}: {d:?}");
        assert_eq!(d.output, Some(want), "{case}");
    }
}

#[tokio::test]
async fn a_function_arn_as_resource_returns_the_raw_output() {
    // GIVEN a Task whose Resource is a Lambda ARN, with Parameters
    let h = harness(&one_state(json!({
        "Type": "Task",
        "Resource": FN_ARN,
        "Parameters": {"who.$": "$.user"},
        "ResultPath": "$.grant"
    })));
    h.tasks.ok(FN_ARN, json!({"granted": true}));
    // WHEN it runs
    let d = h.run("x", json!({"user": "ana"})).await;
    // THEN the function got the parameters and its output is the result, unwrapped
    assert_eq!(h.tasks.calls()[0].payload, json!({"who": "ana"}));
    assert_eq!(
        d.output,
        Some(json!({"user": "ana", "grant": {"granted": true}}))
    );
    // AND without Parameters the function gets the effective input
    let h = harness(&one_state(
        json!({"Type": "Task", "Resource": FN_ARN, "InputPath": "$.inner"}),
    ));
    let d = h.run("y", json!({"inner": {"a": 1}})).await;
    assert_eq!(h.tasks.calls()[0].payload, json!({"a": 1}));
    assert_eq!(d.output, Some(json!({"a": 1})));
}

#[tokio::test]
async fn a_missing_payload_path_in_a_task_is_catchable() {
    // GIVEN a task whose Parameters reference a missing field, with a catcher
    let def = json!({
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "f", "Payload": {"x.$": "$.nope"}},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handled", "ResultPath": "$.err"}],
                "End": true
            },
            "Handled": {"Type": "Pass", "End": true}
        }
    });
    let h = harness(&def);
    // WHEN it runs
    let d = h.run("x", json!({"a": 1})).await;
    // THEN the error is States.ParameterPathFailure, caught, and the function was never called
    assert_eq!(d.status, ExecutionStatus::Succeeded);
    let out = d.output.unwrap();
    assert_eq!(out["err"]["Error"], json!("States.ParameterPathFailure"));
    assert!(out["err"]["Cause"].as_str().unwrap().contains("$.nope"));
    assert!(h.tasks.calls().is_empty());
}
