//! A role's own policies as the ceiling of its scoped requests (#10), on
//! moto through the real SDK: `IamCeilings` reads the managed policies
//! attached to the role (`GetPolicyVersion` of each default version) and
//! its inline policies; the GeneratePolicy step uses them for a role
//! entitlement without the catalog's `ceiling:`.

use crate::common;

use std::sync::Arc;

use jit_aws::ceiling::IamCeilings;
use jit_core::lifecycle::Status;
use jit_core::policy::{AccessLevel, RoleCeilings, Scope};
use jit_core::policy_step::PolicyStep;
use jit_core::ports::{Clock, ManualClock, RequestStore};
use jit_core::request::GrantTarget;
use jit_core::{Catalog, Principal, RoleArn};

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#;

async fn role_with(iam: &aws_sdk_iam::Client, managed: &[&str], inline: Option<&str>) -> RoleArn {
    let name = common::unique_name("JIT-Logs");
    let created = iam
        .create_role()
        .role_name(&name)
        .assume_role_policy_document(TRUST)
        .send()
        .await
        .unwrap();
    for doc in managed {
        let policy = common::unique_name("JitCeiling");
        let p = iam
            .create_policy()
            .policy_name(&policy)
            .policy_document(*doc)
            .send()
            .await
            .unwrap();
        let arn = p.policy().unwrap().arn().unwrap().to_string();
        // A second version, made the default: the ceiling reads that one.
        iam.create_policy_version()
            .policy_arn(&arn)
            .policy_document(doc.replace("s3:GetObject", "s3:GetObjectVersion"))
            .set_as_default(true)
            .send()
            .await
            .unwrap();
        iam.attach_role_policy()
            .role_name(&name)
            .policy_arn(&arn)
            .send()
            .await
            .unwrap();
    }
    if let Some(doc) = inline {
        iam.put_role_policy()
            .role_name(&name)
            .policy_name("inline-logs")
            .policy_document(doc)
            .send()
            .await
            .unwrap();
    }
    RoleArn::parse(created.role().unwrap().arn()).unwrap()
}

const S3_READ: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":"*"}]}"#;
const LOGS: &str = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"logs:FilterLogEvents","Resource":"*"}}"#;
const ADMIN: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

#[tokio::test]
async fn the_ceiling_is_what_the_roles_default_policy_versions_and_inline_policies_allow() {
    let sdk = common::sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let ceilings = IamCeilings::from_config(&sdk);
    // GIVEN a role with a managed policy (at its second version) and an inline one
    let role = role_with(&iam, &[S3_READ], Some(LOGS)).await;
    let got = ceilings.ceiling(&role).await.unwrap().unwrap();
    assert_eq!(
        got,
        vec![
            "s3:GetObjectVersion",
            "s3:ListBucket",
            "logs:FilterLogEvents"
        ],
        "the default version, not the first"
    );
    // GIVEN a role allowed `*` THEN no ceiling narrower than the role
    let admin = role_with(&iam, &[ADMIN], None).await;
    assert_eq!(ceilings.ceiling(&admin).await.unwrap(), None);
    // GIVEN a role that does not exist THEN no ceiling (nothing to read)
    let missing = RoleArn::parse(format!(
        "arn:aws:iam::123456789012:role/{}",
        common::unique_name("missing")
    ))
    .unwrap();
    assert_eq!(ceilings.ceiling(&missing).await.unwrap(), None);
}

#[tokio::test]
async fn the_generate_policy_step_bounds_a_role_without_a_catalog_ceiling_by_its_policies() {
    let sdk = common::sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let role = role_with(&iam, &[S3_READ], None).await;
    let catalog = Catalog::parse(
        &format!(
            "entitlements:\n  - name: Logs\n    role_arn: \"{role}\"\n    approvers: {{ emails: [lead@example.com] }}\n"
        ),
        "catalog.yaml",
    )
    .unwrap();
    let store = Arc::new(common::fresh_store().await);
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let step = PolicyStep {
        store: store.clone(),
        catalog: Arc::new(catalog),
        clock: clock.clone(),
        generator: Arc::new(jit_policy::Generators::default()),
        ceilings: Some(Arc::new(IamCeilings::from_config(&sdk))),
    };
    let validating = |scope: Scope| {
        let store = store.clone();
        let clock = clock.clone();
        let role = role.clone();
        async move {
            let mut r = jit_testkit::sample_request(
                &Principal::parse("alice@example.com").unwrap(),
                clock.now(),
            );
            r.entitlement = "Logs".into();
            r.target = GrantTarget::AssumeRole { role_arn: role };
            r.scope = Some(scope);
            jit_testkit::create(store.as_ref(), &r).await;
            jit_testkit::advance(store.as_ref(), &r, Status::Validating, clock.now()).await
        }
    };

    // GIVEN read access to S3 asked THEN only the read actions the role allows
    let r = validating(Scope::Access {
        access: AccessLevel::Read,
        services: vec!["s3".into()],
        resources: vec![],
    })
    .await;
    step.generate_policy(serde_json::json!({"requestId": r.request_id}))
        .await
        .unwrap();
    let r = store.get(&r.request_id).await.unwrap().unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(r.session_policy.as_deref().unwrap()).unwrap();
    assert_eq!(
        doc["Statement"][0]["Action"],
        serde_json::json!(["s3:GetObjectVersion"]),
        "{doc}"
    );
    let notes = &r.policy_generation.as_ref().unwrap().notes;
    assert!(
        notes.iter().any(|n| n.contains("the role's own policies")),
        "{notes:?}"
    );

    // GIVEN an exact action the role does not allow THEN the policy is
    // refused and the request goes on with the role, saying why
    let r = validating(Scope::Exact {
        actions: vec!["s3:PutObject".into()],
        resources: vec!["arn:aws:s3:::prod-logs/*".into()],
    })
    .await;
    step.generate_policy(serde_json::json!({"requestId": r.request_id}))
        .await
        .unwrap();
    let r = store.get(&r.request_id).await.unwrap().unwrap();
    assert_eq!(r.session_policy, None);
    let prov = r.policy_generation.unwrap();
    assert_eq!(prov.generator, "none");
    assert!(prov.notes[0].contains("s3:PutObject"), "{:?}", prov.notes);
}
