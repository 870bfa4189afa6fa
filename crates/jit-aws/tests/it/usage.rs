//! `CloudTrailUsage` (CloudTrail `LookupEvents` by access key) through the
//! real SDK, against a loopback fake of CloudTrail's wire format: JSON 1.1,
//! `X-Amz-Target` naming `LookupEvents` (botocore sends
//! `com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents`;
//! the Rust SDK, generated from the Smithy model, sends
//! `CloudTrail_20131101.LookupEvents`: the fake accepts both and nothing
//! else), answers shaped as CloudTrail's (events with their
//! `CloudTrailEvent` JSON string, epoch-second `EventTime`, `NextToken`
//! paging).
//!
//! Why a fake and not moto: moto 5.2.5 (the version `scripts/test`
//! installs) does not implement `LookupEvents` at all — its server answers
//! HTTP 500 with "The lookup_events action has not been implemented"
//! (checked against `moto_server` on loopback) — so it cannot return events
//! by access key. The end-to-end case still keeps its store on moto.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_types::region::Region;
use jit_aws::CloudTrailUsage;
use jit_core::usage::{UsageCollector, UsageError, UsageSource};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common;

/// The two spellings of the operation CloudTrail accepts.
const TARGETS: [&str; 2] = [
    "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents",
    "CloudTrail_20131101.LookupEvents",
];

/// One request the fake saw.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    content_type: String,
    body: Value,
}

type Handler = Box<dyn Fn(&Value) -> (u16, String) + Send + Sync>;

/// A loopback CloudTrail: answers every request with `handler(body)`, for
/// at most 30 s (it then stops by itself; tests abort it sooner).
async fn fake_cloudtrail(
    handler: Handler,
) -> (String, Arc<Mutex<Vec<Seen>>>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while let Ok(Ok((mut stream, _))) =
            tokio::time::timeout_at(deadline, listener.accept()).await
        {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let head_end = loop {
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case(name)
                            .then(|| v.trim().to_string())
                    })
                    .unwrap_or_default()
            };
            let len: usize = header("content-length").parse().unwrap_or(0);
            while buf.len() < head_end + len {
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
            let (status, answer) = if TARGETS.contains(&header("x-amz-target").as_str()) {
                handler(&body)
            } else {
                (
                    400,
                    json!({"__type": "UnknownOperationException", "message": "not LookupEvents"})
                        .to_string(),
                )
            };
            log.lock().unwrap().push(Seen {
                target: header("x-amz-target"),
                content_type: header("content-type"),
                body,
            });
            let resp = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-requestid: 6c1b3d2e-0000-4000-8000-000000000001\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = stream.write_all(resp.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (url, seen, server)
}

async fn adapter(url: &str) -> CloudTrailUsage {
    let config = jit_aws::sdk::config_loader()
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDTESTING",
            common::DUMMY_SECRET,
            None,
            None,
            "jit-aws-tests",
        ))
        .load()
        .await;
    CloudTrailUsage::from_config(&config)
}

/// One event as `LookupEvents` returns it (shape recorded from CloudTrail:
/// the management event's JSON record as a string in `CloudTrailEvent`).
fn event(key: &str, n: u32, source: &str, name: &str, error: Option<&str>) -> Value {
    let time = 1_764_928_800 + i64::from(n) * 7;
    let mut record = json!({
        "eventVersion": "1.11",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLEID:jit-01JF3Q",
            "arn": "arn:aws:sts::123456789012:assumed-role/JIT-ElevatedAdminRole/jit-01JF3Q",
            "accountId": "123456789012",
            "accessKeyId": key,
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLEID",
                    "arn": "arn:aws:iam::123456789012:role/JIT-ElevatedAdminRole",
                    "accountId": "123456789012", "userName": "JIT-ElevatedAdminRole"},
                "attributes": {"creationDate": "2026-12-05T09:55:00Z", "mfaAuthenticated": "false"},
                "sourceIdentity": "alice@example.com"
            }
        },
        "eventTime": chrono::DateTime::from_timestamp(time, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": source,
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.10",
        "userAgent": "aws-cli/2.22.0 md/command#ec2.describe-instances",
        "requestParameters": {"maxResults": 1000},
        "responseElements": null,
        "requestID": format!("00000000-0000-4000-8000-{n:012}"),
        "eventID": format!("10000000-0000-4000-8000-{n:012}"),
        "readOnly": true,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": "123456789012",
        "eventCategory": "Management",
        "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": "ec2.us-east-1.amazonaws.com"}
    });
    if let Some(code) = error {
        record["errorCode"] = json!(code);
        record["errorMessage"] = json!("You are not authorized to perform this operation.");
    }
    json!({
        "EventId": format!("10000000-0000-4000-8000-{n:012}"),
        "EventName": name,
        "ReadOnly": "true",
        "AccessKeyId": key,
        "EventTime": time as f64,
        "EventSource": source,
        "Username": "jit-01JF3Q",
        "Resources": [],
        "CloudTrailEvent": record.to_string(),
    })
}

fn key_of(body: &Value) -> String {
    body["LookupAttributes"][0]["AttributeValue"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn times() -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    (
        chrono::DateTime::from_timestamp(1_764_928_000, 0).unwrap(),
        chrono::DateTime::from_timestamp(1_764_936_000, 0).unwrap(),
    )
}

#[tokio::test]
async fn lookup_reads_every_page_by_access_key_and_keeps_error_codes() {
    // GIVEN CloudTrail holding three pages of events for one access key
    let (url, seen, server) = fake_cloudtrail(Box::new(|body| {
        let answer = match body.get("NextToken").and_then(Value::as_str) {
            None => json!({
                "Events": [
                    event("ASIAPAGED", 1, "ec2.amazonaws.com", "DescribeInstances", None),
                    event("ASIAPAGED", 2, "s3.amazonaws.com", "ListBuckets", None),
                ],
                "NextToken": "tok-1/+=",
            }),
            Some("tok-1/+=") => json!({
                "Events": [event("ASIAPAGED", 3, "ec2.amazonaws.com", "TerminateInstances",
                    Some("Client.UnauthorizedOperation"))],
                "NextToken": "tok-2",
            }),
            Some(_) => json!({"Events": []}),
        };
        (200, answer.to_string())
    }))
    .await;
    let ct = adapter(&url).await;
    let (start, end) = times();

    // WHEN its calls are looked up
    let began = std::time::Instant::now();
    let lookup = ct
        .calls_by_access_key("ASIAPAGED", start, end, 2_000)
        .await
        .expect("lookup");
    let took = began.elapsed();
    server.abort();

    // THEN all three calls, in order, with their source, name, time and
    // error code
    assert!(!lookup.truncated);
    let got: Vec<_> = lookup
        .calls
        .iter()
        .map(|c| {
            (
                c.event_source.as_str(),
                c.event_name.as_str(),
                c.error_code.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("ec2.amazonaws.com", "DescribeInstances", None),
            ("s3.amazonaws.com", "ListBuckets", None),
            (
                "ec2.amazonaws.com",
                "TerminateInstances",
                Some("Client.UnauthorizedOperation")
            ),
        ]
    );
    assert_eq!(lookup.calls[0].at.timestamp(), 1_764_928_807);
    // AND paced to CloudTrail's 2 calls a second: three pages, two gaps
    assert!(took >= Duration::from_millis(1_000), "{took:?}");
    // AND three LookupEvents requests by AccessKeyId over the window,
    // passing each NextToken back as given
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let tokens: Vec<_> = seen
        .iter()
        .map(|s| s.body.get("NextToken").cloned())
        .collect();
    assert_eq!(
        tokens,
        vec![None, Some(json!("tok-1/+=")), Some(json!("tok-2"))]
    );
    for s in &seen {
        assert!(TARGETS.contains(&s.target.as_str()), "{}", s.target);
        assert_eq!(s.content_type, "application/x-amz-json-1.1");
        assert_eq!(
            s.body["LookupAttributes"],
            json!([{"AttributeKey": "AccessKeyId", "AttributeValue": "ASIAPAGED"}])
        );
        assert_eq!(s.body["MaxResults"], json!(50));
        assert_eq!(s.body["StartTime"].as_f64(), Some(start.timestamp() as f64));
        assert_eq!(s.body["EndTime"].as_f64(), Some(end.timestamp() as f64));
    }
}

#[tokio::test]
async fn a_session_with_more_calls_than_allowed_is_read_up_to_the_cap_and_marked_truncated() {
    // GIVEN a session whose history never ends: every page full, with a token
    let (url, seen, server) = fake_cloudtrail(Box::new(|_| {
        let events: Vec<Value> = (0..50)
            .map(|n| {
                event(
                    "ASIABUSY",
                    n,
                    "ec2.amazonaws.com",
                    "DescribeInstances",
                    None,
                )
            })
            .collect();
        (
            200,
            json!({"Events": events, "NextToken": "more"}).to_string(),
        )
    }))
    .await;
    let (start, end) = times();

    // WHEN at most 120 calls may be read
    let lookup = adapter(&url)
        .await
        .calls_by_access_key("ASIABUSY", start, end, 120)
        .await
        .expect("lookup");
    server.abort();

    // THEN 120 calls from three pages, and the lookup says it stopped early
    assert_eq!(lookup.calls.len(), 120);
    assert!(lookup.truncated);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn throttling_stops_the_sweep_and_other_errors_name_their_code_without_secrets() {
    // GIVEN CloudTrail throttling one key and refusing another's lookup
    let (url, _seen, server) = fake_cloudtrail(Box::new(|body| match key_of(body).as_str() {
        "ASIATHROTTLED" => (
            400,
            json!({"__type": "ThrottlingException", "message": "Rate exceeded"}).to_string(),
        ),
        _ => (
            400,
            json!({"__type": "com.amazonaws.cloudtrail.v20131101#InvalidLookupAttributesException",
                   "message": "Lookup attribute is invalid."})
            .to_string(),
        ),
    }))
    .await;
    let ct = adapter(&url).await;
    let (start, end) = times();

    // WHEN both are looked up
    let throttled = ct
        .calls_by_access_key("ASIATHROTTLED", start, end, 10)
        .await
        .unwrap_err();
    let refused = ct
        .calls_by_access_key("ASIAREFUSED", start, end, 10)
        .await
        .unwrap_err();
    server.abort();

    // THEN throttling is its own error (the sweep stops looking up), the
    // other names CloudTrail's code; neither carries the secret
    assert!(
        matches!(throttled, UsageError::Throttled(ref m) if m.contains("ThrottlingException")),
        "{throttled:?}"
    );
    assert!(
        matches!(refused, UsageError::Failed(ref m) if m.contains("InvalidLookupAttributesException")),
        "{refused:?}"
    );
    for e in [throttled, refused] {
        assert!(!format!("{e} {e:?}").contains(common::DUMMY_SECRET));
    }
}

#[tokio::test]
async fn the_sweep_records_cloudtrail_usage_once_on_dynamodb() {
    // GIVEN (on DynamoDB, moto) an assume-role grant that ended an hour ago
    // after two credential sets, and CloudTrail holding each session's calls
    let store = common::fresh_store().await;
    let (assume, _attach, _recent) = jit_testkit::usage::ended_grants(&store).await;
    let (url, seen, server) = fake_cloudtrail(Box::new(|body| {
        let answer = match (key_of(body).as_str(), body.get("NextToken").and_then(Value::as_str)) {
            ("ASIAUSEDKEY1", None) => json!({
                "Events": [event("ASIAUSEDKEY1", 1, "s3.amazonaws.com", "ListBuckets", None)],
                "NextToken": "k1-p2",
            }),
            ("ASIAUSEDKEY1", Some(_)) => json!({
                "Events": [event("ASIAUSEDKEY1", 2, "s3.amazonaws.com", "GetBucketPolicy", None)],
            }),
            ("ASIAUSEDKEY2", _) => json!({
                "Events": [
                    event("ASIAUSEDKEY2", 3, "s3.amazonaws.com", "ListBuckets", None),
                    event("ASIAUSEDKEY2", 4, "s3.amazonaws.com", "PutBucketPolicy", Some("AccessDenied")),
                ],
            }),
            _ => json!({"Events": []}),
        };
        (200, answer.to_string())
    }))
    .await;
    let ct = adapter(&url).await;

    // WHEN the sweep runs twice
    let now = chrono::Utc::now();
    let first = UsageCollector::new()
        .collect(&store, &ct, now)
        .await
        .expect("sweep");
    let second = UsageCollector::new()
        .collect(&store, &ct, now)
        .await
        .expect("sweep again");
    server.abort();

    // THEN one usage event with both sessions' calls, CloudTrail asked once
    // per key (and per page) by the first pass only
    assert_eq!(
        (first.recorded, second.recorded),
        (1, 0),
        "{first:?} {second:?}"
    );
    let events = jit_testkit::usage::usage_events(&store).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].request_id, assume.request_id);
    let rec = events[0].usage.as_deref().unwrap();
    assert_eq!(rec.calls, 4);
    assert_eq!(
        rec.used.keys().collect::<Vec<_>>(),
        vec!["s3:GetBucketPolicy", "s3:ListAllMyBuckets"]
    );
    assert_eq!(rec.used["s3:ListAllMyBuckets"], 2);
    assert_eq!(
        rec.denied.keys().collect::<Vec<_>>(),
        vec!["s3:PutBucketPolicy"]
    );
    let keys: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| key_of(&s.body))
        .collect();
    assert_eq!(keys, vec!["ASIAUSEDKEY1", "ASIAUSEDKEY1", "ASIAUSEDKEY2"]);
}

#[test]
fn only_the_expire_function_may_look_up_cloudtrail() {
    // GIVEN the template, read as text: resources are its two-space keys
    let template = include_str!("../../../../template.yaml");
    let mut resource = "";
    let mut holders = std::collections::BTreeSet::new();
    for line in template.lines() {
        let body = line.trim_end();
        if body.starts_with("  ") && !body.starts_with("   ") && body.ends_with(':') {
            resource = body.trim().trim_end_matches(':');
        }
        if body.to_ascii_lowercase().contains("cloudtrail:") && !body.trim_start().starts_with('#')
        {
            holders.insert((resource, body.trim().to_string()));
        }
    }
    // THEN one statement grants CloudTrail, LookupEvents only, to the role
    // of the function that runs the sweep
    assert_eq!(
        holders.into_iter().collect::<Vec<_>>(),
        vec![(
            "ExpireFunctionRole",
            "Action: cloudtrail:LookupEvents".to_string()
        )]
    );
    assert!(template.contains("Role: !GetAtt ExpireFunctionRole.Arn"));
    assert!(template.contains("Binary: expire\n"));
}
