//! The grant ledger ([`GrantLedger`]) on DynamoDB: a table of its own
//! (default `JITGrantLedger`), not items in the requests table — that table
//! has TTL on `expiresAt` and a stream the `expire` Lambda consumes, and
//! the ledger must outlive request items and trigger nothing.
//!
//! - hash `resource` (the attachment or inline policy, see
//!   `LedgerEntry::resource`), range `entryId` (ULID): one partition holds
//!   a resource's whole history, read consistently when an outcome closes
//!   entries and when the reconciler asks what the broker wrote;
//! - `openShard` = `"open"` only while the entry is open: the sparse index
//!   [`OPEN_INDEX`] (hash `openShard`, range `entryId`) lists open entries
//!   oldest first without a scan. One index partition holds them all,
//!   which an access broker's volume (one entry per IAM call, open only
//!   while a grant lasts) is far below;
//! - `entry`: the entry as JSON. No TTL, no stream.
//!
//! An outcome and the entries it closes are several writes, not one
//! transaction: a crash between them leaves an entry open that should be
//! closed, which only makes the reconciler look at it again (and an
//! idempotent removal close it) — never the reverse.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType,
};
use jit_core::ledger::{GrantLedger, LedgerEntry, apply_outcome};
use jit_core::ports::StoreError;

use super::tables::{CreateTablesError, backend, create_error, wait_active};
use crate::error::describe;

/// The deployed table's name (`template.yaml`'s `LedgerTable`).
pub const DEFAULT_LEDGER_TABLE: &str = "JITGrantLedger";
/// The sparse index of open entries.
pub const OPEN_INDEX: &str = "open";

const RESOURCE: &str = "resource";
const ENTRY_ID: &str = "entryId";
const OPEN_SHARD: &str = "openShard";
const OPEN: &str = "open";
const ENTRY: &str = "entry";

type Item = std::collections::HashMap<String, AttributeValue>;

/// The grant ledger on its DynamoDB table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoLedger {
            client,
            table: table.into(),
        }
    }

    pub fn from_config(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(config), table)
    }

    fn item(&self, e: &LedgerEntry) -> Result<Item, StoreError> {
        let json = serde_json::to_string(e)
            .map_err(|err| StoreError::Backend(format!("encoding a ledger entry: {err}")))?;
        let mut item = Item::new();
        item.insert(RESOURCE.into(), AttributeValue::S(e.resource()));
        item.insert(ENTRY_ID.into(), AttributeValue::S(e.entry_id.clone()));
        item.insert(ENTRY.into(), AttributeValue::S(json));
        if e.open {
            item.insert(OPEN_SHARD.into(), AttributeValue::S(OPEN.into()));
        }
        Ok(item)
    }

    async fn put(&self, e: &LedgerEntry, only_new: bool) -> Result<(), StoreError> {
        let mut call = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(e)?));
        if only_new {
            call = call
                .condition_expression("attribute_not_exists(#e)")
                .expression_attribute_names("#e", ENTRY_ID);
        }
        match call.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(s))
                if only_new
                    && matches!(s.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(())
            }
            Err(err) => Err(StoreError::Backend(describe("PutItem", &err))),
        }
    }

    /// Every item of a query, following `LastEvaluatedKey`.
    async fn query_all(
        &self,
        index: Option<&str>,
        hash_attr: &str,
        hash: &str,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut out = vec![];
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_string))
                .key_condition_expression("#h = :h")
                .expression_attribute_names("#h", hash_attr)
                .expression_attribute_values(":h", AttributeValue::S(hash.into()))
                .set_consistent_read(index.is_none().then_some(true))
                .scan_index_forward(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::Backend(describe("Query", &e)))?;
            for item in page.items.unwrap_or_default() {
                out.push(entry_of(&item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }
}

fn entry_of(item: &Item) -> Result<LedgerEntry, StoreError> {
    let json = match item.get(ENTRY) {
        Some(AttributeValue::S(s)) => s,
        _ => {
            return Err(StoreError::Backend(
                "a ledger item without its entry".into(),
            ));
        }
    };
    let mut e: LedgerEntry = serde_json::from_str(json).map_err(|err| {
        tracing::error!(
            line = err.line(),
            column = err.column(),
            "stored ledger entry does not parse"
        );
        StoreError::Backend("a stored ledger entry is unreadable".into())
    })?;
    e.open = item.contains_key(OPEN_SHARD);
    Ok(e)
}

#[async_trait]
impl GrantLedger for DynamoLedger {
    async fn record_intent(&self, entry: &LedgerEntry) -> Result<(), StoreError> {
        let mut e = entry.clone();
        e.open = true;
        self.put(&e, true).await
    }

    async fn record_outcome(&self, entry: &LedgerEntry) -> Result<(), StoreError> {
        let mut entries = self.query_all(None, RESOURCE, &entry.resource()).await?;
        if !entries.iter().any(|e| e.entry_id == entry.entry_id) {
            // The intent was never written: keep the outcome, open.
            let mut first = entry.clone();
            first.open = true;
            entries.push(first);
        }
        let before: Vec<bool> = entries.iter().map(|e| e.open).collect();
        apply_outcome(&mut entries, entry);
        // The outcome first: if the closing writes fail, more stays open,
        // never less.
        if let Some(e) = entries.iter().find(|e| e.entry_id == entry.entry_id) {
            self.put(e, false).await?;
        }
        for (e, was_open) in entries.iter().zip(before) {
            if e.entry_id != entry.entry_id && e.open != was_open {
                self.put(e, false).await?;
            }
        }
        Ok(())
    }

    async fn open_entries(&self) -> Result<Vec<LedgerEntry>, StoreError> {
        // The index lags the table a little: an entry closed a moment ago
        // may still be listed (the reconciler then looks at it once more).
        self.query_all(Some(OPEN_INDEX), OPEN_SHARD, OPEN).await
    }

    async fn entries_for(&self, resource: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        self.query_all(None, RESOURCE, resource).await
    }
}

/// Creates the ledger table (on-demand, the sparse [`OPEN_INDEX`], no TTL,
/// no stream), as `template.yaml` does. For tests and hand-made
/// environments.
pub async fn create_ledger_table(client: &Client, table: &str) -> Result<(), CreateTablesError> {
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
    let open = GlobalSecondaryIndex::builder()
        .index_name(OPEN_INDEX)
        .key_schema(key(OPEN_SHARD, KeyType::Hash)?)
        .key_schema(key(ENTRY_ID, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(backend)?;
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(s(RESOURCE)?)
        .attribute_definitions(s(ENTRY_ID)?)
        .attribute_definitions(s(OPEN_SHARD)?)
        .key_schema(key(RESOURCE, KeyType::Hash)?)
        .key_schema(key(ENTRY_ID, KeyType::Range)?)
        .global_secondary_indexes(open)
        .send()
        .await
        .map_err(|e| create_error(table, e))?;
    wait_active(client, table).await
}
