//! Ports for what happens around a live grant: handing the requester a
//! console sign-in, cutting role sessions short on an early revoke, and
//! looking at the account (the catalog check).
//!
//! Like [`crate::ports`], these are narrow traits; the AWS adapters live in
//! `jit-aws`, the local stand-ins in `jit-local`.

use std::sync::Arc;

use async_trait::async_trait;

use crate::ids::{AccountId, PolicyName, RoleArn};
use crate::ledger::GrantIam;
use crate::ports::{CredentialIssuer, GrantError, IamPrincipal, IssuedCredentials, Secret};

/// Role chaining (a Lambda assuming a role) caps every session at one hour,
/// and an IAM role's `MaxSessionDuration` is never below one hour: so one
/// hour is the longest session the broker ever asks for.
pub const CHAINED_SESSION_CAP_SECS: u32 = 3600;

/// Inline policies on a role: how an early revoke denies sessions already
/// handed out (IAM `PutRolePolicy`/`GetRolePolicy`/`DeleteRolePolicy` on
/// AWS; a recorded file locally).
#[async_trait]
pub trait RoleRevoker: Send + Sync {
    /// Creates or replaces the inline policy `name` on the role.
    async fn put_role_policy(
        &self,
        role: &RoleArn,
        name: &str,
        document: &str,
    ) -> Result<(), GrantError>;

    /// The inline policy's document, or `None` when there is none.
    async fn get_role_policy(
        &self,
        role: &RoleArn,
        name: &str,
    ) -> Result<Option<String>, GrantError>;

    /// Deletes the inline policy. Deleting what is not there (a retried
    /// cleanup, a role deleted meanwhile) is not an error.
    async fn delete_role_policy(&self, role: &RoleArn, name: &str) -> Result<(), GrantError>;
}

/// Turns role credentials into an AWS console sign-in URL (the federation
/// endpoint's `getSigninToken`, then its `login` URL).
#[async_trait]
pub trait ConsoleSignin: Send + Sync {
    /// The sign-in URL. It is a bearer credential for the console (for 15
    /// minutes): it is handed to the requester and never logged or stored.
    async fn signin_url(&self, credentials: &IssuedCredentials) -> Result<Secret, GrantError>;
}

/// A managed policy as IAM describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub arn: String,
    pub attachable: bool,
}

/// A role as IAM describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    pub arn: String,
    pub max_session_secs: u32,
    /// The trust policy (`AssumeRolePolicyDocument`), URL-decoded JSON.
    pub trust_policy: String,
    /// The permissions boundary's policy ARN: what caps the role whatever
    /// inline policy is put on it (the broker may put revoke denies).
    pub permissions_boundary: Option<String>,
    /// The role's tags (key, value).
    pub tags: Vec<(String, String)>,
}

/// An IAM user or role an attach-policy grant attaches to, as IAM
/// describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityInfo {
    pub arn: String,
    /// Its tags (key, value).
    pub tags: Vec<(String, String)>,
}

/// Read-only questions about the account: does the catalog's policy or role
/// exist, and how is it set up (IAM `GetPolicy`/`GetRole` on AWS).
#[async_trait]
pub trait AccountInspector: Send + Sync {
    /// The managed policy by its exact (case-sensitive) name: the account's
    /// own first, then the AWS-managed one. `None` when neither exists.
    async fn policy(
        &self,
        account: &AccountId,
        name: &PolicyName,
    ) -> Result<Option<PolicyInfo>, GrantError>;

    /// The role, or `None` when it does not exist.
    async fn role(&self, role: &RoleArn) -> Result<Option<RoleInfo>, GrantError>;

    /// The IAM user or role (in the inspector's own account) a managed
    /// policy would be attached to, or `None` when it does not exist.
    async fn identity(&self, principal: &IamPrincipal) -> Result<Option<IdentityInfo>, GrantError>;

    /// Whether `principal` may call `action` on `resource` in `account`
    /// (IAM's policy simulator); `None` when this inspector cannot tell.
    async fn may_call(
        &self,
        _principal: &str,
        _action: &str,
        _resource: &str,
        _account: &AccountId,
    ) -> Result<Option<bool>, GrantError> {
        Ok(None)
    }
}

/// What the grant endpoints (credentials, console, revoke, extend) need
/// beyond the store and the workflow. Built once by each front door.
#[derive(Clone)]
pub struct GrantPorts {
    pub issuer: Arc<dyn CredentialIssuer>,
    /// Detaching and the session deny on a revoke: through the ledger.
    pub iam: GrantIam,
    pub console: Arc<dyn ConsoleSignin>,
    /// When set, an `AccessDenied` from STS is told apart: role missing, or
    /// trust policy refusing the broker.
    pub inspector: Option<Arc<dyn AccountInspector>>,
    /// The longest session vended ([`CHAINED_SESSION_CAP_SECS`]).
    pub session_cap_secs: u32,
    /// `GET /catalog/check`, where this front door can run it.
    pub catalog_check: Option<Arc<crate::catalog_check::CatalogCheckPorts>>,
}
