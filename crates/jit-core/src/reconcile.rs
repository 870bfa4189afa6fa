//! The reconciler: IAM is made to agree with the store, level-triggered.
//!
//! Every IAM change the broker makes is in the grant ledger (see `ledger`).
//! The reconciler reads the ledger's open entries — and, where an
//! [`IamInventory`] is configured, IAM itself for the principals and roles
//! they name and for every grantable role of the catalog — and compares
//! them with the store:
//!
//! - a managed policy stays attached only while some request for the same
//!   account, principal and policy is a live grant
//!   ([`AccessRequest::grant_is_live`], the one predicate); otherwise it is
//!   detached (then re-checked: a grant recorded meanwhile re-attaches);
//! - an early revoke's inline deny (`jit-revoke-<id>`) stays until its
//!   `removeAfter`, and is put back if it is missing before then;
//! - a generated inline policy (`jit-<id>`) stays while its request's grant
//!   is live;
//! - a change whose intent was written but whose completion was not (a
//!   crash, a failed call) is made again, idempotently, and completed;
//! - an inline policy on a grantable role that the broker never wrote is
//!   flagged (report, `WARN`, one audit note), never deleted: it is someone
//!   else's, and possibly an attacker's.
//!
//! Nothing younger than the grace period ([`GRACE_SECS`]) is undone: a
//! grant being made (the Grant step attaches before RecordGranted writes
//! GRANTED) must not be mistaken for drift. Every removal appends an audit
//! note to the request it was held for and logs a `WARN` naming it.
//! `dry_run` finds the same things and changes nothing: no IAM call, no
//! ledger write, no audit event.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::attachments::{self, AttachmentKey};
use crate::catalog::Catalog;
use crate::ids::{AccountId, PolicyName, RequestId, RoleArn};
use crate::ledger::{
    GrantIam, IamInventory, LedgerEntry, LedgerKind, LedgerOp, principal_arn, resource_key,
};
use crate::ports::{Clock, GrantError, IamPrincipal, PageRequest, RequestStore, StoreError};
use crate::request::{AuditAction, AuditEvent, GrantTarget, Timestamp, system_actor};
use crate::revocation;

/// How old the newest ledger entry of an attachment or inline policy must
/// be before the reconciler may change it: a grant in progress (Grant step
/// done, GRANTED not yet recorded), a revoke in progress, IAM's own
/// propagation delay.
pub const GRACE_SECS: i64 = 120;

/// What one pass found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    pub at: Timestamp,
    pub dry_run: bool,
    /// The grant ledger and IAM compared with the store.
    pub grants: GrantsReport,
}

impl ReconcileReport {
    /// Something is left for a person or a later pass: drift found by a dry
    /// run, a repair that failed, a foreign policy flagged.
    pub fn needs_attention(&self) -> bool {
        let g = &self.grants;
        !g.flagged.is_empty()
            || !g.failed.is_empty()
            || g.removed.iter().chain(&g.finished).any(|f| !f.done)
    }
}

/// The grant part of a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantsReport {
    /// IAM itself was listed (else only the ledger was read).
    pub iam_listed: bool,
    /// Attachments and inline policies examined.
    pub checked: usize,
    /// Held without a live grant in its window: removed (`done`), or to be
    /// removed (a dry run).
    pub removed: Vec<Finding>,
    /// Changes left half-done (intent without completion, a failed call)
    /// and now completed.
    pub finished: Vec<Finding>,
    /// Inline policies on grantable roles the broker did not write.
    pub flagged: Vec<Finding>,
    /// Left alone: changed within the grace period.
    pub in_flight: Vec<Finding>,
    /// A check or repair that failed; the next pass tries again.
    pub failed: Vec<Finding>,
}

/// One attachment or inline policy and what was (or would be) done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The request it was held for (a flag: the id its audit note is
    /// under, as rejections are audited).
    pub request_id: Option<RequestId>,
    pub kind: LedgerKind,
    /// The principal's ARN (attachments) or the role's ARN (inline).
    pub target: String,
    pub policy: String,
    pub reason: String,
    /// The change was made (false in a dry run, for a flag, on failure).
    pub done: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The dependencies of a pass; built by `Tasks::reconciler` (and tests).
pub struct Reconciler<'a> {
    pub store: &'a dyn RequestStore,
    pub iam: &'a GrantIam,
    pub catalog: &'a Catalog,
    pub clock: &'a dyn Clock,
    pub grace: chrono::Duration,
}

/// The entries of one attachment or inline policy, and what IAM said.
struct Resource {
    entries: Vec<LedgerEntry>,
    /// `Some(present)` when IAM was listed for it.
    observed: Option<bool>,
}

/// Which section a repair is reported in.
#[derive(Clone, Copy)]
enum Section {
    Removed,
    Finished,
}

fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Reconciler<'_> {
    /// One pass (see the module docs).
    pub async fn run(&self, dry_run: bool) -> Result<ReconcileReport, ReconcileError> {
        let now = self.clock.now();
        let mut report = ReconcileReport {
            at: now,
            dry_run,
            grants: GrantsReport::default(),
        };
        let mut resources: BTreeMap<String, Resource> = BTreeMap::new();
        for e in self.iam.ledger().open_entries().await? {
            resources
                .entry(e.resource())
                .or_insert_with(|| Resource {
                    entries: vec![],
                    observed: None,
                })
                .entries
                .push(e);
        }
        if let Some(inventory) = self.iam.inventory() {
            report.grants.iam_listed = true;
            self.observe(inventory, &mut resources, &mut report, dry_run, now)
                .await?;
        }
        if self.iam.assignments().is_some() {
            self.observe_assignments(&mut resources, &mut report, dry_run, now)
                .await?;
        }
        report.grants.checked = resources.len();
        let any_managed = resources
            .values()
            .any(|r| r.entries[0].kind == LedgerKind::ManagedPolicy);
        let live = if any_managed {
            self.live_attachments(now).await?
        } else {
            HashMap::new()
        };
        for (_, resource) in resources {
            if let Err(f) = self
                .reconcile_one(&resource, &live, now, dry_run, &mut report)
                .await
            {
                tracing::warn!(
                    request_id = ?f.request_id, target = %f.target, policy = %f.policy,
                    "reconciler: {}", f.reason
                );
                report.grants.failed.push(f);
            }
        }
        Ok(report)
    }

    /// The attachments live grants need, by resource key, from one listing
    /// per pass (a key found here is kept; one not found is confirmed with
    /// `attachments::live_grant` before anything is removed).
    async fn live_attachments(
        &self,
        now: Timestamp,
    ) -> Result<HashMap<String, RequestId>, ReconcileError> {
        let mut live = HashMap::new();
        for status in crate::request::AccessRequest::LIVE_GRANT_STATUSES {
            let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
            loop {
                let found = self.store.list_by_status(*status, &page).await?;
                for r in found.items.iter().filter(|r| r.grant_is_live(now)) {
                    if let Some(Ok(k)) = AttachmentKey::of(r) {
                        live.insert(
                            resource_key(false, &k.account, &k.principal, k.policy.as_str()),
                            r.request_id.clone(),
                        );
                    }
                }
                match found.next_cursor {
                    Some(c) => page.cursor = Some(c),
                    None => break,
                }
            }
        }
        Ok(live)
    }

    /// Lists IAM for the principals and roles the open entries name and
    /// for the catalog's grantable roles: marks what is present, takes in
    /// what the broker wrote earlier and IAM still holds, flags the rest.
    async fn observe(
        &self,
        inventory: &dyn IamInventory,
        resources: &mut BTreeMap<String, Resource>,
        report: &mut ReconcileReport,
        dry_run: bool,
        now: Timestamp,
    ) -> Result<(), ReconcileError> {
        let mut principals: BTreeMap<String, (AccountId, IamPrincipal)> = BTreeMap::new();
        let mut roles: BTreeMap<String, (RoleArn, bool)> = BTreeMap::new();
        // Users and roles holding a scoped attach grant's `jit-<id>`.
        let mut holders: BTreeMap<String, (AccountId, IamPrincipal)> = BTreeMap::new();
        for r in resources.values() {
            let e = &r.entries[0];
            if e.kind == LedgerKind::Assignment {
                continue;
            }
            if e.kind.is_inline() {
                match &e.role_arn {
                    Some(role) => {
                        roles
                            .entry(role.to_string())
                            .or_insert_with(|| (role.clone(), false));
                    }
                    None => {
                        holders.insert(
                            principal_arn(&e.account, &e.principal),
                            (e.account.clone(), e.principal.clone()),
                        );
                    }
                }
            } else {
                principals.insert(
                    principal_arn(&e.account, &e.principal),
                    (e.account.clone(), e.principal.clone()),
                );
            }
        }
        for e in self.catalog.entitlements() {
            if let GrantTarget::AssumeRole { role_arn } = &e.target {
                roles.insert(role_arn.to_string(), (role_arn.clone(), true));
            }
        }

        for (_, (account, principal)) in principals {
            let listed = match inventory.attached_policies(&account, &principal).await {
                Ok(Some(names)) => names,
                Ok(None) => continue,
                Err(e) => {
                    report.grants.failed.push(listing_failed(
                        principal_arn(&account, &principal),
                        "attached policies",
                        &e,
                    ));
                    continue;
                }
            };
            for r in resources.values_mut() {
                let e = &r.entries[0];
                if e.kind == LedgerKind::ManagedPolicy
                    && e.account == account
                    && e.principal == principal
                {
                    r.observed = Some(listed.contains(&e.policy));
                }
            }
            for name in listed {
                let key = resource_key(false, &account, &principal, &name);
                if !resources.contains_key(&key) {
                    self.take_in_written(resources, key).await?;
                }
            }
        }

        for (_, (account, principal)) in holders {
            let listed = match inventory.principal_policies(&account, &principal).await {
                Ok(Some(names)) => names,
                Ok(None) => continue,
                Err(e) => {
                    report.grants.failed.push(listing_failed(
                        principal_arn(&account, &principal),
                        "inline policies",
                        &e,
                    ));
                    continue;
                }
            };
            for r in resources.values_mut() {
                let e = &r.entries[0];
                if e.kind == LedgerKind::InlinePolicy
                    && e.role_arn.is_none()
                    && e.account == account
                    && e.principal == principal
                {
                    r.observed = Some(listed.contains(&e.policy));
                }
            }
            // Only what the broker wrote is taken in (`jit-<id>` whose
            // ledger history is kept); the principal's other inline
            // policies are not the broker's business.
            for name in listed {
                let key = resource_key(true, &account, &principal, &name);
                if !resources.contains_key(&key) {
                    self.take_in_written(resources, key).await?;
                }
            }
        }

        for (_, (role, grantable)) in roles {
            let listed = match inventory.role_policies(&role).await {
                Ok(Some(names)) => names,
                Ok(None) => continue,
                Err(e) => {
                    report.grants.failed.push(listing_failed(
                        role.to_string(),
                        "inline policies",
                        &e,
                    ));
                    continue;
                }
            };
            let principal = IamPrincipal::Role(role.role_name().to_string());
            for r in resources.values_mut() {
                let e = &r.entries[0];
                if e.kind.is_inline() && e.account == role.account() && e.principal == principal {
                    r.observed = Some(listed.contains(&e.policy));
                }
            }
            for name in listed {
                let key = resource_key(true, &role.account(), &principal, &name);
                if resources.contains_key(&key)
                    || self.take_in_written(resources, key.clone()).await?
                {
                    continue;
                }
                if grantable {
                    let f = self.flag(&role, &name, &key, dry_run, now).await;
                    report.grants.flagged.push(f);
                }
            }
        }
        Ok(())
    }

    /// Lists the assignments of every permission set in the catalog, in
    /// each of its accounts: marks what is present, takes in what the
    /// broker wrote earlier, and removes user assignments the broker never
    /// made that no live grant needs (they would be standing access to a
    /// permission set the broker is trusted to hand out only for a time).
    /// Group assignments are never listed or touched: they are the
    /// organisation's standing access, managed elsewhere.
    async fn observe_assignments(
        &self,
        resources: &mut BTreeMap<String, Resource>,
        report: &mut ReconcileReport,
        dry_run: bool,
        now: Timestamp,
    ) -> Result<(), ReconcileError> {
        let manager = self.iam.assignments().expect("checked by the caller");
        let mut listed: BTreeMap<(String, AccountId), ()> = BTreeMap::new();
        for e in self.catalog.entitlements() {
            let GrantTarget::PermissionSet {
                permission_set,
                accounts,
            } = &e.target
            else {
                continue;
            };
            let ps = match manager.permission_set(permission_set).await {
                Ok(Some(ps)) => ps,
                Ok(None) => continue,
                Err(err) => {
                    report.grants.failed.push(assignment_finding(
                        None,
                        format!("permission set {permission_set}"),
                        permission_set.clone(),
                        format!("looking the permission set up failed: {err}"),
                    ));
                    continue;
                }
            };
            for account in accounts {
                if listed
                    .insert((ps.arn.clone(), account.clone()), ())
                    .is_some()
                {
                    continue;
                }
                let users = match manager.assigned_users(account, &ps.arn).await {
                    Ok(u) => u,
                    Err(err) => {
                        report.grants.failed.push(assignment_finding(
                            None,
                            format!("account {account}"),
                            ps.arn.clone(),
                            format!("listing account assignments failed: {err}"),
                        ));
                        continue;
                    }
                };
                for r in resources.values_mut() {
                    if let Some(a) = r.entries[0].as_assignment()
                        && a.account == *account
                        && a.permission_set_arn == ps.arn
                    {
                        r.observed = Some(users.contains(&a.user_id));
                    }
                }
                for user_id in users {
                    let a = crate::identity_center::Assignment {
                        account: account.clone(),
                        permission_set_arn: ps.arn.clone(),
                        user_id,
                    };
                    let key = crate::ledger::assignment_key(
                        &a.account,
                        &a.user_id,
                        &a.permission_set_arn,
                    );
                    if resources.contains_key(&key) || self.take_in_written(resources, key).await? {
                        continue;
                    }
                    if let Some(f) = self.remove_foreign(&a, dry_run, now).await {
                        report.grants.removed.push(f);
                    }
                }
            }
        }
        Ok(())
    }

    /// A user assignment of a catalogued permission set that the ledger
    /// never recorded: kept if a live grant needs it (its ledger entry was
    /// lost), else removed under a fresh id, with an audit note there (as
    /// a rejection is audited) and a `WARN`.
    async fn remove_foreign(
        &self,
        a: &crate::identity_center::Assignment,
        dry_run: bool,
        now: Timestamp,
    ) -> Option<Finding> {
        let manager = self.iam.assignments()?;
        let target = format!("identitystore user {} in account {}", a.user_id, a.account);
        match crate::assignments::live_grant(self.store, manager, self.clock, a, None).await {
            Ok(Some(_)) => return None,
            Ok(None) => {}
            Err(e) => {
                return Some(assignment_finding(
                    None,
                    target,
                    a.permission_set_arn.clone(),
                    format!(
                        "an assignment the broker did not make; finding live grants failed: {e}"
                    ),
                ));
            }
        }
        let reason = format!(
            "{target} holds the catalogued permission set {} with no grant from the broker (assigned outside it)",
            a.permission_set_arn
        );
        let mut f = assignment_finding(
            None,
            target,
            a.permission_set_arn.clone(),
            format!("{reason}: removed"),
        );
        if dry_run {
            tracing::info!("reconciler (dry run): {}", f.reason);
            return Some(f);
        }
        let id = RequestId::generate(now);
        f.request_id = Some(id.clone());
        match self.iam.unassign(&id, a).await {
            Ok(()) => {
                f.done = true;
                if let Err(e) = self.audit(&id, &format!("reconciler: {}", f.reason)).await {
                    f.reason = format!("{} (the audit note failed: {e})", f.reason);
                }
                tracing::warn!(request_id = %id, "reconciler: {}", f.reason);
            }
            Err(e) => f.reason = format!("{reason}; removing it failed: {e}"),
        }
        Some(f)
    }

    /// IAM holds `key` and no entry of it is open: if the broker wrote it
    /// (the ledger has its history), it is taken in as present, so the same
    /// rules apply. Returns whether it was.
    async fn take_in_written(
        &self,
        resources: &mut BTreeMap<String, Resource>,
        key: String,
    ) -> Result<bool, ReconcileError> {
        let history: Vec<LedgerEntry> = self
            .iam
            .ledger()
            .entries_for(&key)
            .await?
            .into_iter()
            .filter(|e| e.op != LedgerOp::Flag)
            .collect();
        if history.is_empty() {
            return Ok(false);
        }
        resources.insert(
            key,
            Resource {
                entries: history,
                observed: Some(true),
            },
        );
        Ok(true)
    }

    /// Flags an inline policy the broker did not write: report, `WARN`
    /// every pass, a ledger flag and an audit note the first time.
    async fn flag(
        &self,
        role: &RoleArn,
        name: &str,
        key: &str,
        dry_run: bool,
        now: Timestamp,
    ) -> Finding {
        let reason = format!(
            "inline policy {name} on the grantable role {role} was not written by the broker: check it (the reconciler never deletes it)"
        );
        tracing::warn!(role = %role, policy = %name, "reconciler: {reason}");
        let mut finding = Finding {
            request_id: None,
            kind: LedgerKind::InlinePolicy,
            target: role.to_string(),
            policy: name.to_string(),
            reason: reason.clone(),
            done: false,
        };
        let earlier = match self.iam.ledger().entries_for(key).await {
            Ok(h) => h.into_iter().find(|e| e.op == LedgerOp::Flag),
            Err(e) => {
                finding.reason = format!("{reason} (the ledger could not be read: {e})");
                return finding;
            }
        };
        if let Some(f) = earlier {
            finding.request_id = Some(f.request_id);
            return finding;
        }
        if dry_run {
            return finding;
        }
        let id = RequestId::generate(now);
        let entry = LedgerEntry::inline(
            &id,
            LedgerKind::InlinePolicy,
            LedgerOp::Flag,
            role,
            name,
            now,
        );
        let recorded = match self.iam.flag(entry, &reason).await {
            Ok(()) => self.audit(&id, &reason).await,
            Err(e) => Err(e),
        };
        match recorded {
            Ok(()) => finding.request_id = Some(id),
            Err(e) => finding.reason = format!("{reason} (recording the flag failed: {e})"),
        }
        finding
    }

    async fn reconcile_one(
        &self,
        r: &Resource,
        live: &HashMap<String, RequestId>,
        now: Timestamp,
        dry_run: bool,
        report: &mut ReconcileReport,
    ) -> Result<(), Finding> {
        let latest = r.entries.iter().max_by_key(|e| e.at).expect("one entry");
        let half_done_remove = r
            .entries
            .iter()
            .filter(|e| e.open && e.op == LedgerOp::Remove && e.half_done())
            .max_by_key(|e| e.at);
        let holder = half_done_remove
            .or_else(|| {
                r.entries
                    .iter()
                    .filter(|e| e.op == LedgerOp::Put)
                    .max_by_key(|e| e.at)
            })
            .unwrap_or(latest);
        let finding = |reason: String| Finding {
            request_id: Some(holder.request_id.clone()),
            kind: latest.kind,
            target: latest.target(),
            policy: latest.policy.clone(),
            reason,
            done: false,
        };
        if now - latest.at < self.grace {
            report.grants.in_flight.push(finding(format!(
                "changed at {}, within the {} s grace period: left alone",
                rfc3339(latest.at),
                self.grace.num_seconds()
            )));
            return Ok(());
        }
        let failed = |what: &str, e: &dyn std::fmt::Display| finding(format!("{what}: {e}"));
        let request = self
            .store
            .get(&holder.request_id)
            .await
            .map_err(|e| failed("reading the request failed", &e))?;
        let status = request
            .as_ref()
            .map(|q| q.effective_status(now).to_string())
            .unwrap_or_else(|| "no longer stored".into());

        match latest.kind {
            LedgerKind::Assignment => {
                let a = latest.as_assignment().expect("an assignment entry");
                let Some(manager) = self.iam.assignments() else {
                    return Err(finding(
                        "an account assignment in the ledger, but no Identity Center adapter is configured here".into(),
                    ));
                };
                let live =
                    crate::assignments::live_grant(self.store, manager, self.clock, &a, None)
                        .await
                        .map_err(|e| failed("finding live grants failed", &e))?;
                if let Some(grant) = live {
                    return self
                        .keep_assigned(r, &a, &grant, dry_run, report, &finding)
                        .await;
                }
                let why = format!(
                    "{} holds {} with no live grant (request {} is {status})",
                    latest.target(),
                    a.permission_set_arn,
                    holder.request_id
                );
                self.remove(
                    r,
                    holder,
                    half_done_remove,
                    why,
                    dry_run,
                    report,
                    &finding,
                    || async {
                        match half_done_remove {
                            Some(e) => self.iam.finish(e, None).await,
                            None => self.iam.unassign(&holder.request_id, &a).await,
                        }?;
                        // A grant recorded meanwhile gets its assignment back.
                        crate::assignments::settle(
                            self.store,
                            self.iam,
                            self.clock,
                            &a,
                            Some(false),
                            &holder.request_id,
                        )
                        .await
                        .map(|_| ())
                        .map_err(|e| GrantError::Transient(e.to_string()))
                    },
                )
                .await
            }
            LedgerKind::ManagedPolicy => {
                let policy = PolicyName::parse(latest.policy.clone())
                    .map_err(|e| failed("a ledger entry with a bad policy name", &e.0))?;
                let key = AttachmentKey {
                    account: latest.account.clone(),
                    principal: latest.principal.clone(),
                    policy,
                };
                let live = match live.get(&latest.resource()) {
                    Some(grant) => Some(grant.clone()),
                    None => attachments::live_grant(self.store, self.clock, &key, None)
                        .await
                        .map_err(|e| failed("finding live grants failed", &e))?,
                };
                if let Some(grant) = live {
                    return self
                        .keep_attached(r, &key, &grant, dry_run, report, &finding)
                        .await;
                }
                let why = format!(
                    "attached to {} with no live grant (request {} is {status})",
                    latest.target(),
                    holder.request_id
                );
                self.remove(
                    r,
                    holder,
                    half_done_remove,
                    why,
                    dry_run,
                    report,
                    &finding,
                    || async {
                        match half_done_remove {
                            Some(e) => self.iam.finish(e, None).await,
                            None => {
                                self.iam
                                    .detach(
                                        &holder.request_id,
                                        &key.account,
                                        &key.principal,
                                        &key.policy,
                                    )
                                    .await
                            }
                        }?;
                        // A grant recorded meanwhile gets its attachment back.
                        attachments::settle(
                            self.store,
                            self.iam,
                            self.clock,
                            &key,
                            Some(false),
                            &holder.request_id,
                        )
                        .await
                        .map(|_| ())
                        .map_err(|e| GrantError::Transient(e.to_string()))
                    },
                )
                .await
            }
            LedgerKind::RevokeDeny => {
                let deny = request
                    .as_ref()
                    .and_then(|q| q.session_deny.as_ref())
                    .filter(|d| d.policy_name == latest.policy);
                // Without the record, the entry's own bound; without that,
                // the latest the deny could have been meant to last.
                let remove_after = deny
                    .map(|d| d.remove_after)
                    .or_else(|| r.entries.iter().filter_map(|e| e.remove_after).max())
                    .unwrap_or_else(|| {
                        latest.at
                            + chrono::Duration::seconds(
                                crate::grant_ports::CHAINED_SESSION_CAP_SECS as i64
                                    + 2 * revocation::CLOCK_MARGIN_SECS,
                            )
                    });
                if now < remove_after {
                    return self
                        .keep_inline(
                            r,
                            latest,
                            deny.map(|d| d.document()),
                            dry_run,
                            report,
                            &finding,
                        )
                        .await;
                }
                let role = latest
                    .role_arn
                    .clone()
                    .ok_or_else(|| finding("an inline ledger entry without its role".into()))?;
                let why = format!(
                    "the revoke deny of request {} on {role} is past its removeAfter {}",
                    holder.request_id,
                    rfc3339(remove_after)
                );
                let pending = request.filter(|q| {
                    q.session_deny
                        .as_ref()
                        .is_some_and(|d| d.pending() && d.policy_name == latest.policy)
                });
                self.remove(
                    r,
                    holder,
                    half_done_remove,
                    why,
                    dry_run,
                    report,
                    &finding,
                    || async {
                        if let Some(q) = &pending {
                            // Deletes through the ledger and records `removedAt`.
                            return revocation::remove_if_due(self.store, self.iam, self.clock, q)
                                .await
                                .map(|_| ())
                                .map_err(|e| GrantError::Transient(e.to_string()));
                        }
                        match half_done_remove {
                            Some(e) => self.iam.finish(e, None).await,
                            None => {
                                self.iam
                                    .delete_role_policy(
                                        &holder.request_id,
                                        LedgerKind::RevokeDeny,
                                        &role,
                                        &latest.policy,
                                    )
                                    .await
                            }
                        }
                    },
                )
                .await
            }
            LedgerKind::InlinePolicy => {
                if request.as_ref().is_some_and(|q| q.grant_is_live(now)) {
                    let document = request.as_ref().and_then(|q| q.session_policy.clone());
                    return self
                        .keep_inline(r, latest, document, dry_run, report, &finding)
                        .await;
                }
                let role = latest.role_arn.clone();
                let why = format!(
                    "inline policy on {} with no live grant (request {} is {status})",
                    latest.target(),
                    holder.request_id
                );
                self.remove(
                    r,
                    holder,
                    half_done_remove,
                    why,
                    dry_run,
                    report,
                    &finding,
                    || async {
                        match half_done_remove {
                            Some(e) => self.iam.finish(e, None).await,
                            None => match &role {
                                Some(role) => {
                                    self.iam
                                        .delete_role_policy(
                                            &holder.request_id,
                                            LedgerKind::InlinePolicy,
                                            role,
                                            &latest.policy,
                                        )
                                        .await
                                }
                                // A scoped attach grant's `jit-<id>` on a user or role.
                                None => {
                                    self.iam
                                        .delete_principal_policy(
                                            &holder.request_id,
                                            &latest.account,
                                            &latest.principal,
                                            &latest.policy,
                                        )
                                        .await
                                }
                            },
                        }
                    },
                )
                .await
            }
        }
    }

    /// A live grant holds the attachment: a half-done revoke of it is
    /// superseded, a half-done attach is finished.
    async fn keep_attached(
        &self,
        r: &Resource,
        key: &AttachmentKey,
        grant: &RequestId,
        dry_run: bool,
        report: &mut ReconcileReport,
        finding: &(dyn Fn(String) -> Finding + Sync),
    ) -> Result<(), Finding> {
        let half_done: Vec<&LedgerEntry> = r
            .entries
            .iter()
            .filter(|e| e.open && e.half_done())
            .collect();
        let missing = r.observed == Some(false);
        if half_done.is_empty() && !missing {
            return Ok(());
        }
        let mut f = finding(format!(
            "the live grant {grant} holds it: {}",
            if missing {
                "it was missing from IAM and is attached again"
            } else {
                "kept attached, the unfinished change completed"
            }
        ));
        if !dry_run {
            for e in half_done.iter().filter(|e| e.op == LedgerOp::Put) {
                // Attaching again is idempotent; the entry then records it held.
                self.iam
                    .finish(e, None)
                    .await
                    .map_err(|e| finding(format!("attaching again failed: {e}")))?;
            }
            for e in half_done.iter().filter(|e| e.op == LedgerOp::Remove) {
                self.iam
                    .close(
                        e,
                        &format!("superseded: the live grant {grant} holds the attachment"),
                    )
                    .await
                    .map_err(|e| finding(format!("closing the entry failed: {e}")))?;
            }
            // A half-done detach may have happened: make sure it is attached
            // (no call when IAM was listed and showed it attached).
            let known = if missing { None } else { r.observed };
            attachments::settle(self.store, self.iam, self.clock, key, known, grant)
                .await
                .map_err(|e| finding(format!("attaching again failed: {e}")))?;
            f.done = true;
            self.audit(grant, &format!("reconciler: {}", f.reason))
                .await
                .map_err(|e| finding(format!("the audit note failed: {e}")))?;
            tracing::warn!(request_id = %grant, target = %f.target, policy = %f.policy, "reconciler: {}", f.reason);
        }
        report.grants.finished.push(f);
        Ok(())
    }

    /// A live grant needs the assignment: a half-done delete is superseded,
    /// a half-done create is finished, one missing is created again.
    async fn keep_assigned(
        &self,
        r: &Resource,
        a: &crate::identity_center::Assignment,
        grant: &RequestId,
        dry_run: bool,
        report: &mut ReconcileReport,
        finding: &(dyn Fn(String) -> Finding + Sync),
    ) -> Result<(), Finding> {
        let half_done: Vec<&LedgerEntry> = r
            .entries
            .iter()
            .filter(|e| e.open && e.half_done())
            .collect();
        let missing = r.observed == Some(false);
        if half_done.is_empty() && !missing {
            return Ok(());
        }
        let mut f = finding(format!(
            "the live grant {grant} needs it: {}",
            if missing {
                "it was missing from Identity Center and is assigned again"
            } else {
                "kept, the unfinished change completed"
            }
        ));
        if !dry_run {
            for e in half_done.iter().filter(|e| e.op == LedgerOp::Put) {
                self.iam
                    .finish(e, None)
                    .await
                    .map_err(|e| finding(format!("assigning again failed: {e}")))?;
            }
            for e in half_done.iter().filter(|e| e.op == LedgerOp::Remove) {
                self.iam
                    .close(
                        e,
                        &format!("superseded: the live grant {grant} needs the assignment"),
                    )
                    .await
                    .map_err(|e| finding(format!("closing the entry failed: {e}")))?;
            }
            let known = if missing { None } else { r.observed };
            crate::assignments::settle(self.store, self.iam, self.clock, a, known, grant)
                .await
                .map_err(|e| finding(format!("assigning again failed: {e}")))?;
            f.done = true;
            self.audit(grant, &format!("reconciler: {}", f.reason))
                .await
                .map_err(|e| finding(format!("the audit note failed: {e}")))?;
            tracing::warn!(request_id = %grant, target = %f.target, policy = %f.policy, "reconciler: {}", f.reason);
        }
        report.grants.finished.push(f);
        Ok(())
    }

    /// An inline policy still wanted (a revoke deny before its
    /// `removeAfter`, a generated policy of a live grant): an unfinished put
    /// is made again, and one missing from IAM is put back.
    async fn keep_inline(
        &self,
        r: &Resource,
        latest: &LedgerEntry,
        document: Option<String>,
        dry_run: bool,
        report: &mut ReconcileReport,
        finding: &(dyn Fn(String) -> Finding + Sync),
    ) -> Result<(), Finding> {
        let put = r
            .entries
            .iter()
            .filter(|e| e.op == LedgerOp::Put)
            .max_by_key(|e| e.at);
        let Some(put) = put else { return Ok(()) };
        let unfinished = put.open && put.half_done();
        let missing = r.observed == Some(false);
        if !unfinished && !missing {
            return Ok(());
        }
        let Some(document) = document else {
            return Err(finding(format!(
                "the {} is {} but its document is not on record: it cannot be put again",
                latest.kind.describe(),
                if missing {
                    "missing from IAM"
                } else {
                    "half-done"
                }
            )));
        };
        let mut f = finding(format!(
            "the {} is still needed and was {}: put again",
            latest.kind.describe(),
            if missing {
                "missing from IAM"
            } else {
                "left half-done"
            }
        ));
        if !dry_run {
            self.iam
                .finish(put, Some(&document))
                .await
                .map_err(|e| finding(format!("putting it again failed: {e}")))?;
            f.done = true;
            self.audit(&put.request_id, &format!("reconciler: {}", f.reason))
                .await
                .map_err(|e| finding(format!("the audit note failed: {e}")))?;
            tracing::warn!(request_id = %put.request_id, target = %f.target, policy = %f.policy, "reconciler: {}", f.reason);
        }
        report.grants.finished.push(f);
        Ok(())
    }

    /// Removes what is held without a live grant (or only completes the
    /// ledger when IAM shows it gone), audits it on the request, logs a
    /// `WARN`, and closes the entries it settled.
    #[allow(clippy::too_many_arguments)]
    async fn remove<F, Fut>(
        &self,
        r: &Resource,
        holder: &LedgerEntry,
        half_done_remove: Option<&LedgerEntry>,
        why: String,
        dry_run: bool,
        report: &mut ReconcileReport,
        finding: &(dyn Fn(String) -> Finding + Sync),
        call: F,
    ) -> Result<(), Finding>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), GrantError>>,
    {
        let absent = r.observed == Some(false);
        let section = if half_done_remove.is_some() || absent {
            Section::Finished
        } else {
            Section::Removed
        };
        let reason = match (absent, half_done_remove.is_some()) {
            (true, _) => format!("{why}; IAM no longer holds it: the ledger is completed"),
            (false, true) => format!("{why}; a removal left half-done was made again"),
            (false, false) => format!("{why}: removed"),
        };
        let mut f = finding(reason);
        if !dry_run {
            if !absent {
                call()
                    .await
                    .map_err(|e| finding(format!("{why}; removing it failed: {e}")))?;
            }
            self.close_settled(r, holder)
                .await
                .map_err(|e| finding(format!("{why}; closing its ledger entries failed: {e}")))?;
            f.done = true;
            if !absent {
                self.audit(&holder.request_id, &format!("reconciler: {}", f.reason))
                    .await
                    .map_err(|e| finding(format!("{why}; the audit note failed: {e}")))?;
                tracing::warn!(
                    request_id = %holder.request_id, target = %f.target, policy = %f.policy,
                    "reconciler: {}", f.reason
                );
            }
        } else {
            tracing::info!(request_id = %holder.request_id, target = %f.target, policy = %f.policy, "reconciler (dry run): {}", f.reason);
        }
        match section {
            Section::Removed => report.grants.removed.push(f),
            Section::Finished => report.grants.finished.push(f),
        }
        Ok(())
    }

    /// After a removal: every entry of the resource still open and older
    /// than the grace period is settled by it (a put whose completion was
    /// never written, say); newer ones (a grant made meanwhile) stay.
    async fn close_settled(&self, r: &Resource, holder: &LedgerEntry) -> Result<(), StoreError> {
        let cutoff = self.clock.now() - self.grace;
        for e in self.iam.ledger().entries_for(&holder.resource()).await? {
            if e.open && e.at <= cutoff && r.entries.iter().any(|x| x.entry_id == e.entry_id) {
                self.iam
                    .close(&e, "settled by the reconciler's removal")
                    .await?;
            }
        }
        Ok(())
    }

    async fn audit(&self, request: &RequestId, reason: &str) -> Result<(), StoreError> {
        let event = AuditEvent::new(
            request,
            self.clock.now(),
            system_actor("reconciler"),
            AuditAction::Note,
            None,
            None,
            Some(reason.to_string()),
            "reconciler",
        );
        self.store.append_audit(&event).await
    }
}

fn assignment_finding(
    request_id: Option<RequestId>,
    target: String,
    policy: String,
    reason: String,
) -> Finding {
    Finding {
        request_id,
        kind: LedgerKind::Assignment,
        target,
        policy,
        reason,
        done: false,
    }
}

fn listing_failed(target: String, what: &str, e: &GrantError) -> Finding {
    Finding {
        request_id: None,
        kind: if what == "attached policies" {
            LedgerKind::ManagedPolicy
        } else {
            LedgerKind::InlinePolicy
        },
        target,
        policy: String::new(),
        reason: format!("listing {what} in IAM failed: {e}"),
        done: false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ledger::{GrantLedger, LedgerOutcome, MemoryLedger};
    use crate::lifecycle::Status;
    use crate::ports::{ManualClock, PolicyAttacher};
    use crate::request::AccessRequest;
    use crate::revocation::SessionDeny;
    use crate::test_fakes::{FakeIam, MemoryStore};

    const CATALOG: &str = r#"
defaults: {approvers: {emails: [lead@example.com]}}
entitlements:
  - name: JIT-ElevatedAdminRole
    role_arn: "arn:aws:iam::123456789012:role/JIT-ElevatedAdminRole"
    approvers:
      emails: [lead@example.com]
policies:
  - policy_name: "ReadOnlyAccess"
    aws_account_id: "123456789012"
    request_name: "Read Only"
"#;
    const ROLE: &str = "arn:aws:iam::123456789012:role/JIT-ElevatedAdminRole";

    struct World {
        store: Arc<MemoryStore>,
        fake: Arc<FakeIam>,
        ledger: Arc<MemoryLedger>,
        clock: Arc<ManualClock>,
        iam: GrantIam,
        catalog: Catalog,
    }

    impl World {
        /// `listing`: the reconciler also lists IAM (deployed), or reads
        /// only the ledger.
        fn new(listing: bool) -> World {
            let store = Arc::new(MemoryStore::default());
            let fake = Arc::new(FakeIam::default());
            let ledger = Arc::new(MemoryLedger::new());
            let clock = Arc::new(ManualClock::new(
                chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            ));
            let mut iam = GrantIam::new(fake.clone(), fake.clone(), ledger.clone(), clock.clone());
            if listing {
                iam = iam.with_inventory(fake.clone());
            }
            World {
                store,
                fake,
                ledger,
                clock,
                iam,
                catalog: Catalog::parse(CATALOG, "catalog.yaml").unwrap(),
            }
        }

        fn now(&self) -> Timestamp {
            self.clock.now()
        }

        fn advance(&self, secs: i64) {
            self.clock.advance(chrono::Duration::seconds(secs));
        }

        async fn run(&self, dry_run: bool) -> ReconcileReport {
            Reconciler {
                store: self.store.as_ref(),
                iam: &self.iam,
                catalog: &self.catalog,
                clock: self.clock.as_ref(),
                grace: chrono::Duration::seconds(GRACE_SECS),
            }
            .run(dry_run)
            .await
            .unwrap()
        }

        /// A request in `status`, GRANTED ones with an hour's window.
        fn request(&self, target: GrantTarget, status: Status) -> AccessRequest {
            let mut r = crate::request::tests::sample(self.now());
            r.target = target;
            r.status = status;
            if status == Status::Granted {
                r.granted_at = Some(self.now());
                r.expires_at = Some(self.now() + chrono::Duration::hours(1));
            }
            self.store.put(&r);
            r
        }

        fn attach_request(&self, status: Status) -> AccessRequest {
            self.request(
                GrantTarget::AttachPolicy {
                    policy_name: PolicyName::parse("ReadOnlyAccess").unwrap(),
                },
                status,
            )
        }

        fn role_request(&self, status: Status) -> AccessRequest {
            self.request(
                GrantTarget::AssumeRole {
                    role_arn: RoleArn::parse(ROLE).unwrap(),
                },
                status,
            )
        }

        /// What the Grant step does for an attach-policy request.
        async fn attach(&self, r: &AccessRequest) {
            let key = AttachmentKey::of(r).unwrap().unwrap();
            self.iam
                .attach(&r.request_id, &key.account, &key.principal, &key.policy)
                .await
                .unwrap();
        }

        fn attached(&self) -> bool {
            self.fake.is_attached(
                "123456789012",
                &IamPrincipal::User("alice@example.com".into()),
                "ReadOnlyAccess",
            )
        }

        /// The request's record moved to `status` without anything done to
        /// IAM (a crash between the two, a record changed by hand).
        fn force(&self, r: &AccessRequest, status: Status) -> AccessRequest {
            let mut next = r.clone();
            next.status = status;
            next.version += 1;
            self.store.put(&next);
            next
        }

        fn reconciler_notes(&self, id: &RequestId) -> Vec<String> {
            self.store
                .events_of(id)
                .into_iter()
                .filter(|e| e.actor == "system:reconciler")
                .filter_map(|e| e.reason)
                .collect()
        }
    }

    #[tokio::test]
    async fn an_attachment_without_a_live_grant_is_detached_and_audited() {
        for listing in [false, true] {
            // GIVEN a policy attached for a grant whose record says EXPIRED, never detached
            let w = World::new(listing);
            let r = w.attach_request(Status::Granted);
            w.attach(&r).await;
            let r = w.force(&r, Status::Expired);
            w.advance(GRACE_SECS + 1);

            // WHEN the reconciler runs
            let report = w.run(false).await;

            // THEN the policy is detached, audited on the request, the ledger closed
            assert_eq!(report.grants.removed.len(), 1, "{listing}: {report:#?}");
            let f = &report.grants.removed[0];
            assert!(f.done);
            assert_eq!(f.request_id.as_ref(), Some(&r.request_id));
            assert_eq!(f.kind, LedgerKind::ManagedPolicy);
            assert_eq!(f.policy, "ReadOnlyAccess");
            assert_eq!(f.target, "arn:aws:iam::123456789012:user/alice@example.com");
            assert!(f.reason.contains("EXPIRED"), "{}", f.reason);
            assert!(!w.attached());
            assert!(w.ledger.open_entries().await.unwrap().is_empty());
            let notes = w.reconciler_notes(&r.request_id);
            assert_eq!(notes.len(), 1, "{notes:?}");
            assert!(
                notes[0].contains("ReadOnlyAccess") || notes[0].contains("alice"),
                "{notes:?}"
            );
            assert_eq!(report.grants.iam_listed, listing);
            assert!(!report.needs_attention());

            // AND a second pass finds nothing
            let again = w.run(false).await;
            assert_eq!(
                again.grants,
                GrantsReport {
                    iam_listed: listing,
                    ..Default::default()
                }
            );
        }
    }

    #[tokio::test]
    async fn a_dry_run_finds_the_same_drift_and_changes_nothing() {
        // GIVEN drift of each kind: an attachment and a generated inline
        // policy without a live grant, a foreign inline policy
        let w = World::new(true);
        let r = w.attach_request(Status::Granted);
        w.attach(&r).await;
        w.force(&r, Status::Expired);
        let g = w.role_request(Status::Expired);
        let role = RoleArn::parse(ROLE).unwrap();
        w.iam
            .put_role_policy(
                &g.request_id,
                LedgerKind::InlinePolicy,
                &role,
                &format!("jit-{}", g.request_id),
                "{}",
                None,
            )
            .await
            .unwrap();
        w.fake
            .inline
            .lock()
            .unwrap()
            .insert((ROLE.into(), "backdoor".into()), "{}".into());
        w.advance(GRACE_SECS + 1);
        let ledger_before = w.ledger.all();
        let events_before = w.store.all_events();
        let calls_before = w.fake.calls();

        // WHEN a dry run looks
        let report = w.run(true).await;

        // THEN it reports all of it as not done
        assert!(report.dry_run);
        assert_eq!(report.grants.removed.len(), 2, "{report:#?}");
        assert!(report.grants.removed.iter().all(|f| !f.done));
        assert_eq!(report.grants.flagged.len(), 1);
        assert!(report.needs_attention());
        // AND changed nothing: IAM, ledger, audit trail
        assert!(w.attached());
        assert!(w.fake.has_inline(ROLE, &format!("jit-{}", g.request_id)));
        assert!(w.fake.has_inline(ROLE, "backdoor"));
        assert_eq!(w.fake.calls(), calls_before);
        assert_eq!(w.ledger.all(), ledger_before);
        assert_eq!(w.store.all_events(), events_before);

        // AND the real pass then does what the dry run said
        let done = w.run(false).await;
        assert_eq!(done.grants.removed.len(), 2);
        assert!(done.grants.removed.iter().all(|f| f.done));
        assert!(!w.attached());
        assert!(!w.fake.has_inline(ROLE, &format!("jit-{}", g.request_id)));
    }

    #[tokio::test]
    async fn a_grant_in_flight_is_left_alone() {
        // GIVEN the Grant step attached, and GRANTED is not recorded yet
        let w = World::new(true);
        let r = w.attach_request(Status::ApprovalPending);
        w.attach(&r).await;
        w.advance(30);

        // WHEN the reconciler runs within the grace period
        let report = w.run(false).await;

        // THEN it leaves the attachment alone and says so
        assert_eq!(report.grants.in_flight.len(), 1, "{report:#?}");
        assert!(report.grants.removed.is_empty());
        assert!(w.attached());

        // AND once GRANTED is recorded, the live grant keeps it after the grace period
        let mut granted = r.clone();
        granted.status = Status::Granted;
        granted.expires_at = Some(w.now() + chrono::Duration::hours(1));
        granted.version += 1;
        w.store.put(&granted);
        w.advance(GRACE_SECS * 2);
        let report = w.run(false).await;
        assert_eq!(report.grants.removed, vec![]);
        assert_eq!(report.grants.in_flight, vec![]);
        assert!(w.attached());
        assert!(w.fake.calls().iter().all(|c| !c.starts_with("detach")));
    }

    #[tokio::test]
    async fn an_attachment_another_live_grant_needs_stays() {
        // GIVEN two grants of one attachment: the first ended without a detach, the second is live
        let w = World::new(true);
        let first = w.attach_request(Status::Granted);
        w.attach(&first).await;
        w.force(&first, Status::Expired);
        let second = w.attach_request(Status::Granted);
        w.attach(&second).await;
        w.advance(GRACE_SECS + 1);

        // WHEN the reconciler runs
        let report = w.run(false).await;

        // THEN nothing is removed
        assert!(report.grants.removed.is_empty(), "{report:#?}");
        assert!(w.attached());
    }

    #[tokio::test]
    async fn a_half_done_revoke_is_finished() {
        // GIVEN a detach whose intent was written and whose process died before the call
        let w = World::new(false);
        let r = w.attach_request(Status::Granted);
        w.attach(&r).await;
        let key = AttachmentKey::of(&r).unwrap().unwrap();
        let crashed = LedgerEntry::managed(
            &r.request_id,
            LedgerOp::Remove,
            &key.account,
            &key.principal,
            &key.policy,
            w.now(),
        );
        w.ledger.record_intent(&crashed).await.unwrap();
        w.force(&r, Status::Expired);
        w.advance(GRACE_SECS + 1);

        // WHEN the reconciler runs
        let report = w.run(false).await;

        // THEN the detach is made again and that entry completed
        assert_eq!(report.grants.finished.len(), 1, "{report:#?}");
        assert!(report.grants.finished[0].done);
        assert!(report.grants.removed.is_empty());
        assert!(!w.attached());
        let entry = w
            .ledger
            .all()
            .into_iter()
            .find(|e| e.entry_id == crashed.entry_id)
            .unwrap();
        assert_eq!(entry.outcome, Some(LedgerOutcome::Done));
        assert!(entry.completed_at.is_some());
        assert!(w.ledger.open_entries().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_half_done_detach_under_a_live_grant_is_superseded_and_the_policy_kept() {
        // GIVEN a detach that died mid-way (it did detach) while a new grant of
        // the same attachment is live
        let w = World::new(false);
        let first = w.attach_request(Status::Granted);
        w.attach(&first).await;
        let key = AttachmentKey::of(&first).unwrap().unwrap();
        let crashed = LedgerEntry::managed(
            &first.request_id,
            LedgerOp::Remove,
            &key.account,
            &key.principal,
            &key.policy,
            w.now(),
        );
        w.ledger.record_intent(&crashed).await.unwrap();
        w.fake.attached.lock().unwrap().clear();
        w.force(&first, Status::Expired);
        let second = w.attach_request(Status::Granted);
        w.advance(GRACE_SECS + 1);

        // WHEN the reconciler runs
        let report = w.run(false).await;

        // THEN the live grant has its policy, and the detach entry is closed
        assert_eq!(report.grants.finished.len(), 1, "{report:#?}");
        assert!(w.attached());
        assert_eq!(w.reconciler_notes(&second.request_id).len(), 1);
        let entry = w
            .ledger
            .all()
            .into_iter()
            .find(|e| e.entry_id == crashed.entry_id)
            .unwrap();
        assert!(!entry.open);
        assert!(matches!(entry.outcome, Some(LedgerOutcome::Closed { .. })));
    }

    #[tokio::test]
    async fn a_failed_detach_is_made_again() {
        // GIVEN a detach IAM refused (throttled) at the grant's end
        let w = World::new(false);
        let r = w.attach_request(Status::Granted);
        w.attach(&r).await;
        let key = AttachmentKey::of(&r).unwrap().unwrap();
        *w.fake.fail_next.lock().unwrap() = 1;
        let err = w
            .iam
            .detach(&r.request_id, &key.account, &key.principal, &key.policy)
            .await;
        assert!(err.is_err());
        w.force(&r, Status::Expired);
        w.advance(GRACE_SECS + 1);

        // WHEN the reconciler runs
        let report = w.run(false).await;

        // THEN the detach is made and recorded
        assert_eq!(report.grants.finished.len(), 1, "{report:#?}");
        assert!(!w.attached());
        assert!(w.ledger.open_entries().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failing_repair_is_reported_and_retried() {
        let w = World::new(false);
        let r = w.attach_request(Status::Granted);
        w.attach(&r).await;
        w.force(&r, Status::Expired);
        w.advance(GRACE_SECS + 1);
        *w.fake.fail_next.lock().unwrap() = 1;

        let report = w.run(false).await;
        assert_eq!(report.grants.failed.len(), 1, "{report:#?}");
        assert!(report.needs_attention());
        assert!(w.attached());

        w.advance(GRACE_SECS + 1);
        let report = w.run(false).await;
        assert!(report.grants.failed.is_empty(), "{report:#?}");
        assert!(!w.attached());
    }

    #[tokio::test]
    async fn revoke_denies_are_put_back_while_needed_and_removed_after() {
        // GIVEN an early revoke whose deny was placed through the ledger
        let w = World::new(true);
        let mut r = w.role_request(Status::Revoked);
        r.session_deny = Some(SessionDeny::new(
            &r.request_id,
            RoleArn::parse(ROLE).unwrap(),
            "alice@example.com".into(),
            w.now(),
            3600,
        ));
        w.store.put(&r);
        let r = revocation::place(w.store.as_ref(), &w.iam, w.clock.as_ref(), &r)
            .await
            .unwrap();
        let name = format!("jit-revoke-{}", r.request_id);
        assert!(w.fake.has_inline(ROLE, &name));

        // WHEN it goes missing from the role before its removeAfter
        w.fake.inline.lock().unwrap().clear();
        w.advance(GRACE_SECS + 1);
        let report = w.run(false).await;

        // THEN it is put back
        assert_eq!(report.grants.finished.len(), 1, "{report:#?}");
        assert!(w.fake.has_inline(ROLE, &name));

        // AND after its removeAfter it is removed, recorded on the request
        w.advance(3600 + 2 * 60);
        let report = w.run(false).await;
        assert_eq!(report.grants.removed.len(), 1, "{report:#?}");
        assert!(!w.fake.has_inline(ROLE, &name));
        let stored = w.store.get(&r.request_id).await.unwrap().unwrap();
        assert!(stored.session_deny.unwrap().removed_at.is_some());
        assert!(w.ledger.open_entries().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_revoke_deny_whose_record_is_gone_is_removed_after_its_own_bound() {
        let w = World::new(false);
        let gone = RequestId::generate(w.now());
        let role = RoleArn::parse(ROLE).unwrap();
        let until = w.now() + chrono::Duration::minutes(10);
        w.iam
            .put_role_policy(
                &gone,
                LedgerKind::RevokeDeny,
                &role,
                &format!("jit-revoke-{gone}"),
                "{}",
                Some(until),
            )
            .await
            .unwrap();
        w.advance(5 * 60);
        assert!(w.run(false).await.grants.removed.is_empty());
        w.advance(6 * 60);
        let report = w.run(false).await;
        assert_eq!(report.grants.removed.len(), 1, "{report:#?}");
        assert!(report.grants.removed[0].reason.contains("removeAfter"));
        assert!(!w.fake.has_inline(ROLE, &format!("jit-revoke-{gone}")));
        assert_eq!(w.reconciler_notes(&gone).len(), 1);
    }

    #[tokio::test]
    async fn a_generated_inline_policy_goes_with_its_grant() {
        let w = World::new(false);
        let r = w.role_request(Status::Granted);
        let role = RoleArn::parse(ROLE).unwrap();
        let name = format!("jit-{}", r.request_id);
        w.iam
            .put_role_policy(
                &r.request_id,
                LedgerKind::InlinePolicy,
                &role,
                &name,
                "{}",
                None,
            )
            .await
            .unwrap();
        w.advance(GRACE_SECS + 1);
        assert!(w.run(false).await.grants.removed.is_empty(), "live: kept");
        assert!(w.fake.has_inline(ROLE, &name));

        w.force(&r, Status::Cancelled);
        let report = w.run(false).await;
        assert_eq!(report.grants.removed.len(), 1, "{report:#?}");
        assert!(!w.fake.has_inline(ROLE, &name));
    }

    /// A scoped attach-policy request: its grant is `jit-<id>` inline on
    /// the requester, not the managed policy.
    fn scoped_attach_request(w: &World, status: Status) -> AccessRequest {
        let mut r = w.attach_request(status);
        r.session_policy = Some(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::prod-logs/*"]}]}"#
                .into(),
        );
        w.store.put(&r);
        r
    }

    fn has_principal_inline(w: &World, name: &str) -> bool {
        w.fake
            .has_inline("arn:aws:iam::123456789012:user/alice@example.com", name)
    }

    /// Where a process can die in a scoped attach grant's life, and what
    /// the store and IAM hold then.
    #[derive(Debug, Clone, Copy)]
    enum Crash {
        /// The put's intent is written; the call never made; the request
        /// never recorded GRANTED (the workflow died with the process).
        PutIntent,
        /// The put's call made, its completion never written.
        PutCall,
        /// The put completed; RecordGranted never ran.
        PutDone,
        /// GRANTED, then nothing: the Revoke step never ran.
        Granted,
        /// The window over: the delete's intent written, no call.
        DeleteIntent,
        /// The delete's call made, its completion never written.
        DeleteCall,
    }

    #[tokio::test]
    async fn a_scoped_attach_grant_never_outlives_its_window_whatever_instant_the_process_dies() {
        for listing in [false, true] {
            for crash in [
                Crash::PutIntent,
                Crash::PutCall,
                Crash::PutDone,
                Crash::Granted,
                Crash::DeleteIntent,
                Crash::DeleteCall,
            ] {
                // GIVEN a scoped attach grant whose process died at `crash`
                let w = World::new(listing);
                let status = match crash {
                    Crash::PutIntent | Crash::PutCall | Crash::PutDone => Status::Approved,
                    _ => Status::Granted,
                };
                let r = scoped_attach_request(&w, status);
                let g = crate::inline_grants::InlineGrant::of(&r).unwrap().unwrap();
                assert_eq!(g.name, format!("jit-{}", r.request_id));
                let intent = |op| {
                    LedgerEntry::principal_inline(
                        &r.request_id,
                        op,
                        &g.account,
                        &g.principal,
                        &g.name,
                        w.now(),
                    )
                };
                match crash {
                    Crash::PutIntent => w
                        .ledger
                        .record_intent(&intent(LedgerOp::Put))
                        .await
                        .unwrap(),
                    Crash::PutCall => {
                        w.ledger
                            .record_intent(&intent(LedgerOp::Put))
                            .await
                            .unwrap();
                        w.fake
                            .put_inline_policy(&g.account, &g.principal, &g.name, &g.document)
                            .await
                            .unwrap();
                    }
                    _ => g.put(&w.iam).await.unwrap(),
                }
                assert_eq!(
                    has_principal_inline(&w, &g.name),
                    !matches!(crash, Crash::PutIntent),
                    "{crash:?}"
                );
                if matches!(crash, Crash::DeleteIntent | Crash::DeleteCall) {
                    // the window ends; the Revoke step starts its delete
                    w.advance(3600);
                    w.ledger
                        .record_intent(&intent(LedgerOp::Remove))
                        .await
                        .unwrap();
                    if matches!(crash, Crash::DeleteCall) {
                        w.fake
                            .delete_inline_policy(&g.account, &g.principal, &g.name)
                            .await
                            .unwrap();
                    }
                }

                // WHEN the reconciler runs before the window ends (past the grace)
                w.advance(GRACE_SECS + 1);
                let early = w.run(false).await;
                let live = matches!(crash, Crash::Granted);
                // THEN a live grant keeps it; anything else is removed
                assert_eq!(
                    has_principal_inline(&w, &g.name),
                    live,
                    "{crash:?} listing={listing}: {early:#?}"
                );
                assert!(early.grants.failed.is_empty(), "{early:#?}");

                // AND once the window is over nothing is left, IAM or ledger
                w.advance(3600);
                let late = w.run(false).await;
                assert!(
                    !has_principal_inline(&w, &g.name),
                    "{crash:?} listing={listing}: {late:#?}"
                );
                assert!(
                    w.ledger.open_entries().await.unwrap().is_empty(),
                    "{crash:?} listing={listing}: {:#?}",
                    w.ledger.all()
                );
                assert!(
                    !w.attached(),
                    "the managed policy is never attached for a scoped grant"
                );
                // (what IAM no longer held, a listing pass only completes)
                let held = !matches!(crash, Crash::PutIntent | Crash::DeleteCall);
                if held || !listing {
                    assert!(
                        !w.reconciler_notes(&r.request_id).is_empty(),
                        "{crash:?}: the removal is audited on the request"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn a_scoped_attach_grants_missing_inline_policy_is_put_back_while_live() {
        // GIVEN a live scoped attach grant whose `jit-<id>` someone deleted
        let w = World::new(true);
        let r = scoped_attach_request(&w, Status::Granted);
        let g = crate::inline_grants::InlineGrant::of(&r).unwrap().unwrap();
        g.put(&w.iam).await.unwrap();
        w.fake.inline.lock().unwrap().clear();
        w.advance(GRACE_SECS + 1);

        // WHEN the reconciler lists IAM THEN it puts the recorded document back
        let report = w.run(false).await;
        assert_eq!(report.grants.finished.len(), 1, "{report:#?}");
        let doc = w
            .fake
            .inline
            .lock()
            .unwrap()
            .get(&(
                "arn:aws:iam::123456789012:user/alice@example.com".to_string(),
                g.name.clone(),
            ))
            .cloned();
        assert_eq!(doc.as_deref(), r.session_policy.as_deref());
    }

    #[tokio::test]
    async fn a_foreign_inline_policy_on_a_grantable_role_is_flagged_never_deleted() {
        // GIVEN an inline policy on a grantable role that the broker never wrote
        let w = World::new(true);
        w.fake.inline.lock().unwrap().insert(
            (ROLE.into(), "backdoor".into()),
            r#"{"Effect":"Allow"}"#.into(),
        );

        // WHEN the reconciler runs twice
        let first = w.run(false).await;
        let second = w.run(false).await;

        // THEN it is flagged both times, audited once, and still there
        for report in [&first, &second] {
            assert_eq!(report.grants.flagged.len(), 1, "{report:#?}");
            let f = &report.grants.flagged[0];
            assert_eq!((f.target.as_str(), f.policy.as_str()), (ROLE, "backdoor"));
            assert!(!f.done);
            assert!(report.needs_attention());
            assert!(report.grants.removed.is_empty());
        }
        assert!(w.fake.has_inline(ROLE, "backdoor"));
        assert!(w.fake.calls().is_empty(), "no IAM call at all");
        let id = first.grants.flagged[0].request_id.clone().unwrap();
        assert_eq!(second.grants.flagged[0].request_id.as_ref(), Some(&id));
        let notes = w.reconciler_notes(&id);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("backdoor"));
    }

    #[tokio::test]
    async fn what_the_broker_removed_but_iam_still_holds_is_removed_again() {
        // GIVEN a principal the ledger names (a live grant of another policy)
        let w = World::new(true);
        let other = w.request(
            GrantTarget::AttachPolicy {
                policy_name: PolicyName::parse("SecurityAudit").unwrap(),
            },
            Status::Granted,
        );
        w.attach(&other).await;
        // AND an attachment the ledger says was detached, still in IAM
        let r = w.attach_request(Status::Granted);
        w.attach(&r).await;
        let key = AttachmentKey::of(&r).unwrap().unwrap();
        w.force(&r, Status::Expired);
        w.iam
            .detach(&r.request_id, &key.account, &key.principal, &key.policy)
            .await
            .unwrap();
        assert_eq!(
            w.ledger.open_entries().await.unwrap().len(),
            1,
            "the other grant's"
        );
        w.fake.attached.lock().unwrap().insert((
            key.account.to_string(),
            key.principal.clone(),
            key.policy.to_string(),
        ));
        w.advance(GRACE_SECS + 1);

        // WHEN the reconciler lists IAM
        let report = w.run(false).await;

        // THEN it is detached again, and the live grant's policy stays
        assert_eq!(report.grants.removed.len(), 1, "{report:#?}");
        assert_eq!(report.grants.removed[0].policy, "ReadOnlyAccess");
        assert!(!w.attached());
        assert!(w.fake.is_attached(
            "123456789012",
            &IamPrincipal::User("alice@example.com".into()),
            "SecurityAudit"
        ));
    }

    #[tokio::test]
    async fn the_report_is_camel_case_json_with_room_for_more_sections() {
        let w = World::new(true);
        let r = w.attach_request(Status::Granted);
        w.attach(&r).await;
        w.force(&r, Status::Expired);
        w.advance(GRACE_SECS + 1);
        let v = serde_json::to_value(w.run(true).await).unwrap();
        assert_eq!(v["dryRun"], true);
        let g = &v["grants"];
        for field in [
            "iamListed",
            "checked",
            "removed",
            "finished",
            "flagged",
            "inFlight",
            "failed",
        ] {
            assert!(!g[field].is_null(), "{field}: {v}");
        }
        assert_eq!(g["removed"][0]["requestId"], r.request_id.to_string());
        assert_eq!(g["removed"][0]["kind"], "managed-policy");
        assert_eq!(g["removed"][0]["done"], false);
    }
}
