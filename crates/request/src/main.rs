//! `request` Lambda entry point: build the dependencies once at init, then
//! hand each event to the shared handler.

use std::sync::Arc;

use jit_core::ports::SystemClock;
use jit_core::service::Settings;
use jit_core::{Broker, Catalog};
use lambda_http::{Request, service_fn};
use request::config::Config;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    jit_lambda::logging::init();
    let cfg = Config::from_lookup(|k| std::env::var(k).ok())?;
    let text = std::fs::read_to_string(&cfg.catalog_path).map_err(|e| {
        format!(
            "JIT_CATALOG: cannot read {}: {e}",
            cfg.catalog_path.display()
        )
    })?;
    let catalog = Catalog::parse(&text, &cfg.catalog_path.display().to_string())?;

    let state_machine = jit_aws::StateMachineArn::parse(cfg.state_machine_arn.clone())
        .map_err(|e| format!("JIT_STATE_MACHINE_ARN: {e}"))?;
    let sdk = jit_aws::sdk::lambda_config();
    let store = jit_aws::DynamoStore::from_config(
        &sdk,
        jit_aws::TableNames::new(cfg.table.clone(), cfg.audit_table.clone()),
    );
    let workflow = jit_aws::SfnWorkflow::from_config(&sdk, state_machine).without_execution_state();
    let clock = Arc::new(SystemClock);
    let grants = jit_core::grant_ports::GrantPorts {
        issuer: Arc::new(jit_aws::StsIssuer::from_config(&sdk)),
        iam: jit_lambda::grant_iam(&sdk, &cfg.ledger_table, clock.clone()),
        console: Arc::new(
            jit_aws::FederationSignin::new(&cfg.federation_url)
                .map_err(|e| format!("JIT_FEDERATION_URL: {e}"))?,
        ),
        inspector: Some(Arc::new(
            jit_aws::IamInspector::from_config(&sdk).roles_only(),
        )),
        session_cap_secs: jit_core::grant_ports::CHAINED_SESSION_CAP_SECS,
    };
    let broker = Broker {
        store: Arc::new(store),
        workflow: Arc::new(workflow),
        catalog: Arc::new(catalog),
        clock,
        settings: Settings {
            demo_mode: cfg.demo_mode,
        },
        grants: Some(Arc::new(grants)),
    };
    let broker = &broker;
    let trust = &cfg.trust;
    lambda_http::run(service_fn(move |event: Request| async move {
        Ok::<_, std::convert::Infallible>(request::handle(broker, trust, event).await)
    }))
    .await
}
