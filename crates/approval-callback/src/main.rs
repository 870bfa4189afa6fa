//! `approval-callback` Lambda entry point: build the dependencies once at
//! init (secrets read once), then hand each event to the shared handler.

use std::sync::Arc;

use approval_callback::Config;
use jit_approvals::{Approvals, Deferral};
use jit_core::Broker;
use jit_core::ports::SystemClock;
use jit_core::service::Settings;
use lambda_http::{Request, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    jit_lambda::logging::init();
    let cfg = Config::from_lookup(|k| std::env::var(k).ok())?;
    let sdk = jit_aws::sdk::lambda_config();
    // `idc:` groups (approvers) through the identity-center `directory`
    // function.
    let catalog = Arc::new(jit_lambda::with_group_directory(
        jit_lambda::load_catalog(&cfg.catalog_path)?,
        &sdk,
    ));
    let state_machine = jit_aws::StateMachineArn::parse(cfg.state_machine_arn.clone())
        .map_err(|e| format!("JIT_STATE_MACHINE_ARN: {e}"))?;
    let store: Arc<dyn jit_core::RequestStore> = Arc::new(jit_aws::DynamoStore::from_config(
        &sdk,
        jit_aws::TableNames::new(cfg.table.clone(), cfg.audit_table.clone()),
    ));
    let clock: Arc<dyn jit_core::Clock> = Arc::new(SystemClock);
    let channels = jit_lambda::approvals::channels_from_env(
        &cfg.approvals,
        &sdk,
        store.clone(),
        catalog.clone(),
        clock.clone(),
    )
    .await?;
    let broker = Broker {
        store,
        workflow: Arc::new(
            jit_aws::SfnWorkflow::from_config(&sdk, state_machine).without_history(),
        ),
        catalog,
        clock,
        settings: Settings::default(),
        grants: None,
        policy: None,
    };
    let app = Arc::new(Approvals {
        broker,
        notifier: channels.notifier,
        slack_signing_secret: channels.slack_signing_secret,
        deferral: Deferral::Remote(Arc::new(jit_aws::LambdaDeferrer::from_config(
            &sdk,
            cfg.function_name.clone(),
        ))),
    });
    let app = &app;
    lambda_http::run(service_fn(move |event: Request| async move {
        Ok::<_, std::convert::Infallible>(approval_callback::handle(app, event).await)
    }))
    .await
}
