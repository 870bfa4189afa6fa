//! Permission-set grants (IAM Identity Center) end to end in `jit-local`,
//! on the catalog's `identity_center.local_directory` fake: a request for
//! two accounts assigns in both and removes both at expiry; a subset of
//! accounts; a provisioning failure in one account is rolled back and
//! recorded per account, never a clean grant; overlapping grants share an
//! assignment; revoke; the portal URL; `idc:` group eligibility; the
//! reconciler removing an assignment made outside the broker; and faults
//! injected around the Identity Center calls (a crash after the call, before
//! its completion reached the ledger; a delete that keeps failing) never
//! leave an assignment past the window.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use common::Local;
use jit_core::identity_center::{Assignment, AssignmentManager, PermissionSetInfo};
use jit_core::ports::GrantError;
use jit_core::{AccountId, Principal};
use jit_local::identity_center::{LocalIdentityCenter, local_user_id};
use jit_local::{IdcPorts, Overrides};
use serde_json::{Value, json};

const KEY: &str = "permission-set-test-key-0123456789";
const PS_ARN: &str = "arn:aws:sso:::permissionSet/ssoins-local/AdminAccess";

const CATALOG: &str = r#"
identity_center:
  instance_arn: "arn:aws:sso:::instance/ssoins-local"
  identity_store_id: "d-0000000000"
  region: us-east-1
  local_directory:
    users: [alice@example.com, bob@example.com, carol@example.com]
    groups:
      Platform: [alice@example.com, bob@example.com]
    permission_sets: [AdminAccess]
    failing_accounts: ["333333333333"]
defaults:
  max_duration: 2h
  approvers: { emails: [lead@example.com] }
entitlements:
  - name: Admin
    permission_set: AdminAccess
    accounts: ["111111111111", "222222222222"]
    eligible_groups: ["idc:Platform"]
  - name: Flaky
    permission_set: AdminAccess
    accounts: ["111111111111", "333333333333"]
"#;

fn open(dir: &Path, overrides: Overrides) -> Local {
    let catalog = dir.join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).unwrap();
    let cfg = common::config(&dir.join("data"), &catalog, KEY);
    Local::open(&cfg, common::fixed_clock(), overrides, KEY)
}

/// `(account, user id)` of every assignment held in the local state.
fn held(dir: &Path) -> Vec<(String, String)> {
    let path = dir.join("data").join(jit_local::IDC_ASSIGNMENTS_FILE);
    let rows: Vec<Value> = match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(_) => vec![],
    };
    rows.iter()
        .map(|r| {
            assert_eq!(r["permissionSetArn"], PS_ARN);
            (
                r["account"].as_str().unwrap().to_string(),
                r["userId"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn user(email: &str) -> String {
    local_user_id(&Principal::parse(email).unwrap())
}

fn pair(account: &str, email: &str) -> (String, String) {
    (account.to_string(), user(email))
}

async fn ask(l: &Local, who: &str, entitlement: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"entitlement": entitlement, "duration": "1h", "justification": "INC-14"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    l.post("/requests", who, body).await
}

async fn approve(l: &Local, id: &str) {
    let (s, v) = l
        .post(
            &format!("/requests/{id}/approve"),
            "lead@example.com",
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

async fn granted(l: &Local, who: &str, extra: Value) -> String {
    let (s, v) = ask(l, who, "Admin", extra).await;
    assert_eq!(s, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    approve(l, &id).await;
    assert_eq!(l.status(&id).await, "GRANTED");
    id
}

#[tokio::test]
async fn a_request_for_two_accounts_assigns_in_both_and_expiry_removes_both() {
    // GIVEN an eligible requester (in the Identity Store group Platform)
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path(), Overrides::default());
    // WHEN a request for both accounts is approved
    let id = granted(&l, "alice@example.com", json!({})).await;
    // THEN both accounts hold the assignment, and the record names them
    assert_eq!(
        held(tmp.path()),
        vec![
            pair("111111111111", "alice@example.com"),
            pair("222222222222", "alice@example.com")
        ]
    );
    let r = l.get(&id).await;
    assert_eq!(r["grantMode"], "permission-set");
    assert_eq!(r["accounts"], json!(["111111111111", "222222222222"]));
    // AND the console answer is the access portal for each account
    let (s, v) = l
        .call(
            "GET",
            &format!("/requests/{id}/console"),
            "alice@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["url"],
        "https://d-0000000000.awsapps.com/start/#/console?account_id=111111111111&role_name=AdminAccess"
    );
    assert_eq!(v["accounts"][1]["account"], "222222222222");
    // AND there are no credentials to vend
    let (s, v) = l
        .call(
            "GET",
            &format!("/requests/{id}/credentials"),
            "alice@example.com",
            None,
        )
        .await;
    assert_eq!(s, 409, "{v}");
    // AND `jit-local iam state` lists both with the request
    let now = l.now();
    let state = jit_local::iam_state::state(&tmp.path().join("data"), now)
        .await
        .unwrap();
    let listed: Vec<(&str, Option<&str>)> = state
        .account_assignments
        .iter()
        .map(|a| (a.account.as_str(), a.request_id.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [
            ("111111111111", Some(id.as_str())),
            ("222222222222", Some(id.as_str()))
        ]
    );
    // WHEN the window ends THEN both assignments are gone
    l.forward(3601).await;
    assert_eq!(l.status(&id).await, "EXPIRED");
    assert_eq!(held(tmp.path()), vec![]);
    let state = jit_local::iam_state::state(&tmp.path().join("data"), l.now())
        .await
        .unwrap();
    assert!(state.account_assignments.is_empty());
}

#[tokio::test]
async fn a_subset_of_accounts_is_granted_and_an_account_outside_is_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path(), Overrides::default());
    // WHEN an account outside the entitlement's is asked for THEN 400 `accounts`
    let (s, v) = ask(
        &l,
        "alice@example.com",
        "Admin",
        json!({"accounts": ["999999999999"]}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["field"], "accounts", "{v}");
    let (s, v) = ask(
        &l,
        "alice@example.com",
        "Admin",
        json!({"accounts": "111111111111"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["field"].clone()),
        (400, json!("accounts")),
        "{v}"
    );
    let (s, v) = ask(&l, "alice@example.com", "Admin", json!({"accounts": []})).await;
    assert_eq!(
        (s, v["error"]["field"].clone()),
        (400, json!("accounts")),
        "{v}"
    );
    // AND `accounts` on a one-account kind of entitlement is not silently dropped: the
    // permission-set entitlement takes a subset
    let id = granted(
        &l,
        "alice@example.com",
        json!({"accounts": ["222222222222"]}),
    )
    .await;
    assert_eq!(
        held(tmp.path()),
        vec![pair("222222222222", "alice@example.com")]
    );
    assert_eq!(l.get(&id).await["accounts"], json!(["222222222222"]));
}

#[tokio::test]
async fn idc_group_members_are_eligible_and_others_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path(), Overrides::default());
    // GIVEN carol, an Identity Store user outside the group Platform
    let (s, v) = ask(&l, "carol@example.com", "Admin", json!({})).await;
    // THEN she is refused, and bob (a member) may ask
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "not_eligible");
    let (s, v) = ask(&l, "bob@example.com", "Admin", json!({})).await;
    assert_eq!(s, 201, "{v}");
    // AND an asserted group cannot pose as an Identity Store group
    let (s, _) = common::send(
        &l.app,
        "POST",
        "/requests",
        &[
            ("x-api-key", KEY),
            ("x-jit-user", "carol@example.com"),
            ("x-jit-groups", "idc:Platform"),
            ("content-type", "application/json"),
        ],
        json!({"entitlement": "Admin", "duration": "1h", "justification": "x"})
            .to_string()
            .into(),
    )
    .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn a_provisioning_failure_in_one_account_is_rolled_back_and_recorded_per_account() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path(), Overrides::default());
    // WHEN a grant in two accounts fails in one (333333333333 fails)
    let (s, v) = ask(&l, "carol@example.com", "Flaky", json!({})).await;
    assert_eq!(s, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    approve(&l, &id).await;
    // THEN it is not a grant: FAILED, and the account assigned is rolled back
    assert_eq!(l.status(&id).await, "FAILED");
    assert_eq!(held(tmp.path()), vec![]);
    // AND the trail says what happened in each account
    let (_, audit) = l
        .call(
            "GET",
            &format!("/requests/{id}/audit"),
            "lead@example.com",
            None,
        )
        .await;
    let notes: Vec<String> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("111111111111: assigned")
            && n.contains("333333333333: failed")
            && n.contains("rolled back")),
        "{notes:#?}"
    );
}

#[tokio::test]
async fn overlapping_grants_share_an_assignment_and_revoke_removes_only_what_no_grant_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path(), Overrides::default());
    // GIVEN two grants of alice: both accounts, then only the second
    let both = granted(&l, "alice@example.com", json!({})).await;
    let second = granted(
        &l,
        "alice@example.com",
        json!({"accounts": ["222222222222"]}),
    )
    .await;
    // WHEN the first is revoked
    let (s, v) = l
        .post(
            &format!("/requests/{both}/revoke"),
            "alice@example.com",
            json!({"reason": "done"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // THEN the account only it needed is removed, the shared one kept
    assert_eq!(
        held(tmp.path()),
        vec![pair("222222222222", "alice@example.com")]
    );
    // AND revoking the second removes the rest
    let (s, v) = l
        .post(
            &format!("/requests/{second}/revoke"),
            "lead@example.com",
            json!({"reason": "done"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(held(tmp.path()), vec![]);
    // AND the first's Wait ending later changes nothing
    l.forward(7200).await;
    assert_eq!(held(tmp.path()), vec![]);
}

#[tokio::test]
async fn the_reconciler_removes_an_assignment_made_outside_the_broker() {
    // GIVEN an assignment of a catalogued permission set the ledger never saw
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    std::fs::write(
        tmp.path().join("data").join(jit_local::IDC_ASSIGNMENTS_FILE),
        json!([{ "account": "111111111111", "permissionSetArn": PS_ARN, "userId": user("bob@example.com") }])
            .to_string(),
    )
    .unwrap();
    let l = open(tmp.path(), Overrides::default());
    // AND a live grant of alice's
    granted(
        &l,
        "alice@example.com",
        json!({"accounts": ["111111111111"]}),
    )
    .await;
    // WHEN the reconciler runs
    let report = l.app.reconcile(false, None).await.unwrap();
    // THEN bob's is removed and alice's kept
    assert_eq!(
        held(tmp.path()),
        vec![pair("111111111111", "alice@example.com")]
    );
    assert!(
        report
            .grants
            .removed
            .iter()
            .any(|f| f.done && f.target.contains(&user("bob@example.com"))),
        "{report:#?}"
    );
}

/// The local fake, with faults: a create that lands but reports nothing
/// back (the process "crashed" after the call, before the ledger heard of
/// it), and deletes that fail while `deletes_fail` is set.
struct Faulty {
    inner: Arc<LocalIdentityCenter>,
    lose_create_answer: AtomicBool,
    deletes_fail: AtomicBool,
}

#[async_trait]
impl AssignmentManager for Faulty {
    async fn user_id(&self, user: &Principal) -> Result<Option<String>, GrantError> {
        self.inner.user_id(user).await
    }
    async fn permission_set(&self, n: &str) -> Result<Option<PermissionSetInfo>, GrantError> {
        self.inner.permission_set(n).await
    }
    async fn create(&self, a: &Assignment) -> Result<(), GrantError> {
        self.inner.create(a).await?;
        if self.lose_create_answer.swap(false, Ordering::SeqCst) {
            return Err(GrantError::Other("injected: the answer was lost".into()));
        }
        Ok(())
    }
    async fn delete(&self, a: &Assignment) -> Result<(), GrantError> {
        if self.deletes_fail.load(Ordering::SeqCst) {
            return Err(GrantError::Transient(
                "injected: Identity Center unavailable".into(),
            ));
        }
        self.inner.delete(a).await
    }
    async fn assigned_users(&self, a: &AccountId, ps: &str) -> Result<Vec<String>, GrantError> {
        self.inner.assigned_users(a, ps).await
    }
}

fn faulty(dir: &Path) -> (Arc<Faulty>, Overrides) {
    let catalog = jit_core::Catalog::parse(CATALOG, "c.yaml").unwrap();
    let local = catalog
        .identity_center()
        .unwrap()
        .local_directory
        .clone()
        .unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let inner = Arc::new(
        LocalIdentityCenter::open(
            local,
            vec![
                AccountId::parse("111111111111").unwrap(),
                AccountId::parse("222222222222").unwrap(),
            ],
            dir.join("data").join(jit_local::IDC_ASSIGNMENTS_FILE),
        )
        .unwrap(),
    );
    let f = Arc::new(Faulty {
        inner: inner.clone(),
        lose_create_answer: AtomicBool::new(false),
        deletes_fail: AtomicBool::new(false),
    });
    let overrides = Overrides {
        identity_center: Some(IdcPorts {
            assignments: f.clone(),
            directory: inner,
        }),
        ..Default::default()
    };
    (f, overrides)
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_removed_by_the_reconciler_once_no_grant_needs_it() {
    // GIVEN the second account's create lands but its answer is lost (as a
    // crash right after the call): the grant fails, and a rollback that
    // cannot know of it leaves it to the ledger
    let tmp = tempfile::tempdir().unwrap();
    let (f, overrides) = faulty(tmp.path());
    let l = open(tmp.path(), overrides);
    f.lose_create_answer.store(true, Ordering::SeqCst);
    let (s, v) = ask(
        &l,
        "alice@example.com",
        "Admin",
        json!({"accounts": ["222222222222"]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    approve(&l, &id).await;
    assert_eq!(l.status(&id).await, "FAILED");
    // THEN whatever is held is held by a request that is not live, and the
    // reconciler (after its grace) leaves nothing
    l.forward(jit_core::reconcile::GRACE_SECS + 1).await;
    l.app.reconcile(false, None).await.unwrap();
    assert_eq!(held(tmp.path()), vec![]);
}

#[tokio::test]
async fn a_delete_failing_at_expiry_never_leaves_the_assignment_after_the_reconciler_runs() {
    // GIVEN a grant whose deletes fail when its window ends
    let tmp = tempfile::tempdir().unwrap();
    let (f, overrides) = faulty(tmp.path());
    let l = open(tmp.path(), overrides);
    let id = granted(&l, "alice@example.com", json!({})).await;
    f.deletes_fail.store(true, Ordering::SeqCst);
    l.forward(3601).await;
    // THEN it is still held (the Revoke step failed: never reported clean)
    assert_eq!(held(tmp.path()).len(), 2);
    assert_ne!(l.status(&id).await, "GRANTED", "the window has ended");
    // WHEN Identity Center answers again and the reconciler runs
    f.deletes_fail.store(false, Ordering::SeqCst);
    l.forward(jit_core::reconcile::GRACE_SECS + 1).await;
    l.app.reconcile(false, None).await.unwrap();
    // THEN nothing is left
    assert_eq!(held(tmp.path()), vec![]);
}
