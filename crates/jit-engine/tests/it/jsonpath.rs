//! The JSONPath Step Functions accepts in paths (InputPath, OutputPath,
//! `….$` fields of Parameters and ResultSelector): filters, wildcards,
//! slices, unions, recursive descent, `length()`, and the context object
//! in InputPath/OutputPath — run through whole executions.

use crate::common;

use common::*;
use jit_engine::ExecutionStatus;
use serde_json::{Value, json};

fn one_state(mut state: Value) -> Value {
    state["End"] = json!(true);
    json!({ "StartAt": "S", "States": { "S": state } })
}

async fn output(state: Value, input: Value) -> Value {
    let h = harness(&one_state(state.clone()));
    let d = h.run("x", input).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{state}: {d:?}");
    d.output.unwrap()
}

fn orders() -> Value {
    json!({"orders": [
        {"id": "a", "qty": 0, "price": 5},
        {"id": "b", "qty": 2, "price": 7},
        {"id": "c", "qty": 5}
    ], "meta": {"x": 1, "y": 2}})
}

#[tokio::test]
async fn parameters_take_filters_wildcards_slices_unions_and_length() {
    let cases = [
        ("$.orders[?(@.qty == 0)].id", json!(["a"])),
        ("$.orders[?(@.qty > 1 && @.price)].id", json!(["b"])),
        ("$.orders[*].id", json!(["a", "b", "c"])),
        ("$.orders[*].price", json!([5, 7])),
        ("$.orders[1:].id", json!(["b", "c"])),
        ("$.orders[0,2].id", json!(["a", "c"])),
        ("$.orders[-1:].id", json!(["c"])),
        ("$.meta['x','y']", json!([1, 2])),
        ("$..price", json!([5, 7])),
        ("$.orders.length()", json!(3)),
        ("$.orders[?(@.qty == 9)]", json!([])),
        ("$.orders[2].id", json!("c")),
    ];
    for (path, want) in cases {
        // GIVEN a Pass state whose Parameters select with `path`
        let state = json!({"Type": "Pass", "Parameters": {"v.$": path}});
        // THEN the output is what Step Functions selects
        assert_eq!(output(state, orders()).await, json!({"v": want}), "{path}");
    }
}

#[tokio::test]
async fn input_and_output_paths_take_full_jsonpath() {
    let out = output(
        json!({"Type": "Pass", "InputPath": "$.orders[?(@.qty >= 2)]"}),
        orders(),
    )
    .await;
    assert_eq!(
        out,
        json!([{"id": "b", "qty": 2, "price": 7}, {"id": "c", "qty": 5}])
    );
    let out = output(
        json!({"Type": "Pass", "OutputPath": "$.orders[*].id"}),
        orders(),
    )
    .await;
    assert_eq!(out, json!(["a", "b", "c"]));
}

#[tokio::test]
async fn input_and_output_paths_read_the_context_object() {
    // GIVEN InputPath $$.Execution.Input on a second state
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Result": {"changed": true}, "Next": "B"},
        "B": {"Type": "Pass", "InputPath": "$$.Execution.Input", "Next": "C"},
        "C": {"Type": "Pass", "OutputPath": "$$.State.Name", "End": true}
    }});
    let h = harness(&def);
    let d = h.run("x", json!({"original": 1})).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    // THEN B sees the execution's input, and C outputs its own name
    let hist = h.engine.history("x").unwrap();
    let b_exit = hist
        .iter()
        .find(|e| e.event_type == "PassStateExited" && e.state_name() == Some("B"))
        .unwrap();
    assert_eq!(
        b_exit.details["stateExitedEventDetails"]["output"],
        json!("{\"original\":1}")
    );
    assert_eq!(d.output, Some(json!("C")));
}

#[tokio::test]
async fn result_selector_takes_full_jsonpath() {
    let def = one_state(json!({"Type": "Task", "Resource": FN_ARN,
        "ResultSelector": {"ids.$": "$.items[*].id", "n.$": "$.items.length()"}}));
    let h = harness(&def);
    h.tasks.ok(FN_ARN, json!({"items": [{"id": 1}, {"id": 2}]}));
    let d = h.run("x", json!({})).await;
    assert_eq!(d.output, Some(json!({"ids": [1, 2], "n": 2})));
}
