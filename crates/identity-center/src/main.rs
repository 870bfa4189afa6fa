//! `identity-center` Lambda: IAM Identity Center for the other functions.
//!
//! The only function that links `aws-sdk-ssoadmin` and
//! `aws-sdk-identitystore` (together they took `expire`, `request` and
//! `access` over the 6 MB Lambda target). The task functions and the HTTP
//! API functions invoke it synchronously through
//! `jit_aws::LambdaIdentityCenter`; it answers one port call per event
//! (`jit_aws::identity_center_fn::serve`, the protocol's one handler).
//!
//! It makes no decision and writes no ledger entry: the caller's grant
//! ledger records every change before the invoke and completes it after.
//! Deployed twice from this binary: `JIT_IDENTITY_CENTER_MODE=assignments`
//! (the task functions'; its role may make and remove assignments) and
//! `directory` (the API functions'; Identity Store reads only).

use jit_aws::identity_center::IdentityCenterClient;
use jit_aws::identity_center_fn::{MODE_VAR, Mode, PERMANENT, Ports, serve};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    jit_lambda::logging::init();
    let mode = Mode::parse(std::env::var(MODE_VAR).ok().as_deref())?;
    let cfg = jit_lambda::TaskConfig::from_lookup(|k| std::env::var(k).ok())?;
    let catalog = jit_lambda::load_catalog(&cfg.catalog_path)?;
    let sdk = jit_aws::sdk::lambda_config();
    // Deployed only when the stack names an instance; a catalog without
    // one is a mismatch every call reports (permanent, so steps fail
    // rather than retry), said once here at init.
    let client = match catalog.identity_center() {
        Some(idc) => Some(IdentityCenterClient::new(&sdk, idc)),
        None => {
            tracing::error!(
                catalog = %cfg.catalog_path.display(),
                "the catalog has no identity_center block: every call is refused"
            );
            None
        }
    };
    let client = &client;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let Some(client) = client else {
            return Err(Diagnostic {
                error_type: PERMANENT.to_string(),
                error_message:
                    "this deployment's catalog names no Identity Center instance (identity_center)"
                        .to_string(),
            });
        };
        let ports = Ports {
            manager: client,
            provisioning: client,
            directory: client,
        };
        serve(&ports, mode, event.payload)
            .await
            .map_err(|e| Diagnostic {
                error_type: e.error_type.to_string(),
                error_message: e.message,
            })
    }))
    .await
}
