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
