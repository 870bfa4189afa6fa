//! The engine's durability under `kill -9`: a real child process (this test
//! binary again, running [`crash_child`]) drives executions on a file
//! database while the parent kills it with SIGKILL at random instants
//! (fixed seeds), many times, then lets a last child finish everything.
//!
//! Every task appends `I <execution> <state> <attempt>` to a side file when
//! it is invoked and `C <execution> <state> <attempt>` once its effect is
//! done, so the file records what the world saw. The invariant: after any
//! restart, an execution never invokes a task that comes before the last
//! one whose effect was recorded — the task in flight (or whose result was
//! not yet committed) may run again, an earlier one never. The chain runs
//! through a Parallel (two task branches) and a Map (a task per item), so
//! kills land inside them too and their children resume the same way.

use crate::common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jit_core::ports::SystemClock;
use jit_engine::{
    Definitions, Engine, EngineDb, EngineError, ExecutionStatus, TaskCall, TaskError, TaskInvoker,
};
use serde_json::{Value, json};

const CHILD_ENV: &str = "JIT_ENGINE_CRASH_DIR";
const EXECUTIONS: usize = 100;
/// The tasks in the order an execution runs them (`Hold`, a Wait, sits
/// between Record and Revoke; `Left`/`Right` are the Parallel's branches,
/// `Item0`/`Item1` the Map's iterations, whose children take turns in
/// index order).
const TASKS: [&str; 10] = [
    "Prepare", "Flaky", "Approve", "Grant", "Left", "Right", "Item0", "Item1", "Record", "Revoke",
];
const STATES: [&str; 14] = [
    "Prepare", "Flaky", "Approve", "Grant", "Fan", "Left", "Right", "Each", "Item", "Item",
    "Record", "Hold", "Revoke", "Done",
];

fn definition() -> Value {
    let payload = json!({"attempt.$": "$$.State.RetryCount", "execution.$": "$$.Execution.Name"});
    let task = |name: &str, next: &str| {
        json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
               "Parameters": {"FunctionName": name, "Payload": payload.clone()},
               "ResultPath": format!("$.{name}"), "Next": next})
    };
    let mut flaky = task("Flaky", "Approve");
    flaky["Retry"] =
        json!([{"ErrorEquals": ["Transient"], "IntervalSeconds": 1, "MaxAttempts": 3}]);
    let mut approve_payload = payload.clone();
    approve_payload["token.$"] = json!("$$.Task.Token");
    let branch = |name: &str| {
        json!({"StartAt": name, "States": {name: {"Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": name, "Payload": payload.clone()}, "End": true}}})
    };
    let mut item_payload = payload.clone();
    item_payload["item.$"] = json!("$.item");
    json!({"StartAt": "Prepare", "States": {
        "Prepare": task("Prepare", "Flaky"),
        "Flaky": flaky,
        "Approve": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                    "Parameters": {"FunctionName": "Approve", "Payload": approve_payload},
                    "ResultPath": "$.Approve", "Next": "Grant"},
        "Grant": task("Grant", "Fan"),
        "Fan": {"Type": "Parallel", "Branches": [branch("Left"), branch("Right")],
                "ResultPath": "$.fan", "Next": "Each"},
        "Each": {"Type": "Map", "ItemsPath": "$.fan",
                 "ItemSelector": {"item.$": "$$.Map.Item.Index"},
                 "ItemProcessor": {"StartAt": "Item", "States": {"Item": {"Type": "Task",
                     "Resource": "arn:aws:states:::lambda:invoke",
                     "Parameters": {"FunctionName": "Item", "Payload": item_payload},
                     "End": true}}},
                 "ResultPath": "$.each", "Next": "Record"},
        "Record": task("Record", "Hold"),
        "Hold": {"Type": "Wait", "Seconds": 1, "Next": "Revoke"},
        "Revoke": task("Revoke", "Done"),
        "Done": {"Type": "Succeed"}
    }})
}

/// A small deterministic generator (xorshift64*), so the kill instants
/// follow from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Appends whole lines to a file opened for appending: each line is one
/// `write`, which a SIGKILL cannot tear.
fn append(file: &std::fs::File, line: &str) {
    (&*file)
        .write_all(line.as_bytes())
        .expect("side file written");
}

fn open_append(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("side file opens")
}

/// The child's tasks: record the invocation, take a little while (so kills
/// land mid-task), record the effect. `Flaky` fails its first attempt;
/// `Approve` hands its token to an approver that answers it shortly after.
struct SideEffects {
    effects: std::fs::File,
    tokens: std::fs::File,
    engine: OnceLock<Engine>,
}

#[async_trait]
impl TaskInvoker for SideEffects {
    async fn invoke(&self, _f: &str, _p: Value) -> Result<Value, TaskError> {
        unreachable!("the engine calls invoke_task")
    }

    async fn invoke_task(&self, call: TaskCall<'_>, payload: Value) -> Result<Value, TaskError> {
        let attempt = payload["attempt"].as_u64().unwrap_or(99);
        let state = match payload.get("item") {
            Some(i) => format!("{}{i}", call.state),
            None => call.state.to_string(),
        };
        let what = format!("{} {state} {attempt}", call.execution_name);
        append(&self.effects, &format!("I {what}\n"));
        let pause = (what.len() as u64 * 7 + attempt * 13 + std::process::id() as u64) % 4;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if let Some(token) = call.task_token {
            append(&self.tokens, &format!("{token}\n"));
            let engine = self.engine.get().expect("engine set").clone();
            let token = token.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                answer(&engine, &token);
            });
        }
        append(&self.effects, &format!("C {what}\n"));
        if call.state == "Flaky" && attempt == 0 {
            return Err(TaskError::new("Transient", "the first attempt fails"));
        }
        Ok(json!({"done": call.state}))
    }
}

/// Approves; an answer for a token already answered (or gone) is fine.
fn answer(engine: &Engine, token: &str) {
    match engine.send_task_success(token, json!({"approved": true})) {
        Ok(())
        | Err(
            EngineError::TaskTimedOut | EngineError::TaskDoesNotExist | EngineError::InvalidToken,
        ) => {}
        Err(e) => panic!("answering a token: {e}"),
    }
}

fn open_engine(dir: &Path, invoker: Arc<dyn TaskInvoker>) -> Engine {
    Engine::open(
        EngineDb::open(dir.join("engine.db")).expect("engine db opens"),
        Definitions::new().with(common::MACHINE, common::load(&definition())),
        invoker,
        Arc::new(SystemClock),
    )
    .expect("engine opens")
}

/// The child process's body, run by [`a_killed_engine_resumes_each_execution_at_most_one_task_back`]
/// as `<this test binary> crash::crash_child --exact --ignored` with `JIT_ENGINE_CRASH_DIR` set; it
/// is not a test of its own. It resumes whatever the last child left,
/// starts the executions not started yet, answers every token handed out
/// before (their approver died with the last process), and exits once all
/// executions have closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of a_killed_engine_resumes_each_execution_at_most_one_task_back"]
async fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        eprintln!("crash_child runs only as the child of the crash test");
        return;
    };
    let invoker = Arc::new(SideEffects {
        effects: open_append(&dir.join("effects.log")),
        tokens: open_append(&dir.join("tokens.log")),
        engine: OnceLock::new(),
    });
    let engine = open_engine(&dir, invoker.clone());
    let _ = invoker.engine.set(engine.clone());
    engine.resume().expect("resume");
    let _driver = engine.spawn_driver();
    let handed_out = std::fs::read_to_string(dir.join("tokens.log")).unwrap_or_default();
    for token in handed_out.lines().filter(|l| !l.is_empty()) {
        answer(&engine, token);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..EXECUTIONS {
        // One new execution every 10 ms, so kills find them at every stage.
        match engine.start_execution(common::MACHINE, &format!("e{i}"), json!({"n": i})) {
            Ok(s) if !s.already_running => tokio::time::sleep(Duration::from_millis(10)).await,
            Ok(_) | Err(EngineError::ExecutionAlreadyExists(_)) => {}
            Err(e) => panic!("starting e{i}: {e}"),
        }
    }
    loop {
        let open = (0..EXECUTIONS)
            .filter(|i| {
                engine
                    .describe_execution(&format!("e{i}"))
                    .expect("described")
                    .status
                    == ExecutionStatus::Running
            })
            .count();
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{open} executions still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills the child on drop, so a failing parent leaves no process behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(dir: &Path) -> ChildGuard {
    let exe = std::env::current_exe().expect("the test binary's path");
    let stderr = open_append(&dir.join("child-stderr.log"));
    let child = Command::new(exe)
        .args([
            "crash::crash_child",
            "--exact",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("the child starts");
    ChildGuard(child)
}

/// Position of a task attempt in an execution: (task index, attempt).
fn key(state: &str, attempt: u64) -> (usize, u64) {
    let i = TASKS
        .iter()
        .position(|t| *t == state)
        .unwrap_or_else(|| panic!("unknown task {state}"));
    (i, attempt)
}

/// What the side file shows: the violations of the invariant, how many
/// invocations repeated one already made, and how many executions lived
/// through more than one process.
struct Audit {
    violations: Vec<String>,
    repeated: usize,
    spanning: usize,
}

fn audit(effects: &str) -> Audit {
    let mut done: HashMap<&str, (usize, u64)> = HashMap::new();
    let mut invoked: HashMap<(&str, (usize, u64)), usize> = HashMap::new();
    let mut lives: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut violations = vec![];
    let mut life = 0;
    for line in effects.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["R", _] => life += 1,
            [kind @ ("I" | "C"), exec, state, attempt] => {
                let k = key(state, attempt.parse().expect("attempt"));
                let seen = lives.entry(exec).or_default();
                if seen.last() != Some(&life) {
                    seen.push(life);
                }
                if *kind == "C" {
                    let d = done.entry(exec).or_insert(k);
                    *d = (*d).max(k);
                    continue;
                }
                *invoked.entry((exec, k)).or_default() += 1;
                if let Some(&d) = done.get(exec)
                    && k < d
                {
                    violations.push(format!(
                        "process {life}: {exec} invoked {state}#{attempt} after {}#{} had completed",
                        TASKS[d.0], d.1
                    ));
                }
            }
            other => panic!("unexpected line in the side file: {other:?}"),
        }
    }
    Audit {
        violations,
        repeated: invoked.values().map(|n| n - 1).sum(),
        spanning: lives.values().filter(|l| l.len() > 1).count(),
    }
}

#[test]
fn a_killed_engine_resumes_each_execution_at_most_one_task_back() {
    for seed in [0x9E37_79B9_7F4A_7C15u64, 0xD1B5_4A32_D192_ED03] {
        let dir = tempfile::tempdir().unwrap();
        let effects_path = dir.path().join("effects.log");
        let mut rng = Rng(seed);
        // GIVEN a child driving 100 executions, killed with SIGKILL at a
        // random instant, 15 times
        let mut kills = 0;
        for life in 0..15 {
            append(&open_append(&effects_path), &format!("R {life}\n"));
            let mut child = spawn_child(dir.path());
            let at = Instant::now() + Duration::from_millis(rng.between(40, 400));
            while Instant::now() < at && child.0.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(2));
            }
            if child.0.try_wait().unwrap().is_some() {
                break; // everything finished before this kill
            }
            child.0.kill().unwrap();
            child.0.wait().unwrap();
            kills += 1;
        }
        // WHEN a last child runs to the end
        append(&open_append(&effects_path), "R last\n");
        let mut last = spawn_child(dir.path());
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(s) = last.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the last child did not finish");
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(dir.path().join("child-stderr.log")).unwrap();
        assert!(status.success(), "the last child failed: {stderr}");
        // THEN no execution ever went back before a task whose effect was done
        let effects = std::fs::read_to_string(&effects_path).unwrap();
        let a = audit(&effects);
        assert!(
            a.violations.is_empty(),
            "seed {seed:#x}: {} invocations went back past a completed task:\n{}",
            a.violations.len(),
            a.violations.join("\n")
        );
        // AND the kills did interrupt executions (the test is not vacuous)
        assert!(kills >= 5, "seed {seed:#x}: only {kills} kills");
        assert!(
            a.spanning > 0,
            "seed {seed:#x}: no execution lived through a kill"
        );
        // AND every execution finished the whole chain, each task done
        let engine = open_engine(dir.path(), common::Scripted::new());
        for i in 0..EXECUTIONS {
            let name = format!("e{i}");
            let d = engine.describe_execution(&name).unwrap();
            assert_eq!(d.status, ExecutionStatus::Succeeded, "{name}: {d:?}");
            assert_eq!(engine.states_entered(&name).unwrap(), STATES, "{name}");
            for task in TASKS {
                let attempt = if task == "Flaky" { 1 } else { 0 };
                let line = format!("C {name} {task} {attempt}\n");
                assert!(effects.contains(&line), "{name}: no `{}`", line.trim());
            }
        }
        eprintln!(
            "seed {seed:#x}: {kills} kills, {} executions spanned processes, {} invocations repeated",
            a.spanning, a.repeated
        );
    }
}
