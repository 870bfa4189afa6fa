//! IAM as seen around a grant: inline role policies for early revokes
//! ([`IamRoleRevoker`]), read-only lookups for the catalog check
//! ([`IamInspector`]), and who the broker is ([`caller_identity`]).

use async_trait::async_trait;
use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_sts::error::SdkError;
use jit_core::grant_ports::{AccountInspector, IdentityInfo, PolicyInfo, RoleInfo, RoleRevoker};
use jit_core::ports::{GrantError, IamPrincipal};
use jit_core::{AccountId, PolicyName, RoleArn};

use crate::error::describe;

fn is_transient(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "ServiceFailure")
    )
}

fn classify<E, R>(operation: &str, role: &RoleArn, err: &SdkError<E, R>) -> GrantError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = describe(operation, err);
    match err {
        SdkError::ServiceError(s) => match s.err().code() {
            c if is_transient(c) => GrantError::Transient(text),
            Some("NoSuchEntity") => GrantError::RoleMissing(format!("{text} ({role})")),
            Some("LimitExceeded") => GrantError::Other(format!(
                "{text}: the role's inline policies are at IAM's size limit (10,240 characters in all); remove stale `jit-revoke-*` policies or wait for their cleanup"
            )),
            _ => GrantError::Other(text),
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            GrantError::Transient(text)
        }
        _ => GrantError::Other(text),
    }
}

fn not_found<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    matches!(err, SdkError::ServiceError(s) if s.err().code() == Some("NoSuchEntity"))
}

/// IAM returns policy documents URL-encoded (RFC 3986); some servers send
/// them plain. Either way, JSON text comes out.
pub fn decode_policy_document(doc: &str) -> String {
    if serde_json::from_str::<serde_json::Value>(doc).is_ok() {
        return doc.to_string();
    }
    let bytes = doc.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = doc
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| doc.to_string())
}

/// Inline role policies on IAM: the early-revoke deny statements.
#[derive(Debug, Clone)]
pub struct IamRoleRevoker {
    client: aws_sdk_iam::Client,
}

impl IamRoleRevoker {
    pub fn new(client: aws_sdk_iam::Client) -> Self {
        IamRoleRevoker { client }
    }
    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        IamRoleRevoker::new(aws_sdk_iam::Client::new(config))
    }
}

#[async_trait]
impl RoleRevoker for IamRoleRevoker {
    async fn put_role_policy(
        &self,
        role: &RoleArn,
        name: &str,
        document: &str,
    ) -> Result<(), GrantError> {
        self.client
            .put_role_policy()
            .role_name(role.role_name())
            .policy_name(name)
            .policy_document(document)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("PutRolePolicy", role, &e))
    }

    async fn get_role_policy(
        &self,
        role: &RoleArn,
        name: &str,
    ) -> Result<Option<String>, GrantError> {
        match self
            .client
            .get_role_policy()
            .role_name(role.role_name())
            .policy_name(name)
            .send()
            .await
        {
            Ok(out) => Ok(Some(decode_policy_document(out.policy_document()))),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(classify("GetRolePolicy", role, &e)),
        }
    }

    async fn delete_role_policy(&self, role: &RoleArn, name: &str) -> Result<(), GrantError> {
        match self
            .client
            .delete_role_policy()
            .role_name(role.role_name())
            .policy_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Already gone, or the role itself is gone: nothing to remove.
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(classify("DeleteRolePolicy", role, &e)),
        }
    }
}

/// Read-only IAM lookups for `jit catalog check` and for telling a missing
/// role from a refusing trust policy. Same-account: IAM answers about the
/// account whose credentials ask.
#[derive(Debug, Clone)]
pub struct IamInspector {
    client: aws_sdk_iam::Client,
    partition: String,
}

impl IamInspector {
    pub fn new(client: aws_sdk_iam::Client) -> Self {
        IamInspector {
            client,
            partition: "aws".into(),
        }
    }
    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        IamInspector::new(aws_sdk_iam::Client::new(config))
    }

    /// This inspector answering [`AccountInspector::role`] only, for a
    /// function whose only question is that one (`request`, telling a
    /// missing role from a refusing trust policy).
    pub fn roles_only(self) -> IamRoleInspector {
        IamRoleInspector(self)
    }
}

/// [`IamInspector`] answering `role` only: as a `dyn AccountInspector` it
/// would link `GetPolicy` and `GetUser` (requests, response deserializers,
/// error types) into `request`, which never asks them and which they took
/// over its 6 MB budget. `role` is the same code; the other two are refused
/// without calling AWS.
#[derive(Debug, Clone)]
pub struct IamRoleInspector(IamInspector);

#[async_trait]
impl AccountInspector for IamRoleInspector {
    /// Refused without calling AWS: nothing in this function asks.
    async fn policy(
        &self,
        _account: &AccountId,
        _name: &PolicyName,
    ) -> Result<Option<PolicyInfo>, GrantError> {
        Err(GrantError::Other(
            "managed policies are not looked up in this function".into(),
        ))
    }

    async fn role(&self, role: &RoleArn) -> Result<Option<RoleInfo>, GrantError> {
        self.0.role(role).await
    }

    /// Refused without calling AWS: nothing in this function asks.
    async fn identity(
        &self,
        _principal: &IamPrincipal,
    ) -> Result<Option<IdentityInfo>, GrantError> {
        Err(GrantError::Other(
            "IAM users and roles are not described in this function".into(),
        ))
    }
}

#[async_trait]
impl AccountInspector for IamInspector {
    /// IAM's policy simulator (`SimulatePrincipalPolicy`) for the broker's
    /// role (an assumed-role session is simulated as its role, without a
    /// path): the permission set and the account as the resources
    /// (Identity Center's `CreateAccountAssignment` authorizes on both).
    async fn may_call(
        &self,
        principal: &str,
        action: &str,
        resource: &str,
        account: &AccountId,
    ) -> Result<Option<bool>, GrantError> {
        let source = match principal.split_once(":assumed-role/") {
            Some((head, rest)) => format!(
                "{}:role/{}",
                head.replacen(":sts:", ":iam:", 1),
                rest.split('/').next().unwrap_or_default()
            ),
            None => principal.to_string(),
        };
        let out = self
            .client
            .simulate_principal_policy()
            .policy_source_arn(&source)
            .action_names(action)
            .resource_arns(resource)
            .resource_arns(format!("arn:{}:sso:::account/{account}", self.partition))
            .send()
            .await
            .map_err(|e| GrantError::Other(describe("SimulatePrincipalPolicy", &e)))?;
        Ok(Some(
            !out.evaluation_results().is_empty()
                && out.evaluation_results().iter().all(|r| {
                    r.eval_decision() == &aws_sdk_iam::types::PolicyEvaluationDecisionType::Allowed
                }),
        ))
    }

    async fn policy(
        &self,
        account: &AccountId,
        name: &PolicyName,
    ) -> Result<Option<PolicyInfo>, GrantError> {
        let own = format!("arn:{}:iam::{account}:policy/{name}", self.partition);
        let aws = format!("arn:{}:iam::aws:policy/{name}", self.partition);
        for arn in [own, aws] {
            match self.client.get_policy().policy_arn(&arn).send().await {
                Ok(out) => {
                    return Ok(Some(PolicyInfo {
                        attachable: out.policy().is_none_or(|p| p.is_attachable()),
                        arn,
                    }));
                }
                Err(e) if not_found(&e) => continue,
                Err(e) => {
                    let text = describe("GetPolicy", &e);
                    return Err(match &e {
                        SdkError::ServiceError(s) if is_transient(s.err().code()) => {
                            GrantError::Transient(text)
                        }
                        _ => GrantError::Other(text),
                    });
                }
            }
        }
        Ok(None)
    }

    async fn role(&self, role: &RoleArn) -> Result<Option<RoleInfo>, GrantError> {
        match self
            .client
            .get_role()
            .role_name(role.role_name())
            .send()
            .await
        {
            Ok(out) => {
                let Some(r) = out.role() else {
                    return Ok(None);
                };
                Ok(Some(RoleInfo {
                    arn: r.arn().to_string(),
                    max_session_secs: r.max_session_duration().unwrap_or(3600).max(0) as u32,
                    trust_policy: r
                        .assume_role_policy_document()
                        .map(decode_policy_document)
                        .unwrap_or_default(),
                    permissions_boundary: r
                        .permissions_boundary()
                        .and_then(|b| b.permissions_boundary_arn())
                        .map(str::to_string),
                    tags: r
                        .tags()
                        .iter()
                        .map(|t| (t.key().to_string(), t.value().to_string()))
                        .collect(),
                }))
            }
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(classify("GetRole", role, &e)),
        }
    }

    async fn identity(&self, principal: &IamPrincipal) -> Result<Option<IdentityInfo>, GrantError> {
        let transient = |text: String, code: Option<&str>| {
            if is_transient(code) {
                GrantError::Transient(text)
            } else {
                GrantError::Other(text)
            }
        };
        let tags = |tags: &[aws_sdk_iam::types::Tag]| {
            tags.iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()
        };
        match principal {
            IamPrincipal::User(name) => match self.client.get_user().user_name(name).send().await {
                Ok(out) => Ok(out.user().map(|u| IdentityInfo {
                    arn: u.arn().to_string(),
                    tags: tags(u.tags()),
                })),
                Err(e) if not_found(&e) => Ok(None),
                Err(e) => {
                    let code = e.code().map(str::to_string);
                    Err(transient(describe("GetUser", &e), code.as_deref()))
                }
            },
            IamPrincipal::Role(name) => match self.client.get_role().role_name(name).send().await {
                Ok(out) => Ok(out.role().map(|r| IdentityInfo {
                    arn: r.arn().to_string(),
                    tags: tags(r.tags()),
                })),
                Err(e) if not_found(&e) => Ok(None),
                Err(e) => {
                    let code = e.code().map(str::to_string);
                    Err(transient(describe("GetRole", &e), code.as_deref()))
                }
            },
        }
    }
}

/// The ARN the ambient credentials act as (`sts:GetCallerIdentity`).
pub async fn caller_identity(config: &aws_config::SdkConfig) -> Result<String, GrantError> {
    let out = aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| GrantError::Other(describe("GetCallerIdentity", &e)))?;
    out.arn()
        .map(str::to_string)
        .ok_or_else(|| GrantError::Other("GetCallerIdentity answered without an ARN".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_roles_only_inspector_refuses_the_rest_without_calling_aws() {
        // GIVEN the roles-only inspector, its client pointed at a port
        // nothing listens on
        let config = aws_sdk_iam::Config::builder()
            .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
            .region(aws_sdk_iam::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:1")
            .build();
        let inspector = IamInspector::new(aws_sdk_iam::Client::from_conf(config)).roles_only();
        // WHEN a policy and an identity are asked for
        let account = AccountId::parse("123456789012").expect("valid account");
        let name = PolicyName::parse("ReadOnlyAccess").expect("valid name");
        let policy = inspector.policy(&account, &name).await;
        let identity = inspector
            .identity(&IamPrincipal::User("alice".into()))
            .await;
        // THEN both are refused at once, not a connection failure after retries
        assert!(
            matches!(&policy, Err(GrantError::Other(m)) if m.contains("not looked up")),
            "{policy:?}"
        );
        assert!(
            matches!(&identity, Err(GrantError::Other(m)) if m.contains("not described")),
            "{identity:?}"
        );
    }

    #[test]
    fn policy_documents_decode_whether_encoded_or_not() {
        let plain = r#"{"Version":"2012-10-17"}"#;
        assert_eq!(decode_policy_document(plain), plain);
        assert_eq!(
            decode_policy_document("%7B%22Version%22%3A%222012-10-17%22%7D"),
            plain
        );
    }
}
