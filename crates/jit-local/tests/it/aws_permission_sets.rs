//! Permission-set grants against moto's `sso-admin` and `identitystore`
//! (5.2.5), through the real SDK adapter (`jit_aws::identity_center`) in
//! `jit-local` on a manual clock: the issue's check. A request for a
//! permission-set entitlement in two accounts, approved, shows two
//! assignments in `ListAccountAssignments`, and none after revoke; an
//! `idc:` group member is eligible and a non-member is refused; expiry
//! removes them; `catalog check` reads the instance.
//!
//! What moto does not do, and is tested elsewhere: its provisioning never
//! fails and never stays `IN_PROGRESS` (every status is `SUCCEEDED` at
//! once), so partial failure is tested on the local fake
//! (`permission_sets.rs`); `ListAccountsForProvisionedPermissionSet`
//! answers only moto's own account (123456789012). Needs the moto server
//! `./scripts/test` starts (`JIT_TEST_AWS_ENDPOINT`).

use crate::common;

use std::sync::Arc;

use aws_credential_types::Credentials;
use aws_sdk_identitystore::types::{Email, MemberId};
use aws_sdk_ssoadmin::types::PrincipalType;
use aws_types::region::Region;
use jit_core::identity_center::{AssignmentManager, IdentityCenter};
use jit_local::{IdcPorts, Overrides};
use serde_json::json;

const KEY: &str = "aws-permission-sets-key-0123456789";
const ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];

fn endpoint() -> String {
    match std::env::var("JIT_TEST_AWS_ENDPOINT") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("JIT_TEST_AWS_ENDPOINT is not set: run ./scripts/test"),
    }
}

async fn sdk() -> jit_aws::SdkConfig {
    jit_aws::sdk::config_loader()
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDBROKER",
            "broker-secret",
            None,
            None,
            "test",
        ))
        .load()
        .await
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{}{}", std::process::id(), nanos % 1_000_000_000)
}

struct Moto {
    sso: aws_sdk_ssoadmin::Client,
    instance_arn: String,
    store_id: String,
    ps_name: String,
    ps_arn: String,
    group: String,
    member: String,
    member_id: String,
    outsider: String,
}

/// A permission set, two users (one in a new group) in moto's instance.
async fn moto() -> Moto {
    let config = sdk().await;
    let sso = aws_sdk_ssoadmin::Client::new(&config);
    let ids = aws_sdk_identitystore::Client::new(&config);
    let instance = sso.list_instances().send().await.unwrap();
    let instance = &instance.instances()[0];
    let instance_arn = instance.instance_arn().unwrap().to_string();
    let store_id = instance.identity_store_id().unwrap().to_string();
    let ps_name = unique("Adm");
    let ps_arn = sso
        .create_permission_set()
        .instance_arn(&instance_arn)
        .name(&ps_name)
        .session_duration("PT1H")
        .send()
        .await
        .unwrap()
        .permission_set()
        .unwrap()
        .permission_set_arn()
        .unwrap()
        .to_string();
    let tag = unique("u");
    let mut users = vec![];
    for who in ["member", "outsider"] {
        let email = format!("{who}-{tag}@example.com");
        let id = ids
            .create_user()
            .identity_store_id(&store_id)
            .user_name(format!("{who}-{tag}"))
            .display_name(who)
            .name(
                aws_sdk_identitystore::types::Name::builder()
                    .given_name(who)
                    .family_name("Test")
                    .build(),
            )
            .emails(Email::builder().value(&email).primary(true).build())
            .send()
            .await
            .unwrap()
            .user_id()
            .to_string();
        users.push((email, id));
    }
    let group = unique("Platform");
    let group_id = ids
        .create_group()
        .identity_store_id(&store_id)
        .display_name(&group)
        .send()
        .await
        .unwrap()
        .group_id()
        .to_string();
    ids.create_group_membership()
        .identity_store_id(&store_id)
        .group_id(&group_id)
        .member_id(MemberId::UserId(users[0].1.clone()))
        .send()
        .await
        .unwrap();
    Moto {
        sso,
        instance_arn,
        store_id,
        ps_name,
        ps_arn,
        group,
        member: users[0].0.clone(),
        member_id: users[0].1.clone(),
        outsider: users[1].0.clone(),
    }
}

impl Moto {
    fn catalog(&self) -> String {
        format!(
            r#"
identity_center:
  instance_arn: "{}"
  identity_store_id: "{}"
  region: us-east-1
defaults:
  approvers: {{ emails: [lead@example.com] }}
entitlements:
  - name: Admin
    permission_set: {}
    accounts: ["{}", "{}"]
    eligible_groups: ["idc:{}"]
"#,
            self.instance_arn, self.store_id, self.ps_name, ACCOUNTS[0], ACCOUNTS[1], self.group
        )
    }

    /// The user ids `ListAccountAssignments` shows in `account`.
    async fn assigned(&self, account: &str) -> Vec<String> {
        self.sso
            .list_account_assignments()
            .instance_arn(&self.instance_arn)
            .account_id(account)
            .permission_set_arn(&self.ps_arn)
            .send()
            .await
            .unwrap()
            .account_assignments()
            .iter()
            .filter(|a| a.principal_type() == Some(&PrincipalType::User))
            .filter_map(|a| a.principal_id().map(str::to_string))
            .collect()
    }
}

async fn open(m: &Moto, dir: &std::path::Path) -> common::Local {
    let catalog_path = dir.join("catalog.yaml");
    std::fs::write(&catalog_path, m.catalog()).unwrap();
    let catalog = jit_core::Catalog::parse(&m.catalog(), "catalog.yaml").unwrap();
    let idc: &IdentityCenter = catalog.identity_center().unwrap();
    let client = Arc::new(jit_aws::identity_center::IdentityCenterClient::new(
        &sdk().await,
        idc,
    ));
    let overrides = Overrides {
        identity_center: Some(IdcPorts {
            assignments: client.clone(),
            directory: client,
        }),
        ..Default::default()
    };
    let cfg = common::config(&dir.join("data"), &catalog_path, KEY);
    common::Local::open(&cfg, common::fixed_clock(), overrides, KEY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_approved_show_two_assignments_and_none_after_revoke() {
    // GIVEN moto's instance with a permission set, a group member and an outsider
    let m = moto().await;
    let tmp = tempfile::tempdir().unwrap();
    let l = open(&m, tmp.path()).await;
    let ask = json!({"entitlement": "Admin", "duration": "1h", "justification": "INC-14"});
    // WHEN the outsider asks THEN the idc: rule refuses them
    let (s, v) = l.post("/requests", &m.outsider, ask.clone()).await;
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (403, json!("not_eligible")),
        "{v}"
    );
    // WHEN the member asks and the lead approves
    let (s, v) = l.post("/requests", &m.member, ask.clone()).await;
    assert_eq!(s, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    let (s, v) = l
        .post(
            &format!("/requests/{id}/approve"),
            "lead@example.com",
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(l.status(&id).await, "GRANTED");
    // THEN sso-admin lists the assignment in both accounts
    for a in ACCOUNTS {
        assert_eq!(
            m.assigned(a).await,
            vec![m.member_id.clone()],
            "account {a}"
        );
    }
    // WHEN it is revoked THEN none is left
    let (s, v) = l
        .post(
            &format!("/requests/{id}/revoke"),
            &m.member,
            json!({"reason": "done"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    for a in ACCOUNTS {
        assert_eq!(m.assigned(a).await, Vec::<String>::new(), "account {a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_and_the_reconciler_leave_no_assignment_on_moto() {
    let m = moto().await;
    let tmp = tempfile::tempdir().unwrap();
    let l = open(&m, tmp.path()).await;
    // GIVEN a granted request in the first account only
    let ask = json!({"entitlement": "Admin", "duration": "1h", "justification": "x", "accounts": [ACCOUNTS[0]]});
    let (s, v) = l.post("/requests", &m.member, ask).await;
    assert_eq!(s, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    l.post(
        &format!("/requests/{id}/approve"),
        "lead@example.com",
        json!({}),
    )
    .await;
    assert_eq!(m.assigned(ACCOUNTS[0]).await, vec![m.member_id.clone()]);
    assert!(m.assigned(ACCOUNTS[1]).await.is_empty());
    // AND an assignment made outside the broker, in the second account
    m.sso
        .create_account_assignment()
        .instance_arn(&m.instance_arn)
        .target_id(ACCOUNTS[1])
        .target_type(aws_sdk_ssoadmin::types::TargetType::AwsAccount)
        .permission_set_arn(&m.ps_arn)
        .principal_type(PrincipalType::User)
        .principal_id(&m.member_id)
        .send()
        .await
        .unwrap();
    // WHEN the reconciler runs THEN the foreign one goes, the granted one stays
    l.app.reconcile(false, None).await.unwrap();
    assert!(m.assigned(ACCOUNTS[1]).await.is_empty());
    assert_eq!(m.assigned(ACCOUNTS[0]).await, vec![m.member_id.clone()]);
    // WHEN the window ends THEN nothing is left
    l.forward(3601).await;
    assert_eq!(l.status(&id).await, "EXPIRED");
    assert!(m.assigned(ACCOUNTS[0]).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_resolves_names_users_and_groups_on_moto() {
    let m = moto().await;
    let catalog = jit_core::Catalog::parse(&m.catalog(), "c.yaml").unwrap();
    let client = jit_aws::identity_center::IdentityCenterClient::new(
        &sdk().await,
        catalog.identity_center().unwrap(),
    );
    let ps = client.permission_set(&m.ps_name).await.unwrap().unwrap();
    assert_eq!(ps.arn, m.ps_arn);
    assert_eq!(ps.session_duration.as_deref(), Some("PT1H"));
    assert!(client.permission_set("NoSuchSet").await.unwrap().is_none());
    let member = jit_core::Principal::parse(m.member.clone()).unwrap();
    assert_eq!(
        client.user_id(&member).await.unwrap(),
        Some(m.member_id.clone())
    );
    let nobody = jit_core::Principal::parse("nobody@example.com").unwrap();
    assert_eq!(client.user_id(&nobody).await.unwrap(), None);
    use jit_core::identity_center::GroupDirectory;
    assert_eq!(
        client.groups_of(&member).await.unwrap(),
        vec![m.group.clone()]
    );
    // Deleting what is not assigned is success (a retried removal).
    let a = jit_core::identity_center::Assignment {
        account: jit_core::AccountId::parse(ACCOUNTS[0]).unwrap(),
        permission_set_arn: m.ps_arn.clone(),
        user_id: m.member_id.clone(),
    };
    client.delete(&a).await.unwrap();
    // Creating twice leaves one assignment.
    client.create(&a).await.unwrap();
    client.create(&a).await.unwrap();
    assert_eq!(m.assigned(ACCOUNTS[0]).await, vec![m.member_id.clone()]);
    client.delete(&a).await.unwrap();
    assert!(m.assigned(ACCOUNTS[0]).await.is_empty());
}
