//! Choice rules: every comparison operator (literal and …Path), the type
//! tests, And/Or/Not, Default, and States.NoChoiceMatched.

use crate::common;

use common::*;
use jit_engine::ExecutionStatus;
use serde_json::{Value, json};

/// A Choice with one rule going to "Yes", Default "No" (unless `default` is false).
fn machine(rule: Value, default: bool) -> Value {
    let mut rule = rule;
    rule["Next"] = json!("Yes");
    let mut choice = json!({"Type": "Choice", "Choices": [rule]});
    if default {
        choice["Default"] = json!("No");
    }
    json!({
        "StartAt": "C",
        "States": {
            "C": choice,
            "Yes": {"Type": "Pass", "Result": "yes", "End": true},
            "No": {"Type": "Pass", "Result": "no", "End": true}
        }
    })
}

#[tokio::test]
async fn each_operator_decides_like_aws() {
    let input = json!({
        "s": "beta", "s2": "beta", "n": 5, "n2": 7.5, "b": true, "b2": false,
        "t": "2026-01-01T10:00:00Z", "t2": "2026-01-01T12:00:00+01:00",
        "nul": null, "arr": [1]
    });
    let cases: Vec<(Value, bool)> = vec![
        (json!({"Variable": "$.s", "StringEquals": "beta"}), true),
        (json!({"Variable": "$.s", "StringEquals": "alpha"}), false),
        (json!({"Variable": "$.s", "StringEqualsPath": "$.s2"}), true),
        (json!({"Variable": "$.s", "StringLessThan": "gamma"}), true),
        (
            json!({"Variable": "$.s", "StringGreaterThanEquals": "beta"}),
            true,
        ),
        (json!({"Variable": "$.s", "StringMatches": "b*a"}), true),
        (json!({"Variable": "$.s", "StringMatches": "a*"}), false),
        (json!({"Variable": "$.n", "StringEquals": "5"}), false), // wrong type is just false
        (json!({"Variable": "$.n", "NumericEquals": 5}), true),
        (json!({"Variable": "$.n", "NumericEquals": 5.0}), true),
        (json!({"Variable": "$.n", "NumericLessThan": 5}), false),
        (json!({"Variable": "$.n", "NumericLessThanEquals": 5}), true),
        (json!({"Variable": "$.n", "NumericGreaterThan": 4.5}), true),
        (
            json!({"Variable": "$.n", "NumericGreaterThanEquals": 6}),
            false,
        ),
        (
            json!({"Variable": "$.n", "NumericLessThanPath": "$.n2"}),
            true,
        ),
        (
            json!({"Variable": "$.n2", "NumericEqualsPath": "$.n"}),
            false,
        ),
        (json!({"Variable": "$.s", "NumericEquals": 5}), false),
        (json!({"Variable": "$.b", "BooleanEquals": true}), true),
        (
            json!({"Variable": "$.b", "BooleanEqualsPath": "$.b2"}),
            false,
        ),
        (
            json!({"Variable": "$.t", "TimestampEquals": "2026-01-01T10:00:00Z"}),
            true,
        ),
        // 12:00+01:00 is 11:00Z
        (
            json!({"Variable": "$.t", "TimestampLessThanPath": "$.t2"}),
            true,
        ),
        (
            json!({"Variable": "$.t2", "TimestampGreaterThan": "2026-01-01T11:00:00Z"}),
            false,
        ),
        (
            json!({"Variable": "$.t2", "TimestampGreaterThanEquals": "2026-01-01T11:00:00Z"}),
            true,
        ),
        (
            json!({"Variable": "$.t", "TimestampLessThanEquals": "2025-12-31T23:59:59Z"}),
            false,
        ),
        (
            json!({"Variable": "$.s", "TimestampEquals": "2026-01-01T10:00:00Z"}),
            false,
        ),
        (json!({"Variable": "$.s", "IsPresent": true}), true),
        (json!({"Variable": "$.missing", "IsPresent": true}), false),
        (json!({"Variable": "$.missing", "IsPresent": false}), true),
        (json!({"Variable": "$.nul", "IsNull": true}), true),
        (json!({"Variable": "$.s", "IsNull": true}), false),
        (json!({"Variable": "$.s", "IsString": true}), true),
        (json!({"Variable": "$.n", "IsNumeric": true}), true),
        (json!({"Variable": "$.s", "IsNumeric": false}), true),
        (json!({"Variable": "$.b", "IsBoolean": true}), true),
        (json!({"Variable": "$.t", "IsTimestamp": true}), true),
        (json!({"Variable": "$.s", "IsTimestamp": true}), false),
        (json!({"Variable": "$.arr[0]", "NumericEquals": 1}), true),
        (
            json!({"Variable": "$$.Execution.Name", "StringEquals": "x"}),
            true,
        ),
        (
            json!({"And": [
                {"Variable": "$.s", "StringEquals": "beta"},
                {"Variable": "$.n", "NumericGreaterThan": 1}
            ]}),
            true,
        ),
        (
            json!({"And": [
                {"Variable": "$.s", "StringEquals": "beta"},
                {"Variable": "$.n", "NumericGreaterThan": 10}
            ]}),
            false,
        ),
        (
            json!({"Or": [
                {"Variable": "$.s", "StringEquals": "nope"},
                {"Variable": "$.b", "BooleanEquals": true}
            ]}),
            true,
        ),
        (
            json!({"Not": {"Variable": "$.s", "StringEquals": "beta"}}),
            false,
        ),
        (
            json!({"Not": {"Or": [
                {"Variable": "$.missing", "IsPresent": true},
                {"Variable": "$.b", "BooleanEquals": false}
            ]}}),
            true,
        ),
    ];
    for (rule, want) in cases {
        // GIVEN a choice on this rule
        let h = harness(&machine(rule.clone(), true));
        // WHEN it runs
        let d = h.run("x", input.clone()).await;
        // THEN it takes the rule's branch exactly when AWS would
        assert_eq!(d.status, ExecutionStatus::Succeeded, "{rule}: {d:?}");
        let expect = if want { "yes" } else { "no" };
        assert_eq!(d.output, Some(json!(expect)), "{rule}");
        assert_eq!(
            h.states("x"),
            vec![
                "C".to_string(),
                if want { "Yes".into() } else { "No".into() }
            ],
            "{rule}"
        );
    }
}

#[tokio::test]
async fn rules_are_tried_in_order_and_output_path_applies() {
    // GIVEN two matching rules and an OutputPath
    let def = json!({
        "StartAt": "C",
        "States": {
            "C": {"Type": "Choice", "InputPath": "$.in", "OutputPath": "$.v",
                  "Choices": [
                    {"Variable": "$.v", "NumericGreaterThan": 0, "Next": "First"},
                    {"Variable": "$.v", "NumericGreaterThan": 1, "Next": "Second"}
                  ]},
            "First": {"Type": "Succeed"},
            "Second": {"Type": "Succeed"}
        }
    });
    let h = harness(&def);
    // WHEN it runs
    let d = h.run("x", json!({"in": {"v": 5}})).await;
    // THEN the first matching rule wins and the output is InputPath then OutputPath
    assert_eq!(h.states("x"), vec!["C", "First"]);
    assert_eq!(d.output, Some(json!(5)));
}

#[tokio::test]
async fn no_match_without_default_fails_with_no_choice_matched() {
    // GIVEN a rule that does not match and no Default
    let h = harness(&machine(
        json!({"Variable": "$.s", "StringEquals": "x"}),
        false,
    ));
    // WHEN it runs
    let d = h.run("x", json!({"s": "y"})).await;
    // THEN
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("States.NoChoiceMatched"));
}

#[tokio::test]
async fn a_missing_variable_is_a_runtime_error() {
    // GIVEN a comparison on a field the input lacks (not IsPresent)
    let h = harness(&machine(
        json!({"Variable": "$.nope", "StringEquals": "x"}),
        true,
    ));
    // WHEN it runs
    let d = h.run("x", json!({"s": "y"})).await;
    // THEN the execution fails with States.Runtime (AWS does not take Default)
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("States.Runtime"));
    assert!(d.cause.unwrap().contains("$.nope"));
}
