//! Durability: drop the engine mid-wait-for-token, mid-Wait and mid-invoke,
//! reopen the same file, resume, and every execution completes.

use crate::common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::*;
use jit_engine::{EngineDb, ExecutionStatus, TaskCall, TaskError, TaskInvoker};
use serde_json::{Value, json};
use tokio::sync::Notify;

fn approval_and_expiry() -> Value {
    json!({
        "StartAt": "Route",
        "States": {
            "Route": {"Type": "Choice", "Choices": [
                {"Variable": "$.kind", "StringEquals": "approval", "Next": "RequestApproval"}
            ], "Default": "WaitForExpiry"},
            "RequestApproval": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "notify", "Payload": {"token.$": "$$.Task.Token"}},
                "TimeoutSeconds": 86400,
                "ResultPath": "$.decision",
                "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}],
                "Next": "Granted"
            },
            "WaitForExpiry": {"Type": "Wait", "Seconds": 600, "Next": "Revoke"},
            "Revoke": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "revoke", "Payload.$": "$"},
                "ResultPath": null,
                "Next": "Expired"
            },
            "Granted": {"Type": "Succeed"},
            "TimedOut": {"Type": "Fail", "Error": "ApprovalTimedOut"},
            "Expired": {"Type": "Succeed"}
        }
    })
}

fn db_path() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("engine.db");
    (dir, path)
}

#[tokio::test]
async fn executions_continue_after_the_engine_is_dropped_and_reopened() {
    let (_dir, path) = db_path();
    // GIVEN one execution waiting for approval and one in a 600 s Wait
    let first = Scripted::new();
    let token = {
        let h = harness_on(
            EngineDb::open(&path).unwrap(),
            &approval_and_expiry(),
            first.clone(),
            t0(),
        );
        h.start("approve-me", json!({"kind": "approval"}));
        h.start("expire-me", json!({"kind": "grant"}));
        h.idle().await;
        assert_eq!(h.describe("approve-me").status, ExecutionStatus::Running);
        assert_eq!(h.states("expire-me"), vec!["Route", "WaitForExpiry"]);
        first.last_token()
        // WHEN the engine is dropped (the process "dies")
    };
    // AND a new engine opens the same file 100 s later
    let second = Scripted::new();
    let h = harness_on(
        EngineDb::open(&path).unwrap(),
        &approval_and_expiry(),
        second.clone(),
        t0() + chrono::Duration::seconds(100),
    );
    let report = h.engine.resume().unwrap();
    assert_eq!(report.running, 2);
    h.idle().await;
    // THEN the waiting token still works
    h.engine
        .send_task_success(&token, json!({"approved": true}))
        .unwrap();
    h.idle().await;
    let d = h.describe("approve-me");
    assert_eq!(d.status, ExecutionStatus::Succeeded);
    assert_eq!(d.output.unwrap()["decision"], json!({"approved": true}));
    // AND the Wait keeps its original deadline (t0 + 600 s), not restarted
    assert_eq!(h.describe("expire-me").status, ExecutionStatus::Running);
    assert_eq!(
        h.engine.next_timer().unwrap(),
        Some(t0() + chrono::Duration::seconds(600))
    );
    h.advance(500);
    h.idle().await;
    assert_eq!(h.describe("expire-me").status, ExecutionStatus::Succeeded);
    assert_eq!(
        h.states("expire-me"),
        vec!["Route", "WaitForExpiry", "Revoke", "Expired"]
    );
    assert_eq!(second.calls_to("revoke").len(), 1);
    // AND the history is whole across the restart
    let ids: Vec<u64> = h
        .engine
        .history("expire-me")
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn timers_that_passed_while_down_fire_at_resume() {
    let (_dir, path) = db_path();
    // GIVEN the same two executions, then the engine stops
    {
        let h = harness_on(
            EngineDb::open(&path).unwrap(),
            &approval_and_expiry(),
            Scripted::new(),
            t0(),
        );
        h.start("approve-me", json!({"kind": "approval"}));
        h.start("expire-me", json!({"kind": "grant"}));
        h.idle().await;
    }
    // WHEN it reopens two days later
    let h = harness_on(
        EngineDb::open(&path).unwrap(),
        &approval_and_expiry(),
        Scripted::new(),
        t0() + chrono::Duration::days(2),
    );
    h.engine.resume().unwrap();
    h.idle().await;
    // THEN the Wait fired at once and the approval timed out at once
    assert_eq!(h.describe("expire-me").status, ExecutionStatus::Succeeded);
    let d = h.describe("approve-me");
    assert_eq!(d.status, ExecutionStatus::Failed);
    assert_eq!(d.error.as_deref(), Some("ApprovalTimedOut"));
    assert_eq!(
        h.states("approve-me"),
        vec!["Route", "RequestApproval", "TimedOut"]
    );
}

/// Records calls, then never answers: a process killed mid-invoke.
struct HangsAfterRecording {
    calls: Mutex<Vec<(String, Value)>>,
    called: Notify,
}

#[async_trait]
impl TaskInvoker for HangsAfterRecording {
    async fn invoke(&self, _f: &str, _p: Value) -> Result<Value, TaskError> {
        std::future::pending().await
    }
    async fn invoke_task(&self, call: TaskCall<'_>, payload: Value) -> Result<Value, TaskError> {
        self.calls
            .lock()
            .unwrap()
            .push((call.function.to_string(), payload));
        self.called.notify_one();
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_task_interrupted_mid_invoke_is_invoked_again_on_resume() {
    for (kind, function) in [("grant", "revoke"), ("approval", "notify")] {
        let (_dir, path) = db_path();
        // GIVEN a task whose invocation is in flight when the engine dies
        let hang = Arc::new(HangsAfterRecording {
            calls: Mutex::new(Vec::new()),
            called: Notify::new(),
        });
        {
            let clock = Arc::new(jit_core::ports::ManualClock::new(t0()));
            let engine = jit_engine::Engine::open(
                EngineDb::open(&path).unwrap(),
                jit_engine::Definitions::new().with(MACHINE, load(&approval_and_expiry())),
                hang.clone(),
                clock.clone(),
            )
            .unwrap();
            engine
                .start_execution(MACHINE, "x", json!({"kind": kind}))
                .unwrap();
            if kind == "grant" {
                engine.run_until_idle().await.unwrap();
                clock.advance(chrono::Duration::seconds(600));
            }
            let runner = tokio::spawn({
                let engine = engine.clone();
                async move { engine.run_until_idle().await }
            });
            hang.called.notified().await;
            // WHEN the process dies mid-invoke
            runner.abort();
            let _ = runner.await;
        }
        let first_calls = hang.calls.lock().unwrap().clone();
        assert_eq!(first_calls.len(), 1, "{kind}");
        assert_eq!(first_calls[0].0, function);
        // AND the engine reopens
        let h = harness_on(
            EngineDb::open(&path).unwrap(),
            &approval_and_expiry(),
            Scripted::new(),
            t0() + chrono::Duration::seconds(601),
        );
        h.engine.resume().unwrap();
        h.idle().await;
        // THEN the task is invoked again (at least once), with the same payload
        let again = h.tasks.calls_to(function);
        assert_eq!(again.len(), 1, "{kind}");
        assert_eq!(again[0].payload, first_calls[0].1, "{kind}");
        if kind == "approval" {
            // the re-invoked callback carries the same, still valid, token
            h.engine
                .send_task_success(again[0].token.as_deref().unwrap(), json!("ok"))
                .unwrap();
            h.idle().await;
        }
        assert_eq!(h.describe("x").status, ExecutionStatus::Succeeded, "{kind}");
    }
}

#[tokio::test]
async fn running_executions_finish_on_the_definition_they_started_with() {
    let (_dir, path) = db_path();
    let v1 = json!({"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 10, "Next": "Old"},
        "Old": {"Type": "Pass", "Result": "v1", "End": true}
    }});
    let v2 = json!({"StartAt": "New", "States": {
        "New": {"Type": "Pass", "Result": "v2", "End": true}
    }});
    // GIVEN an execution waiting on definition v1
    {
        let h = harness_on(EngineDb::open(&path).unwrap(), &v1, Scripted::new(), t0());
        h.start("old", json!({}));
        h.idle().await;
    }
    // WHEN the engine reopens with v2 and time passes
    let h = harness_on(EngineDb::open(&path).unwrap(), &v2, Scripted::new(), t0());
    h.engine.resume().unwrap();
    h.advance(10);
    h.idle().await;
    // THEN the old execution finished on v1, a new one runs v2
    assert_eq!(h.describe("old").output, Some(json!("v1")));
    assert_eq!(h.run("new", json!({})).await.output, Some(json!("v2")));
}

#[tokio::test]
async fn a_database_with_a_newer_schema_is_refused() {
    let (_dir, path) = db_path();
    // GIVEN a database file marked with a future schema version
    {
        let _ = EngineDb::open(&path).unwrap();
        let conn = rusqlite_conn(&path);
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    // WHEN it is opened THEN it is refused, not silently used
    let e = EngineDb::open(&path).unwrap_err().to_string();
    assert!(e.contains("schema version 99"), "{e}");
}

fn rusqlite_conn(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}
