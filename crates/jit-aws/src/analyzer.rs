//! IAM Access Analyzer `ValidatePolicy` behind the [`PolicyAnalyzer`]
//! port: every policy the GeneratePolicy step accepts is also checked by
//! AWS's own policy grammar and security checks (`ERROR` and
//! `SECURITY_WARNING` findings refuse it; see `jit_policy::ai::analyze`).
//!
//! Only the function that runs GeneratePolicy (`update-status`) links
//! this client (feature `accessanalyzer`). The policy is analysed as an
//! identity policy: a session policy and a scoped attach grant's inline
//! `jit-<id>` both are. The call is free of charge and needs
//! `access-analyzer:ValidatePolicy` (resource `*`).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_accessanalyzer::types::{Locale, PolicyType, ValidatePolicyFindingType};
use jit_core::policy::{AnalyzeError, FindingKind, PolicyAnalyzer, PolicyFinding};

use crate::error::describe;

/// How long one analysis may take, retries included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Findings are paged; a policy that fits STS has few. More pages than
/// this is not a policy worth granting.
const MAX_PAGES: usize = 10;

/// `access-analyzer:ValidatePolicy`.
#[derive(Debug, Clone)]
pub struct AccessAnalyzer {
    client: aws_sdk_accessanalyzer::Client,
}

impl AccessAnalyzer {
    /// From the process's one SDK configuration, with a time bound and at
    /// most two attempts (the workflow retries the step beyond that).
    pub fn from_config(sdk: &aws_config::SdkConfig) -> Self {
        let conf = aws_sdk_accessanalyzer::config::Builder::from(sdk)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(TIMEOUT)
                    .build(),
            )
            .build();
        AccessAnalyzer {
            client: aws_sdk_accessanalyzer::Client::from_conf(conf),
        }
    }

    /// Whether the environment turns it off (`JIT_ACCESS_ANALYZER=off`);
    /// on otherwise. Any other value than on/off/true/false is an error
    /// naming the variable.
    pub fn enabled_by_env() -> Result<bool, String> {
        match std::env::var("JIT_ACCESS_ANALYZER")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "" | "on" | "true" => Ok(true),
            "off" | "false" => Ok(false),
            other => Err(format!("JIT_ACCESS_ANALYZER `{other}` must be on or off")),
        }
    }
}

fn kind(t: &ValidatePolicyFindingType) -> FindingKind {
    match t {
        ValidatePolicyFindingType::Error => FindingKind::Error,
        ValidatePolicyFindingType::SecurityWarning => FindingKind::SecurityWarning,
        ValidatePolicyFindingType::Warning => FindingKind::Warning,
        ValidatePolicyFindingType::Suggestion => FindingKind::Suggestion,
        // A finding type this client does not know yet: treated as the
        // most serious, so nothing new slips through as a note.
        _ => FindingKind::Error,
    }
}

#[async_trait]
impl PolicyAnalyzer for AccessAnalyzer {
    async fn validate(&self, document: &str) -> Result<Vec<PolicyFinding>, AnalyzeError> {
        let mut findings = vec![];
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .client
                .validate_policy()
                .policy_document(document)
                .policy_type(PolicyType::IdentityPolicy)
                .locale(Locale::En)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| AnalyzeError {
                    message: describe("ValidatePolicy", &e),
                })?;
            findings.extend(out.findings().iter().map(|f| PolicyFinding {
                kind: kind(f.finding_type()),
                code: f.issue_code().to_string(),
                detail: f.finding_details().to_string(),
            }));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(findings),
            }
        }
        Err(AnalyzeError {
            message: format!("ValidatePolicy answered more than {MAX_PAGES} pages of findings"),
        })
    }
}
