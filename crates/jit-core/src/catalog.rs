//! The entitlement catalog: the only place roles and policies are named.
//!
//! A request names an entitlement; the catalog decides which role or policy,
//! which account, how long, who may ask and who approves. Parsing is pure
//! (text in, catalog or error out); reading the file is the caller's job.
//!
//! Two forms are accepted in one file: the Kubiya seed's `policies:` list
//! verbatim, and the richer `entitlements:` list.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::duration::{DurationInput, GrantDuration};
use crate::ids::{AccountId, PolicyName, Principal, RoleArn};
use crate::request::GrantTarget;

/// The default approval window when an entry names none: one hour.
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u32 = 3600;
/// The longest approval window accepted. A week keeps forgotten requests
/// from lingering (Step Functions would allow a year).
pub const MAX_APPROVAL_TIMEOUT_SECS: u32 = 7 * 86_400;
/// The default maximum grant when an entry names none: one hour.
pub const DEFAULT_MAX_DURATION_SECS: u32 = 3600;
/// Approvers are reminded after this long without a decision: 15 minutes.
pub const DEFAULT_REMIND_EVERY_SECS: u32 = 900;
/// At most this many reminders per request by default.
pub const DEFAULT_MAX_REMINDERS: u32 = 3;

/// Who may decide a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvers {
    pub groups: Vec<String>,
    pub emails: Vec<Principal>,
    pub slack_users: Vec<String>,
    pub slack_channel: Option<String>,
    pub required_approvals: u32,
    /// A quorum may also need one approval from each of these groups.
    pub required_groups: Vec<String>,
    /// Remind after this many seconds without a decision.
    pub remind_every_secs: u32,
    /// Remind at most this many times (0: never).
    pub max_reminders: u32,
}

impl Approvers {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.emails.is_empty() && self.slack_users.is_empty()
    }
}

/// Requests from these groups, for at most `max_duration`, are approved
/// without a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoApprove {
    pub groups: Vec<String>,
    pub max_duration: GrantDuration,
}

/// Which list an entry came from, so messages can quote the right field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryForm {
    KubiyaSeed,
    Rich,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    pub name: String,
    pub description: Option<String>,
    pub account: AccountId,
    pub target: GrantTarget,
    pub min_duration: GrantDuration,
    pub max_duration: GrantDuration,
    pub default_duration: GrantDuration,
    /// Empty means any authenticated requester.
    pub eligible_groups: Vec<String>,
    pub approvers: Approvers,
    pub auto_approve: Option<AutoApprove>,
    pub approval_timeout_secs: u32,
    pub form: EntryForm,
    /// The entry said `approvers: none` (or inherits `defaults.approvers:
    /// none`): nobody decides its requests, so a request no rule approves is
    /// refused at creation (`400 no_approvers`) instead of waiting for no one.
    pub approvers_none: bool,
    /// Least privilege: `ceiling:`, `session_policy:`, `policy_generation:`.
    pub policy: crate::policy::EntitlementPolicy,
    /// `break_glass: true`: requested only as break-glass (`"breakGlass":
    /// true`), self-approved with an incident reference, announced loudly
    /// and reviewed afterwards (see `break_glass`).
    pub break_glass: bool,
}

impl Entitlement {
    /// Whether a person can decide this entry's requests at all.
    pub fn has_approvers(&self) -> bool {
        !self.approvers_none && !self.approvers.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entitlements: Vec<Entitlement>,
    by_name: HashMap<String, usize>,
    /// Group memberships the catalog declares, for identities whose
    /// authenticator carries no groups (IAM principals, chat users).
    members: BTreeMap<String, Vec<Principal>>,
    /// Slack user ids and the principals they act as.
    slack_users: BTreeMap<String, Principal>,
    /// Groups whose members may revoke any grant.
    admin_groups: Vec<String>,
    working_hours: crate::analytics::WorkingHours,
    /// The catalog's Identity Center instance (permission-set entitlements,
    /// `idc:` groups).
    identity_center: Option<crate::identity_center::IdentityCenter>,
    /// Where `idc:` groups are read, once a front door configured it.
    group_directory: Option<crate::identity_center::DirectoryHandle>,
    /// Where every break-glass use is also announced (Slack channel).
    security_channel: Option<String>,
    /// What a break-glass justification's incident reference looks like.
    incident_pattern: crate::break_glass::IncidentPattern,
}

/// A catalog that failed to load: where, which entry, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CatalogError {
    pub file: String,
    pub line: Option<usize>,
    /// `policies entry 3 (`Read Only Access`)`, when the error is in an entry.
    pub entry: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(entry) = &self.entry {
            write!(f, "{entry}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "`{field}` ")?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    policies: Vec<Value>,
    #[serde(default)]
    entitlements: Vec<Value>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    /// Slack user id -> the principal (email) that user acts as.
    #[serde(default)]
    slack_users: BTreeMap<String, String>,
    /// Groups whose members may revoke any grant (`POST …/revoke`).
    #[serde(default)]
    admin_groups: Vec<String>,
    #[serde(default)]
    defaults: Option<Value>,
    /// When people work: analytics counts grants outside these hours.
    #[serde(default)]
    working_hours: Option<crate::analytics::RawWorkingHours>,
    /// Slack channel told of every break-glass use, besides the approvers'.
    security_channel: Option<String>,
    /// Regular expression a break-glass justification's incident reference
    /// must match (default `break_glass::DEFAULT_INCIDENT_PATTERN`).
    incident_pattern: Option<String>,
    /// IAM Identity Center: the instance permission-set entitlements use.
    #[serde(default)]
    identity_center: Option<RawIdentityCenter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentityCenter {
    instance_arn: Option<String>,
    identity_store_id: Option<String>,
    region: Option<String>,
    portal_url: Option<String>,
    group_cache: Option<DurationInput>,
    local_directory: Option<RawLocalDirectory>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLocalDirectory {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    permission_sets: Vec<String>,
    #[serde(default)]
    failing_accounts: Vec<Value>,
}

/// The Kubiya seed's entry, exactly its three fields.
#[derive(Deserialize)]
struct RawSeedEntry {
    policy_name: Option<Value>,
    aws_account_id: Option<Value>,
    request_name: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApprovers {
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    emails: Vec<String>,
    #[serde(default)]
    slack_users: Vec<String>,
    slack_channel: Option<String>,
    required_approvals: Option<u32>,
    #[serde(default)]
    required_groups: Vec<String>,
    remind_every: Option<DurationInput>,
    max_reminders: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAutoApprove {
    #[serde(default)]
    groups: Vec<String>,
    max_duration: Option<DurationInput>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    max_duration: Option<DurationInput>,
    approval_timeout: Option<DurationInput>,
    /// A map of rules, or the word `none`.
    approvers: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntitlement {
    name: Option<String>,
    description: Option<String>,
    #[serde(alias = "aws_account_id")]
    account: Option<Value>,
    role_arn: Option<String>,
    policy_name: Option<String>,
    /// IAM Identity Center permission set (name or ARN), with `accounts`.
    permission_set: Option<String>,
    accounts: Option<Vec<Value>>,
    min_duration: Option<DurationInput>,
    max_duration: Option<DurationInput>,
    default_duration: Option<DurationInput>,
    #[serde(default)]
    eligible_groups: Vec<String>,
    /// A map of rules, or the word `none`.
    approvers: Option<Value>,
    auto_approve: Option<RawAutoApprove>,
    approval_timeout: Option<DurationInput>,
    #[serde(default)]
    break_glass: bool,
    /// What a generated session policy may allow (actions or patterns).
    #[serde(default)]
    ceiling: Vec<String>,
    /// A fixed session policy: a YAML mapping or JSON text.
    session_policy: Option<Value>,
    policy_generation: Option<String>,
}

/// The least-privilege fields of an entry, checked as far as they can be
/// without the action table (`jit-policy` validates the rest when a policy
/// is made).
fn entitlement_policy(
    ctx: &Ctx,
    raw: &RawEntitlement,
) -> Result<crate::policy::EntitlementPolicy, CatalogError> {
    use crate::policy::{GenerationMode, is_action_pattern};
    let mode = match raw.policy_generation.as_deref() {
        None => None,
        Some("required") => Some(GenerationMode::Required),
        Some("optional") => Some(GenerationMode::Optional),
        Some("off") => Some(GenerationMode::Off),
        Some(other) => {
            return Err(ctx.err(
                Some("policy_generation"),
                format!("is `{other}`; use one of required, optional, off"),
            ));
        }
    };
    for c in &raw.ceiling {
        if c != "*" && !is_action_pattern(c) {
            return Err(ctx.err(
                Some("ceiling"),
                format!("`{c}` is not an IAM action or pattern (like `s3:Get*` or `logs:*`)"),
            ));
        }
    }
    let session_policy = match &raw.session_policy {
        None => None,
        Some(Value::String(text)) => {
            let v: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| ctx.err(Some("session_policy"), format!("is not JSON: {e}")))?;
            Some(serde_json::to_string(&v).expect("JSON serializes"))
        }
        Some(v @ Value::Mapping(_)) => {
            let v: serde_json::Value = serde_yaml_ng::from_value(v.clone()).map_err(|e| {
                ctx.err(
                    Some("session_policy"),
                    format!("is not a policy document: {e}"),
                )
            })?;
            Some(serde_json::to_string(&v).expect("JSON serializes"))
        }
        Some(_) => {
            return Err(ctx.err(
                Some("session_policy"),
                "must be a policy document (a mapping, or JSON text)",
            ));
        }
    };
    if let Some(p) = &session_policy {
        crate::session_policy::bounded(Some(p), chrono::DateTime::UNIX_EPOCH)
            .map_err(|e| ctx.err(Some("session_policy"), e.to_string()))?;
    }
    if raw.policy_name.is_some() && session_policy.is_some() {
        return Err(ctx.err(
            Some("session_policy"),
            "applies to role entitlements only: an attach-policy entitlement's fixed grant is its managed policy",
        ));
    }
    // A scoped attach grant is its generated policy put inline on the
    // requester, capped by nothing but the ceiling: it must be written.
    if raw.policy_name.is_some() && mode == Some(GenerationMode::Required) && raw.ceiling.is_empty()
    {
        return Err(ctx.err(
            Some("policy_generation"),
            "is `required` on an attach-policy entitlement without `ceiling:`: its scoped grant is an inline policy that only the ceiling bounds; list the actions (or `service:*` patterns) it may grant",
        ));
    }
    let generation = match (mode, &session_policy) {
        (None, Some(_)) => GenerationMode::Off,
        (Some(m), Some(_)) if m != GenerationMode::Off => {
            return Err(ctx.err(
                Some("policy_generation"),
                format!(
                    "is `{}` but `session_policy` fixes the policy; set `policy_generation: off` or remove `session_policy`",
                    m.as_str()
                ),
            ));
        }
        (m, _) => m.unwrap_or_default(),
    };
    Ok(crate::policy::EntitlementPolicy {
        ceiling: raw.ceiling.clone(),
        session_policy,
        generation,
    })
}

struct Ctx<'a> {
    file: &'a str,
    entry: Option<String>,
}

impl Ctx<'_> {
    fn err(&self, field: Option<&str>, message: impl Into<String>) -> CatalogError {
        CatalogError {
            file: self.file.to_string(),
            line: None,
            entry: self.entry.clone(),
            field: field.map(str::to_string),
            message: message.into(),
        }
    }
}

/// YAML scalars as text: the seed quotes account ids, but an unquoted one
/// arrives as a number and must not lose a leading zero silently.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn duration_field(
    ctx: &Ctx,
    field: &str,
    v: &Option<DurationInput>,
) -> Result<Option<GrantDuration>, CatalogError> {
    match v {
        None => Ok(None),
        Some(d) => {
            let secs = d.to_secs().map_err(|e| ctx.err(Some(field), e.0))?;
            GrantDuration::from_secs(secs)
                .map(Some)
                .map_err(|e| ctx.err(Some(field), e.0))
        }
    }
}

fn timeout_field(ctx: &Ctx, field: &str, v: &DurationInput) -> Result<u32, CatalogError> {
    let secs = v.to_secs().map_err(|e| ctx.err(Some(field), e.0))?;
    if !(60..=MAX_APPROVAL_TIMEOUT_SECS as u64).contains(&secs) {
        return Err(ctx.err(
            Some(field),
            format!("must be between 60s and {MAX_APPROVAL_TIMEOUT_SECS}s (7 days)"),
        ));
    }
    Ok(secs as u32)
}

fn names(ctx: &Ctx, field: &str, list: &[String]) -> Result<Vec<String>, CatalogError> {
    for g in list {
        if g.trim().is_empty() || g.trim() != g {
            return Err(ctx.err(Some(field), "must not hold empty or space-padded names"));
        }
    }
    Ok(list.to_vec())
}

fn approvers(ctx: &Ctx, raw: &RawApprovers, prefix: &str) -> Result<Approvers, CatalogError> {
    let field = |f: &str| format!("{prefix}.{f}");
    let emails = raw
        .emails
        .iter()
        .map(|e| {
            if !e.contains('@') {
                return Err(ctx.err(
                    Some(&field("emails")),
                    format!("`{e}` is not an email address"),
                ));
            }
            Principal::parse(e.clone()).map_err(|err| ctx.err(Some(&field("emails")), err.0))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let required = raw.required_approvals.unwrap_or(1);
    if required == 0 {
        return Err(ctx.err(Some(&field("required_approvals")), "must be at least 1"));
    }
    let groups = names(ctx, &field("groups"), &raw.groups)?;
    let required_groups = names(ctx, &field("required_groups"), &raw.required_groups)?;
    if let Some(g) = required_groups.iter().find(|g| !groups.contains(g)) {
        return Err(ctx.err(
            Some(&field("required_groups")),
            format!("names `{g}`, which is not in `{prefix}.groups`; list it there too"),
        ));
    }
    if (required as usize) < required_groups.len() {
        return Err(ctx.err(
            Some(&field("required_approvals")),
            format!(
                "({required}) is fewer than the {} `required_groups`; one approval from each needs at least that many",
                required_groups.len()
            ),
        ));
    }
    let remind_every_secs = match &raw.remind_every {
        None => DEFAULT_REMIND_EVERY_SECS,
        Some(d) => {
            let secs = d
                .to_secs()
                .map_err(|e| ctx.err(Some(&field("remind_every")), e.0))?;
            if !(60..=86_400).contains(&secs) {
                return Err(ctx.err(Some(&field("remind_every")), "must be between 1m and 24h"));
            }
            secs as u32
        }
    };
    let max_reminders = raw.max_reminders.unwrap_or(DEFAULT_MAX_REMINDERS);
    if max_reminders > 20 {
        return Err(ctx.err(Some(&field("max_reminders")), "must be at most 20"));
    }
    if let Some(c) = &raw.slack_channel
        && (c.trim().is_empty() || c.trim() != c)
    {
        return Err(ctx.err(
            Some(&field("slack_channel")),
            "must be a channel name (`#jit-approvals`) or id",
        ));
    }
    Ok(Approvers {
        groups,
        emails,
        slack_users: names(ctx, &field("slack_users"), &raw.slack_users)?,
        slack_channel: raw.slack_channel.clone(),
        required_approvals: required,
        required_groups,
        remind_every_secs,
        max_reminders,
    })
}

fn identity_center(
    ctx: &Ctx,
    raw: &RawIdentityCenter,
) -> Result<crate::identity_center::IdentityCenter, CatalogError> {
    let need = |v: &Option<String>, field: &str, what: &str| {
        v.clone().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            ctx.err(
                Some(&format!("identity_center.{field}")),
                format!("is missing: {what}"),
            )
        })
    };
    let instance_arn = need(
        &raw.instance_arn,
        "instance_arn",
        "the instance's ARN (`arn:aws:sso:::instance/ssoins-…`, `aws sso-admin list-instances`)",
    )?;
    if !(instance_arn.starts_with("arn:") && instance_arn.contains(":instance/")) {
        return Err(ctx.err(
            Some("identity_center.instance_arn"),
            "must look like arn:aws:sso:::instance/ssoins-…",
        ));
    }
    let identity_store_id = need(
        &raw.identity_store_id,
        "identity_store_id",
        "the Identity Store id (`d-…`, `aws sso-admin list-instances`)",
    )?;
    if !identity_store_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(ctx.err(
            Some("identity_center.identity_store_id"),
            "must be an Identity Store id like d-1234567890",
        ));
    }
    let region = need(&raw.region, "region", "the instance's home region")?;
    if !region
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(ctx.err(
            Some("identity_center.region"),
            "must be a region like eu-west-1",
        ));
    }
    let portal_url = match &raw.portal_url {
        Some(u) if u.starts_with("https://") => u.clone(),
        Some(_) => {
            return Err(ctx.err(
                Some("identity_center.portal_url"),
                "must be the access portal's https:// start URL",
            ));
        }
        None => format!("https://{identity_store_id}.awsapps.com/start"),
    };
    let group_cache_secs = match &raw.group_cache {
        None => crate::identity_center::DEFAULT_GROUP_CACHE_SECS,
        Some(d) => {
            let secs = d
                .to_secs()
                .map_err(|e| ctx.err(Some("identity_center.group_cache"), e.0))?;
            if !(1..=3600).contains(&secs) {
                return Err(ctx.err(
                    Some("identity_center.group_cache"),
                    "must be between 1s and 1h",
                ));
            }
            secs as u32
        }
    };
    let local_directory = match &raw.local_directory {
        None => None,
        Some(l) => {
            let field = "identity_center.local_directory";
            let parse = |p: &String, f: &str| {
                Principal::parse(p.clone()).map_err(|e| ctx.err(Some(&format!("{field}.{f}")), e.0))
            };
            let mut groups = BTreeMap::new();
            for (g, members) in &l.groups {
                let ms = members
                    .iter()
                    .map(|m| parse(m, &format!("groups.{g}")))
                    .collect::<Result<Vec<_>, _>>()?;
                groups.insert(g.clone(), ms);
            }
            Some(crate::identity_center::LocalDirectory {
                users: l
                    .users
                    .iter()
                    .map(|u| parse(u, "users"))
                    .collect::<Result<Vec<_>, _>>()?,
                groups,
                permission_sets: names(
                    ctx,
                    &format!("{field}.permission_sets"),
                    &l.permission_sets,
                )?,
                failing_accounts: l
                    .failing_accounts
                    .iter()
                    .map(|v| {
                        scalar_text(v)
                            .ok_or_else(|| "must be a text value".to_string())
                            .and_then(|t| AccountId::parse(t).map_err(|e| e.0))
                            .map_err(|m| ctx.err(Some(&format!("{field}.failing_accounts")), m))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            })
        }
    };
    Ok(crate::identity_center::IdentityCenter {
        instance_arn,
        identity_store_id,
        region,
        portal_url,
        group_cache_secs,
        local_directory,
    })
}

/// A `permission_set` entry's target: the permission set and its accounts
/// (`account` alone is accepted as one account). The entitlement's
/// `account` is the first of them.
fn permission_set_target(
    ctx: &Ctx,
    raw: &RawEntitlement,
    account: Option<&AccountId>,
) -> Result<(GrantTarget, AccountId), CatalogError> {
    let ps = raw.permission_set.clone().unwrap_or_default();
    let valid_name = !ps.is_empty()
        && ps.len() <= 32
        && ps
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c));
    if !(valid_name || crate::identity_center::is_permission_set_arn(&ps)) {
        return Err(ctx.err(
            Some("permission_set"),
            "must be a permission set name (1-32 of [A-Za-z0-9+=,.@_-]) or its ARN (arn:aws:sso:::permissionSet/ssoins-…/ps-…)",
        ));
    }
    let mut accounts: Vec<AccountId> = Vec::new();
    match (&raw.accounts, account) {
        (Some(_), Some(_)) => {
            return Err(ctx.err(
                Some("account"),
                "and `accounts` are both set; list every account in `accounts`",
            ));
        }
        (None, Some(a)) => accounts.push(a.clone()),
        (None, None) => {
            return Err(ctx.err(
                Some("accounts"),
                "is missing: a permission set entitlement lists the 12-digit accounts it is assigned in",
            ));
        }
        (Some(list), None) => {
            for v in list {
                let t = scalar_text(v)
                    .ok_or_else(|| ctx.err(Some("accounts"), "must list text values"))?;
                let a = AccountId::parse(t).map_err(|e| ctx.err(Some("accounts"), e.0))?;
                if accounts.contains(&a) {
                    return Err(ctx.err(Some("accounts"), format!("lists {a} twice")));
                }
                accounts.push(a);
            }
        }
    }
    let first = accounts
        .first()
        .cloned()
        .ok_or_else(|| ctx.err(Some("accounts"), "is empty: list at least one account"))?;
    Ok((
        GrantTarget::PermissionSet {
            permission_set: ps,
            accounts,
        },
        first,
    ))
}

struct Defaults {
    max_duration: GrantDuration,
    approval_timeout_secs: u32,
    approvers: Approvers,
    /// `defaults.approvers: none`.
    approvers_none: bool,
}

/// `approvers:` as written: the word `none`, or a map of rules.
enum ApproversField {
    None,
    Rules(RawApprovers),
}

fn approvers_field(ctx: &Ctx, field: &str, v: &Value) -> Result<ApproversField, CatalogError> {
    if let Value::String(s) = v {
        return if s == "none" {
            Ok(ApproversField::None)
        } else {
            Err(ctx.err(
                Some(field),
                format!(
                    "must be a map of rules (`emails`, `groups`, …) or the word `none`, not `{s}`"
                ),
            ))
        };
    }
    serde_yaml_ng::from_value(v.clone())
        .map(ApproversField::Rules)
        .map_err(|e| ctx.err(Some(field), e.to_string()))
}

/// The load-time trap: an entry nobody can approve and no rule approves
/// would leave every request waiting silently until its window closes.
/// Refused, naming the entry and both fixes, unless the catalog says so
/// explicitly with `approvers: none`.
fn check_approvable(ctx: &Ctx, e: &Entitlement) -> Result<(), CatalogError> {
    if e.approvers_none || !e.approvers.is_empty() || e.auto_approve.is_some() {
        return Ok(());
    }
    let (field, how, none) = match e.form {
        EntryForm::KubiyaSeed => (
            "defaults.approvers",
            "a `policies:` entry takes its approvers from `defaults.approvers`: add `defaults: {approvers: {emails: [lead@example.com]}}` (or `groups`, `slack_users`)",
            "`defaults: {approvers: none}`",
        ),
        EntryForm::Rich => (
            "approvers",
            "add `approvers: {emails: [lead@example.com]}` (or `groups`, `slack_users`) to the entry or to `defaults`, or an `auto_approve` rule",
            "`approvers: none`",
        ),
    };
    let channel_only = if e.approvers.slack_channel.is_some() {
        " (a `slack_channel` alone names where approvers are told, not who they are)"
    } else {
        ""
    };
    Err(ctx.err(
        Some(field),
        format!(
            "names nobody who may approve{channel_only}, so its requests would wait for no one until they time out: {how}; or write {none} to say that nobody approves it (its requests are then refused unless a rule approves them)"
        ),
    ))
}

impl Catalog {
    /// Parses and validates a whole catalog. `file` names the source in errors.
    pub fn parse(text: &str, file: &str) -> Result<Catalog, CatalogError> {
        let top = Ctx { file, entry: None };
        let raw: RawCatalog = serde_yaml_ng::from_str(text).map_err(|e| CatalogError {
            file: file.to_string(),
            line: e.location().map(|l| l.line()),
            entry: None,
            field: None,
            message: e.to_string(),
        })?;
        if raw.policies.is_empty() && raw.entitlements.is_empty() {
            return Err(top.err(
                None,
                "defines no entitlements: add an `entitlements:` or `policies:` list",
            ));
        }
        let defaults = Self::defaults(&top, raw.defaults.as_ref())?;
        let mut members = BTreeMap::new();
        for (group, list) in &raw.groups {
            let field = format!("groups.{group}");
            let ps = list
                .iter()
                .map(|p| Principal::parse(p.clone()).map_err(|e| top.err(Some(&field), e.0)))
                .collect::<Result<Vec<_>, _>>()?;
            members.insert(group.clone(), ps);
        }
        let mut slack_users = BTreeMap::new();
        for (user, principal) in &raw.slack_users {
            let field = format!("slack_users.{user}");
            if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(top.err(
                    Some(&field),
                    "must be keyed by a Slack user id (like U024BE7LH)",
                ));
            }
            let p = Principal::parse(principal.clone()).map_err(|e| top.err(Some(&field), e.0))?;
            slack_users.insert(user.clone(), p);
        }
        let mut catalog = Catalog {
            entitlements: Vec::with_capacity(raw.policies.len() + raw.entitlements.len()),
            by_name: HashMap::new(),
            members,
            slack_users,
            admin_groups: names(&top, "admin_groups", &raw.admin_groups)?,
            working_hours: match &raw.working_hours {
                None => Default::default(),
                Some(w) => crate::analytics::WorkingHours::parse(w)
                    .map_err(|(f, m)| top.err(Some(&format!("working_hours.{f}")), m))?,
            },
            identity_center: match &raw.identity_center {
                None => None,
                Some(i) => Some(identity_center(&top, i)?),
            },
            group_directory: None,
            security_channel: match &raw.security_channel {
                Some(c) if c.trim().is_empty() || c.trim() != c => {
                    return Err(top.err(
                        Some("security_channel"),
                        "must be a channel name (`#security`) or id",
                    ));
                }
                c => c.clone(),
            },
            incident_pattern: match &raw.incident_pattern {
                None => Default::default(),
                Some(p) => crate::break_glass::IncidentPattern::parse(p)
                    .map_err(|m| top.err(Some("incident_pattern"), m))?,
            },
        };
        for (i, v) in raw.policies.iter().enumerate() {
            let label = v
                .get("request_name")
                .and_then(scalar_text)
                .map(|n| format!("policies entry {} (`{n}`)", i + 1))
                .unwrap_or_else(|| format!("policies entry {}", i + 1));
            let ctx = Ctx {
                file,
                entry: Some(label),
            };
            let e = Self::seed_entry(&ctx, v, &defaults)?;
            catalog.push(&ctx, e)?;
            let pushed = catalog.entitlements.last().expect("just pushed");
            check_approvable(&ctx, pushed)?;
        }
        for (i, v) in raw.entitlements.iter().enumerate() {
            let label = v
                .get("name")
                .and_then(scalar_text)
                .map(|n| format!("entitlements entry {} (`{n}`)", i + 1))
                .unwrap_or_else(|| format!("entitlements entry {}", i + 1));
            let ctx = Ctx {
                file,
                entry: Some(label),
            };
            let e = Self::rich_entry(&ctx, v, &defaults)?;
            if matches!(e.target, GrantTarget::PermissionSet { .. })
                && catalog.identity_center.is_none()
            {
                return Err(ctx.err(
                    Some("permission_set"),
                    "needs the catalog's `identity_center:` block (instance_arn, identity_store_id, region)",
                ));
            }
            catalog.push(&ctx, e)?;
            let pushed = catalog.entitlements.last().expect("just pushed");
            check_approvable(&ctx, pushed)?;
        }
        if catalog.uses_idc_groups() && catalog.identity_center.is_none() {
            return Err(top.err(
                Some("identity_center"),
                "is missing: rules name `idc:` groups, which are read from the Identity Store",
            ));
        }
        Ok(catalog)
    }

    fn push(&mut self, ctx: &Ctx, e: Entitlement) -> Result<(), CatalogError> {
        if self.by_name.contains_key(&e.name) {
            let field = match e.form {
                EntryForm::KubiyaSeed => "request_name",
                EntryForm::Rich => "name",
            };
            return Err(ctx.err(
                Some(field),
                format!(
                    "`{}` is already used by another entry; names must be unique",
                    e.name
                ),
            ));
        }
        self.by_name.insert(e.name.clone(), self.entitlements.len());
        self.entitlements.push(e);
        Ok(())
    }

    fn defaults(ctx: &Ctx, v: Option<&Value>) -> Result<Defaults, CatalogError> {
        let raw: RawDefaults = match v {
            None => RawDefaults::default(),
            Some(v) => serde_yaml_ng::from_value(v.clone())
                .map_err(|e| ctx.err(Some("defaults"), e.to_string()))?,
        };
        let max_duration = duration_field(ctx, "defaults.max_duration", &raw.max_duration)?
            .unwrap_or(
                GrantDuration::from_secs(DEFAULT_MAX_DURATION_SECS as u64).expect("in range"),
            );
        let approval_timeout_secs = match &raw.approval_timeout {
            Some(t) => timeout_field(ctx, "defaults.approval_timeout", t)?,
            None => DEFAULT_APPROVAL_TIMEOUT_SECS,
        };
        let empty = Approvers {
            required_approvals: 1,
            remind_every_secs: DEFAULT_REMIND_EVERY_SECS,
            max_reminders: DEFAULT_MAX_REMINDERS,
            ..Approvers::default()
        };
        let (approvers, approvers_none) = match &raw.approvers {
            None => (empty, false),
            Some(v) => match approvers_field(ctx, "defaults.approvers", v)? {
                ApproversField::None => (empty, true),
                ApproversField::Rules(a) => (approvers(ctx, &a, "defaults.approvers")?, false),
            },
        };
        Ok(Defaults {
            max_duration,
            approval_timeout_secs,
            approvers,
            approvers_none,
        })
    }

    fn seed_entry(ctx: &Ctx, v: &Value, d: &Defaults) -> Result<Entitlement, CatalogError> {
        let raw: RawSeedEntry =
            serde_yaml_ng::from_value(v.clone()).map_err(|e| ctx.err(None, e.to_string()))?;
        let text = |field: &str, v: &Option<Value>| -> Result<String, CatalogError> {
            let v = v
                .as_ref()
                .ok_or_else(|| ctx.err(Some(field), "is missing"))?;
            scalar_text(v).ok_or_else(|| ctx.err(Some(field), "must be a text value"))
        };
        let name = text("request_name", &raw.request_name)?;
        if name.trim().is_empty() || name.len() > 128 {
            return Err(ctx.err(Some("request_name"), "must be 1-128 characters"));
        }
        let policy = PolicyName::parse(text("policy_name", &raw.policy_name)?)
            .map_err(|e| ctx.err(Some("policy_name"), e.0))?;
        let account = AccountId::parse(text("aws_account_id", &raw.aws_account_id)?)
            .map_err(|e| ctx.err(Some("aws_account_id"), e.0))?;
        Ok(Entitlement {
            name,
            description: None,
            account,
            target: GrantTarget::AttachPolicy {
                policy_name: policy,
            },
            min_duration: GrantDuration::MIN,
            max_duration: d.max_duration,
            default_duration: GrantDuration::DEFAULT.min(d.max_duration),
            eligible_groups: vec![],
            approvers: d.approvers.clone(),
            auto_approve: None,
            approval_timeout_secs: d.approval_timeout_secs,
            form: EntryForm::KubiyaSeed,
            approvers_none: d.approvers_none,
            policy: Default::default(),
            break_glass: false,
        })
    }

    fn rich_entry(ctx: &Ctx, v: &Value, d: &Defaults) -> Result<Entitlement, CatalogError> {
        let raw: RawEntitlement =
            serde_yaml_ng::from_value(v.clone()).map_err(|e| ctx.err(None, e.to_string()))?;
        let name = raw
            .name
            .clone()
            .ok_or_else(|| ctx.err(Some("name"), "is missing"))?;
        if name.trim().is_empty() || name.trim() != name || name.len() > 128 {
            return Err(ctx.err(
                Some("name"),
                "must be 1-128 characters without surrounding spaces",
            ));
        }
        let account = match &raw.account {
            None => None,
            Some(v) => {
                let t = scalar_text(v)
                    .ok_or_else(|| ctx.err(Some("account"), "must be a text value"))?;
                Some(AccountId::parse(t).map_err(|e| ctx.err(Some("account"), e.0))?)
            }
        };
        let modes = [
            raw.role_arn.is_some(),
            raw.policy_name.is_some(),
            raw.permission_set.is_some(),
        ];
        if raw.permission_set.is_some() && modes.iter().filter(|m| **m).count() > 1 {
            return Err(ctx.err(
                Some(if raw.role_arn.is_some() { "role_arn" } else { "policy_name" }),
                "names more than one of `role_arn`, `policy_name`, `permission_set`; an entitlement grants one",
            ));
        }
        if raw.accounts.is_some() && raw.permission_set.is_none() {
            return Err(ctx.err(
                Some("accounts"),
                "is for `permission_set` entitlements; use `account` with `role_arn` or `policy_name`",
            ));
        }
        let (target, account) = match (&raw.role_arn, &raw.policy_name) {
            (None, None) if raw.permission_set.is_some() => {
                permission_set_target(ctx, &raw, account.as_ref())?
            }
            (Some(_), Some(_)) => {
                return Err(ctx.err(
                    Some("role_arn"),
                    "and `policy_name` are both set; an entitlement grants one or the other",
                ));
            }
            (None, None) => {
                return Err(ctx.err(
                    Some("role_arn"),
                    "is missing: set `role_arn` (assume a role), `policy_name` (attach a managed policy) or `permission_set` (IAM Identity Center)",
                ));
            }
            (Some(arn), None) => {
                let arn =
                    RoleArn::parse(arn.clone()).map_err(|e| ctx.err(Some("role_arn"), e.0))?;
                let arn_account = arn.account();
                if let Some(a) = &account
                    && *a != arn_account
                {
                    return Err(ctx.err(
                        Some("account"),
                        format!("is {a} but `role_arn` is in account {arn_account}"),
                    ));
                }
                (GrantTarget::AssumeRole { role_arn: arn }, arn_account)
            }
            (None, Some(p)) => {
                let p =
                    PolicyName::parse(p.clone()).map_err(|e| ctx.err(Some("policy_name"), e.0))?;
                let account = account.ok_or_else(|| {
                    ctx.err(
                        Some("account"),
                        "is missing: a policy entitlement must name its 12-digit account",
                    )
                })?;
                (GrantTarget::AttachPolicy { policy_name: p }, account)
            }
        };
        let min =
            duration_field(ctx, "min_duration", &raw.min_duration)?.unwrap_or(GrantDuration::MIN);
        let max = duration_field(ctx, "max_duration", &raw.max_duration)?
            .unwrap_or(d.max_duration.max(min));
        if min > max {
            return Err(ctx.err(
                Some("min_duration"),
                format!("({min}) is longer than `max_duration` ({max})"),
            ));
        }
        let default = duration_field(ctx, "default_duration", &raw.default_duration)?
            .unwrap_or(GrantDuration::DEFAULT.clamp(min, max));
        if default < min || default > max {
            return Err(ctx.err(
                Some("default_duration"),
                format!(
                    "({default}) must lie between `min_duration` ({min}) and `max_duration` ({max})"
                ),
            ));
        }
        let (approvers, approvers_none) = match &raw.approvers {
            Some(v) => match approvers_field(ctx, "approvers", v)? {
                ApproversField::None => (
                    Approvers {
                        slack_channel: None,
                        groups: vec![],
                        emails: vec![],
                        slack_users: vec![],
                        ..d.approvers.clone()
                    },
                    true,
                ),
                ApproversField::Rules(a) => (approvers(ctx, &a, "approvers")?, false),
            },
            None => (d.approvers.clone(), d.approvers_none),
        };
        let auto_approve = match &raw.auto_approve {
            None => None,
            Some(a) => {
                if a.groups.is_empty() {
                    return Err(ctx.err(
                        Some("auto_approve.groups"),
                        "is empty: name the groups whose requests are approved automatically",
                    ));
                }
                let groups = names(ctx, "auto_approve.groups", &a.groups)?;
                let amax = duration_field(ctx, "auto_approve.max_duration", &a.max_duration)?
                    .unwrap_or(max);
                if amax > max {
                    return Err(ctx.err(
                        Some("auto_approve.max_duration"),
                        format!("({amax}) is longer than `max_duration` ({max})"),
                    ));
                }
                Some(AutoApprove {
                    groups,
                    max_duration: amax,
                })
            }
        };
        let approval_timeout_secs = match &raw.approval_timeout {
            Some(t) => timeout_field(ctx, "approval_timeout", t)?,
            None => d.approval_timeout_secs,
        };
        if raw.break_glass {
            // A grant nobody else approved gets a bound chosen for it, and
            // people who are told of it and review it afterwards.
            if raw.max_duration.is_none() {
                return Err(ctx.err(
                    Some("max_duration"),
                    "is required on a break-glass entitlement (`break_glass: true`): give it its own bound (e.g. `max_duration: 1h`) rather than the catalog's default",
                ));
            }
            if approvers_none || approvers.is_empty() {
                return Err(ctx.err(
                    Some("approvers"),
                    "names nobody, but a break-glass entitlement needs approvers: they are told of every use and review it afterwards; add `approvers: {emails: [lead@example.com]}` (or `groups`, `slack_users`)",
                ));
            }
            if auto_approve.is_some() {
                return Err(ctx.err(
                    Some("auto_approve"),
                    "has no meaning on a break-glass entitlement: its requests approve themselves, loudly; remove the rule, or make a separate entry for the auto-approved use",
                ));
            }
        }
        Ok(Entitlement {
            name,
            description: raw.description.clone(),
            account,
            target,
            min_duration: min,
            max_duration: max,
            default_duration: default,
            eligible_groups: names(ctx, "eligible_groups", &raw.eligible_groups)?,
            approvers,
            auto_approve,
            approval_timeout_secs,
            form: EntryForm::Rich,
            approvers_none,
            policy: entitlement_policy(ctx, &raw)?,
            break_glass: raw.break_glass,
        })
    }

    /// Looks an entitlement up by its exact (case-sensitive) name.
    pub fn get(&self, name: &str) -> Option<&Entitlement> {
        self.by_name.get(name).map(|&i| &self.entitlements[i])
    }

    pub fn entitlements(&self) -> &[Entitlement] {
        &self.entitlements
    }

    pub fn len(&self) -> usize {
        self.entitlements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entitlements.is_empty()
    }

    /// The groups a principal belongs to: those its authenticator asserted,
    /// plus those the catalog declares for it.
    pub fn groups_of(&self, principal: &Principal, asserted: &[String]) -> Vec<String> {
        let mut out: Vec<String> = asserted.to_vec();
        for (group, members) in &self.members {
            if members.contains(principal) && !out.contains(group) {
                out.push(group.clone());
            }
        }
        out
    }

    /// Whether someone with these (resolved) groups is an admin: may revoke
    /// any grant.
    pub fn is_admin(&self, groups: &[String]) -> bool {
        self.admin_groups.iter().any(|g| groups.contains(g))
    }

    /// The catalog's `admin_groups`.
    pub fn admin_groups(&self) -> &[String] {
        &self.admin_groups
    }

    /// The catalog's `security_channel`: told of every break-glass use.
    pub fn security_channel(&self) -> Option<&str> {
        self.security_channel.as_deref()
    }

    /// The pattern a break-glass justification's incident reference matches.
    pub fn incident_pattern(&self) -> &crate::break_glass::IncidentPattern {
        &self.incident_pattern
    }

    /// The catalog's `working_hours` (analytics' "outside working hours").
    pub fn working_hours(&self) -> &crate::analytics::WorkingHours {
        &self.working_hours
    }

    /// The catalog's Identity Center instance, when it has one.
    pub fn identity_center(&self) -> Option<&crate::identity_center::IdentityCenter> {
        self.identity_center.as_ref()
    }

    /// Whether any rule (eligibility, approvers, auto-approve, admins)
    /// names an Identity Store group (`idc:<group>`).
    pub fn uses_idc_groups(&self) -> bool {
        let idc = |g: &String| g.starts_with(crate::identity_center::GROUP_PREFIX);
        self.admin_groups.iter().any(idc)
            || self.entitlements.iter().any(|e| {
                e.eligible_groups.iter().any(idc)
                    || e.approvers.groups.iter().any(idc)
                    || e.auto_approve
                        .as_ref()
                        .is_some_and(|a| a.groups.iter().any(idc))
            })
    }

    /// Where `idc:` groups are read (a front door's Identity Store adapter,
    /// cached): set once at start.
    pub fn with_group_directory(
        mut self,
        directory: std::sync::Arc<dyn crate::identity_center::GroupDirectory>,
    ) -> Catalog {
        self.group_directory = Some(crate::identity_center::DirectoryHandle(directory));
        self
    }

    /// The groups a principal belongs to, Identity Store groups included
    /// (as `idc:<name>`) when the catalog's rules name any. A directory
    /// that cannot be read fails the call: rules are never judged on a
    /// partial picture.
    pub async fn resolve_groups(
        &self,
        principal: &Principal,
        asserted: &[String],
    ) -> Result<Vec<String>, crate::ports::GrantError> {
        let mut groups = self.groups_of(principal, asserted);
        if !self.uses_idc_groups() {
            return Ok(groups);
        }
        // Asserted groups never pose as Identity Store groups.
        groups.retain(|g| !g.starts_with(crate::identity_center::GROUP_PREFIX));
        let Some(dir) = &self.group_directory else {
            return Err(crate::ports::GrantError::Other(
                "the catalog names `idc:` groups but this deployment has no Identity Store reader configured".into(),
            ));
        };
        for g in dir.0.groups_of(principal).await? {
            let name = format!("{}{g}", crate::identity_center::GROUP_PREFIX);
            if !groups.contains(&name) {
                groups.push(name);
            }
        }
        Ok(groups)
    }

    /// Whether a requester with these (resolved) groups may ask for `e`.
    pub fn is_eligible(&self, e: &Entitlement, groups: &[String]) -> bool {
        e.eligible_groups.is_empty() || e.eligible_groups.iter().any(|g| groups.contains(g))
    }

    /// Whether someone may decide requests for `e`. The requester check (nobody
    /// approves their own request) is the caller's, per request.
    pub fn is_approver(&self, e: &Entitlement, principal: &Principal, groups: &[String]) -> bool {
        e.approvers.emails.contains(principal)
            || e.approvers.groups.iter().any(|g| groups.contains(g))
            || e.approvers
                .slack_users
                .iter()
                .any(|u| self.slack_users.get(u) == Some(principal))
    }

    /// Whether a verified Slack user may decide requests for `e`: listed by
    /// Slack id, or approver as the principal they act as.
    pub fn is_slack_approver(
        &self,
        e: &Entitlement,
        slack_user: &str,
        principal: &Principal,
        groups: &[String],
    ) -> bool {
        e.approvers.slack_users.iter().any(|u| u == slack_user)
            || self.is_approver(e, principal, groups)
    }

    /// The principal a Slack user acts as, when the catalog maps one.
    pub fn slack_principal(&self, slack_user: &str) -> Option<&Principal> {
        self.slack_users.get(slack_user)
    }

    /// The catalog's members of a group (for emailing group approvers).
    pub fn members_of(&self, group: &str) -> &[Principal] {
        self.members.get(group).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The entitlement name closest to a mistyped one, among those a
    /// requester with `groups` may ask for (so a suggestion never reveals
    /// an entry they could not use): the same name in another case, else
    /// the nearest by edit distance within a third of its length.
    pub fn nearest_name(&self, name: &str, groups: &[String]) -> Option<&str> {
        let eligible = || {
            self.entitlements
                .iter()
                .filter(|e| self.is_eligible(e, groups))
                .map(|e| e.name.as_str())
        };
        if let Some(n) = eligible().find(|n| n.eq_ignore_ascii_case(name)) {
            return Some(n);
        }
        let wanted = name.to_lowercase();
        let limit = (wanted.chars().count() / 3).max(1);
        eligible()
            .map(|n| (edit_distance(&wanted, &n.to_lowercase()), n))
            .filter(|(d, _)| *d <= limit)
            .min_by_key(|(d, _)| *d)
            .map(|(_, n)| n)
    }

    /// Whether an auto-approve rule accepts this request without a person.
    pub fn auto_approves(
        &self,
        e: &Entitlement,
        groups: &[String],
        duration: GrantDuration,
    ) -> bool {
        e.auto_approve.as_ref().is_some_and(|a| {
            duration <= a.max_duration && a.groups.iter().any(|g| groups.contains(g))
        })
    }
}

/// Levenshtein distance over characters (names are short: O(n·m) is fine).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_name_suggests_only_eligible_close_names() {
        let text = "entitlements:\n  - name: OnCallReadOnly\n    role_arn: \"arn:aws:iam::123456789012:role/R\"\n    eligible_groups: [sre]\n    approvers: {emails: [lead@example.com]}\n  - name: Billing\n    role_arn: \"arn:aws:iam::123456789012:role/B\"\n    approvers: {emails: [lead@example.com]}\n";
        let c = Catalog::parse(text, "c.yaml").unwrap();
        let sre = vec!["sre".to_string()];
        assert_eq!(
            c.nearest_name("OncallReadOnly", &sre),
            Some("OnCallReadOnly")
        );
        assert_eq!(
            c.nearest_name("OnCalReadOnly", &sre),
            Some("OnCallReadOnly")
        );
        assert_eq!(c.nearest_name("biling", &[]), Some("Billing"));
        assert_eq!(c.nearest_name("OncallReadOnly", &[]), None, "not eligible");
        assert_eq!(c.nearest_name("Something", &sre), None, "nothing close");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }

    /// The Kubiya seed's entry, with the approvers it needs from `defaults`.
    const SEED: &str = r#"defaults: {approvers: {emails: [lead@example.com]}}
policies:
  - policy_name: "AWSReadOnlyAccess"
    aws_account_id: "123456789012"
    request_name: "Read Only Access"
"#;

    #[test]
    fn entries_nobody_approves_are_refused_at_load_unless_said_so() {
        // GIVEN the Kubiya seed's file exactly, with no `defaults.approvers`
        let seed_only = "policies:\n  - policy_name: \"ReadOnlyAccess\"\n    aws_account_id: \"123456789012\"\n    request_name: \"Read Only Access\"\n";
        // THEN it is refused, naming the entry, the field and the fix
        let err = Catalog::parse(seed_only, "c.yaml").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("defaults.approvers"), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("c.yaml: policies entry 1 (`Read Only Access`): `defaults.approvers` names nobody who may approve"),
            "{msg}"
        );
        assert!(msg.contains("defaults: {approvers: none}"), "{msg}");
        // AND a rich entry without approvers is refused the same way; a
        // Slack channel alone does not count
        for entry in [
            "role_arn: 'arn:aws:iam::123456789012:role/R'",
            "role_arn: 'arn:aws:iam::123456789012:role/R'\n    approvers: {slack_channel: '#x'}",
        ] {
            let text = format!("entitlements:\n  - name: A\n    {entry}\n");
            let err = Catalog::parse(&text, "c.yaml").unwrap_err();
            assert_eq!(err.field.as_deref(), Some("approvers"), "{err}");
            assert!(err.to_string().contains("`approvers: none`"), "{err}");
        }
        // AND an auto-approve rule alone, or `approvers: none`, is accepted
        let c = Catalog::parse(
            "entitlements:\n  - name: A\n    role_arn: 'arn:aws:iam::123456789012:role/R'\n    auto_approve: {groups: [sre]}\n  - name: B\n    role_arn: 'arn:aws:iam::123456789012:role/R'\n    approvers: none\n",
            "c.yaml",
        )
        .unwrap();
        assert!(!c.get("A").unwrap().has_approvers());
        let b = c.get("B").unwrap();
        assert!(b.approvers_none && !b.has_approvers());
        // AND `defaults.approvers: none` covers seed entries
        let c = Catalog::parse(
            &format!("defaults: {{approvers: none}}\n{seed_only}"),
            "c.yaml",
        )
        .unwrap();
        assert!(c.get("Read Only Access").unwrap().approvers_none);
        // AND an entry's own approvers win over `defaults.approvers: none`
        let c = Catalog::parse(
            "defaults: {approvers: none}\nentitlements:\n  - name: A\n    role_arn: 'arn:aws:iam::123456789012:role/R'\n    approvers: {emails: [a@example.com]}\n",
            "c.yaml",
        )
        .unwrap();
        assert!(c.get("A").unwrap().has_approvers());
        // AND any other word is refused
        let err = Catalog::parse(
            "entitlements:\n  - name: A\n    role_arn: 'arn:aws:iam::123456789012:role/R'\n    approvers: nobody\n",
            "c.yaml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("or the word `none`"), "{err}");
    }

    #[test]
    fn break_glass_entries_need_their_own_bound_and_reviewers() {
        let ok = "security_channel: '#security'\nincident_pattern: 'INC-[0-9]+'\nentitlements:\n  - name: BG\n    role_arn: 'arn:aws:iam::123456789012:role/BG'\n    break_glass: true\n    max_duration: 1h\n    approvers: {emails: [lead@example.com]}\n";
        let c = Catalog::parse(ok, "c.yaml").unwrap();
        let e = c.get("BG").unwrap();
        assert!(e.break_glass);
        assert_eq!(e.max_duration.secs(), 3600);
        assert_eq!(c.security_channel(), Some("#security"));
        assert_eq!(c.incident_pattern().as_str(), "INC-[0-9]+");
        // the default pattern when the catalog names none
        let plain = Catalog::parse(SEED, "c.yaml").unwrap();
        assert_eq!(
            plain.incident_pattern().as_str(),
            crate::break_glass::DEFAULT_INCIDENT_PATTERN
        );
        assert_eq!(plain.security_channel(), None);
        let cases: &[(&str, &str, &str)] = &[
            (
                "    break_glass: true\n    approvers: {emails: [lead@example.com]}\n",
                "max_duration",
                "its own bound",
            ),
            (
                "    break_glass: true\n    max_duration: 1h\n    approvers: none\n",
                "approvers",
                "review it afterwards",
            ),
            (
                "    break_glass: true\n    max_duration: 1h\n    approvers: {emails: [lead@example.com]}\n    auto_approve: {groups: [sre]}\n",
                "auto_approve",
                "no meaning",
            ),
        ];
        for (rest, field, needle) in cases {
            let text = format!(
                "entitlements:\n  - name: BG\n    role_arn: 'arn:aws:iam::123456789012:role/BG'\n{rest}"
            );
            let err = Catalog::parse(&text, "c.yaml").unwrap_err();
            assert_eq!(err.field.as_deref(), Some(*field), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
            assert!(
                err.to_string().contains("entitlements entry 1 (`BG`)"),
                "{err}"
            );
        }
        for (top, field) in [
            ("incident_pattern: '('", "incident_pattern"),
            ("incident_pattern: '.*'", "incident_pattern"),
            ("security_channel: ' #x'", "security_channel"),
        ] {
            let err = Catalog::parse(&format!("{top}\n{SEED}"), "c.yaml").unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{err}");
        }
    }

    #[test]
    fn the_example_catalog_loads_and_names_real_managed_policies() {
        let c = Catalog::parse(
            include_str!("../../../config/catalog.example.yaml"),
            "catalog.example.yaml",
        )
        .unwrap();
        let e = c.get("Read Only Access").unwrap();
        assert_eq!(
            e.target,
            GrantTarget::AttachPolicy {
                policy_name: PolicyName::parse("ReadOnlyAccess").unwrap()
            }
        );
        assert!(c.entitlements().iter().all(Entitlement::has_approvers));
    }

    #[test]
    fn kubiya_seed_loads_verbatim() {
        let c = Catalog::parse(SEED, "seed.yaml").unwrap();
        let e = c.get("Read Only Access").unwrap();
        assert_eq!(e.account.as_str(), "123456789012");
        assert_eq!(
            e.target,
            GrantTarget::AttachPolicy {
                policy_name: PolicyName::parse("AWSReadOnlyAccess").unwrap()
            }
        );
        assert_eq!(e.form, EntryForm::KubiyaSeed);
        assert!(
            c.get("read only access").is_none(),
            "names are case-sensitive"
        );
    }

    #[test]
    fn broken_seed_entry_is_named_by_entry_and_field() {
        let text = format!(
            "{SEED}  - policy_name: \"X\"\n    aws_account_id: \"1\"\n    request_name: \"Two\"\n  - policy_name: \"Y\"\n    aws_account_id: \"12345\"\n    request_name: \"Read Only Access 3\"\n"
        );
        let err = Catalog::parse(&text, "catalog.yaml").unwrap_err();
        let msg = err.to_string();
        assert_eq!(
            msg,
            "catalog.yaml: policies entry 2 (`Two`): `aws_account_id` must be 12 digits"
        );
        assert_eq!(err.field.as_deref(), Some("aws_account_id"));
    }

    #[test]
    fn table_of_rich_entry_errors() {
        let cases: &[(&str, &str, &str)] = &[
            ("name: A\naccount: '123456789012'", "role_arn", "is missing"),
            (
                "name: A\nrole_arn: 'arn:aws:iam::123456789012:role/R'\npolicy_name: P",
                "role_arn",
                "both set",
            ),
            ("name: A\npolicy_name: P", "account", "is missing"),
            (
                "name: A\nrole_arn: 'arn:aws:iam::123456789012:role/R'\naccount: '210987654321'",
                "account",
                "is 210987654321",
            ),
            (
                "name: A\nrole_arn: 'arn:aws:iam::123456789012:role/R'\nmax_duration: 100h",
                "max_duration",
                "at most",
            ),
            (
                "name: A\nrole_arn: 'arn:aws:iam::123456789012:role/R'\nmin_duration: 2h\nmax_duration: 1h",
                "min_duration",
                "longer than",
            ),
            (
                "name: A\nrole_arn: 'arn:aws:iam::123456789012:role/R'\napproval_timeout: 30d",
                "approval_timeout",
                "between",
            ),
            (
                "name: A\nrole_arn: 'arn:aws:iam::123456789012:role/R'\napprovers: {required_approvals: 0}",
                "approvers.required_approvals",
                "at least 1",
            ),
            (
                "name: A\nrole_arn: 'arn:aws:iam::123456789012:role/R'\nauto_approve: {groups: []}",
                "auto_approve.groups",
                "is empty",
            ),
            (
                "name: A\nrole_arn: 'arn:aws:iam::123456789012:role/R'\napprovers: {emails: [bob]}",
                "approvers.emails",
                "not an email",
            ),
            (
                "name: A\nrole_arn: 'not-an-arn'",
                "role_arn",
                "must look like",
            ),
            (
                "name: A\npolicy_name: 'bad name'\naccount: '123456789012'",
                "policy_name",
                "IAM policy name",
            ),
            (
                "name: A\nrole_arn: 'arn:aws:iam::123456789012:role/R'\napprovers: {groups: [leads], required_groups: [security], required_approvals: 2}",
                "approvers.required_groups",
                "not in `approvers.groups`",
            ),
            (
                "name: A\nrole_arn: 'arn:aws:iam::123456789012:role/R'\napprovers: {groups: [leads, security], required_groups: [leads, security], required_approvals: 1}",
                "approvers.required_approvals",
                "fewer than the 2",
            ),
            (
                "name: A\nrole_arn: 'arn:aws:iam::123456789012:role/R'\napprovers: {remind_every: 10s}",
                "approvers.remind_every",
                "between 1m and 24h",
            ),
        ];
        for (entry, field, needle) in cases {
            let indented: String = entry
                .lines()
                .enumerate()
                .map(|(i, l)| {
                    if i == 0 {
                        format!("  - {l}\n")
                    } else {
                        format!("    {l}\n")
                    }
                })
                .collect();
            let text = format!("entitlements:\n{indented}");
            let err = Catalog::parse(&text, "c.yaml").expect_err(entry);
            assert_eq!(err.field.as_deref(), Some(*field), "{entry}: {err}");
            assert!(err.to_string().contains(needle), "{entry}: {err}");
            assert!(
                err.to_string()
                    .starts_with("c.yaml: entitlements entry 1 (`A`): "),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_syntax_errors_say_where() {
        let err =
            Catalog::parse("entitlements:\n  - name: A\n    rolearn: x\n", "c.yaml").unwrap_err();
        assert!(err.to_string().contains("unknown field `rolearn`"), "{err}");
        let err = Catalog::parse("entitlements:\n  - name: [\n", "c.yaml").unwrap_err();
        assert!(err.line.is_some(), "{err:?}");
        let err = Catalog::parse("{}", "c.yaml").unwrap_err();
        assert!(err.to_string().contains("defines no entitlements"));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let text = "defaults: {approvers: {emails: [lead@example.com]}}\nentitlements:\n  - name: A\n    role_arn: 'arn:aws:iam::123456789012:role/R'\n  - name: A\n    role_arn: 'arn:aws:iam::123456789012:role/S'\n";
        let err = Catalog::parse(text, "c.yaml").unwrap_err();
        assert!(
            err.to_string()
                .contains("entitlements entry 2 (`A`): `name`"),
            "{err}"
        );
    }

    #[test]
    fn a_thousand_entries_load() {
        let mut text =
            String::from("defaults: {approvers: {emails: [lead@example.com]}}\npolicies:\n");
        for i in 0..1000 {
            text.push_str(&format!(
                "  - policy_name: \"Policy{i}\"\n    aws_account_id: \"123456789012\"\n    request_name: \"Entry {i}\"\n"
            ));
        }
        let c = Catalog::parse(&text, "big.yaml").unwrap();
        assert_eq!(c.len(), 1000);
        assert!(c.get("Entry 999").is_some());
    }

    #[test]
    fn rules_eligibility_approvers_auto_approve() {
        let text = r#"
groups:
  leads: [lead@example.com]
entitlements:
  - name: Admin
    role_arn: "arn:aws:iam::123456789012:role/Admin"
    max_duration: 4h
    eligible_groups: [oncall, sre]
    approvers: {groups: [leads], emails: [sec@example.com]}
    auto_approve: {groups: [sre], max_duration: 1h}
    approval_timeout: 30m
"#;
        let c = Catalog::parse(text, "c.yaml").unwrap();
        let e = c.get("Admin").unwrap();
        assert_eq!(e.approval_timeout_secs, 1800);
        assert_eq!(e.max_duration.secs(), 14_400);
        assert_eq!(e.default_duration.secs(), 900);
        assert!(c.is_eligible(e, &["oncall".into()]));
        assert!(!c.is_eligible(e, &["eng".into()]));
        let lead = Principal::parse("lead@example.com").unwrap();
        let groups = c.groups_of(&lead, &[]);
        assert_eq!(groups, vec!["leads".to_string()]);
        assert!(c.is_approver(e, &lead, &groups));
        assert!(c.is_approver(e, &Principal::parse("sec@example.com").unwrap(), &[]));
        assert!(!c.is_approver(e, &Principal::parse("eve@example.com").unwrap(), &[]));
        let one_h = GrantDuration::from_secs(3600).unwrap();
        let two_h = GrantDuration::from_secs(7200).unwrap();
        assert!(c.auto_approves(e, &["sre".into()], one_h));
        assert!(!c.auto_approves(e, &["sre".into()], two_h));
        assert!(!c.auto_approves(e, &["oncall".into()], one_h));
    }

    #[test]
    fn approval_rules_quorum_reminders_and_slack_users() {
        // GIVEN a catalog mapping Slack users and an entry needing two
        // approvals, one from each of two groups
        let text = r##"
groups:
  leads: [lead@example.com]
  security: [sec@example.com]
slack_users:
  U0LEAD: lead@example.com
  U0OPS: ops@example.com
entitlements:
  - name: Admin
    role_arn: "arn:aws:iam::123456789012:role/Admin"
    approvers:
      groups: [leads, security]
      slack_users: [U0OPS]
      slack_channel: "#jit-approvals"
      required_approvals: 2
      required_groups: [leads, security]
      remind_every: 5m
      max_reminders: 2
  - name: Plain
    role_arn: "arn:aws:iam::123456789012:role/Plain"
    approvers: {emails: [lead@example.com]}
"##;
        let c = Catalog::parse(text, "c.yaml").unwrap();
        let e = c.get("Admin").unwrap();
        // THEN the rules are kept as written
        assert_eq!(e.approvers.required_approvals, 2);
        assert_eq!(e.approvers.required_groups, ["leads", "security"]);
        assert_eq!(
            (e.approvers.remind_every_secs, e.approvers.max_reminders),
            (300, 2)
        );
        // AND an entry saying nothing gets the defaults (15 minutes, 3 times)
        let plain = &c.get("Plain").unwrap().approvers;
        assert_eq!(
            (plain.remind_every_secs, plain.max_reminders),
            (DEFAULT_REMIND_EVERY_SECS, DEFAULT_MAX_REMINDERS)
        );
        // AND Slack users map to principals and count as approvers when listed
        let ops = Principal::parse("ops@example.com").unwrap();
        assert_eq!(c.slack_principal("U0OPS"), Some(&ops));
        assert!(c.is_approver(e, &ops, &[]), "listed by Slack id, mapped");
        assert!(c.is_slack_approver(e, "U0OPS", &ops, &[]));
        let eve = Principal::parse("eve@example.com").unwrap();
        assert!(!c.is_slack_approver(e, "U0EVE", &eve, &[]));
        assert_eq!(
            c.members_of("security"),
            [Principal::parse("sec@example.com").unwrap()]
        );
        // AND a Slack mapping must be keyed by a user id
        let err = Catalog::parse(
            "slack_users: {'not an id': a@b.c}\npolicies: [{policy_name: P, aws_account_id: '123456789012', request_name: R}]\n",
            "c.yaml",
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("slack_users.not an id"), "{err}");
    }

    const IDC: &str = "identity_center: {instance_arn: 'arn:aws:sso:::instance/ssoins-1', identity_store_id: d-1234567890, region: eu-west-1}\ndefaults: {approvers: {emails: [lead@example.com]}}\n";

    #[test]
    fn permission_set_entries_need_accounts_and_the_instance() {
        // (entry, field, words in the message)
        let cases: &[(&str, &str, &str)] = &[
            ("permission_set: Admin", "accounts", "is missing"),
            (
                "permission_set: Admin\n    accounts: []",
                "accounts",
                "is empty",
            ),
            (
                "permission_set: Admin\n    accounts: ['1234']",
                "accounts",
                "12 digits",
            ),
            (
                "permission_set: Admin\n    accounts: ['111111111111', '111111111111']",
                "accounts",
                "twice",
            ),
            (
                "permission_set: 'bad name!'\n    accounts: ['111111111111']",
                "permission_set",
                "name",
            ),
            (
                "permission_set: Admin\n    role_arn: 'arn:aws:iam::123456789012:role/R'",
                "role_arn",
                "more than one",
            ),
            (
                "policy_name: P\n    account: '111111111111'\n    accounts: ['111111111111']",
                "accounts",
                "permission_set",
            ),
            (
                "permission_set: Admin\n    account: '111111111111'\n    accounts: ['111111111111']",
                "account",
                "both set",
            ),
        ];
        for (entry, field, needle) in cases {
            let text = format!("{IDC}entitlements:\n  - name: A\n    {entry}\n");
            let err = Catalog::parse(&text, "c.yaml").expect_err(entry);
            assert_eq!(err.field.as_deref(), Some(*field), "{entry}: {err}");
            assert!(err.to_string().contains(needle), "{entry}: {err}");
        }
        // Without the instance block, the entry names what is missing.
        let err = Catalog::parse(
            "defaults: {approvers: {emails: [lead@example.com]}}\nentitlements:\n  - name: A\n    permission_set: Admin\n    accounts: ['111111111111']\n",
            "c.yaml",
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("permission_set"), "{err}");
        // An idc: group without the instance block is refused too.
        let err = Catalog::parse(
            "defaults: {approvers: {emails: [lead@example.com]}}\nentitlements:\n  - name: A\n    role_arn: 'arn:aws:iam::123456789012:role/R'\n    eligible_groups: ['idc:Platform']\n",
            "c.yaml",
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("identity_center"), "{err}");
        // A good entry: the first account is the entitlement's account.
        let c = Catalog::parse(
            &format!("{IDC}entitlements:\n  - name: A\n    permission_set: Admin\n    accounts: ['222222222222', '111111111111']\n    eligible_groups: ['idc:Platform']\n"),
            "c.yaml",
        )
        .unwrap();
        let e = c.get("A").unwrap();
        assert_eq!(e.account.as_str(), "222222222222");
        assert!(c.uses_idc_groups());
        assert_eq!(
            c.identity_center().unwrap().portal_url,
            "https://d-1234567890.awsapps.com/start"
        );
    }

    #[test]
    fn a_request_takes_a_subset_of_the_accounts_in_the_entitlements_order() {
        use crate::service::NewRequest;
        let c = Catalog::parse(
            &format!("{IDC}entitlements:\n  - name: A\n    permission_set: Admin\n    accounts: ['111111111111', '222222222222', '333333333333']\n  - name: R\n    role_arn: 'arn:aws:iam::123456789012:role/R'\n"),
            "c.yaml",
        )
        .unwrap();
        let ask = |ent: &str, accounts: Option<Vec<&str>>| {
            let req = NewRequest {
                accounts: accounts.map(|l| l.into_iter().map(String::from).collect()),
                ..NewRequest::default()
            };
            crate::identity_center::requested_accounts(c.get(ent).unwrap(), &req)
        };
        let (target, first) = ask("A", Some(vec!["333333333333", "111111111111"])).unwrap();
        assert_eq!(first.as_str(), "111111111111");
        match target {
            GrantTarget::PermissionSet { accounts, .. } => assert_eq!(
                accounts.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
                ["111111111111", "333333333333"]
            ),
            other => panic!("{other:?}"),
        }
        let (all, _) = ask("A", None).unwrap();
        assert!(matches!(all, GrantTarget::PermissionSet { accounts, .. } if accounts.len() == 3));
        for bad in [
            ask("A", Some(vec!["999999999999"])),
            ask("A", Some(vec![])),
            ask("A", Some(vec!["111111111111", "111111111111"])),
            ask("R", Some(vec!["123456789012"])),
        ] {
            match bad {
                Err(crate::error::ServiceError::Invalid { field, .. }) => {
                    assert_eq!(field.as_deref(), Some("accounts"))
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
