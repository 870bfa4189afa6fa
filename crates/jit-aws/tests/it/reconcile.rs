//! The reconciler on AWS adapters, against moto through the real SDK: the
//! ledger on DynamoDB, IAM listed with `IamLister`, IAM changed through
//! `IamAttacher` and `IamRoleRevoker` — the `expire` sweep's wiring.

use crate::common;

use std::sync::Arc;

use jit_aws::{DynamoStore, IamAttacher, IamLister, IamRoleRevoker};
use jit_core::attachments::AttachmentKey;
use jit_core::ledger::{GrantIam, GrantLedger, IamInventory};
use jit_core::lifecycle::Status;
use jit_core::ports::{Clock, IamPrincipal, ManualClock, RequestStore};
use jit_core::reconcile::{GRACE_SECS, Reconciler};
use jit_core::request::{AccessRequest, GrantTarget};
use jit_core::{AccountId, Catalog, PolicyName, Principal, RoleArn};

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#;
const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}]}"#;

struct World {
    iam_client: aws_sdk_iam::Client,
    store: DynamoStore,
    ledger: Arc<jit_aws::DynamoLedger>,
    clock: Arc<ManualClock>,
    iam: GrantIam,
    catalog: Catalog,
    user: String,
    policy: String,
    role: RoleArn,
}

async fn world() -> World {
    let sdk = common::sdk_config().await;
    let iam_client = aws_sdk_iam::Client::new(&sdk);
    let user = format!("{}@example.com", common::unique_name("u"));
    iam_client
        .create_user()
        .user_name(&user)
        .send()
        .await
        .unwrap();
    let policy = common::unique_name("JitReadOnly");
    iam_client
        .create_policy()
        .policy_name(&policy)
        .policy_document(POLICY)
        .send()
        .await
        .unwrap();
    let role_name = common::unique_name("JIT-Admin");
    let created = iam_client
        .create_role()
        .role_name(&role_name)
        .assume_role_policy_document(TRUST)
        .send()
        .await
        .unwrap();
    let role = RoleArn::parse(created.role().unwrap().arn()).unwrap();
    let catalog = Catalog::parse(
        &format!(
            "entitlements:\n  - name: Admin\n    role_arn: \"{role}\"\n    approvers: {{ emails: [lead@example.com] }}\n"
        ),
        "catalog.yaml",
    )
    .unwrap();
    let ledger = Arc::new(common::fresh_ledger().await);
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let iam = GrantIam::new(
        Arc::new(IamAttacher::from_config(&sdk)),
        Arc::new(IamRoleRevoker::from_config(&sdk)),
        ledger.clone(),
        clock.clone(),
    )
    .with_inventory(Arc::new(IamLister::from_config(&sdk)));
    World {
        iam_client,
        store: common::fresh_store().await,
        ledger,
        clock,
        iam,
        catalog,
        user,
        policy,
        role,
    }
}

impl World {
    async fn attached(&self) -> Vec<String> {
        self.iam_client
            .list_attached_user_policies()
            .user_name(&self.user)
            .send()
            .await
            .unwrap()
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_name().map(str::to_string))
            .collect()
    }

    async fn inline(&self) -> Vec<String> {
        self.iam_client
            .list_role_policies()
            .role_name(self.role.role_name())
            .send()
            .await
            .unwrap()
            .policy_names()
            .to_vec()
    }

    fn reconciler(&self) -> Reconciler<'_> {
        Reconciler {
            store: &self.store,
            iam: &self.iam,
            catalog: &self.catalog,
            clock: self.clock.as_ref(),
            grace: chrono::Duration::seconds(GRACE_SECS),
        }
    }
}

#[tokio::test]
async fn drift_is_found_in_iam_and_removed_and_a_foreign_policy_only_flagged() {
    // GIVEN a policy attached through the ledger for a GRANTED request
    let w = world().await;
    let mut r: AccessRequest =
        jit_testkit::sample_request(&Principal::parse(w.user.clone()).unwrap(), w.clock.now());
    r.target = GrantTarget::AttachPolicy {
        policy_name: PolicyName::parse(w.policy.clone()).unwrap(),
    };
    r.status = Status::Granted;
    r.granted_at = Some(w.clock.now());
    r.expires_at = Some(w.clock.now() + chrono::Duration::hours(1));
    jit_testkit::create(&w.store, &r).await;
    let key = AttachmentKey::of(&r).unwrap().unwrap();
    w.iam
        .attach(&r.request_id, &key.account, &key.principal, &key.policy)
        .await
        .unwrap();
    assert_eq!(w.attached().await, vec![w.policy.clone()]);
    // AND the record moved to EXPIRED without the detach
    jit_testkit::advance(&w.store, &r, Status::Expired, w.clock.now()).await;
    // AND an inline policy on the grantable role that the broker never wrote
    w.iam_client
        .put_role_policy()
        .role_name(w.role.role_name())
        .policy_name("backdoor")
        .policy_document(POLICY)
        .send()
        .await
        .unwrap();
    w.clock.advance(chrono::Duration::seconds(GRACE_SECS + 1));

    // WHEN a dry run looks THEN it sees both, and IAM is unchanged
    let dry = w.reconciler().run(true).await.unwrap();
    assert!(dry.grants.iam_listed);
    assert_eq!(dry.grants.removed.len(), 1, "{dry:#?}");
    assert_eq!(dry.grants.flagged.len(), 1, "{dry:#?}");
    assert_eq!(w.attached().await, vec![w.policy.clone()]);

    // WHEN it reconciles
    let report = w.reconciler().run(false).await.unwrap();

    // THEN the attachment is detached in IAM and audited; the foreign one kept
    assert_eq!(report.grants.removed.len(), 1, "{report:#?}");
    assert!(report.grants.removed[0].done);
    assert_eq!(
        report.grants.removed[0].request_id.as_ref(),
        Some(&r.request_id)
    );
    assert!(w.attached().await.is_empty());
    assert_eq!(report.grants.flagged[0].policy, "backdoor");
    assert_eq!(w.inline().await, vec!["backdoor".to_string()]);
    let notes: Vec<_> = w
        .store
        .audit_events(&r.request_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.actor == "system:reconciler")
        .collect();
    assert_eq!(notes.len(), 1);
    assert!(w.ledger.open_entries().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_lister_reads_iam_through_the_sdk() {
    let w = world().await;
    let lister = IamLister::from_config(&common::sdk_config().await);
    let account = AccountId::parse("123456789012").unwrap();
    let user = IamPrincipal::User(w.user.clone());
    assert_eq!(
        lister.attached_policies(&account, &user).await.unwrap(),
        Some(vec![])
    );
    w.iam_client
        .attach_user_policy()
        .user_name(&w.user)
        .policy_arn(format!("arn:aws:iam::123456789012:policy/{}", w.policy))
        .send()
        .await
        .unwrap();
    assert_eq!(
        lister.attached_policies(&account, &user).await.unwrap(),
        Some(vec![w.policy.clone()])
    );
    let nobody = IamPrincipal::Role(common::unique_name("missing"));
    assert_eq!(
        lister.attached_policies(&account, &nobody).await.unwrap(),
        Some(vec![]),
        "a principal that does not exist holds nothing"
    );
    let elsewhere = AccountId::parse("210987654321").unwrap();
    assert_eq!(
        lister.attached_policies(&elsewhere, &user).await.unwrap(),
        None,
        "IAM answers only about its own account"
    );
    assert_eq!(lister.role_policies(&w.role).await.unwrap(), Some(vec![]));
    w.iam_client
        .put_role_policy()
        .role_name(w.role.role_name())
        .policy_name("jit-revoke-X")
        .policy_document(POLICY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        lister.role_policies(&w.role).await.unwrap(),
        Some(vec!["jit-revoke-X".to_string()])
    );
}

impl World {
    async fn user_inline(&self) -> Vec<String> {
        self.iam_client
            .list_user_policies()
            .user_name(&self.user)
            .send()
            .await
            .unwrap()
            .policy_names()
            .to_vec()
    }
}

#[tokio::test]
async fn a_scoped_attach_grant_is_put_inline_on_the_user_and_removed_with_its_grant() {
    // GIVEN a GRANTED attach-policy request narrowed to one action
    let w = world().await;
    let mut r: AccessRequest =
        jit_testkit::sample_request(&Principal::parse(w.user.clone()).unwrap(), w.clock.now());
    r.target = GrantTarget::AttachPolicy {
        policy_name: PolicyName::parse(w.policy.clone()).unwrap(),
    };
    r.session_policy = Some(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::prod-logs/*"]}]}"#
            .into(),
    );
    r.status = Status::Granted;
    r.granted_at = Some(w.clock.now());
    r.expires_at = Some(w.clock.now() + chrono::Duration::hours(1));
    jit_testkit::create(&w.store, &r).await;
    assert!(AttachmentKey::of(&r).is_none(), "no managed attachment");
    let g = jit_core::inline_grants::InlineGrant::of(&r)
        .unwrap()
        .unwrap();

    // WHEN the grant is made through the ledger
    g.put(&w.iam).await.unwrap();
    // THEN IAM holds `jit-<id>` with the recorded document, nothing attached
    let name = format!("jit-{}", r.request_id);
    assert_eq!(w.user_inline().await, vec![name.clone()]);
    let got = w
        .iam_client
        .get_user_policy()
        .user_name(&w.user)
        .policy_name(&name)
        .send()
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&jit_aws::account::decode_policy_document(
        got.policy_document(),
    ))
    .unwrap();
    assert_eq!(doc["Statement"][0]["Action"][0], "s3:GetObject");
    assert!(w.attached().await.is_empty());
    // AND the lister sees it
    let lister = IamLister::from_config(&common::sdk_config().await);
    let account = AccountId::parse("123456789012").unwrap();
    assert_eq!(
        lister
            .principal_policies(&account, &IamPrincipal::User(w.user.clone()))
            .await
            .unwrap(),
        Some(vec![name.clone()])
    );

    // WHEN the reconciler runs while the grant is live THEN it stays
    w.clock.advance(chrono::Duration::seconds(GRACE_SECS + 1));
    let report = w.reconciler().run(false).await.unwrap();
    assert!(report.grants.removed.is_empty(), "{report:#?}");
    assert_eq!(w.user_inline().await, vec![name.clone()]);

    // WHEN the process died after a delete's intent, before its call, and
    // the record ended
    let crashed = jit_core::ledger::LedgerEntry::principal_inline(
        &r.request_id,
        jit_core::ledger::LedgerOp::Remove,
        &g.account,
        &g.principal,
        &g.name,
        w.clock.now(),
    );
    w.ledger.record_intent(&crashed).await.unwrap();
    jit_testkit::advance(&w.store, &r, Status::Revoked, w.clock.now()).await;
    w.clock.advance(chrono::Duration::seconds(GRACE_SECS + 1));
    let report = w.reconciler().run(false).await.unwrap();

    // THEN the delete is made in IAM, the ledger closed, the request told
    assert_eq!(report.grants.finished.len(), 1, "{report:#?}");
    assert!(report.grants.finished[0].done, "{report:#?}");
    assert!(w.user_inline().await.is_empty());
    assert!(w.ledger.open_entries().await.unwrap().is_empty());
    // AND deleting again (a retried revoke) is not an error
    g.remove(&w.iam).await.unwrap();
}

#[tokio::test]
async fn inline_policies_on_a_role_principal_go_through_the_sdk() {
    let w = world().await;
    let attacher = IamAttacher::from_config(&common::sdk_config().await);
    let account = AccountId::parse("123456789012").unwrap();
    let role = IamPrincipal::Role(w.role.role_name().to_string());
    use jit_core::ports::PolicyAttacher;
    attacher
        .put_inline_policy(&account, &role, "jit-01TEST", POLICY)
        .await
        .unwrap();
    assert_eq!(w.inline().await, vec!["jit-01TEST".to_string()]);
    let lister = IamLister::from_config(&common::sdk_config().await);
    assert_eq!(
        lister.principal_policies(&account, &role).await.unwrap(),
        Some(vec!["jit-01TEST".to_string()])
    );
    attacher
        .delete_inline_policy(&account, &role, "jit-01TEST")
        .await
        .unwrap();
    assert!(w.inline().await.is_empty());
    // a principal that does not exist holds nothing, and deleting is fine
    let nobody = IamPrincipal::User(common::unique_name("missing"));
    attacher
        .delete_inline_policy(&account, &nobody, "jit-01TEST")
        .await
        .unwrap();
    assert_eq!(
        lister.principal_policies(&account, &nobody).await.unwrap(),
        Some(vec![])
    );
}
