//! What every moto-backed test needs: the endpoint `scripts/test` started,
//! an SDK config pointing at it, and uniquely named resources.
#![allow(dead_code)] // each test file uses a different part

use std::sync::atomic::{AtomicU64, Ordering};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_types::region::Region;
use jit_aws::{DynamoStore, TableNames, create_tables};

/// The secret of the dummy credentials, distinctive so a test can assert it
/// never appears in an error.
pub const DUMMY_SECRET: &str = "dummy-secret-do-not-print";

/// The moto server's URL. Without it the test fails (rather than passing
/// without having tested anything).
pub fn endpoint() -> String {
    match std::env::var("JIT_TEST_AWS_ENDPOINT") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "JIT_TEST_AWS_ENDPOINT is not set: these tests need a moto server. \
             Run ./scripts/test, which starts moto and sets it \
             (e.g. `./scripts/test -p jit-aws`)."
        ),
    }
}

/// An SDK config for moto: our HTTP client, explicit endpoint, region and
/// dummy credentials — set on the builder, not in the process environment,
/// so parallel tests cannot race on it.
pub async fn sdk_config() -> SdkConfig {
    jit_aws::sdk::config_loader()
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDTESTING",
            DUMMY_SECRET,
            None,
            None,
            "jit-aws-tests",
        ))
        .load()
        .await
}

/// A name no other test (or earlier run) uses: `<prefix>-<pid>-<n>-<nanos>`.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Table names of their own for one test.
pub fn fresh_table_names() -> TableNames {
    let base = unique_name("jit");
    TableNames::new(format!("{base}-requests"), format!("{base}-audit"))
}

/// A store on freshly created tables no other test touches. The tables are
/// left behind: moto is thrown away at the end of the run.
pub async fn fresh_store() -> DynamoStore {
    let client = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let names = fresh_table_names();
    create_tables(&client, &names)
        .await
        .unwrap_or_else(|e| panic!("creating tables {names:?} on moto: {e}"));
    DynamoStore::new(client, names)
}

/// A grant ledger on a freshly created table no other test touches.
pub async fn fresh_ledger() -> jit_aws::DynamoLedger {
    let client = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let table = unique_name("jit-ledger");
    jit_aws::create_ledger_table(&client, &table)
        .await
        .unwrap_or_else(|e| panic!("creating the ledger table {table} on moto: {e}"));
    jit_aws::DynamoLedger::new(client, table)
}
