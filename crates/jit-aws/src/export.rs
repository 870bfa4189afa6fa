//! [`jit_core::export::ObjectSink`] on S3: the audit trail's JSON lines,
//! written by the `audit-export` Lambda for Athena.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;

use crate::error::describe;

/// Puts exported objects into one bucket.
#[derive(Debug, Clone)]
pub struct S3Sink {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Sink {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Sink {
            client,
            bucket: bucket.into(),
        }
    }

    /// A sink with its own client. With an endpoint override (moto, a local
    /// S3) buckets are addressed by path: loopback has no bucket host names.
    pub fn from_config(config: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Self::new(aws_sdk_s3::Client::from_conf(s3), bucket)
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }
}

#[async_trait]
impl jit_core::export::ObjectSink for S3Sink {
    async fn put(&self, key: &str, body: String) -> Result<(), String> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/x-ndjson")
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| describe("PutObject", &e))
    }
}
