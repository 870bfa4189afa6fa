//! The local stand-in for IAM Identity Center: a **fake** Identity Store
//! and instance, configured in the catalog under
//! `identity_center.local_directory` (users, groups, permission sets, and
//! accounts whose provisioning fails), so permission-set grants and `idc:`
//! groups work end to end without AWS. Assignments are recorded in
//! `<data-dir>/idc-assignments.json` like the attachments beside it (a
//! grant made before a restart is still removed after it).
//!
//! Used only with `--grants local`; `--grants aws` calls Identity Center.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use jit_core::identity_center::{
    Assignment, AssignmentManager, GroupDirectory, LocalDirectory, PermissionSetInfo,
};
use jit_core::ports::GrantError;
use jit_core::{AccountId, Principal};
use serde::{Deserialize, Serialize};

/// The fake instance's ARN prefix: permission sets are
/// `arn:aws:sso:::permissionSet/ssoins-local/<name>` (the name kept
/// readable; real ARNs end in `ps-<id>`).
pub const LOCAL_PERMISSION_SET_PREFIX: &str = "arn:aws:sso:::permissionSet/ssoins-local/";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentRow {
    pub account: String,
    pub permission_set_arn: String,
    pub user_id: String,
}

/// The fake Identity Center of `jit-local --grants local`.
pub struct LocalIdentityCenter {
    directory: LocalDirectory,
    /// Every account a catalog entitlement names: where the fake's
    /// permission sets are provisioned.
    accounts: Vec<AccountId>,
    path: PathBuf,
    state: Mutex<BTreeSet<AssignmentRow>>,
}

/// The fake user id of a principal: readable, stable across restarts.
pub fn local_user_id(p: &Principal) -> String {
    format!("local-user:{p}")
}

impl LocalIdentityCenter {
    pub fn open(
        directory: LocalDirectory,
        accounts: Vec<AccountId>,
        path: PathBuf,
    ) -> std::io::Result<Self> {
        let state = crate::json_file::load(&path)?;
        Ok(LocalIdentityCenter {
            directory,
            accounts,
            path,
            state: Mutex::new(state),
        })
    }

    /// The assignments held now.
    pub fn assignments(&self) -> Vec<AssignmentRow> {
        self.state
            .lock()
            .expect("assignments lock")
            .iter()
            .cloned()
            .collect()
    }

    fn row(a: &Assignment) -> AssignmentRow {
        AssignmentRow {
            account: a.account.to_string(),
            permission_set_arn: a.permission_set_arn.clone(),
            user_id: a.user_id.clone(),
        }
    }

    fn change(&self, f: impl FnOnce(&mut BTreeSet<AssignmentRow>)) -> Result<(), GrantError> {
        let mut rows = self.state.lock().expect("assignments lock");
        let mut next = rows.clone();
        f(&mut next);
        crate::json_file::replace(&self.path, &next)?;
        *rows = next;
        Ok(())
    }

    fn known_user(&self, p: &Principal) -> bool {
        self.directory.users.contains(p) || self.directory.groups.values().any(|m| m.contains(p))
    }
}

#[async_trait]
impl AssignmentManager for LocalIdentityCenter {
    async fn user_id(&self, user: &Principal) -> Result<Option<String>, GrantError> {
        Ok(self.known_user(user).then(|| local_user_id(user)))
    }

    async fn permission_set(
        &self,
        name_or_arn: &str,
    ) -> Result<Option<PermissionSetInfo>, GrantError> {
        let name = name_or_arn
            .strip_prefix(LOCAL_PERMISSION_SET_PREFIX)
            .unwrap_or(name_or_arn);
        Ok(self
            .directory
            .permission_sets
            .iter()
            .find(|n| *n == name)
            .map(|n| PermissionSetInfo {
                arn: format!("{LOCAL_PERMISSION_SET_PREFIX}{n}"),
                name: n.clone(),
                session_duration: Some("PT1H".into()),
            }))
    }

    async fn create(&self, a: &Assignment) -> Result<(), GrantError> {
        if self.directory.failing_accounts.contains(&a.account) {
            // As Identity Center reports a failed provisioning.
            return Err(GrantError::Other(format!(
                "CreateAccountAssignment of {} in account {} failed: the local directory lists the account under failing_accounts",
                a.permission_set_arn, a.account
            )));
        }
        let row = Self::row(a);
        self.change(|rows| {
            rows.insert(row);
        })
    }

    async fn delete(&self, a: &Assignment) -> Result<(), GrantError> {
        let row = Self::row(a);
        self.change(|rows| {
            rows.remove(&row);
        })
    }

    async fn assigned_users(
        &self,
        account: &AccountId,
        permission_set_arn: &str,
    ) -> Result<Vec<String>, GrantError> {
        Ok(self
            .assignments()
            .into_iter()
            .filter(|r| r.account == account.as_str() && r.permission_set_arn == permission_set_arn)
            .map(|r| r.user_id)
            .collect())
    }
}

#[async_trait]
impl jit_core::identity_center::Provisioning for LocalIdentityCenter {
    async fn provisioned_accounts(
        &self,
        _permission_set_arn: &str,
    ) -> Result<Vec<AccountId>, GrantError> {
        Ok(self.accounts.clone())
    }
}

#[async_trait]
impl GroupDirectory for LocalIdentityCenter {
    async fn groups_of(&self, user: &Principal) -> Result<Vec<String>, GrantError> {
        Ok(self
            .directory
            .groups
            .iter()
            .filter(|(_, members)| members.contains(user))
            .map(|(g, _)| g.clone())
            .collect())
    }
}
