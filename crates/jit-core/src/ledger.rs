//! The grant ledger: every change the broker makes to IAM is written down
//! *before* the call (the intent) and completed *after* it, so a crash at
//! any point leaves a trace the reconciler (see `reconcile`) can act on.
//! Level-triggered, as a Kubernetes controller is: the store says what
//! should be, the ledger (and IAM itself, where it can be listed) says what
//! the broker may have done, and the difference is repaired.
//!
//! [`GrantIam`] is the only way the use cases reach IAM: it owns the raw
//! [`PolicyAttacher`] and [`RoleRevoker`] and writes the ledger around each
//! call. `Tasks` and `GrantPorts` hold a `GrantIam`, never a bare adapter,
//! so no code path can change IAM without the ledger.
//!
//! # What is open
//!
//! An entry is *open* while what it put may still be in IAM, or while the
//! removal it records is not known to have happened:
//! - a put (attach, put inline policy) stays open after it completes: the
//!   broker holds that IAM state now;
//! - a removal that completed closes itself and every entry of the same
//!   resource that it undid ([`undoes`]): puts that had *completed* before
//!   the removal's intent was written (their call returned before this one
//!   was made), and earlier removals;
//! - a removal that failed, or whose completion was never written (a
//!   crash), stays open: a half-done revoke the reconciler finishes;
//! - [`LedgerOutcome::Closed`] closes one entry without a call (superseded,
//!   found absent in IAM, a flag).
//!
//! A put whose call is still running when a removal of the same resource
//! completes is *not* closed by it: its call may land after the removal.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::grant_ports::RoleRevoker;
use crate::ids::{AccountId, PolicyName, RequestId, RoleArn};
use crate::ports::{Clock, GrantError, IamPrincipal, PolicyAttacher, StoreError};
use crate::request::Timestamp;

/// What kind of IAM state an entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LedgerKind {
    /// A managed policy attached to a user or role (attach-policy grants).
    ManagedPolicy,
    /// An early revoke's inline deny on a role (`jit-revoke-<id>`), removed
    /// after its `removeAfter`.
    RevokeDeny,
    /// A generated least-privilege inline policy (`jit-<id>`), held while
    /// its request's grant is live.
    InlinePolicy,
    /// An IAM Identity Center account assignment: a permission set (its
    /// ARN in `policy`) for an Identity Store user (its id as the
    /// principal's name) in `account`. Held while a live grant needs it.
    Assignment,
}

impl LedgerKind {
    pub fn is_inline(self) -> bool {
        matches!(self, LedgerKind::RevokeDeny | LedgerKind::InlinePolicy)
    }

    /// How people read it (reports, audit notes).
    pub fn describe(self) -> &'static str {
        match self {
            LedgerKind::ManagedPolicy => "managed policy",
            LedgerKind::RevokeDeny => "revoke deny",
            LedgerKind::InlinePolicy => "inline policy",
            LedgerKind::Assignment => "account assignment",
        }
    }
}

/// What the call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LedgerOp {
    /// Attach a managed policy, put an inline policy.
    Put,
    /// Detach, delete the inline policy.
    Remove,
    /// No call: the reconciler found IAM state the broker did not write and
    /// flagged it (recorded once, so the audit trail is not repeated every
    /// minute). Never counts as the broker having written it.
    Flag,
}

/// How the call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum LedgerOutcome {
    Done,
    /// IAM refused or did not answer (the error's text, never a secret).
    Failed {
        error: String,
    },
    /// Closed without (re)making the call; the reason says why.
    Closed {
        reason: String,
    },
}

/// One IAM change, as intended and (later) as completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// ULID from `at`: entries sort by time.
    pub entry_id: String,
    /// The request the change is made for (for a flag: a fresh id, as a
    /// rejection is audited).
    pub request_id: RequestId,
    pub kind: LedgerKind,
    pub op: LedgerOp,
    pub account: AccountId,
    /// The user or role the policy is attached to or inline on.
    pub principal: IamPrincipal,
    /// For an inline policy on a role: the role as the broker named it
    /// (its path kept), which the role adapter is called with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<RoleArn>,
    /// The managed policy's name, or the inline policy's name.
    pub policy: String,
    /// When the intent was written (before the call).
    pub at: Timestamp,
    /// A revoke deny: when every session it denies has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_after: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<LedgerOutcome>,
    /// Maintained by the ledger (see the module docs); ignored when written.
    #[serde(default)]
    pub open: bool,
}

impl LedgerEntry {
    /// A new intent for a managed policy attachment.
    pub fn managed(
        request: &RequestId,
        op: LedgerOp,
        account: &AccountId,
        principal: &IamPrincipal,
        policy: &PolicyName,
        at: Timestamp,
    ) -> LedgerEntry {
        LedgerEntry {
            entry_id: RequestId::generate(at).to_string(),
            request_id: request.clone(),
            kind: LedgerKind::ManagedPolicy,
            op,
            account: account.clone(),
            principal: principal.clone(),
            role_arn: None,
            policy: policy.to_string(),
            at,
            remove_after: None,
            completed_at: None,
            outcome: None,
            open: true,
        }
    }

    /// A new intent for an inline policy on a role.
    pub fn inline(
        request: &RequestId,
        kind: LedgerKind,
        op: LedgerOp,
        role: &RoleArn,
        name: &str,
        at: Timestamp,
    ) -> LedgerEntry {
        LedgerEntry {
            entry_id: RequestId::generate(at).to_string(),
            request_id: request.clone(),
            kind,
            op,
            account: role.account(),
            principal: IamPrincipal::Role(role.role_name().to_string()),
            role_arn: Some(role.clone()),
            policy: name.to_string(),
            at,
            remove_after: None,
            completed_at: None,
            outcome: None,
            open: true,
        }
    }

    /// A new intent for an inline policy on a user or role named as the
    /// attach-policy grants name their principal (no role ARN: the
    /// attacher is called): a scoped attach grant's `jit-<id>`.
    pub fn principal_inline(
        request: &RequestId,
        op: LedgerOp,
        account: &AccountId,
        principal: &IamPrincipal,
        name: &str,
        at: Timestamp,
    ) -> LedgerEntry {
        LedgerEntry {
            entry_id: RequestId::generate(at).to_string(),
            request_id: request.clone(),
            kind: LedgerKind::InlinePolicy,
            op,
            account: account.clone(),
            principal: principal.clone(),
            role_arn: None,
            policy: name.to_string(),
            at,
            remove_after: None,
            completed_at: None,
            outcome: None,
            open: true,
        }
    }

    /// The IAM state the entry is about, as one string: what entries of the
    /// same attachment or inline policy share (the ledger's partition key).
    pub fn resource(&self) -> String {
        if self.kind == LedgerKind::Assignment {
            return assignment_key(&self.account, self.principal_name(), &self.policy);
        }
        resource_key(
            self.kind.is_inline(),
            &self.account,
            &self.principal,
            &self.policy,
        )
    }

    fn principal_name(&self) -> &str {
        match &self.principal {
            IamPrincipal::User(n) | IamPrincipal::Role(n) => n,
        }
    }

    /// A new intent for an Identity Center account assignment.
    pub fn assignment(
        request: &RequestId,
        op: LedgerOp,
        a: &crate::identity_center::Assignment,
        at: Timestamp,
    ) -> LedgerEntry {
        LedgerEntry {
            entry_id: RequestId::generate(at).to_string(),
            request_id: request.clone(),
            kind: LedgerKind::Assignment,
            op,
            account: a.account.clone(),
            principal: IamPrincipal::User(a.user_id.clone()),
            role_arn: None,
            policy: a.permission_set_arn.clone(),
            at,
            remove_after: None,
            completed_at: None,
            outcome: None,
            open: true,
        }
    }

    /// The assignment an `Assignment` entry is about.
    pub fn as_assignment(&self) -> Option<crate::identity_center::Assignment> {
        (self.kind == LedgerKind::Assignment).then(|| crate::identity_center::Assignment {
            account: self.account.clone(),
            permission_set_arn: self.policy.clone(),
            user_id: self.principal_name().to_string(),
        })
    }

    /// An intent without a successful completion: the call may or may not
    /// have happened.
    pub fn half_done(&self) -> bool {
        matches!(self.outcome, None | Some(LedgerOutcome::Failed { .. }))
    }

    /// The principal as an IAM ARN (`arn:aws:iam::<account>:user/<name>`),
    /// or the role's own ARN for an inline policy: how reports name it.
    pub fn target(&self) -> String {
        if self.kind == LedgerKind::Assignment {
            return format!(
                "identitystore user {} in account {}",
                self.principal_name(),
                self.account
            );
        }
        match &self.role_arn {
            Some(r) => r.to_string(),
            None => principal_arn(&self.account, &self.principal),
        }
    }
}

/// `arn:aws:iam::<account>:user/<name>` (or `:role/`), as reports show a
/// principal. The partition is `aws`: the local stand-ins have none.
pub fn principal_arn(account: &AccountId, p: &IamPrincipal) -> String {
    match p {
        IamPrincipal::User(n) => format!("arn:aws:iam::{account}:user/{n}"),
        IamPrincipal::Role(n) => format!("arn:aws:iam::{account}:role/{n}"),
    }
}

/// The resource key of an attachment (`inline == false`) or inline policy.
/// IAM names never contain `#`, so the parts cannot run together.
pub fn resource_key(
    inline: bool,
    account: &AccountId,
    principal: &IamPrincipal,
    policy: &str,
) -> String {
    let (kind, name) = match principal {
        IamPrincipal::User(n) => ("user", n),
        IamPrincipal::Role(n) => ("role", n),
    };
    let what = if inline { "inline" } else { "managed" };
    format!("{what}#{account}#{kind}#{name}#{policy}")
}

/// The resource key of an Identity Center assignment. Identity Store ids
/// and permission set ARNs contain no `#`.
pub fn assignment_key(account: &AccountId, user_id: &str, permission_set_arn: &str) -> String {
    format!("assignment#{account}#{user_id}#{permission_set_arn}")
}

/// Whether `removal` (a removal that completed `Done`) closes `other`, an
/// open entry of the same resource: itself, a put whose call had returned
/// before the removal's intent, an earlier removal. Both adapters apply
/// this one rule.
pub fn undoes(removal: &LedgerEntry, other: &LedgerEntry) -> bool {
    if other.entry_id == removal.entry_id {
        return true;
    }
    if other.resource() != removal.resource() {
        return false;
    }
    match other.op {
        LedgerOp::Put => other.completed_at.is_some_and(|c| c <= removal.at),
        LedgerOp::Remove => other.at <= removal.at,
        LedgerOp::Flag => true,
    }
}

/// Whether writing `entry`'s outcome closes it by itself.
pub fn closes_itself(entry: &LedgerEntry) -> bool {
    matches!(
        (&entry.op, &entry.outcome),
        (_, Some(LedgerOutcome::Closed { .. }))
            | (LedgerOp::Remove, Some(LedgerOutcome::Done))
            | (LedgerOp::Flag, Some(_))
    )
}

/// Where the ledger is kept: the requests' own database locally (SQLite),
/// a DynamoDB table deployed.
#[async_trait]
pub trait GrantLedger: Send + Sync {
    /// Writes the intent, open, before the call. Writing the same entry id
    /// again keeps the first (a retried write).
    async fn record_intent(&self, entry: &LedgerEntry) -> Result<(), StoreError>;

    /// Writes the entry's completion (`completed_at`, `outcome`) after the
    /// call. A removal that is `Done` closes itself and the entries it
    /// undid ([`undoes`]); `Closed` closes the entry alone; anything else
    /// leaves it open.
    async fn record_outcome(&self, entry: &LedgerEntry) -> Result<(), StoreError>;

    /// Every open entry, oldest first.
    async fn open_entries(&self) -> Result<Vec<LedgerEntry>, StoreError>;

    /// Every entry of one resource ([`LedgerEntry::resource`]), open or
    /// closed, oldest first.
    async fn entries_for(&self, resource: &str) -> Result<Vec<LedgerEntry>, StoreError>;
}

/// The one place a removal's closing rule is applied to a set of entries
/// held in memory (the in-memory ledger; adapters that can read a whole
/// resource's entries at once apply [`undoes`] the same way).
pub fn apply_outcome(entries: &mut [LedgerEntry], done: &LedgerEntry) {
    let removal_done = done.op == LedgerOp::Remove && done.outcome == Some(LedgerOutcome::Done);
    for e in entries.iter_mut() {
        if e.entry_id == done.entry_id {
            let open = e.open && !closes_itself(done);
            *e = done.clone();
            e.open = open;
        } else if removal_done && e.open && undoes(done, e) {
            e.open = false;
        }
    }
}

/// A ledger in memory: for tests, and for a process that keeps nothing.
#[derive(Default)]
pub struct MemoryLedger {
    by_resource: Mutex<BTreeMap<String, Vec<LedgerEntry>>>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every entry, oldest first.
    pub fn all(&self) -> Vec<LedgerEntry> {
        let mut all: Vec<LedgerEntry> = self
            .by_resource
            .lock()
            .expect("ledger lock")
            .values()
            .flatten()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.entry_id.cmp(&b.entry_id));
        all
    }
}

#[async_trait]
impl GrantLedger for MemoryLedger {
    async fn record_intent(&self, entry: &LedgerEntry) -> Result<(), StoreError> {
        let mut map = self.by_resource.lock().expect("ledger lock");
        let list = map.entry(entry.resource()).or_default();
        if !list.iter().any(|e| e.entry_id == entry.entry_id) {
            let mut e = entry.clone();
            e.open = true;
            list.push(e);
            list.sort_by(|a, b| a.entry_id.cmp(&b.entry_id));
        }
        Ok(())
    }

    async fn record_outcome(&self, entry: &LedgerEntry) -> Result<(), StoreError> {
        let mut map = self.by_resource.lock().expect("ledger lock");
        let list = map.entry(entry.resource()).or_default();
        if !list.iter().any(|e| e.entry_id == entry.entry_id) {
            // An outcome without its intent (the intent write was lost):
            // keep it, open as the rule says.
            let mut e = entry.clone();
            e.open = true;
            list.push(e);
            list.sort_by(|a, b| a.entry_id.cmp(&b.entry_id));
        }
        apply_outcome(list, entry);
        Ok(())
    }

    async fn open_entries(&self) -> Result<Vec<LedgerEntry>, StoreError> {
        Ok(self.all().into_iter().filter(|e| e.open).collect())
    }

    async fn entries_for(&self, resource: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        Ok(self
            .by_resource
            .lock()
            .expect("ledger lock")
            .get(resource)
            .cloned()
            .unwrap_or_default())
    }
}

/// Listing what IAM holds, for the reconciler to compare with the ledger.
/// `None` means "this adapter cannot see that account" (IAM answers only
/// about the account whose credentials ask); a principal or role that does
/// not exist holds nothing (`Some(vec![])`).
#[async_trait]
pub trait IamInventory: Send + Sync {
    /// Names of the managed policies attached to the user or role.
    async fn attached_policies(
        &self,
        account: &AccountId,
        principal: &IamPrincipal,
    ) -> Result<Option<Vec<String>>, GrantError>;

    /// Names of the role's inline policies.
    async fn role_policies(&self, role: &RoleArn) -> Result<Option<Vec<String>>, GrantError>;

    /// Names of the inline policies on a user or role named as attach
    /// grants name it (scoped attach grants put `jit-<id>` there). `None`
    /// by default: an inventory that cannot list them says it cannot see.
    async fn principal_policies(
        &self,
        account: &AccountId,
        principal: &IamPrincipal,
    ) -> Result<Option<Vec<String>>, GrantError> {
        let _ = (account, principal);
        Ok(None)
    }
}

/// The broker's hands on IAM: every change goes through here and is
/// written to the ledger before the call and completed after it.
#[derive(Clone)]
pub struct GrantIam {
    attacher: Arc<dyn PolicyAttacher>,
    revoker: Arc<dyn RoleRevoker>,
    ledger: Arc<dyn GrantLedger>,
    clock: Arc<dyn Clock>,
    inventory: Option<Arc<dyn IamInventory>>,
    /// Identity Center (permission-set grants), where this component makes
    /// or removes assignments.
    assignments: Option<Arc<dyn crate::identity_center::AssignmentManager>>,
}

fn ledger_error(e: StoreError) -> GrantError {
    // The call was not made: worth retrying once the ledger answers.
    GrantError::Transient(format!("the grant ledger did not answer: {e}"))
}

impl GrantIam {
    pub fn new(
        attacher: Arc<dyn PolicyAttacher>,
        revoker: Arc<dyn RoleRevoker>,
        ledger: Arc<dyn GrantLedger>,
        clock: Arc<dyn Clock>,
    ) -> GrantIam {
        GrantIam {
            attacher,
            revoker,
            ledger,
            clock,
            inventory: None,
            assignments: None,
        }
    }

    /// With Identity Center: permission-set grants are made and removed
    /// through here, written to the ledger like every IAM change.
    pub fn with_assignments(
        mut self,
        manager: Arc<dyn crate::identity_center::AssignmentManager>,
    ) -> GrantIam {
        self.assignments = Some(manager);
        self
    }

    pub fn assignments(&self) -> Option<&dyn crate::identity_center::AssignmentManager> {
        self.assignments.as_deref()
    }

    /// Assigns the permission set to the user in the account for `request`
    /// (waiting until Identity Center has provisioned it).
    pub async fn assign(
        &self,
        request: &RequestId,
        a: &crate::identity_center::Assignment,
    ) -> Result<(), GrantError> {
        let entry = LedgerEntry::assignment(request, LedgerOp::Put, a, self.clock.now());
        self.run(entry, None).await
    }

    /// Deletes the assignment for `request` (what is not there is not an
    /// error).
    pub async fn unassign(
        &self,
        request: &RequestId,
        a: &crate::identity_center::Assignment,
    ) -> Result<(), GrantError> {
        let entry = LedgerEntry::assignment(request, LedgerOp::Remove, a, self.clock.now());
        self.run(entry, None).await
    }

    /// With a way to list IAM, so the reconciler compares IAM itself, not
    /// only the ledger.
    pub fn with_inventory(mut self, inventory: Arc<dyn IamInventory>) -> GrantIam {
        self.inventory = Some(inventory);
        self
    }

    pub fn ledger(&self) -> &dyn GrantLedger {
        self.ledger.as_ref()
    }

    pub fn inventory(&self) -> Option<&dyn IamInventory> {
        self.inventory.as_deref()
    }

    /// Attaches `policy` to `to` for `request`.
    pub async fn attach(
        &self,
        request: &RequestId,
        account: &AccountId,
        to: &IamPrincipal,
        policy: &PolicyName,
    ) -> Result<(), GrantError> {
        let entry = LedgerEntry::managed(
            request,
            LedgerOp::Put,
            account,
            to,
            policy,
            self.clock.now(),
        );
        self.run(entry, None).await
    }

    /// Detaches `policy` from `from` for `request` (what is not attached is
    /// not an error).
    pub async fn detach(
        &self,
        request: &RequestId,
        account: &AccountId,
        from: &IamPrincipal,
        policy: &PolicyName,
    ) -> Result<(), GrantError> {
        let entry = LedgerEntry::managed(
            request,
            LedgerOp::Remove,
            account,
            from,
            policy,
            self.clock.now(),
        );
        self.run(entry, None).await
    }

    /// Creates or replaces the inline policy `name` on `role` for
    /// `request`. `remove_after` is a revoke deny's end.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_role_policy(
        &self,
        request: &RequestId,
        kind: LedgerKind,
        role: &RoleArn,
        name: &str,
        document: &str,
        remove_after: Option<Timestamp>,
    ) -> Result<(), GrantError> {
        let mut entry =
            LedgerEntry::inline(request, kind, LedgerOp::Put, role, name, self.clock.now());
        entry.remove_after = remove_after;
        self.run(entry, Some(document)).await
    }

    /// Deletes the inline policy (what is not there is not an error).
    pub async fn delete_role_policy(
        &self,
        request: &RequestId,
        kind: LedgerKind,
        role: &RoleArn,
        name: &str,
    ) -> Result<(), GrantError> {
        let entry = LedgerEntry::inline(
            request,
            kind,
            LedgerOp::Remove,
            role,
            name,
            self.clock.now(),
        );
        self.run(entry, None).await
    }

    /// Creates or replaces the inline policy `name` on a user or role for
    /// `request` (a scoped attach grant's `jit-<id>`).
    pub async fn put_principal_policy(
        &self,
        request: &RequestId,
        account: &AccountId,
        to: &IamPrincipal,
        name: &str,
        document: &str,
    ) -> Result<(), GrantError> {
        let entry = LedgerEntry::principal_inline(
            request,
            LedgerOp::Put,
            account,
            to,
            name,
            self.clock.now(),
        );
        self.run(entry, Some(document)).await
    }

    /// Deletes the inline policy `name` from a user or role (what is not
    /// there is not an error).
    pub async fn delete_principal_policy(
        &self,
        request: &RequestId,
        account: &AccountId,
        from: &IamPrincipal,
        name: &str,
    ) -> Result<(), GrantError> {
        let entry = LedgerEntry::principal_inline(
            request,
            LedgerOp::Remove,
            account,
            from,
            name,
            self.clock.now(),
        );
        self.run(entry, None).await
    }

    /// Makes the call an existing entry records again (idempotently) and
    /// completes that entry: how a half-done change is finished. An inline
    /// put needs its document.
    pub async fn finish(
        &self,
        entry: &LedgerEntry,
        document: Option<&str>,
    ) -> Result<(), GrantError> {
        let result = self.call(entry, document).await;
        self.complete(entry.clone(), result).await
    }

    /// Closes one entry without a call, saying why.
    pub async fn close(&self, entry: &LedgerEntry, reason: &str) -> Result<(), StoreError> {
        let mut done = entry.clone();
        done.completed_at = Some(self.clock.now());
        done.outcome = Some(LedgerOutcome::Closed {
            reason: reason.to_string(),
        });
        self.ledger.record_outcome(&done).await
    }

    /// Records a flag (no call): IAM state the broker did not write.
    pub async fn flag(&self, mut entry: LedgerEntry, reason: &str) -> Result<(), StoreError> {
        entry.op = LedgerOp::Flag;
        self.ledger.record_intent(&entry).await?;
        self.close(&entry, reason).await
    }

    /// Intent, call, completion.
    async fn run(&self, entry: LedgerEntry, document: Option<&str>) -> Result<(), GrantError> {
        self.ledger
            .record_intent(&entry)
            .await
            .map_err(ledger_error)?;
        let result = self.call(&entry, document).await;
        self.complete(entry, result).await
    }

    async fn complete(
        &self,
        mut entry: LedgerEntry,
        result: Result<(), GrantError>,
    ) -> Result<(), GrantError> {
        entry.completed_at = Some(self.clock.now());
        entry.outcome = Some(match &result {
            Ok(()) => LedgerOutcome::Done,
            Err(e) => LedgerOutcome::Failed {
                error: e.to_string(),
            },
        });
        if let Err(e) = self.ledger.record_outcome(&entry).await {
            // The call's effect stands; the entry stays half-done, and the
            // reconciler repeats the (idempotent) call and completes it.
            tracing::warn!(
                request_id = %entry.request_id,
                entry_id = %entry.entry_id,
                error = %e,
                "the grant ledger did not record a completed IAM call; the reconciler will finish it"
            );
        }
        result
    }

    async fn call(&self, entry: &LedgerEntry, document: Option<&str>) -> Result<(), GrantError> {
        let policy = || {
            PolicyName::parse(entry.policy.clone())
                .map_err(|e| GrantError::Other(format!("ledger entry policy name: {}", e.0)))
        };
        let role = || {
            entry
                .role_arn
                .clone()
                .ok_or_else(|| GrantError::Other("ledger entry without its role".into()))
        };
        match (entry.kind, entry.op) {
            (_, LedgerOp::Flag) => Ok(()),
            (LedgerKind::Assignment, op) => {
                let manager = self.assignments.as_ref().ok_or_else(|| {
                    GrantError::Other(
                        "an Identity Center assignment, but no Identity Center adapter is configured here".into(),
                    )
                })?;
                let a = entry.as_assignment().expect("an assignment entry");
                if op == LedgerOp::Put {
                    manager.create(&a).await
                } else {
                    manager.delete(&a).await
                }
            }
            (LedgerKind::ManagedPolicy, LedgerOp::Put) => {
                self.attacher
                    .attach(&entry.account, &entry.principal, &policy()?)
                    .await
            }
            (LedgerKind::ManagedPolicy, LedgerOp::Remove) => {
                self.attacher
                    .detach(&entry.account, &entry.principal, &policy()?)
                    .await
            }
            (LedgerKind::InlinePolicy, LedgerOp::Put) if entry.role_arn.is_none() => {
                let document = document.ok_or_else(|| {
                    GrantError::Other("putting an inline policy needs its document".into())
                })?;
                self.attacher
                    .put_inline_policy(&entry.account, &entry.principal, &entry.policy, document)
                    .await
            }
            (LedgerKind::InlinePolicy, LedgerOp::Remove) if entry.role_arn.is_none() => {
                self.attacher
                    .delete_inline_policy(&entry.account, &entry.principal, &entry.policy)
                    .await
            }
            (_, LedgerOp::Put) => {
                let document = document.ok_or_else(|| {
                    GrantError::Other("putting an inline policy needs its document".into())
                })?;
                self.revoker
                    .put_role_policy(&role()?, &entry.policy, document)
                    .await
            }
            (_, LedgerOp::Remove) => {
                self.revoker
                    .delete_role_policy(&role()?, &entry.policy)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn entry(op: LedgerOp, t: i64) -> LedgerEntry {
        LedgerEntry::managed(
            &RequestId::generate(at(t)),
            op,
            &AccountId::parse("123456789012").unwrap(),
            &IamPrincipal::User("alice".into()),
            &PolicyName::parse("ReadOnlyAccess").unwrap(),
            at(t),
        )
    }

    fn completed(mut e: LedgerEntry, t: i64, outcome: LedgerOutcome) -> LedgerEntry {
        e.completed_at = Some(at(t));
        e.outcome = Some(outcome);
        e
    }

    #[test]
    fn a_removal_undoes_what_completed_before_it_and_not_what_was_in_flight() {
        let put_before = completed(entry(LedgerOp::Put, 0), 1, LedgerOutcome::Done);
        let removal = completed(entry(LedgerOp::Remove, 5), 6, LedgerOutcome::Done);
        let in_flight = entry(LedgerOp::Put, 4);
        let completed_after = completed(entry(LedgerOp::Put, 4), 7, LedgerOutcome::Done);
        let earlier_removal = entry(LedgerOp::Remove, 2);
        assert!(undoes(&removal, &put_before));
        assert!(undoes(&removal, &removal));
        assert!(undoes(&removal, &earlier_removal));
        assert!(!undoes(&removal, &in_flight), "its call may land later");
        assert!(!undoes(&removal, &completed_after));
        let mut other = put_before.clone();
        other.policy = "Other".into();
        assert!(!undoes(&removal, &other), "another resource");
    }

    /// An attacher that looks at the ledger while it is called.
    struct Witness {
        ledger: Arc<MemoryLedger>,
        seen: Mutex<Vec<Vec<LedgerEntry>>>,
        fail: bool,
    }

    #[async_trait]
    impl PolicyAttacher for Witness {
        async fn attach(
            &self,
            _: &AccountId,
            _: &IamPrincipal,
            _: &PolicyName,
        ) -> Result<(), GrantError> {
            self.seen.lock().unwrap().push(self.ledger.all());
            if self.fail {
                return Err(GrantError::PolicyMissing("NoSuchEntity".into()));
            }
            Ok(())
        }
        async fn detach(
            &self,
            a: &AccountId,
            p: &IamPrincipal,
            n: &PolicyName,
        ) -> Result<(), GrantError> {
            self.attach(a, p, n).await
        }
    }

    #[async_trait]
    impl RoleRevoker for Witness {
        async fn put_role_policy(&self, _: &RoleArn, _: &str, _: &str) -> Result<(), GrantError> {
            unreachable!("not called by this test")
        }
        async fn get_role_policy(
            &self,
            _: &RoleArn,
            _: &str,
        ) -> Result<Option<String>, GrantError> {
            unreachable!("not called by this test")
        }
        async fn delete_role_policy(&self, _: &RoleArn, _: &str) -> Result<(), GrantError> {
            unreachable!("not called by this test")
        }
    }

    #[tokio::test]
    async fn the_intent_is_written_before_the_call_and_completed_after() {
        for fail in [false, true] {
            let ledger = Arc::new(MemoryLedger::new());
            let witness = Arc::new(Witness {
                ledger: ledger.clone(),
                seen: Mutex::new(vec![]),
                fail,
            });
            let clock = Arc::new(crate::ports::ManualClock::new(at(0)));
            let iam = GrantIam::new(witness.clone(), witness.clone(), ledger.clone(), clock);
            let id = RequestId::generate(at(0));
            let result = iam
                .attach(
                    &id,
                    &AccountId::parse("123456789012").unwrap(),
                    &IamPrincipal::User("alice".into()),
                    &PolicyName::parse("ReadOnlyAccess").unwrap(),
                )
                .await;
            assert_eq!(result.is_err(), fail);

            // During the call: the intent, open, not completed.
            let seen = witness.seen.lock().unwrap().clone();
            assert_eq!(seen.len(), 1);
            assert_eq!(seen[0].len(), 1);
            let during = &seen[0][0];
            assert_eq!(during.request_id, id);
            assert_eq!(
                (during.kind, during.op),
                (LedgerKind::ManagedPolicy, LedgerOp::Put)
            );
            assert!(during.open && during.outcome.is_none() && during.completed_at.is_none());

            // After: completed, with the outcome; a put stays open either way.
            let after = ledger.all();
            assert_eq!(after.len(), 1);
            assert!(after[0].completed_at.is_some());
            assert!(after[0].open);
            match (&after[0].outcome, fail) {
                (Some(LedgerOutcome::Done), false) => {}
                (Some(LedgerOutcome::Failed { error }), true) => {
                    assert!(error.contains("NoSuchEntity"))
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn the_memory_ledger_keeps_puts_open_until_a_removal_completes() {
        let ledger = MemoryLedger::new();
        let put = entry(LedgerOp::Put, 0);
        ledger.record_intent(&put).await.unwrap();
        ledger.record_intent(&put).await.unwrap();
        assert_eq!(ledger.open_entries().await.unwrap().len(), 1, "one copy");
        let put = completed(put, 1, LedgerOutcome::Done);
        ledger.record_outcome(&put).await.unwrap();
        assert_eq!(ledger.open_entries().await.unwrap(), vec![put.clone()]);

        let failed = completed(
            entry(LedgerOp::Remove, 2),
            3,
            LedgerOutcome::Failed {
                error: "throttled".into(),
            },
        );
        ledger.record_intent(&failed).await.unwrap();
        ledger.record_outcome(&failed).await.unwrap();
        assert_eq!(ledger.open_entries().await.unwrap().len(), 2);

        let removal = completed(entry(LedgerOp::Remove, 4), 5, LedgerOutcome::Done);
        ledger.record_intent(&removal).await.unwrap();
        ledger.record_outcome(&removal).await.unwrap();
        assert!(ledger.open_entries().await.unwrap().is_empty());
        let history = ledger.entries_for(&put.resource()).await.unwrap();
        assert_eq!(history.len(), 3);
        assert!(history.iter().all(|e| !e.open));
    }
}
