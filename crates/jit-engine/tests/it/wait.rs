//! Wait states: Seconds, SecondsPath, Timestamp, TimestampPath, against a
//! manual clock (no real sleeping).

use crate::common;

use common::*;
use jit_engine::ExecutionStatus;
use serde_json::{Value, json};

fn wait_then_done(wait: Value) -> Value {
    let mut wait = wait;
    wait["Type"] = json!("Wait");
    wait["Next"] = json!("Done");
    json!({
        "StartAt": "W",
        "States": { "W": wait, "Done": {"Type": "Pass", "End": true} }
    })
}

#[tokio::test]
async fn each_wait_form_holds_until_its_time_and_not_longer() {
    // (Wait fields, input, seconds after t0 when it must fire)
    let cases: Vec<(Value, Value, i64)> = vec![
        (json!({"Seconds": 30}), json!({}), 30),
        (json!({"SecondsPath": "$.delay"}), json!({"delay": 45}), 45),
        (json!({"Timestamp": "2026-01-01T00:10:00Z"}), json!({}), 600),
        (
            json!({"TimestampPath": "$.until"}),
            json!({"until": "2026-01-01T02:00:00+01:00"}),
            3600,
        ),
        (json!({"Seconds": 0}), json!({}), 0),
        (json!({"Timestamp": "2025-06-01T00:00:00Z"}), json!({}), 0),
    ];
    for (wait, input, fire_at) in cases {
        // GIVEN an execution entering the Wait at t0
        let h = harness(&wait_then_done(wait.clone()));
        h.start("x", input.clone());
        h.idle().await;
        if fire_at > 0 {
            // THEN one second before its time it is still waiting
            h.advance(fire_at - 1);
            h.idle().await;
            assert_eq!(h.describe("x").status, ExecutionStatus::Running, "{wait}");
            assert_eq!(h.states("x"), vec!["W"], "{wait}");
            assert_eq!(
                h.engine.next_timer().unwrap(),
                Some(t0() + chrono::Duration::seconds(fire_at)),
                "{wait}"
            );
            // WHEN the clock reaches it
            h.advance(1);
            h.idle().await;
        }
        // THEN it moves on and passes its input through
        let d = h.describe("x");
        assert_eq!(d.status, ExecutionStatus::Succeeded, "{wait}: {d:?}");
        assert_eq!(d.output, Some(input), "{wait}");
        assert_eq!(h.states("x"), vec!["W", "Done"], "{wait}");
    }
}

#[tokio::test]
async fn wait_applies_input_and_output_paths() {
    // GIVEN a Wait with InputPath and OutputPath
    let h = harness(&wait_then_done(
        json!({"InputPath": "$.inner", "SecondsPath": "$.s", "OutputPath": "$.keep"}),
    ));
    // WHEN it waits the 5 seconds its (narrowed) input says
    h.start("x", json!({"inner": {"s": 5, "keep": "k"}}));
    h.idle().await;
    h.advance(5);
    h.idle().await;
    // THEN
    assert_eq!(h.describe("x").output, Some(json!("k")));
}

#[tokio::test]
async fn bad_wait_paths_fail_with_runtime_errors() {
    let cases = [
        (json!({"SecondsPath": "$.delay"}), json!({"delay": "ten"})),
        (json!({"SecondsPath": "$.delay"}), json!({"delay": -5})),
        (json!({"SecondsPath": "$.delay"}), json!({})),
        (json!({"TimestampPath": "$.at"}), json!({"at": "tomorrow"})),
    ];
    for (wait, input) in cases {
        // GIVEN a Wait whose path does not give a usable value
        let h = harness(&wait_then_done(wait.clone()));
        // WHEN it runs
        let d = h.run("x", input).await;
        // THEN the execution fails with States.Runtime
        assert_eq!(d.status, ExecutionStatus::Failed, "{wait}");
        assert_eq!(d.error.as_deref(), Some("States.Runtime"), "{wait}");
    }
}

#[tokio::test]
async fn history_shows_wait_entered_and_exited_at_their_times() {
    // GIVEN a 60-second Wait
    let h = harness(&wait_then_done(json!({"Seconds": 60})));
    h.start("x", json!({}));
    h.idle().await;
    h.advance(60);
    h.idle().await;
    // THEN WaitStateExited is stamped when the time passed
    let hist = h.engine.history("x").unwrap();
    let entered = hist
        .iter()
        .find(|e| e.event_type == "WaitStateEntered")
        .unwrap();
    let exited = hist
        .iter()
        .find(|e| e.event_type == "WaitStateExited")
        .unwrap();
    assert_eq!(entered.timestamp, t0());
    assert_eq!(exited.timestamp, t0() + chrono::Duration::seconds(60));
}
