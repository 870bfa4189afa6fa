//! `update-status` Lambda: a guarded status transition plus its audit event (the state machine's Validate, RecordGranted, RecordTimedOut and RecordFailed steps).
//!
//! A thin adapter: the step itself is `jit_core::tasks::Tasks::update_status`, the
//! same function `jit-local`'s engine calls in-process. Errors carry the
//! stable `errorType`s the state machine matches.

use jit_lambda::{TaskFailure, tasks_from_env};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    jit_lambda::logging::init();
    let tasks = tasks_from_env().await?;
    // The GeneratePolicy step (payload `to: POLICY_GENERATION`) runs here
    // too, with the deterministic generator and its embedded action table,
    // and Bedrock Converse for scopes in words when `JIT_BEDROCK_MODEL_ID`
    // is set (a bad JIT_BEDROCK_* value stops the function at init).
    // One SDK configuration for the clients below (the tasks built their own).
    let sdk = jit_aws::sdk::lambda_config();
    let ai: Option<std::sync::Arc<dyn jit_core::policy::PolicyDrafter>> =
        match jit_aws::bedrock::BedrockConfig::from_env() {
            Ok(Some(c)) => Some(std::sync::Arc::new(jit_aws::bedrock::BedrockDrafter::new(
                &sdk, c,
            ))),
            Ok(None) => None,
            Err(e) => return Err(e.into()),
        };
    // Every generated policy is also checked by IAM Access Analyzer
    // (`JIT_ACCESS_ANALYZER=off` turns that off).
    let analyzer: Option<std::sync::Arc<dyn jit_core::policy::PolicyAnalyzer>> =
        if jit_aws::analyzer::AccessAnalyzer::enabled_by_env()? {
            Some(std::sync::Arc::new(
                jit_aws::analyzer::AccessAnalyzer::from_config(&sdk),
            ))
        } else {
            None
        };
    let policy = jit_core::policy_step::PolicyStep {
        store: tasks.store.clone(),
        catalog: tasks.catalog.clone(),
        clock: tasks.clock.clone(),
        generator: std::sync::Arc::new(jit_policy::Generators::new(ai).with_analyzer(analyzer)),
        // A role entitlement without `ceiling:` is bounded by what its own
        // policies allow, where the broker may read them.
        ceilings: Some(std::sync::Arc::new(
            jit_aws::ceiling::IamCeilings::from_config(&sdk),
        )),
    };
    let (tasks, policy) = (&tasks, &policy);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if event.payload.get("to").and_then(Value::as_str) == Some("POLICY_GENERATION") {
            return policy
                .generate_policy(event.payload)
                .await
                .map_err(TaskFailure);
        }
        tasks
            .update_status(event.payload)
            .await
            .map_err(TaskFailure)
    }))
    .await
}
