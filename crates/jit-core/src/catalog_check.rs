//! `jit catalog check`: does every entitlement's policy or role exist in the
//! account, set up so the broker can grant it? One row per entitlement, OK
//! or the problem and its fix. The Kubiya seed's "Policy Not Found"
//! troubleshooting, as a command.
//!
//! What is checked:
//! - attach-policy: a managed policy with exactly that (case-sensitive)
//!   name exists, in the entitlement's account or AWS-managed, and is
//!   attachable; the entitlement's account is the broker's own (IAM attach
//!   calls are made with the broker's credentials);
//! - assume-role: the role exists; its `MaxSessionDuration`; its trust
//!   policy allows the broker principal `sts:AssumeRole`, and also
//!   `sts:SetSourceIdentity` and `sts:TagSession`, which every grant uses.
//!
//! - guardrails, reported as warnings (the grant works, but a compromised
//!   broker function could do more than it should): a role without a
//!   permissions boundary (the broker may put inline policies on it, and
//!   only a boundary stops an inline `Allow` from widening it), and a role
//!   or user without the tag [`GRANTABLE_TAG_KEY`]`=`[`GRANTABLE_TAG_VALUE`]
//!   that `template.yaml` requires before the broker may change its
//!   policies. For attach-policy entitlements the identities checked are
//!   the catalog's members of the entitlement's `eligible_groups` (other
//!   requesters cannot be known in advance).
//!
//! The trust policy is read, not simulated: `Allow` statements whose
//! principal names the broker (its ARN, its role by name, its account's
//! root or bare id, or `*`) and whose actions match are looked for, and a
//! matching `Deny` refuses. Conditions are not evaluated (they are reported),
//! nor are `NotPrincipal`/`NotAction` statements.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{Catalog, Entitlement};
use crate::grant_ports::{AccountInspector, CHAINED_SESSION_CAP_SECS};
use crate::ids::AccountId;
use crate::ports::IamPrincipal;
use crate::request::GrantTarget;

/// The tag `template.yaml` requires on a role or user before the broker's
/// functions may put, delete or attach policies on it
/// (`aws:ResourceTag/jit-grantable: "true"`).
pub const GRANTABLE_TAG_KEY: &str = "jit-grantable";
/// The tag's value (compared case-sensitively, as IAM's `StringEquals`).
pub const GRANTABLE_TAG_VALUE: &str = "true";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckStatus {
    Ok,
    /// The grant works, but a guardrail is missing (see `warnings`).
    Warning,
    Problem,
}

/// A missing guardrail and how to add it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckWarning {
    pub warning: String,
    pub fix: String,
}

/// One entitlement's result. JSON: `{"entitlement", "kind": "policy"|"role",
/// "target", "status": "OK"|"WARNING"|"PROBLEM", "detail", "problem"?,
/// "fix"?, "warnings"?: [{"warning", "fix"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRow {
    pub entitlement: String,
    /// `policy` or `role` (owned when read back from JSON: `jit catalog
    /// check` renders the API's answer with [`render_table`]).
    pub kind: Cow<'static, str>,
    /// The policy name or the role ARN.
    pub target: String,
    pub status: CheckStatus,
    /// What was found (ARN, session length, trust verdict).
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<CheckWarning>,
}

impl CheckRow {
    fn ok(e: &Entitlement, kind: &'static str, target: String, detail: String) -> Self {
        CheckRow {
            entitlement: e.name.clone(),
            kind: Cow::Borrowed(kind),
            target,
            status: CheckStatus::Ok,
            detail,
            problem: None,
            fix: None,
            warnings: vec![],
        }
    }

    fn problem(
        e: &Entitlement,
        kind: &'static str,
        target: String,
        detail: String,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        CheckRow {
            entitlement: e.name.clone(),
            kind: Cow::Borrowed(kind),
            target,
            status: CheckStatus::Problem,
            detail,
            problem: Some(problem.into()),
            fix: Some(fix.into()),
            warnings: vec![],
        }
    }

    /// Adds guardrail warnings; an OK row becomes a WARNING row.
    fn warn(mut self, warnings: Vec<CheckWarning>) -> Self {
        if !warnings.is_empty() && self.status == CheckStatus::Ok {
            self.status = CheckStatus::Warning;
        }
        self.warnings.extend(warnings);
        self
    }
}

/// Whether the tags carry the grantable tag.
fn tagged(tags: &[(String, String)]) -> bool {
    tags.iter()
        .any(|(k, v)| k == GRANTABLE_TAG_KEY && v == GRANTABLE_TAG_VALUE)
}

fn untagged_warning(what: &str, name: &str, kind: &str) -> CheckWarning {
    CheckWarning {
        warning: format!(
            "{what} has no tag {GRANTABLE_TAG_KEY}={GRANTABLE_TAG_VALUE}: the deployed template lets the broker change the policies only of {kind}s carrying it, so {}",
            if kind == "role" {
                "an early revoke's deny cannot be put on it"
            } else {
                "the policy cannot be attached to it"
            }
        ),
        fix: format!(
            "aws iam tag-{kind} --{kind}-name {name} --tags Key={GRANTABLE_TAG_KEY},Value={GRANTABLE_TAG_VALUE}"
        ),
    }
}

/// Whether any row is a problem (the CLI's non-zero exit).
pub fn has_problems(rows: &[CheckRow]) -> bool {
    rows.iter().any(|r| r.status == CheckStatus::Problem)
}

/// The rows as a plain-text table: entitlement, kind, status, target and
/// what was found, then the problem and its fix on their own lines.
pub fn render_table(rows: &[CheckRow]) -> String {
    let status = |r: &CheckRow| match r.status {
        CheckStatus::Ok => "OK",
        CheckStatus::Warning => "WARNING",
        CheckStatus::Problem => "PROBLEM",
    };
    let w_name = rows
        .iter()
        .map(|r| r.entitlement.chars().count())
        .chain([11])
        .max()
        .unwrap_or(11);
    let w_target = rows
        .iter()
        .map(|r| r.target.chars().count())
        .chain([6])
        .max()
        .unwrap_or(6);
    let mut out = format!(
        "{:<w_name$}  {:<6}  {:<7}  {:<w_target$}  DETAIL\n",
        "ENTITLEMENT", "KIND", "STATUS", "TARGET"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<w_name$}  {:<6}  {:<7}  {:<w_target$}  {}\n",
            r.entitlement,
            r.kind,
            status(r),
            r.target,
            r.detail
        ));
        if let Some(p) = &r.problem {
            out.push_str(&format!("    problem: {p}\n"));
        }
        if let Some(f) = &r.fix {
            out.push_str(&format!("    fix:     {f}\n"));
        }
        for w in &r.warnings {
            out.push_str(&format!(
                "    warning: {}\n    fix:     {}\n",
                w.warning, w.fix
            ));
        }
    }
    let count = |s: CheckStatus| rows.iter().filter(|r| r.status == s).count();
    out.push_str(&format!(
        "{} entitlements checked, {} with problems, {} with warnings only\n",
        rows.len(),
        count(CheckStatus::Problem),
        count(CheckStatus::Warning)
    ));
    out
}

/// The IAM identity the broker acts as: the ARN of its role or user (an
/// assumed-role session ARN is turned into its role).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerPrincipal {
    arn: String,
    account: AccountId,
    /// `("role", name)` or `("user", name)`.
    kind: &'static str,
    name: String,
}

impl BrokerPrincipal {
    /// From an IAM role or user ARN, or an STS assumed-role ARN (what
    /// `sts:GetCallerIdentity` answers).
    pub fn parse(arn: &str) -> Result<BrokerPrincipal, String> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let bad = || format!("`{arn}` is not an IAM role, user or assumed-role ARN");
        if parts.len() != 6 || parts[0] != "arn" {
            return Err(bad());
        }
        let (partition, service, account, resource) = (parts[1], parts[2], parts[4], parts[5]);
        let account = AccountId::parse(account).map_err(|_| bad())?;
        let (kind, name, canonical) = match (service, resource.split_once('/')) {
            ("iam", Some(("role", path))) => {
                let name = path.rsplit('/').next().unwrap_or_default();
                ("role", name.to_string(), arn.to_string())
            }
            // moto answers GetCallerIdentity for a user with an `sts` ARN.
            ("iam" | "sts", Some(("user", path))) => {
                let name = path.rsplit('/').next().unwrap_or_default();
                (
                    "user",
                    name.to_string(),
                    format!("arn:{partition}:iam::{account}:user/{path}"),
                )
            }
            ("sts", Some(("assumed-role", rest))) => {
                let name = rest.split('/').next().unwrap_or_default();
                (
                    "role",
                    name.to_string(),
                    format!("arn:{partition}:iam::{account}:role/{name}"),
                )
            }
            _ => return Err(bad()),
        };
        if name.is_empty() {
            return Err(bad());
        }
        Ok(BrokerPrincipal {
            arn: canonical,
            account,
            kind,
            name,
        })
    }

    pub fn arn(&self) -> &str {
        &self.arn
    }

    pub fn account(&self) -> &AccountId {
        &self.account
    }

    /// Whether a trust policy's `AWS` principal entry names this identity.
    fn named_by(&self, entry: &str) -> bool {
        if entry == "*" || entry == self.account.as_str() || entry == self.arn {
            return true;
        }
        let parts: Vec<&str> = entry.splitn(6, ':').collect();
        if parts.len() != 6 || parts[2] != "iam" || parts[4] != self.account.as_str() {
            return false;
        }
        match parts[5].split_once('/') {
            None => parts[5] == "root",
            Some((kind, path)) => {
                kind == self.kind && path.rsplit('/').next() == Some(self.name.as_str())
            }
        }
    }
}

/// What a trust policy says about the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustVerdict {
    pub assume: bool,
    pub set_source_identity: bool,
    pub tag_session: bool,
    /// A `Deny` statement matches the broker (it wins over any `Allow`).
    pub denied: bool,
    /// Some matching `Allow` carries conditions, not evaluated here.
    pub conditional: bool,
    /// The policy could not be read as JSON.
    pub unreadable: Option<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// `*` and `?` wildcards, case-insensitive (IAM action matching).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Reads a trust policy for the broker principal.
pub fn read_trust_policy(document: &str, broker: &BrokerPrincipal) -> TrustVerdict {
    let mut v = TrustVerdict {
        assume: false,
        set_source_identity: false,
        tag_session: false,
        denied: false,
        conditional: false,
        unreadable: None,
    };
    let doc: Value = match serde_json::from_str(document) {
        Ok(d) => d,
        Err(e) => {
            v.unreadable = Some(e.to_string());
            return v;
        }
    };
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => vec![],
    };
    for st in &statements {
        let principal_matches = match st.get("Principal") {
            Some(Value::String(s)) => s == "*",
            Some(Value::Object(m)) => strings(m.get("AWS")).iter().any(|e| broker.named_by(e)),
            _ => false,
        };
        if !principal_matches {
            continue;
        }
        let actions = strings(st.get("Action"));
        let matches = |action: &str| actions.iter().any(|a| glob(a, action));
        match st.get("Effect").and_then(Value::as_str) {
            Some("Deny") if matches("sts:AssumeRole") => v.denied = true,
            Some("Allow") => {
                let assume = matches("sts:AssumeRole");
                v.assume |= assume;
                v.set_source_identity |= matches("sts:SetSourceIdentity");
                v.tag_session |= matches("sts:TagSession");
                if assume && st.get("Condition").is_some() {
                    v.conditional = true;
                }
            }
            _ => {}
        }
    }
    v
}

/// The catalog check as the deployed broker runs it (`GET /catalog/check`,
/// `jit catalog check`): the account inspector of the function that serves
/// it, and the principals that really assume the catalog's roles (on AWS
/// the Grant step's role and the credential-vending function's role), each
/// of which every trust policy must admit.
pub struct CatalogCheckPorts {
    pub inspector: std::sync::Arc<dyn AccountInspector>,
    pub principals: Vec<BrokerPrincipal>,
}

/// The answer of `GET /catalog/check` (and of `jit catalog check --local`
/// with `--output json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogReport {
    /// Whose access the trust policies were judged for (empty: not judged).
    pub broker_principals: Vec<String>,
    pub rows: Vec<CheckRow>,
    /// No row is a problem (warnings allowed): `jit catalog check` exits 0.
    pub ok: bool,
}

/// [`catalog_check`] for every principal that assumes the catalog's roles:
/// each row is the worst of the principals' rows for that entitlement, its
/// problem prefixed with the principal it is about when there are several.
pub async fn catalog_check_for(
    catalog: &Catalog,
    inspector: &dyn AccountInspector,
    principals: &[BrokerPrincipal],
) -> Vec<CheckRow> {
    let Some((first, rest)) = principals.split_first() else {
        return catalog_check(catalog, inspector, None).await;
    };
    let label = |b: &BrokerPrincipal, mut row: CheckRow| {
        if !rest.is_empty()
            && let Some(p) = row.problem.take()
        {
            row.problem = Some(format!("for {}: {p}", b.arn()));
        }
        row
    };
    let mut rows: Vec<CheckRow> = catalog_check(catalog, inspector, Some(first))
        .await
        .into_iter()
        .map(|r| label(first, r))
        .collect();
    for b in rest {
        let other = catalog_check(catalog, inspector, Some(b)).await;
        for (mine, theirs) in rows.iter_mut().zip(other) {
            if theirs.status > mine.status {
                *mine = label(b, theirs);
            }
        }
    }
    rows
}

impl crate::service::Broker {
    /// `GET /catalog/check` on this broker: [`check_catalog_as`] with the
    /// catalog-check ports of its grant ports, if any.
    pub async fn check_catalog(
        &self,
        caller: &crate::identity::Caller,
    ) -> Result<CatalogReport, crate::error::ServiceError> {
        let ports = self.grants.as_ref().and_then(|g| g.catalog_check.clone());
        check_catalog_as(&self.catalog, caller, ports.as_deref()).await
    }
}

/// `GET /catalog/check`: the catalog checked with the broker's own
/// principals and inspector. Members of the catalog's `admin_groups` only
/// (it describes the account's roles and who may assume them). A free
/// function over the catalog and the ports, not a `Broker` method, so the
/// `catalog-check` Lambda serves it without a store, a workflow or grant
/// ports (none of which it links).
pub async fn check_catalog_as(
    catalog: &Catalog,
    caller: &crate::identity::Caller,
    ports: Option<&CatalogCheckPorts>,
) -> Result<CatalogReport, crate::error::ServiceError> {
    use crate::error::ServiceError;
    let groups = match &caller.identity {
        Some(id) => catalog.groups_of(&id.principal, &id.groups),
        None => {
            return Err(ServiceError::forbidden(
                "not_admin",
                None,
                "only members of the catalog's admin_groups may run the catalog check; the call carries no person",
            ));
        }
    };
    if !catalog.is_admin(&groups) {
        return Err(ServiceError::forbidden(
            "not_admin",
            None,
            "only members of the catalog's admin_groups may run the catalog check",
        ));
    }
    let ports = ports.ok_or_else(|| ServiceError::Unavailable {
        code: "catalog_check_unavailable",
        message: "this front door has no account to check the catalog against (deployed, `GET /catalog/check` is served by the catalog-check function; jit-local checks with `--grants aws`); run `jit catalog check --local` with your own AWS credentials instead".into(),
    })?;
    let rows = catalog_check_for(catalog, ports.inspector.as_ref(), &ports.principals).await;
    Ok(CatalogReport {
        broker_principals: ports
            .principals
            .iter()
            .map(|b| b.arn().to_string())
            .collect(),
        ok: !has_problems(&rows),
        rows,
    })
}

/// Checks every entitlement of the catalog against the account. `broker`
/// is the identity the broker acts as; without it trust policies are not
/// judged (the row says so).
pub async fn catalog_check(
    catalog: &Catalog,
    inspector: &dyn AccountInspector,
    broker: Option<&BrokerPrincipal>,
) -> Vec<CheckRow> {
    let mut rows = Vec::with_capacity(catalog.len());
    for e in catalog.entitlements() {
        let row = check_one(e, inspector, broker).await;
        let row = match &e.target {
            GrantTarget::AttachPolicy { .. } if row.status != CheckStatus::Problem => {
                attach_guardrails(catalog, e, inspector, row).await
            }
            _ => row,
        };
        rows.push(row);
    }
    rows
}

/// Checks the permission-set entitlements against Identity Center and
/// replaces their rows in `rows`: the instance answers, the permission set
/// exists and is provisioned to each of the entry's accounts, and the
/// broker may create (and delete) assignments of it there, where the
/// inspector can tell (IAM's policy simulator). A permission set whose
/// portal sessions outlast an hour is a warning: deleting an assignment
/// at the window's end does not end a session already open.
pub async fn check_permission_sets(
    catalog: &Catalog,
    manager: &dyn crate::identity_center::AssignmentManager,
    provisioning: &dyn crate::identity_center::Provisioning,
    inspector: &dyn AccountInspector,
    broker: Option<&BrokerPrincipal>,
    rows: &mut [CheckRow],
) {
    for e in catalog.entitlements() {
        let GrantTarget::PermissionSet {
            permission_set,
            accounts,
        } = &e.target
        else {
            continue;
        };
        let row = check_permission_set(
            e,
            permission_set,
            accounts,
            manager,
            provisioning,
            inspector,
            broker,
        )
        .await;
        if let Some(slot) = rows.iter_mut().find(|r| r.entitlement == e.name) {
            *slot = row;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn check_permission_set(
    e: &Entitlement,
    permission_set: &str,
    accounts: &[AccountId],
    manager: &dyn crate::identity_center::AssignmentManager,
    provisioning: &dyn crate::identity_center::Provisioning,
    inspector: &dyn AccountInspector,
    broker: Option<&BrokerPrincipal>,
) -> CheckRow {
    const KIND: &str = "permission-set";
    let target = permission_set.to_string();
    let ps = match manager.permission_set(permission_set).await {
        Err(err) => {
            return CheckRow::problem(
                e,
                KIND,
                target,
                String::new(),
                format!("the Identity Center instance could not be read: {err}"),
                "check `identity_center.instance_arn` and `region` in the catalog, and let the checking identity call sso:DescribeInstance, sso:ListPermissionSets and sso:DescribePermissionSet",
            );
        }
        Ok(None) => {
            return CheckRow::problem(
                e,
                KIND,
                target,
                String::new(),
                format!("the Identity Center instance has no permission set `{permission_set}`"),
                "create the permission set, or correct `permission_set` in the catalog to its exact name or ARN",
            );
        }
        Ok(Some(ps)) => ps,
    };
    let provisioned = match provisioning.provisioned_accounts(&ps.arn).await {
        Ok(list) => list,
        Err(err) => {
            return CheckRow::problem(
                e,
                KIND,
                target,
                ps.arn.clone(),
                format!("could not list the accounts it is provisioned to: {err}"),
                "let the checking identity call sso:ListAccountsForProvisionedPermissionSet",
            );
        }
    };
    let missing: Vec<String> = accounts
        .iter()
        .filter(|a| !provisioned.contains(a))
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        return CheckRow::problem(
            e,
            KIND,
            target,
            ps.arn.clone(),
            format!(
                "{} is not provisioned to account(s) {}",
                ps.name,
                missing.join(", ")
            ),
            format!(
                "aws sso-admin provision-permission-set --instance-arn <instance> --permission-set-arn {} --target-type AWS_ACCOUNT --target-id <account> (or assign it once in the console)",
                ps.arn
            ),
        );
    }
    let mut detail = format!(
        "{} ({}), provisioned to {}",
        ps.arn,
        ps.name,
        accounts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut denied = vec![];
    match broker {
        None => detail.push_str("; permission to assign not checked (broker identity unknown)"),
        Some(b) => {
            for a in accounts {
                for action in ["sso:CreateAccountAssignment", "sso:DeleteAccountAssignment"] {
                    match inspector.may_call(b.arn(), action, &ps.arn, a).await {
                        Ok(Some(true)) => {}
                        Ok(Some(false)) => denied.push(format!("{action} in {a}")),
                        Ok(None) => {
                            detail.push_str(
                                "; permission to assign not checked (no policy simulator)",
                            );
                            break;
                        }
                        Err(err) => {
                            detail.push_str(&format!("; permission to assign not checked: {err}"));
                            break;
                        }
                    }
                }
            }
        }
    }
    if !denied.is_empty() {
        return CheckRow::problem(
            e,
            KIND,
            target,
            detail,
            format!(
                "{} may not {}",
                broker.map(|b| b.arn()).unwrap_or_default(),
                denied.join(", ")
            ),
            "deploy with IdentityCenterInstanceArn set (the template grants the task functions these actions on the instance and the catalog's permission sets), or allow them to the broker's role",
        );
    }
    let mut warnings = vec![];
    if let Some(d) = &ps.session_duration
        && iso_duration_secs(d).is_none_or(|secs| secs > 3600)
    {
        warnings.push(CheckWarning {
            warning: format!(
                "{} lets portal sessions last {d}: deleting the assignment at the window's end does not end a session already open",
                ps.name
            ),
            fix: format!(
                "aws sso-admin update-permission-set --instance-arn <instance> --permission-set-arn {} --session-duration PT1H",
                ps.arn
            ),
        });
    }
    CheckRow::ok(e, KIND, target, detail).warn(warnings)
}

/// Seconds of an ISO 8601 time duration as Identity Center writes them
/// (`PT1H`, `PT30M`, `PT12H`, `PT1H30M`); `None` for anything else.
fn iso_duration_secs(d: &str) -> Option<u64> {
    let mut rest = d.strip_prefix("PT")?;
    let mut total = 0u64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        let unit = rest[digits..].chars().next()?;
        total += n * match unit {
            'H' => 3600,
            'M' => 60,
            'S' => 1,
            _ => return None,
        };
        rest = &rest[digits + 1..];
    }
    Some(total)
}

/// The identities an attach-policy entitlement's known requesters would
/// have the policy attached to: each must carry the grantable tag.
async fn attach_guardrails(
    catalog: &Catalog,
    e: &Entitlement,
    inspector: &dyn AccountInspector,
    mut row: CheckRow,
) -> CheckRow {
    if e.eligible_groups.is_empty() {
        row.detail.push_str(&format!(
            "; requesters' IAM identities not checked (anyone may request): each needs the tag {GRANTABLE_TAG_KEY}={GRANTABLE_TAG_VALUE}"
        ));
        return row;
    }
    let mut seen = std::collections::HashSet::new();
    let mut warnings = vec![];
    let mut checked = 0;
    for member in e.eligible_groups.iter().flat_map(|g| catalog.members_of(g)) {
        let Ok(principal) = IamPrincipal::for_requester(member) else {
            continue;
        };
        if !seen.insert(principal.clone()) {
            continue;
        }
        checked += 1;
        let (kind, name) = match &principal {
            IamPrincipal::User(n) => ("user", n.as_str()),
            IamPrincipal::Role(n) => ("role", n.as_str()),
        };
        match inspector.identity(&principal).await {
            Ok(Some(info)) if tagged(&info.tags) => {}
            Ok(Some(info)) => warnings.push(untagged_warning(
                &format!("{member}'s IAM {kind} {}", info.arn),
                name,
                kind,
            )),
            Ok(None) => warnings.push(CheckWarning {
                warning: format!(
                    "{member} is eligible, but there is no IAM {kind} `{name}` in account {} to attach the policy to",
                    e.account
                ),
                fix: format!(
                    "create the IAM {kind} `{name}`, or remove {member} from the entitlement's eligible groups"
                ),
            }),
            Err(err) => warnings.push(CheckWarning {
                warning: format!("could not look up {member}'s IAM {kind} `{name}`: {err}"),
                fix: format!("let the checking identity call iam:Get{}", if kind == "user" { "User" } else { "Role" }),
            }),
        }
    }
    row.detail
        .push_str(&format!("; {checked} eligible IAM identities checked"));
    row.warn(warnings)
}

/// A grantable role's guardrails: a permissions boundary and the tag.
fn role_guardrails(
    role: &crate::ids::RoleArn,
    info: &crate::grant_ports::RoleInfo,
) -> Vec<CheckWarning> {
    let mut warnings = vec![];
    if info.permissions_boundary.is_none() {
        warnings.push(CheckWarning {
            warning: format!(
                "{} has no permissions boundary: the broker may put inline policies on this role (early-revoke denies), and without a boundary a compromised broker function could put an Allow there and widen the role",
                info.arn
            ),
            fix: format!(
                "aws iam put-role-permissions-boundary --role-name {} --permissions-boundary <ARN of a managed policy allowing what the role may ever do>",
                role.role_name()
            ),
        });
    }
    if !tagged(&info.tags) {
        warnings.push(untagged_warning(&info.arn, role.role_name(), "role"));
    }
    warnings
}

async fn check_one(
    e: &Entitlement,
    inspector: &dyn AccountInspector,
    broker: Option<&BrokerPrincipal>,
) -> CheckRow {
    match &e.target {
        GrantTarget::AttachPolicy { policy_name } => {
            let target = policy_name.to_string();
            if let Some(b) = broker
                && b.account() != &e.account
            {
                return CheckRow::problem(
                    e,
                    "policy",
                    target,
                    format!("account {}; the broker is in {}", e.account, b.account()),
                    "attach-policy grants are made with the broker's own credentials, in its own account",
                    format!(
                        "run the broker in account {} or grant this access with a role there (role_arn)",
                        e.account
                    ),
                );
            }
            match inspector.policy(&e.account, policy_name).await {
                Err(err) => CheckRow::problem(
                    e,
                    "policy",
                    target,
                    String::new(),
                    format!("could not look the policy up: {err}"),
                    "let the checking identity call iam:GetPolicy",
                ),
                Ok(None) => CheckRow::problem(
                    e,
                    "policy",
                    target,
                    format!("account {}", e.account),
                    format!(
                        "no managed policy named `{policy_name}` in account {} or among AWS-managed policies (names are case-sensitive)",
                        e.account
                    ),
                    "correct `policy_name` in the catalog to the policy's exact name, or create the policy",
                ),
                Ok(Some(p)) if !p.attachable => CheckRow::problem(
                    e,
                    "policy",
                    target,
                    p.arn.clone(),
                    format!("{} exists but is not attachable", p.arn),
                    "use an attachable managed policy (AWS service-role policies are not)",
                ),
                Ok(Some(p)) => CheckRow::ok(e, "policy", target, format!("{} (attachable)", p.arn)),
            }
        }
        GrantTarget::PermissionSet { permission_set, .. } => CheckRow::problem(
            e,
            "permission-set",
            permission_set.clone(),
            String::new(),
            "not checked: this check has no Identity Center adapter",
            "run `jit-local catalog check` with `--grants aws` (it reads Identity Center)",
        ),
        GrantTarget::AssumeRole { role_arn } => {
            let target = role_arn.to_string();
            if let Some(b) = broker
                && role_arn.account() != *b.account()
            {
                return CheckRow::problem(
                    e,
                    "role",
                    target,
                    format!(
                        "account {}; the check runs in {}",
                        role_arn.account(),
                        b.account()
                    ),
                    "not checked: IAM answers only about the account whose credentials ask",
                    format!(
                        "run the check with credentials for account {}",
                        role_arn.account()
                    ),
                );
            }
            let info = match inspector.role(role_arn).await {
                Err(err) => {
                    return CheckRow::problem(
                        e,
                        "role",
                        target,
                        String::new(),
                        format!("could not look the role up: {err}"),
                        "let the checking identity call iam:GetRole",
                    );
                }
                Ok(None) => {
                    return CheckRow::problem(
                        e,
                        "role",
                        target,
                        String::new(),
                        format!("the role {role_arn} does not exist"),
                        "create the role, or correct `role_arn` in the catalog",
                    );
                }
                Ok(Some(info)) => info,
            };
            if info.arn != role_arn.as_str() {
                return CheckRow::problem(
                    e,
                    "role",
                    target,
                    info.arn.clone(),
                    format!(
                        "a role of that name exists as {}, not {role_arn} (the path differs)",
                        info.arn
                    ),
                    "correct `role_arn` in the catalog to the role's exact ARN",
                );
            }
            let guardrails = role_guardrails(role_arn, &info);
            let row = 'row: {
                let session = format!(
                    "MaxSessionDuration {}s (each credential set lasts at most {}s: role chaining)",
                    info.max_session_secs,
                    CHAINED_SESSION_CAP_SECS.min(info.max_session_secs)
                );
                let Some(b) = broker else {
                    break 'row CheckRow::ok(
                        e,
                        "role",
                        target,
                        format!("{session}; trust policy not checked (broker identity unknown)"),
                    );
                };
                let t = read_trust_policy(&info.trust_policy, b);
                let fix_trust = format!(
                    "add to the role's trust policy: Allow {{\"AWS\": \"{}\"}} sts:AssumeRole, sts:SetSourceIdentity, sts:TagSession",
                    b.arn()
                );
                if let Some(why) = t.unreadable {
                    break 'row CheckRow::problem(
                        e,
                        "role",
                        target,
                        session,
                        format!("the trust policy is not readable JSON: {why}"),
                        fix_trust,
                    );
                }
                if t.denied {
                    break 'row CheckRow::problem(
                        e,
                        "role",
                        target,
                        session,
                        format!("the trust policy denies {} sts:AssumeRole", b.arn()),
                        "remove the Deny statement that matches the broker",
                    );
                }
                if !t.assume {
                    break 'row CheckRow::problem(
                        e,
                        "role",
                        target,
                        session,
                        format!("the trust policy does not let {} assume the role", b.arn()),
                        fix_trust,
                    );
                }
                let missing: Vec<&str> = [
                    (!t.set_source_identity).then_some("sts:SetSourceIdentity"),
                    (!t.tag_session).then_some("sts:TagSession"),
                ]
                .into_iter()
                .flatten()
                .collect();
                if !missing.is_empty() {
                    break 'row CheckRow::problem(
                        e,
                        "role",
                        target,
                        session,
                        format!(
                            "the trust policy allows sts:AssumeRole but not {} (every grant sets SourceIdentity and a session tag)",
                            missing.join(" or ")
                        ),
                        fix_trust,
                    );
                }
                let trust = if t.conditional {
                    format!("trust allows {} (with conditions, not evaluated)", b.arn())
                } else {
                    format!("trust allows {}", b.arn())
                };
                CheckRow::ok(e, "role", target, format!("{session}; {trust}"))
            };
            row.warn(guardrails)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker() -> BrokerPrincipal {
        BrokerPrincipal::parse(
            "arn:aws:sts::123456789012:assumed-role/jit-assume-role/1700000000000",
        )
        .unwrap()
    }

    #[test]
    fn broker_principals_from_caller_identities() {
        let b = broker();
        assert_eq!(b.arn(), "arn:aws:iam::123456789012:role/jit-assume-role");
        let u = BrokerPrincipal::parse("arn:aws:iam::123456789012:user/ops/alice").unwrap();
        assert_eq!(u.arn(), "arn:aws:iam::123456789012:user/ops/alice");
        for bad in ["alice", "arn:aws:s3:::bucket", "arn:aws:iam::12:role/x"] {
            assert!(BrokerPrincipal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trust_policies_read_for_the_broker() {
        let b = broker();
        let doc = |principal: &str, actions: &str, extra: &str| {
            format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{principal},"Action":{actions}{extra}}}]}}"#
            )
        };
        let all = r#"["sts:AssumeRole","sts:SetSourceIdentity","sts:TagSession"]"#;
        // (principal, actions, extra, assume, source identity, conditional)
        let cases = [
            (
                r#"{"AWS":"arn:aws:iam::123456789012:role/jit-assume-role"}"#,
                all,
                "",
                true,
                true,
                false,
            ),
            (
                r#"{"AWS":"arn:aws:iam::123456789012:role/svc/jit-assume-role"}"#,
                all,
                "",
                true,
                true,
                false,
            ),
            (
                r#"{"AWS":"arn:aws:iam::123456789012:root"}"#,
                all,
                "",
                true,
                true,
                false,
            ),
            (
                r#"{"AWS":["111111111111","123456789012"]}"#,
                r#""sts:*""#,
                "",
                true,
                true,
                false,
            ),
            (
                r#""*""#,
                all,
                r#","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-1"}}"#,
                true,
                true,
                true,
            ),
            (
                r#"{"AWS":"arn:aws:iam::123456789012:role/other"}"#,
                all,
                "",
                false,
                false,
                false,
            ),
            (
                r#"{"AWS":"arn:aws:iam::210987654321:root"}"#,
                all,
                "",
                false,
                false,
                false,
            ),
            (
                r#"{"Service":"lambda.amazonaws.com"}"#,
                all,
                "",
                false,
                false,
                false,
            ),
            (
                r#"{"AWS":"123456789012"}"#,
                r#""sts:AssumeRole""#,
                "",
                true,
                false,
                false,
            ),
        ];
        for (principal, actions, extra, assume, source, conditional) in cases {
            let t = read_trust_policy(&doc(principal, actions, extra), &b);
            assert_eq!(
                (t.assume, t.set_source_identity, t.conditional),
                (assume, source, conditional),
                "{principal} {actions} {extra}"
            );
        }
        let deny = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sts:*"},{"Effect":"Deny","Principal":"*","Action":"sts:AssumeRole"}]}"#;
        assert!(read_trust_policy(deny, &b).denied);
        assert!(read_trust_policy("{not json", &b).unreadable.is_some());
    }

    /// An account held in memory: roles by ARN, users and roles by name.
    struct Account {
        roles: Vec<crate::grant_ports::RoleInfo>,
        identities: Vec<(IamPrincipal, crate::grant_ports::IdentityInfo)>,
    }

    #[async_trait::async_trait]
    impl AccountInspector for Account {
        async fn policy(
            &self,
            account: &AccountId,
            name: &crate::ids::PolicyName,
        ) -> Result<Option<crate::grant_ports::PolicyInfo>, crate::ports::GrantError> {
            Ok(Some(crate::grant_ports::PolicyInfo {
                arn: format!("arn:aws:iam::{account}:policy/{name}"),
                attachable: true,
            }))
        }
        async fn role(
            &self,
            role: &crate::ids::RoleArn,
        ) -> Result<Option<crate::grant_ports::RoleInfo>, crate::ports::GrantError> {
            Ok(self.roles.iter().find(|r| r.arn == role.as_str()).cloned())
        }
        async fn identity(
            &self,
            principal: &IamPrincipal,
        ) -> Result<Option<crate::grant_ports::IdentityInfo>, crate::ports::GrantError> {
            Ok(self
                .identities
                .iter()
                .find(|(p, _)| p == principal)
                .map(|(_, i)| i.clone()))
        }
    }

    fn tag() -> Vec<(String, String)> {
        vec![(GRANTABLE_TAG_KEY.into(), GRANTABLE_TAG_VALUE.into())]
    }

    #[tokio::test]
    async fn missing_guardrails_are_warnings_not_problems() {
        let trusting = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sts:*"}]}"#;
        let role = |name: &str, boundary: bool, tags: Vec<(String, String)>, trust: &str| {
            crate::grant_ports::RoleInfo {
                arn: format!("arn:aws:iam::123456789012:role/{name}"),
                max_session_secs: 3600,
                trust_policy: trust.into(),
                permissions_boundary: boundary
                    .then(|| "arn:aws:iam::123456789012:policy/JitBoundary".into()),
                tags,
            }
        };
        let identity = |arn: &str, tags| crate::grant_ports::IdentityInfo {
            arn: arn.into(),
            tags,
        };
        let account = Account {
            roles: vec![
                role("Guarded", true, tag(), trusting),
                role("NoBoundary", false, tag(), trusting),
                role(
                    "WrongTag",
                    true,
                    vec![(GRANTABLE_TAG_KEY.into(), "True".into())],
                    trusting,
                ),
                role("Bare", false, vec![], trusting),
                role("Refusing", false, vec![], r#"{"Statement":[]}"#),
            ],
            identities: vec![
                (
                    IamPrincipal::User("tagged@example.com".into()),
                    identity("arn:aws:iam::123456789012:user/tagged@example.com", tag()),
                ),
                (
                    IamPrincipal::User("plain@example.com".into()),
                    identity("arn:aws:iam::123456789012:user/plain@example.com", vec![]),
                ),
                (
                    IamPrincipal::Role("ops".into()),
                    identity("arn:aws:iam::123456789012:role/ops", tag()),
                ),
            ],
        };
        let catalog = Catalog::parse(
            r#"
defaults: {approvers: {emails: [lead@example.com]}}
groups:
  eng: [tagged@example.com, plain@example.com, ghost@example.com, "arn:aws:iam::123456789012:role/ops", tagged@example.com]
entitlements:
  - {name: Guarded, role_arn: "arn:aws:iam::123456789012:role/Guarded"}
  - {name: NoBoundary, role_arn: "arn:aws:iam::123456789012:role/NoBoundary"}
  - {name: WrongTag, role_arn: "arn:aws:iam::123456789012:role/WrongTag"}
  - {name: Bare, role_arn: "arn:aws:iam::123456789012:role/Bare"}
  - {name: Refusing, role_arn: "arn:aws:iam::123456789012:role/Refusing"}
  - {name: AttachEng, policy_name: JitRead, account: "123456789012", eligible_groups: [eng]}
  - {name: AttachAnyone, policy_name: JitRead, account: "123456789012"}
"#,
            "catalog.yaml",
        )
        .unwrap();
        let rows = catalog_check(&catalog, &account, Some(&broker())).await;
        let warnings = |r: &CheckRow| -> Vec<String> {
            r.warnings
                .iter()
                .map(|w| format!("{} | {}", w.warning, w.fix))
                .collect()
        };
        // (entitlement, status, what each warning must contain)
        let expected: [(&str, CheckStatus, &[&str]); 7] = [
            ("Guarded", CheckStatus::Ok, &[]),
            (
                "NoBoundary",
                CheckStatus::Warning,
                &[
                    "could put an Allow there and widen the role | aws iam put-role-permissions-boundary --role-name NoBoundary",
                ],
            ),
            (
                "WrongTag",
                CheckStatus::Warning,
                &[
                    "no tag jit-grantable=true: the deployed template lets the broker change the policies only of roles carrying it, so an early revoke's deny cannot be put on it | aws iam tag-role --role-name WrongTag --tags Key=jit-grantable,Value=true",
                ],
            ),
            (
                "Bare",
                CheckStatus::Warning,
                &["no permissions boundary", "no tag jit-grantable=true"],
            ),
            (
                "Refusing",
                CheckStatus::Problem,
                &["no permissions boundary", "no tag jit-grantable=true"],
            ),
            (
                "AttachEng",
                CheckStatus::Warning,
                &[
                    "plain@example.com's IAM user arn:aws:iam::123456789012:user/plain@example.com has no tag jit-grantable=true: the deployed template lets the broker change the policies only of users carrying it, so the policy cannot be attached to it | aws iam tag-user --user-name plain@example.com --tags Key=jit-grantable,Value=true",
                    "ghost@example.com is eligible, but there is no IAM user `ghost@example.com` in account 123456789012",
                ],
            ),
            ("AttachAnyone", CheckStatus::Ok, &[]),
        ];
        assert_eq!(rows.len(), expected.len());
        for (row, (name, status, words)) in rows.iter().zip(expected) {
            assert_eq!(
                (row.entitlement.as_str(), row.status),
                (name, status),
                "{row:?}"
            );
            let got = warnings(row);
            assert_eq!(got.len(), words.len(), "{name}: {got:?}");
            for (w, word) in got.iter().zip(words) {
                assert!(w.contains(word), "{name}: {w}");
            }
        }
        assert!(
            rows[5].detail.contains("4 eligible IAM identities checked"),
            "{}",
            rows[5].detail
        );
        assert!(
            rows[6].detail.contains("not checked (anyone may request)"),
            "{}",
            rows[6].detail
        );
        // Warnings alone are not problems; a problem is
        assert!(!has_problems(&rows[..4]));
        assert!(has_problems(&rows));
        // JSON and the table show them
        let json = serde_json::to_value(&rows[1]).unwrap();
        assert_eq!(json["status"], "WARNING");
        assert!(
            json["warnings"][0]["fix"]
                .as_str()
                .unwrap()
                .contains("put-role-permissions-boundary")
        );
        assert!(
            serde_json::to_value(&rows[0])
                .unwrap()
                .get("warnings")
                .is_none()
        );
        let table = render_table(&rows);
        assert!(
            table.contains(
                "    warning: arn:aws:iam::123456789012:role/NoBoundary has no permissions boundary"
            ),
            "{table}"
        );
        assert!(
            table.ends_with("7 entitlements checked, 1 with problems, 4 with warnings only\n"),
            "{table}"
        );
    }

    #[test]
    fn wildcards_match_like_iam() {
        assert!(glob("sts:*", "sts:AssumeRole"));
        assert!(glob("STS:assume*", "sts:AssumeRole"));
        assert!(glob("*", "sts:TagSession"));
        assert!(glob("sts:?agSession", "sts:TagSession"));
        assert!(!glob("sts:AssumeRoleWith*", "sts:AssumeRole"));
        assert!(!glob("iam:*", "sts:AssumeRole"));
    }
}
