//! `expire` Lambda: two event sources, one job — end grants.
//!
//! - From the state machine's Revoke step (`{"requestId"}`): detach in
//!   attach mode and record EXPIRED (`jit_core::tasks::Tasks::revoke`).
//! - From the requests table's stream: DynamoDB TTL deletes items days late,
//!   so for each TTL `REMOVE` it revokes anything still live and records the
//!   removal (`Tasks::expired_by_ttl`). The backstop, not the clock.
//! - From an EventBridge schedule, every minute (`{"sweep": "scheduled"}`;
//!   `"revocations"`, the earlier name, does the same): starts the workflow
//!   of any request left without one (`Broker::recover_workflows`), places
//!   the early-revoke denies not yet on their role and removes those no
//!   session can need any more (`Tasks::sweep_revocations`), then runs the
//!   reconciler (`Tasks::reconcile`), which lists IAM itself; last, used vs
//!   granted: the CloudTrail calls of assume-role grants that ended at least
//!   30 minutes ago, recorded as `usage` audit events
//!   (`jit_core::usage::UsageCollector`).

use std::sync::Arc;

use jit_lambda::{TaskFailure, recovery_broker_from_env, tasks_from_env, ttl_removals};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};

/// The used-vs-granted pass's share of the sweep's 60 s timeout.
const USAGE_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    jit_lambda::logging::init();
    let mut tasks = tasks_from_env().await?;
    // Only this Lambda lists IAM (for the reconciler).
    tasks.iam = tasks
        .iam
        .clone()
        .with_inventory(Arc::new(jit_aws::IamLister::from_config(
            &jit_aws::sdk::lambda_config(),
        )));
    let broker = recovery_broker_from_env(&tasks)?;
    // Only this Lambda reads CloudTrail (LookupEvents).
    let usage_source = jit_aws::CloudTrailUsage::from_config(&jit_aws::sdk::lambda_config());
    let collector = jit_core::usage::UsageCollector::new();
    let (tasks, broker, usage_source, collector) = (&tasks, &broker, &usage_source, &collector);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if let Some("scheduled" | "revocations") = event.payload.get("sweep").and_then(Value::as_str) {
            // Requests left without a workflow first (a lost start, an
            // approval that never reached its task).
            let workflows = match broker {
                Some(b) => match b.recover_workflows(false).await {
                    Ok(report) => json!(report),
                    Err(e) => {
                        tracing::warn!(error = %e, "the workflow reconcile pass failed");
                        json!({ "error": e.to_string() })
                    }
                },
                None => {
                    tracing::warn!("JIT_STATE_MACHINE_ARN is not set: requests left without a workflow are not reconciled");
                    Value::Null
                }
            };
            // Both run even if the first fails; either failing fails the
            // invocation (the next minute's runs again).
            let swept = tasks.sweep_revocations().await;
            let reconciled = tasks.reconcile(false).await;
            // Used vs granted never fails the sweep (revoking is its job):
            // a failure is logged and retried next minute. Bounded in time
            // so it cannot eat the function's timeout; a usage event is one
            // write, so stopping between two is safe.
            let usage = match tokio::time::timeout(
                USAGE_BUDGET,
                collector.collect(tasks.store.as_ref(), usage_source, tasks.clock.now()),
            )
            .await
            {
                Ok(Ok(report)) => json!(report),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the used-vs-granted pass failed");
                    json!({ "error": e.to_string() })
                }
                Err(_) => {
                    tracing::warn!("the used-vs-granted pass ran out of time; the rest waits for the next sweep");
                    json!({ "error": "out of time" })
                }
            };
            let swept = swept.map_err(TaskFailure)?;
            let reconciled = reconciled.map_err(TaskFailure)?;
            return Ok(json!({
                "placed": swept.placed,
                "removed": swept.removed,
                "failed": swept.failed,
                "reconcile": reconciled,
                "workflows": workflows,
                "usage": usage,
            }));
        }
        if event.payload.get("Records").is_none() {
            return tasks.revoke(event.payload).await.map_err(TaskFailure);
        }
        let removed = ttl_removals(&event.payload)
            .map_err(|e| TaskFailure(jit_core::tasks::TaskError::InvalidInput(e)))?;
        for request in &removed {
            // A failure fails the batch: the stream redelivers it, and the
            // steps are idempotent.
            tasks.expired_by_ttl(request).await.map_err(TaskFailure)?;
            tracing::info!(request_id = %request.request_id, status = %request.status, "TTL removal handled");
        }
        Ok(json!({ "handled": removed.len() }))
    }))
    .await
}
