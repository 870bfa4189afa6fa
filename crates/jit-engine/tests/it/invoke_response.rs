//! The `lambda:invoke` result envelope as AWS returns it (ExecutedVersion,
//! the status code, the SDK's HTTP metadata with Lambda's header set, a
//! `LogResult` with `LogType: Tail`), and canned answers given either as a
//! function's return value or as AWS's whole Invoke response.

use crate::common;

use base64::Engine as _;
use common::*;
use jit_engine::{CannedAnswer, CannedTasks, ExecutionStatus, run_with_canned_tasks};
use serde_json::{Value, json};

fn invoke(extra_params: Value) -> Value {
    let mut params = json!({"FunctionName": "f", "Payload": {"a": 1}});
    for (k, v) in extra_params.as_object().unwrap() {
        params[k] = v.clone();
    }
    json!({"StartAt": "T", "States": {"T": {"Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke", "Parameters": params, "End": true}}})
}

#[tokio::test]
async fn the_envelope_carries_aws_fields_and_headers() {
    // GIVEN a lambda:invoke task whose function returns {"ok": true}
    let h = harness(&invoke(json!({})));
    h.tasks.ok("f", json!({"ok": true}));
    let d = h.run("x", json!({})).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded);
    let out = d.output.unwrap();
    // THEN the result is AWS's Invoke response around the return value
    assert_eq!(out["ExecutedVersion"], json!("$LATEST"));
    assert_eq!(out["Payload"], json!({"ok": true}));
    assert_eq!(out["StatusCode"], json!(200));
    assert_eq!(out["SdkHttpMetadata"]["HttpStatusCode"], json!(200));
    let headers = out["SdkHttpMetadata"]["HttpHeaders"].as_object().unwrap();
    let mut names: Vec<&str> = headers.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        vec![
            "Connection",
            "Content-Length",
            "Content-Type",
            "Date",
            "X-Amz-Executed-Version",
            "X-Amzn-Trace-Id",
            "x-amzn-Remapped-Content-Length",
            "x-amzn-RequestId"
        ]
    );
    assert_eq!(
        headers["Content-Length"],
        json!("11"),
        "length of {{\"ok\":true}}"
    );
    assert_eq!(headers["Date"], json!("Thu, 01 Jan 2026 00:00:00 GMT"));
    let all = out["SdkHttpMetadata"]["AllHttpHeaders"]
        .as_object()
        .unwrap();
    assert_eq!(
        all["x-amzn-RequestId"],
        json!([headers["x-amzn-RequestId"]])
    );
    assert_eq!(
        out["SdkResponseMetadata"]["RequestId"],
        headers["x-amzn-RequestId"]
    );
    assert!(out.get("LogResult").is_none());
    // AND the history's TaskSucceeded shows that same response
    let hist = h.engine.history("x").unwrap();
    let ev = hist
        .iter()
        .find(|e| e.event_type == "TaskSucceeded")
        .unwrap();
    let shown: Value = serde_json::from_str(
        ev.details["taskSucceededEventDetails"]["output"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(shown, out);
}

#[tokio::test]
async fn log_type_tail_adds_a_log_result() {
    let h = harness(&invoke(json!({"LogType": "Tail"})));
    let d = h.run("x", json!({})).await;
    let out = d.output.unwrap();
    let log = out["LogResult"].as_str().expect("a LogResult");
    let text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(log)
            .unwrap(),
    )
    .unwrap();
    let id = out["SdkResponseMetadata"]["RequestId"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("START RequestId: {id}")),
        "{text}"
    );
    assert!(text.contains(&format!("REPORT RequestId: {id}")), "{text}");
    assert_eq!(
        out["SdkHttpMetadata"]["HttpHeaders"]["X-Amz-Log-Result"],
        json!(log)
    );
    let hist = h.engine.history("x").unwrap();
    let ev = hist
        .iter()
        .find(|e| e.event_type == "TaskSucceeded")
        .unwrap();
    let shown: Value = serde_json::from_str(
        ev.details["taskSucceededEventDetails"]["output"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(shown, out);
}

fn aws_response(payload: Value) -> Value {
    json!({
        "ExecutedVersion": "$LATEST",
        "Payload": payload,
        "SdkHttpMetadata": {
            "AllHttpHeaders": {"x-amzn-RequestId": ["recorded-id"]},
            "HttpHeaders": {"x-amzn-RequestId": "recorded-id"},
            "HttpStatusCode": 200
        },
        "SdkResponseMetadata": {"RequestId": "recorded-id"},
        "StatusCode": 200
    })
}

#[tokio::test]
async fn a_canned_answer_may_be_the_whole_invoke_response() {
    // GIVEN a canned answer that is a recorded Invoke response
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
              "Parameters": {"FunctionName": "f"}, "ResultSelector": {"v.$": "$.Payload.v", "id.$": "$.SdkResponseMetadata.RequestId"},
              "Next": "Fn"},
        "Fn": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:g",
               "ResultPath": "$.fn", "End": true}
    }})
    .to_string();
    let canned = CannedTasks::new()
        .answer(
            "T",
            CannedAnswer::Output {
                output: aws_response(json!({"v": 7})),
            },
        )
        .answer(
            "Fn",
            CannedAnswer::Output {
                output: aws_response(json!("raw")),
            },
        );
    // WHEN it runs
    let r = run_with_canned_tasks(&def, json!({}), canned)
        .await
        .unwrap();
    // THEN lambda:invoke returns it as is, and a function ARN task its Payload
    assert_eq!(r.status, ExecutionStatus::Succeeded, "{r:?}");
    assert_eq!(
        r.output,
        Some(json!({"v": 7, "id": "recorded-id", "fn": "raw"}))
    );

    // AND a return value is still wrapped
    let canned = CannedTasks::new()
        .answer(
            "T",
            CannedAnswer::Output {
                output: json!({"v": 8}),
            },
        )
        .answer(
            "Fn",
            CannedAnswer::Output {
                output: json!("plain"),
            },
        );
    let r = run_with_canned_tasks(&def, json!({}), canned)
        .await
        .unwrap();
    assert_eq!(r.output.as_ref().unwrap()["v"], json!(8));
    assert_ne!(r.output.as_ref().unwrap()["id"], json!("recorded-id"));
}

#[tokio::test]
async fn a_function_error_in_a_whole_response_fails_the_task_as_on_aws() {
    let def = invoke(json!({})).to_string();
    let mut resp = aws_response(json!({"errorType": "ValueError", "errorMessage": "bad"}));
    resp["FunctionError"] = json!("Unhandled");
    let canned = CannedTasks::new().answer("T", CannedAnswer::Output { output: resp });
    let r = run_with_canned_tasks(&def, json!({}), canned)
        .await
        .unwrap();
    assert_eq!(r.status, ExecutionStatus::Failed);
    assert_eq!(r.error.as_deref(), Some("ValueError"));
    let cause: Value = serde_json::from_str(r.cause.as_deref().unwrap()).unwrap();
    assert_eq!(cause["errorMessage"], json!("bad"));
}
