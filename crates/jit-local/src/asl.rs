//! `jit-local asl run`: the local engine as a tool for anyone debugging a
//! state machine. Runs a definition once with canned task answers and prints
//! what happened, as JSON.

use std::path::PathBuf;

use jit_engine::{CannedTasks, ExecutionStatus, run_with_canned_tasks};
use serde_json::Value;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The definition (Amazon States Language JSON).
    pub definition: PathBuf,
    /// The execution input: JSON text, or `@path` to read it from a file.
    #[arg(long, default_value = "{}")]
    pub input: String,
    /// Canned task answers: `{"<State>": [{"output": …} | {"error": "E", "cause": "C"} | {"timeout": true}, …]}`.
    /// A Lambda task's `output` is the function's return value or AWS's
    /// whole `lambda:invoke` response (`Payload`, `StatusCode`, …), used as is.
    /// Without an answer a task returns its input, as moto does.
    #[arg(long)]
    pub tasks: Option<PathBuf>,
    /// A `${NAME}` substitution, `NAME=VALUE` (repeatable). Placeholders
    /// without one are replaced by their own name.
    #[arg(long = "sub", value_name = "NAME=VALUE")]
    pub substitutions: Vec<String>,
}

fn fail(msg: String) -> i32 {
    eprintln!("jit-local asl run: {msg}");
    2
}

/// The `${NAME}` placeholders in a definition text.
fn placeholders(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(end) => {
                out.push(after[..end].to_string());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// Runs and prints; returns the process exit code: 0 when the execution
/// succeeded, 1 when it failed, timed out or was aborted, 2 when the
/// arguments or files are wrong.
pub async fn run(args: RunArgs) -> i32 {
    let def_name = args.definition.display().to_string();
    let definition = match std::fs::read_to_string(&args.definition) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read the definition {def_name}: {e}")),
    };
    let input_text = match args.input.strip_prefix('@') {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return fail(format!("cannot read the input {path}: {e}")),
        },
        None => args.input.clone(),
    };
    let input: Value = match serde_json::from_str(&input_text) {
        Ok(v) => v,
        Err(e) => {
            return fail(format!(
                "--input is not JSON (line {}, column {}): {e}; pass JSON text or @file",
                e.line(),
                e.column()
            ));
        }
    };
    let mut canned = match &args.tasks {
        None => CannedTasks::new(),
        Some(path) => match std::fs::read_to_string(path) {
            Err(e) => {
                return fail(format!(
                    "cannot read the tasks file {}: {e}",
                    path.display()
                ));
            }
            Ok(text) => match CannedTasks::from_json(&text) {
                Ok(c) => c,
                Err(e) => return fail(format!("{}: {e}", path.display())),
            },
        },
    };
    let mut subs = jit_engine::Substitutions::new();
    for name in placeholders(&definition) {
        subs.insert(name.clone(), name);
    }
    for pair in &args.substitutions {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                subs.insert(k.to_string(), v.to_string());
            }
            _ => return fail(format!("--sub `{pair}` must be NAME=VALUE")),
        }
    }
    canned = canned.with_substitutions(subs);
    let report = match run_with_canned_tasks(&definition, input, canned).await {
        Ok(r) => r,
        Err(e) => return fail(format!("{def_name}: {e}")),
    };
    match serde_json::to_string_pretty(&report) {
        Ok(text) => println!("{text}"),
        Err(e) => return fail(format!("cannot print the report: {e}")),
    }
    if report.status == ExecutionStatus::Succeeded {
        0
    } else {
        1
    }
}
