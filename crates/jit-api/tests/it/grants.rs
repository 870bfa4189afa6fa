//! The grant endpoints as the deployed API sees them (people authenticated
//! by the gateway, no local trusted caller): who gets a 404, a 403 or the
//! credentials, and how AWS's refusals are named. Fake grant ports; the real
//! SQLite store.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method};
use jit_api::{ApiRequest, handle};
use jit_core::grant_ports::{
    AccountInspector, ConsoleSignin, GrantPorts, IdentityInfo, PolicyInfo, RoleInfo, RoleRevoker,
};
use jit_core::ports::{
    AssumeRoleSpec, CredentialIssuer, GrantError, IamPrincipal, IssuedCredentials, ManualClock,
    PolicyAttacher, Secret, Workflow, WorkflowError, WorkflowInput,
};
use jit_core::request::{Change, TaskToken};
use jit_core::service::Settings;
use jit_core::{
    AccountId, AuthSource, Broker, Caller, Catalog, PolicyName, Principal, RequestId, RoleArn,
    Status,
};
use serde_json::{Value, json};

const CATALOG: &str = r#"
defaults:
  approvers: { emails: [lead@example.com] }
entitlements:
  - name: Admin
    role_arn: "arn:aws:iam::123456789012:role/JIT-Admin"
    max_duration: 2h
"#;

struct NoWorkflow;

#[async_trait]
impl Workflow for NoWorkflow {
    async fn start(&self, _: &WorkflowInput) -> Result<(), WorkflowError> {
        Ok(())
    }
    async fn stop(&self, _: &RequestId, _: &str) -> Result<(), WorkflowError> {
        Ok(())
    }
    async fn send_task_success(&self, _: &TaskToken, _: &Value) -> Result<(), WorkflowError> {
        Ok(())
    }
    async fn send_task_failure(
        &self,
        _: &TaskToken,
        _: &str,
        _: &str,
    ) -> Result<(), WorkflowError> {
        Ok(())
    }
    async fn history(&self, _: &RequestId) -> Result<Vec<Value>, WorkflowError> {
        Ok(vec![])
    }
}

/// Answers AssumeRole with fixed credentials, or with the error it is told;
/// records the specs it was called with.
#[derive(Default)]
struct Issuer {
    fail: Mutex<Option<GrantError>>,
    specs: Mutex<Vec<AssumeRoleSpec>>,
}

#[async_trait]
impl CredentialIssuer for Issuer {
    async fn assume_role(&self, spec: &AssumeRoleSpec) -> Result<IssuedCredentials, GrantError> {
        self.specs.lock().unwrap().push(spec.clone());
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        Ok(IssuedCredentials {
            access_key_id: "ASIATEST".into(),
            secret_access_key: Secret::new("api-test-secret"),
            session_token: Secret::new("api-test-token"),
            expiration: chrono::DateTime::from_timestamp(1_800_003_600, 0).unwrap(),
        })
    }
}

struct Unused;

#[async_trait]
impl PolicyAttacher for Unused {
    async fn attach(
        &self,
        _: &AccountId,
        _: &IamPrincipal,
        _: &PolicyName,
    ) -> Result<(), GrantError> {
        Err(GrantError::Other("not used".into()))
    }
    async fn detach(
        &self,
        _: &AccountId,
        _: &IamPrincipal,
        _: &PolicyName,
    ) -> Result<(), GrantError> {
        Err(GrantError::Other("not used".into()))
    }
}

#[async_trait]
impl RoleRevoker for Unused {
    async fn put_role_policy(&self, _: &RoleArn, _: &str, _: &str) -> Result<(), GrantError> {
        Ok(())
    }
    async fn get_role_policy(&self, _: &RoleArn, _: &str) -> Result<Option<String>, GrantError> {
        Ok(None)
    }
    async fn delete_role_policy(&self, _: &RoleArn, _: &str) -> Result<(), GrantError> {
        Ok(())
    }
}

#[async_trait]
impl ConsoleSignin for Unused {
    async fn signin_url(&self, _: &IssuedCredentials) -> Result<Secret, GrantError> {
        Ok(Secret::new(
            "https://signin.example/federation?Action=login&SigninToken=t",
        ))
    }
}

/// Says whether the role exists.
struct Inspector(bool);

#[async_trait]
impl AccountInspector for Inspector {
    async fn policy(
        &self,
        _: &AccountId,
        _: &PolicyName,
    ) -> Result<Option<PolicyInfo>, GrantError> {
        Ok(None)
    }
    async fn role(&self, role: &RoleArn) -> Result<Option<RoleInfo>, GrantError> {
        Ok(self.0.then(|| RoleInfo {
            arn: role.to_string(),
            max_session_secs: 3600,
            trust_policy: "{}".into(),
            permissions_boundary: None,
            tags: vec![],
        }))
    }
    async fn identity(&self, _: &IamPrincipal) -> Result<Option<IdentityInfo>, GrantError> {
        Ok(None)
    }
}

fn broker(issuer: Arc<Issuer>, role_exists: bool, with_grants: bool) -> Broker {
    let store = Arc::new(jit_store_sqlite::SqliteStore::in_memory().unwrap());
    let clock = Arc::new(ManualClock::new(
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    ));
    let ports = GrantPorts {
        issuer,
        iam: jit_core::ledger::GrantIam::new(
            Arc::new(Unused),
            Arc::new(Unused),
            store.clone(),
            clock.clone(),
        ),
        console: Arc::new(Unused),
        inspector: Some(Arc::new(Inspector(role_exists))),
        session_cap_secs: 3600,
        catalog_check: None,
    };
    Broker {
        store,
        workflow: Arc::new(NoWorkflow),
        catalog: Arc::new(Catalog::parse(CATALOG, "catalog.yaml").unwrap()),
        clock,
        settings: Settings::default(),
        grants: with_grants.then(|| Arc::new(ports)),
        policy: None,
    }
}

fn person(email: &str) -> Caller {
    Caller::person(Principal::parse(email).unwrap(), AuthSource::Jwt, vec![])
}

async fn call(
    b: &Broker,
    caller: &Caller,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut headers = HeaderMap::new();
    if body.is_some() {
        headers.insert("content-type", "application/json".parse().unwrap());
    }
    let resp = handle(
        b,
        caller,
        ApiRequest {
            method,
            path: path.into(),
            query: None,
            headers,
            body: body.map(|v| Bytes::from(v.to_string())).unwrap_or_default(),
        },
    )
    .await;
    (
        resp.status().as_u16(),
        serde_json::from_str(resp.body()).unwrap(),
    )
}

/// A request by alice, moved to GRANTED in the store (as the workflow would).
async fn granted(b: &Broker) -> String {
    granted_with(b, None).await
}

/// Like [`granted`], with a session policy recorded on the request (as the
/// policy generation step would).
async fn granted_with(b: &Broker, session_policy: Option<String>) -> String {
    let (s, v) = call(
        b,
        &person("alice@example.com"),
        Method::POST,
        "/requests",
        Some(json!({"entitlement": "Admin", "duration": "1h", "justification": "INC-1"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = RequestId::parse(v["requestId"].as_str().unwrap()).unwrap();
    for to in [Status::Validating, Status::Approved, Status::Granted] {
        let r = b.store.get(&id).await.unwrap().unwrap();
        let change = Change {
            actor: "system:test".into(),
            at: b.clock.now(),
            reason: None,
            source: "test",
        };
        let (mut next, event) = r.transition(to, &change).unwrap();
        next.session_policy = session_policy.clone();
        b.store.transition(&r, &next, &event).await.unwrap();
    }
    id.to_string()
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_session_policy_that_cannot_be_bounded_is_refused_before_sts() {
    let issuer = Arc::new(Issuer::default());
    let b = broker(issuer.clone(), true, true);
    // GIVEN a recorded policy that fits STS's 2,048 characters only without
    // the window's bound
    let policy = |n: usize| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Action":"s3:GetObject","Effect":"Allow","Resource":"arn:aws:s3:::{}"}}]}}"#,
            "b".repeat(n)
        )
    };
    let n = 2048 - policy(0).len();
    assert_eq!(policy(n).len(), 2048);
    let id = granted_with(&b, Some(policy(n))).await;
    // WHEN the requester asks for credentials THEN a 502 naming the limit,
    // and STS is never called
    let path = format!("/requests/{id}/credentials");
    let (s, v) = call(&b, &person("alice@example.com"), Method::GET, &path, None).await;
    assert_eq!((s, code(&v)), (502, "session_policy_invalid"), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("2048"),
        "{v}"
    );
    assert!(issuer.specs.lock().unwrap().is_empty());

    // AND a policy with room for the bound goes to STS with it
    let id = granted_with(&b, Some(policy(n - 200))).await;
    let path = format!("/requests/{id}/credentials");
    let (s, v) = call(&b, &person("alice@example.com"), Method::GET, &path, None).await;
    assert_eq!(s, 200, "{v}");
    let sent = issuer.specs.lock().unwrap()[0]
        .session_policy
        .clone()
        .unwrap();
    assert!(sent.starts_with(&policy(n - 200)[..60]), "{sent}");
    assert!(
        sent.ends_with(
            r#""Condition":{"DateGreaterThan":{"aws:CurrentTime":"2027-01-15T09:00:00Z"}}}]}"#
        ),
        "{sent}"
    );
}

#[tokio::test]
async fn only_the_requester_gets_credentials_others_get_403_or_404() {
    let issuer = Arc::new(Issuer::default());
    let b = broker(issuer.clone(), true, true);
    let id = granted(&b).await;
    let path = format!("/requests/{id}/credentials");

    // (caller, status, code)
    let cases = [
        (person("eve@example.com"), 404, "not_found"),
        (person("lead@example.com"), 403, "not_requester"),
        (
            Caller {
                identity: None,
                trusted_as: Some("chat-bot".into()),
                trusted_to_decide: true,
                identify_hint: None,
            },
            403,
            "not_requester",
        ),
        (Caller::default(), 403, "unauthenticated"),
    ];
    for (caller, status, want) in cases {
        let (s, v) = call(&b, &caller, Method::GET, &path, None).await;
        assert_eq!((s, code(&v)), (status, want), "{caller:?}: {v}");
    }
    assert!(
        issuer.specs.lock().unwrap().is_empty(),
        "STS was never called for them"
    );

    let (s, v) = call(&b, &person("alice@example.com"), Method::GET, &path, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["SecretAccessKey"], "api-test-secret");
    let spec = issuer.specs.lock().unwrap()[0].clone();
    assert_eq!(spec.duration_secs, 3600);
    assert_eq!(spec.source_identity, "alice@example.com");
    assert!(
        spec.session_name.starts_with("alice@example.com-"),
        "{}",
        spec.session_name
    );
    assert_eq!(spec.tags, vec![("jit:request-id".to_string(), id.clone())]);

    // Wrong method; unknown sub-route
    let (s, _) = call(&b, &person("alice@example.com"), Method::POST, &path, None).await;
    assert_eq!(s, 405);
    let (s, v) = call(
        &b,
        &person("alice@example.com"),
        Method::POST,
        &format!("/requests/{id}/extend/maybe"),
        None,
    )
    .await;
    assert_eq!((s, code(&v)), (404, "route_not_found"));
    // And a stranger cannot revoke or extend what they cannot see
    let (s, _) = call(
        &b,
        &person("eve@example.com"),
        Method::POST,
        &format!("/requests/{id}/revoke"),
        Some(json!({"reason": "x"})),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn aws_refusals_are_named_with_the_fix_and_never_quoted() {
    // (issuer error, does the role exist, status, code)
    let cases = [
        (
            GrantError::TrustRefused(
                "AccessDenied: User: arn:aws:sts::1:assumed-role/broker/x".into(),
            ),
            true,
            502,
            "trust_refused",
        ),
        (
            GrantError::TrustRefused(
                "AccessDenied: User: arn:aws:sts::1:assumed-role/broker/x".into(),
            ),
            false,
            502,
            "role_missing",
        ),
        (
            GrantError::DurationTooLong("ValidationError: DurationSeconds exceeds".into()),
            true,
            502,
            "duration_too_long",
        ),
        (
            GrantError::Transient("Throttling: Rate exceeded".into()),
            true,
            503,
            "aws_unavailable",
        ),
        (
            GrantError::Other("InvalidParameter: secret detail".into()),
            true,
            502,
            "aws_error",
        ),
    ];
    for (err, exists, status, want) in cases {
        let issuer = Arc::new(Issuer::default());
        *issuer.fail.lock().unwrap() = Some(err.clone());
        let b = broker(issuer, exists, true);
        let id = granted(&b).await;
        let (s, v) = call(
            &b,
            &person("alice@example.com"),
            Method::GET,
            &format!("/requests/{id}/credentials"),
            None,
        )
        .await;
        assert_eq!((s, code(&v)), (status, want), "{err:?}: {v}");
        let text = v.to_string();
        assert!(
            !text.contains("assumed-role/broker") && !text.contains("secret detail"),
            "{text}"
        );
        if want == "trust_refused" || want == "role_missing" {
            assert!(
                text.contains("arn:aws:iam::123456789012:role/JIT-Admin"),
                "{text}"
            );
        }
    }
}

#[tokio::test]
async fn without_grant_adapters_the_endpoints_say_so() {
    let b = broker(Arc::new(Issuer::default()), true, false);
    let id = granted(&b).await;
    for (method, path, body) in [
        (Method::GET, format!("/requests/{id}/credentials"), None),
        (Method::GET, format!("/requests/{id}/console"), None),
        (
            Method::POST,
            format!("/requests/{id}/revoke"),
            Some(json!({"reason": "x"})),
        ),
    ] {
        let (s, v) = call(&b, &person("alice@example.com"), method, &path, body).await;
        assert_eq!((s, code(&v)), (503, "grants_unavailable"), "{path}: {v}");
    }
}

/// A trusted app acting for people; `decides`: also trusted to decide.
fn bot(name: &str, decides: bool) -> Caller {
    Caller {
        identity: None,
        trusted_as: Some(name.into()),
        trusted_to_decide: decides,
        identify_hint: None,
    }
}

#[tokio::test]
async fn a_trusted_caller_revokes_and_decides_extensions_only_when_trusted_to_decide() {
    let b = broker(Arc::new(Issuer::default()), true, true);
    let id = granted(&b).await;
    // GIVEN alice asked for 30 more minutes, through a bot trusted to request
    let requester_bot = bot("request-bot", false);
    let (s, v) = call(
        &b,
        &requester_bot,
        Method::POST,
        &format!("/requests/{id}/extend"),
        Some(
            json!({"requester": "alice@example.com", "duration": "30m", "reason": "INC-1 goes on"}),
        ),
    )
    .await;
    assert_eq!(s, 200, "a requester's action: {v}");
    assert_eq!(v["extensions"][0]["status"], "PENDING");
    // WHEN that bot names the approver to approve it, or to revoke
    let approve = format!("/requests/{id}/extend/approve");
    let revoke = format!("/requests/{id}/revoke");
    for (path, body) in [
        (&approve, json!({"requester": "lead@example.com"})),
        (
            &revoke,
            json!({"requester": "lead@example.com", "reason": "over"}),
        ),
    ] {
        let (s, v) = call(&b, &requester_bot, Method::POST, path, Some(body)).await;
        // THEN it is refused, saying why
        assert_eq!((s, code(&v)), (403, "not_trusted_decider"), "{path}: {v}");
        assert_eq!(v["error"]["field"], "requester");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("request-bot")
        );
    }
    let (_, v) = call(
        &b,
        &person("alice@example.com"),
        Method::GET,
        &format!("/requests/{id}"),
        None,
    )
    .await;
    assert_eq!(
        (v["status"].as_str(), v["extensions"][0]["status"].as_str()),
        (Some("GRANTED"), Some("PENDING"))
    );

    // WHEN a bot trusted to decide does the same
    let decider = bot("approver-bot", true);
    let (s, v) = call(
        &b,
        &decider,
        Method::POST,
        &approve,
        Some(json!({"requester": "lead@example.com"})),
    )
    .await;
    // THEN it counts, and the record says who acted through whom
    assert_eq!(s, 200, "{v}");
    let d = &v["extensions"][0]["decisions"][0];
    assert_eq!(d["approver"], "lead@example.com");
    assert_eq!(d["trustedCaller"], "approver-bot");
    let (s, v) = call(
        &b,
        &decider,
        Method::POST,
        &revoke,
        Some(json!({"requester": "lead@example.com", "reason": "over"})),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("REVOKED")), "{v}");
    let events = b
        .store
        .audit_events(&RequestId::parse(&id).unwrap())
        .await
        .unwrap();
    let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    assert!(
        actors.contains(&"alice@example.com via request-bot"),
        "{actors:?}"
    );
    assert_eq!(
        actors
            .iter()
            .filter(|a| **a == "lead@example.com via approver-bot")
            .count(),
        2,
        "the extension decision and the revoke: {actors:?}"
    );
}
