//! OpenID Connect sign-in against a loopback identity provider: a small
//! HTTP/1.1 server on 127.0.0.1 serving the discovery document, a JWKS and
//! a token endpoint that checks the PKCE verifier and signs RS256 ID tokens
//! (with a test-only RSA key, `test-issuer-key.der`, generated for these
//! tests and used nowhere else). The console talks to it over real TCP.
//! Bounded in time; the server stops with the test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::{Method, StatusCode, header};
use jit_console::fetch::{Fetch, HttpBackend};
use jit_console::oidc::{OidcClient, OidcConfig, OidcError};
use jit_console::{
    ApiAnswer, ApiCall, Backend, Console, ConsoleRequest, Session, SessionKey, SignIn,
};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY_DER: &[u8] = include_bytes!("test-issuer-key.der");
const CLIENT_ID: &str = "console-client";

/// What the fake issuer knows: the challenge and nonce of the sign-in the
/// browser "started" (a real browser carries them to the authorize page).
#[derive(Default)]
struct IssuerState {
    challenge: String,
    nonce: String,
    /// Claims to sign instead of the defaults (a bad token's test).
    claims_override: Option<Value>,
    /// `Authorization` headers the fake API saw.
    api_auth: Vec<String>,
}

struct FakeIssuer {
    base: String,
    key: RsaKeyPair,
    state: Mutex<IssuerState>,
}

impl FakeIssuer {
    fn sign(&self, claims: &Value, kid: &str) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{signing_input}.{}", B64.encode(sig))
    }

    fn claims(&self, nonce: &str, now: i64) -> Value {
        json!({
            "iss": self.base, "aud": CLIENT_ID, "sub": "0f1e-2d3c",
            "email": "alice@example.com", "email_verified": true,
            "groups": ["engineering", "sre"], "nonce": nonce,
            "iat": now, "exp": now + 3600,
        })
    }

    fn jwk(&self) -> Value {
        let c: ring::rsa::PublicKeyComponents<Vec<u8>> = self.key.public().into();
        let (n, e) = (c.n, c.e);
        json!({"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": B64.encode(n), "e": B64.encode(e)})
    }

    fn answer(
        &self,
        method: &str,
        path: &str,
        headers: &HashMap<String, String>,
        body: &str,
    ) -> (u16, String) {
        let now = chrono::Utc::now().timestamp();
        match (method, path.split('?').next().unwrap_or("")) {
            ("GET", "/.well-known/openid-configuration") => (
                200,
                json!({
                    "issuer": self.base,
                    "authorization_endpoint": format!("{}/authorize", self.base),
                    "token_endpoint": format!("{}/token", self.base),
                    "jwks_uri": format!("{}/jwks", self.base),
                })
                .to_string(),
            ),
            ("GET", "/jwks") => (200, json!({"keys": [self.jwk()]}).to_string()),
            ("POST", "/token") => {
                let form: HashMap<String, String> = body
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), jit_core::links::percent_decode(v).unwrap()))
                    .collect();
                let st = self.state.lock().unwrap();
                let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                let pkce_ok = B64.encode(Sha256::digest(verifier.as_bytes())) == st.challenge;
                if form.get("code").map(String::as_str) != Some("good-code")
                    || form.get("grant_type").map(String::as_str) != Some("authorization_code")
                    || form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
                    || !pkce_ok
                {
                    return (400, json!({"error": "invalid_grant"}).to_string());
                }
                let claims = st
                    .claims_override
                    .clone()
                    .unwrap_or_else(|| self.claims(&st.nonce, now));
                (200, json!({"id_token": self.sign(&claims, "k1"), "token_type": "Bearer", "access_token": "opaque"}).to_string())
            }
            // A stand-in for the API behind its JWT authorizer.
            ("GET", "/requests") => {
                let auth = headers.get("authorization").cloned().unwrap_or_default();
                self.state.lock().unwrap().api_auth.push(auth);
                (200, json!({"requests": [], "nextCursor": null}).to_string())
            }
            _ => (404, "{}".into()),
        }
    }
}

async fn serve(issuer: Arc<FakeIssuer>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let issuer = issuer.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, mut body) = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break (
                        String::from_utf8_lossy(&buf[..i]).to_string(),
                        buf[i + 4..].to_vec(),
                    );
                }
            };
            let mut lines = head.lines();
            let mut first = lines.next().unwrap_or("").split(' ');
            let (method, path) = (
                first.next().unwrap_or("").to_string(),
                first.next().unwrap_or("").to_string(),
            );
            let headers: HashMap<String, String> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while body.len() < len {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            let (status, text) =
                issuer.answer(&method, &path, &headers, &String::from_utf8_lossy(&body));
            let resp = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

/// Plain HTTP/1.1 over loopback TCP: the console's `Fetch` port in tests.
struct LoopbackFetch;

#[async_trait::async_trait]
impl Fetch for LoopbackFetch {
    async fn send(&self, req: http::Request<Bytes>) -> Result<(u16, Bytes), String> {
        let uri = req.uri().clone();
        let authority = uri.authority().ok_or("no host")?.to_string();
        let mut sock = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| e.to_string())?;
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-length: {}\r\n",
            req.method(),
            uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            req.body().len()
        );
        for (k, v) in req.headers() {
            head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or_default()));
        }
        head.push_str("\r\n");
        sock.write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        sock.write_all(req.body())
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut out))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let i = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no head")?;
        let status: u16 = String::from_utf8_lossy(&out[..i])
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("no status")?;
        Ok((status, Bytes::copy_from_slice(&out[i + 4..])))
    }
}

/// A backend that records who called and answers empty lists.
#[derive(Default)]
struct Recorder(Mutex<Vec<Session>>);

#[async_trait::async_trait]
impl Backend for Recorder {
    async fn call(&self, who: &Session, call: ApiCall) -> ApiAnswer {
        self.0.lock().unwrap().push(who.clone());
        let body = match call.path.as_str() {
            "/entitlements" => json!({"entitlements": []}),
            "/requests" => json!({"requests": [], "nextCursor": null}),
            _ => json!({"error": {"code": "not_admin", "message": "no"}}),
        };
        let status = if body.get("error").is_some() {
            403
        } else {
            200
        };
        ApiAnswer { status, body }
    }
}

async fn start() -> (Arc<FakeIssuer>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = Arc::new(FakeIssuer {
        base,
        key: RsaKeyPair::from_der(KEY_DER).expect("the test key is a PKCS#1 RSA key"),
        state: Mutex::new(IssuerState::default()),
    });
    let server = tokio::spawn(serve(issuer.clone(), listener));
    (issuer, server)
}

fn client(issuer: &FakeIssuer) -> Arc<OidcClient> {
    Arc::new(OidcClient::new(
        OidcConfig {
            issuer: issuer.base.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: None,
            redirect_uri: "https://console.example.com/ui/auth/callback".into(),
            groups_claim: "groups".into(),
            email_verified_claim: "email_verified".into(),
        },
        Arc::new(LoopbackFetch),
    ))
}

fn get(path: &str, cookies: &str) -> ConsoleRequest {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (path.to_string(), None),
    };
    let mut headers = http::HeaderMap::new();
    if !cookies.is_empty() {
        headers.insert(header::COOKIE, cookies.parse().unwrap());
    }
    ConsoleRequest {
        method: Method::GET,
        path,
        query,
        headers,
        body: Bytes::new(),
    }
}

fn set_cookies(r: &http::Response<String>) -> String {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .filter(|c| !c.ends_with('='))
        .collect::<Vec<_>>()
        .join("; ")
}

fn query_param(url: &str, k: &str) -> String {
    url.split_once('?')
        .unwrap()
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
        .map(|v| jit_core::links::percent_decode(v).unwrap())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_person_signs_in_with_code_and_pkce_and_the_api_gets_their_token() {
    tokio::time::timeout(Duration::from_secs(30), async {
        // GIVEN a console deployed against the loopback issuer
        let (issuer, server) = start().await;
        let backend = Arc::new(Recorder::default());
        let console = Console {
            backend: backend.clone(),
            sign_in: SignIn::Oidc(client(&issuer)),
            key: SessionKey::new(&[9u8; 32]).unwrap(),
            secure_cookies: true,
            session_secs: 8 * 3600,
            clock: Arc::new(jit_core::ports::SystemClock),
        };

        // WHEN an unsigned visitor opens the inbox
        let r = console.handle(get("/ui/inbox", "")).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            r.headers()[header::LOCATION],
            "/ui/signin?next=%2Fui%2Finbox"
        );
        // THEN the sign-in goes to the issuer with a PKCE S256 challenge
        let r = console
            .handle(get("/ui/signin?next=%2Fui%2Finbox", ""))
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let to = r.headers()[header::LOCATION].to_str().unwrap().to_string();
        assert!(
            to.starts_with(&format!("{}/authorize?", issuer.base)),
            "{to}"
        );
        assert_eq!(query_param(&to, "code_challenge_method"), "S256");
        assert_eq!(query_param(&to, "client_id"), CLIENT_ID);
        assert_eq!(query_param(&to, "response_type"), "code");
        let cookie = set_cookies(&r);
        assert!(cookie.starts_with("__Host-jit_oidc="), "{cookie}");
        let set = r.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("Secure") && set.contains("SameSite=Lax"),
            "{set}"
        );
        {
            let mut st = issuer.state.lock().unwrap();
            st.challenge = query_param(&to, "code_challenge");
            st.nonce = query_param(&to, "nonce");
        }
        let state = query_param(&to, "state");

        // AND a callback with another state is refused
        let r = console
            .handle(get(
                &format!("/ui/auth/callback?code=good-code&state=x{state}"),
                &cookie,
            ))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        // AND one without the sign-in's cookie (another browser) too
        let r = console
            .handle(get(
                &format!("/ui/auth/callback?code=good-code&state={state}"),
                "",
            ))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);

        // WHEN the issuer sends the browser back with a code
        let r = console
            .handle(get(
                &format!("/ui/auth/callback?code=good-code&state={state}"),
                &cookie,
            ))
            .await;
        // THEN the person is signed in and sent where they were going
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.body());
        assert_eq!(r.headers()[header::LOCATION], "/ui/inbox");
        let session = set_cookies(&r);
        assert!(session.starts_with("__Host-jit_session="), "{session}");
        let r = console.handle(get("/", &session)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.body().contains("alice@example.com"));
        assert!(
            !r.body().contains("Local mode"),
            "no local sign-in banner deployed"
        );
        // AND every API call was made as them, with their groups and token
        let seen = backend.0.lock().unwrap().clone();
        let last = seen.last().unwrap();
        assert_eq!(last.user, "alice@example.com");
        assert_eq!(last.groups, vec!["engineering", "sre"]);
        let token = last
            .token
            .clone()
            .expect("the session carries the ID token");
        assert_eq!(token.split('.').count(), 3);

        // AND the deployed backend sends that token as the bearer
        let http_backend = HttpBackend {
            base: issuer.base.clone(),
            fetch: Arc::new(LoopbackFetch),
        };
        let a = http_backend.call(last, ApiCall::get("/requests")).await;
        assert_eq!(a.status, 200);
        assert_eq!(
            issuer.state.lock().unwrap().api_auth,
            vec![format!("Bearer {token}")]
        );

        // AND the local sign-in form does not exist in this console
        let mut post = get("/ui/signin", "");
        post.method = Method::POST;
        post.body = Bytes::from("user=mallory%40example.com&apikey=x");
        let r = console.handle(post).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        server.abort();
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn id_tokens_are_refused_unless_everything_checks() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (issuer, server) = start().await;
        let c = client(&issuer);
        let now = chrono::Utc::now().timestamp();
        let good = issuer.claims("n1", now);
        // GIVEN a good token, it verifies
        let v = c.verify(&issuer.sign(&good, "k1"), Some("n1"), now).await.unwrap();
        assert_eq!(v.user, "alice@example.com");
        // WHEN one thing is wrong THEN it is refused, saying what
        let with = |k: &str, x: Value| {
            let mut c = good.clone();
            c[k] = x;
            c
        };
        let cases: Vec<(&str, String, &str)> = vec![
            ("another audience", issuer.sign(&with("aud", json!("other-client")), "k1"), "aud"),
            ("another issuer", issuer.sign(&with("iss", json!("https://evil.example")), "k1"), "issuer"),
            ("expired", issuer.sign(&with("exp", json!(now - 3600)), "k1"), "expired"),
            ("another sign-in's nonce", issuer.sign(&with("nonce", json!("n2")), "k1"), "nonce"),
            ("an unknown key", issuer.sign(&good, "k9"), "kid"),
        ];
        for (what, token, says) in cases {
            match c.verify(&token, Some("n1"), now).await {
                Err(OidcError::Token(m)) => assert!(m.contains(says), "{what}: {m}"),
                other => panic!("{what}: {other:?}"),
            }
        }
        // AND a changed payload no longer matches its signature
        let t = issuer.sign(&good, "k1");
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], B64.encode(with("email", json!("boss@example.com")).to_string()), parts[2]);
        assert!(matches!(c.verify(&forged, Some("n1"), now).await, Err(OidcError::Token(m)) if m.contains("signature")));
        // AND `alg: none` is never accepted
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), B64.encode(good.to_string()));
        assert!(matches!(c.verify(&none, Some("n1"), now).await, Err(OidcError::Token(m)) if m.contains("RS256")));
        // AND an unverified email names nobody: `sub` does
        let v = c.verify(&issuer.sign(&with("email_verified", json!(false)), "k1"), Some("n1"), now).await.unwrap();
        assert_eq!(v.user, "0f1e-2d3c");
        server.abort();
    })
    .await
    .expect("bounded");
}
