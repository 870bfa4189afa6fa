//! STS and IAM adapters against moto, through the real SDK.

use crate::common;

use jit_aws::{IamAttacher, StsIssuer};
use jit_core::ports::{AssumeRoleSpec, CredentialIssuer, GrantError, IamPrincipal, PolicyAttacher};
use jit_core::session_policy;
use jit_core::{AccountId, PolicyName, RoleArn};

const ACCOUNT: &str = "123456789012";
const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":["sts:AssumeRole","sts:SetSourceIdentity","sts:TagSession"]}]}"#;
const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}]}"#;

async fn iam() -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&common::sdk_config().await)
}

async fn attached_to_user(iam: &aws_sdk_iam::Client, user: &str) -> Vec<String> {
    iam.list_attached_user_policies()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_name().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn assume_role_returns_credentials_that_never_print() {
    let iam = iam().await;
    let role = common::unique_name("jit-role");
    let created = iam
        .create_role()
        .role_name(&role)
        .assume_role_policy_document(TRUST)
        .send()
        .await
        .unwrap();
    let arn = RoleArn::parse(created.role().unwrap().arn()).unwrap();
    let issuer = StsIssuer::from_config(&common::sdk_config().await);
    let before = chrono::Utc::now();
    let creds = issuer
        .assume_role(&AssumeRoleSpec {
            role_arn: arn,
            session_name: "alice-01K0000000000000000000000".into(),
            source_identity: "alice@example.com".into(),
            duration_secs: 900,
            session_policy: Some(POLICY.into()),
            tags: vec![("jit:request-id".into(), "01K0000000000000000000000".into())],
        })
        .await
        .expect("moto issues credentials");
    assert!(!creds.access_key_id.is_empty());
    assert!(!creds.secret_access_key.expose().is_empty());
    assert!(creds.expiration > before, "expires in the future");
    let shown = format!("{creds:?}");
    assert!(!shown.contains(creds.secret_access_key.expose()));
    assert!(!shown.contains(creds.session_token.expose()));
}

#[tokio::test]
async fn a_900_second_session_bounded_by_the_windows_end_is_issued() {
    let iam = iam().await;
    let role = common::unique_name("jit-short");
    let created = iam
        .create_role()
        .role_name(&role)
        .assume_role_policy_document(TRUST)
        .send()
        .await
        .unwrap();
    let arn = RoleArn::parse(created.role().unwrap().arn()).unwrap();
    let config = common::sdk_config().await;
    let capture = common::Capture::default();
    let issuer = StsIssuer::new(aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&config)
            .interceptor(capture.clone())
            .build(),
    ));
    // GIVEN a window with 10 s left: with the request's own policy, and without
    let end = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() + 10, 0).unwrap();
    for own in [None, Some(POLICY)] {
        let policy = session_policy::bounded(own, end).unwrap();
        let spec = AssumeRoleSpec {
            role_arn: arn.clone(),
            session_name: "alice-01K0000000000000000000000".into(),
            source_identity: "alice@example.com".into(),
            duration_secs: jit_core::grants_api::credential_duration(10, 3600),
            session_policy: Some(policy.clone()),
            tags: vec![("jit:request-id".into(), "01K0000000000000000000000".into())],
        };
        // WHEN STS is asked through the SDK
        let before = chrono::Utc::now();
        let creds = issuer.assume_role(&spec).await.expect("STS issues them");
        // THEN a 900 s session (STS's minimum)…
        let lifetime = (creds.expiration - before).num_seconds();
        assert!((899..=901).contains(&lifetime), "{lifetime}");
        // …and the call carried DurationSeconds=900 and the bounded policy
        let form = capture.form_bodies().pop().unwrap();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{name} missing from {form:?}"))
        };
        assert_eq!(field("Action"), "AssumeRole");
        assert_eq!(field("DurationSeconds"), "900");
        assert_eq!(field("Policy"), policy);
        let doc: serde_json::Value = serde_json::from_str(&field("Policy")).unwrap();
        let statements = doc["Statement"].as_array().unwrap();
        let deny = statements.last().unwrap();
        assert_eq!(
            deny["Condition"]["DateGreaterThan"]["aws:CurrentTime"],
            session_policy::window_end_text(end)
        );
        assert_eq!(
            statements.len(),
            2,
            "the grant's one statement (or Allow *) and the deny"
        );
        if own.is_some() {
            assert_eq!(statements[0]["Action"], "s3:ListAllMyBuckets");
        }
    }
}

/// Least privilege (#10): the policy the deterministic generator makes for
/// `{"access": "read", "services": ["s3"], "resources": ["arn:aws:s3:::prod-logs/*"]}`
/// is what the AssumeRole call moto receives carries, with the window's deny.
#[tokio::test]
async fn the_generated_session_policy_is_sent_with_assume_role() {
    let iam = iam().await;
    let role = common::unique_name("jit-scoped");
    let created = iam
        .create_role()
        .role_name(&role)
        .assume_role_policy_document(TRUST)
        .send()
        .await
        .unwrap();
    let arn = RoleArn::parse(created.role().unwrap().arn()).unwrap();
    let config = common::sdk_config().await;
    let capture = common::Capture::default();
    let issuer = StsIssuer::new(aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&config)
            .interceptor(capture.clone())
            .build(),
    ));
    // GIVEN the generated policy of a scoped request
    let scope = jit_core::policy::Scope::from_json(&serde_json::json!(
        {"access": "read", "services": ["s3"], "resources": ["arn:aws:s3:::prod-logs/*"]}
    ))
    .unwrap();
    let generated = jit_policy::Deterministic::generate_now(&jit_core::policy::GenerationInput {
        entitlement: "ProdLogs".into(),
        scope: Some(scope),
        fixed_policy: None,
        justification: "INC-7".into(),
        ceiling: vec!["s3:Get*".into(), "s3:List*".into()],
    })
    .unwrap();
    let end = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() + 1800, 0).unwrap();
    let policy = session_policy::bounded(Some(&generated.document), end).unwrap();
    let spec = AssumeRoleSpec {
        role_arn: arn,
        session_name: "alice-01K0000000000000000000000".into(),
        source_identity: "alice@example.com".into(),
        duration_secs: 1800,
        session_policy: Some(policy.clone()),
        tags: vec![],
    };
    // WHEN STS is asked through the SDK
    issuer.assume_role(&spec).await.expect("STS issues them");
    // THEN the call moto received carried the generated statements + deny
    let form = capture.form_bodies().pop().unwrap();
    let sent = form
        .iter()
        .find(|(k, _)| k == "Policy")
        .map(|(_, v)| v.clone())
        .expect("Policy sent");
    assert_eq!(sent, policy);
    let doc: serde_json::Value = serde_json::from_str(&sent).unwrap();
    let statements = doc["Statement"].as_array().unwrap();
    let own: serde_json::Value = serde_json::from_str(&generated.document).unwrap();
    assert_eq!(
        &statements[..statements.len() - 1],
        own["Statement"].as_array().unwrap().as_slice()
    );
    for s in &statements[..statements.len() - 1] {
        assert_eq!(s["Resource"], "arn:aws:s3:::prod-logs/*");
        for a in s["Action"].as_array().unwrap() {
            let a = a.as_str().unwrap();
            assert!(!a.contains('*'), "{a}");
            assert_eq!(
                jit_policy::table().level(a),
                Some(jit_core::policy::AccessLevel::Read),
                "{a}"
            );
        }
    }
}

#[tokio::test]
async fn attach_and_detach_a_customer_policy_to_a_user_and_a_role() {
    let iam = iam().await;
    let user = format!("{}@example.com", common::unique_name("u"));
    iam.create_user().user_name(&user).send().await.unwrap();
    let role = common::unique_name("jit-r");
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(TRUST)
        .send()
        .await
        .unwrap();
    let policy = common::unique_name("JitPolicy");
    iam.create_policy()
        .policy_name(&policy)
        .policy_document(POLICY)
        .send()
        .await
        .unwrap();

    let attacher = IamAttacher::from_config(&common::sdk_config().await);
    let account = AccountId::parse(ACCOUNT).unwrap();
    let name = PolicyName::parse(policy.clone()).unwrap();
    let to_user = IamPrincipal::User(user.clone());
    attacher.attach(&account, &to_user, &name).await.unwrap();
    assert_eq!(attached_to_user(&iam, &user).await, vec![policy.clone()]);
    attacher.detach(&account, &to_user, &name).await.unwrap();
    assert!(attached_to_user(&iam, &user).await.is_empty());
    attacher
        .detach(&account, &to_user, &name)
        .await
        .expect("detaching twice is fine");

    let to_role = IamPrincipal::Role(role.clone());
    attacher.attach(&account, &to_role, &name).await.unwrap();
    let on_role = iam
        .list_attached_role_policies()
        .role_name(&role)
        .send()
        .await
        .unwrap();
    assert_eq!(on_role.attached_policies().len(), 1);
    attacher.detach(&account, &to_role, &name).await.unwrap();
    let on_role = iam
        .list_attached_role_policies()
        .role_name(&role)
        .send()
        .await
        .unwrap();
    assert!(on_role.attached_policies().is_empty());
}

#[tokio::test]
async fn missing_policies_and_principals_are_named() {
    let iam = iam().await;
    let user = common::unique_name("u");
    iam.create_user().user_name(&user).send().await.unwrap();
    let policy = common::unique_name("JitPolicy");
    iam.create_policy()
        .policy_name(&policy)
        .policy_document(POLICY)
        .send()
        .await
        .unwrap();
    let attacher = IamAttacher::from_config(&common::sdk_config().await);
    let account = AccountId::parse(ACCOUNT).unwrap();

    let wrong_case = PolicyName::parse(policy.to_lowercase()).unwrap();
    let err = attacher
        .attach(&account, &IamPrincipal::User(user.clone()), &wrong_case)
        .await
        .unwrap_err();
    assert!(
        matches!(err, GrantError::PolicyMissing(ref m) if m.contains("case-sensitive")),
        "{err:?}"
    );

    let name = PolicyName::parse(policy).unwrap();
    let err = attacher
        .attach(
            &account,
            &IamPrincipal::User(common::unique_name("ghost")),
            &name,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GrantError::PrincipalMissing(_)), "{err:?}");
    assert!(!format!("{err}").contains(common::DUMMY_SECRET));
}
