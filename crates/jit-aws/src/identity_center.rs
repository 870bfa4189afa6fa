//! IAM Identity Center on the SDK: account assignments (`aws-sdk-ssoadmin`)
//! and the Identity Store's users and group memberships
//! (`aws-sdk-identitystore`), as `jit_core::identity_center`'s
//! [`AssignmentManager`] and [`GroupDirectory`].
//!
//! Only the `identity-center` function and `jit-local --grants aws` link
//! this module (feature `idc`); the other Lambdas reach it through that
//! function (`identity_center_fn::LambdaIdentityCenter`), since the two
//! clients took them over the 6 MB target. Both clients are built for the
//! instance's home region (the catalog's `identity_center.region`),
//! whatever region the broker runs in.
//!
//! Provisioning is asynchronous: `CreateAccountAssignment` answers a status
//! (`IN_PROGRESS`, `SUCCEEDED`, `FAILED`) that is polled with
//! `Describe…Status` and a bounded backoff; still in progress after
//! [`WAIT_BOUND`] is a transient error (the step is retried, and creating
//! again is idempotent).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ssoadmin::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssoadmin::types::{
    AccountAssignmentOperationStatus, PrincipalType, StatusValues, TargetType,
};
use jit_core::identity_center::{
    Assignment, AssignmentManager, GroupDirectory, IdentityCenter, PermissionSetInfo,
};
use jit_core::ports::GrantError;
use jit_core::{AccountId, Principal};

use crate::error::describe;

/// How long one assignment's provisioning is waited for.
pub const WAIT_BOUND: Duration = Duration::from_secs(30);
/// The first pause between status polls; doubled up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(250);
const MAX_POLL: Duration = Duration::from_secs(4);

/// sso-admin and identitystore for one Identity Center instance.
pub struct IdentityCenterClient {
    sso: aws_sdk_ssoadmin::Client,
    /// The Identity Store: user ids (and groups, for `jit-local`).
    groups: crate::identity_store::IdentityStoreGroups,
    instance_arn: String,
    /// Permission sets by the catalog's spelling (name or ARN); user ids by
    /// principal. Both stable for the life of a process: a renamed
    /// permission set or a re-created user is picked up by a new process.
    permission_sets: Mutex<HashMap<String, PermissionSetInfo>>,
    wait_bound: Duration,
}

impl IdentityCenterClient {
    pub fn new(config: &aws_config::SdkConfig, idc: &IdentityCenter) -> Self {
        let region = aws_types::region::Region::new(idc.region.clone());
        let sso = aws_sdk_ssoadmin::config::Builder::from(config)
            .region(region)
            .build();
        IdentityCenterClient {
            sso: aws_sdk_ssoadmin::Client::from_conf(sso),
            groups: crate::identity_store::IdentityStoreGroups::new(config, idc),
            instance_arn: idc.instance_arn.clone(),
            permission_sets: Mutex::new(HashMap::new()),
            wait_bound: WAIT_BOUND,
        }
    }

    /// A shorter bound on provisioning (tests).
    pub fn with_wait_bound(mut self, bound: Duration) -> Self {
        self.wait_bound = bound;
        self
    }

    async fn describe_permission_set(
        &self,
        arn: &str,
    ) -> Result<Option<PermissionSetInfo>, GrantError> {
        match self
            .sso
            .describe_permission_set()
            .instance_arn(&self.instance_arn)
            .permission_set_arn(arn)
            .send()
            .await
        {
            Ok(out) => Ok(out.permission_set().map(|p| PermissionSetInfo {
                arn: p.permission_set_arn().unwrap_or(arn).to_string(),
                name: p.name().unwrap_or_default().to_string(),
                session_duration: p.session_duration().map(str::to_string),
            })),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(classify("DescribePermissionSet", &e)),
        }
    }

    async fn is_assigned(&self, a: &Assignment) -> Result<bool, GrantError> {
        Ok(self
            .assigned_users(&a.account, &a.permission_set_arn)
            .await?
            .contains(&a.user_id))
    }

    /// Polls a creation or deletion until it ends, with a bounded backoff.
    async fn wait(
        &self,
        what: &str,
        a: &Assignment,
        mut status: AccountAssignmentOperationStatus,
        creating: bool,
    ) -> Result<(), GrantError> {
        let started = tokio::time::Instant::now();
        let mut pause = FIRST_POLL;
        loop {
            match status.status() {
                Some(StatusValues::Succeeded) => return Ok(()),
                Some(StatusValues::Failed) => {
                    return Err(GrantError::Other(format!(
                        "{what} of {} in account {} failed: {}",
                        a.permission_set_arn,
                        a.account,
                        status.failure_reason().unwrap_or("no reason given")
                    )));
                }
                _ => {}
            }
            let Some(request_id) = status.request_id().map(str::to_string) else {
                return Err(GrantError::Other(format!(
                    "{what} answered neither a final status nor a request id to follow"
                )));
            };
            if started.elapsed() + pause > self.wait_bound {
                return Err(GrantError::Transient(format!(
                    "{what} of {} in account {} still in progress after {} s (request {request_id})",
                    a.permission_set_arn,
                    a.account,
                    self.wait_bound.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
            status = if creating {
                self.sso
                    .describe_account_assignment_creation_status()
                    .instance_arn(&self.instance_arn)
                    .account_assignment_creation_request_id(&request_id)
                    .send()
                    .await
                    .map_err(|e| classify("DescribeAccountAssignmentCreationStatus", &e))?
                    .account_assignment_creation_status
            } else {
                self.sso
                    .describe_account_assignment_deletion_status()
                    .instance_arn(&self.instance_arn)
                    .account_assignment_deletion_request_id(&request_id)
                    .send()
                    .await
                    .map_err(|e| classify("DescribeAccountAssignmentDeletionStatus", &e))?
                    .account_assignment_deletion_status
            }
            .ok_or_else(|| GrantError::Other(format!("{what}: the status answer was empty")))?;
        }
    }
}

pub(crate) fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

pub(crate) fn classify<E, R>(operation: &str, err: &SdkError<E, R>) -> GrantError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = describe(operation, err);
    match err {
        SdkError::ServiceError(s)
            if matches!(
                s.err().code(),
                Some("ThrottlingException" | "InternalServerException" | "ConflictException")
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

#[async_trait]
impl AssignmentManager for IdentityCenterClient {
    async fn user_id(&self, user: &Principal) -> Result<Option<String>, GrantError> {
        self.groups.user_id(user).await
    }

    async fn permission_set(
        &self,
        name_or_arn: &str,
    ) -> Result<Option<PermissionSetInfo>, GrantError> {
        if let Some(ps) = self
            .permission_sets
            .lock()
            .expect("cache lock")
            .get(name_or_arn)
        {
            return Ok(Some(ps.clone()));
        }
        let found = if jit_core::identity_center::is_permission_set_arn(name_or_arn) {
            self.describe_permission_set(name_or_arn).await?
        } else {
            // ListPermissionSets answers ARNs only: describe each until the
            // name matches (names are unique in an instance).
            // Pages followed by hand: the SDK's paginators cost binary size
            // in the task functions (see ARCHITECTURE, Lambda sizes).
            let mut found = None;
            let mut token: Option<String> = None;
            'pages: loop {
                let page = self
                    .sso
                    .list_permission_sets()
                    .instance_arn(&self.instance_arn)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| classify("ListPermissionSets", &e))?;
                for arn in page.permission_sets() {
                    if let Some(ps) = self.describe_permission_set(arn).await? {
                        let hit = ps.name == name_or_arn;
                        self.permission_sets
                            .lock()
                            .expect("cache lock")
                            .insert(ps.name.clone(), ps.clone());
                        if hit {
                            found = Some(ps);
                            break 'pages;
                        }
                    }
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_string()),
                    _ => break,
                }
            }
            found
        };
        if let Some(ps) = &found {
            self.permission_sets
                .lock()
                .expect("cache lock")
                .insert(name_or_arn.to_string(), ps.clone());
        }
        Ok(found)
    }

    async fn create(&self, a: &Assignment) -> Result<(), GrantError> {
        // Creating again what exists is success (a retried step).
        if self.is_assigned(a).await? {
            return Ok(());
        }
        let status = self
            .sso
            .create_account_assignment()
            .instance_arn(&self.instance_arn)
            .target_id(a.account.as_str())
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(&a.permission_set_arn)
            .principal_type(PrincipalType::User)
            .principal_id(&a.user_id)
            .send()
            .await
            .map_err(|e| classify("CreateAccountAssignment", &e))?
            .account_assignment_creation_status
            .ok_or_else(|| GrantError::Other("CreateAccountAssignment: no status".into()))?;
        self.wait("CreateAccountAssignment", a, status, true).await
    }

    async fn delete(&self, a: &Assignment) -> Result<(), GrantError> {
        let status = match self
            .sso
            .delete_account_assignment()
            .instance_arn(&self.instance_arn)
            .target_id(a.account.as_str())
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(&a.permission_set_arn)
            .principal_type(PrincipalType::User)
            .principal_id(&a.user_id)
            .send()
            .await
        {
            Ok(out) => out
                .account_assignment_deletion_status
                .ok_or_else(|| GrantError::Other("DeleteAccountAssignment: no status".into()))?,
            // Deleting what is not there (a retried removal) is success.
            Err(e) if code(&e) == Some("ResourceNotFoundException") => return Ok(()),
            Err(e) => return Err(classify("DeleteAccountAssignment", &e)),
        };
        self.wait("DeleteAccountAssignment", a, status, false).await
    }

    async fn assigned_users(
        &self,
        account: &AccountId,
        permission_set_arn: &str,
    ) -> Result<Vec<String>, GrantError> {
        let mut users = vec![];
        let mut token: Option<String> = None;
        loop {
            let page = self
                .sso
                .list_account_assignments()
                .instance_arn(&self.instance_arn)
                .account_id(account.as_str())
                .permission_set_arn(permission_set_arn)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify("ListAccountAssignments", &e))?;
            for a in page.account_assignments() {
                if a.principal_type() == Some(&PrincipalType::User)
                    && let Some(id) = a.principal_id()
                {
                    users.push(id.to_string());
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(users)
    }
}

#[async_trait]
impl jit_core::identity_center::Provisioning for IdentityCenterClient {
    async fn provisioned_accounts(
        &self,
        permission_set_arn: &str,
    ) -> Result<Vec<AccountId>, GrantError> {
        let mut accounts = vec![];
        let mut pages = self
            .sso
            .list_accounts_for_provisioned_permission_set()
            .instance_arn(&self.instance_arn)
            .permission_set_arn(permission_set_arn)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("ListAccountsForProvisionedPermissionSet", &e))?;
            for id in page.account_ids() {
                if let Ok(a) = AccountId::parse(id.clone()) {
                    accounts.push(a);
                }
            }
        }
        Ok(accounts)
    }
}

#[async_trait]
impl GroupDirectory for IdentityCenterClient {
    async fn groups_of(&self, user: &Principal) -> Result<Vec<String>, GrantError> {
        self.groups.groups_of(user).await
    }
}
