//! Listing IAM for the reconciler ([`IamInventory`]): the managed policies
//! attached to a user or role, and a role's inline policies.
//!
//! IAM answers only about the account whose credentials ask, so the lister
//! learns its own account once (`sts:GetCallerIdentity`, which needs no
//! permission) and answers "cannot see" (`None`) for any other. A user or
//! role that does not exist holds nothing.

use async_trait::async_trait;
use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_sts::error::SdkError;
use jit_core::ledger::IamInventory;
use jit_core::ports::{GrantError, IamPrincipal};
use jit_core::{AccountId, RoleArn};
use tokio::sync::OnceCell;

use crate::error::describe;

/// IAM's `ListAttached{User,Role}Policies` and `ListRolePolicies`.
#[derive(Debug)]
pub struct IamLister {
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    own_account: OnceCell<String>,
}

impl IamLister {
    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        IamLister {
            iam: aws_sdk_iam::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            own_account: OnceCell::new(),
        }
    }

    async fn sees(&self, account: &AccountId) -> Result<bool, GrantError> {
        let own = self
            .own_account
            .get_or_try_init(|| async {
                let out = self
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| classify("GetCallerIdentity", &e))?;
                out.account().map(str::to_string).ok_or_else(|| {
                    GrantError::Other("GetCallerIdentity answered without an account".into())
                })
            })
            .await?;
        Ok(own == account.as_str())
    }
}

fn classify<E, R>(operation: &str, err: &SdkError<E, R>) -> GrantError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = describe(operation, err);
    match err {
        SdkError::ServiceError(s)
            if matches!(
                s.err().code(),
                Some(
                    "Throttling"
                        | "ThrottlingException"
                        | "RequestLimitExceeded"
                        | "ServiceFailure"
                )
            ) =>
        {
            GrantError::Transient(text)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            GrantError::Transient(text)
        }
        _ => GrantError::Other(text),
    }
}

fn not_found<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    matches!(err, SdkError::ServiceError(s) if s.err().code() == Some("NoSuchEntity"))
}

#[async_trait]
impl IamInventory for IamLister {
    async fn attached_policies(
        &self,
        account: &AccountId,
        principal: &IamPrincipal,
    ) -> Result<Option<Vec<String>>, GrantError> {
        if !self.sees(account).await? {
            return Ok(None);
        }
        let mut names = vec![];
        let mut marker = None;
        loop {
            let (page, truncated, next) = match principal {
                IamPrincipal::User(name) => {
                    match self
                        .iam
                        .list_attached_user_policies()
                        .user_name(name)
                        .set_marker(marker)
                        .send()
                        .await
                    {
                        Ok(out) => (
                            out.attached_policies().to_vec(),
                            out.is_truncated(),
                            out.marker().map(str::to_string),
                        ),
                        Err(e) if not_found(&e) => return Ok(Some(vec![])),
                        Err(e) => return Err(classify("ListAttachedUserPolicies", &e)),
                    }
                }
                IamPrincipal::Role(name) => {
                    match self
                        .iam
                        .list_attached_role_policies()
                        .role_name(name)
                        .set_marker(marker)
                        .send()
                        .await
                    {
                        Ok(out) => (
                            out.attached_policies().to_vec(),
                            out.is_truncated(),
                            out.marker().map(str::to_string),
                        ),
                        Err(e) if not_found(&e) => return Ok(Some(vec![])),
                        Err(e) => return Err(classify("ListAttachedRolePolicies", &e)),
                    }
                }
            };
            names.extend(
                page.iter()
                    .filter_map(|p| p.policy_name().map(str::to_string)),
            );
            match (truncated, next) {
                (true, Some(m)) => marker = Some(m),
                _ => return Ok(Some(names)),
            }
        }
    }

    async fn role_policies(&self, role: &RoleArn) -> Result<Option<Vec<String>>, GrantError> {
        if !self.sees(&role.account()).await? {
            return Ok(None);
        }
        let mut names = vec![];
        let mut marker = None;
        loop {
            match self
                .iam
                .list_role_policies()
                .role_name(role.role_name())
                .set_marker(marker)
                .send()
                .await
            {
                Ok(out) => {
                    names.extend(out.policy_names().iter().cloned());
                    match (out.is_truncated(), out.marker()) {
                        (true, Some(m)) => marker = Some(m.to_string()),
                        _ => return Ok(Some(names)),
                    }
                }
                Err(e) if not_found(&e) => return Ok(Some(vec![])),
                Err(e) => return Err(classify("ListRolePolicies", &e)),
            }
        }
    }

    /// `ListUserPolicies` (`ListRolePolicies` for a role).
    async fn principal_policies(
        &self,
        account: &AccountId,
        principal: &IamPrincipal,
    ) -> Result<Option<Vec<String>>, GrantError> {
        let user = match principal {
            IamPrincipal::Role(name) => {
                let arn = RoleArn::parse(format!("arn:aws:iam::{account}:role/{name}"))
                    .map_err(|e| GrantError::Other(format!("role {name}: {}", e.0)))?;
                return self.role_policies(&arn).await;
            }
            IamPrincipal::User(name) => name,
        };
        if !self.sees(account).await? {
            return Ok(None);
        }
        let mut names = vec![];
        let mut marker = None;
        loop {
            match self
                .iam
                .list_user_policies()
                .user_name(user)
                .set_marker(marker)
                .send()
                .await
            {
                Ok(out) => {
                    names.extend(out.policy_names().iter().cloned());
                    match (out.is_truncated(), out.marker()) {
                        (true, Some(m)) => marker = Some(m.to_string()),
                        _ => return Ok(Some(names)),
                    }
                }
                Err(e) if not_found(&e) => return Ok(Some(vec![])),
                Err(e) => return Err(classify("ListUserPolicies", &e)),
            }
        }
    }
}
