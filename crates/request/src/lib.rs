//! The `request` Lambda: API Gateway in, `jit-api` out.
//!
//! This crate only translates: API Gateway's event to an [`ApiRequest`], its
//! authenticated request context to a [`Caller`], and the response back. All
//! decisions live in `jit-core`; all routing and error mapping in `jit-api`.
//! It never trusts identity headers a client typed (`x-jit-user` is a
//! `jit-local` convention and is ignored here).

use bytes::Bytes;
use jit_api::ApiRequest;
use jit_core::{AuthSource, Broker, Caller, Identity, Principal};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;

pub mod compose;
pub mod config;

/// How a caller is taken from what API Gateway authenticated, and who may
/// act for other users: configured once from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    /// IAM principal ARNs (e.g. a chat bot's role session) trusted to name the requester.
    pub principals: Vec<String>,
    /// API Gateway API key ids whose callers are trusted to name the requester.
    pub api_key_ids: Vec<String>,
    /// IAM principal ARNs trusted to name the requester *and* to decide
    /// (approve, deny, decide extensions, revoke) for the person they name.
    pub decider_principals: Vec<String>,
    /// API key ids whose callers are trusted to decide for the person they name.
    pub decider_api_key_ids: Vec<String>,
    /// The JWT claim that must be `true` for the `email` claim to name the
    /// caller (`email_verified` unless `JIT_EMAIL_VERIFIED_CLAIM` says).
    pub email_verified_claim: String,
    /// A claim listing the caller's groups, read before `cognito:groups`
    /// and `groups` (`JIT_GROUPS_CLAIM`, the template's `GroupsClaim`):
    /// an identity provider may name it otherwise.
    pub groups_claim: Option<String>,
}

/// The claim OpenID Connect (and Cognito) use to say an email was verified.
pub const DEFAULT_EMAIL_VERIFIED_CLAIM: &str = "email_verified";

impl Default for TrustPolicy {
    fn default() -> Self {
        TrustPolicy {
            principals: vec![],
            api_key_ids: vec![],
            decider_principals: vec![],
            decider_api_key_ids: vec![],
            email_verified_claim: DEFAULT_EMAIL_VERIFIED_CLAIM.to_string(),
            groups_claim: None,
        }
    }
}

/// Groups from a claim that may be a JSON array, or a string such as
/// `"a,b"`, `"a b"` or `"[a b]"` (Cognito's REST API form).
fn groups_from_claim(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => s
            .trim_matches(|c| c == '[' || c == ']')
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        _ => vec![],
    }
}

/// Whether a claim says `true`: a JSON boolean, or the string `"true"` that
/// API Gateway makes of every claim (REST API authorizers, HTTP API JWTs).
fn claim_is_true(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A person from JWT claims: `email` when the token says it was verified
/// (approver rules name emails), else `sub`. An unverified email is
/// anyone's to type at many identity providers, so it names nobody.
fn identity_from_claims(
    claims: &serde_json::Map<String, Value>,
    verified_claim: &str,
    groups_claim: Option<&str>,
) -> Option<Identity> {
    let email = claims.get("email").and_then(Value::as_str);
    let verified = claim_is_true(claims.get(verified_claim));
    if email.is_some() && !verified {
        tracing::info!(
            claim = verified_claim,
            "the token's email is not verified: the caller is identified by `sub`"
        );
    }
    let name = email
        .filter(|_| verified)
        .or_else(|| claims.get("sub").and_then(Value::as_str))?;
    let principal = Principal::parse(name.to_string()).ok()?;
    let groups = groups_from_claim(
        groups_claim
            .and_then(|g| claims.get(g))
            .or_else(|| claims.get("cognito:groups"))
            .or_else(|| claims.get("groups")),
    );
    Some(Identity {
        principal,
        auth: AuthSource::Jwt,
        groups,
    })
}

fn identity_from_iam(user_arn: Option<&str>) -> Option<Identity> {
    let principal = Principal::parse(user_arn?.to_string()).ok()?;
    Some(Identity {
        principal,
        auth: AuthSource::Iam,
        groups: vec![],
    })
}

/// The caller as API Gateway authenticated it.
pub fn caller_from_context(ctx: Option<&RequestContext>, trust: &TrustPolicy) -> Caller {
    let (identity, api_key_id) = match ctx {
        Some(RequestContext::ApiGatewayV1(c)) => {
            let claims = c.authorizer.fields.get("claims").and_then(Value::as_object);
            let identity = claims
                .and_then(|c| {
                    identity_from_claims(
                        c,
                        &trust.email_verified_claim,
                        trust.groups_claim.as_deref(),
                    )
                })
                .or_else(|| identity_from_iam(c.identity.user_arn.as_deref()));
            (identity, c.identity.api_key_id.clone())
        }
        Some(RequestContext::ApiGatewayV2(c)) => {
            let identity = c.authorizer.as_ref().and_then(|a| {
                a.jwt
                    .as_ref()
                    .and_then(|j| {
                        let m: serde_json::Map<String, Value> = j
                            .claims
                            .iter()
                            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                            .collect();
                        identity_from_claims(
                            &m,
                            &trust.email_verified_claim,
                            trust.groups_claim.as_deref(),
                        )
                    })
                    .or_else(|| {
                        identity_from_iam(a.iam.as_ref().and_then(|i| i.user_arn.as_deref()))
                    })
            });
            (identity, None)
        }
        _ => (None, None),
    };
    // (name in records, may decide): a decider is a trusted caller too.
    let listed = |id: &str, requesters: &[String], deciders: &[String]| {
        let decides = deciders.iter().any(|d| d == id);
        (decides || requesters.iter().any(|t| t == id)).then_some(decides)
    };
    let trusted_principal = identity
        .as_ref()
        .filter(|i| i.auth == AuthSource::Iam)
        .and_then(|i| {
            let p = i.principal.as_str();
            listed(p, &trust.principals, &trust.decider_principals).map(|d| (p.to_string(), d))
        });
    let trusted_key = api_key_id.and_then(|k| {
        listed(&k, &trust.api_key_ids, &trust.decider_api_key_ids)
            .map(|d| (format!("api-key:{k}"), d))
    });
    match trusted_principal.or(trusted_key) {
        // A trusted app acts for users; its own identity is not a requester.
        Some((t, decides)) => Caller {
            identity: None,
            trusted_as: Some(t),
            trusted_to_decide: decides,
            identify_hint: None,
        },
        None => Caller {
            identity,
            trusted_as: None,
            trusted_to_decide: false,
            identify_hint: None,
        },
    }
}

/// Translates an API Gateway event to the shared API and back.
pub async fn handle(broker: &Broker, trust: &TrustPolicy, event: Request) -> Response<Body> {
    let (caller, api) = translate(trust, event);
    jit_api::handle(broker, &caller, api).await.map(Body::Text)
}

/// [`handle`] for the `access` function: only the grant routes are served
/// (and linked); any other path is `404 route_not_found`.
pub async fn handle_grants(broker: &Broker, trust: &TrustPolicy, event: Request) -> Response<Body> {
    let (caller, api) = translate(trust, event);
    jit_api::handle_grants(broker, &caller, api)
        .await
        .map(Body::Text)
}

/// [`handle`] for the `catalog-check` function: only `GET /catalog/check`
/// is served (and linked), from the catalog and the check's ports; any
/// other path is `404 route_not_found`.
pub async fn handle_catalog_check(
    catalog: &jit_core::Catalog,
    ports: Option<&jit_core::catalog_check::CatalogCheckPorts>,
    trust: &TrustPolicy,
    event: Request,
) -> Response<Body> {
    let (caller, api) = translate(trust, event);
    jit_api::handle_catalog_check(catalog, ports, &caller, api)
        .await
        .map(Body::Text)
}

/// API Gateway's event as the caller it authenticated and a `jit-api`
/// request.
fn translate(trust: &TrustPolicy, event: Request) -> (Caller, ApiRequest) {
    let caller = caller_from_context(event.request_context_ref(), trust);
    let path = event.raw_http_path().to_string();
    let (parts, body) = event.into_parts();
    let body = match body {
        Body::Empty => Bytes::new(),
        Body::Text(t) => Bytes::from(t),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    let api = ApiRequest {
        method: parts.method,
        path,
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    };
    (caller, api)
}

#[cfg(test)]
mod groups_claim_tests {
    use super::*;

    #[test]
    fn a_configured_groups_claim_is_read_first() {
        // GIVEN a token whose identity provider puts groups in `roles`
        let claims: serde_json::Map<String, Value> = serde_json::from_value(serde_json::json!({
            "sub": "s1", "email": "alice@example.com", "email_verified": true,
            "roles": ["sre"], "groups": ["everyone"]
        }))
        .unwrap();
        // THEN the configured claim names them, else the usual ones do
        let with = identity_from_claims(&claims, "email_verified", Some("roles")).unwrap();
        assert_eq!(with.groups, vec!["sre"]);
        let without = identity_from_claims(&claims, "email_verified", None).unwrap();
        assert_eq!(without.groups, vec!["everyone"]);
    }
}
