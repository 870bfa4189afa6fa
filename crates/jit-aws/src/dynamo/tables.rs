//! Creating the two tables, for tests and for bootstrapping a local or
//! hand-made environment. Deployed environments get the same shape from
//! `template.yaml`; keep the two in step.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus,
    TimeToLiveSpecification,
};

use super::item::attr;
use super::{ALL_REQUESTS_INDEX, BY_DAY_INDEX, BY_REQUESTER_INDEX, BY_STATUS_INDEX, TableNames};
use crate::error::describe;

/// How long [`create_tables`] waits for a new table to become ACTIVE (a few
/// seconds on AWS, immediate on moto).
const ACTIVE_WITHIN: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum CreateTablesError {
    /// Refused rather than adopted: an existing table may have another shape.
    #[error("table {0} already exists")]
    AlreadyExists(String),
    #[error("table {table} is not ACTIVE after {waited:?}")]
    NotActive { table: String, waited: Duration },
    #[error("creating tables: {0}")]
    Backend(String),
}

/// What [`create_tables`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTables {
    /// The requests table's stream (`NEW_AND_OLD_IMAGES`), which the
    /// `expire` Lambda consumes for TTL deletions.
    pub requests_stream_arn: Option<String>,
}

/// Creates the requests and audit tables, on-demand billing:
/// - requests: hash `requestId`; GSIs `byRequester`, `byStatus` and
///   `allRequests` (hash `entity`; range `requestId`, projection ALL);
///   stream `NEW_AND_OLD_IMAGES`; then, once ACTIVE, TTL on `expiresAt`;
/// - audit: hash `requestId`, range `eventId`; GSI `byDay` (hash `day`,
///   range `eventId`, projection ALL); no TTL, ever.
pub async fn create_tables(
    client: &Client,
    names: &TableNames,
) -> Result<CreatedTables, CreateTablesError> {
    let s = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(backend)
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(backend)
    };
    let gsi_on =
        |index: &str, hash: &str, range: &str| -> Result<GlobalSecondaryIndex, CreateTablesError> {
            GlobalSecondaryIndex::builder()
                .index_name(index)
                .key_schema(key(hash, KeyType::Hash)?)
                .key_schema(key(range, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(backend)
        };

    let gsi = |index: &str, hash: &str| -> Result<GlobalSecondaryIndex, CreateTablesError> {
        gsi_on(index, hash, attr::REQUEST_ID)
    };

    let created = client
        .create_table()
        .table_name(&names.requests)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(s(attr::REQUEST_ID)?)
        .attribute_definitions(s(attr::REQUESTER)?)
        .attribute_definitions(s(attr::STATUS)?)
        .key_schema(key(attr::REQUEST_ID, KeyType::Hash)?)
        .global_secondary_indexes(gsi(BY_REQUESTER_INDEX, attr::REQUESTER)?)
        .global_secondary_indexes(gsi(BY_STATUS_INDEX, attr::STATUS)?)
        .attribute_definitions(s(attr::ENTITY)?)
        .global_secondary_indexes(gsi(ALL_REQUESTS_INDEX, attr::ENTITY)?)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(backend)?,
        )
        .send()
        .await
        .map_err(|e| create_error(&names.requests, e))?;
    let requests_stream_arn = created
        .table_description()
        .and_then(|d| d.latest_stream_arn())
        .map(str::to_string);

    client
        .create_table()
        .table_name(&names.audit)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(s(attr::REQUEST_ID)?)
        .attribute_definitions(s(attr::EVENT_ID)?)
        .key_schema(key(attr::REQUEST_ID, KeyType::Hash)?)
        .key_schema(key(attr::EVENT_ID, KeyType::Range)?)
        .attribute_definitions(s(attr::DAY)?)
        .global_secondary_indexes(gsi_on(BY_DAY_INDEX, attr::DAY, attr::EVENT_ID)?)
        .send()
        .await
        .map_err(|e| create_error(&names.audit, e))?;

    // TTL can only be switched on for an ACTIVE table.
    wait_active(client, &names.requests).await?;
    client
        .update_time_to_live()
        .table_name(&names.requests)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(attr::EXPIRES_AT)
                .build()
                .map_err(backend)?,
        )
        .send()
        .await
        .map_err(|e| CreateTablesError::Backend(describe("UpdateTimeToLive", &e)))?;
    wait_active(client, &names.audit).await?;

    Ok(CreatedTables {
        requests_stream_arn,
    })
}

pub(super) async fn wait_active(client: &Client, table: &str) -> Result<(), CreateTablesError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| CreateTablesError::Backend(describe("DescribeTable", &e)))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        if started.elapsed() >= ACTIVE_WITHIN {
            return Err(CreateTablesError::NotActive {
                table: table.to_string(),
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

pub(super) fn create_error<R: std::fmt::Debug>(
    table: &str,
    err: SdkError<CreateTableError, R>,
) -> CreateTablesError {
    match &err {
        SdkError::ServiceError(s)
            if matches!(s.err(), CreateTableError::ResourceInUseException(_)) =>
        {
            CreateTablesError::AlreadyExists(table.to_string())
        }
        _ => CreateTablesError::Backend(describe(&format!("CreateTable({table})"), &err)),
    }
}

pub(super) fn backend(e: impl std::fmt::Display) -> CreateTablesError {
    CreateTablesError::Backend(e.to_string())
}
