//! `jit-local asl run` as a user runs it.

use std::process::Command;

use serde_json::Value;

fn jit_local(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jit-local"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn definition() -> String {
    format!(
        "{}/../../state-machine/approval.asl.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn runs_the_approval_definition_with_canned_answers() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks.json");
    std::fs::write(
        &tasks,
        r#"{"RequestApproval": [{"error": "Denied", "cause": "not today"}]}"#,
    )
    .unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(
        &input,
        r#"{"requestId": "R1", "autoApprove": false, "approvalTimeoutSeconds": 60}"#,
    )
    .unwrap();
    let (code, stdout, stderr) = jit_local(&[
        "asl",
        "run",
        &definition(),
        "--input",
        &format!("@{}", input.display()),
        "--tasks",
        tasks.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "SUCCEEDED");
    let states: Vec<&str> = report["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "Validate",
            "NeedsPolicy",
            "Route",
            "RequestApproval",
            "Denied"
        ]
    );
    let types: Vec<&str> = report["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"ExecutionStarted"));
    assert_eq!(types.last(), Some(&"ExecutionSucceeded"));
    assert!(types.contains(&"TaskSubmitted") || types.contains(&"TaskScheduled"));
}

#[test]
fn a_failing_task_without_a_catch_fails_the_run_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let def = dir.path().join("d.json");
    std::fs::write(&def, r#"{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "End": true}}}"#).unwrap();
    let tasks = dir.path().join("t.json");
    std::fs::write(&tasks, r#"{"T": [{"error": "Boom", "cause": "it broke"}]}"#).unwrap();
    let (code, stdout, _) = jit_local(&[
        "asl",
        "run",
        def.to_str().unwrap(),
        "--tasks",
        tasks.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "FAILED");
    assert_eq!(report["error"], "Boom");
    assert_eq!(report["cause"], "it broke");
}

#[test]
fn unsupported_features_are_refused_naming_the_state_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let def = dir.path().join("map.json");
    std::fs::write(&def, r#"{"StartAt": "M", "States": {"M": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "End": true}}}"#).unwrap();
    let (code, _, stderr) = jit_local(&["asl", "run", def.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("\"M\"") && stderr.contains("Resource"),
        "{stderr}"
    );
    let (code, _, stderr) = jit_local(&["asl", "run", &definition(), "--input", "{bad"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--input is not JSON"), "{stderr}");
    let (code, _, stderr) = jit_local(&["asl", "run", &definition(), "--sub", "novalue"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("NAME=VALUE"), "{stderr}");
}

#[test]
fn a_canned_answer_may_be_aws_whole_lambda_invoke_response() {
    let dir = tempfile::tempdir().unwrap();
    let def = dir.path().join("d.json");
    std::fs::write(&def, r#"{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f"}, "OutputPath": "$.SdkResponseMetadata", "End": true}}}"#).unwrap();
    let tasks = dir.path().join("t.json");
    std::fs::write(
        &tasks,
        r#"{"T": [{"output": {"ExecutedVersion": "$LATEST", "Payload": {"ok": true}, "SdkHttpMetadata": {"HttpStatusCode": 200}, "SdkResponseMetadata": {"RequestId": "recorded"}, "StatusCode": 200}}]}"#,
    )
    .unwrap();
    let (code, stdout, stderr) = jit_local(&[
        "asl",
        "run",
        def.to_str().unwrap(),
        "--tasks",
        tasks.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "SUCCEEDED");
    assert_eq!(
        report["output"],
        serde_json::json!({"RequestId": "recorded"})
    );
}

#[cfg(unix)]
#[test]
fn piped_into_a_closed_reader_it_ends_quietly() {
    // `jit-local asl run … | head -c 10`: the reader goes away early.
    let definition = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../state-machine/approval.asl.json");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' asl run '{}' --input '{{\"requestId\":\"R1\",\"autoApprove\":false,\"approvalTimeoutSeconds\":60}}' | head -c 10 >/dev/null",
            env!("CARGO_BIN_EXE_jit-local"),
            definition.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
