//! `audit-export` Lambda: the audit table's stream (new events) to S3 as
//! JSON lines partitioned by UTC day (`audit/day=YYYY-MM-DD/…`), which the
//! Glue table and the Athena named queries in `template.yaml` read. Only
//! deployed when the template's `AthenaExport` parameter is `true`.
//!
//! A failed put fails the batch: the stream redelivers it, and the same
//! events make the same object keys (`jit_core::export::objects`), so a
//! retry overwrites rather than duplicates.

use jit_core::export::ObjectSink;
use jit_lambda::{TaskFailure, audit_inserts};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    jit_lambda::logging::init();
    let bucket = std::env::var("JIT_EXPORT_BUCKET")
        .map_err(|_| "JIT_EXPORT_BUCKET is not set: the bucket the audit lines go to")?;
    let sink = jit_aws::export::S3Sink::from_config(&jit_aws::sdk::lambda_config(), bucket);
    let sink = &sink;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let events = audit_inserts(&event.payload)
            .map_err(|e| TaskFailure(jit_core::tasks::TaskError::InvalidInput(e)))?;
        let objects = jit_core::export::objects(&events);
        for (key, body) in &objects {
            sink.put(key, body.clone()).await.map_err(|e| {
                tracing::error!(key = %key, error = %e, "could not write exported audit lines");
                TaskFailure(jit_core::tasks::TaskError::Transient(e))
            })?;
        }
        tracing::info!(
            events = events.len(),
            objects = objects.len(),
            "audit events exported"
        );
        Ok::<_, TaskFailure>(json!({ "events": events.len(), "objects": objects.len() }))
    }))
    .await
}
