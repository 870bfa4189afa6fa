//! What the shared suite cannot see: the DynamoDB-specific shape of tables
//! and items (TTL, stream, indexes, markers), and error reporting. Run on
//! moto through the real SDK; each test has its own tables.

use crate::common;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, BillingMode, KeyType, ProjectionType, StreamViewType, TimeToLiveStatus,
};
use jit_aws::{
    BY_REQUESTER_INDEX, BY_STATUS_INDEX, CreateTablesError, DynamoStore, RequestItem, create_tables,
};
use jit_core::Principal;
use jit_core::lifecycle::Status;
use jit_core::ports::{CreateOutcome, PageRequest, RequestStore, StoreError};
use jit_testkit::{
    base_time, create, created_event, full_request, later, sample_request, unique_principal,
    with_idempotency,
};

type Item = HashMap<String, AttributeValue>;

async fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&common::sdk_config().await)
}

async fn raw_item(store: &DynamoStore, key: &str) -> Option<Item> {
    store
        .client()
        .get_item()
        .table_name(&store.tables().requests)
        .key("requestId", AttributeValue::S(key.to_string()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
}

/// How many items an index holds, whatever their keys.
async fn index_count(store: &DynamoStore, index: &str) -> usize {
    store
        .client()
        .scan()
        .table_name(&store.tables().requests)
        .index_name(index)
        .send()
        .await
        .expect("Scan index")
        .items()
        .len()
}

fn s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

// ---------------------------------------------------------------- tables

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_tables_sets_ttl_stream_indexes_and_on_demand_billing() {
    // GIVEN fresh table names
    let client = dynamodb().await;
    let names = common::fresh_table_names();

    // WHEN the tables are created
    let created = create_tables(&client, &names).await.expect("create tables");

    // THEN the requests table has TTL on expiresAt
    let ttl = client
        .describe_time_to_live()
        .table_name(&names.requests)
        .send()
        .await
        .expect("DescribeTimeToLive");
    let ttl = ttl.time_to_live_description().expect("a TTL description");
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    assert_eq!(ttl.attribute_name(), Some("expiresAt"));

    // AND a NEW_AND_OLD_IMAGES stream, whose ARN create_tables returned
    let table = client
        .describe_table()
        .table_name(&names.requests)
        .send()
        .await
        .expect("DescribeTable");
    let table = table.table().expect("a table description");
    let stream = table.stream_specification().expect("a stream");
    assert!(stream.stream_enabled());
    assert_eq!(
        stream.stream_view_type(),
        Some(&StreamViewType::NewAndOldImages)
    );
    assert!(created.requests_stream_arn.is_some());
    assert_eq!(
        created.requests_stream_arn.as_deref(),
        table.latest_stream_arn()
    );

    // AND on-demand billing, hash key requestId
    assert_eq!(
        table.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );
    let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
        schema
            .iter()
            .map(|k| (k.attribute_name().to_string(), k.key_type().clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(table.key_schema()),
        vec![("requestId".to_string(), KeyType::Hash)]
    );

    // AND the three indexes, newest-first by requestId, projecting everything
    let mut indexes: Vec<_> = table
        .global_secondary_indexes()
        .iter()
        .map(|i| {
            (
                i.index_name().unwrap_or_default().to_string(),
                keys(i.key_schema()),
                i.projection().and_then(|p| p.projection_type()).cloned(),
            )
        })
        .collect();
    indexes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        indexes,
        vec![
            (
                jit_aws::dynamo::ALL_REQUESTS_INDEX.to_string(),
                vec![
                    ("entity".to_string(), KeyType::Hash),
                    ("requestId".to_string(), KeyType::Range)
                ],
                Some(ProjectionType::All)
            ),
            (
                BY_REQUESTER_INDEX.to_string(),
                vec![
                    ("requester".to_string(), KeyType::Hash),
                    ("requestId".to_string(), KeyType::Range)
                ],
                Some(ProjectionType::All)
            ),
            (
                BY_STATUS_INDEX.to_string(),
                vec![
                    ("status".to_string(), KeyType::Hash),
                    ("requestId".to_string(), KeyType::Range)
                ],
                Some(ProjectionType::All)
            ),
        ]
    );

    // AND the audit table is keyed (requestId, eventId) and never TTL'd
    let audit = client
        .describe_table()
        .table_name(&names.audit)
        .send()
        .await
        .expect("DescribeTable audit");
    assert_eq!(
        keys(audit.table().expect("audit table").key_schema()),
        vec![
            ("requestId".to_string(), KeyType::Hash),
            ("eventId".to_string(), KeyType::Range)
        ]
    );
    // AND its byDay index reads events by UTC day and id (analytics)
    let by_day: Vec<_> = audit
        .table()
        .expect("audit table")
        .global_secondary_indexes()
        .iter()
        .map(|i| {
            (
                i.index_name().unwrap_or_default().to_string(),
                keys(i.key_schema()),
            )
        })
        .collect();
    assert_eq!(
        by_day,
        vec![(
            jit_aws::dynamo::BY_DAY_INDEX.to_string(),
            vec![
                ("day".to_string(), KeyType::Hash),
                ("eventId".to_string(), KeyType::Range)
            ]
        )]
    );
    let audit_ttl = client
        .describe_time_to_live()
        .table_name(&names.audit)
        .send()
        .await
        .expect("DescribeTimeToLive audit");
    assert_ne!(
        audit_ttl
            .time_to_live_description()
            .and_then(|t| t.time_to_live_status()),
        Some(&TimeToLiveStatus::Enabled)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_tables_refuses_to_adopt_existing_tables() {
    // GIVEN tables that already exist
    let client = dynamodb().await;
    let names = common::fresh_table_names();
    create_tables(&client, &names).await.expect("first create");

    // WHEN they are created again
    let again = create_tables(&client, &names).await;

    // THEN that is refused, naming the table
    match again {
        Err(CreateTablesError::AlreadyExists(table)) => assert_eq!(table, names.requests),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
}

// ----------------------------------------------------------------- items

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_carry_flat_index_attributes_and_ttl_as_epoch_seconds() {
    // GIVEN a granted request whose expiry has a fraction of a second
    let store = common::fresh_store().await;
    let alice = unique_principal("alice");
    let mut granted = full_request(&alice, base_time());
    let expires = granted.expires_at.expect("granted") + chrono::Duration::milliseconds(250);
    granted.expires_at = Some(expires);

    // WHEN it is stored
    create(&store, &granted).await;

    // THEN its item has the index keys as plain strings, the version as a
    // number, and expiresAt as a NUMBER of epoch seconds, rounded up
    let item = raw_item(&store, granted.request_id.as_str())
        .await
        .expect("stored");
    assert_eq!(s(&item, "requester").as_deref(), Some(alice.as_str()));
    assert_eq!(s(&item, "status").as_deref(), Some("GRANTED"));
    assert_eq!(item.get("version"), Some(&AttributeValue::N("4".into())));
    assert_eq!(
        item.get("expiresAt"),
        Some(&AttributeValue::N((expires.timestamp() + 1).to_string()))
    );
    // AND the record itself decodes back unchanged
    let decoded: RequestItem =
        serde_dynamo::aws_sdk_dynamodb_1::from_item(item).expect("a RequestItem");
    assert_eq!(decoded.record, granted);

    // WHEN a request that was never granted is stored
    let pending = create(&store, &sample_request(&alice, later(base_time(), 1))).await;

    // THEN its item has no expiresAt at all: TTL never deletes it
    let item = raw_item(&store, pending.request_id.as_str())
        .await
        .expect("stored");
    assert!(!item.contains_key("expiresAt"), "{item:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_markers_hold_the_first_id_and_stay_out_of_the_indexes() {
    // GIVEN a request created with an idempotency key
    let store = common::fresh_store().await;
    let alice = unique_principal("alice");
    let request = with_idempotency(sample_request(&alice, base_time()), "key-1", "fp-a");
    create(&store, &request).await;

    // THEN a marker item holds the request id and fingerprint
    let marker_key = format!("IDEMPOTENCY#{}#{}#key-1", alice.as_str().len(), alice);
    let marker = raw_item(&store, &marker_key).await.expect("a marker item");
    assert_eq!(
        s(&marker, "targetRequestId").as_deref(),
        Some(request.request_id.as_str())
    );
    assert_eq!(s(&marker, "fingerprint").as_deref(), Some("fp-a"));
    // AND it has no index or TTL attribute, so only the request is indexed
    for absent in ["requester", "status", "expiresAt"] {
        assert!(!marker.contains_key(absent), "marker has {absent}");
    }
    assert_eq!(index_count(&store, BY_REQUESTER_INDEX).await, 1);
    assert_eq!(index_count(&store, BY_STATUS_INDEX).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_with_separators_cannot_reach_another_requesters_request() {
    // GIVEN requester "<u>#b" used key "c"
    let store = common::fresh_store().await;
    let u = unique_principal("u");
    let first = Principal::parse(format!("{u}#b")).expect("valid principal");
    let hers = with_idempotency(sample_request(&first, base_time()), "c", "fp");
    create(&store, &hers).await;

    // WHEN requester "<u>" uses key "b#c" with the same fingerprint
    // (the same text once joined with '#')
    let second = Principal::parse(u.to_string()).expect("valid principal");
    let his = with_idempotency(sample_request(&second, later(base_time(), 1)), "b#c", "fp");
    let outcome = store
        .create(&his, &created_event(&his))
        .await
        .expect("create");

    // THEN his request is created on its own, not answered with hers
    assert_eq!(outcome, CreateOutcome::Created(his.clone()));
}

// ---------------------------------------------------------------- listings

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_limit_reads_as_one_item_per_page() {
    // GIVEN two requests
    let store = common::fresh_store().await;
    let alice = unique_principal("alice");
    let older = create(&store, &sample_request(&alice, base_time())).await;
    let newer = create(&store, &sample_request(&alice, later(base_time(), 1))).await;

    // WHEN the list is asked for pages of 0
    let first = store
        .list_by_requester(&alice, &PageRequest::first(0))
        .await
        .expect("list");

    // THEN pages hold one item (never zero, which could not make progress)
    assert_eq!(first.items, vec![newer]);
    let second = store
        .list_by_requester(
            &alice,
            &PageRequest {
                limit: 0,
                cursor: first.next_cursor,
            },
        )
        .await
        .expect("list");
    assert_eq!(second.items, vec![older]);
    assert_eq!(second.next_cursor, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_from_one_listing_is_refused_by_another() {
    // GIVEN a cursor from alice's list
    let store = common::fresh_store().await;
    let alice = unique_principal("alice");
    let bob = unique_principal("bob");
    for i in 0..2 {
        create(&store, &sample_request(&alice, later(base_time(), i))).await;
    }
    let page = store
        .list_by_requester(&alice, &PageRequest::first(1))
        .await
        .expect("list");
    let cursor = page.next_cursor.expect("a second page");

    // WHEN it is used for bob's list or the REQUESTED list
    let continued = PageRequest {
        limit: 1,
        cursor: Some(cursor),
    };
    let for_bob = store.list_by_requester(&bob, &continued).await;
    let by_status = store.list_by_status(Status::Requested, &continued).await;

    // THEN both are refused as invalid cursors
    assert!(
        matches!(for_bob, Err(StoreError::InvalidCursor)),
        "{for_bob:?}"
    );
    assert!(
        matches!(by_status, Err(StoreError::InvalidCursor)),
        "{by_status:?}"
    );
}

// ------------------------------------------------------------------ errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_errors_name_the_service_error_and_never_the_credentials() {
    // GIVEN a store pointed at tables that do not exist
    let client = dynamodb().await;
    let store = DynamoStore::new(client, common::fresh_table_names());
    let alice = unique_principal("alice");
    let request = sample_request(&alice, base_time());

    // WHEN it is read from and written to
    let read = store.get(&request.request_id).await;
    let write = store.create(&request, &created_event(&request)).await;
    let list = store
        .list_by_status(Status::Requested, &PageRequest::default())
        .await;

    // THEN each is a backend error with the service's code, and no secret
    for (what, message) in [
        ("get", read.err()),
        ("create", write.err()),
        ("list", list.err()),
    ]
    .map(|(what, e)| (what, e.map(|e| e.to_string())))
    {
        let message = message.unwrap_or_else(|| panic!("{what} on missing tables succeeded"));
        assert!(
            message.contains("ResourceNotFoundException"),
            "{what}: {message}"
        );
        assert!(!message.contains(common::DUMMY_SECRET), "{what}: {message}");
    }
}
