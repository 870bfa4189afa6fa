//! `jit-local catalog check`: checks every entitlement of a catalog against
//! the account the ambient AWS credentials belong to (`AWS_ENDPOINT_URL`
//! honoured, so a moto server works), prints a table (or JSON) and exits
//! non-zero when anything is wrong. Missing guardrails (a grantable role
//! without a permissions boundary, an identity without the grantable tag)
//! are warnings: printed, but the exit code stays 0, because the grants
//! themselves work.

use std::path::PathBuf;

use jit_core::catalog_check::{BrokerPrincipal, catalog_check, has_problems, render_table};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The entitlement catalog (YAML).
    #[arg(
        long,
        env = "JIT_CATALOG",
        default_value = "config/catalog.example.yaml"
    )]
    pub catalog: PathBuf,
    /// The IAM role (or user) ARN the broker runs as, whose access the
    /// roles' trust policies must grant. Default: the identity of the
    /// ambient credentials (sts:GetCallerIdentity).
    #[arg(long, env = "JIT_BROKER_PRINCIPAL")]
    pub broker_principal: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
}

/// Exit codes: 0 all OK (warnings included), 1 some entitlement has a
/// problem, 2 the check could not run (catalog unreadable, bad principal).
pub async fn run(args: CheckArgs) -> i32 {
    let catalog = match crate::load_catalog(&args.catalog) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("jit-local: {e}");
            return 2;
        }
    };
    let sdk = jit_aws::sdk::load_config().await;
    let broker = match &args.broker_principal {
        Some(arn) => match BrokerPrincipal::parse(arn) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("jit-local: --broker-principal: {e}");
                return 2;
            }
        },
        None => match jit_aws::caller_identity(&sdk).await {
            Ok(arn) => BrokerPrincipal::parse(&arn).ok(),
            Err(e) => {
                eprintln!(
                    "jit-local: who the broker is could not be found ({e}); trust policies are not judged. Pass --broker-principal."
                );
                None
            }
        },
    };
    let inspector = jit_aws::IamInspector::from_config(&sdk);
    let mut rows = catalog_check(&catalog, &inspector, broker.as_ref()).await;
    if let Some(idc) = catalog.identity_center() {
        // Permission-set entitlements: the instance, the permission sets and
        // where they are provisioned, read from Identity Center itself.
        let client = jit_aws::identity_center::IdentityCenterClient::new(&sdk, idc);
        jit_core::catalog_check::check_permission_sets(
            &catalog,
            &client,
            &client,
            &inspector,
            broker.as_ref(),
            &mut rows,
        )
        .await;
    }
    match args.output {
        Output::Table => {
            if let Some(b) = &broker {
                println!("broker principal: {}", b.arn());
            }
            print!("{}", render_table(&rows));
        }
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "brokerPrincipal": broker.as_ref().map(|b| b.arn()),
                "rows": rows,
                "ok": !has_problems(&rows),
            })
        ),
    }
    if has_problems(&rows) { 1 } else { 0 }
}
