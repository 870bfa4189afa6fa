//! The audit trail outlives the request item on DynamoDB: once the item is
//! deleted (as TTL deletes it; moto's TTL never does, so the test deletes
//! it), the trail alone rebuilds the request, through the real SDK on moto.

use crate::common;

use aws_sdk_dynamodb::types::AttributeValue;
use jit_core::lifecycle::Status;
use jit_core::ports::RequestStore;
use jit_testkit::{advance, base_time, create, later, sample_request, unique_principal};

#[tokio::test]
async fn a_deleted_item_is_rebuilt_from_its_audit_trail() {
    // GIVEN a request granted, then its item deleted
    let store = common::fresh_store().await;
    let at = base_time();
    let r = create(&store, &sample_request(&unique_principal("alice"), at)).await;
    let r = advance(&store, &r, Status::Validating, later(at, 1)).await;
    let r = advance(&store, &r, Status::Approved, later(at, 2)).await;
    let granted = advance(&store, &r, Status::Granted, later(at, 3)).await;
    store
        .client()
        .delete_item()
        .table_name(&store.tables().requests)
        .key(
            "requestId",
            AttributeValue::S(granted.request_id.to_string()),
        )
        .send()
        .await
        .expect("delete the item");
    assert_eq!(store.get(&granted.request_id).await.unwrap(), None);

    // WHEN its trail is read
    let events = store.audit_events(&granted.request_id).await.unwrap();

    // THEN it is all there, and replays to the request as it was
    assert_eq!(events.len(), 4);
    assert_eq!(jit_core::trail::replay(&events), Some(granted));
}
