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

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::SharedHttpClient;

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
pub async fn load_config() -> SdkConfig {
    config_loader().load().await
}
