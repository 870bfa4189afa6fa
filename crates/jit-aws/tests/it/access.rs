//! The access adapters around a grant: inline role policies (early-revoke
//! denies) and IAM lookups (the catalog check) against moto through the
//! real SDK, and the federation sign-in against a loopback fake.

use crate::common;

use std::time::Duration;

use jit_aws::{FederationSignin, IamInspector, IamRoleRevoker};
use jit_core::Catalog;
use jit_core::catalog_check::{
    BrokerPrincipal, CheckStatus, GRANTABLE_TAG_KEY, GRANTABLE_TAG_VALUE, catalog_check,
    has_problems,
};
use jit_core::grant_ports::{AccountInspector, ConsoleSignin, RoleRevoker};
use jit_core::ports::{GrantError, IssuedCredentials, Secret};
use jit_core::{AccountId, PolicyName, RoleArn};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNT: &str = "123456789012";
const BROKER: &str = "arn:aws:iam::123456789012:role/jit-broker";
const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}]}"#;

fn trust(principal: &str, actions: &[&str]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": actions}]
    })
    .to_string()
}

async fn iam() -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&common::sdk_config().await)
}

async fn create_role(iam: &aws_sdk_iam::Client, name: &str, trust: &str, max: i32) -> RoleArn {
    create_guarded_role(iam, name, trust, max, None, false).await
}

/// A role with the guardrails `catalog check` looks for: a permissions
/// boundary (a policy ARN) and the grantable tag.
async fn create_guarded_role(
    iam: &aws_sdk_iam::Client,
    name: &str,
    trust: &str,
    max: i32,
    boundary: Option<&str>,
    tagged: bool,
) -> RoleArn {
    let mut call = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust)
        .max_session_duration(max)
        .set_permissions_boundary(boundary.map(str::to_string));
    if tagged {
        call = call.tags(grantable_tag());
    }
    let out = call.send().await.unwrap();
    RoleArn::parse(out.role().unwrap().arn()).unwrap()
}

fn grantable_tag() -> aws_sdk_iam::types::Tag {
    aws_sdk_iam::types::Tag::builder()
        .key(GRANTABLE_TAG_KEY)
        .value(GRANTABLE_TAG_VALUE)
        .build()
        .unwrap()
}

#[tokio::test]
async fn revocation_denies_are_put_read_and_deleted_on_a_role() {
    let iam = iam().await;
    let name = common::unique_name("jit-rev");
    let role = create_role(&iam, &name, &trust(BROKER, &["sts:AssumeRole"]), 3600).await;
    let revoker = IamRoleRevoker::from_config(&common::sdk_config().await);
    let t = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let doc = jit_core::revocation::deny_document("jit-revoke-X", "alice@example.com", t);

    // GIVEN a deny put on the role
    revoker
        .put_role_policy(&role, "jit-revoke-X", &doc)
        .await
        .unwrap();
    // THEN IAM lists it and reads it back as the same JSON
    let listed = iam
        .list_role_policies()
        .role_name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.policy_names(), ["jit-revoke-X"]);
    let back = revoker
        .get_role_policy(&role, "jit-revoke-X")
        .await
        .unwrap()
        .expect("the policy is there");
    let (a, b): (Value, Value) = (
        serde_json::from_str(&back).unwrap(),
        serde_json::from_str(&doc).unwrap(),
    );
    assert_eq!(a, b);
    assert_eq!(
        a["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
        "2027-01-15T08:00:00Z"
    );
    // WHEN it is deleted (twice) THEN it is gone and the second is no error
    revoker
        .delete_role_policy(&role, "jit-revoke-X")
        .await
        .unwrap();
    revoker
        .delete_role_policy(&role, "jit-revoke-X")
        .await
        .expect("deleting what is gone is fine");
    assert_eq!(
        revoker
            .get_role_policy(&role, "jit-revoke-X")
            .await
            .unwrap(),
        None
    );
    // AND a missing role is named
    let ghost = RoleArn::parse(format!(
        "arn:aws:iam::{ACCOUNT}:role/{}",
        common::unique_name("ghost")
    ))
    .unwrap();
    let err = revoker
        .put_role_policy(&ghost, "jit-revoke-X", &doc)
        .await
        .unwrap_err();
    assert!(matches!(err, GrantError::RoleMissing(_)), "{err:?}");
}

#[tokio::test]
async fn the_catalog_check_names_every_problem_and_its_fix() {
    let iam = iam().await;
    let policy = common::unique_name("JitCheckPolicy");
    let boundary = iam
        .create_policy()
        .policy_name(&policy)
        .policy_document(POLICY)
        .send()
        .await
        .unwrap()
        .policy()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let boundary = Some(boundary.as_str());
    let all = ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"];
    let good = common::unique_name("jit-good");
    create_guarded_role(&iam, &good, &trust(BROKER, &all), 7200, boundary, true).await;
    let by_account = common::unique_name("jit-acct");
    create_guarded_role(
        &iam,
        &by_account,
        &trust(ACCOUNT, &all),
        3600,
        boundary,
        true,
    )
    .await;
    let unbounded = common::unique_name("jit-unbounded");
    create_guarded_role(&iam, &unbounded, &trust(BROKER, &all), 3600, None, true).await;
    let untagged = common::unique_name("jit-untagged");
    create_guarded_role(&iam, &untagged, &trust(BROKER, &all), 3600, boundary, false).await;
    // Requesters of an attach-policy entitlement: one tagged, one not
    let tagged_user = format!("{}@example.com", common::unique_name("tagged"));
    iam.create_user()
        .user_name(&tagged_user)
        .tags(grantable_tag())
        .send()
        .await
        .unwrap();
    let plain_user = format!("{}@example.com", common::unique_name("plain"));
    iam.create_user()
        .user_name(&plain_user)
        .send()
        .await
        .unwrap();
    let no_source = common::unique_name("jit-nosrc");
    create_role(&iam, &no_source, &trust(BROKER, &["sts:AssumeRole"]), 3600).await;
    let other = common::unique_name("jit-other");
    create_role(
        &iam,
        &other,
        &trust("arn:aws:iam::123456789012:role/someone-else", &all),
        3600,
    )
    .await;
    let ghost = common::unique_name("jit-ghost");
    let role = |n: &str| format!("arn:aws:iam::{ACCOUNT}:role/{n}");
    let catalog = format!(
        r#"defaults: {{approvers: {{emails: [lead@example.com]}}}}
groups:
  eng: ["{tagged_user}", "{plain_user}"]
entitlements:
  - {{name: Policy, policy_name: "{policy}", account: "{ACCOUNT}"}}
  - {{name: WrongCase, policy_name: "{lower}", account: "{ACCOUNT}"}}
  - {{name: OtherAccount, policy_name: "{policy}", account: "210987654321"}}
  - {{name: Good, role_arn: "{good}"}}
  - {{name: ByAccount, role_arn: "{by_account}"}}
  - {{name: NoSourceIdentity, role_arn: "{no_source}"}}
  - {{name: OtherPrincipal, role_arn: "{other}"}}
  - {{name: Missing, role_arn: "{ghost}"}}
  - {{name: WrongPath, role_arn: "arn:aws:iam::{ACCOUNT}:role/ops/{good_name}"}}
  - {{name: Unbounded, role_arn: "{unbounded}"}}
  - {{name: Untagged, role_arn: "{untagged}"}}
  - {{name: EngPolicy, policy_name: "{policy}", account: "{ACCOUNT}", eligible_groups: [eng]}}
"#,
        lower = policy.to_lowercase(),
        good = role(&good),
        by_account = role(&by_account),
        no_source = role(&no_source),
        other = role(&other),
        ghost = role(&ghost),
        good_name = good,
        unbounded = role(&unbounded),
        untagged = role(&untagged),
    );
    let catalog = Catalog::parse(&catalog, "check.yaml").unwrap();
    let inspector = IamInspector::from_config(&common::sdk_config().await);
    let broker = BrokerPrincipal::parse(BROKER).unwrap();

    let rows = catalog_check(&catalog, &inspector, Some(&broker)).await;
    // (entitlement, status, a word the problem or detail must contain)
    let expected = [
        ("Policy", CheckStatus::Ok, "attachable"),
        ("WrongCase", CheckStatus::Problem, "case-sensitive"),
        ("OtherAccount", CheckStatus::Problem, "own account"),
        ("Good", CheckStatus::Ok, "MaxSessionDuration 7200s"),
        ("ByAccount", CheckStatus::Ok, "trust allows"),
        (
            "NoSourceIdentity",
            CheckStatus::Problem,
            "sts:SetSourceIdentity",
        ),
        ("OtherPrincipal", CheckStatus::Problem, "does not let"),
        ("Missing", CheckStatus::Problem, "does not exist"),
        ("WrongPath", CheckStatus::Problem, "path differs"),
        ("Unbounded", CheckStatus::Warning, "no permissions boundary"),
        (
            "Untagged",
            CheckStatus::Warning,
            "no tag jit-grantable=true",
        ),
        (
            "EngPolicy",
            CheckStatus::Warning,
            "2 eligible IAM identities checked",
        ),
    ];
    assert_eq!(rows.len(), expected.len());
    for (row, (name, status, word)) in rows.iter().zip(expected) {
        assert_eq!(row.entitlement, name);
        assert_eq!(row.status, status, "{row:?}");
        let warnings: Vec<&str> = row.warnings.iter().map(|w| w.warning.as_str()).collect();
        let text = format!(
            "{} {} {}",
            row.detail,
            row.problem.clone().unwrap_or_default(),
            warnings.join(" ")
        );
        assert!(text.contains(word), "{name}: {text}");
        assert_eq!(row.fix.is_some(), status == CheckStatus::Problem, "{row:?}");
        if status == CheckStatus::Warning {
            assert_eq!(row.warnings.len(), 1, "{row:?}");
        }
    }
    // Only the untagged requester of the attach-policy entitlement is named
    let eng = &rows[expected.len() - 1].warnings[0];
    assert!(eng.warning.contains(&plain_user), "{eng:?}");
    assert!(!eng.warning.contains(&tagged_user), "{eng:?}");
    assert_eq!(
        eng.fix,
        format!("aws iam tag-user --user-name {plain_user} --tags Key=jit-grantable,Value=true")
    );
    assert!(has_problems(&rows));
    assert!(!has_problems(&rows[9..]), "warnings alone are no problem");
    let json = serde_json::to_value(&rows[1]).unwrap();
    assert_eq!(json["status"], "PROBLEM");
    assert!(json["fix"].as_str().unwrap().contains("exact name"));

    // The inspector itself, on what moto holds
    let p = inspector
        .policy(
            &AccountId::parse(ACCOUNT).unwrap(),
            &PolicyName::parse(policy.clone()).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.arn, format!("arn:aws:iam::{ACCOUNT}:policy/{policy}"));
    assert!(p.attachable);
    // And who the ambient identity is, as the check's default broker
    let me = jit_aws::caller_identity(&common::sdk_config().await)
        .await
        .unwrap();
    assert!(BrokerPrincipal::parse(&me).is_ok(), "{me}");
}

/// A one-shot loopback HTTP server: answers each request with `reply`
/// (status, body) and hands back the request lines it saw.
async fn fake_federation(
    replies: Vec<(u16, &'static str)>,
) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/federation", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut seen = vec![];
        for (status, body) in replies {
            let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
            let Ok(Ok((mut stream, _))) = accepted else {
                break;
            };
            let mut buf = vec![0u8; 16 * 1024];
            let mut len = 0;
            while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf[len..]).await.unwrap();
                if n == 0 {
                    break;
                }
                len += n;
            }
            let head = String::from_utf8_lossy(&buf[..len]).to_string();
            seen.push(head.lines().next().unwrap_or_default().to_string());
            let resp = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(resp.as_bytes()).await.unwrap();
            stream.shutdown().await.ok();
        }
        seen
    });
    (url, server)
}

fn creds() -> IssuedCredentials {
    IssuedCredentials {
        access_key_id: "ASIAFEDERATIONTEST".into(),
        secret_access_key: Secret::new("fed-secret-key/+="),
        session_token: Secret::new("fed-session-token"),
        expiration: chrono::Utc::now() + chrono::Duration::seconds(900),
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn console_sign_in_goes_through_get_signin_token_then_login() {
    let (url, server) = fake_federation(vec![(200, r#"{"SigninToken":"tok-42/+"}"#)]).await;
    let signin = FederationSignin::new(&url).unwrap();
    let login = signin.signin_url(&creds()).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();

    // THEN one getSigninToken GET carried the session credentials as JSON
    assert_eq!(seen.len(), 1);
    let line = &seen[0];
    assert!(
        line.starts_with("GET /federation?Action=getSigninToken&Session="),
        "{line}"
    );
    let session = line
        .split("Session=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let session: Value = serde_json::from_str(&decode(session)).unwrap();
    assert_eq!(session["sessionId"], "ASIAFEDERATIONTEST");
    assert_eq!(session["sessionKey"], "fed-secret-key/+=");
    assert_eq!(session["sessionToken"], "fed-session-token");
    assert!(!line.contains("SessionDuration"), "{line}");
    // AND the login URL is on the same endpoint with the token
    assert_eq!(
        login.expose(),
        format!(
            "{url}?Action=login&Issuer=jit-access&Destination=https%3A%2F%2Fconsole.aws.amazon.com%2F&SigninToken=tok-42%2F%2B"
        )
    );
    assert!(!format!("{login:?}").contains("tok-42"), "Debug hides it");
}

#[tokio::test]
async fn federation_failures_are_classified_without_secrets() {
    // (reply, transient?)
    let cases = [
        ((400, "Invalid credentials parameter"), false),
        ((503, "busy"), true),
        ((200, r#"{"nothing":1}"#), false),
    ];
    for ((status, body), transient) in cases {
        let (url, server) = fake_federation(vec![(status, body)]).await;
        let err = FederationSignin::new(&url)
            .unwrap()
            .signin_url(&creds())
            .await
            .unwrap_err();
        server.abort();
        assert_eq!(
            matches!(err, GrantError::Transient(_)),
            transient,
            "{status}: {err:?}"
        );
        let text = err.to_string();
        for secret in ["fed-secret-key", "fed-session-token"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    // Nothing listening: transient, named by endpoint
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/federation", listener.local_addr().unwrap());
    drop(listener);
    let err = FederationSignin::new(&url)
        .unwrap()
        .signin_url(&creds())
        .await
        .unwrap_err();
    assert!(
        matches!(err, GrantError::Transient(ref m) if m.contains(&url)),
        "{err:?}"
    );
}
