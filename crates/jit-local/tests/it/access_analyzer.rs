//! IAM Access Analyzer `ValidatePolicy` (#10): `jit_aws::analyzer::AccessAnalyzer`
//! through the real SDK against a loopback fake of its wire format
//! (`jit_testkit::fake_access_analyzer`; moto does not implement
//! `ValidatePolicy`), and in the GeneratePolicy step: `ERROR` and
//! `SECURITY_WARNING` findings refuse a policy, the others are notes the
//! approvers see.

use crate::common;

use std::sync::Arc;

use aws_credential_types::Credentials;
use aws_types::region::Region;
use jit_aws::analyzer::AccessAnalyzer;
use jit_core::policy::{FindingKind, PolicyAnalyzer};
use jit_testkit::fake_access_analyzer::{FakeAccessAnalyzer, FakeFinding, ValidateAnswer};
use serde_json::json;

const KEY: &str = "analyzer-test-key-0123456789abcdef";
const DOC: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::prod-logs/*"]}]}"#;

async fn analyzer(fake: &FakeAccessAnalyzer) -> AccessAnalyzer {
    let sdk = jit_aws::sdk::config_loader()
        .endpoint_url(fake.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDTESTING",
            "dummy-secret",
            None,
            None,
            "analyzer-tests",
        ))
        .load()
        .await;
    AccessAnalyzer::from_config(&sdk)
}

#[tokio::test]
async fn validate_policy_is_called_as_an_identity_policy_and_its_findings_read() {
    let fake = FakeAccessAnalyzer::start(ValidateAnswer::clean()).await;
    let a = analyzer(&fake).await;
    // GIVEN a clean policy THEN no findings, one signed call with the document
    assert_eq!(a.validate(DOC).await.unwrap(), vec![]);
    let call = &fake.calls()[0];
    assert!(call.signed);
    assert_eq!(call.body["policyDocument"], DOC);
    assert_eq!(call.body["policyType"], "IDENTITY_POLICY");
    assert_eq!(call.body["locale"], "EN");

    // GIVEN findings of every kind, over several pages THEN all are read, typed
    fake.push(ValidateAnswer::Findings {
        findings: vec![
            FakeFinding::new("ERROR", "MISSING_VERSION", "add a Version"),
            FakeFinding::new(
                "SECURITY_WARNING",
                "PASS_ROLE_WITH_STAR_IN_RESOURCE",
                "pass role *",
            ),
            FakeFinding::new("WARNING", "MISSING_PAIRED_ACTION", "pair it"),
            FakeFinding::new("SUGGESTION", "EMPTY_ARRAY_ACTION", "remove it"),
        ],
        paged: true,
    });
    let before = fake.calls().len();
    let found = a.validate(DOC).await.unwrap();
    assert_eq!(fake.calls().len() - before, 4, "followed nextToken");
    assert!(
        fake.calls()
            .last()
            .unwrap()
            .query
            .contains("nextToken=page-token")
    );
    let kinds: Vec<FindingKind> = found.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        vec![
            FindingKind::Error,
            FindingKind::SecurityWarning,
            FindingKind::Warning,
            FindingKind::Suggestion
        ]
    );
    assert_eq!(found[1].code, "PASS_ROLE_WITH_STAR_IN_RESOURCE");
    assert_eq!(found[1].detail, "pass role *");

    // GIVEN the service refusing THEN an error naming it, never a clean answer
    fake.push(ValidateAnswer::Error {
        status: 403,
        error_type: "AccessDeniedException".into(),
        message: "not authorized to perform: access-analyzer:ValidatePolicy".into(),
    });
    let e = a.validate(DOC).await.unwrap_err();
    assert!(e.message.contains("AccessDeniedException"), "{e}");
    assert!(!e.message.contains("dummy-secret"), "{e}");
}

const CATALOG: &str = r#"
defaults:
  max_duration: 1h
  approvers: { emails: [lead@example.com] }
entitlements:
  - name: ProdLogs
    role_arn: "arn:aws:iam::123456789012:role/JIT-ProdLogs"
    ceiling: ["s3:Get*", "s3:List*"]
"#;

#[tokio::test]
async fn the_generate_policy_step_blocks_on_errors_and_security_warnings_and_notes_the_rest() {
    let fake = FakeAccessAnalyzer::start(ValidateAnswer::clean()).await;
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).unwrap();
    let cfg = common::config(&dir.path().join("data"), &catalog, KEY);
    let overrides = jit_local::Overrides {
        policy_analyzer: Some(Arc::new(analyzer(&fake).await) as Arc<dyn PolicyAnalyzer>),
        ..Default::default()
    };
    let l = common::Local::open(&cfg, common::fixed_clock(), overrides, KEY);
    let scope = json!({"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::prod-logs/*"]});
    let post = || async {
        l.post(
            "/requests",
            "alice@example.com",
            json!({"entitlement": "ProdLogs", "duration": "1h", "justification": "INC-9", "scope": scope}),
        )
        .await
    };
    let ask = || async {
        let (s, v) = post().await;
        assert_eq!(s, 201, "{v}");
        l.settle().await;
        l.get(v["requestId"].as_str().unwrap()).await
    };
    let warning = || ValidateAnswer::Findings {
        findings: vec![FakeFinding::new(
            "WARNING",
            "MISSING_PAIRED_ACTION",
            "pair it",
        )],
        paged: false,
    };
    let security = || ValidateAnswer::Findings {
        findings: vec![FakeFinding::new(
            "SECURITY_WARNING",
            "PASS_ROLE_WITH_STAR_IN_RESOURCE",
            "pass role *",
        )],
        paged: false,
    };

    // GIVEN a warning (when the request is checked, and in the step) THEN
    // the policy is granted as generated, the warning a note
    fake.push(warning());
    fake.push(warning());
    let r = ask().await;
    assert_eq!(r["policyGeneration"]["generator"], "deterministic", "{r}");
    assert!(r["sessionPolicy"].is_string());
    let notes = r["policyGeneration"]["notes"].to_string();
    assert!(
        notes.contains("IAM Access Analyzer WARNING MISSING_PAIRED_ACTION"),
        "{notes}"
    );

    // GIVEN a SECURITY_WARNING when the request is made THEN a 400 naming scope
    fake.push(security());
    let (s, v) = post().await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["field"], "scope");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("SECURITY_WARNING PASS_ROLE_WITH_STAR_IN_RESOURCE"),
        "{m}"
    );

    // GIVEN one only by the time the step runs THEN the policy is refused
    // there: the request goes on with the entitlement's full permissions
    // and says why
    fake.push(ValidateAnswer::clean());
    fake.push(security());
    let r = ask().await;
    assert_eq!(r["policyGeneration"]["generator"], "none", "{r}");
    assert!(r.get("sessionPolicy").is_none(), "{r}");
    let note = r["policyGeneration"]["notes"][0].as_str().unwrap();
    assert!(
        note.contains("SECURITY_WARNING PASS_ROLE_WITH_STAR_IN_RESOURCE"),
        "{note}"
    );
    assert_eq!(fake.calls().len(), 5, "every check and every step asked");
}
