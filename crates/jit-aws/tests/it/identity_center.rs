//! `IdentityCenterClient`'s wait on asynchronous provisioning, through the
//! real SDK against a **loopback fake of sso-admin's wire format** (JSON 1.1,
//! `X-Amz-Target: SWBExternalService.<Operation>`): moto 5.2.5 answers
//! every creation `SUCCEEDED` at once, so it cannot show a provisioning that
//! stays `IN_PROGRESS` or ends `FAILED`. The rest of the adapter is tested
//! on moto (`crates/jit-local/tests/it/aws_permission_sets.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_types::region::Region;
use jit_aws::identity_center::IdentityCenterClient;
use jit_core::identity_center::{Assignment, AssignmentManager, IdentityCenter};
use jit_core::ports::GrantError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the fake ends a creation: `FAILED` on the second status poll, or
/// never (always `IN_PROGRESS`).
#[derive(Clone, Copy)]
enum Ending {
    FailsOnSecondPoll,
    Never,
}

/// Serves until dropped (the task is aborted); counts status polls.
async fn fake(ending: Ending) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let polls = Arc::new(AtomicUsize::new(0));
    let counted = polls.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let polls = counted.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then the body by its length.
                let (head_end, length) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                let target = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-amz-target:"))
                    .map(|t| t.trim().to_string())
                    .unwrap_or_default();
                let body = match target.as_str() {
                    "swbexternalservice.listaccountassignments" => {
                        r#"{"AccountAssignments":[]}"#.to_string()
                    }
                    "swbexternalservice.createaccountassignment" => {
                        r#"{"AccountAssignmentCreationStatus":{"Status":"IN_PROGRESS","RequestId":"req-1"}}"#.to_string()
                    }
                    "swbexternalservice.describeaccountassignmentcreationstatus" => {
                        let n = polls.fetch_add(1, Ordering::SeqCst) + 1;
                        match ending {
                            Ending::FailsOnSecondPoll if n >= 2 => r#"{"AccountAssignmentCreationStatus":{"Status":"FAILED","RequestId":"req-1","FailureReason":"the account is suspended"}}"#.to_string(),
                            _ => r#"{"AccountAssignmentCreationStatus":{"Status":"IN_PROGRESS","RequestId":"req-1"}}"#.to_string(),
                        }
                    }
                    other => format!(r#"{{"__type":"ValidationException","message":"the fake does not serve {other}"}}"#),
                };
                let status = if body.contains("__type") {
                    "400 Bad Request"
                } else {
                    "200 OK"
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (url, polls, task)
}

async fn client(url: &str) -> IdentityCenterClient {
    let sdk = jit_aws::sdk::config_loader()
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .load()
        .await;
    let idc = IdentityCenter {
        instance_arn: "arn:aws:sso:::instance/ssoins-fake".into(),
        identity_store_id: "d-0000000000".into(),
        region: "us-east-1".into(),
        portal_url: "https://d-0000000000.awsapps.com/start".into(),
        group_cache_secs: 300,
        local_directory: None,
    };
    IdentityCenterClient::new(&sdk, &idc)
}

fn assignment() -> Assignment {
    Assignment {
        account: jit_core::AccountId::parse("111111111111").unwrap(),
        permission_set_arn: "arn:aws:sso:::permissionSet/ssoins-fake/ps-1".into(),
        user_id: "user-1".into(),
    }
}

#[tokio::test]
async fn a_provisioning_that_fails_is_a_permanent_error_naming_the_reason() {
    // GIVEN Identity Center answering IN_PROGRESS, then FAILED
    let (url, polls, task) = fake(Ending::FailsOnSecondPoll).await;
    let c = client(&url).await;
    // WHEN an assignment is created
    let err = c.create(&assignment()).await.unwrap_err();
    task.abort();
    // THEN the status was polled until it ended, and the failure is not
    // worth retrying, with Identity Center's reason
    assert_eq!(polls.load(Ordering::SeqCst), 2);
    match err {
        GrantError::Other(m) => assert!(
            m.contains("failed")
                && m.contains("the account is suspended")
                && m.contains("111111111111"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_provisioning_still_in_progress_after_the_bound_is_transient() {
    // GIVEN Identity Center never finishing
    let (url, polls, task) = fake(Ending::Never).await;
    let c = client(&url)
        .await
        .with_wait_bound(Duration::from_millis(1200));
    let started = std::time::Instant::now();
    // WHEN an assignment is created
    let err = c.create(&assignment()).await.unwrap_err();
    task.abort();
    // THEN the wait is bounded, backs off, and ends in a transient error
    // (the step is retried)
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(&err, GrantError::Transient(m) if m.contains("still in progress")),
        "{err:?}"
    );
    let n = polls.load(Ordering::SeqCst);
    assert!(
        (1..=4).contains(&n),
        "polled {n} times in 1.2 s with a 250 ms doubling backoff"
    );
}
