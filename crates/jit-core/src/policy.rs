//! Least privilege: what a requester says they need (`scope`), the port
//! that turns it into a session policy ([`PolicyGenerator`]), and what the
//! record keeps of the result ([`PolicyProvenance`]).
//!
//! The IAM action table, the generators and the validator live in
//! `jit-policy` (a megabyte of data no API Lambda should carry): this module
//! holds only the shapes every front door and the workflow share, and the
//! rules that need no table (the grammar of a scope, the catalog's mode).
//! Whatever generated a policy, it is validated before anyone sees it; a
//! generator never widens a grant: the session policy can only narrow the
//! role, and the catalog's `ceiling:` bounds what may be asked for.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Most actions, resources and services one scope may name: more would not
/// fit STS's 2,048-character session policy anyway.
pub const MAX_SCOPE_ITEMS: usize = 100;
/// Longest `describe` text.
pub const MAX_DESCRIBE_CHARS: usize = 1000;

/// An IAM access level, as the Service Authorization Reference assigns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessLevel {
    Read,
    List,
    Write,
    Tagging,
    PermissionsManagement,
}

impl AccessLevel {
    pub const ALL: [AccessLevel; 5] = [
        AccessLevel::Read,
        AccessLevel::List,
        AccessLevel::Write,
        AccessLevel::Tagging,
        AccessLevel::PermissionsManagement,
    ];

    /// The name used in the API (`read`, `permissions-management`).
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::Read => "read",
            AccessLevel::List => "list",
            AccessLevel::Write => "write",
            AccessLevel::Tagging => "tagging",
            AccessLevel::PermissionsManagement => "permissions-management",
        }
    }

    pub fn parse(s: &str) -> Option<AccessLevel> {
        AccessLevel::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl std::fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the requester says they need, in one of three shapes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scope {
    /// Exact actions on exact resources.
    Exact {
        actions: Vec<String>,
        resources: Vec<String>,
    },
    /// Every action of one access level in some services, on some
    /// resources (none: `*` within the services).
    Access {
        access: AccessLevel,
        services: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        resources: Vec<String>,
    },
    /// In words, for an AI generator.
    Describe { describe: String },
}

/// A bad `scope`: the field (`scope`, `scope.actions`, …) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {message}")]
pub struct ScopeError {
    pub field: String,
    pub message: String,
}

fn scope_err(field: &str, message: impl Into<String>) -> ScopeError {
    ScopeError {
        field: field.to_string(),
        message: message.into(),
    }
}

const SHAPES: &str = "must be one of {\"actions\": [...], \"resources\": [...]}, {\"access\": \"read\"|\"list\"|\"write\"|\"tagging\"|\"permissions-management\", \"services\": [...], \"resources\": [...]} or {\"describe\": \"...\"}";

impl Scope {
    /// Parses a request body's `scope`, naming the field at fault.
    pub fn from_json(v: &Value) -> Result<Scope, ScopeError> {
        let Value::Object(o) = v else {
            return Err(scope_err("scope", SHAPES));
        };
        for k in o.keys() {
            if !matches!(
                k.as_str(),
                "actions" | "resources" | "access" | "services" | "describe"
            ) {
                return Err(scope_err(
                    &format!("scope.{k}"),
                    format!("is not a scope field; the scope {SHAPES}"),
                ));
            }
        }
        let has = |k: &str| o.contains_key(k);
        let scope = if has("describe") {
            if has("actions") || has("access") || has("services") || has("resources") {
                return Err(scope_err(
                    "scope.describe",
                    "stands alone: a described scope takes no actions, access, services or resources",
                ));
            }
            let text = o["describe"]
                .as_str()
                .ok_or_else(|| scope_err("scope.describe", "must be text"))?;
            if text.trim().is_empty() {
                return Err(scope_err(
                    "scope.describe",
                    "is empty: say what you need to do",
                ));
            }
            if text.chars().count() > MAX_DESCRIBE_CHARS {
                return Err(scope_err(
                    "scope.describe",
                    format!("must be at most {MAX_DESCRIBE_CHARS} characters"),
                ));
            }
            if text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
            {
                return Err(scope_err(
                    "scope.describe",
                    "must not contain control characters",
                ));
            }
            Scope::Describe {
                describe: text.to_string(),
            }
        } else if has("access") {
            if has("actions") {
                return Err(scope_err(
                    "scope.actions",
                    "and `scope.access` are both set: name exact actions or an access level, not both",
                ));
            }
            let access = o["access"]
                .as_str()
                .and_then(AccessLevel::parse)
                .ok_or_else(|| {
                    scope_err(
                        "scope.access",
                        "must be one of read, list, write, tagging, permissions-management",
                    )
                })?;
            let services = list(o.get("services"), "scope.services", true)?;
            for s in &services {
                if !is_service_prefix(s) {
                    return Err(scope_err(
                        "scope.services",
                        format!("`{s}` is not a service prefix (like `s3` or `logs`)"),
                    ));
                }
            }
            let resources = list(o.get("resources"), "scope.resources", false)?;
            check_resources(&resources)?;
            Scope::Access {
                access,
                services,
                resources,
            }
        } else if has("actions") {
            let actions = list(o.get("actions"), "scope.actions", true)?;
            for a in &actions {
                if !is_action_pattern(a) {
                    return Err(scope_err(
                        "scope.actions",
                        format!(
                            "`{a}` is not an IAM action (`service:Action`, like `s3:GetObject`)"
                        ),
                    ));
                }
            }
            if has("services") {
                return Err(scope_err(
                    "scope.services",
                    "goes with `scope.access`; exact actions name their services already",
                ));
            }
            let resources = list(o.get("resources"), "scope.resources", true)?;
            check_resources(&resources)?;
            Scope::Exact { actions, resources }
        } else {
            return Err(scope_err("scope", SHAPES));
        };
        Ok(scope)
    }

    /// Whether this scope needs an AI generator.
    pub fn is_described(&self) -> bool {
        matches!(self, Scope::Describe { .. })
    }
}

fn list(v: Option<&Value>, field: &str, required: bool) -> Result<Vec<String>, ScopeError> {
    let Some(v) = v else {
        return if required {
            Err(scope_err(field, "is required (a non-empty list of text)"))
        } else {
            Ok(vec![])
        };
    };
    let Value::Array(items) = v else {
        return Err(scope_err(field, "must be a list of text"));
    };
    if required && items.is_empty() {
        return Err(scope_err(field, "is empty: name at least one"));
    }
    if items.len() > MAX_SCOPE_ITEMS {
        return Err(scope_err(
            field,
            format!("names {} items; at most {MAX_SCOPE_ITEMS}", items.len()),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for i in items {
        let s = i
            .as_str()
            .ok_or_else(|| scope_err(field, "must be a list of text"))?;
        if !out.iter().any(|o: &String| o == s) {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

fn check_resources(resources: &[String]) -> Result<(), ScopeError> {
    for r in resources {
        if !is_resource(r) {
            return Err(scope_err(
                "scope.resources",
                format!("`{r}` is not a resource: use `*` or an ARN (`arn:aws:s3:::prod-logs/*`)"),
            ));
        }
    }
    Ok(())
}

/// A service prefix: `s3`, `logs`, `execute-api`.
pub fn is_service_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// An action or an action pattern: `service:Name`, where the name may hold
/// `*` and `?` wildcards.
pub fn is_action_pattern(s: &str) -> bool {
    let Some((service, name)) = s.split_once(':') else {
        return false;
    };
    is_service_prefix(service)
        && !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
}

/// A resource: `*`, or an ARN (six colon-separated parts at least, no
/// spaces).
pub fn is_resource(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    s.len() <= 2048
        && s.starts_with("arn:")
        && s.split(':').count() >= 6
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The catalog's `policy_generation:` for an entitlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GenerationMode {
    /// Every request must carry a `scope`.
    Required,
    /// A `scope` may narrow the grant; without one the grant is the
    /// entitlement's full permissions (or its fixed `session_policy`).
    #[default]
    Optional,
    /// No `scope` is accepted; the grant is fixed by the catalog.
    Off,
}

impl GenerationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GenerationMode::Required => "required",
            GenerationMode::Optional => "optional",
            GenerationMode::Off => "off",
        }
    }
}

/// An entitlement's least-privilege settings from the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntitlementPolicy {
    /// What a generated policy may allow: actions or patterns (`s3:Get*`,
    /// `logs:*`). Empty: no ceiling but the role's own permissions (a
    /// session policy only ever narrows them).
    pub ceiling: Vec<String>,
    /// A fixed session policy (compact JSON) every grant carries.
    pub session_policy: Option<String>,
    pub generation: GenerationMode,
}

/// What a generator is asked: the scope (or the catalog's fixed policy)
/// and what bounds it. Serializable: the API Lambda sends it to the
/// `generate-policy` Lambda as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationInput {
    pub entitlement: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// The catalog's `session_policy:`, validated like a generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_policy: Option<String>,
    /// The requester's words: context for an AI generator, never trusted.
    #[serde(default)]
    pub justification: String,
    #[serde(default)]
    pub ceiling: Vec<String>,
}

/// One line of a policy's summary: a service, the access levels and
/// actions allowed in it, on which resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SummaryLine {
    pub service: String,
    pub access: Vec<AccessLevel>,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// A validated session policy and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedPolicy {
    /// The policy document, compact JSON.
    pub document: String,
    /// `deterministic`, `catalog`, or the AI generator's name.
    pub generator: String,
    pub summary: Vec<SummaryLine>,
    /// What the approvers should know: actions left out by the ceiling, a
    /// generator's answer that failed validation and was replaced, …
    #[serde(default)]
    pub notes: Vec<String>,
    /// The document's size once packed with the window bound (STS counts
    /// this against 2,048 characters).
    pub packed_chars: usize,
}

/// Why no policy came out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum GenerationError {
    /// The scope cannot be honoured (an unknown action, outside the
    /// ceiling, too wide to fit): a 400 naming `field`.
    #[error("`{field}` {message}")]
    Refused { field: String, message: String },
    /// The generator is down or answered nonsense; retrying may work.
    #[error("policy generation unavailable: {message}")]
    Unavailable { message: String },
}

impl GenerationError {
    pub fn refused(field: &str, message: impl Into<String>) -> Self {
        GenerationError::Refused {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Turns a scope (or the catalog's fixed policy) into a validated session
/// policy. Implementations: `jit_policy::Deterministic` (in process), the
/// `generate-policy` Lambda behind `jit_aws::LambdaPolicyGenerator` (the
/// deployed `request` function).
#[async_trait::async_trait]
pub trait PolicyGenerator: Send + Sync {
    async fn generate(&self, input: &GenerationInput) -> Result<GeneratedPolicy, GenerationError>;

    /// Whether a scope in words (`describe`) can be generated here: an AI
    /// generator is configured. A request's described scope is only
    /// checked for this when it is created; the GeneratePolicy step asks
    /// the model (its answer failing validation does not refuse the
    /// request: it goes on with the entitlement's full permissions, and
    /// the approvers are told).
    fn describes(&self) -> bool {
        false
    }
}

/// What an AI model is asked: the rules (`system`) apart from the
/// requester's data (`user`), which the rules tell the model to treat as
/// data, never as instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftPrompt {
    pub system: String,
    pub user: String,
}

/// Why a model gave no answer (unreachable, refused, throttled, timed out).
/// The text is for the approvers' note and the logs: never a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DraftError {
    pub message: String,
}

/// The raw model call behind the AI generator (Amazon Bedrock Converse on
/// AWS and in `jit-local` when configured; a loopback fake in tests): a
/// prompt in, the model's text out. Its answer is never trusted:
/// `jit_policy` extracts and validates it like any other policy.
#[async_trait::async_trait]
pub trait PolicyDrafter: Send + Sync {
    /// How records and audit events name the generator
    /// (`bedrock:<model id>`).
    fn name(&self) -> String;

    async fn draft(&self, prompt: &DraftPrompt) -> Result<String, DraftError>;
}

/// How IAM Access Analyzer rates a finding on a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    Error,
    SecurityWarning,
    Warning,
    Suggestion,
}

impl FindingKind {
    /// `ERROR` and `SECURITY_WARNING` block a policy; the rest become notes.
    pub fn blocks(self) -> bool {
        matches!(self, FindingKind::Error | FindingKind::SecurityWarning)
    }

    /// As Access Analyzer names it (`SECURITY_WARNING`).
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Error => "ERROR",
            FindingKind::SecurityWarning => "SECURITY_WARNING",
            FindingKind::Warning => "WARNING",
            FindingKind::Suggestion => "SUGGESTION",
        }
    }
}

/// One finding on a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFinding {
    pub kind: FindingKind,
    /// Access Analyzer's `issueCode` (`MISSING_VERSION`, `PASS_ROLE_WITH_STAR_IN_RESOURCE`).
    pub code: String,
    pub detail: String,
}

/// Why a policy could not be analysed (the analyzer down, throttled,
/// refusing the broker). Never a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AnalyzeError {
    pub message: String,
}

/// A second opinion on every policy the generator accepts: IAM Access
/// Analyzer `ValidatePolicy`, deployed (`jit_aws::analyzer`). Its
/// `ERROR` and `SECURITY_WARNING` findings refuse the policy; the others
/// are notes for the approvers. Local runs have none: the embedded
/// validation (and parliament, in the tests) stands alone there.
#[async_trait::async_trait]
pub trait PolicyAnalyzer: Send + Sync {
    async fn validate(&self, document: &str) -> Result<Vec<PolicyFinding>, AnalyzeError>;
}

/// What a role itself allows, as a ceiling: for an assume-role
/// entitlement without the catalog's `ceiling:`, the actions its policies
/// allow (IAM `ListAttachedRolePolicies` + `GetPolicyVersion`, and its
/// inline policies, deployed: `jit_aws::ceiling`). A scope is then
/// checked against what the role can actually do (exact actions outside
/// it are refused; an access level's are left out with a note), instead
/// of generating statements the role would never honour.
#[async_trait::async_trait]
pub trait RoleCeilings: Send + Sync {
    /// `Some(patterns)`: every action the role's policies allow. `None`:
    /// no usable bound (the broker may not read them; a policy allows
    /// `*` or uses `NotAction`): the role alone caps the session.
    async fn ceiling(
        &self,
        role: &crate::ids::RoleArn,
    ) -> Result<Option<Vec<String>>, AnalyzeError>;
}

/// What the record keeps of the generation: shown to approvers, audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyProvenance {
    /// The generator whose policy the grant carries (`none`: generation
    /// failed and the grant carries the entitlement's full permissions).
    pub generator: String,
    /// `sha256:<hex>` of `sessionPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub summary: Vec<SummaryLine>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// `sha256:<hex>` of a policy document's text.
pub fn digest(document: &str) -> String {
    let hash = Sha256::digest(document.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The summary of a validated policy document: one line per service, its
/// `Allow` actions, their access levels (from `level_of`) and resources.
pub fn summarize(
    document: &Value,
    level_of: impl Fn(&str) -> Option<AccessLevel>,
) -> Vec<SummaryLine> {
    let mut lines: std::collections::BTreeMap<String, SummaryLine> = Default::default();
    let statements = match document.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => vec![],
    };
    let texts = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    };
    for s in statements {
        if s.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        let resources = texts(s.get("Resource"));
        for a in texts(s.get("Action")) {
            let service = a.split_once(':').map(|(s, _)| s).unwrap_or("*").to_string();
            let line = lines.entry(service.clone()).or_insert_with(|| SummaryLine {
                service,
                access: vec![],
                actions: vec![],
                resources: vec![],
            });
            if let Some(l) = level_of(&a)
                && !line.access.contains(&l)
            {
                line.access.push(l);
            }
            if !line.actions.contains(&a) {
                line.actions.push(a);
            }
            for r in &resources {
                if !line.resources.contains(r) {
                    line.resources.push(r.clone());
                }
            }
        }
    }
    let mut out: Vec<SummaryLine> = lines.into_values().collect();
    for l in &mut out {
        l.access.sort();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_three_shapes_parse() {
        let exact = Scope::from_json(&json!({"actions": ["s3:GetObject", "s3:ListBucket"], "resources": ["arn:aws:s3:::prod-logs", "arn:aws:s3:::prod-logs/*"]})).unwrap();
        assert!(matches!(exact, Scope::Exact { ref actions, .. } if actions.len() == 2));
        let access =
            Scope::from_json(&json!({"access": "read", "services": ["s3", "logs"]})).unwrap();
        assert_eq!(
            access,
            Scope::Access {
                access: AccessLevel::Read,
                services: vec!["s3".into(), "logs".into()],
                resources: vec![]
            }
        );
        let words = Scope::from_json(&json!({"describe": "read the prod-logs bucket"})).unwrap();
        assert!(words.is_described());
        // Stored and read back unchanged (untagged serde)
        for s in [exact, access, words] {
            let back: Scope = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn bad_scopes_name_their_field() {
        let cases = [
            (json!("s3:*"), "scope"),
            (json!({}), "scope"),
            (json!({"actions": [], "resources": ["*"]}), "scope.actions"),
            (
                json!({"actions": ["GetObject"], "resources": ["*"]}),
                "scope.actions",
            ),
            (json!({"actions": ["s3:GetObject"]}), "scope.resources"),
            (
                json!({"actions": ["s3:GetObject"], "resources": ["prod-logs"]}),
                "scope.resources",
            ),
            (
                json!({"access": "admin", "services": ["s3"]}),
                "scope.access",
            ),
            (json!({"access": "read"}), "scope.services"),
            (
                json!({"access": "read", "services": ["S3!"]}),
                "scope.services",
            ),
            (
                json!({"access": "read", "services": ["s3"], "actions": ["s3:GetObject"]}),
                "scope.actions",
            ),
            (json!({"describe": ""}), "scope.describe"),
            (
                json!({"describe": "x", "services": ["s3"]}),
                "scope.describe",
            ),
            (
                json!({"actions": ["s3:GetObject"], "resources": ["*"], "effect": "Deny"}),
                "scope.effect",
            ),
        ];
        for (v, field) in cases {
            let e = Scope::from_json(&v).unwrap_err();
            assert_eq!(e.field, field, "{v}: {e}");
        }
    }

    #[test]
    fn the_catalog_reads_ceiling_session_policy_and_mode() {
        let ok = r#"
defaults:
  approvers: { emails: [lead@example.com] }
entitlements:
  - name: Logs
    role_arn: arn:aws:iam::123456789012:role/Logs
    ceiling: ["s3:Get*", "logs:*"]
    policy_generation: required
  - name: Fixed
    role_arn: arn:aws:iam::123456789012:role/Fixed
    session_policy:
      Version: "2012-10-17"
      Statement: [{Effect: Allow, Action: ["ec2:DescribeInstances"], Resource: "*"}]
  - name: Plain
    role_arn: arn:aws:iam::123456789012:role/Plain
"#;
        let c = crate::Catalog::parse(ok, "c.yaml").unwrap();
        let logs = &c.get("Logs").unwrap().policy;
        assert_eq!(logs.ceiling, vec!["s3:Get*", "logs:*"]);
        assert_eq!(logs.generation, GenerationMode::Required);
        let fixed = &c.get("Fixed").unwrap().policy;
        assert_eq!(fixed.generation, GenerationMode::Off);
        assert!(
            fixed
                .session_policy
                .as_deref()
                .unwrap()
                .contains("ec2:DescribeInstances")
        );
        assert_eq!(c.get("Plain").unwrap().policy, EntitlementPolicy::default());
        let bad = [
            ("ceiling: [\"GetObject\"]", "ceiling"),
            ("session_policy: 42", "session_policy"),
            ("session_policy: \"{not json\"", "session_policy"),
            ("policy_generation: sometimes", "policy_generation"),
            (
                "policy_generation: required\n    session_policy: {Version: \"2012-10-17\", Statement: [{Effect: Allow, Action: \"s3:GetObject\", Resource: \"*\"}]}",
                "policy_generation",
            ),
        ];
        for (extra, field) in bad {
            let text = format!(
                "entitlements:\n  - name: X\n    role_arn: arn:aws:iam::123456789012:role/X\n    {extra}\n"
            );
            let e = crate::Catalog::parse(&text, "c.yaml").unwrap_err();
            assert!(
                e.field.as_deref() == Some(field) || e.message.contains(field),
                "{extra}: {e}"
            );
        }
    }

    #[test]
    fn attach_entitlements_take_a_scope_only_under_a_ceiling() {
        let attach = |extra: &str| {
            format!(
                "defaults: {{approvers: {{emails: [lead@example.com]}}}}\nentitlements:\n  - name: A\n    policy_name: ReadOnlyAccess\n    account: \"123456789012\"\n    {extra}\n"
            )
        };
        // GIVEN a ceiling THEN `required` is accepted
        let c = crate::Catalog::parse(
            &attach("ceiling: [\"s3:Get*\"]\n    policy_generation: required"),
            "c.yaml",
        )
        .unwrap();
        assert_eq!(
            c.get("A").unwrap().policy.generation,
            GenerationMode::Required
        );
        // WITHOUT one, or with a fixed policy, it is a catalog error naming the field
        for (extra, field) in [
            ("policy_generation: required", "policy_generation"),
            (
                "session_policy: {Version: \"2012-10-17\", Statement: [{Effect: Allow, Action: \"s3:GetObject\", Resource: \"*\"}]}",
                "session_policy",
            ),
        ] {
            let e = crate::Catalog::parse(&attach(extra), "c.yaml").unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{extra}: {e}");
        }
    }

    #[test]
    fn the_digest_is_sha256_hex() {
        assert_eq!(
            digest(""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_summary_groups_allowed_actions_by_service() {
        let doc = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": ["arn:aws:s3:::b/*"]},
            {"Effect": "Allow", "Action": "logs:GetLogEvents", "Resource": "*"},
            {"Effect": "Deny", "Action": "*", "Resource": "*"}
        ]});
        let level = |a: &str| {
            Some(if a.ends_with("ListBucket") {
                AccessLevel::List
            } else {
                AccessLevel::Read
            })
        };
        let s = summarize(&doc, level);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].service, "logs");
        assert_eq!(s[1].access, vec![AccessLevel::Read, AccessLevel::List]);
        assert_eq!(s[1].resources, vec!["arn:aws:s3:::b/*"]);
    }
}
