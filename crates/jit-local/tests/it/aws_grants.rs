//! `jit-local --grants aws` against moto: the real STS, IAM and catalog
//! check adapters with ambient-style credentials, the whole lifecycle on a
//! manual clock, and what the broker did checked in moto's IAM. Needs the
//! moto server `./scripts/test` starts (`JIT_TEST_AWS_ENDPOINT`).

use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use aws_credential_types::Credentials;
use aws_types::region::Region;
use jit_core::ports::ManualClock;
use jit_local::Overrides;
use serde_json::{Value, json};

const KEY: &str = "aws-grants-test-key-0123456789";
const ACCOUNT: &str = "123456789012";
const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}]}"#;
const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":["sts:AssumeRole","sts:SetSourceIdentity","sts:TagSession"]}]}"#;

fn endpoint() -> String {
    match std::env::var("JIT_TEST_AWS_ENDPOINT") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "JIT_TEST_AWS_ENDPOINT is not set: these tests need a moto server. Run ./scripts/test -p jit-local"
        ),
    }
}

async fn sdk(creds: Credentials) -> jit_aws::SdkConfig {
    jit_aws::sdk::config_loader()
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(creds)
        .load()
        .await
}

async fn broker_sdk() -> jit_aws::SdkConfig {
    sdk(Credentials::new(
        "AKIDBROKER",
        "broker-secret",
        None,
        None,
        "test",
    ))
    .await
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A role, a customer policy and a user in moto, and a catalog naming them.
struct Account {
    iam: aws_sdk_iam::Client,
    role: String,
    policy: String,
    user: String,
    catalog: String,
}

async fn account() -> Account {
    let iam = aws_sdk_iam::Client::new(&broker_sdk().await);
    let role = unique("jit-e2e-role");
    let policy = unique("JitE2ePolicy");
    let user = format!("{}@example.com", unique("u"));
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(TRUST)
        .send()
        .await
        .unwrap();
    iam.create_policy()
        .policy_name(&policy)
        .policy_document(POLICY)
        .send()
        .await
        .unwrap();
    iam.create_user().user_name(&user).send().await.unwrap();
    let catalog = format!(
        r#"defaults:
  max_duration: 2h
  approvers: {{ emails: [lead@example.com] }}
groups:
  eng: ["{user}"]
entitlements:
  - name: Role
    role_arn: "arn:aws:iam::{ACCOUNT}:role/{role}"
    auto_approve: {{ groups: [eng], max_duration: 2h }}
  - name: Policy
    policy_name: "{policy}"
    account: "{ACCOUNT}"
    auto_approve: {{ groups: [eng], max_duration: 2h }}
"#
    );
    Account {
        iam,
        role,
        policy,
        user,
        catalog,
    }
}

use common::Local;

async fn open(dir: &Path, catalog: &str) -> Local {
    let path = dir.join("catalog.yaml");
    std::fs::write(&path, catalog).unwrap();
    let cfg = common::config(&dir.join("data"), &path, KEY);
    // What `--grants aws` builds, on a config pointing at moto.
    let grants = jit_local::access::aws_grants(
        &broker_sdk().await,
        jit_aws::console::DEFAULT_FEDERATION_URL,
    )
    .unwrap();
    // Real time: STS stamps the sessions it issues with moto's clock.
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    Local::open(&cfg, clock, Overrides::aws(grants), KEY)
}

async fn attached(iam: &aws_sdk_iam::Client, user: &str) -> Vec<String> {
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
async fn role_grants_vend_working_credentials_and_revoke_puts_a_deny_on_the_role() {
    let acct = account().await;
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path(), &acct.catalog).await;
    // GIVEN an auto-approved role grant (the Grant step made a real AssumeRole on moto)
    let id = l.granted(&acct.user, "Role", "1h").await;

    // WHEN the requester asks for credentials
    let (s, v) = l
        .call(
            "GET",
            &format!("/requests/{id}/credentials"),
            &acct.user,
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // THEN they are STS's, and moto knows them as the assumed role
    let creds = Credentials::new(
        v["AccessKeyId"].as_str().unwrap(),
        v["SecretAccessKey"].as_str().unwrap(),
        v["SessionToken"].as_str().map(str::to_string),
        None,
        "jit",
    );
    let me = aws_sdk_sts::Client::new(&sdk(creds).await)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    let arn = me.arn().unwrap();
    assert!(
        arn.contains(&format!(":assumed-role/{}/", acct.role)) && arn.contains(&id),
        "{arn}"
    );

    // WHEN it is revoked THEN the deny is on the role in IAM
    let (s, v) = l
        .post(
            &format!("/requests/{id}/revoke"),
            &acct.user,
            json!({"reason": "done"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let name = format!("jit-revoke-{id}");
    let doc = acct
        .iam
        .get_role_policy()
        .role_name(&acct.role)
        .policy_name(&name)
        .send()
        .await
        .unwrap()
        .policy_document()
        .to_string();
    let doc: Value = serde_json::from_str(&jit_aws::account::decode_policy_document(&doc)).unwrap();
    let cond = &doc["Statement"][0]["Condition"];
    assert_eq!(
        cond["StringEquals"]["aws:SourceIdentity"],
        acct.user.as_str()
    );
    assert!(
        cond["DateLessThan"]["aws:TokenIssueTime"].is_string(),
        "{doc}"
    );

    // AND it is cleaned up once no session it denies can live
    // (the execution, not stopped by the revoke, reaches its Revoke step at
    // the original expiry, and that step's sweep removes the due deny)
    l.forward(2 * 3600).await;
    assert_eq!(l.app.sweep_revocations().await.unwrap().removed, 0);
    let names = acct
        .iam
        .list_role_policies()
        .role_name(&acct.role)
        .send()
        .await
        .unwrap();
    assert!(names.policy_names().is_empty(), "{names:?}");
    l.app.shutdown().await;
}

#[tokio::test]
async fn attach_grants_attach_detach_and_overlap_in_iam() {
    let acct = account().await;
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path(), &acct.catalog).await;
    let first = l.granted(&acct.user, "Policy", "1h").await;
    assert_eq!(
        attached(&acct.iam, &acct.user).await,
        std::slice::from_ref(&acct.policy)
    );
    l.forward(30 * 60).await;
    let second = l.granted(&acct.user, "Policy", "1h").await;
    // The first expires: the second still covers the attachment
    l.forward(30 * 60).await;
    let (_, v) = l
        .call("GET", &format!("/requests/{first}"), &acct.user, None)
        .await;
    assert_eq!(v["status"], "EXPIRED");
    assert_eq!(
        attached(&acct.iam, &acct.user).await,
        std::slice::from_ref(&acct.policy)
    );
    // Revoking the second detaches in IAM
    let (s, v) = l
        .post(
            &format!("/requests/{second}/revoke"),
            &acct.user,
            json!({"reason": "done"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(attached(&acct.iam, &acct.user).await.is_empty());
    // And an attach grant has no credentials to vend
    let third = l.granted(&acct.user, "Policy", "1h").await;
    let (s, v) = l
        .call(
            "GET",
            &format!("/requests/{third}/credentials"),
            &acct.user,
            None,
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("not_assume_role"))
    );
    l.app.shutdown().await;
}

fn catalog_check(catalog: &Path, broker: &str) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jit-local"))
        .args([
            "catalog",
            "check",
            "--catalog",
            catalog.to_str().unwrap(),
            "--broker-principal",
            broker,
            "--output",
            "json",
        ])
        .env_clear()
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "AKIDCHECK")
        .env("AWS_SECRET_ACCESS_KEY", "check-secret")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test]
async fn catalog_check_runs_against_the_ambient_account() {
    let acct = account().await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, &acct.catalog).unwrap();
    let broker = format!("arn:aws:iam::{ACCOUNT}:role/jit-broker");
    let (code, stdout, stderr) = catalog_check(&good, &broker);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["rows"].as_array().unwrap().len(), 2);
    // A role without a permissions boundary or the grantable tag is a
    // warning, not a failure: the exit code stays 0
    let role = &report["rows"][0];
    assert_eq!(role["status"], "WARNING", "{role}");
    let warnings = role["warnings"].to_string();
    assert!(
        warnings.contains("no permissions boundary") && warnings.contains("jit-grantable=true"),
        "{warnings}"
    );
    assert_eq!(report["rows"][1]["status"], "OK");

    // The seed's troubleshooting case: a policy name in the wrong case
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!(
            "defaults: {{approvers: {{emails: [lead@example.com]}}}}\npolicies:\n  - policy_name: \"{}\"\n    aws_account_id: \"{ACCOUNT}\"\n    request_name: \"Read Only\"\n",
            acct.policy.to_uppercase()
        ),
    )
    .unwrap();
    let (code, stdout, _) = catalog_check(&bad, &broker);
    assert_eq!(code, Some(1), "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let row = &report["rows"][0];
    assert_eq!(row["status"], "PROBLEM");
    assert!(
        row["problem"].as_str().unwrap().contains("case-sensitive"),
        "{row}"
    );
}

#[tokio::test]
async fn the_catalog_check_route_judges_trust_for_each_broker_principal() {
    // GIVEN the account's role and policy, a role that trusts only the
    // Grant step's role, and a catalog with an admin
    let acct = account().await;
    let grant_role = format!("arn:aws:iam::{ACCOUNT}:role/jit-grant");
    let access_role = format!("arn:aws:iam::{ACCOUNT}:role/jit-access");
    let narrow = unique("jit-e2e-narrow");
    acct.iam
        .create_role()
        .role_name(&narrow)
        .assume_role_policy_document(format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{grant_role}"}},"Action":["sts:AssumeRole","sts:SetSourceIdentity","sts:TagSession"]}}]}}"#
        ))
        .send()
        .await
        .unwrap();
    let catalog = format!(
        "admin_groups: [admins]\n{}  - name: Narrow\n    role_arn: \"arn:aws:iam::{ACCOUNT}:role/{narrow}\"\n",
        acct.catalog
            .replace("groups:\n", "groups:\n  admins: [admin@example.com]\n")
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.yaml");
    std::fs::write(&path, &catalog).unwrap();
    let mut grants = jit_local::access::aws_grants(
        &broker_sdk().await,
        jit_aws::console::DEFAULT_FEDERATION_URL,
    )
    .unwrap();
    grants.principals = [&grant_role, &access_role]
        .iter()
        .map(|a| jit_core::catalog_check::BrokerPrincipal::parse(a).unwrap())
        .collect();
    let cfg = common::config(&dir.path().join("data"), &path, KEY);
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let l = Local::open(&cfg, clock, Overrides::aws(grants), KEY);

    // WHEN an admin asks for the check
    let (s, v) = l
        .call("GET", "/catalog/check", "admin@example.com", None)
        .await;
    // THEN every entry has its row, judged for both principals
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["brokerPrincipals"], json!([grant_role, access_role]));
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{v}");
    assert_eq!(rows[0]["status"], "WARNING", "{}", rows[0]);
    assert_eq!(rows[1]["status"], "OK", "{}", rows[1]);
    // AND the role only the Grant step may assume fails for the other one
    assert_eq!(rows[2]["status"], "PROBLEM", "{}", rows[2]);
    assert!(
        rows[2]["problem"]
            .as_str()
            .unwrap()
            .starts_with(&format!("for {access_role}: ")),
        "{}",
        rows[2]
    );
    assert_eq!(v["ok"], false);
    // AND only admins may run it; it takes no parameters
    let (s, v) = l
        .call("GET", "/catalog/check", "lead@example.com", None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("not_admin")),
        "{v}"
    );
    let (s, v) = l
        .call("GET", "/catalog/check?x=1", "admin@example.com", None)
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("x")), "{v}");
    let (s, _) = l
        .call("POST", "/catalog/check", "admin@example.com", None)
        .await;
    assert_eq!(s, 405);
    l.app.shutdown().await;

    // AND jit-local without AWS grants says where the check runs
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(&dir.path().join("data"), &path, KEY);
    let l = Local::open(&cfg, common::fixed_clock(), Overrides::default(), KEY);
    let (s, v) = l
        .call("GET", "/catalog/check", "admin@example.com", None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("catalog_check_unavailable")),
        "{v}"
    );
    l.app.shutdown().await;
}
