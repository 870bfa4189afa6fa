//! A **loopback fake of Lambda's Invoke wire format** (`POST
//! /2015-03-31/functions/{name}/invocations`, the payload as the body, a
//! function error as `X-Amz-Function-Error` with `{errorType,
//! errorMessage}`, an `Event` invoke queued with `202`), for the adapters
//! that invoke our own functions (`LambdaIdentityCenter`,
//! `LambdaPolicyGenerator`, `LambdaDeferrer`). Why a fake: moto's Lambda
//! runs a function's code only in Docker (not available here), and
//! without it echoes payloads, so it cannot run our handlers. Every
//! request is also checked to be SigV4-signed for service `lambda` with
//! the caller's key ([`caller_config`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_credential_types::Credentials;
use aws_types::region::Region;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A function's handler: the event in, its answer or its error
/// (`errorType`, `errorMessage`) out.
pub type Handler = Arc<
    dyn Fn(Value) -> Pin<Box<dyn Future<Output = Result<Value, (String, String)>> + Send>>
        + Send
        + Sync,
>;

/// A handler from an async closure.
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, (String, String)>> + Send + 'static,
{
    Arc::new(move |v| Box::pin(f(v)))
}

/// What the fake does with an invocation of its one function.
#[derive(Clone)]
pub enum Behaviour {
    /// Runs the handler for a `RequestResponse` invoke (and refuses any
    /// other kind).
    Serve(Handler),
    /// Queues an `Event` invoke as Lambda does (`202`, no payload),
    /// keeping the event (and refuses any other kind).
    Queue(Arc<Mutex<Vec<Value>>>),
}

pub struct FakeLambda {
    pub url: String,
    /// Invocations of the function (not of unknown functions).
    pub invocations: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLambda {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request (headers, then the body by its length).
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, length) = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    Some((head, buf[head_end..].to_vec()))
}

async fn respond(sock: &mut tokio::net::TcpStream, status: &str, headers: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(body).await;
}

/// Lambda's Invoke on 127.0.0.1 with one function, `function`: serves
/// until dropped. Any other function name is Lambda's
/// `ResourceNotFoundException`.
pub async fn fake_lambda(function: &'static str, behaviour: Behaviour) -> FakeLambda {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let invocations = Arc::new(AtomicUsize::new(0));
    let counted = invocations.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let behaviour = behaviour.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let Some((head, body)) = read_request(&mut sock).await else {
                    return;
                };
                let request_line = head.lines().next().unwrap_or_default().to_string();
                let expected = format!("POST /2015-03-31/functions/{function}/invocations ");
                if !request_line.starts_with(&expected) {
                    // What Lambda answers for a function it does not have.
                    let msg = json!({"Type": "User", "message": format!("Function not found: {request_line}")});
                    respond(
                        &mut sock,
                        "404 Not Found",
                        "x-amzn-errortype: ResourceNotFoundException\r\n",
                        msg.to_string().as_bytes(),
                    )
                    .await;
                    return;
                }
                // The kind of invoke the adapter must ask for.
                let want = match &behaviour {
                    Behaviour::Queue(_) => "x-amz-invocation-type: event",
                    Behaviour::Serve(_) => "x-amz-invocation-type: requestresponse",
                };
                let kind_ok = head
                    .lines()
                    .any(|l| l.to_ascii_lowercase().trim_end() == want);
                assert!(kind_ok, "not `{want}`: {head}");
                // Signed as Lambda expects: SigV4, service `lambda`, the
                // caller's key and region.
                let signed = head.lines().any(|l| {
                    let l = l.to_ascii_lowercase();
                    l.starts_with("authorization: aws4-hmac-sha256 credential=akidcaller/")
                        && l.contains("/us-east-1/lambda/aws4_request")
                        && l.contains("signature=")
                });
                assert!(signed, "not a SigV4 request for lambda: {head}");
                counted.fetch_add(1, Ordering::SeqCst);
                let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let handler = match behaviour {
                    Behaviour::Queue(queued) => {
                        queued.lock().unwrap().push(event);
                        respond(&mut sock, "202 Accepted", "", b"").await;
                        return;
                    }
                    Behaviour::Serve(handler) => handler,
                };
                match handler(event).await {
                    Ok(answer) => {
                        respond(
                            &mut sock,
                            "200 OK",
                            "x-amz-executed-version: $LATEST\r\n",
                            answer.to_string().as_bytes(),
                        )
                        .await
                    }
                    Err((error_type, message)) => {
                        let body = json!({"errorType": error_type, "errorMessage": message});
                        respond(
                            &mut sock,
                            "200 OK",
                            "x-amz-function-error: Unhandled\r\nx-amz-executed-version: $LATEST\r\n",
                            body.to_string().as_bytes(),
                        )
                        .await
                    }
                }
            });
        }
    });
    FakeLambda {
        url,
        invocations,
        task,
    }
}

/// The calling function's AWS configuration: the fake's endpoint, the
/// caller's key (`AKIDCALLER`, which the fake checks the signature names).
pub async fn caller_config(fake: &FakeLambda) -> aws_config::SdkConfig {
    jit_aws::sdk::config_loader()
        .endpoint_url(&fake.url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDCALLER",
            super::DUMMY_SECRET,
            None,
            None,
            "test",
        ))
        .load()
        .await
}
