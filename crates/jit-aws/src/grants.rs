//! Grants on AWS: STS `AssumeRole` for credential vending and grant checks,
//! IAM attach/detach for attach-policy entitlements.
//!
//! Errors are classified into [`GrantError`] so the workflow retries only
//! what is transient, and users are told the fix for the rest. Credentials
//! never appear in an error or a log line: only the access key id is ever
//! printable (see `jit_core::ports::IssuedCredentials`).

use async_trait::async_trait;
use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_sts::error::SdkError;
use jit_core::ports::{
    AssumeRoleSpec, CredentialIssuer, GrantError, IamPrincipal, IssuedCredentials, PolicyAttacher,
    Secret,
};
use jit_core::{AccountId, PolicyName};

use crate::error::describe;

/// Error codes AWS uses for "slow down" and "try again".
fn is_transient_code(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "Throttling"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "ServiceUnavailable"
                | "InternalFailure"
                | "ServiceFailure"
                | "IDPCommunicationError"
        )
    )
}

/// STS as the credential issuer.
#[derive(Debug, Clone)]
pub struct StsIssuer {
    client: aws_sdk_sts::Client,
}

impl StsIssuer {
    pub fn new(client: aws_sdk_sts::Client) -> Self {
        StsIssuer { client }
    }
    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        StsIssuer::new(aws_sdk_sts::Client::new(config))
    }
}

/// Classifies an `AssumeRole` failure by what the user must fix.
fn classify_sts<R: std::fmt::Debug>(
    spec: &AssumeRoleSpec,
    err: &SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError, R>,
) -> GrantError {
    let text = describe("AssumeRole", err);
    match err {
        SdkError::ServiceError(s) => {
            let e = s.err();
            let code = e.code();
            let message = e.message().unwrap_or_default();
            if is_transient_code(code) {
                return GrantError::Transient(text);
            }
            if code == Some("AccessDenied") {
                // STS answers AccessDenied both for a missing role and for a
                // trust policy that refuses the broker; it cannot tell which.
                return GrantError::TrustRefused(format!(
                    "{text}. Check that {} exists and that its trust policy allows the broker's role to call sts:AssumeRole and sts:SetSourceIdentity (and sts:TagSession)",
                    spec.role_arn
                ));
            }
            if message.contains("DurationSeconds") || message.contains("MaxSessionDuration") {
                return GrantError::DurationTooLong(format!(
                    "{text}. Raise the role's MaxSessionDuration or lower the entitlement's max_duration (chained sessions are capped at 1 hour)"
                ));
            }
            GrantError::Other(text)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            GrantError::Transient(text)
        }
        _ => GrantError::Other(text),
    }
}

#[async_trait]
impl CredentialIssuer for StsIssuer {
    async fn assume_role(&self, spec: &AssumeRoleSpec) -> Result<IssuedCredentials, GrantError> {
        let mut call = self
            .client
            .assume_role()
            .role_arn(spec.role_arn.as_str())
            .role_session_name(&spec.session_name)
            .source_identity(&spec.source_identity)
            .duration_seconds(spec.duration_secs as i32);
        if let Some(policy) = &spec.session_policy {
            call = call.policy(policy);
        }
        for (k, v) in &spec.tags {
            let tag = aws_sdk_sts::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| GrantError::Other(format!("session tag {k}: {e}")))?;
            call = call.tags(tag);
        }
        let out = call.send().await.map_err(|e| classify_sts(spec, &e))?;
        let c = out
            .credentials()
            .ok_or_else(|| GrantError::Other("AssumeRole answered without credentials".into()))?;
        let exp = c.expiration();
        let expiration = chrono::DateTime::from_timestamp(exp.secs(), exp.subsec_nanos())
            .ok_or_else(|| GrantError::Other("AssumeRole answered an invalid expiration".into()))?;
        Ok(IssuedCredentials {
            access_key_id: c.access_key_id().to_string(),
            secret_access_key: Secret::new(c.secret_access_key()),
            session_token: Secret::new(c.session_token()),
            expiration,
        })
    }
}

/// IAM as the policy attacher. Same-account: the broker's own credentials
/// must be in the entitlement's account.
#[derive(Debug, Clone)]
pub struct IamAttacher {
    client: aws_sdk_iam::Client,
    partition: String,
}

impl IamAttacher {
    pub fn new(client: aws_sdk_iam::Client) -> Self {
        IamAttacher {
            client,
            partition: "aws".into(),
        }
    }
    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        IamAttacher::new(aws_sdk_iam::Client::new(config))
    }

    /// The ARN of a managed policy by its exact (case-sensitive) name: the
    /// account's own policy first, then the AWS-managed one.
    pub async fn policy_arn(
        &self,
        account: &AccountId,
        policy: &PolicyName,
    ) -> Result<String, GrantError> {
        let own = format!("arn:{}:iam::{account}:policy/{policy}", self.partition);
        let aws = format!("arn:{}:iam::aws:policy/{policy}", self.partition);
        for arn in [own, aws] {
            match self.client.get_policy().policy_arn(&arn).send().await {
                Ok(out) => {
                    if out.policy().map(|p| p.is_attachable()) == Some(false) {
                        return Err(GrantError::PolicyMissing(format!(
                            "{arn} is not attachable"
                        )));
                    }
                    return Ok(arn);
                }
                Err(SdkError::ServiceError(s)) if s.err().code() == Some("NoSuchEntity") => {
                    continue;
                }
                Err(e) => return Err(iam_error("GetPolicy", &e)),
            }
        }
        Err(GrantError::PolicyMissing(format!(
            "no managed policy named `{policy}` in account {account} or among AWS-managed policies (names are case-sensitive); fix the catalog's policy_name or create the policy"
        )))
    }
}

fn iam_error<E, R>(operation: &str, err: &SdkError<E, R>) -> GrantError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = describe(operation, err);
    match err {
        SdkError::ServiceError(s) if is_transient_code(s.err().code()) => {
            GrantError::Transient(text)
        }
        SdkError::ServiceError(s) if s.err().code() == Some("NoSuchEntity") => {
            GrantError::PrincipalMissing(text)
        }
        SdkError::ServiceError(s) if s.err().code() == Some("PolicyNotAttachable") => {
            GrantError::PolicyMissing(text)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            GrantError::Transient(text)
        }
        _ => GrantError::Other(text),
    }
}

#[async_trait]
impl PolicyAttacher for IamAttacher {
    async fn attach(
        &self,
        account: &AccountId,
        to: &IamPrincipal,
        policy: &PolicyName,
    ) -> Result<(), GrantError> {
        let arn = self.policy_arn(account, policy).await?;
        match to {
            IamPrincipal::User(name) => self
                .client
                .attach_user_policy()
                .user_name(name)
                .policy_arn(&arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| iam_error("AttachUserPolicy", &e)),
            IamPrincipal::Role(name) => self
                .client
                .attach_role_policy()
                .role_name(name)
                .policy_arn(&arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| iam_error("AttachRolePolicy", &e)),
        }
    }

    async fn detach(
        &self,
        account: &AccountId,
        from: &IamPrincipal,
        policy: &PolicyName,
    ) -> Result<(), GrantError> {
        let arn = match self.policy_arn(account, policy).await {
            Ok(arn) => arn,
            // A policy deleted meanwhile cannot still be attached.
            Err(GrantError::PolicyMissing(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let result = match from {
            IamPrincipal::User(name) => self
                .client
                .detach_user_policy()
                .user_name(name)
                .policy_arn(&arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| iam_error("DetachUserPolicy", &e)),
            IamPrincipal::Role(name) => self
                .client
                .detach_role_policy()
                .role_name(name)
                .policy_arn(&arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| iam_error("DetachRolePolicy", &e)),
        };
        match result {
            // Not attached (a retried revoke) or the principal is gone: done.
            Err(GrantError::PrincipalMissing(_)) => Ok(()),
            other => other,
        }
    }

    /// `PutUserPolicy`/`PutRolePolicy` in the broker's own account (IAM
    /// acts on the account whose credentials ask, as for attach).
    async fn put_inline_policy(
        &self,
        _account: &AccountId,
        to: &IamPrincipal,
        name: &str,
        document: &str,
    ) -> Result<(), GrantError> {
        match to {
            IamPrincipal::User(user) => self
                .client
                .put_user_policy()
                .user_name(user)
                .policy_name(name)
                .policy_document(document)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| iam_error("PutUserPolicy", &e)),
            IamPrincipal::Role(role) => self
                .client
                .put_role_policy()
                .role_name(role)
                .policy_name(name)
                .policy_document(document)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| iam_error("PutRolePolicy", &e)),
        }
    }

    async fn delete_inline_policy(
        &self,
        _account: &AccountId,
        from: &IamPrincipal,
        name: &str,
    ) -> Result<(), GrantError> {
        let result = match from {
            IamPrincipal::User(user) => self
                .client
                .delete_user_policy()
                .user_name(user)
                .policy_name(name)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| iam_error("DeleteUserPolicy", &e)),
            IamPrincipal::Role(role) => self
                .client
                .delete_role_policy()
                .role_name(role)
                .policy_name(name)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| iam_error("DeleteRolePolicy", &e)),
        };
        match result {
            // Not there (a retried revoke) or the principal is gone: done.
            Err(GrantError::PrincipalMissing(_)) => Ok(()),
            other => other,
        }
    }
}
