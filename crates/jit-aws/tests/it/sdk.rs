//! The production configuration paths, `jit_aws::sdk::load_config` (the
//! default chain, `jit-local`) and `jit_aws::sdk::lambda_config` (Lambdas),
//! with nothing but the environment `scripts/test` sets: both must follow
//! `AWS_ENDPOINT_URL` and reach a plain `http://` endpoint through our
//! rustls/ring HTTPS client.

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_config_follows_aws_endpoint_url_and_its_clients_work() {
    // GIVEN the environment scripts/test sets up
    let moto = common::endpoint();
    assert_eq!(
        std::env::var("AWS_ENDPOINT_URL").ok().as_deref(),
        Some(moto.as_str()),
        "scripts/test exports AWS_ENDPOINT_URL=JIT_TEST_AWS_ENDPOINT; run the tests through it"
    );

    // WHEN the process configuration is loaded as a Lambda would
    let config = jit_aws::sdk::load_config().await;

    // THEN it points at moto
    assert_eq!(config.endpoint_url(), Some(moto.as_str()));
    // AND a client built from it reaches moto: it creates tables there, and
    // a client configured explicitly for moto sees them
    let client = aws_sdk_dynamodb::Client::new(&config);
    let names = common::fresh_table_names();
    jit_aws::create_tables(&client, &names)
        .await
        .expect("create tables through the env-configured client");
    let explicit = aws_sdk_dynamodb::Client::new(&common::sdk_config().await);
    let described = explicit
        .describe_table()
        .table_name(&names.requests)
        .send()
        .await
        .expect("the table exists on moto");
    assert_eq!(
        described.table().and_then(|t| t.table_name()),
        Some(names.requests.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_config_reaches_moto_with_the_environment_credentials() {
    // GIVEN the environment scripts/test sets up (endpoint, region and
    // credentials in variables, as Lambda provides them)
    let moto = common::endpoint();

    // WHEN the Lambdas' lean configuration is built
    let config = jit_aws::sdk::lambda_config();

    // THEN it points at moto, and a client built from it signs with the
    // environment's credentials and creates tables there
    assert_eq!(config.endpoint_url(), Some(moto.as_str()));
    let client = aws_sdk_dynamodb::Client::new(&config);
    let names = common::fresh_table_names();
    jit_aws::create_tables(&client, &names)
        .await
        .expect("create tables through the Lambda configuration");
    let explicit = aws_sdk_dynamodb::Client::new(&common::sdk_config().await);
    let described = explicit
        .describe_table()
        .table_name(&names.audit)
        .send()
        .await
        .expect("the table exists on moto");
    assert_eq!(
        described.table().and_then(|t| t.table_name()),
        Some(names.audit.as_str())
    );
}
