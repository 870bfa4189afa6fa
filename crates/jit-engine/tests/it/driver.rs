//! The background driver: woken by start / SendTask* / stop, sleeps until
//! the next timer, stops with its handle.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use jit_core::ports::SystemClock;
use jit_engine::{Definitions, Engine, EngineDb, ExecutionStatus};
use serde_json::{Value, json};

fn machine() -> Value {
    json!({
        "StartAt": "Notify",
        "States": {
            "Notify": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "notify", "Payload": {"t.$": "$$.Task.Token"}},
                "ResultPath": "$.decision",
                "Next": "Hold"
            },
            "Hold": {"Type": "Wait", "SecondsPath": "$.hold", "Next": "Grant"},
            "Grant": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "grant", "Payload.$": "$"},
                "End": true
            }
        }
    })
}

async fn wait_for(
    engine: &Engine,
    name: &str,
    pred: impl Fn(&jit_engine::ExecutionDescription) -> bool,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if pred(&engine.describe_execution(name).unwrap()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_runs_executions_and_wakes_on_answers_and_timers() {
    // GIVEN an engine on the system clock with its driver running
    let tasks = Scripted::new();
    let engine = Engine::open(
        EngineDb::in_memory().unwrap(),
        Definitions::new().with(MACHINE, load(&machine())),
        tasks.clone(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let driver = engine.spawn_driver();
    // WHEN an execution starts
    engine
        .start_execution(MACHINE, "x", json!({"hold": 1}))
        .unwrap();
    // THEN the driver invokes the callback task without being asked
    let deadline = Instant::now() + Duration::from_secs(5);
    while tasks.calls().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(tasks.calls().len(), 1);
    // WHEN the token is answered
    let answered = Instant::now();
    engine
        .send_task_success(&tasks.last_token(), json!("yes"))
        .unwrap();
    // THEN it proceeds, waits ~1 s of real time, grants and succeeds
    assert!(wait_for(&engine, "x", |d| d.status == ExecutionStatus::Succeeded).await);
    assert!(
        answered.elapsed() >= Duration::from_millis(900),
        "{:?}",
        answered.elapsed()
    );
    assert_eq!(tasks.calls_to("grant").len(), 1);
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_the_driver() {
    // GIVEN a driver that is dropped
    let tasks = Scripted::new();
    let engine = Engine::open(
        EngineDb::in_memory().unwrap(),
        Definitions::new().with(MACHINE, load(&machine())),
        tasks.clone(),
        Arc::new(SystemClock),
    )
    .unwrap();
    drop(engine.spawn_driver());
    tokio::time::sleep(Duration::from_millis(20)).await;
    // WHEN an execution starts
    engine
        .start_execution(MACHINE, "x", json!({"hold": 0}))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // THEN nothing advances it
    assert!(tasks.calls().is_empty());
    assert_eq!(engine.states_entered("x").unwrap(), Vec::<String>::new());
    // AND a new driver picks it up
    let driver = engine.spawn_driver();
    let deadline = Instant::now() + Duration::from_secs(5);
    while tasks.calls().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(tasks.calls().len(), 1);
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_advances_many_executions() {
    // GIVEN 200 executions of a Pass → Task machine
    let def = json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Next": "T"},
        "T": {"Type": "Task", "Resource": FN_ARN, "End": true}
    }});
    let tasks = Scripted::new();
    let engine = Engine::open(
        EngineDb::in_memory().unwrap(),
        Definitions::new().with(MACHINE, load(&def)),
        tasks.clone(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let driver = engine.spawn_driver();
    // WHEN they start
    for i in 0..200 {
        engine
            .start_execution(MACHINE, &format!("e{i}"), json!({"i": i}))
            .unwrap();
    }
    // THEN all succeed, each task invoked exactly once
    for i in 0..200 {
        assert!(
            wait_for(&engine, &format!("e{i}"), |d| d.status
                == ExecutionStatus::Succeeded)
            .await,
            "e{i}"
        );
    }
    assert_eq!(tasks.calls().len(), 200);
    driver.shutdown().await;
}
