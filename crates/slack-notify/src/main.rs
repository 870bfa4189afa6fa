//! `slack-notify` Lambda: the approval fan-out (waitForTaskToken): stores the
//! task token on the request and tells the approvers — in Slack and by
//! email (`jit_approvals::ApprovalNotifier`). Invoked by a schedule instead
//! (`{"jitSweep": true}` or an EventBridge "Scheduled Event"), it sends the
//! due reminders and shows decided outcomes on Slack messages.
//!
//! A thin adapter: the step itself is `jit_core::tasks::Tasks::request_approval`,
//! the same function `jit-local`'s engine calls in-process. Errors carry the
//! stable `errorType`s the state machine matches.

use std::sync::Arc;

use jit_lambda::{TaskFailure, tasks_from_env};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};

/// Whether the event is the reminder schedule rather than the workflow.
fn is_sweep(event: &Value) -> bool {
    event.get("jitSweep").and_then(Value::as_bool) == Some(true)
        || event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    jit_lambda::logging::init();
    let mut tasks = tasks_from_env().await?;
    let env = jit_lambda::approvals::ApprovalsEnv::from_lookup(|k| std::env::var(k).ok())?;
    let sdk = jit_aws::sdk::lambda_config();
    let channels = jit_lambda::approvals::channels_from_env(
        &env,
        &sdk,
        tasks.store.clone(),
        tasks.catalog.clone(),
        tasks.clock.clone(),
    )
    .await?;
    let notifier = channels.notifier;
    tasks.notifier = Arc::new(notifier.clone());
    let (tasks, notifier) = (&tasks, &notifier);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if is_sweep(&event.payload) {
            let report = jit_approvals::reminders::sweep(notifier)
                .await
                .map_err(|e| TaskFailure(jit_core::tasks::TaskError::from(e)))?;
            tracing::info!(
                reminded = report.reminded,
                outcomes_shown = report.outcomes_shown,
                failures = report.failures,
                "reminder sweep"
            );
            return Ok(
                json!({ "reminded": report.reminded, "outcomesShown": report.outcomes_shown }),
            );
        }
        tasks
            .request_approval(event.payload)
            .await
            .map_err(TaskFailure)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_told_from_the_workflow() {
        assert!(is_sweep(&json!({"jitSweep": true})));
        assert!(is_sweep(
            &json!({"detail-type": "Scheduled Event", "source": "aws.events"})
        ));
        assert!(!is_sweep(&json!({"requestId": "01J", "taskToken": "t"})));
    }
}
