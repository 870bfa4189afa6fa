//! `Engine::backlog`: executions the outside asked the engine to advance
//! (a start, a task token's answer) that it has not advanced yet.

use crate::common;

use common::*;
use jit_engine::EngineDb;
use serde_json::{Value, json};

fn approval_then_wait() -> Value {
    json!({
        "StartAt": "Check",
        "States": {
            "Check": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                      "Parameters": {"FunctionName": "check", "Payload": {}},
                      "ResultPath": null, "Next": "Approve"},
            "Approve": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                        "Parameters": {"FunctionName": "notify", "Payload": {"token.$": "$$.Task.Token"}},
                        "ResultPath": null, "Next": "Hold"},
            "Hold": {"Type": "Wait", "Seconds": 60, "Next": "Revoke"},
            "Revoke": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                       "Parameters": {"FunctionName": "revoke", "Payload": {}},
                       "ResultPath": null, "End": true}
        }
    })
}

#[tokio::test]
async fn starts_and_answers_count_until_advanced_to_their_next_wait() {
    let h = harness(&approval_then_wait());
    assert_eq!(h.engine.backlog(), 0);
    // GIVEN three started executions: all behind
    for n in ["a", "b", "c"] {
        h.start(n, json!({}));
    }
    assert_eq!(h.engine.backlog(), 3);
    // WHEN the engine runs them to their approval THEN none is behind
    h.idle().await;
    assert_eq!(h.engine.backlog(), 0);
    // WHEN one approval is answered THEN that one is behind until advanced
    let token = h.tasks.calls_to("notify")[0].token.clone().unwrap();
    h.engine.send_task_success(&token, json!({})).unwrap();
    assert_eq!(h.engine.backlog(), 1);
    h.idle().await;
    assert_eq!(h.engine.backlog(), 0);
    // AND a timer firing is not work the outside asked for
    h.advance(60);
    h.idle().await;
    assert_eq!(h.engine.backlog(), 0);
    // AND a stopped execution stops counting at once
    h.start("d", json!({}));
    assert_eq!(h.engine.backlog(), 1);
    h.engine.stop_execution("d", None, None).unwrap();
    assert_eq!(h.engine.backlog(), 0);
}

#[tokio::test]
async fn at_open_everything_runnable_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    {
        // GIVEN two executions started and never advanced, one waiting
        let h = harness_on(
            EngineDb::open(&path).unwrap(),
            &approval_then_wait(),
            Scripted::new(),
            t0(),
        );
        h.start("waits", json!({}));
        h.idle().await;
        h.start("x", json!({}));
        h.start("y", json!({}));
        assert_eq!(h.engine.backlog(), 2);
    }
    // WHEN the engine opens the file again THEN both are still behind
    let h = harness_on(
        EngineDb::open(&path).unwrap(),
        &approval_then_wait(),
        Scripted::new(),
        t0(),
    );
    assert_eq!(h.engine.backlog(), 2);
    h.engine.resume().unwrap();
    h.idle().await;
    assert_eq!(h.engine.backlog(), 0);
}
