//! `jit catalog check`: does every entitlement's policy or role exist and
//! let the broker grant it? Deployed, the broker checks with its own
//! principals (`GET /catalog/check`, admins only, served by the function
//! that vends credentials), so trust policies are judged against the roles
//! that really assume them; `--local` checks a catalog file with your own
//! AWS credentials instead. The table and the exit codes are
//! `jit-local catalog check`'s: 0 all OK (warnings included), 1 an
//! entitlement has a problem, 2 the check could not run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use hyper::Method;
use jit_core::Catalog;
use jit_core::catalog_check::{
    BrokerPrincipal, CatalogReport, catalog_check_for, has_problems, render_table,
};

#[derive(clap::Subcommand)]
pub enum CatalogCommand {
    /// Check every entitlement against AWS: as the deployed broker
    /// (`GET /catalog/check`, catalog admins), or with --local as you.
    Check(CheckArgs),
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Check a catalog file here with your own AWS credentials (found as
    /// the AWS CLI finds them; AWS_ENDPOINT_URL honoured) instead of asking
    /// the broker.
    #[arg(long)]
    local: bool,
    /// With --local: the catalog file.
    #[arg(
        long,
        requires = "local",
        env = "JIT_CATALOG",
        default_value = "config/catalog.example.yaml"
    )]
    catalog: PathBuf,
    /// With --local: the role (or user) ARN whose access the trust policies
    /// must grant (repeatable; default: who your credentials are).
    #[arg(long, requires = "local")]
    broker_principal: Vec<String>,
}

/// Runs the check and prints it; the exit code says how it went.
pub fn check(args: CheckArgs, json: bool) -> ExitCode {
    let report = match crate::runtime().and_then(|rt| {
        rt.block_on(async {
            if args.local {
                local(&args).await
            } else {
                remote().await
            }
        })
    }) {
        Ok(r) => r,
        Err(e) => {
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("jit: error: {line}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_value(&report).unwrap_or(serde_json::Value::Null)
        );
    } else {
        for p in &report.broker_principals {
            println!("broker principal: {p}");
        }
        print!("{}", render_table(&report.rows));
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn remote() -> Result<CatalogReport> {
    let client = crate::connect()?;
    let v = client.call(Method::GET, "/catalog/check", None).await?;
    serde_json::from_value(v)
        .map_err(|e| anyhow!("the API answered an unexpected catalog check: {e}"))
}

async fn local(args: &CheckArgs) -> Result<CatalogReport> {
    let text = std::fs::read_to_string(&args.catalog).map_err(|e| {
        anyhow!(
            "cannot read the catalog {}: {e} (pass --catalog FILE)",
            args.catalog.display()
        )
    })?;
    let catalog = Catalog::parse(&text, &args.catalog.display().to_string())?;
    let sdk = jit_aws::sdk::load_config().await;
    let principals = if args.broker_principal.is_empty() {
        match jit_aws::caller_identity(&sdk).await {
            Ok(arn) => BrokerPrincipal::parse(&arn).into_iter().collect(),
            Err(e) => {
                eprintln!(
                    "jit: who your credentials are could not be found ({e}); trust policies are not judged. Pass --broker-principal."
                );
                vec![]
            }
        }
    } else {
        args.broker_principal
            .iter()
            .map(|a| BrokerPrincipal::parse(a).map_err(|e| anyhow!("--broker-principal: {e}")))
            .collect::<Result<Vec<_>>>()?
    };
    let inspector = jit_aws::IamInspector::from_config(&sdk);
    let rows = catalog_check_for(&catalog, &inspector, &principals).await;
    Ok(CatalogReport {
        broker_principals: principals.iter().map(|b| b.arn().to_string()).collect(),
        ok: !has_problems(&rows),
        rows,
    })
}
