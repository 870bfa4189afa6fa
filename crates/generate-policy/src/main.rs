//! `generate-policy` Lambda: the state machines' GeneratePolicy step.
//!
//! A function of its own because of what it links: the IAM action table
//! (`jit-policy`, ~0.8 MB of text) and, later, the generators' SDK clients.
//! In `update-status` they pushed that function past the 6 MB binary target
//! once it also carried the Identity Center adapter; here they sit beside
//! only the request store. A thin adapter: the step is
//! `jit_core::policy_step::PolicyStep::generate_policy`, the same one
//! `jit-local`'s engine calls in process.

use std::sync::Arc;

use jit_core::ports::SystemClock;
use jit_lambda::{TaskConfig, TaskFailure, load_catalog};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    jit_lambda::logging::init();
    let cfg = TaskConfig::from_lookup(|k| std::env::var(k).ok())?;
    let catalog = load_catalog(&cfg.catalog_path)?;
    let sdk = jit_aws::sdk::lambda_config();
    let step = jit_core::policy_step::PolicyStep {
        store: Arc::new(jit_aws::DynamoStore::from_config(
            &sdk,
            jit_aws::TableNames::new(cfg.table, cfg.audit_table),
        )),
        catalog: Arc::new(catalog),
        clock: Arc::new(SystemClock),
        generator: Arc::new(jit_policy::Deterministic),
    };
    let step = &step;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        step.generate_policy(event.payload)
            .await
            .map_err(TaskFailure)
    }))
    .await
}
