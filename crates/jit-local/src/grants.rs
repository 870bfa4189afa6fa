//! Local stand-ins for STS and IAM.
//!
//! The issuer hands out credentials that are obviously fake (the access key
//! id starts with `LOCALFAKE`) after checking the call the way STS would —
//! duration bounds, session name and source identity syntax, session policy
//! size — because the local mode must fail where AWS would. The attacher
//! records attachments in `<data-dir>/iam-attachments.json` (rewritten
//! atomically), so a grant made before a restart is still detached after it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use jit_core::ports::{
    AssumeRoleSpec, Clock, CredentialIssuer, GrantError, IamPrincipal, IssuedCredentials,
    PolicyAttacher, Secret,
};
use jit_core::{AccountId, PolicyName};
use std::sync::Arc;

/// Role chaining (a Lambda assuming a role) caps sessions at one hour; the
/// local issuer applies the same cap so local mode does not promise more.
pub const MAX_CHAINED_SESSION_SECS: u32 = 3600;
/// STS's limit on a plaintext session policy (the one the broker's own
/// bounding checks too).
pub use jit_core::session_policy::MAX_SESSION_POLICY_CHARS;

pub struct LocalIssuer {
    clock: Arc<dyn Clock>,
}

impl LocalIssuer {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        LocalIssuer { clock }
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    buf.iter().map(|b| format!("{b:02X}")).collect()
}

/// The checks STS makes on an `AssumeRole` call, as far as they can be made
/// without an account.
pub fn check_assume_role(spec: &AssumeRoleSpec) -> Result<(), GrantError> {
    if !(900..=MAX_CHAINED_SESSION_SECS).contains(&spec.duration_secs) {
        return Err(GrantError::DurationTooLong(format!(
            "DurationSeconds {} is outside 900..={MAX_CHAINED_SESSION_SECS} (role chaining caps sessions at 1 hour)",
            spec.duration_secs
        )));
    }
    let name_ok = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c))
    };
    if !name_ok(&spec.session_name, 2, 64) {
        return Err(GrantError::Other(format!(
            "RoleSessionName `{}` is not 2-64 of [\\w+=,.@-]",
            spec.session_name
        )));
    }
    if !name_ok(&spec.source_identity, 2, 64) {
        return Err(GrantError::Other(format!(
            "SourceIdentity `{}` is not 2-64 of [\\w+=,.@-]",
            spec.source_identity
        )));
    }
    if let Some(p) = &spec.session_policy {
        if p.chars().count() > MAX_SESSION_POLICY_CHARS {
            return Err(GrantError::Other(format!(
                "the session policy is {} characters; STS accepts at most {MAX_SESSION_POLICY_CHARS}",
                p.chars().count()
            )));
        }
        let doc = serde_json::from_str::<serde_json::Value>(p)
            .map_err(|e| GrantError::Other(format!("the session policy is not JSON: {e}")))?;
        // STS answers MalformedPolicyDocument for anything but a policy.
        if doc.get("Statement").is_none() {
            return Err(GrantError::Other(
                "MalformedPolicyDocument: the session policy has no Statement".into(),
            ));
        }
    }
    Ok(())
}

#[async_trait]
impl CredentialIssuer for LocalIssuer {
    async fn assume_role(&self, spec: &AssumeRoleSpec) -> Result<IssuedCredentials, GrantError> {
        check_assume_role(spec)?;
        Ok(IssuedCredentials {
            access_key_id: format!("LOCALFAKE{}", random_hex(6)),
            secret_access_key: Secret::new(format!("local-fake-secret-{}", random_hex(16))),
            session_token: Secret::new(format!("local-fake-session-{}", random_hex(24))),
            expiration: self.clock.now() + chrono::Duration::seconds(spec.duration_secs as i64),
        })
    }
}

type Attachment = (String, IamPrincipal, String);

/// Managed-policy attachments, kept in a JSON file; and the inline
/// policies scoped attach grants put on users and roles, in another beside
/// it ([`crate::PRINCIPAL_POLICIES_FILE`]).
pub struct LocalAttacher {
    path: PathBuf,
    state: Mutex<BTreeSet<AttachmentRow>>,
    inline_path: PathBuf,
    /// Principal ARN (`arn:aws:iam::<account>:user/<name>`) -> name -> document.
    inline: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct AttachmentRow {
    account: String,
    principal_kind: String,
    principal: String,
    policy: String,
}

impl AttachmentRow {
    fn new(account: &AccountId, p: &IamPrincipal, policy: &PolicyName) -> Self {
        let (kind, name) = match p {
            IamPrincipal::User(n) => ("user", n),
            IamPrincipal::Role(n) => ("role", n),
        };
        AttachmentRow {
            account: account.to_string(),
            principal_kind: kind.into(),
            principal: name.clone(),
            policy: policy.to_string(),
        }
    }
}

impl LocalAttacher {
    /// Opens (or starts) the attachment file.
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        let state = crate::json_file::load(&path)?;
        let inline_path = path.with_file_name(crate::PRINCIPAL_POLICIES_FILE);
        let inline = crate::json_file::load(&inline_path)?;
        Ok(LocalAttacher {
            path,
            state: Mutex::new(state),
            inline_path,
            inline: Mutex::new(inline),
        })
    }

    /// The inline policies on users and roles now: (principal ARN, name,
    /// document), for tests, the reconciler and `iam state`.
    pub fn inline_policies(&self) -> Vec<(String, String, String)> {
        self.inline
            .lock()
            .expect("inline policies lock")
            .iter()
            .flat_map(|(p, ps)| {
                ps.iter()
                    .map(move |(n, d)| (p.clone(), n.clone(), d.clone()))
            })
            .collect()
    }

    fn update_inline(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, BTreeMap<String, String>>),
    ) -> Result<(), GrantError> {
        let mut state = self.inline.lock().expect("inline policies lock");
        let mut next = state.clone();
        change(&mut next);
        next.retain(|_, ps| !ps.is_empty());
        crate::json_file::replace(&self.inline_path, &next)?;
        *state = next;
        Ok(())
    }

    /// What is attached now, for tests and the operator.
    pub fn attachments(&self) -> Vec<Attachment> {
        self.state
            .lock()
            .expect("attachments lock")
            .iter()
            .map(|r| {
                let p = if r.principal_kind == "role" {
                    IamPrincipal::Role(r.principal.clone())
                } else {
                    IamPrincipal::User(r.principal.clone())
                };
                (r.account.clone(), p, r.policy.clone())
            })
            .collect()
    }

    fn save(&self, rows: &BTreeSet<AttachmentRow>) -> Result<(), GrantError> {
        crate::json_file::replace(&self.path, rows)
    }
}

#[async_trait]
impl PolicyAttacher for LocalAttacher {
    async fn attach(
        &self,
        account: &AccountId,
        to: &IamPrincipal,
        policy: &PolicyName,
    ) -> Result<(), GrantError> {
        let mut rows = self.state.lock().expect("attachments lock");
        let mut next = rows.clone();
        next.insert(AttachmentRow::new(account, to, policy));
        self.save(&next)?;
        *rows = next;
        Ok(())
    }

    async fn detach(
        &self,
        account: &AccountId,
        from: &IamPrincipal,
        policy: &PolicyName,
    ) -> Result<(), GrantError> {
        let mut rows = self.state.lock().expect("attachments lock");
        let mut next = rows.clone();
        next.remove(&AttachmentRow::new(account, from, policy));
        self.save(&next)?;
        *rows = next;
        Ok(())
    }

    async fn put_inline_policy(
        &self,
        account: &AccountId,
        to: &IamPrincipal,
        name: &str,
        document: &str,
    ) -> Result<(), GrantError> {
        // IAM's own checks that matter here: JSON, and 2,048 characters
        // (whitespace aside) for a user's inline policies.
        serde_json::from_str::<serde_json::Value>(document)
            .map_err(|e| GrantError::Other(format!("MalformedPolicyDocument: {e}")))?;
        let packed = document.chars().filter(|c| !c.is_whitespace()).count();
        if matches!(to, IamPrincipal::User(_)) && packed > MAX_SESSION_POLICY_CHARS {
            return Err(GrantError::Other(format!(
                "LimitExceeded: a user's inline policies may total {MAX_SESSION_POLICY_CHARS} characters; this one is {packed}"
            )));
        }
        let arn = jit_core::ledger::principal_arn(account, to);
        self.update_inline(|s| {
            s.entry(arn)
                .or_default()
                .insert(name.to_string(), document.to_string());
        })
    }

    async fn delete_inline_policy(
        &self,
        account: &AccountId,
        from: &IamPrincipal,
        name: &str,
    ) -> Result<(), GrantError> {
        let arn = jit_core::ledger::principal_arn(account, from);
        self.update_inline(|s| {
            if let Some(ps) = s.get_mut(&arn) {
                ps.remove(name);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(duration_secs: u32, session_policy: Option<String>) -> AssumeRoleSpec {
        AssumeRoleSpec {
            role_arn: jit_core::RoleArn::parse("arn:aws:iam::123456789012:role/JIT-Admin").unwrap(),
            session_name: "alice@example.com-01J".into(),
            source_identity: "alice@example.com".into(),
            duration_secs,
            session_policy,
            tags: vec![],
        }
    }

    #[test]
    fn the_local_issuer_refuses_what_sts_refuses() {
        let end = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let bounded = jit_core::session_policy::bounded(None, end).unwrap();
        // (duration, policy, accepted)
        let too_long = format!(
            r#"{{"Statement":[{{"Effect":"Allow","Action":"*","Resource":"{}"}}]}}"#,
            "r".repeat(MAX_SESSION_POLICY_CHARS)
        );
        let cases = [
            (900, Some(bounded.clone()), true),
            (3600, Some(bounded.clone()), true),
            (900, None, true),
            (899, Some(bounded.clone()), false),
            (3601, Some(bounded), false),
            (900, Some(too_long), false),
            (900, Some("{not json".into()), false),
            (900, Some(r#"{"Version":"2012-10-17"}"#.into()), false),
        ];
        for (duration, policy, accepted) in cases {
            let shown = format!("{duration} {policy:?}");
            assert_eq!(
                check_assume_role(&spec(duration, policy)).is_ok(),
                accepted,
                "{shown}"
            );
        }
    }
}
