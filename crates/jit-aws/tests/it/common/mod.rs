//! What every moto-backed test needs: the endpoint `scripts/test` started,
//! an SDK config pointing at it, and uniquely named resources.
#![allow(dead_code)] // each test file uses a different part

pub mod fake_lambda;

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

/// Keeps the body of every request a client sends, so a test can read
/// exactly what went to AWS (moto keeps some of it too, at
/// `/moto-api/data.json`, but that page fails once any Lambda function
/// exists in the server — the ASL cross-check makes some — because moto
/// then tries to reach Docker while serialising it).
#[derive(Debug, Clone, Default)]
pub struct Capture(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl Capture {
    /// Every body so far, oldest first.
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.0.lock().unwrap().clone()
    }

    /// Every body read as JSON (`null` for one that is not).
    pub fn json_bodies(&self) -> Vec<serde_json::Value> {
        self.bodies()
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap_or(serde_json::Value::Null))
            .collect()
    }

    /// Every body read as an `application/x-www-form-urlencoded` form (the
    /// query protocol STS and IAM speak), as (name, value) pairs.
    pub fn form_bodies(&self) -> Vec<Vec<(String, String)>> {
        self.bodies().iter().map(|b| parse_form(b)).collect()
    }
}

fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("a %XX escape"));
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).expect("UTF-8 form field")
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for Capture {
    fn name(&self) -> &'static str {
        "capture-request-bodies"
    }
    fn read_before_transmit(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(bytes) = context.request().body().bytes() {
            self.0.lock().unwrap().push(bytes.to_vec());
        }
        Ok(())
    }
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
