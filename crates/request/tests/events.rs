//! The Lambda adapter on the sample events in `events/` (the same files
//! `sam local invoke` and `cargo lambda invoke` use).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jit_core::ports::{ManualClock, Workflow, WorkflowError, WorkflowInput};
use jit_core::request::TaskToken;
use jit_core::service::Settings;
use jit_core::{AuthSource, Broker, Catalog, RequestId};
use lambda_http::RequestExt;
use request::{TrustPolicy, caller_from_context, handle};
use serde_json::Value;

fn event(name: &str) -> lambda_http::Request {
    event_with(name, |_| {})
}

/// A sample event with its JSON changed first.
fn event_with(name: &str, change: impl FnOnce(&mut Value)) -> lambda_http::Request {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    change(&mut v);
    lambda_http::request::from_str(&v.to_string()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The create event (REST API, Cognito authorizer) with other JWT claims.
fn create_with_claims(claims: Value) -> lambda_http::Request {
    event_with("request-create.json", |v| {
        v["requestContext"]["authorizer"]["claims"] = claims;
    })
}

#[derive(Default)]
struct Started(Mutex<Vec<WorkflowInput>>);

#[async_trait]
impl Workflow for Started {
    async fn start(&self, input: &WorkflowInput) -> Result<(), WorkflowError> {
        self.0.lock().unwrap().push(input.clone());
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

fn broker() -> (Broker, Arc<Started>) {
    let catalog = include_str!("../../../config/catalog.example.yaml");
    let started = Arc::new(Started::default());
    let broker = Broker {
        store: Arc::new(jit_store_sqlite::SqliteStore::in_memory().unwrap()),
        workflow: started.clone(),
        catalog: Arc::new(Catalog::parse(catalog, "catalog.example.yaml").unwrap()),
        clock: Arc::new(ManualClock::new(
            chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        )),
        settings: Settings::default(),
        grants: None,
        policy: None,
    };
    (broker, started)
}

fn body(resp: &lambda_http::Response<lambda_http::Body>) -> Value {
    match resp.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

#[test]
fn jwt_claims_give_the_identity_and_groups() {
    let e = event("request-create.json");
    let c = caller_from_context(e.request_context_ref(), &TrustPolicy::default());
    let id = c.identity.expect("identity from the Cognito claims");
    assert_eq!(id.principal.as_str(), "alice@example.com");
    assert_eq!(id.auth, AuthSource::Jwt);
    assert_eq!(id.groups, vec!["engineering", "oncall"]);
    assert!(c.trusted_as.is_none());
}

#[test]
fn an_email_names_the_caller_only_when_the_token_says_it_is_verified() {
    const SUB: &str = "5f1c0b7e-0000-4000-8000-000000000001";
    let trust = TrustPolicy::default();
    let who = |claims: Value, trust: &TrustPolicy| {
        let e = create_with_claims(claims);
        caller_from_context(e.request_context_ref(), trust)
            .identity
            .map(|i| i.principal.to_string())
    };
    // name, claims, who the caller is
    let cases = [
        (
            "verified (a string, as API Gateway passes claims)",
            serde_json::json!({"sub": SUB, "email": "alice@example.com", "email_verified": "true"}),
            Some("alice@example.com"),
        ),
        (
            "verified (a JSON boolean)",
            serde_json::json!({"sub": SUB, "email": "alice@example.com", "email_verified": true}),
            Some("alice@example.com"),
        ),
        (
            "no email_verified claim",
            serde_json::json!({"sub": SUB, "email": "lead@example.com"}),
            Some(SUB),
        ),
        (
            "email_verified false",
            serde_json::json!({"sub": SUB, "email": "lead@example.com", "email_verified": "false"}),
            Some(SUB),
        ),
        (
            "an unverified email and no sub",
            serde_json::json!({"email": "lead@example.com"}),
            None,
        ),
    ];
    for (name, claims, want) in cases {
        assert_eq!(who(claims, &trust).as_deref(), want, "{name}");
    }
    // A deployment may name another claim.
    let custom = TrustPolicy {
        email_verified_claim: "custom:email_ok".into(),
        ..TrustPolicy::default()
    };
    let claims =
        serde_json::json!({"sub": SUB, "email": "alice@example.com", "custom:email_ok": "true"});
    assert_eq!(
        who(claims.clone(), &custom).as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(who(claims, &trust).as_deref(), Some(SUB));
}

#[tokio::test]
async fn an_unverified_email_cannot_act_as_that_person() {
    let (b, _) = broker();
    // GIVEN a token claiming lead@example.com (an approver), unverified
    let e = create_with_claims(serde_json::json!({
        "sub": "attacker-sub-1", "email": "lead@example.com", "email_verified": "false",
        "cognito:groups": "engineering"
    }));
    // WHEN it creates a request
    let resp = handle(&b, &TrustPolicy::default(), e).await;
    let v = body(&resp);
    // THEN the requester is the token's subject, not the email
    assert_eq!(resp.status(), 201, "{v}");
    assert_eq!(v["requester"]["principal"], "attacker-sub-1");
    // AND a token with nothing usable is refused with a JSON error
    let e = create_with_claims(serde_json::json!({"email": "lead@example.com"}));
    let resp = handle(&b, &TrustPolicy::default(), e).await;
    let v = body(&resp);
    assert_eq!(resp.status(), 403, "{v}");
    assert_eq!(v["error"]["code"], "unauthenticated");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("email_verified"),
        "{v}"
    );
}

#[test]
fn iam_user_arn_is_the_identity() {
    let e = event("request-list.json");
    let c = caller_from_context(e.request_context_ref(), &TrustPolicy::default());
    let id = c.identity.unwrap();
    assert_eq!(
        id.principal.as_str(),
        "arn:aws:sts::123456789012:assumed-role/Engineer/alice"
    );
    assert_eq!(id.auth, AuthSource::Iam);
}

#[test]
fn trusted_callers_by_api_key_or_principal() {
    let e = event("request-access.json");
    let by_key = TrustPolicy {
        api_key_ids: vec!["chatbot-key-id".into()],
        ..TrustPolicy::default()
    };
    let c = caller_from_context(e.request_context_ref(), &by_key);
    assert_eq!(c.trusted_as.as_deref(), Some("api-key:chatbot-key-id"));
    assert!(
        !c.trusted_to_decide,
        "trusted to request is not trusted to decide"
    );
    assert!(
        c.identity.is_none(),
        "the app's own identity is not a requester"
    );
    let by_arn = TrustPolicy {
        principals: vec!["arn:aws:sts::123456789012:assumed-role/JitChatBot/bot".into()],
        ..TrustPolicy::default()
    };
    let c = caller_from_context(e.request_context_ref(), &by_arn);
    assert_eq!(
        c.trusted_as.as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/JitChatBot/bot")
    );
    let c = caller_from_context(e.request_context_ref(), &TrustPolicy::default());
    assert!(c.trusted_as.is_none());
    // Listed to decide: a trusted caller that may also decide.
    for decider in [
        TrustPolicy {
            decider_api_key_ids: vec!["chatbot-key-id".into()],
            ..TrustPolicy::default()
        },
        TrustPolicy {
            decider_principals: vec![
                "arn:aws:sts::123456789012:assumed-role/JitChatBot/bot".into(),
            ],
            ..TrustPolicy::default()
        },
    ] {
        let c = caller_from_context(e.request_context_ref(), &decider);
        assert!(c.trusted_as.is_some(), "{decider:?}");
        assert!(c.trusted_to_decide, "{decider:?}");
    }
}

#[tokio::test]
async fn create_event_answers_201_with_the_request() {
    let (b, started) = broker();
    let resp = handle(&b, &TrustPolicy::default(), event("request-create.json")).await;
    let v = body(&resp);
    assert_eq!(resp.status(), 201, "{v}");
    assert_eq!(v["requester"]["principal"], "alice@example.com");
    assert_eq!(v["duration"], 3600);
    assert_eq!(v["idempotencyKey"], "sample-key-1");
    assert_eq!(started.0.lock().unwrap().len(), 1);
    // The same event again is an idempotent replay.
    let again = handle(&b, &TrustPolicy::default(), event("request-create.json")).await;
    assert_eq!(again.status(), 200);
    assert_eq!(body(&again)["requestId"], v["requestId"]);
}

#[tokio::test]
async fn seed_event_needs_a_trusted_caller() {
    let (b, _) = broker();
    let refused = handle(&b, &TrustPolicy::default(), event("request-access.json")).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(body(&refused)["error"]["field"], "requester");
    let trust = TrustPolicy {
        api_key_ids: vec!["chatbot-key-id".into()],
        ..TrustPolicy::default()
    };
    let ok = handle(&b, &trust, event("request-access.json")).await;
    let v = body(&ok);
    assert_eq!(ok.status(), 201, "{v}");
    assert_eq!(v["requester"]["via"], "api-key:chatbot-key-id");
    assert_eq!(v["requester"]["authenticatedBy"], "trusted-caller");
}

#[tokio::test]
async fn local_identity_headers_are_ignored_by_the_lambda() {
    let (b, _) = broker();
    let mut e = event("request-create.json");
    e.headers_mut()
        .insert("x-jit-user", "mallory@example.com".parse().unwrap());
    let resp = handle(&b, &TrustPolicy::default(), e).await;
    assert_eq!(body(&resp)["requester"]["principal"], "alice@example.com");
}

#[tokio::test]
async fn list_event_answers_with_a_page() {
    let (b, _) = broker();
    let resp = handle(&b, &TrustPolicy::default(), event("request-list.json")).await;
    let v = body(&resp);
    assert_eq!(resp.status(), 200, "{v}");
    assert!(v["requests"].as_array().unwrap().is_empty());
    assert!(v["nextCursor"].is_null());
}

/// The grant routes belong to the `access` function: on a broker composed
/// as `request` composes it (no grant ports) they answer 503 with a code,
/// never a grant.
#[tokio::test]
async fn grant_routes_on_the_request_function_answer_grants_unavailable() {
    let (b, _) = broker();
    assert!(b.grants.is_none());
    let resp = handle(
        &b,
        &TrustPolicy::default(),
        event("request-credentials.json"),
    )
    .await;
    let v = body(&resp);
    assert_eq!(resp.status(), 503, "{v}");
    assert_eq!(v["error"]["code"], "grants_unavailable");
}

/// `GET /catalog/check` belongs to the `catalog-check` function: `access`
/// routes it nowhere (so it links none of the check's IAM reads), and the
/// `catalog-check` router serves that route alone.
#[tokio::test]
async fn the_catalog_check_has_a_function_of_its_own() {
    use request::{handle_catalog_check, handle_grants};
    // GIVEN the example catalog with an admin group, and no account to
    // check it against (no catalog-check ports)
    let text = format!(
        "{}\nadmin_groups: [platform-admins]\n",
        include_str!("../../../config/catalog.example.yaml")
    );
    let (mut b, _) = broker();
    b.catalog = Arc::new(Catalog::parse(&text, "catalog.yaml").unwrap());
    let trust = TrustPolicy::default();

    // WHEN an admin asks `access` for the check
    let resp = handle_grants(&b, &trust, event("catalog-check.json")).await;
    // THEN it is not one of its routes
    let v = body(&resp);
    assert_eq!(resp.status(), 404, "{v}");
    assert_eq!(v["error"]["code"], "route_not_found");

    // WHEN the admin asks `catalog-check`
    let resp = handle_catalog_check(&b.catalog, None, &trust, event("catalog-check.json")).await;
    // THEN it is served: here without ports, so 503 naming the function
    let v = body(&resp);
    assert_eq!(resp.status(), 503, "{v}");
    assert_eq!(v["error"]["code"], "catalog_check_unavailable");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("catalog-check function"),
        "{v}"
    );

    // WHEN the function has its ports, on an account where nothing the
    // catalog names exists
    let ports = jit_core::catalog_check::CatalogCheckPorts {
        inspector: Arc::new(EmptyAccount),
        principals: vec![
            jit_core::catalog_check::BrokerPrincipal::parse(
                "arn:aws:iam::123456789012:role/jit-access",
            )
            .unwrap(),
        ],
    };
    let resp = handle_catalog_check(
        &b.catalog,
        Some(&ports),
        &trust,
        event("catalog-check.json"),
    )
    .await;
    // THEN the report: one row per entitlement, problems found, and the
    // principal it judged for
    let v = body(&resp);
    assert_eq!(resp.status(), 200, "{v}");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["rows"].as_array().unwrap().len(), b.catalog.len(), "{v}");
    assert_eq!(
        v["brokerPrincipals"],
        serde_json::json!(["arn:aws:iam::123456789012:role/jit-access"])
    );

    // WHEN someone outside admin_groups asks
    let e = event_with("catalog-check.json", |v| {
        v["requestContext"]["authorizer"]["claims"]["cognito:groups"] = "engineering".into();
    });
    let resp = handle_catalog_check(&b.catalog, None, &trust, e).await;
    // THEN refused, before any AWS call
    let v = body(&resp);
    assert_eq!(resp.status(), 403, "{v}");
    assert_eq!(v["error"]["code"], "not_admin");

    // WHEN `catalog-check` is asked for a grant route
    let resp =
        handle_catalog_check(&b.catalog, None, &trust, event("request-credentials.json")).await;
    // THEN it is not one of its routes
    let v = body(&resp);
    assert_eq!(resp.status(), 404, "{v}");
    assert_eq!(v["error"]["code"], "route_not_found");
}

/// An account with no policies, roles or users at all.
struct EmptyAccount;

#[async_trait]
impl jit_core::grant_ports::AccountInspector for EmptyAccount {
    async fn policy(
        &self,
        _: &jit_core::AccountId,
        _: &jit_core::PolicyName,
    ) -> Result<Option<jit_core::grant_ports::PolicyInfo>, jit_core::ports::GrantError> {
        Ok(None)
    }
    async fn role(
        &self,
        _: &jit_core::RoleArn,
    ) -> Result<Option<jit_core::grant_ports::RoleInfo>, jit_core::ports::GrantError> {
        Ok(None)
    }
    async fn identity(
        &self,
        _: &jit_core::ports::IamPrincipal,
    ) -> Result<Option<jit_core::grant_ports::IdentityInfo>, jit_core::ports::GrantError> {
        Ok(None)
    }
}
