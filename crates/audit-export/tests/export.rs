//! What the `audit-export` Lambda does with a stream batch, on moto through
//! the real SDK: the audit table's `INSERT` images decoded
//! (`jit_lambda::audit_inserts`), turned into day-partitioned JSON lines
//! (`jit_core::export::objects`) and put into S3 (`jit_aws::export::S3Sink`).

use jit_core::export::ObjectSink;
use jit_core::lifecycle::Status;
use jit_core::ports::RequestStore;
use serde_json::{Value, json};

fn endpoint() -> String {
    match std::env::var("JIT_TEST_AWS_ENDPOINT") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("JIT_TEST_AWS_ENDPOINT is not set: run ./scripts/test, which starts moto"),
    }
}

/// A stream record as Lambda receives it (DynamoDB JSON images).
fn record(name: &str, event: &jit_core::AuditEvent) -> Value {
    let item: serde_dynamo::Item = serde_dynamo::to_item(event).expect("an item");
    let mut image = serde_json::to_value(item).expect("JSON");
    image["day"] = json!({"S": event.at.format("%Y-%m-%d").to_string()});
    json!({"eventName": name, "eventSource": "aws:dynamodb", "dynamodb": {"NewImage": image}})
}

#[tokio::test]
async fn a_stream_batch_lands_in_s3_as_day_partitioned_json_lines() {
    // GIVEN a request's trail (created with its snapshot, transitions with
    // their changes) as the audit table's stream delivers it
    let store = jit_store_sqlite::SqliteStore::in_memory().unwrap();
    let at = jit_testkit::base_time();
    let r = jit_testkit::create(
        &store,
        &jit_testkit::sample_request(&jit_testkit::unique_principal("alice"), at),
    )
    .await;
    let r = jit_testkit::advance(&store, &r, Status::Validating, jit_testkit::later(at, 1)).await;
    let r = jit_testkit::advance(&store, &r, Status::Approved, jit_testkit::later(at, 2)).await;
    jit_testkit::advance(&store, &r, Status::Granted, jit_testkit::later(at, 3)).await;
    let events = store.audit_events(&r.request_id).await.unwrap();
    let mut records: Vec<Value> = events.iter().map(|e| record("INSERT", e)).collect();
    records.push(record("MODIFY", &events[0]));
    let batch = json!({ "Records": records });

    // WHEN the Lambda's steps run on it
    let decoded = jit_lambda::audit_inserts(&batch).expect("decodes");
    assert_eq!(decoded, events, "INSERTs only, decoded exactly");
    let objects = jit_core::export::objects(&decoded);
    let config = jit_aws::sdk::config_loader()
        .endpoint_url(endpoint())
        .region(aws_types::region::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIDTESTING",
            "x",
            None,
            None,
            "t",
        ))
        .load()
        .await;
    let bucket = format!("jit-audit-export-{}", std::process::id());
    let sink = jit_aws::export::S3Sink::from_config(&config, &bucket);
    sink.client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    for (key, body) in &objects {
        sink.put(key, body.clone()).await.expect("put");
    }

    // THEN S3 holds one object per UTC day, one line per event
    let listed = sink
        .client()
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert_eq!(keys, objects.keys().cloned().collect::<Vec<_>>());
    let mut lines = Vec::new();
    for key in &keys {
        assert!(key.starts_with("audit/day="), "{key}");
        let got = sink
            .client()
            .get_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .expect("get");
        let bytes = got.body.collect().await.expect("body").into_bytes();
        lines.extend(
            String::from_utf8(bytes.to_vec())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["action"], "created");
    assert_eq!(lines[0]["entitlement"], "JIT-ElevatedAdminRole");
    assert_eq!(lines[3]["to_status"], "GRANTED");
    assert!(lines[3]["expires_at_ms"].is_i64());
    // AND a redelivered batch writes the same keys again (no duplicates)
    for (key, body) in &objects {
        sink.put(key, body.clone()).await.expect("put again");
    }
    let again = sink
        .client()
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    assert_eq!(again.contents().len(), keys.len());
}
