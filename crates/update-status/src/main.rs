//! `update-status` Lambda: a guarded status transition plus its audit event (the state machine's Validate, RecordGranted, RecordTimedOut and RecordFailed steps).
//!
//! A thin adapter: the step itself is `jit_core::tasks::Tasks::update_status`, the
//! same function `jit-local`'s engine calls in-process. Errors carry the
//! stable `errorType`s the state machine matches. (GeneratePolicy is the
//! `generate-policy` function's.)

use jit_lambda::{TaskFailure, tasks_from_env};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    jit_lambda::logging::init();
    let tasks = tasks_from_env().await?;
    let tasks = &tasks;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        tasks
            .update_status(event.payload)
            .await
            .map_err(TaskFailure)
    }))
    .await
}
