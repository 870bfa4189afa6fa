//! The checks every session policy passes, whatever generated it: IAM
//! policy grammar, actions that exist, no `NotAction`/`NotResource`, no
//! `Allow` beyond the entitlement's ceiling, and a packed size STS accepts.

use jit_core::policy::GenerationError;
use jit_core::session_policy::{self, SessionPolicyError};
use serde_json::{Map, Value};

use crate::table::{Table, glob};

/// The policy language version every document must name.
pub const VERSION: &str = "2012-10-17";

/// A validated document: its compact text, its packed size and notes.
#[derive(Debug, Clone)]
pub struct Valid {
    pub document: String,
    pub value: Value,
    pub packed_chars: usize,
}

/// Whether `action` (a single action, `service:Name`) lies within the
/// ceiling's patterns. No ceiling: everything does.
pub fn within_ceiling(action: &str, ceiling: &[String]) -> bool {
    ceiling.is_empty() || {
        let a = action.to_ascii_lowercase();
        ceiling
            .iter()
            .any(|c| c == "*" || glob(&c.to_ascii_lowercase(), &a))
    }
}

fn texts(v: &Value, what: &str, field: &str) -> Result<Vec<String>, GenerationError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    GenerationError::refused(field, format!("has a `{what}` that is not text"))
                })
            })
            .collect(),
        _ => Err(GenerationError::refused(
            field,
            format!("has a statement whose `{what}` is not text or a non-empty list of text"),
        )),
    }
}

/// Validates `text` as a session policy for an entitlement with `ceiling`.
/// Refusals name `field` (the scope, or the catalog's `session_policy`).
pub fn validate(
    table: &Table,
    text: &str,
    ceiling: &[String],
    field: &str,
) -> Result<Valid, GenerationError> {
    let refused = |m: String| GenerationError::refused(field, m);
    let value: Value = serde_json::from_str(text)
        .map_err(|e| refused(format!("is not a policy document: not JSON ({e})")))?;
    let Value::Object(doc) = &value else {
        return Err(refused(
            "is not a policy document: not a JSON object".into(),
        ));
    };
    for k in doc.keys() {
        if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
            return Err(refused(format!(
                "is not a policy document: unknown top-level element `{k}`"
            )));
        }
    }
    if doc.get("Version").and_then(Value::as_str) != Some(VERSION) {
        return Err(refused(format!(
            "must name `\"Version\": \"{VERSION}\"` (the policy language its conditions and variables need)"
        )));
    }
    let statements: Vec<&Map<String, Value>> = match doc.get("Statement") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|s| {
                s.as_object()
                    .ok_or_else(|| refused("has a statement that is not a JSON object".into()))
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Object(o)) => vec![o],
        _ => {
            return Err(refused(
                "has no `Statement` (an object or a non-empty list)".into(),
            ));
        }
    };
    let mut sids = vec![];
    for (i, s) in statements.iter().enumerate() {
        let n = i + 1;
        for k in s.keys() {
            match k.as_str() {
                "Sid" | "Effect" | "Action" | "Resource" | "Condition" => {}
                "NotAction" | "NotResource" => {
                    return Err(refused(format!(
                        "statement {n} uses `{k}`, which allows everything it does not name; name what is allowed with `Action` and `Resource`"
                    )));
                }
                "Principal" | "NotPrincipal" => {
                    return Err(refused(format!(
                        "statement {n} names a `{k}`; a session policy applies to its session and takes none"
                    )));
                }
                other => {
                    return Err(refused(format!(
                        "statement {n} has an unknown element `{other}`"
                    )));
                }
            }
        }
        if let Some(sid) = s.get("Sid") {
            let sid = sid
                .as_str()
                .filter(|x| !x.is_empty() && x.chars().all(|c| c.is_ascii_alphanumeric()))
                .ok_or_else(|| {
                    refused(format!(
                        "statement {n} has a `Sid` that is not letters and digits"
                    ))
                })?;
            if sids.contains(&sid) {
                return Err(refused(format!("statement {n} repeats the `Sid` `{sid}`")));
            }
            sids.push(sid);
        }
        let allow = match s.get("Effect").and_then(Value::as_str) {
            Some("Allow") => true,
            Some("Deny") => false,
            _ => {
                return Err(refused(format!(
                    "statement {n} needs `Effect` `Allow` or `Deny`"
                )));
            }
        };
        let actions = texts(
            s.get("Action")
                .ok_or_else(|| refused(format!("statement {n} has no `Action`")))?,
            "Action",
            field,
        )?;
        for a in &actions {
            if a == "*" {
                if allow {
                    return Err(refused(format!(
                        "statement {n} allows every action (`*`); name the actions needed"
                    )));
                }
                continue;
            }
            if !jit_core::policy::is_action_pattern(a) {
                return Err(refused(format!(
                    "statement {n}: `{a}` is not an IAM action (`service:Action`)"
                )));
            }
            let (prefix, name) = a.split_once(':').expect("checked above");
            let service = table.service(prefix).ok_or_else(|| {
                refused(format!(
                    "statement {n}: `{a}` names no AWS service (`{prefix}` is unknown to the action table, {})",
                    table.source
                ))
            })?;
            let matched = service.matching(name);
            if matched.is_empty() {
                return Err(refused(format!(
                    "statement {n}: `{a}` is no action of `{prefix}` in the action table ({})",
                    table.source
                )));
            }
            if allow {
                for m in matched {
                    let full = format!("{prefix}:{}", m.name);
                    if !within_ceiling(&full, ceiling) {
                        return Err(refused(format!(
                            "statement {n}: `{full}` is outside the entitlement's ceiling ({})",
                            ceiling.join(", ")
                        )));
                    }
                }
            }
        }
        let resources = texts(
            s.get("Resource")
                .ok_or_else(|| refused(format!("statement {n} has no `Resource`")))?,
            "Resource",
            field,
        )?;
        for r in &resources {
            if !jit_core::policy::is_resource(r) {
                return Err(refused(format!(
                    "statement {n}: `{r}` is not a resource (`*` or an ARN)"
                )));
            }
        }
        if let Some(c) = s.get("Condition")
            && !c.is_object()
        {
            return Err(refused(format!(
                "statement {n} has a `Condition` that is not an object"
            )));
        }
    }
    let document = serde_json::to_string(&value).expect("a JSON value serializes");
    // The bound's length does not depend on the time: any instant will do.
    let packed = match session_policy::bounded(Some(&document), chrono::DateTime::UNIX_EPOCH) {
        Ok(p) => p.chars().count(),
        Err(SessionPolicyError::TooLong { chars, .. }) => {
            return Err(refused(format!(
                "is too wide to fit: its session policy would be {chars} characters with the window bound, and AWS STS accepts at most {}; name fewer services or actions, or exact resources",
                session_policy::MAX_SESSION_POLICY_CHARS
            )));
        }
        Err(SessionPolicyError::NotAPolicy(m)) => return Err(refused(m)),
    };
    Ok(Valid {
        document,
        value,
        packed_chars: packed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::table;

    fn check(doc: &str, ceiling: &[&str]) -> Result<Valid, String> {
        let c: Vec<String> = ceiling.iter().map(|s| s.to_string()).collect();
        validate(table(), doc, &c, "scope").map_err(|e| e.to_string())
    }

    #[test]
    fn a_good_policy_passes_compact() {
        let v = check(
            r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}]}"#,
            &["s3:Get*"],
        )
        .unwrap();
        assert!(!v.document.contains(' '));
        assert!(v.packed_chars > v.document.len());
    }

    #[test]
    fn each_rule_refuses_with_a_reason() {
        let cases = [
            ("nope", "not JSON"),
            (
                r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#,
                "Version",
            ),
            (r#"{"Version":"2012-10-17","Statement":[]}"#, "Statement"),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}}"#,
                "NotAction",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","NotResource":"arn:aws:s3:::x"}}"#,
                "NotResource",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
                "every action",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObjekt","Resource":"*"}}"#,
                "no action of `s3`",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s4:GetObject","Resource":"*"}}"#,
                "names no AWS service",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:PutObject","Resource":"*"}}"#,
                "outside the entitlement's ceiling",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#,
                "outside the entitlement's ceiling",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"bucket"}}"#,
                "not a resource",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*"}}"#,
                "Principal",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Maybe","Action":"s3:GetObject","Resource":"*"}}"#,
                "Effect",
            ),
        ];
        for (doc, why) in cases {
            let e = check(doc, &["s3:Get*", "s3:List*"]).unwrap_err();
            assert!(e.contains(why), "{doc}: {e}");
        }
    }

    #[test]
    fn a_policy_too_wide_for_sts_says_so() {
        let actions: Vec<String> = table()
            .service("ec2")
            .unwrap()
            .actions
            .iter()
            .take(200)
            .map(|a| format!("\"ec2:{}\"", a.name))
            .collect();
        let doc = format!(
            r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":[{}],"Resource":"*"}}}}"#,
            actions.join(",")
        );
        let e = check(&doc, &[]).unwrap_err();
        assert!(e.contains("too wide") && e.contains("2048"), "{e}");
    }

    #[test]
    fn the_ceiling_matches_patterns() {
        let c = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(within_ceiling("s3:GetObject", &c(&[])));
        assert!(within_ceiling("s3:GetObject", &c(&["s3:*"])));
        assert!(within_ceiling("s3:GetObject", &c(&["S3:get*"])));
        assert!(!within_ceiling("s3:PutObject", &c(&["s3:Get*"])));
        assert!(!within_ceiling("s3:GetObject", &c(&["logs:*"])));
    }
}
