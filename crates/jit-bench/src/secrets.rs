//! A fake Secrets Manager on 127.0.0.1: answers `GetSecretValue` (the
//! only call a Lambda makes at init) with dummy values, so `slack-notify`
//! and `approval-callback`, which read their secrets before asking for an
//! event, can start without the network. Any other call gets a 400.

use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::runtime_api::{HttpRequest, read_request, write_response};

/// No connection waits longer than this for anything.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What every secret holds, except the public URL's: 48 characters, enough
/// for the link-signing key (at least 32).
pub const DUMMY_SECRET: &str = "jit-bench-dummy-secret-not-a-real-one-0123456789";
/// What a secret whose id names the public URL holds.
pub const DUMMY_PUBLIC_URL: &str = "https://jit.example.invalid/v1";

pub struct FakeSecretsManager {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakeSecretsManager {
    /// Listens on a free loopback port.
    pub fn start() -> io::Result<FakeSecretsManager> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counting, stopping) = (served.clone(), stop.clone());
        thread::Builder::new()
            .name("fake-secrets-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let counting = counting.clone();
                    let _ = thread::Builder::new()
                        .name("fake-secrets-conn".into())
                        .spawn(move || {
                            let _ = serve(stream, &counting);
                        });
                }
            })?;
        Ok(FakeSecretsManager { addr, served, stop })
    }

    /// What to put in `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GetSecretValue` calls answered so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for FakeSecretsManager {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// The JSON answer to one request: `Some` for a `GetSecretValue`.
fn answer(req: &HttpRequest) -> Option<String> {
    let target = req
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
        .map(|(_, v)| v.as_str());
    if req.method != "POST" || target != Some("secretsmanager.GetSecretValue") {
        return None;
    }
    let body: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
    let id = body["SecretId"].as_str()?;
    let value = if id.contains("public-url") {
        DUMMY_PUBLIC_URL
    } else {
        DUMMY_SECRET
    };
    Some(
        serde_json::json!({
            "ARN": format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{id}-AbCdEf"),
            "Name": id,
            "SecretString": value,
            "VersionId": "00000000-0000-0000-0000-000000000001",
            "VersionStages": ["AWSCURRENT"],
        })
        .to_string(),
    )
}

fn serve(stream: TcpStream, served: &AtomicUsize) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let json = || ("Content-Type", "application/x-amz-json-1.1".to_string());
    while let Some(req) = read_request(&mut reader, || {})? {
        match answer(&req) {
            Some(body) => {
                served.fetch_add(1, Ordering::SeqCst);
                write_response(&mut writer, "200 OK", &[json()], body.as_bytes())?;
            }
            None => write_response(
                &mut writer,
                "400 Bad Request",
                &[json()],
                br#"{"__type":"InvalidRequestException","message":"jit-bench serves GetSecretValue only"}"#,
            )?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get_secret(id: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            path: "/".into(),
            headers: vec![(
                "X-Amz-Target".into(),
                "secretsmanager.GetSecretValue".into(),
            )],
            body: format!(r#"{{"SecretId":"{id}"}}"#).into_bytes(),
        }
    }

    #[test]
    fn answers_get_secret_value_by_id() {
        let secret = |id| {
            let a: serde_json::Value =
                serde_json::from_str(&answer(&get_secret(id)).unwrap()).unwrap();
            a["SecretString"].as_str().unwrap().to_string()
        };
        assert_eq!(secret("jit/link-key"), DUMMY_SECRET);
        assert!(DUMMY_SECRET.len() >= 32);
        assert_eq!(secret("jit-public-url"), DUMMY_PUBLIC_URL);
    }

    #[test]
    fn refuses_any_other_call() {
        let mut req = get_secret("x");
        req.headers = vec![("X-Amz-Target".into(), "secretsmanager.ListSecrets".into())];
        assert_eq!(answer(&req), None);
    }
}
