//! The local IAM stand-ins seen as a whole: listed for the reconciler
//! ([`LocalInventory`]) and printed by `jit-local iam state`.
//!
//! `iam state` only reads: the two JSON files (replaced whole by a rename,
//! so a read sees the old state or the new, never half — safe while the
//! server runs) and the grant ledger in `jit.db` (SQLite in WAL mode, which
//! lets a reader in beside the server) for the request each attachment and
//! inline policy belongs to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use jit_core::ledger::{
    GrantLedger, IamInventory, LedgerEntry, LedgerOp, principal_arn, resource_key,
};
use jit_core::ports::{Clock, GrantError, IamPrincipal, RequestStore, SystemClock};
use jit_core::request::Timestamp;
use jit_core::{AccountId, RoleArn};
use serde::Serialize;

use crate::access::LocalRoleRevoker;
use crate::grants::LocalAttacher;

/// The reconciler's view of the local stand-ins: every account is "seen".
pub struct LocalInventory {
    pub attacher: Arc<LocalAttacher>,
    pub roles: Arc<LocalRoleRevoker>,
}

#[async_trait]
impl IamInventory for LocalInventory {
    async fn attached_policies(
        &self,
        account: &AccountId,
        principal: &IamPrincipal,
    ) -> Result<Option<Vec<String>>, GrantError> {
        Ok(Some(
            self.attacher
                .attachments()
                .into_iter()
                .filter(|(a, p, _)| a == account.as_str() && p == principal)
                .map(|(_, _, policy)| policy)
                .collect(),
        ))
    }

    async fn role_policies(&self, role: &RoleArn) -> Result<Option<Vec<String>>, GrantError> {
        Ok(Some(
            self.roles
                .policies()
                .into_iter()
                .filter(|(r, _, _)| r == role.as_str())
                .map(|(_, name, _)| name)
                .collect(),
        ))
    }

    async fn principal_policies(
        &self,
        account: &AccountId,
        principal: &IamPrincipal,
    ) -> Result<Option<Vec<String>>, GrantError> {
        let arn = principal_arn(account, principal);
        Ok(Some(
            self.attacher
                .inline_policies()
                .into_iter()
                .filter(|(p, _, _)| *p == arn)
                .map(|(_, name, _)| name)
                .collect(),
        ))
    }
}

/// `jit-local iam state`'s answer, exactly as the issue pins it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IamState {
    pub attached_policies: Vec<AttachedPolicy>,
    pub inline_policies: Vec<InlinePolicy>,
    /// The local fake Identity Center's account assignments
    /// (permission-set grants), each with its request as inline policies
    /// have theirs. Left out when there are none, so the pinned shape of
    /// the other two stays exactly as it was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub account_assignments: Vec<AccountAssignment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountAssignment {
    pub account: String,
    pub permission_set_arn: String,
    /// The fake Identity Store user id (`local-user:<email>`).
    pub user_id: String,
    /// The request the broker made it for; `null` when the broker did not.
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachedPolicy {
    /// `arn:aws:iam::<account>:user/<name>` (or `:role/`).
    pub principal: String,
    pub policy: String,
    /// See [`state`] for which request, when several grants share it;
    /// `null` when the ledger has no attach of it.
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InlinePolicy {
    /// The role's ARN; for a scoped attach grant's `jit-<id>`, the user's
    /// or role's ARN as attachments name it.
    pub target: String,
    pub name: String,
    /// The request the broker put it for; `null` when the broker did not.
    pub request_id: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct StateArgs {
    /// The data directory of the server (read only; it may be running).
    #[arg(long, env = "JIT_DATA_DIR", default_value = crate::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

/// The local IAM state in `data_dir`, each item with its request:
/// - an attachment: of the ledger's attach entries since it was last
///   detached (the open ones), the newest whose request is a live grant;
///   if none is live (drift the reconciler will remove), the newest; if the
///   ledger has none open, the newest attach ever; else `null`;
/// - an inline policy: the request of the newest put of it (open first);
///   `null` if the broker never put it.
pub async fn state(data_dir: &Path, now: Timestamp) -> Result<IamState, String> {
    let attacher = LocalAttacher::open(data_dir.join(crate::ATTACHMENTS_FILE))
        .map_err(|e| format!("reading {}: {e}", crate::ATTACHMENTS_FILE))?;
    let roles = LocalRoleRevoker::open(data_dir.join(crate::ROLE_POLICIES_FILE))
        .map_err(|e| format!("reading {}: {e}", crate::ROLE_POLICIES_FILE))?;
    let db = data_dir.join(crate::STORE_FILE);
    // No database yet: nothing was ever granted through this directory
    // (and a read must not create one).
    let store = if db.exists() {
        Some(
            jit_store_sqlite::SqliteStore::open(&db)
                .map_err(|e| format!("opening {}: {e}", db.display()))?,
        )
    } else {
        None
    };
    let assignments: std::collections::BTreeSet<crate::identity_center::AssignmentRow> =
        crate::json_file::load(&data_dir.join(crate::IDC_ASSIGNMENTS_FILE))
            .map_err(|e| format!("reading {}: {e}", crate::IDC_ASSIGNMENTS_FILE))?;
    let mut out = IamState {
        attached_policies: vec![],
        inline_policies: vec![],
        account_assignments: vec![],
    };
    for (account, principal, policy) in attacher.attachments() {
        let account = AccountId::parse(account.clone())
            .map_err(|e| format!("{}: account `{account}`: {}", crate::ATTACHMENTS_FILE, e.0))?;
        let request_id = match &store {
            Some(s) => {
                let entries = s
                    .entries_for(&resource_key(false, &account, &principal, &policy))
                    .await
                    .map_err(|e| e.to_string())?;
                attachment_request(s, &entries, now).await?
            }
            None => None,
        };
        out.attached_policies.push(AttachedPolicy {
            principal: principal_arn(&account, &principal),
            policy,
            request_id,
        });
    }
    for (role, name, _) in roles.policies() {
        let arn = RoleArn::parse(role.clone())
            .map_err(|e| format!("{}: role `{role}`: {}", crate::ROLE_POLICIES_FILE, e.0))?;
        let request_id = match &store {
            Some(s) => {
                let key = resource_key(
                    true,
                    &arn.account(),
                    &IamPrincipal::Role(arn.role_name().to_string()),
                    &name,
                );
                let entries = s.entries_for(&key).await.map_err(|e| e.to_string())?;
                newest_put(&entries, true)
                    .or_else(|| newest_put(&entries, false))
                    .map(|e| e.request_id.to_string())
            }
            None => None,
        };
        out.inline_policies.push(InlinePolicy {
            target: role,
            name,
            request_id,
        });
    }
    // Scoped attach grants' `jit-<id>` on users and roles.
    for (target, name, _) in attacher.inline_policies() {
        let request_id = match (&store, principal_of(&target)) {
            (Some(s), Some((account, principal))) => {
                let key = resource_key(true, &account, &principal, &name);
                let entries = s.entries_for(&key).await.map_err(|e| e.to_string())?;
                newest_put(&entries, true)
                    .or_else(|| newest_put(&entries, false))
                    .map(|e| e.request_id.to_string())
            }
            _ => None,
        };
        out.inline_policies.push(InlinePolicy {
            target,
            name,
            request_id,
        });
    }
    for row in assignments {
        let request_id = match (&store, AccountId::parse(row.account.clone())) {
            (Some(s), Ok(account)) => {
                let key = jit_core::ledger::assignment_key(
                    &account,
                    &row.user_id,
                    &row.permission_set_arn,
                );
                let entries = s.entries_for(&key).await.map_err(|e| e.to_string())?;
                newest_put(&entries, true)
                    .or_else(|| newest_put(&entries, false))
                    .map(|e| e.request_id.to_string())
            }
            _ => None,
        };
        out.account_assignments.push(AccountAssignment {
            account: row.account,
            permission_set_arn: row.permission_set_arn,
            user_id: row.user_id,
            request_id,
        });
    }
    Ok(out)
}

/// `arn:aws:iam::<account>:user/<name>` (or `:role/`) back to its parts.
fn principal_of(arn: &str) -> Option<(AccountId, IamPrincipal)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, what) = rest.split_once(':')?;
    let account = AccountId::parse(account.to_string()).ok()?;
    match what.split_once('/')? {
        ("user", n) => Some((account, IamPrincipal::User(n.to_string()))),
        ("role", n) => Some((account, IamPrincipal::Role(n.to_string()))),
        _ => None,
    }
}

fn newest_put(entries: &[LedgerEntry], open_only: bool) -> Option<&LedgerEntry> {
    entries
        .iter()
        .filter(|e| e.op == LedgerOp::Put && (e.open || !open_only))
        .max_by_key(|e| (e.at, e.entry_id.clone()))
}

async fn attachment_request(
    store: &jit_store_sqlite::SqliteStore,
    entries: &[LedgerEntry],
    now: Timestamp,
) -> Result<Option<String>, String> {
    let mut open: Vec<&LedgerEntry> = entries
        .iter()
        .filter(|e| e.op == LedgerOp::Put && e.open)
        .collect();
    open.sort_by_key(|e| std::cmp::Reverse((e.at, e.entry_id.clone())));
    for e in &open {
        let request = store.get(&e.request_id).await.map_err(|e| e.to_string())?;
        if request.is_some_and(|r| r.grant_is_live(now)) {
            return Ok(Some(e.request_id.to_string()));
        }
    }
    Ok(open
        .first()
        .copied()
        .or_else(|| newest_put(entries, false))
        .map(|e| e.request_id.to_string()))
}

/// `jit-local iam state`. Exit codes: 0 printed, 2 could not read.
pub async fn run(args: StateArgs) -> i32 {
    let state = match state(&args.data_dir, SystemClock.now()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("jit-local: {e}");
            return 2;
        }
    };
    let text = match args.output {
        Output::Json => serde_json::to_string_pretty(&state).expect("plain data serialises"),
        Output::Text => render(&state),
    };
    crate::print_out(&text);
    0
}

fn render(s: &IamState) -> String {
    let id = |r: &Option<String>| r.clone().unwrap_or_else(|| "-".into());
    let mut out = format!("attached policies ({}):\n", s.attached_policies.len());
    for a in &s.attached_policies {
        out += &format!(
            "  {}  {}  request {}\n",
            a.principal,
            a.policy,
            id(&a.request_id)
        );
    }
    out += &format!("inline policies ({}):\n", s.inline_policies.len());
    for p in &s.inline_policies {
        out += &format!(
            "  {}  {}  request {}\n",
            p.target,
            p.name,
            id(&p.request_id)
        );
    }
    out += &format!("account assignments ({}):\n", s.account_assignments.len());
    for a in &s.account_assignments {
        out += &format!(
            "  {}  {}  {}  request {}\n",
            a.account,
            a.permission_set_arn,
            a.user_id,
            id(&a.request_id)
        );
    }
    out.pop();
    out
}
