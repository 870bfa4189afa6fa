//! Intrinsic functions as Step Functions documents them, each run in a
//! Pass state's Parameters (and ErrorPath/CausePath, ResultSelector), with
//! `States.Runtime` for bad arguments.

use crate::common;

use common::*;
use jit_engine::ExecutionStatus;
use serde_json::{Value, json};

fn pass(expr: &str) -> Value {
    json!({"StartAt": "S", "States": {"S": {"Type": "Pass", "Parameters": {"v.$": expr}, "End": true}}})
}

async fn value(expr: &str, input: Value) -> Value {
    let h = harness(&pass(expr));
    let d = h.run("x", input).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{expr}: {d:?}");
    d.output.unwrap()["v"].clone()
}

async fn runtime_error(expr: &str, input: Value) -> String {
    let h = harness(&pass(expr));
    let d = h.run("x", input).await;
    assert_eq!(d.status, ExecutionStatus::Failed, "{expr}: {d:?}");
    assert_eq!(d.error.as_deref(), Some("States.Runtime"), "{expr}");
    let cause = d.cause.unwrap();
    let prefix = "An error occurred while executing the state 'S' (entered at the event id #2). ";
    assert!(cause.starts_with(prefix), "{cause}");
    cause[prefix.len()..].to_string()
}

#[tokio::test]
async fn every_function_computes_what_aws_documents() {
    let input = json!({
        "name": "Ada", "n": 3, "list": [1, 2, 2, 3, 4], "csv": "a,b;;c",
        "json": "{\"k\":[1,2]}", "obj": {"a": 1, "b": {"x": 1}}, "other": {"b": 2, "c": 3},
        "people": [{"name": "x", "age": 3}, {"name": "y", "age": 30}]
    });
    let cases: Vec<(&str, Value)> = vec![
        (
            "States.Format('Hello, {}! You are {} ({}).', $.name, $.n, true)",
            json!("Hello, Ada! You are 3 (true)."),
        ),
        (
            "States.Format('literal \\{\\} and {}', 'x')",
            json!("literal {} and x"),
        ),
        ("States.StringToJson($.json)", json!({"k": [1, 2]})),
        (
            "States.JsonToString($.obj)",
            json!("{\"a\":1,\"b\":{\"x\":1}}"),
        ),
        ("States.Array('a', 1, $.n, null)", json!(["a", 1, 3, null])),
        (
            "States.ArrayPartition($.list, 2)",
            json!([[1, 2], [2, 3], [4]]),
        ),
        ("States.ArrayContains($.list, 4)", json!(true)),
        ("States.ArrayContains($.list, 9)", json!(false)),
        ("States.ArrayRange(1, 9, 2)", json!([1, 3, 5, 7, 9])),
        ("States.ArrayRange(5, 1, -2)", json!([5, 3, 1])),
        ("States.ArrayGetItem($.list, 4)", json!(4)),
        ("States.ArrayLength($.list)", json!(5)),
        ("States.ArrayUnique($.list)", json!([1, 2, 3, 4])),
        (
            "States.Base64Encode('Data to encode')",
            json!("RGF0YSB0byBlbmNvZGU="),
        ),
        (
            "States.Base64Decode('RGF0YSB0byBlbmNvZGU=')",
            json!("Data to encode"),
        ),
        (
            "States.Hash('input data', 'SHA-1')",
            json!("aaff4a450a104cd177d28d18d74485e8cae074b7"),
        ),
        (
            "States.Hash('abc', 'MD5')",
            json!("900150983cd24fb0d6963f7d28e17f72"),
        ),
        (
            "States.Hash('abc', 'SHA-256')",
            json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ),
        (
            "States.JsonMerge($.obj, $.other, false)",
            json!({"a": 1, "b": 2, "c": 3}),
        ),
        ("States.MathAdd($.n, -4)", json!(-1)),
        // AWS rounds fractions half up, as Java's Math.round.
        ("States.MathAdd(1.49, 1.5)", json!(3)),
        ("States.MathAdd(-1.5, -1.51)", json!(-3)),
        ("States.StringSplit($.csv, ',;')", json!(["a", "b", "c"])),
        (
            "States.ArrayLength(States.StringSplit('1,2,3', ','))",
            json!(3),
        ),
        (
            "States.Format('{}', States.ArrayGetItem($.people[?(@.age > 10)].name, 0))",
            json!("y"),
        ),
    ];
    for (expr, want) in cases {
        assert_eq!(value(expr, input.clone()).await, want, "{expr}");
    }
    // Random and generated values: in range, well formed.
    let r = value("States.MathRandom(1, 10)", json!({}))
        .await
        .as_i64()
        .unwrap();
    assert!((1..10).contains(&r), "{r}");
    let seeded = value("States.MathRandom(1, 1000, 7)", json!({})).await;
    assert_eq!(
        value("States.MathRandom(1, 1000, 7)", json!({})).await,
        seeded
    );
    let uuid = value("States.UUID()", json!({})).await;
    let u = uuid.as_str().unwrap();
    assert_eq!(u.len(), 36);
    assert_eq!(&u[14..15], "4", "{u}");
}

#[tokio::test]
async fn bad_arguments_are_states_runtime() {
    let input = json!({"list": [1, 2], "s": "x", "n": 1.5, "big": "y".repeat(10_001)});
    let cases = [
        (
            "States.Format('{} {}', 'one')",
            "Invalid arguments in States.Format",
        ),
        (
            "States.Format('{}', 'one', 'two')",
            "Invalid arguments in States.Format",
        ),
        (
            "States.StringToJson('not json')",
            "Invalid arguments in States.StringToJson",
        ),
        ("States.ArrayGetItem($.list, 5)", "index 5 is out of bounds"),
        ("States.ArrayLength($.s)", "must be an array"),
        ("States.ArrayPartition($.list, 0)", "chunk size"),
        ("States.ArrayRange(1, 2000, 1)", "more than 1000 items"),
        ("States.MathAdd($.s, 1)", "must be a number"),
        ("States.Hash('x', 'SHA-3')", "unknown algorithm SHA-3"),
        ("States.Base64Encode($.big)", "longer than 10000 characters"),
        ("States.JsonMerge($.list, $.list, false)", "must be objects"),
        (
            "States.ArrayLength($.missing)",
            "The JSONPath '$.missing' specified for the function States.ArrayLength could not be found",
        ),
    ];
    for (expr, want) in cases {
        let cause = runtime_error(expr, input.clone()).await;
        assert!(cause.contains(want), "{expr}: {cause}");
    }
}

#[tokio::test]
async fn fail_error_and_cause_paths_take_string_functions() {
    let def = json!({"StartAt": "F", "States": {"F": {"Type": "Fail",
        "ErrorPath": "States.Format('{}.Error', $.kind)",
        "CausePath": "States.JsonToString($.detail)"}}});
    let h = harness(&def);
    let d = h
        .run("x", json!({"kind": "Custom", "detail": {"a": 1}}))
        .await;
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("Custom.Error"));
    assert_eq!(d.cause.as_deref(), Some("{\"a\":1}"));
}

#[tokio::test]
async fn task_payloads_and_result_selectors_take_intrinsics() {
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "f",
            "Payload": {"msg.$": "States.Format('token {}', $$.Task.Token)"}},
        "ResultSelector": {"n.$": "States.ArrayLength($.items)"},
        "End": true}}});
    let h = harness(&def);
    h.start("x", json!({}));
    h.idle().await;
    let token = h.tasks.last_token();
    assert_eq!(
        h.tasks.calls()[0].payload,
        json!({"msg": format!("token {token}")})
    );
    h.engine
        .send_task_success(&token, json!({"items": [1, 2, 3]}))
        .unwrap();
    h.idle().await;
    assert_eq!(h.describe("x").output, Some(json!({"n": 3})));
}
