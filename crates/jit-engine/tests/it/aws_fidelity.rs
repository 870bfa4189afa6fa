//! Divergences from AWS Step Functions found against executions recorded on
//! AWS, each pinned here to AWS's documented behaviour: error names, cause
//! texts (AWS prefixes a `States.Runtime` cause with the state and the id
//! of its `…StateEntered` event), and the 256 KiB payload limit.

use crate::common;

use common::*;
use jit_engine::ExecutionStatus;
use serde_json::{Value, json};

fn one_state(mut state: Value) -> Value {
    if state.get("Next").is_none()
        && !matches!(state["Type"].as_str(), Some("Fail" | "Succeed" | "Choice"))
    {
        state["End"] = json!(true);
    }
    json!({ "StartAt": "S", "States": { "S": state } })
}

/// Runs `def` on `input` and returns (status, error, cause).
async fn outcome(def: &Value, input: Value) -> (ExecutionStatus, Option<String>, Option<String>) {
    let h = harness(def);
    let d = h.run("x", input).await;
    (d.status, d.error, d.cause)
}

/// `S` is entered at event 2 (after ExecutionStarted).
const PREFIX: &str =
    "An error occurred while executing the state 'S' (entered at the event id #2). ";

fn big_string() -> String {
    "x".repeat(262_144)
}

#[tokio::test]
async fn a_catch_on_data_limit_exceeded_catches_a_tasks_oversized_result() {
    for pattern in ["States.DataLimitExceeded", "States.ALL"] {
        // GIVEN a task whose function returns more than 256 KiB, with a catcher
        let def = json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                  "Parameters": {"FunctionName": "big"},
                  "Catch": [{"ErrorEquals": [pattern], "Next": "Caught", "ResultPath": "$.err"}],
                  "End": true},
            "Caught": {"Type": "Pass", "End": true}
        }});
        let h = harness(&def);
        h.tasks.ok("big", json!({"blob": big_string()}));
        // WHEN it runs
        let d = h.run("x", json!({})).await;
        // THEN the catcher handles States.DataLimitExceeded, as on AWS
        assert_eq!(d.status, ExecutionStatus::Succeeded, "{pattern}: {d:?}");
        let out = d.output.unwrap();
        assert_eq!(
            out["err"]["Error"],
            json!("States.DataLimitExceeded"),
            "{pattern}"
        );
        assert_eq!(
            out["err"]["Cause"],
            json!(
                "The state/task 'lambda' returned a result with a size exceeding the maximum number of bytes service limit."
            )
        );
        assert!(h.event_types("x").contains(&"TaskFailed".to_string()));
    }
}

#[tokio::test]
async fn an_uncaught_oversized_task_result_fails_the_execution() {
    // GIVEN a function ARN task returning more than 256 KiB and no catcher
    let h = harness(&one_state(json!({"Type": "Task", "Resource": FN_ARN})));
    h.tasks.ok(FN_ARN, json!(big_string()));
    // WHEN it runs
    let d = h.run("x", json!({})).await;
    // THEN the execution fails with States.DataLimitExceeded
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("States.DataLimitExceeded"));
    assert!(
        h.event_types("x")
            .contains(&"LambdaFunctionFailed".to_string())
    );
}

#[tokio::test]
async fn a_state_output_over_256_kib_fails_the_execution_uncatchably() {
    // GIVEN a Pass state whose output is over 256 KiB (its input is small
    // enough: the Result is added beside it)
    let half = "y".repeat(140_000);
    let def = one_state(json!({"Type": "Pass", "Result": half, "ResultPath": "$.b"}));
    // WHEN it runs on an input of 140,000 characters
    let (status, error, cause) = outcome(&def, json!({"a": half})).await;
    // THEN the execution fails with States.DataLimitExceeded naming the state
    assert_eq!(status, ExecutionStatus::Failed);
    assert_eq!(error.as_deref(), Some("States.DataLimitExceeded"));
    assert_eq!(
        cause.as_deref(),
        Some(
            "The state/task 'S' returned a result with a size exceeding the maximum number of bytes service limit."
        )
    );

    // AND a Task whose Catch would take States.ALL does not catch its own
    // oversized *output* (the ResultPath merge makes it too big)
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": FN_ARN, "ResultPath": "$.r",
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "C"}], "End": true},
        "C": {"Type": "Pass", "End": true}
    }});
    let h = harness(&def);
    h.tasks.ok(FN_ARN, json!(half));
    let d = h.run("x", json!({"a": half})).await;
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("States.DataLimitExceeded"));
    assert!(!h.states("x").contains(&"C".to_string()));
}

#[tokio::test]
async fn a_pass_parameters_path_to_nothing_is_states_runtime_with_aws_cause() {
    let def = one_state(json!({"Type": "Pass", "Parameters": {"x.$": "$.missing"}}));
    let (status, error, cause) = outcome(&def, json!({"a": 1})).await;
    assert_eq!(status, ExecutionStatus::Failed);
    assert_eq!(error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        cause.unwrap(),
        format!(
            "{PREFIX}The JSONPath '$.missing' specified for the field 'x.$' could not be found in the input '{{\"a\":1}}'"
        )
    );
}

#[tokio::test]
async fn input_and_output_path_misses_read_as_on_aws() {
    let cases = [
        (
            json!({"Type": "Pass", "InputPath": "$.a.b"}),
            "Invalid path '$.a.b' : No results for path: $['a']['b']",
        ),
        (
            json!({"Type": "Pass", "OutputPath": "$.Payload"}),
            "Invalid path '$.Payload' : No results for path: $['Payload']",
        ),
        (
            json!({"Type": "Succeed", "InputPath": "$.x[1]"}),
            "Invalid path '$.x[1]' : No results for path: $['x'][1]",
        ),
    ];
    for (state, want) in cases {
        let (status, error, cause) =
            outcome(&one_state(state.clone()), json!({"a": {}, "x": [0]})).await;
        assert_eq!(status, ExecutionStatus::Failed, "{state}");
        assert_eq!(error.as_deref(), Some("States.Runtime"), "{state}");
        assert_eq!(cause.unwrap(), format!("{PREFIX}{want}"), "{state}");
    }
}

#[tokio::test]
async fn wait_path_errors_name_the_path_and_the_value() {
    let cases = [
        (
            json!({"Type": "Wait", "SecondsPath": "$.s"}),
            json!({"s": -5}),
            "The SecondsPath parameter references a negative value: $.s == -5",
        ),
        (
            json!({"Type": "Wait", "SecondsPath": "$.s"}),
            json!({"s": 1.5}),
            "The SecondsPath parameter cannot be parsed as a long value: $.s == 1.5",
        ),
        (
            json!({"Type": "Wait", "SecondsPath": "$.s"}),
            json!({"s": "ten"}),
            "The SecondsPath parameter cannot be parsed as a long value: $.s == ten",
        ),
        (
            json!({"Type": "Wait", "SecondsPath": "$.s"}),
            json!({}),
            "The SecondsPath parameter does not reference an input value: $.s",
        ),
        (
            json!({"Type": "Wait", "TimestampPath": "$.t"}),
            json!({"t": "2016-12-05 21:29:29Z"}),
            "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: $.t == 2016-12-05 21:29:29Z",
        ),
        (
            json!({"Type": "Wait", "TimestampPath": "$.t"}),
            json!({}),
            "The TimestampPath parameter does not reference an input value: $.t",
        ),
    ];
    for (state, input, want) in cases {
        let (status, error, cause) = outcome(&one_state(state.clone()), input.clone()).await;
        assert_eq!(status, ExecutionStatus::Failed, "{state} {input}");
        assert_eq!(error.as_deref(), Some("States.Runtime"), "{state} {input}");
        assert_eq!(cause.unwrap(), format!("{PREFIX}{want}"), "{state} {input}");
    }
    // A zero SecondsPath waits no time at all.
    let (status, ..) = outcome(
        &one_state(json!({"Type": "Wait", "SecondsPath": "$.s"})),
        json!({"s": 0}),
    )
    .await;
    assert_eq!(status, ExecutionStatus::Succeeded);
}

#[tokio::test]
async fn fail_error_and_cause_paths() {
    // GIVEN a Fail state reading its error and cause from the input
    let def = one_state(json!({"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"}));
    let (status, error, cause) = outcome(&def, json!({"e": "Custom.Error", "c": "because"})).await;
    assert_eq!(status, ExecutionStatus::Failed);
    assert_eq!(
        (error.as_deref(), cause.as_deref()),
        (Some("Custom.Error"), Some("because"))
    );
    // WHEN the ErrorPath selects nothing THEN States.Runtime with AWS's path wording
    let (status, error, cause) = outcome(&def, json!({"c": "because"})).await;
    assert_eq!(status, ExecutionStatus::Failed);
    assert_eq!(error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        cause.unwrap(),
        format!("{PREFIX}Invalid path '$.e' : No results for path: $['e']")
    );
    // AND a CausePath to nothing likewise
    let (_, error, cause) = outcome(&def, json!({"e": "E"})).await;
    assert_eq!(error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        cause.unwrap(),
        format!("{PREFIX}Invalid path '$.c' : No results for path: $['c']")
    );
}

#[tokio::test]
async fn a_task_runtime_error_cites_the_task_entered_event() {
    // GIVEN a Pass then a Task whose OutputPath selects nothing of its result
    let def = json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Next": "T"},
        "T": {"Type": "Task", "Resource": FN_ARN, "OutputPath": "$.nope", "End": true}
    }});
    let (status, error, cause) = outcome(&def, json!({})).await;
    // THEN T was entered at event 4 (Started, PassEntered, PassExited, TaskEntered)
    assert_eq!(status, ExecutionStatus::Failed);
    assert_eq!(error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        cause.unwrap(),
        "An error occurred while executing the state 'T' (entered at the event id #4). Invalid path '$.nope' : No results for path: $['nope']"
    );
}
