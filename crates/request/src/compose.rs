//! The API Lambdas' composition roots. Three functions serve the HTTP API:
//! `request` (the request lifecycle: create, list, read, decide, cancel),
//! `access` (the grant routes: credentials, console, revoke, extensions)
//! and `catalog-check` (`GET /catalog/check`, read-only IAM). Only `access`
//! holds grant ports that act — STS, IAM, the federation endpoint — so the
//! most called function can neither vend credentials nor change IAM, its
//! role has no such permission, and its binary links none of that code;
//! the catalog check's IAM reads live apart so that `access` stays under
//! the 6 MB Lambda target too.

use std::sync::Arc;

use aws_types::SdkConfig;
use jit_core::RequestId;
use jit_core::grant_ports::GrantPorts;
use jit_core::ports::{Clock, SystemClock, Workflow, WorkflowError, WorkflowInput};
use jit_core::request::TaskToken;
use jit_core::service::Settings;
use jit_core::{Broker, Catalog};
use lambda_http::{Request, service_fn};

use crate::config::Config;

/// Logging, configuration and the SDK settings, once at init.
pub fn init() -> Result<(Config, SdkConfig), lambda_http::Error> {
    jit_lambda::logging::init();
    let cfg = Config::from_lookup(|k| std::env::var(k).ok())?;
    Ok((cfg, jit_aws::sdk::lambda_config()))
}

/// `request`'s broker: the DynamoDB store, the Step Functions workflow, the
/// catalog and (with `JIT_POLICY_FUNCTION`) the `generate-policy` function
/// as its policy generator, without grant ports. The grant routes answer
/// `503 grants_unavailable` on it (API Gateway sends them to `access`).
pub fn broker(cfg: &Config, sdk: &SdkConfig) -> Result<Broker, lambda_http::Error> {
    let state_machine = jit_aws::StateMachineArn::parse(cfg.state_machine_arn.clone())
        .map_err(|e| format!("JIT_STATE_MACHINE_ARN: {e}"))?;
    let instant = match &cfg.instant_state_machine_arn {
        Some(a) => Some(
            jit_aws::StateMachineArn::parse(a.clone())
                .map_err(|e| format!("JIT_INSTANT_STATE_MACHINE_ARN: {e}"))?,
        ),
        None => None,
    };
    let standard = jit_aws::SfnWorkflow::from_config(sdk, state_machine);
    let client = standard.client().clone();
    // A waiting create runs the Express instant workflow first.
    let workflow = jit_aws::SfnInstant::new(standard.without_execution_state(), client, instant);
    let mut broker = broker_with(
        cfg,
        sdk,
        Arc::new(dynamo_store(cfg, sdk)),
        Arc::new(workflow),
    )?;
    // A scope is checked at create (and previewed) by the generate-policy
    // function: the generators are not linked here.
    broker.policy = cfg.policy_function.as_ref().map(|f| {
        Arc::new(jit_aws::LambdaPolicyGenerator::from_config(
            sdk,
            f.clone(),
            cfg.policy_ai,
        )) as Arc<dyn jit_core::policy::PolicyGenerator>
    });
    Ok(broker)
}

/// `access`'s broker: the store, the catalog and the grant ports. The grant
/// routes start, stop and complete no workflow (a revoke ends the grant in
/// IAM and the record; the workflow's own Revoke step finds it ended), so
/// it holds no Step Functions client: [`NoWorkflow`] refuses every call.
/// (Creates stay on `request`: serving them here, so that a waiting create
/// could vend credentials in the same call, took this binary to 6.06 MB.)
pub fn grants_broker(cfg: &Config, sdk: &SdkConfig) -> Result<Broker, lambda_http::Error> {
    // Never a `dyn RequestStore` of the whole DynamoStore here: its vtable
    // would link every listing again.
    let store = Arc::new(GrantRoutesStore(dynamo_store(cfg, sdk)));
    let mut broker = broker_with(cfg, sdk, store, Arc::new(NoWorkflow))?;
    let grants = grant_ports(cfg, sdk, broker.clock.clone())?;
    broker.grants = Some(Arc::new(grants));
    Ok(broker)
}

fn broker_with(
    cfg: &Config,
    sdk: &SdkConfig,
    store: Arc<dyn jit_core::RequestStore>,
    workflow: Arc<dyn Workflow>,
) -> Result<Broker, lambda_http::Error> {
    Ok(Broker {
        store,
        workflow,
        catalog: Arc::new(load_catalog(cfg, sdk)?),
        clock: Arc::new(SystemClock),
        settings: Settings {
            demo_mode: cfg.demo_mode,
        },
        grants: None,
        policy: None,
    })
}

/// The catalog at `JIT_CATALOG`, with `idc:` groups read through the
/// identity-center `directory` function.
fn load_catalog(cfg: &Config, sdk: &SdkConfig) -> Result<Catalog, lambda_http::Error> {
    let text = std::fs::read_to_string(&cfg.catalog_path).map_err(|e| {
        format!(
            "JIT_CATALOG: cannot read {}: {e}",
            cfg.catalog_path.display()
        )
    })?;
    let catalog = Catalog::parse(&text, &cfg.catalog_path.display().to_string())?;
    Ok(jit_lambda::with_group_directory(catalog, sdk))
}

fn dynamo_store(cfg: &Config, sdk: &SdkConfig) -> jit_aws::DynamoStore {
    jit_aws::DynamoStore::from_config(
        sdk,
        jit_aws::TableNames::new(cfg.table.clone(), cfg.audit_table.clone()),
    )
}

/// `access`'s store: the DynamoDB store without the listings by time the
/// grant routes never make (`list_all`, `audit_events_between`, their
/// digests answer the port's "cannot" default). A `dyn RequestStore` links
/// every method it forwards, and those listings (the admin listing's index
/// choice, the audit index by day) are code `access` does not need: leaving
/// them out keeps the function under the 6 MB target with the catalog
/// check's IAM reads (see docs/ARCHITECTURE.md).
pub struct GrantRoutesStore(pub jit_aws::DynamoStore);

#[async_trait::async_trait]
impl jit_core::RequestStore for GrantRoutesStore {
    async fn create(
        &self,
        request: &jit_core::AccessRequest,
        event: &jit_core::AuditEvent,
    ) -> Result<jit_core::ports::CreateOutcome, jit_core::ports::StoreError> {
        self.0.create(request, event).await
    }
    async fn get(
        &self,
        id: &RequestId,
    ) -> Result<Option<jit_core::AccessRequest>, jit_core::ports::StoreError> {
        self.0.get(id).await
    }
    async fn transition(
        &self,
        prior: &jit_core::AccessRequest,
        next: &jit_core::AccessRequest,
        event: &jit_core::AuditEvent,
    ) -> Result<(), jit_core::ports::StoreError> {
        self.0.transition(prior, next, event).await
    }
    async fn list_by_requester(
        &self,
        requester: &jit_core::Principal,
        page: &jit_core::ports::PageRequest,
    ) -> Result<jit_core::ports::Page<jit_core::AccessRequest>, jit_core::ports::StoreError> {
        self.0.list_by_requester(requester, page).await
    }
    async fn list_by_status(
        &self,
        status: jit_core::Status,
        page: &jit_core::ports::PageRequest,
    ) -> Result<jit_core::ports::Page<jit_core::AccessRequest>, jit_core::ports::StoreError> {
        self.0.list_by_status(status, page).await
    }
    async fn audit_events(
        &self,
        id: &RequestId,
    ) -> Result<Vec<jit_core::AuditEvent>, jit_core::ports::StoreError> {
        self.0.audit_events(id).await
    }
    async fn append_audit(
        &self,
        event: &jit_core::AuditEvent,
    ) -> Result<(), jit_core::ports::StoreError> {
        self.0.append_audit(event).await
    }
    async fn first_use(
        &self,
        key: &str,
        now: jit_core::request::Timestamp,
        expires_at: jit_core::request::Timestamp,
    ) -> Result<bool, jit_core::ports::StoreError> {
        self.0.first_use(key, now, expires_at).await
    }
}

/// The workflow port of a function that must never touch a workflow: every
/// call is refused with an error saying so (a 5xx that names the mistake,
/// should a route ever be wired to the wrong function).
pub struct NoWorkflow;

fn no_workflow() -> WorkflowError {
    WorkflowError::Backend(
        "the access function has no workflow: this route belongs to the request function".into(),
    )
}

#[async_trait::async_trait]
impl Workflow for NoWorkflow {
    async fn start(&self, _: &WorkflowInput) -> Result<(), WorkflowError> {
        Err(no_workflow())
    }
    async fn stop(&self, _: &RequestId, _: &str) -> Result<(), WorkflowError> {
        Err(no_workflow())
    }
    async fn send_task_success(
        &self,
        _: &TaskToken,
        _: &serde_json::Value,
    ) -> Result<(), WorkflowError> {
        Err(no_workflow())
    }
    async fn send_task_failure(
        &self,
        _: &TaskToken,
        _: &str,
        _: &str,
    ) -> Result<(), WorkflowError> {
        Err(no_workflow())
    }
    async fn history(&self, _: &RequestId) -> Result<Vec<serde_json::Value>, WorkflowError> {
        Err(no_workflow())
    }
}

/// The grant ports `access` adds: STS for credentials, the federation
/// endpoint for console sign-in, IAM (through the grant ledger) for revokes.
pub fn grant_ports(
    cfg: &Config,
    sdk: &SdkConfig,
    clock: Arc<dyn Clock>,
) -> Result<GrantPorts, lambda_http::Error> {
    Ok(GrantPorts {
        issuer: Arc::new(jit_aws::StsIssuer::from_config(sdk)),
        iam: jit_lambda::grant_iam(sdk, &cfg.ledger_table, clock),
        console: Arc::new(
            jit_aws::FederationSignin::new(&cfg.federation_url)
                .map_err(|e| format!("JIT_FEDERATION_URL: {e}"))?,
        ),
        inspector: Some(Arc::new(
            jit_aws::IamInspector::from_config(sdk).roles_only(),
        )),
        session_cap_secs: jit_core::grant_ports::CHAINED_SESSION_CAP_SECS,
        catalog_check: None,
    })
}

/// `catalog-check`'s whole state: the catalog (with the Identity Center
/// directory for `idc:` admin groups) and the check's ports (the full IAM
/// inspector and the broker's principals). No store, workflow or grant
/// ports: the function serves nothing that needs them, and links none.
pub fn catalog_check_ports(
    cfg: &Config,
    sdk: &SdkConfig,
) -> Result<(Catalog, jit_core::catalog_check::CatalogCheckPorts), lambda_http::Error> {
    let catalog = load_catalog(cfg, sdk)?;
    let ports = jit_core::catalog_check::CatalogCheckPorts {
        inspector: Arc::new(jit_aws::IamInspector::from_config(sdk)),
        principals: cfg.broker_principals.clone(),
    };
    Ok((catalog, ports))
}

/// Serves `GET /catalog/check` until the runtime stops (`catalog-check`).
pub async fn serve_catalog_check(
    catalog: Catalog,
    ports: jit_core::catalog_check::CatalogCheckPorts,
    cfg: Config,
) -> Result<(), lambda_http::Error> {
    let (catalog, ports, trust) = (&catalog, &ports, &cfg.trust);
    lambda_http::run(service_fn(move |event: Request| async move {
        let resp = crate::handle_catalog_check(catalog, Some(ports), trust, event).await;
        Ok::<_, std::convert::Infallible>(resp)
    }))
    .await
}

/// Which routes a function serves (the `ROUTES` of [`serve`]): all
/// (`request`).
pub const ALL_ROUTES: u8 = 0;
/// `access`: the grant routes.
pub const GRANT_ROUTES: u8 = 1;

/// Serves API Gateway events until the runtime stops: every route
/// ([`ALL_ROUTES`], `request`) or only the grant routes ([`GRANT_ROUTES`],
/// `access`). A constant, so each binary links only its own router.
pub async fn serve<const ROUTES: u8>(
    broker: Broker,
    cfg: Config,
) -> Result<(), lambda_http::Error> {
    let broker = &broker;
    let trust = &cfg.trust;
    lambda_http::run(service_fn(move |event: Request| async move {
        let resp = match ROUTES {
            GRANT_ROUTES => crate::handle_grants(broker, trust, event).await,
            _ => crate::handle(broker, trust, event).await,
        };
        Ok::<_, std::convert::Infallible>(resp)
    }))
    .await
}
