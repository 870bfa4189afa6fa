//! The Lambda's configuration: read from the environment once at init and
//! validated there, so a misconfigured function fails its first cold start
//! with the variable named, not a user's request later.

use std::path::PathBuf;

use crate::TrustPolicy;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub table: String,
    pub audit_table: String,
    /// `JIT_LEDGER_TABLE`: the grant ledger a revoke's IAM changes are
    /// written to.
    pub ledger_table: String,
    pub state_machine_arn: String,
    /// `JIT_INSTANT_STATE_MACHINE_ARN`: the Express instant workflow
    /// (`state-machine/instant.asl.json`) a waiting create runs with
    /// `StartSyncExecution`; unset, a waiting create waits on the Standard
    /// workflow alone.
    pub instant_state_machine_arn: Option<String>,
    pub catalog_path: PathBuf,
    pub trust: TrustPolicy,
    pub demo_mode: bool,
    /// `JIT_FEDERATION_URL`: the AWS federation endpoint console sign-in
    /// goes through (`https://signin.aws.amazon.com/federation`).
    pub federation_url: String,
    /// `JIT_BROKER_PRINCIPALS`: the role ARNs that assume the catalog's
    /// roles (the Grant step's and the credential-vending function's),
    /// comma-separated; `GET /catalog/check` judges every trust policy
    /// for each. Empty: trust policies are not judged.
    pub broker_principals: Vec<jit_core::catalog_check::BrokerPrincipal>,
    /// `JIT_POLICY_FUNCTION`: the `generate-policy` function (name or ARN)
    /// a request's `scope` is checked with at create and previewed with;
    /// unset, a scoped request answers `503 policy_generation_unavailable`.
    pub policy_function: Option<String>,
    /// `JIT_POLICY_AI`: that function has an AI generator configured, so a
    /// scope in words (`describe`) is accepted.
    pub policy_ai: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn list(v: Option<String>) -> Vec<String> {
    v.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A boolean variable: unset or empty is `false`.
fn flag(var: &'static str, v: Option<String>) -> Result<bool, ConfigError> {
    match v.as_deref() {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ConfigError {
            var,
            message: format!("`{other}` must be true or false"),
        }),
    }
}

/// A Lambda function's name or ARN, when set.
fn function_name(var: &'static str, v: Option<String>) -> Result<Option<String>, ConfigError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(name)
            if name.len() <= 170
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_:".contains(c)) =>
        {
            Ok(Some(name.to_string()))
        }
        Some(name) => Err(ConfigError {
            var,
            message: format!(
                "`{name}` is not a Lambda function name or ARN (up to 170 of a-z A-Z 0-9 - _ :)"
            ),
        }),
    }
}

fn table_name(var: &'static str, v: Option<String>, default: &str) -> Result<String, ConfigError> {
    let name = v.unwrap_or_else(|| default.to_string());
    let ok = (3..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(name)
    } else {
        Err(ConfigError {
            var,
            message: format!("`{name}` is not a DynamoDB table name (3-255 of a-z A-Z 0-9 _ - .)"),
        })
    }
}

/// The claim name, when set: a JWT claim name is visible ASCII.
fn email_verified_claim(v: Option<String>) -> Result<String, ConfigError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(crate::DEFAULT_EMAIL_VERIFIED_CLAIM.to_string()),
        Some(name) if name.len() <= 128 && name.chars().all(|c| c.is_ascii_graphic()) => {
            Ok(name.to_string())
        }
        Some(name) => Err(ConfigError {
            var: "JIT_EMAIL_VERIFIED_CLAIM",
            message: format!("`{name}` is not a JWT claim name (1-128 visible ASCII characters)"),
        }),
    }
}

impl Config {
    /// Reads the configuration through `get` (the process environment in
    /// `main`, a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let state_machine_arn = get("JIT_STATE_MACHINE_ARN").ok_or(ConfigError {
            var: "JIT_STATE_MACHINE_ARN",
            message: "is required: the approval state machine's ARN".into(),
        })?;
        if !state_machine_arn.starts_with("arn:") || !state_machine_arn.contains(":states:") {
            return Err(ConfigError {
                var: "JIT_STATE_MACHINE_ARN",
                message: format!("`{state_machine_arn}` is not a Step Functions state machine ARN"),
            });
        }
        let instant_state_machine_arn =
            get("JIT_INSTANT_STATE_MACHINE_ARN").filter(|a| !a.is_empty());
        if let Some(a) = &instant_state_machine_arn
            && let Err(e) = jit_aws::StateMachineArn::parse(a.clone())
        {
            return Err(ConfigError {
                var: "JIT_INSTANT_STATE_MACHINE_ARN",
                message: e.to_string(),
            });
        }
        let demo_mode = flag("JIT_DEMO_MODE", get("JIT_DEMO_MODE"))?;
        let federation_url = get("JIT_FEDERATION_URL")
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| jit_aws::console::DEFAULT_FEDERATION_URL.to_string());
        if let Err(e) = jit_aws::FederationSignin::new(&federation_url) {
            return Err(ConfigError {
                var: "JIT_FEDERATION_URL",
                message: e.to_string(),
            });
        }
        let broker_principals = list(get("JIT_BROKER_PRINCIPALS"))
            .iter()
            .map(|a| jit_core::catalog_check::BrokerPrincipal::parse(a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| ConfigError {
                var: "JIT_BROKER_PRINCIPALS",
                message,
            })?;
        Ok(Config {
            table: table_name("JIT_TABLE", get("JIT_TABLE"), "JITAccessRequests")?,
            audit_table: table_name("JIT_AUDIT_TABLE", get("JIT_AUDIT_TABLE"), "JITAccessAudit")?,
            ledger_table: table_name(
                "JIT_LEDGER_TABLE",
                get("JIT_LEDGER_TABLE"),
                jit_aws::DEFAULT_LEDGER_TABLE,
            )?,
            state_machine_arn,
            instant_state_machine_arn,
            catalog_path: PathBuf::from(
                get("JIT_CATALOG").unwrap_or_else(|| "/opt/catalog.yaml".into()),
            ),
            trust: TrustPolicy {
                principals: list(get("JIT_TRUSTED_CALLERS")),
                api_key_ids: list(get("JIT_TRUSTED_API_KEY_IDS")),
                decider_principals: list(get("JIT_TRUSTED_DECIDER_CALLERS")),
                decider_api_key_ids: list(get("JIT_TRUSTED_DECIDER_API_KEY_IDS")),
                email_verified_claim: email_verified_claim(get("JIT_EMAIL_VERIFIED_CLAIM"))?,
                groups_claim: get("JIT_GROUPS_CLAIM").filter(|g| !g.trim().is_empty()),
            },
            demo_mode,
            federation_url,
            broker_principals,
            policy_function: function_name("JIT_POLICY_FUNCTION", get("JIT_POLICY_FUNCTION"))?,
            policy_ai: flag("JIT_POLICY_AI", get("JIT_POLICY_AI"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    const SM: (&str, &str) = (
        "JIT_STATE_MACHINE_ARN",
        "arn:aws:states:us-east-1:123456789012:stateMachine:jit",
    );

    #[test]
    fn defaults_are_the_seeds() {
        let c = cfg(&[SM]).unwrap();
        assert_eq!(c.table, "JITAccessRequests");
        assert_eq!(c.audit_table, "JITAccessAudit");
        assert_eq!(c.ledger_table, "JITGrantLedger");
        assert!(!c.demo_mode);
        assert!(c.trust.principals.is_empty());
    }

    #[test]
    fn the_instant_machine_is_optional_and_checked() {
        assert_eq!(cfg(&[SM]).unwrap().instant_state_machine_arn, None);
        let c = cfg(&[
            SM,
            (
                "JIT_INSTANT_STATE_MACHINE_ARN",
                "arn:aws:states:us-east-1:123456789012:stateMachine:jit-instant",
            ),
        ])
        .unwrap();
        assert!(
            c.instant_state_machine_arn
                .unwrap()
                .ends_with(":jit-instant")
        );
        let e = cfg(&[SM, ("JIT_INSTANT_STATE_MACHINE_ARN", "nope")]).unwrap_err();
        assert_eq!(e.var, "JIT_INSTANT_STATE_MACHINE_ARN");
    }

    #[test]
    fn the_policy_function_is_optional_and_checked() {
        let c = cfg(&[SM]).unwrap();
        assert_eq!(c.policy_function, None);
        assert!(!c.policy_ai);
        let c = cfg(&[
            SM,
            ("JIT_POLICY_FUNCTION", "jit-GeneratePolicyFunction-Ab12"),
            ("JIT_POLICY_AI", "true"),
        ])
        .unwrap();
        assert_eq!(
            c.policy_function.as_deref(),
            Some("jit-GeneratePolicyFunction-Ab12")
        );
        assert!(c.policy_ai);
        let e = cfg(&[SM, ("JIT_POLICY_FUNCTION", "not a name")]).unwrap_err();
        assert_eq!(e.var, "JIT_POLICY_FUNCTION");
        let e = cfg(&[SM, ("JIT_POLICY_AI", "yes")]).unwrap_err();
        assert_eq!(e.var, "JIT_POLICY_AI");
    }

    #[test]
    fn broker_principals_are_role_arns() {
        assert!(cfg(&[SM]).unwrap().broker_principals.is_empty());
        let c = cfg(&[
            SM,
            (
                "JIT_BROKER_PRINCIPALS",
                "arn:aws:iam::123456789012:role/jit-grant, arn:aws:iam::123456789012:role/jit-access",
            ),
        ])
        .unwrap();
        let arns: Vec<&str> = c.broker_principals.iter().map(|b| b.arn()).collect();
        assert_eq!(
            arns,
            [
                "arn:aws:iam::123456789012:role/jit-grant",
                "arn:aws:iam::123456789012:role/jit-access"
            ]
        );
        let e = cfg(&[SM, ("JIT_BROKER_PRINCIPALS", "jit-grant")]).unwrap_err();
        assert_eq!(e.var, "JIT_BROKER_PRINCIPALS");
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(cfg(&[]).unwrap_err().var, "JIT_STATE_MACHINE_ARN");
        assert_eq!(
            cfg(&[SM, ("JIT_DEMO_MODE", "yes")]).unwrap_err().var,
            "JIT_DEMO_MODE"
        );
        assert_eq!(
            cfg(&[SM, ("JIT_TABLE", "a b")]).unwrap_err().var,
            "JIT_TABLE"
        );
        assert_eq!(
            cfg(&[("JIT_STATE_MACHINE_ARN", "nope")]).unwrap_err().var,
            "JIT_STATE_MACHINE_ARN"
        );
        assert_eq!(
            cfg(&[SM, ("JIT_FEDERATION_URL", "http://signin.example.com/f")])
                .unwrap_err()
                .var,
            "JIT_FEDERATION_URL"
        );
    }

    #[test]
    fn the_federation_endpoint_defaults_to_aws() {
        let c = cfg(&[SM]).unwrap();
        assert_eq!(c.federation_url, "https://signin.aws.amazon.com/federation");
    }

    #[test]
    fn trusted_lists() {
        let c = cfg(&[
            SM,
            (
                "JIT_TRUSTED_CALLERS",
                "arn:aws:sts::1:assumed-role/bot/x, ,b",
            ),
            ("JIT_TRUSTED_API_KEY_IDS", "k1"),
            (
                "JIT_TRUSTED_DECIDER_CALLERS",
                "arn:aws:sts::1:assumed-role/approver-bot/x",
            ),
            ("JIT_TRUSTED_DECIDER_API_KEY_IDS", "k2, k3"),
        ])
        .unwrap();
        assert_eq!(
            c.trust.decider_principals,
            vec!["arn:aws:sts::1:assumed-role/approver-bot/x"]
        );
        assert_eq!(c.trust.decider_api_key_ids, vec!["k2", "k3"]);
        assert_eq!(
            c.trust.principals,
            vec!["arn:aws:sts::1:assumed-role/bot/x", "b"]
        );
        assert_eq!(c.trust.api_key_ids, vec!["k1"]);
    }

    #[test]
    fn the_email_verified_claim_defaults_and_is_checked() {
        assert_eq!(
            cfg(&[SM]).unwrap().trust.email_verified_claim,
            "email_verified"
        );
        let c = cfg(&[SM, ("JIT_EMAIL_VERIFIED_CLAIM", "custom:email_ok")]).unwrap();
        assert_eq!(c.trust.email_verified_claim, "custom:email_ok");
        assert_eq!(
            cfg(&[SM, ("JIT_EMAIL_VERIFIED_CLAIM", "two words")])
                .unwrap_err()
                .var,
            "JIT_EMAIL_VERIFIED_CLAIM"
        );
    }
}
