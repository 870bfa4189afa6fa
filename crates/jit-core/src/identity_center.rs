//! IAM Identity Center: the third grant mode (a permission set assigned to
//! the requester's Identity Store user in one or more accounts for the
//! window) and Identity Store groups as a source of `idc:<group>` rules.
//!
//! This module holds the catalog's `identity_center:` settings, the two
//! ports (`AssignmentManager` for sso-admin and the user lookup,
//! `GroupDirectory` for group memberships), the bounded-time membership
//! cache and the access portal URL. It does no I/O: the AWS adapters live
//! in `jit-aws` (`identity_center.rs`), the local stand-ins in `jit-local`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::ids::{AccountId, Principal};
use crate::ports::{Clock, GrantError};
use crate::request::Timestamp;

/// The prefix that makes a rule's group an Identity Store group.
pub const GROUP_PREFIX: &str = "idc:";

/// How long a person's Identity Store groups are trusted once read: a
/// membership removed in the IdP stops counting within this time.
pub const DEFAULT_GROUP_CACHE_SECS: u32 = 300;

/// The catalog's `identity_center:` block: one instance for the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityCenter {
    /// `arn:aws:sso:::instance/ssoins-…`.
    pub instance_arn: String,
    /// `d-…`: the Identity Store of the instance.
    pub identity_store_id: String,
    /// The instance's home region (sso-admin and identitystore are called
    /// there, whatever region the broker runs in).
    pub region: String,
    /// The AWS access portal's start URL; default
    /// `https://<identity_store_id>.awsapps.com/start`.
    pub portal_url: String,
    /// How long group memberships are cached (`group_cache`, default 5m).
    pub group_cache_secs: u32,
    /// **Local mode only** (`jit-local --grants local`): an in-process fake
    /// Identity Store and Identity Center, so the mode works end to end
    /// without AWS. Never read by the AWS adapters.
    pub local_directory: Option<LocalDirectory>,
}

/// `identity_center.local_directory`: what the local stand-in answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalDirectory {
    /// Users (emails or names) that exist; a principal not listed has no
    /// Identity Store user (a grant to them fails, as on AWS).
    pub users: Vec<Principal>,
    /// Group name -> members.
    pub groups: BTreeMap<String, Vec<Principal>>,
    /// Permission sets that exist (by name), each provisioned to every
    /// account of the catalog.
    pub permission_sets: Vec<String>,
    /// Accounts whose provisioning fails (to see a partial failure locally).
    pub failing_accounts: Vec<AccountId>,
}

impl IdentityCenter {
    /// The portal URL that opens `account` with `permission_set` (its
    /// name: the portal calls it the role name).
    pub fn console_url(&self, account: &AccountId, permission_set_name: &str) -> String {
        format!(
            "{}/#/console?account_id={}&role_name={}",
            self.portal_url.trim_end_matches('/'),
            account,
            encode(permission_set_name)
        )
    }
}

/// Percent-encodes a query value (permission set names are `[\w+=,.@-]`,
/// so little ever needs it).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The name part of a permission set as the catalog spells it: the name
/// itself, or what `PermissionSetInfo` says for an ARN (resolved by the
/// manager). Used for the portal link.
pub fn is_permission_set_arn(s: &str) -> bool {
    s.starts_with("arn:") && s.contains(":permissionSet/")
}

/// One assignment as Identity Center keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Assignment {
    pub account: AccountId,
    pub permission_set_arn: String,
    /// The Identity Store user id.
    pub user_id: String,
}

/// A permission set as Identity Center describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionSetInfo {
    pub arn: String,
    pub name: String,
    /// ISO 8601 (`PT1H`): how long a portal session lasts. An assignment
    /// deleted at the window's end does not end sessions already open.
    pub session_duration: Option<String>,
}

/// sso-admin and the Identity Store user lookup. Every call that changes
/// an assignment goes through `ledger::GrantIam`, never directly.
#[async_trait]
pub trait AssignmentManager: Send + Sync {
    /// The Identity Store user of a requester (by email for an email, by
    /// user name otherwise); `None` when there is none.
    async fn user_id(&self, user: &Principal) -> Result<Option<String>, GrantError>;

    /// The permission set by name or ARN; `None` when the instance has none.
    async fn permission_set(
        &self,
        name_or_arn: &str,
    ) -> Result<Option<PermissionSetInfo>, GrantError>;

    /// Creates the assignment and waits (bounded) until provisioning ends.
    /// An assignment that exists already is success.
    async fn create(&self, a: &Assignment) -> Result<(), GrantError>;

    /// Deletes the assignment and waits (bounded) until it is gone. One
    /// that does not exist is success.
    async fn delete(&self, a: &Assignment) -> Result<(), GrantError>;

    /// The user ids assigned the permission set in the account (user
    /// assignments only; group assignments are not the broker's).
    async fn assigned_users(
        &self,
        account: &AccountId,
        permission_set_arn: &str,
    ) -> Result<Vec<String>, GrantError>;
}

/// Where a permission set is provisioned (`catalog check` only): a trait
/// of its own so the functions that grant do not link the call.
#[async_trait]
pub trait Provisioning: Send + Sync {
    /// The accounts the permission set is provisioned to.
    async fn provisioned_accounts(
        &self,
        permission_set_arn: &str,
    ) -> Result<Vec<AccountId>, GrantError>;
}

/// Identity Store group memberships by group display name.
#[async_trait]
pub trait GroupDirectory: Send + Sync {
    /// The names of the groups the person belongs to (empty when they have
    /// no Identity Store user).
    async fn groups_of(&self, user: &Principal) -> Result<Vec<String>, GrantError>;
}

/// A [`GroupDirectory`] that remembers each person's groups for a bounded
/// time (`ListGroupMembershipsForMember` on every request would be slow and
/// throttled; a membership removed in the IdP stops counting after `ttl`).
pub struct CachedGroups {
    inner: Arc<dyn GroupDirectory>,
    clock: Arc<dyn Clock>,
    ttl: chrono::Duration,
    cache: Mutex<HashMap<Principal, (Timestamp, Vec<String>)>>,
}

impl CachedGroups {
    pub fn new(inner: Arc<dyn GroupDirectory>, clock: Arc<dyn Clock>, ttl_secs: u32) -> Self {
        CachedGroups {
            inner,
            clock,
            ttl: chrono::Duration::seconds(ttl_secs as i64),
            cache: Mutex::new(HashMap::new()),
        }
    }
}

/// Entries kept at most; past it the cache is emptied (a broker serves
/// people, not millions of them).
const MAX_CACHED: usize = 10_000;

#[async_trait]
impl GroupDirectory for CachedGroups {
    async fn groups_of(&self, user: &Principal) -> Result<Vec<String>, GrantError> {
        let now = self.clock.now();
        if let Some((at, groups)) = self.cache.lock().expect("cache lock").get(user)
            && now - *at < self.ttl
            && now >= *at
        {
            return Ok(groups.clone());
        }
        let groups = self.inner.groups_of(user).await?;
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(user.clone(), (now, groups.clone()));
        Ok(groups)
    }
}

/// Where a catalog's `idc:` groups are read from, held by the catalog once
/// a front door configures one (see `Catalog::with_group_directory`).
#[derive(Clone)]
pub struct DirectoryHandle(pub Arc<dyn GroupDirectory>);

impl std::fmt::Debug for DirectoryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupDirectory")
    }
}

/// The target and account of a new request: the entitlement's, except that
/// a permission-set entitlement takes the body's `accounts` (a subset of its
/// own; absent: all) or its `account` (one of its own). `accounts` on any
/// other kind of entitlement is refused, naming the field.
pub fn requested_accounts(
    ent: &crate::catalog::Entitlement,
    req: &crate::service::NewRequest,
) -> Result<(crate::request::GrantTarget, AccountId), crate::error::ServiceError> {
    use crate::error::ServiceError;
    use crate::request::GrantTarget;
    let GrantTarget::PermissionSet {
        permission_set,
        accounts: allowed,
    } = &ent.target
    else {
        if req.accounts.is_some() {
            return Err(ServiceError::invalid(
                "accounts",
                format!(
                    "`{}` is granted in one account ({}); `accounts` is for Identity Center permission-set entitlements",
                    ent.name, ent.account
                ),
            ));
        }
        return Ok((ent.target.clone(), ent.account.clone()));
    };
    let listed = |list: &[AccountId]| {
        list.iter()
            .map(AccountId::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let asked: Vec<String> = match (&req.accounts, &req.account) {
        (Some(_), Some(_)) => {
            return Err(ServiceError::invalid(
                "account",
                "and `accounts` are both set; list every account in `accounts`",
            ));
        }
        (Some(list), None) => list.clone(),
        (None, Some(a)) => vec![a.clone()],
        (None, None) => allowed.iter().map(AccountId::to_string).collect(),
    };
    let field = if req.accounts.is_some() {
        "accounts"
    } else {
        "account"
    };
    if asked.is_empty() {
        return Err(ServiceError::invalid(
            field,
            format!(
                "is empty: name at least one of `{}`'s accounts ({})",
                ent.name,
                listed(allowed)
            ),
        ));
    }
    let mut chosen: Vec<AccountId> = Vec::with_capacity(asked.len());
    for a in asked {
        let a = AccountId::parse(a).map_err(|e| ServiceError::invalid(field, e.0))?;
        if !allowed.contains(&a) {
            return Err(ServiceError::invalid(
                field,
                format!(
                    "names {a}, which is not one of `{}`'s accounts ({})",
                    ent.name,
                    listed(allowed)
                ),
            ));
        }
        if chosen.contains(&a) {
            return Err(ServiceError::invalid(field, format!("names {a} twice")));
        }
        chosen.push(a);
    }
    // The entitlement's order, whatever the body's: one request, one record.
    chosen.sort_by_key(|a| allowed.iter().position(|x| x == a));
    let first = chosen[0].clone();
    Ok((
        GrantTarget::PermissionSet {
            permission_set: permission_set.clone(),
            accounts: chosen,
        },
        first,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ManualClock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);

    #[async_trait]
    impl GroupDirectory for Counting {
        async fn groups_of(&self, _: &Principal) -> Result<Vec<String>, GrantError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok(vec![format!("g{n}")])
        }
    }

    #[tokio::test]
    async fn memberships_are_cached_for_a_bounded_time() {
        // GIVEN a directory behind a 300 s cache
        let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let clock = Arc::new(ManualClock::new(t0));
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let cached = CachedGroups::new(inner.clone(), clock.clone(), 300);
        let alice = Principal::parse("alice@example.com").unwrap();
        // WHEN asked twice within the time THEN the directory is read once
        assert_eq!(cached.groups_of(&alice).await.unwrap(), ["g0"]);
        clock.advance(chrono::Duration::seconds(299));
        assert_eq!(cached.groups_of(&alice).await.unwrap(), ["g0"]);
        // AND once the time has passed it is read again
        clock.advance(chrono::Duration::seconds(1));
        assert_eq!(cached.groups_of(&alice).await.unwrap(), ["g1"]);
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_console_url_opens_the_account_and_permission_set_in_the_portal() {
        let idc = IdentityCenter {
            instance_arn: "arn:aws:sso:::instance/ssoins-1".into(),
            identity_store_id: "d-1234567890".into(),
            region: "eu-west-1".into(),
            portal_url: "https://d-1234567890.awsapps.com/start/".into(),
            group_cache_secs: 300,
            local_directory: None,
        };
        assert_eq!(
            idc.console_url(&AccountId::parse("111122223333").unwrap(), "Admin Access"),
            "https://d-1234567890.awsapps.com/start/#/console?account_id=111122223333&role_name=Admin%20Access"
        );
    }
}
