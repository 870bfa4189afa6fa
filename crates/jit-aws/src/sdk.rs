//! The one place an AWS SDK configuration is built.
//!
//! Every client (DynamoDB, Step Functions, STS, …) in a process is built from
//! the single [`SdkConfig`] that [`load_config`] returns, so they share one
//! HTTP connection pool, one credentials cache and one region.
//!
//! The HTTP client is chosen explicitly: rustls with *ring* crypto. The SDK's
//! default client would pull in aws-lc-rs, which costs megabytes of binary and
//! milliseconds of Lambda init for nothing we need.
//!
//! Endpoint override: `aws-config` itself reads `AWS_ENDPOINT_URL` (and the
//! profile's `endpoint_url`) while loading, which is how local runs and tests
//! point every client at moto or another AWS-compatible server. Nothing here
//! reads it by hand.

use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_runtime::env_config::EnvConfigValue;
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_types::os_shim_internal::Env;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

/// The HTTPS client every SDK client uses: hyper + rustls on *ring*, with the
/// platform's trust roots (loaded lazily on first use, not at init).
/// Plain `http://` endpoints (a loopback moto server) work through it too.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// A config loader with our HTTP client and the latest behaviour version,
/// still reading region, credentials and endpoint from the environment.
/// Tests add an explicit endpoint, region and dummy credentials on top.
pub fn config_loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client())
}

/// The process's SDK configuration, from the environment (region,
/// credentials chain, `AWS_ENDPOINT_URL`). Call once at start-up and build
/// every client from the result.
///
/// This is the full default chain (profiles, web identity, IMDS, ECS), which
/// `jit-local` needs on a laptop. Lambdas use [`lambda_config`].
pub async fn load_config() -> SdkConfig {
    config_loader().load().await
}

/// The SDK configuration inside a Lambda function.
///
/// Lambda hands a function its role's credentials and its region in
/// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_REGION`); there is no profile file, no SSO and
/// no instance metadata to ask. Linking aws-config's default chain anyway
/// (profile parser, IMDS and ECS clients, web identity through STS) put the
/// `request` binary over its size budget, so Lambdas read only those
/// variables, plus `AWS_ENDPOINT_URL` (and the per-service
/// `AWS_ENDPOINT_URL_<SERVICE>`) so tests and benchmarks still reach moto.
/// Everything else keeps the SDK's defaults for this behaviour version.
pub fn lambda_config() -> SdkConfig {
    lambda_config_from(Env::real())
}

/// [`lambda_config`] reading `env` (a fixed set of variables in tests).
/// Credentials always come from the process environment, when a client
/// first signs.
fn lambda_config_from(env: Env) -> SdkConfig {
    let var = |k: &str| env.get(k).ok().filter(|v| !v.is_empty());
    let mut config = SdkConfig::builder();
    config.set_endpoint_url(var("AWS_ENDPOINT_URL"));
    config.set_region(
        var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .map(Region::new),
    );
    config
        .behavior_version(BehaviorVersion::latest())
        .http_client(https_client())
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .identity_cache(IdentityCache::lazy().build())
        .retry_config(RetryConfig::standard())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(3100))
                .build(),
        )
        .service_config(EnvEndpoints(env))
        .build()
}

/// Answers the clients' per-service lookups (`AWS_ENDPOINT_URL_DYNAMODB`, …)
/// from the environment alone, as aws-config does minus the profile file.
#[derive(Debug)]
struct EnvEndpoints(Env);

impl LoadServiceConfig for EnvEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        EnvConfigValue::new()
            .env(key.env())
            .service_id(key.service_id())
            .load(&self.0, None)
            .map(|(value, _source)| value.into_owned())
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint_for(config: &SdkConfig, service_id: &str) -> Option<String> {
        let key = ServiceConfigKey::builder()
            .service_id(service_id)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .expect("a complete key");
        config.service_config()?.load_config(key)
    }

    #[test]
    fn lambda_config_takes_region_and_endpoints_from_the_environment() {
        // GIVEN a Lambda-like environment pointed at a local server, with
        // Step Functions sent elsewhere
        let env = Env::from_slice(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL_SFN", "http://127.0.0.1:6000"),
        ]);
        // WHEN the Lambda configuration is built from it
        let config = lambda_config_from(env);
        // THEN AWS_REGION wins, the global endpoint is set, and each client
        // finds its own endpoint variable before the global one
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert_eq!(
            endpoint_for(&config, "SFN").as_deref(),
            Some("http://127.0.0.1:6000")
        );
        assert_eq!(
            endpoint_for(&config, "DynamoDB").as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert!(config.credentials_provider().is_some());
        assert_eq!(config.behavior_version(), Some(BehaviorVersion::latest()));
    }

    #[test]
    fn lambda_config_without_endpoint_variables_uses_the_real_endpoints() {
        // GIVEN only the region, in its older variable
        let env = Env::from_slice(&[
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", ""),
        ]);
        // WHEN the configuration is built
        let config = lambda_config_from(env);
        // THEN the region is found and no endpoint is overridden
        assert_eq!(config.region().map(|r| r.as_ref()), Some("us-east-1"));
        assert_eq!(config.endpoint_url(), None);
        assert_eq!(endpoint_for(&config, "DynamoDB"), None);
    }
}

/// The HTTPS connector for the few calls that are not SDK operations
/// (Slack's Web API, the federation endpoint): the SDK's own rustls-on-ring
/// stack, so no second TLS stack is linked. Built on first use, so trust
/// roots load then and not at init; clones share one connector.
#[derive(Clone, Default)]
pub(crate) struct LazyConnector(
    std::sync::Arc<std::sync::OnceLock<aws_smithy_http_client::Connector>>,
);

impl LazyConnector {
    pub(crate) fn get(&self) -> &aws_smithy_http_client::Connector {
        self.0.get_or_init(|| {
            aws_smithy_http_client::Connector::builder()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::Ring,
                ))
                .build()
        })
    }
}
