//! [`RequestStore`] on DynamoDB.
//!
//! Two tables:
//! - **requests** (default `JITAccessRequests`, the seed's name): hash key
//!   `requestId`; one [`RequestItem`] per request, plus one idempotency
//!   marker per used idempotency key, and one seen-once marker per key
//!   [`RequestStore::first_use`] recorded (TTL'd on `expiresAt`). Indexes `byRequester` (hash
//!   `requester`, range `requestId`) and `byStatus` (hash `status`, range
//!   `requestId`), both projecting everything. TTL on `expiresAt` (epoch
//!   seconds) and a `NEW_AND_OLD_IMAGES` stream for the `expire` backstop.
//! - **audit** (default `JITAccessAudit`): hash `requestId`, range `eventId`.
//!   Never TTL'd: the trail outlives the request item.
//!
//! Every write that touches a request is one `TransactWriteItems` that also
//! puts its audit event, so a record never changes without its trail.
//!
//! Consistency: `get` and `audit_events` read the base tables with
//! `ConsistentRead`. The listings read global secondary indexes, which on AWS
//! are *eventually* consistent (usually well under a second behind) and
//! cannot be read consistently: a request created or moved a moment ago may
//! be missing from, or still listed under its old status in, a listing.
//! moto's indexes are immediate, so the tests cannot show this lag.
//!
//! Scale: `byStatus` puts every request of one status in one index
//! partition. That is fine for an access broker's volume (thousands of
//! requests, not millions per second); a busier deployment would shard the
//! status key.

mod cursor;
mod history;
mod item;
pub mod ledger;
mod tables;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use jit_core::lifecycle::Status;
use jit_core::ports::{CreateOutcome, Page, PageRequest, RequestStore, StoreError};
use jit_core::request::{AccessRequest, AuditEvent};
use jit_core::{Principal, RequestId};

use crate::error::describe;
use cursor::Listing;
use item::{IdempotencyMarker, Item, attr, redact, ttl_seconds};

/// The DynamoDB client type, re-exported so callers need no SDK dependency.
pub use aws_sdk_dynamodb::Client;
pub use item::RequestItem;
pub use tables::{CreateTablesError, CreatedTables, create_tables};

/// Name of the index listing a requester's requests.
pub const BY_REQUESTER_INDEX: &str = "byRequester";
/// Name of the index listing requests by stored status.
pub const BY_STATUS_INDEX: &str = "byStatus";
/// Name of the index listing every request (the admin listing).
pub const ALL_REQUESTS_INDEX: &str = "allRequests";
/// Name of the audit table's index by UTC day and event id (analytics).
pub const BY_DAY_INDEX: &str = "byDay";

/// How often a transaction cancelled by `TransactionConflict` (another
/// transaction on the same item in flight) is tried in all. The retry then
/// sees the other write and fails its condition properly.
const TRANSACTION_ATTEMPTS: u32 = 5;

/// Which tables the store uses. The defaults are the deployed names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub requests: String,
    pub audit: String,
}

impl TableNames {
    /// The seed's requests table name, kept for compatibility.
    pub const DEFAULT_REQUESTS: &'static str = "JITAccessRequests";
    pub const DEFAULT_AUDIT: &'static str = "JITAccessAudit";

    pub fn new(requests: impl Into<String>, audit: impl Into<String>) -> Self {
        TableNames {
            requests: requests.into(),
            audit: audit.into(),
        }
    }
}

impl Default for TableNames {
    fn default() -> Self {
        TableNames::new(Self::DEFAULT_REQUESTS, Self::DEFAULT_AUDIT)
    }
}

/// The DynamoDB request store. Cheap to clone (the SDK client is shared).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: TableNames,
}

impl DynamoStore {
    /// A store on existing tables (see [`create_tables`] for their shape).
    /// Build `client` from [`crate::sdk::load_config`].
    pub fn new(client: Client, tables: TableNames) -> Self {
        DynamoStore { client, tables }
    }

    /// A store with its own client from the process's shared config.
    pub fn from_config(config: &aws_config::SdkConfig, tables: TableNames) -> Self {
        Self::new(Client::new(config), tables)
    }

    pub fn tables(&self) -> &TableNames {
        &self.tables
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn put_request(&self, item: Item) -> PutBuilder {
        Put::builder()
            .table_name(&self.tables.requests)
            .set_item(Some(item))
    }

    /// The audit event's put: append-only, an event id is never overwritten.
    fn put_audit(&self, event: &AuditEvent) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.tables.audit)
            .set_item(Some(audit_item(event)?))
            .condition_expression("attribute_not_exists(#e)")
            .expression_attribute_names("#e", attr::EVENT_ID);
        transact_put(put)
    }

    /// Runs a transaction, trying again while it is cancelled only by
    /// conflicting concurrent transactions. Returns the cancellation
    /// reasons (code and old item, by position) when a condition failed.
    ///
    /// `token` (the audit event's id: unique per write the core asks for)
    /// is the transaction's `ClientRequestToken`. It makes the SDK's own
    /// retries safe: if a first attempt committed but its answer was lost,
    /// the retry succeeds as a no-op instead of failing its condition and
    /// reporting `AlreadyExists`/`Conflict` for our own write.
    async fn transact(
        &self,
        operation: &str,
        token: &str,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Vec<Reason>>, StoreError> {
        // DynamoDB takes tokens of 1 to 36 characters; event ids are ULIDs (26).
        let token = (!token.is_empty() && token.len() <= 36).then(|| token.to_string());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .set_client_request_token(token.clone())
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(Ok(())),
                Err(err) => err,
            };
            let reasons: Vec<Reason> = match &err {
                SdkError::ServiceError(service) => match service.err() {
                    TransactWriteItemsError::TransactionCanceledException(cancelled) => cancelled
                        .cancellation_reasons()
                        .iter()
                        .map(|r| Reason {
                            code: r.code().unwrap_or("None").to_string(),
                            item: r.item().cloned(),
                        })
                        .collect(),
                    _ => return Err(StoreError::Backend(describe(operation, &err))),
                },
                _ => return Err(StoreError::Backend(describe(operation, &err))),
            };
            if reasons.iter().any(|r| r.code == CONDITION_FAILED) {
                return Ok(Err(reasons));
            }
            let only_conflicts = reasons.iter().any(|r| r.code == TRANSACTION_CONFLICT)
                && reasons
                    .iter()
                    .all(|r| r.code == "None" || r.code == TRANSACTION_CONFLICT);
            if only_conflicts && attempt < TRANSACTION_ATTEMPTS {
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            return Err(StoreError::Backend(describe(operation, &err)));
        }
    }

    /// A request's item, read consistently.
    async fn get_item(&self, key: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.requests)
            .key(attr::REQUEST_ID, AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::Backend(describe("GetItem", &e)))?;
        Ok(out.item)
    }

    /// The answer to a create whose idempotency key was already reserved.
    async fn replay(
        &self,
        request: &AccessRequest,
        marker_key: &str,
        old_marker: Option<Item>,
    ) -> Result<CreateOutcome, StoreError> {
        let marker_item = match old_marker {
            Some(item) => item,
            None => self.get_item(marker_key).await?.ok_or_else(|| {
                StoreError::Backend("idempotency marker reported but not found".into())
            })?,
        };
        let marker = IdempotencyMarker::from_item(marker_item)?;
        if marker.fingerprint != request.request_fingerprint {
            return Err(StoreError::IdempotencyConflict {
                existing: marker.target_request_id,
            });
        }
        match self.get(&marker.target_request_id).await? {
            Some(first) if first.requester.principal == request.requester.principal => {
                Ok(CreateOutcome::Existing(first))
            }
            Some(_) => Err(StoreError::Backend(format!(
                "idempotency marker of {} names another requester's request",
                request.requester.principal
            ))),
            // Only possible once the first request's item has been deleted
            // (TTL or archival); the key stays used.
            None => Err(StoreError::Backend(format!(
                "idempotency key was used for request {}, which is no longer stored",
                marker.target_request_id
            ))),
        }
    }

    async fn list(
        &self,
        listing: Listing<'_>,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        let limit = page.limit.clamp(1, PageRequest::MAX_LIMIT) as usize;
        let mut start = match &page.cursor {
            Some(cursor) => Some(listing.decode(cursor)?),
            None => None,
        };
        // Read one more than asked: it tells whether a next page exists, so
        // the last page never carries a cursor to an empty page.
        let mut items = Vec::with_capacity(limit + 1);
        loop {
            let want = limit + 1 - items.len();
            let out = self
                .client
                .query()
                .table_name(&self.tables.requests)
                .index_name(listing.index)
                .key_condition_expression("#h = :h")
                .expression_attribute_names("#h", listing.hash_attr)
                .expression_attribute_values(":h", AttributeValue::S(listing.hash_value.into()))
                .scan_index_forward(false)
                .limit(want as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::Backend(describe("Query", &e)))?;
            for item in out.items.unwrap_or_default() {
                items.push(RequestItem::from_item(item)?.record);
            }
            match out.last_evaluated_key {
                Some(key) if items.len() <= limit => start = Some(key),
                _ => break,
            }
        }
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            Some(listing.encode(&items[limit - 1].request_id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}

type PutBuilder = aws_sdk_dynamodb::types::builders::PutBuilder;

const CONDITION_FAILED: &str = "ConditionalCheckFailed";

/// Hash-key prefix of seen-once markers; a ULID never contains `#`, so no
/// marker can collide with a request.
const SEEN_PREFIX: &str = "SEEN#";
const TRANSACTION_CONFLICT: &str = "TransactionConflict";

/// Why one item of a cancelled transaction failed.
#[derive(Debug)]
struct Reason {
    code: String,
    /// The item as it was, when `ALL_OLD` was asked for and it existed.
    item: Option<Item>,
}

fn failed(reasons: &[Reason], index: usize) -> bool {
    reasons
        .get(index)
        .is_some_and(|r| r.code == CONDITION_FAILED)
}

fn transact_put(put: PutBuilder) -> Result<TransactWriteItem, StoreError> {
    let put = put
        .build()
        .map_err(|e| StoreError::Backend(format!("building a put: {e}")))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// An audit event's item: the event, plus its UTC day for the `byDay`
/// index analytics reads by time.
fn audit_item(event: &AuditEvent) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::aws_sdk_dynamodb_1::to_item(event)
        .map_err(|e| StoreError::Backend(format!("encoding audit event: {e}")))?;
    item.insert(
        attr::DAY.to_string(),
        AttributeValue::S(history::day(event.at)),
    );
    Ok(item)
}

/// 20 ms, 40 ms, 80 ms… plus up to 100% jitter, so racing writers spread out.
fn backoff(attempt: u32) -> Duration {
    let base = 20u64 << attempt.min(6);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    Duration::from_millis(base + nanos % base)
}

#[async_trait]
impl RequestStore for DynamoStore {
    async fn create(
        &self,
        request: &AccessRequest,
        event: &AuditEvent,
    ) -> Result<CreateOutcome, StoreError> {
        let mut items = vec![
            transact_put(
                self.put_request(RequestItem::new(request).to_item()?)
                    .condition_expression("attribute_not_exists(#id)")
                    .expression_attribute_names("#id", attr::REQUEST_ID),
            )?,
            self.put_audit(&jit_core::trail::complete(None, request, event))?,
        ];
        let marker = request
            .idempotency_key
            .as_ref()
            .map(|key| IdempotencyMarker::new(request, key));
        if let Some(marker) = &marker {
            items.push(transact_put(
                self.put_request(marker.to_item()?)
                    .condition_expression("attribute_not_exists(#id)")
                    .expression_attribute_names("#id", attr::REQUEST_ID)
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    ),
            )?);
        }

        let reasons = match self
            .transact("TransactWriteItems(create)", &event.event_id, items)
            .await?
        {
            Ok(()) => return Ok(CreateOutcome::Created(request.clone())),
            Err(reasons) => reasons,
        };
        // The key check comes first: a retry is answered with the first
        // request even in the (theoretical) case its id was also reused.
        if let Some(marker) = marker
            && failed(&reasons, 2)
        {
            let old = reasons.into_iter().nth(2).and_then(|r| r.item);
            return self.replay(request, &marker.request_id, old).await;
        }
        if failed(&reasons, 0) {
            return Err(StoreError::AlreadyExists(request.request_id.clone()));
        }
        Err(StoreError::Backend(format!(
            "TransactWriteItems(create) cancelled: {:?}",
            reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>()
        )))
    }

    async fn get(&self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        match self.get_item(id.as_str()).await? {
            Some(item) => Ok(Some(RequestItem::from_item(item)?.record)),
            None => Ok(None),
        }
    }

    async fn transition(
        &self,
        prior: &AccessRequest,
        next: &AccessRequest,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        if prior.request_id != next.request_id {
            return Err(StoreError::Backend(format!(
                "a transition must keep the request id ({} became {})",
                prior.request_id, next.request_id
            )));
        }
        let guarded = self
            .put_request(RequestItem::new(next).to_item()?)
            .condition_expression("#s = :s AND #v = :v")
            .expression_attribute_names("#s", attr::STATUS)
            .expression_attribute_names("#v", attr::VERSION)
            .expression_attribute_values(":s", AttributeValue::S(prior.status.as_str().into()))
            .expression_attribute_values(":v", AttributeValue::N(prior.version.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let items = vec![
            transact_put(guarded)?,
            self.put_audit(&jit_core::trail::complete(Some(prior), next, event))?,
        ];

        let reasons = match self
            .transact("TransactWriteItems(transition)", &event.event_id, items)
            .await?
        {
            Ok(()) => return Ok(()),
            Err(reasons) => reasons,
        };
        if !failed(&reasons, 0) {
            return Err(StoreError::Backend(format!(
                "TransactWriteItems(transition) cancelled: {:?}",
                reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>()
            )));
        }
        // The guard failed: name what is stored now. ALL_OLD gives it in the
        // same round trip; without it (no item, or a server that omits it)
        // read it.
        let stored = match reasons.into_iter().next().and_then(|r| r.item) {
            Some(old) => Some(stored_status(&old)?),
            None => self.get(&prior.request_id).await?.map(|r| r.status),
        };
        match stored {
            Some(current) => Err(StoreError::Conflict {
                current: Some(current),
            }),
            None => Err(StoreError::NotFound(prior.request_id.clone())),
        }
    }

    /// Queries `byRequester`; eventually consistent on AWS (see the module docs).
    async fn list_by_requester(
        &self,
        requester: &Principal,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        let listing = Listing {
            index: BY_REQUESTER_INDEX,
            hash_attr: attr::REQUESTER,
            hash_value: requester.as_str(),
        };
        self.list(listing, page).await
    }

    /// Queries `byStatus`; eventually consistent on AWS (see the module docs).
    async fn list_by_status(
        &self,
        status: Status,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        let listing = Listing {
            index: BY_STATUS_INDEX,
            hash_attr: attr::STATUS,
            hash_value: status.as_str(),
        };
        self.list(listing, page).await
    }

    async fn audit_events(&self, id: &RequestId) -> Result<Vec<AuditEvent>, StoreError> {
        let mut events = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.audit)
                .key_condition_expression("#r = :r")
                .expression_attribute_names("#r", attr::REQUEST_ID)
                .expression_attribute_values(":r", AttributeValue::S(id.to_string()))
                .scan_index_forward(true)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::Backend(describe("Query(audit)", &e)))?;
            for item in out.items.unwrap_or_default() {
                events.push(
                    serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| {
                        StoreError::Backend(format!("decoding audit event: {}", redact(&e)))
                    })?,
                );
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(events),
            }
        }
    }

    /// Queries `byStatus`, `byRequester` or `allRequests` (whichever the
    /// filter narrows best) with the time range as a key condition on the
    /// request id; eventually consistent on AWS.
    async fn list_all(
        &self,
        filter: &jit_core::ports::RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        self.list_filtered(filter, page).await
    }

    /// Queries `byDay` one UTC day at a time; eventually consistent on AWS.
    async fn audit_events_between(
        &self,
        from: jit_core::request::Timestamp,
        to: jit_core::request::Timestamp,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError> {
        self.events_between(from, to, page).await
    }

    /// A conditional put of `SEEN#<key>`: it succeeds when no marker is
    /// there or the one there has expired (TTL deletes late, so an expired
    /// marker may still be read). TTL removes it eventually; the stream
    /// backstop skips it (it carries no `record`).
    async fn first_use(
        &self,
        key: &str,
        now: jit_core::request::Timestamp,
        expires_at: jit_core::request::Timestamp,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.requests)
            .item(
                attr::REQUEST_ID,
                AttributeValue::S(format!("{SEEN_PREFIX}{key}")),
            )
            .item(
                attr::EXPIRES_AT,
                AttributeValue::N(ttl_seconds(expires_at).to_string()),
            )
            .condition_expression("attribute_not_exists(#id) OR #x <= :now")
            .expression_attribute_names("#id", attr::REQUEST_ID)
            .expression_attribute_names("#x", attr::EXPIRES_AT)
            .expression_attribute_values(":now", AttributeValue::N(now.timestamp().to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::Backend(describe("PutItem(seen)", &e))),
        }
    }

    /// Idempotent per event id: a retried step appending the same event
    /// again finds it stored and leaves it (the first copy is kept).
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.audit)
            .set_item(Some(audit_item(event)?))
            .condition_expression("attribute_not_exists(#e)")
            .expression_attribute_names("#e", attr::EVENT_ID)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(())
            }
            Err(e) => Err(StoreError::Backend(describe("PutItem(audit)", &e))),
        }
    }
}

/// The status attribute of a stored request item.
fn stored_status(item: &Item) -> Result<Status, StoreError> {
    match item.get(attr::STATUS) {
        Some(AttributeValue::S(s)) => s
            .parse()
            .map_err(|e| StoreError::Backend(format!("stored status: {e}"))),
        _ => Err(StoreError::Backend(
            "stored item has no status attribute".into(),
        )),
    }
}
