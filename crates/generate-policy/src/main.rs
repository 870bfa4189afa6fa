//! `generate-policy` Lambda: the state machine's GeneratePolicy step. A
//! request's `scope` (or its entitlement's fixed `session_policy:`) is
//! turned into a validated session policy, recorded with the
//! VALIDATING -> POLICY_GENERATION transition.
//!
//! A function of its own, apart from `update-status`: it carries the IAM
//! action table (0.8 MB), the Bedrock and Access Analyzer clients (the
//! three would take `update-status` past the 6 MB budget), and it reads
//! untrusted text (a requester's words, a model's answer), so it holds no
//! IAM write permission: only the request store, `bedrock:InvokeModel` on
//! the configured model, `access-analyzer:ValidatePolicy` and read access
//! to the grantable roles' policies. The step is
//! `jit_core::policy_step::PolicyStep::generate_policy`, the same function
//! `jit-local`'s engine calls in-process. It also answers the `request`
//! function's `{"generate": …}` events (`jit_aws::policy_fn`): a scope
//! checked at create, or previewed, with the same generators.

use std::sync::Arc;

use jit_core::policy::{PolicyAnalyzer, PolicyDrafter};
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
    // Scopes in words: Bedrock Converse when JIT_BEDROCK_MODEL_ID is set (a
    // bad JIT_BEDROCK_* value stops the function at init).
    let ai: Option<Arc<dyn PolicyDrafter>> = match jit_aws::bedrock::BedrockConfig::from_env() {
        Ok(Some(c)) => Some(Arc::new(jit_aws::bedrock::BedrockDrafter::new(&sdk, c))),
        Ok(None) => None,
        Err(e) => return Err(e.into()),
    };
    // Every generated policy is also checked by IAM Access Analyzer
    // (`JIT_ACCESS_ANALYZER=off` turns that off).
    let analyzer: Option<Arc<dyn PolicyAnalyzer>> =
        if jit_aws::analyzer::AccessAnalyzer::enabled_by_env()? {
            Some(Arc::new(jit_aws::analyzer::AccessAnalyzer::from_config(
                &sdk,
            )))
        } else {
            None
        };
    let step = jit_core::policy_step::PolicyStep {
        store: Arc::new(jit_aws::DynamoStore::from_config(
            &sdk,
            jit_aws::TableNames::new(cfg.table, cfg.audit_table),
        )),
        catalog: Arc::new(catalog),
        clock: Arc::new(SystemClock),
        generator: Arc::new(jit_policy::Generators::new(ai).with_analyzer(analyzer)),
        // A role entitlement without `ceiling:` is bounded by what its own
        // policies allow, where this function may read them.
        ceilings: Some(Arc::new(jit_aws::ceiling::IamCeilings::from_config(&sdk))),
    };
    let step = &step;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // The `request` function checking a scope at create (or a
        // preview): generate and answer, store nothing.
        if let Some(answer) =
            jit_aws::policy_fn::serve(step.generator.as_ref(), &event.payload).await
        {
            return Ok(answer);
        }
        step.generate_policy(event.payload)
            .await
            .map_err(TaskFailure)
    }))
    .await
}
