//! Load-time validation: every refusal names the state and the field.

use jit_engine::{StateMachine, Substitutions};
use serde_json::{Value, json};

fn task(extra: Value) -> Value {
    let mut t = json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "f"},
        "End": true
    });
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    t
}

fn machine(name: &str, state: Value) -> Value {
    json!({"StartAt": name, "States": {name: state, "Other": {"Type": "Succeed"}}})
}

fn refusal(def: &Value, subs: &Substitutions) -> String {
    match StateMachine::load(&def.to_string(), subs) {
        Ok(_) => panic!("should be refused: {def}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn refusals_name_the_state_and_the_field() {
    let none = Substitutions::new();
    let cases: Vec<(Value, &str)> = vec![
        (
            machine(
                "Grant",
                task(json!({"Resource": "arn:aws:states:::sqs:sendMessage"})),
            ),
            r#"state "Grant": field "Resource": unsupported resource arn:aws:states:::sqs:sendMessage"#,
        ),
        (
            machine(
                "Grant",
                task(json!({"Resource": "arn:aws:states:::lambda:invoke.sync"})),
            ),
            r#"state "Grant": field "Resource": unsupported resource"#,
        ),
        (
            machine(
                "Fan",
                json!({"Type": "Parallel", "Branches": [], "End": true}),
            ),
            r#"state "Fan": field "Branches": required, must be a non-empty array"#,
        ),
        (
            machine("Each", json!({"Type": "Map", "End": true})),
            r#"state "Each": field "ItemProcessor": required for a Map state"#,
        ),
        (
            machine("S", json!({"Type": "Sleep", "End": true})),
            r#"state "S": field "Type": unknown state type Sleep"#,
        ),
        (
            machine("P", json!({"Type": "Pass", "End": true, "Colour": "red"})),
            r#"state "P": field "Colour": unknown or unsupported field for a Pass state"#,
        ),
        (
            machine(
                "P",
                json!({"Type": "Pass", "End": true, "Assign": {"a": 1}}),
            ),
            r#"state "P": field "Assign": unknown or unsupported field"#,
        ),
        (
            machine("P", json!({"Type": "Pass"})),
            r#"state "P": field "Next": missing: a state needs Next or End: true"#,
        ),
        (
            machine("P", json!({"Type": "Pass", "Next": "Other", "End": true})),
            r#"state "P": field "Next": Next and End: true are mutually exclusive"#,
        ),
        (
            machine("P", json!({"Type": "Pass", "Next": "Nowhere"})),
            r#"state "P": field "Next": no state named "Nowhere""#,
        ),
        (
            machine(
                "P",
                json!({"Type": "Pass", "End": true, "Parameters": {"msg.$": "States.Fromat('hi {}', $.name)"}}),
            ),
            r#"state "P": field "Parameters.msg.$": unknown intrinsic function States.Fromat"#,
        ),
        (
            machine(
                "P",
                json!({"Type": "Pass", "End": true, "Parameters": {"deep": [{"x.$": "$.items[?(@.id ==)]"}]}}),
            ),
            r#"state "P": field "Parameters.deep[0].x.$": invalid JSONPath"#,
        ),
        (
            machine(
                "P",
                json!({"Type": "Pass", "End": true, "InputPath": "$.a["}),
            ),
            r#"state "P": field "InputPath": invalid JSONPath"#,
        ),
        (
            machine(
                "P",
                json!({"Type": "Pass", "End": true, "ResultPath": "$.a[*]"}),
            ),
            r#"state "P": field "ResultPath": this field takes a reference path"#,
        ),
        (
            machine(
                "P",
                json!({"Type": "Pass", "End": true, "ResultPath": "$$.Execution"}),
            ),
            r#"state "P": field "ResultPath": the context object ($$) cannot be used here"#,
        ),
        (
            machine(
                "T",
                task(json!({"ResultSelector": {"x.$": "States.ArrayLength($.a, 2)"}})),
            ),
            r#"state "T": field "ResultSelector.x.$": States.ArrayLength takes 1 argument(s), not 2"#,
        ),
        (
            machine("T", task(json!({"Parameters": {"Payload": {}}}))),
            r#"state "T": field "Parameters.FunctionName": required by lambda:invoke"#,
        ),
        (
            machine(
                "T",
                task(json!({"Parameters": {"FunctionName": "f", "Colour": 1}})),
            ),
            r#"state "T": field "Parameters.Colour": not a parameter of Lambda Invoke"#,
        ),
        (
            machine(
                "T",
                task(json!({"Parameters": {"FunctionName": "f", "InvocationType": "DryRun"}})),
            ),
            r#"state "T": field "Parameters.InvocationType": unsupported invocation type"#,
        ),
        (
            machine(
                "T",
                task(json!({"Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken"})),
            ),
            r#"state "T": field "Parameters": a .waitForTaskToken task must pass $$.Task.Token"#,
        ),
        (
            machine("T", task(json!({"TimeoutSeconds": 0}))),
            r#"state "T": field "TimeoutSeconds": must be an integer from 1 to 99999999"#,
        ),
        (
            machine(
                "T",
                task(json!({"TimeoutSeconds": 10, "TimeoutSecondsPath": "$.t"})),
            ),
            r#"state "T": field "TimeoutSecondsPath": TimeoutSeconds and TimeoutSecondsPath are mutually exclusive"#,
        ),
        (
            machine(
                "T",
                task(json!({"TimeoutSeconds": 10, "HeartbeatSeconds": 10})),
            ),
            r#"state "T": field "HeartbeatSeconds": must be smaller than TimeoutSeconds"#,
        ),
        (
            machine(
                "T",
                task(json!({"Retry": [{"ErrorEquals": ["States.ALL", "X"]}]})),
            ),
            r#"state "T": field "Retry[0].ErrorEquals": States.ALL must appear alone"#,
        ),
        (
            machine(
                "T",
                task(json!({"Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]})),
            ),
            r#"state "T": field "Retry[0].ErrorEquals": States.ALL must be in the last retrier"#,
        ),
        (
            machine(
                "T",
                task(
                    json!({"Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Other"}, {"ErrorEquals": ["X"], "Next": "Other"}]}),
                ),
            ),
            r#"state "T": field "Catch[0].ErrorEquals": States.ALL must be in the last catcher"#,
        ),
        (
            machine(
                "T",
                task(json!({"Retry": [{"ErrorEquals": ["States.Nope"]}]})),
            ),
            r#"state "T": field "Retry[0].ErrorEquals[0]": unknown predefined error States.Nope"#,
        ),
        (
            machine("T", task(json!({"Retry": [{"ErrorEquals": []}]}))),
            r#"state "T": field "Retry[0].ErrorEquals": required, must be a non-empty array"#,
        ),
        (
            machine(
                "T",
                task(json!({"Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}]})),
            ),
            r#"state "T": field "Retry[0].BackoffRate": must be a number >= 1.0"#,
        ),
        (
            machine(
                "T",
                task(json!({"Retry": [{"ErrorEquals": ["X"], "JitterStrategy": "SOME"}]})),
            ),
            r#"state "T": field "Retry[0].JitterStrategy": must be FULL or NONE"#,
        ),
        (
            machine(
                "T",
                task(json!({"Catch": [{"ErrorEquals": ["X"], "Next": "Gone"}]})),
            ),
            r#"state "T": field "Catch[0].Next": no state named "Gone""#,
        ),
        (
            machine("T", task(json!({"Credentials": {"RoleArn": "x"}}))),
            r#"state "T": field "Credentials": unknown or unsupported field for a Task state"#,
        ),
        (
            machine(
                "C",
                json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "StringEquals": 1, "Next": "Other"}]}),
            ),
            r#"state "C": field "Choices[0].StringEquals": must be a string"#,
        ),
        (
            machine(
                "C",
                json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "StringContains": "x", "Next": "Other"}]}),
            ),
            r#"state "C": field "Choices[0].StringContains": unknown choice rule operator"#,
        ),
        (
            machine(
                "C",
                json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "Next": "Other"}]}),
            ),
            r#"state "C": field "Choices[0]": a choice rule needs exactly one operator"#,
        ),
        (
            machine(
                "C",
                json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true}]}),
            ),
            r#"state "C": field "Choices[0].Next": a top-level choice rule needs Next"#,
        ),
        (
            machine(
                "C",
                json!({"Type": "Choice", "Choices": [{"Not": {"Variable": "$.a", "IsNull": true, "Next": "Other"}, "Next": "Other"}]}),
            ),
            r#"state "C": field "Choices[0].Not.Next": Next is only allowed on top-level choice rules"#,
        ),
        (
            machine(
                "C",
                json!({"Type": "Choice", "Choices": [{"And": [{"Variable": "$.a", "TimestampEquals": "yesterday"}], "Next": "Other"}]}),
            ),
            r#"state "C": field "Choices[0].And[0].TimestampEquals": must be an RFC 3339 timestamp string"#,
        ),
        (
            machine(
                "C",
                json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "Gone"}]}),
            ),
            r#"state "C": field "Choices[0].Next": no state named "Gone""#,
        ),
        (
            machine(
                "C",
                json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "Other"}], "Default": "Gone"}),
            ),
            r#"state "C": field "Default": no state named "Gone""#,
        ),
        (
            machine("C", json!({"Type": "Choice", "Choices": []})),
            r#"state "C": field "Choices": required, must be a non-empty array"#,
        ),
        (
            machine(
                "W",
                json!({"Type": "Wait", "Seconds": 5, "Timestamp": "2026-01-01T00:00:00Z", "End": true}),
            ),
            r#"state "W": field "Timestamp": a Wait state needs exactly one of"#,
        ),
        (
            machine(
                "W",
                json!({"Type": "Wait", "Timestamp": "tomorrow", "End": true}),
            ),
            r#"state "W": field "Timestamp": must be an RFC 3339 timestamp string"#,
        ),
        (
            machine(
                "F",
                json!({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}),
            ),
            r#"state "F": field "ErrorPath": Error and ErrorPath are mutually exclusive"#,
        ),
        (
            machine("F", json!({"Type": "Fail", "Error": "E", "Next": "Other"})),
            r#"state "F": field "Next": unknown or unsupported field for a Fail state"#,
        ),
        (
            json!({"StartAt": "Nope", "States": {"A": {"Type": "Succeed"}}}),
            r#"state machine: field "StartAt": no state named "Nope""#,
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}, "QueryLanguage": "JSONata"}),
            r#"state machine: field "QueryLanguage": only JSONPath is supported"#,
        ),
        (
            json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}, "Extra": 1}),
            r#"state machine: field "Extra": unknown or unsupported field"#,
        ),
        (
            machine(
                "Grant",
                task(json!({"Parameters": {"FunctionName": "${GrantFunctionArn}"}})),
            ),
            r#"state "Grant": field "Parameters.FunctionName": unresolved substitution placeholder ${GrantFunctionArn}"#,
        ),
    ];
    for (def, want) in cases {
        // WHEN the definition loads
        let got = refusal(&def, &none);
        // THEN the refusal starts with the expected state/field/message
        assert!(
            got.starts_with(want),
            "\n got: {got}\nwant: {want}...\n def: {def}"
        );
    }
}

#[test]
fn placeholders_in_non_string_positions_are_substituted_or_refused() {
    // GIVEN a definition with a placeholder where a number goes
    let text =
        r#"{"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": ${Delay}, "End": true}}}"#;
    // WHEN it is unresolved THEN the refusal names it
    let e = StateMachine::load(text, &Substitutions::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("${Delay}"), "{e}");
    // WHEN it is given THEN the definition loads
    let subs: Substitutions = [("Delay".to_string(), "30".to_string())].into();
    assert!(StateMachine::load(text, &subs).is_ok());
}

#[test]
fn substitutions_resolve_function_arns_and_unreachable_states_are_fine() {
    // GIVEN a definition with a placeholder and a state nothing reaches
    let def = json!({
        "StartAt": "Grant",
        "States": {
            "Grant": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "${GrantFunctionArn}", "Payload.$": "$"},
                "End": true
            },
            "Orphan": {"Type": "Succeed"}
        }
    });
    let subs: Substitutions = [(
        "GrantFunctionArn".to_string(),
        "arn:aws:lambda:us-east-1:123456789012:function:grant".to_string(),
    )]
    .into();
    // WHEN it loads THEN it is accepted and the source carries the ARN
    let sm = StateMachine::load(&def.to_string(), &subs).unwrap();
    assert!(sm.source().contains("function:grant"));
    assert_eq!(sm.state_names(), vec!["Grant", "Orphan"]);
}
