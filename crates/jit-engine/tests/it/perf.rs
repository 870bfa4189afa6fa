//! Performance checks against the targets (run in release, they are
//! ignored by default):
//!
//! `cargo test --release -p jit-engine --test perf -- --ignored --nocapture --test-threads 1`
//!
//! - ≥ 50,000 state transitions/s of engine overhead with in-process tasks;
//! - ≤ 100 MB RSS with 10,000 executions waiting for approval;
//! - resume 10,000 waiting executions in ≤ 2 s.

use crate::common;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use common::*;
use jit_core::ports::ManualClock;
use jit_engine::{Definitions, Engine, EngineDb, TaskError, TaskInvoker};
use serde_json::{Value, json};

struct Echo;

#[async_trait]
impl TaskInvoker for Echo {
    async fn invoke(&self, _f: &str, payload: Value) -> Result<Value, TaskError> {
        Ok(payload)
    }
}

/// Ten transitions: Pass, Choice, Task, Pass, Choice, Task, Pass, Pass, Task, Succeed.
fn ten_states() -> Value {
    let task = |next: &str| {
        json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
               "Parameters": {"FunctionName": "f", "Payload": {"id.$": "$.id"}},
               "ResultSelector": {"ok.$": "$.Payload.id"}, "ResultPath": "$.r", "Next": next})
    };
    json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Result": 1, "ResultPath": "$.a", "Next": "B"},
        "B": {"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEquals": 1, "Next": "C"}], "Default": "J"},
        "C": task("D"),
        "D": {"Type": "Pass", "Next": "E"},
        "E": {"Type": "Choice", "Choices": [{"Variable": "$.r.ok", "IsPresent": true, "Next": "F"}], "Default": "J"},
        "F": task("G"),
        "G": {"Type": "Pass", "Next": "H"},
        "H": {"Type": "Pass", "Next": "I"},
        "I": task("J"),
        "J": {"Type": "Succeed"}
    }})
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[tokio::test]
#[ignore = "performance: run in release with --ignored"]
async fn transitions_per_second() {
    for file in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = if file {
            EngineDb::open(dir.path().join("engine.db")).unwrap()
        } else {
            EngineDb::in_memory().unwrap()
        };
        let engine = Engine::open(
            db,
            Definitions::new().with(MACHINE, load(&ten_states())),
            Arc::new(Echo),
            Arc::new(ManualClock::new(t0())),
        )
        .unwrap();
        let n = 5_000;
        let started = Instant::now();
        for i in 0..n {
            engine
                .start_execution(MACHINE, &format!("e{i}"), json!({"id": i, "requester": "ana@example.com", "entitlement": "prod-readonly"}))
                .unwrap();
        }
        let starts = started.elapsed().as_secs_f64();
        let ran = Instant::now();
        let transitions = engine.run_until_idle().await.unwrap();
        let secs = ran.elapsed().as_secs_f64();
        assert_eq!(transitions, n * 10);
        println!(
            "{} db: {n} starts in {starts:.2} s ({:.0}/s); then {transitions} transitions in {secs:.2} s = {:.0}/s",
            if file { "file" } else { "memory" },
            n as f64 / starts,
            transitions as f64 / secs
        );
    }
}

fn approval() -> Value {
    json!({"StartAt": "Approve", "States": {
        "Approve": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "notify", "Payload": {"id.$": "$.id", "token.$": "$$.Task.Token"}},
            "TimeoutSeconds": 86400, "Next": "Done"},
        "Done": {"Type": "Succeed"}
    }})
}

#[tokio::test]
#[ignore = "performance: run in release with --ignored"]
async fn ten_thousand_waiting_executions_memory_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    let before = rss_mb();
    {
        let engine = Engine::open(
            EngineDb::open(&path).unwrap(),
            Definitions::new().with(MACHINE, load(&approval())),
            Arc::new(Echo),
            Arc::new(ManualClock::new(t0())),
        )
        .unwrap();
        let started = Instant::now();
        for i in 0..10_000 {
            engine
                .start_execution(
                    MACHINE,
                    &format!("req-{i}"),
                    json!({"id": format!("req-{i}"), "requester": "ana@example.com"}),
                )
                .unwrap();
        }
        engine.run_until_idle().await.unwrap();
        println!(
            "10,000 executions started and waiting in {:.2} s; RSS {:.1} MB (was {before:.1} MB)",
            started.elapsed().as_secs_f64(),
            rss_mb()
        );
        assert!(rss_mb() < 100.0);
    }
    let started = Instant::now();
    let engine = Engine::open(
        EngineDb::open(&path).unwrap(),
        Definitions::new().with(MACHINE, load(&approval())),
        Arc::new(Echo),
        Arc::new(ManualClock::new(t0() + chrono::Duration::seconds(60))),
    )
    .unwrap();
    let report = engine.resume().unwrap();
    engine.run_until_idle().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "reopened and resumed {} running executions in {secs:.3} s; RSS {:.1} MB",
        report.running,
        rss_mb()
    );
    assert_eq!(report.running, 10_000);
    assert!(secs < 2.0);
}
