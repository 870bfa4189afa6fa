//! The headline path, end to end, with the real tools a new user has: an
//! IAM role made with the `aws` CLI in moto, jit-local on `--grants aws`
//! (the real STS and IAM adapters on the ambient configuration, pointed at
//! moto by `AWS_ENDPOINT_URL`), the real `jit` binary for the requester and
//! for a second identity who approves, and then
//! `aws sts get-caller-identity` on a profile whose
//! `credential_process = jit credentials <id>`.
//!
//! Needs what `./scripts/test` provides: the moto server
//! (`JIT_TEST_AWS_ENDPOINT`, and `AWS_ENDPOINT_URL` for the ambient config)
//! and the pinned AWS CLI (`JIT_TEST_AWS_CLI`).

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Jit, KEY, Server, finish_within, wait_status};
use jit_local::Overrides;
use serde_json::Value;

const ACCOUNT: &str = "123456789012";
const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":["sts:AssumeRole","sts:SetSourceIdentity","sts:TagSession"]}]}"#;

fn required(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: this test needs moto and the AWS CLI. Run ./scripts/test -p jit-cli"
        ),
    }
}

/// Runs the pinned `aws` CLI against moto with only what `env` gives it
/// (bounded: 60 s).
fn aws(args: &[&str], env: &[(&str, &Path)], with_base_keys: bool) -> Output {
    let mut cmd = Command::new(required("JIT_TEST_AWS_CLI"));
    cmd.args(["--endpoint-url", &required("JIT_TEST_AWS_ENDPOINT")])
        .args(["--region", "us-east-1", "--output", "json"])
        .args(args)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    if !with_base_keys {
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the aws CLI runs");
    finish_within(child, Duration::from_secs(60))
}

/// jit-local on `--grants aws`, built as the binary builds it (the ambient
/// configuration, which `./scripts/test` points at moto).
fn aws_server(root: &Path, catalog: &Path) -> Server {
    let grants = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(jit_local::access::ambient_aws_grants(
            "http://127.0.0.1:9/federation",
        ))
        .expect("aws grants");
    Server::start_with(&root.join("data"), catalog, Overrides::aws(grants))
}

/// Names that never collide in the moto server all tests share.
fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn ok_json(out: Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[test]
fn a_new_user_gets_the_role_in_the_aws_cli_through_credential_process() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let nanos = unique();
    let role = format!("jit-cli-e2e-{}-{nanos}", std::process::id());

    // The platform team's side: a role in the (emulated) account, made with
    // the AWS CLI on the broker's base credentials, and a catalog naming it
    // with a lead as approver — no auto-approval.
    let created = ok_json(
        aws(
            &[
                "iam",
                "create-role",
                "--role-name",
                &role,
                "--assume-role-policy-document",
                TRUST,
            ],
            &[],
            true,
        ),
        "aws iam create-role",
    );
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{role}");
    assert_eq!(created["Role"]["Arn"], role_arn.as_str());
    let catalog = root.join("catalog.yaml");
    std::fs::write(
        &catalog,
        format!(
            r#"defaults:
  max_duration: 2h
  approvers: {{ emails: [lead@example.com] }}
entitlements:
  - name: Deploy
    role_arn: "{role_arn}"
"#
        ),
    )
    .unwrap();

    // jit-local --grants aws, built exactly as the binary builds it.
    let server = aws_server(root, &catalog);

    // A new user configures jit once and asks, waiting for the decision.
    let alice = Jit::new(root, "alice");
    alice.configure(&server.url(), KEY, "alice@example.com", "");
    let lead = Jit::new(root, "lead");
    lead.configure(&server.url(), KEY, "lead@example.com", "");

    let request = {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jit"));
        cmd.args([
            "--output",
            "json",
            "request",
            "Deploy",
            "--duration",
            "1h",
            "--reason",
            "CHG-1234 deploy",
            "--wait",
            "--timeout",
            "60s",
            "--poll-interval",
            "0.2",
        ])
        .env("HOME", root.join("alice").join("home"))
        .env("JIT_CONFIG_DIR", &alice.config)
        .env("JIT_CACHE_DIR", &alice.cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        cmd.spawn().expect("jit request runs")
    };

    // The second identity sees it pending and approves it.
    let mut id = None;
    for _ in 0..200 {
        let pending = lead.json(&["list", "--pending"]);
        if let Some(r) = pending["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["entitlement"] == "Deploy")
        {
            id = Some(r["requestId"].as_str().unwrap().to_string());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let id = id.expect("the request shows up as pending for the approver");
    let approved = lead.json(&["approve", &id, "--reason", "go ahead"]);
    assert_eq!(approved["requestId"], id.as_str(), "{approved}");

    // `jit request --wait` returns once the workflow granted it.
    let waited = ok_json(
        finish_within(request, Duration::from_secs(90)),
        "jit request --wait",
    );
    assert_eq!(waited["requestId"], id.as_str(), "{waited}");
    assert_eq!(waited["status"], "GRANTED", "{waited}");
    wait_status(&alice, &id, "GRANTED");

    // ~/.aws/config with the credential_process line, and nothing else: no
    // base keys in the environment, so only jit can have answered.
    let aws_config = root.join("aws-config");
    std::fs::write(
        &aws_config,
        format!(
            "[profile jit-deploy]\nregion = us-east-1\ncredential_process = \"{}\" credentials {id}\n",
            env!("CARGO_BIN_EXE_jit")
        ),
    )
    .unwrap();
    let no_file = root.join("no-credentials-file");
    let env: [(&str, &Path); 5] = [
        ("AWS_CONFIG_FILE", &aws_config),
        ("AWS_SHARED_CREDENTIALS_FILE", &no_file),
        ("HOME", &root.join("alice").join("home")),
        ("JIT_CONFIG_DIR", &alice.config),
        ("JIT_CACHE_DIR", &alice.cache),
    ];
    let caller_identity = || {
        ok_json(
            aws(
                &["sts", "get-caller-identity", "--profile", "jit-deploy"],
                &env,
                false,
            ),
            "aws sts get-caller-identity",
        )
    };
    let who = caller_identity();
    let arn = who["Arn"].as_str().unwrap_or_default();
    assert!(
        arn.starts_with(&format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/")),
        "the AWS CLI runs as the granted role: {who}"
    );
    assert_eq!(who["Account"], ACCOUNT, "{who}");

    // The keys the AWS CLI used are the ones jit cached for it (0600), and
    // a second call is served from that cache.
    let cached = alice.cache.join("credentials").join(format!("{id}.json"));
    let cached: Value = serde_json::from_slice(&std::fs::read(&cached).unwrap()).unwrap();
    assert!(
        cached["AccessKeyId"].as_str().unwrap().starts_with("ASIA"),
        "STS session keys: {cached}"
    );
    let again = caller_identity();
    assert_eq!(again["Arn"], who["Arn"]);

    // Without the profile (and no base keys) the AWS CLI has no identity:
    // the role above came through credential_process, not from ambient keys.
    let bare = aws(&["sts", "get-caller-identity"], &env, false);
    assert!(
        !bare.status.success(),
        "no credentials without the jit profile: {}",
        String::from_utf8_lossy(&bare.stdout)
    );
}

/// The attach-policy mode through the CLI on moto's IAM: approval attaches
/// the managed policy to the requester's IAM user, `jit revoke` detaches it
/// — each checked with the AWS CLI, as an operator would.
#[test]
fn an_attach_policy_grant_shows_in_iam_and_jit_revoke_detaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let nanos = unique();
    let policy = format!("JitCliE2e{}{nanos}", std::process::id());
    let user = format!("dev-{nanos}@example.com");
    let admin = |args: &[&str], what: &str| ok_json(aws(args, &[], true), what);
    admin(
        &[
            "iam",
            "create-policy",
            "--policy-name",
            &policy,
            "--policy-document",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}]}"#,
        ],
        "aws iam create-policy",
    );
    admin(
        &["iam", "create-user", "--user-name", &user],
        "aws iam create-user",
    );
    let attached = || -> Vec<String> {
        admin(
            &["iam", "list-attached-user-policies", "--user-name", &user],
            "aws iam list-attached-user-policies",
        )["AttachedPolicies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["PolicyName"].as_str().unwrap().to_string())
            .collect()
    };
    let catalog = root.join("catalog.yaml");
    std::fs::write(
        &catalog,
        format!(
            r#"defaults:
  max_duration: 2h
  approvers: {{ emails: [lead@example.com] }}
entitlements:
  - name: ListBuckets
    policy_name: "{policy}"
    account: "{ACCOUNT}"
"#
        ),
    )
    .unwrap();
    let server = aws_server(root, &catalog);
    let dev = Jit::new(root, "dev");
    dev.configure(&server.url(), KEY, &user, "");
    let lead = Jit::new(root, "lead");
    lead.configure(&server.url(), KEY, "lead@example.com", "");

    let id = dev.json(&[
        "request",
        "ListBuckets",
        "--duration",
        "1h",
        "--reason",
        "audit",
    ])["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&dev, &id, "APPROVAL_PENDING");
    assert!(attached().is_empty(), "nothing before the approval");
    lead.json(&["approve", &id, "--reason", "ok"]);
    wait_status(&dev, &id, "GRANTED");
    assert_eq!(attached(), vec![policy.clone()]);

    let r = dev.json(&["revoke", &id, "--reason", "done early"]);
    assert_eq!(r["status"], "REVOKED", "{r}");
    assert!(attached().is_empty(), "detached at once by the revoke");
}

/// `jit catalog check`: as the broker (the API, admins) and `--local` with
/// the caller's own credentials, with `jit-local catalog check`'s table and
/// exit codes (0 OK or warnings, 1 a problem, 2 could not run).
#[test]
fn catalog_check_through_the_broker_and_locally() {
    let dir = tempfile::tempdir().unwrap();
    let role = format!("jit-check-{}", unique());
    let out = aws(
        &[
            "iam",
            "create-role",
            "--role-name",
            &role,
            "--assume-role-policy-document",
            TRUST,
        ],
        &[],
        true,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entry = |name: &str, role: &str| {
        format!("  - name: {name}\n    role_arn: \"arn:aws:iam::{ACCOUNT}:role/{role}\"\n")
    };
    let head = "admin_groups: [admins]\ngroups: {admins: [admin@example.com]}\ndefaults: {approvers: {emails: [lead@example.com]}}\nentitlements:\n";
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, format!("{head}{}", entry("Ops", &role))).unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!(
            "{head}{}{}",
            entry("Ops", &role),
            entry("Gone", "jit-no-such-role")
        ),
    )
    .unwrap();
    let mut server = aws_server(dir.path(), &good);
    let admin = Jit::new(dir.path(), "admin");
    admin.configure(&server.url(), KEY, "admin@example.com", "");
    let lead = Jit::new(dir.path(), "lead");
    lead.configure(&server.url(), KEY, "lead@example.com", "");

    // GIVEN the CLI lists the command
    assert!(admin.ok(&["--help"]).contains("catalog"));

    // WHEN an admin asks the broker THEN the table, exit 0 (a warning only)
    let out = admin.run(&["catalog", "check"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ENTITLEMENT"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("Ops") && l.contains("WARNING")),
        "{text}"
    );
    let v = admin.json(&["catalog", "check"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["rows"].as_array().unwrap().len(), 1, "{v}");
    // AND someone else cannot run it: exit 2, the reason on one line
    let out = lead.run(&["catalog", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin_groups"));

    // WHEN checked locally with the ambient (moto) credentials
    let endpoint = required("JIT_TEST_AWS_ENDPOINT");
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIDCHECK"),
        ("AWS_SECRET_ACCESS_KEY", "check-secret"),
        ("AWS_REGION", "us-east-1"),
    ];
    let broker = format!("arn:aws:iam::{ACCOUNT}:role/jit-broker");
    let local = |catalog: &Path| {
        admin.run_env(
            &[
                "catalog",
                "check",
                "--local",
                "--catalog",
                catalog.to_str().unwrap(),
                "--broker-principal",
                &broker,
            ],
            &env,
        )
    };
    // THEN a missing role is a problem: exit 1, the same table
    let out = local(&bad);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with(&format!("broker principal: {broker}\n")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("Gone") && l.contains("PROBLEM")),
        "{text}"
    );
    assert_eq!(local(&good).status.code(), Some(0));
    // AND an unreadable catalog could not be checked: exit 2
    let out = local(&dir.path().join("missing.yaml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yaml"));
    server.stop();
}
