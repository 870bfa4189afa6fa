//! Least privilege without a network: the IAM action table (embedded), the
//! deterministic session-policy generator, and the validation every policy
//! passes whatever generated it (a catalog's fixed `session_policy:`, an
//! AI's answer).
//!
//! Pure: no I/O, no AWS SDK. It implements `jit_core`'s
//! [`PolicyGenerator`] port in process ([`Deterministic`]) for `jit-local`
//! and the `generate-policy` Lambda; the API Lambdas reach it through that
//! Lambda, so they never carry the table.

pub mod ai;
pub mod generate;
pub mod table;
pub mod validate;

use jit_core::policy::{
    GeneratedPolicy, GenerationError, GenerationInput, PolicyGenerator, summarize,
};

pub use ai::Generators;
pub use table::table;

/// The generator's name on records and in audit events.
pub const DETERMINISTIC: &str = "deterministic";
/// The name for the catalog's fixed `session_policy:`.
pub const CATALOG: &str = "catalog";

/// Validates a document and describes it: the [`GeneratedPolicy`] a
/// generator answers.
pub fn finish(
    text: &str,
    ceiling: &[String],
    field: &str,
    generator: &str,
    notes: Vec<String>,
) -> Result<GeneratedPolicy, GenerationError> {
    let t = table();
    let valid = validate::validate(t, text, ceiling, field)?;
    Ok(GeneratedPolicy {
        summary: summarize(&valid.value, |a| t.level(a)),
        document: valid.document,
        generator: generator.to_string(),
        notes,
        packed_chars: valid.packed_chars,
    })
}

/// The deterministic generator (the default): the scope through the action
/// table; the catalog's fixed policy validated as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deterministic;

impl Deterministic {
    /// The same answer as the port, without `async`.
    pub fn generate_now(input: &GenerationInput) -> Result<GeneratedPolicy, GenerationError> {
        match (&input.scope, &input.fixed_policy) {
            (Some(scope), _) => {
                let draft = generate::generate(table(), scope, &input.ceiling)?;
                let text = serde_json::to_string(&draft.document).expect("JSON serializes");
                finish(&text, &input.ceiling, "scope", DETERMINISTIC, draft.notes)
            }
            (None, Some(fixed)) => finish(fixed, &input.ceiling, "session_policy", CATALOG, vec![]),
            (None, None) => Err(GenerationError::refused(
                "scope",
                "is missing: there is nothing to generate a policy from",
            )),
        }
    }
}

#[async_trait::async_trait]
impl PolicyGenerator for Deterministic {
    async fn generate(&self, input: &GenerationInput) -> Result<GeneratedPolicy, GenerationError> {
        Self::generate_now(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jit_core::policy::{AccessLevel, Scope};

    #[tokio::test]
    async fn the_issues_example_through_the_port() {
        let input = GenerationInput {
            entitlement: "prod-logs".into(),
            scope: Some(Scope::Access {
                access: AccessLevel::Read,
                services: vec!["s3".into()],
                resources: vec!["arn:aws:s3:::prod-logs/*".into()],
            }),
            fixed_policy: None,
            justification: "INC-1".into(),
            ceiling: vec!["s3:Get*".into(), "s3:List*".into()],
        };
        let g = Deterministic.generate(&input).await.unwrap();
        assert_eq!(g.generator, "deterministic");
        assert_eq!(g.summary.len(), 1);
        assert_eq!(g.summary[0].service, "s3");
        assert_eq!(g.summary[0].access, vec![AccessLevel::Read]);
        assert_eq!(g.summary[0].resources, vec!["arn:aws:s3:::prod-logs/*"]);
        assert!(g.packed_chars <= 2048);
        assert!(!g.document.contains("\"*\""), "{}", g.document);
    }

    #[test]
    fn a_fixed_catalog_policy_is_validated_too() {
        let input = GenerationInput {
            entitlement: "e".into(),
            scope: None,
            fixed_policy: Some(
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}}"#
                    .into(),
            ),
            justification: String::new(),
            ceiling: vec![],
        };
        match Deterministic::generate_now(&input).unwrap_err() {
            GenerationError::Refused { field, message } => {
                assert_eq!(field, "session_policy");
                assert!(message.contains("NotAction"), "{message}");
            }
            e => panic!("{e}"),
        }
    }
}
