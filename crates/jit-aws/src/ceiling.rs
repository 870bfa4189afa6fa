//! A role's own permissions as a policy ceiling ([`RoleCeilings`]): the
//! actions allowed by the managed policies attached to it (their default
//! versions, read with `iam:GetPolicyVersion`) and by its inline policies.
//!
//! "Where the broker may": a role whose policies the broker may not read
//! (`AccessDenied`), a policy that allows `*` or is written with
//! `NotAction`, gives no ceiling (`None`): the role still caps every
//! session, only the early refusal of an impossible scope is lost.
//! Deny statements are not subtracted (the ceiling may be wider than the
//! role; never narrower than what it allows). Same-account, as every IAM
//! adapter here.

use async_trait::async_trait;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use jit_core::RoleArn;
use jit_core::policy::{AnalyzeError, RoleCeilings};
use serde_json::Value;

use crate::account::decode_policy_document;
use crate::error::describe;

/// Most managed policies read for one role (IAM allows 20 attached by
/// default, 10 more on request).
const MAX_POLICIES: usize = 50;

/// IAM `ListAttachedRolePolicies`, `GetPolicy`, `GetPolicyVersion`,
/// `ListRolePolicies`, `GetRolePolicy`.
#[derive(Debug, Clone)]
pub struct IamCeilings {
    client: aws_sdk_iam::Client,
}

impl IamCeilings {
    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        IamCeilings {
            client: aws_sdk_iam::Client::new(config),
        }
    }
}

enum Read<T> {
    Got(T),
    /// The broker may not read it.
    Denied,
}

fn read<T, E, R>(operation: &str, r: Result<T, SdkError<E, R>>) -> Result<Read<T>, AnalyzeError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match r {
        Ok(v) => Ok(Read::Got(v)),
        Err(SdkError::ServiceError(s))
            if matches!(
                s.err().code(),
                Some("AccessDenied" | "AccessDeniedException" | "NoSuchEntity")
            ) =>
        {
            Ok(Read::Denied)
        }
        Err(e) => Err(AnalyzeError {
            message: describe(operation, &e),
        }),
    }
}

/// The `Allow` actions of one document, or `None` when it has no usable
/// bound (`*`, `NotAction`, not a policy).
pub fn allowed_actions(document: &str) -> Option<Vec<String>> {
    let doc: Value = serde_json::from_str(&decode_policy_document(document)).ok()?;
    let statements = match doc.get("Statement")? {
        Value::Array(a) => a.clone(),
        o @ Value::Object(_) => vec![o.clone()],
        _ => return None,
    };
    let mut out = vec![];
    for s in statements {
        if s.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        if s.get("NotAction").is_some() {
            return None;
        }
        let actions = match s.get("Action")? {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()?,
            _ => return None,
        };
        for a in actions {
            if a == "*" || !a.contains(':') {
                return None;
            }
            // IAM action names are case-insensitive; the table's case is kept
            // by the validator's own matching.
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Some(out)
}

#[async_trait]
impl RoleCeilings for IamCeilings {
    async fn ceiling(&self, role: &RoleArn) -> Result<Option<Vec<String>>, AnalyzeError> {
        let name = role.role_name();
        let mut actions: Vec<String> = vec![];
        let mut add = |found: Option<Vec<String>>| -> bool {
            match found {
                Some(list) => {
                    for a in list {
                        if !actions.contains(&a) {
                            actions.push(a);
                        }
                    }
                    true
                }
                None => false,
            }
        };

        let mut arns = vec![];
        let mut marker = None;
        loop {
            let out = match read(
                "ListAttachedRolePolicies",
                self.client
                    .list_attached_role_policies()
                    .role_name(name)
                    .set_marker(marker.take())
                    .send()
                    .await,
            )? {
                Read::Got(o) => o,
                Read::Denied => return Ok(None),
            };
            arns.extend(
                out.attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_string)),
            );
            match (out.is_truncated(), out.marker()) {
                (true, Some(m)) if arns.len() < MAX_POLICIES => marker = Some(m.to_string()),
                (true, _) => return Ok(None),
                _ => break,
            }
        }
        for arn in arns {
            let policy = match read(
                "GetPolicy",
                self.client.get_policy().policy_arn(&arn).send().await,
            )? {
                Read::Got(o) => o,
                Read::Denied => return Ok(None),
            };
            let Some(version) = policy.policy().and_then(|p| p.default_version_id()) else {
                return Ok(None);
            };
            let doc = match read(
                "GetPolicyVersion",
                self.client
                    .get_policy_version()
                    .policy_arn(&arn)
                    .version_id(version)
                    .send()
                    .await,
            )? {
                Read::Got(o) => o,
                Read::Denied => return Ok(None),
            };
            let text = doc
                .policy_version()
                .and_then(|v| v.document())
                .unwrap_or_default();
            if !add(allowed_actions(text)) {
                return Ok(None);
            }
        }

        let names = match read(
            "ListRolePolicies",
            self.client
                .list_role_policies()
                .role_name(name)
                .send()
                .await,
        )? {
            Read::Got(o) => o.policy_names().to_vec(),
            Read::Denied => return Ok(None),
        };
        for policy in names {
            let doc = match read(
                "GetRolePolicy",
                self.client
                    .get_role_policy()
                    .role_name(name)
                    .policy_name(&policy)
                    .send()
                    .await,
            )? {
                Read::Got(o) => o,
                Read::Denied => return Ok(None),
            };
            if !add(allowed_actions(doc.policy_document())) {
                return Ok(None);
            }
        }
        Ok(Some(actions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_actions_read_allows_and_give_up_on_what_cannot_bound() {
        let doc = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":["s3:GetObject","s3:List*"],"Resource":"*"},
            {"Effect":"Allow","Action":"logs:GetLogEvents","Resource":"*"},
            {"Effect":"Deny","Action":"*","Resource":"*"}]}"#;
        assert_eq!(
            allowed_actions(doc),
            Some(vec![
                "s3:GetObject".to_string(),
                "s3:List*".into(),
                "logs:GetLogEvents".into()
            ])
        );
        let encoded = "%7B%22Statement%22%3A%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22ec2%3ADescribe%2A%22%2C%22Resource%22%3A%22%2A%22%7D%7D";
        assert_eq!(
            allowed_actions(encoded),
            Some(vec!["ec2:Describe*".to_string()])
        );
        for unbounded in [
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}]}"#,
            "not json",
        ] {
            assert_eq!(allowed_actions(unbounded), None, "{unbounded}");
        }
    }
}
