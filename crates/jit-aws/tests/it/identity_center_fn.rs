//! `LambdaIdentityCenter` (the task and API functions' Identity Center):
//! its SigV4-signed `Invoke` (hand-made: the SDK's Lambda client took
//! `request` over 6 MB) against the **loopback fake of Lambda's Invoke
//! wire format** (`common::fake_lambda`, which says why a fake), whose
//! handler is the `identity-center` function's own
//! (`identity_center_fn::serve`) over the SDK adapter calling **moto's
//! sso-admin and identitystore**. Needs the moto server `./scripts/test`
//! starts. The last test covers `LambdaDeferrer`, the
//! same signed invoke as an asynchronous `Event`.

use crate::common;
use crate::common::fake_lambda::{Behaviour, FakeLambda, caller_config, fake_lambda, handler};

use std::sync::Arc;
use std::sync::atomic::Ordering;

use aws_credential_types::Credentials;
use aws_sdk_identitystore::types::{Email, MemberId, Name};
use aws_sdk_ssoadmin::types::PrincipalType;
use aws_types::region::Region;
use jit_aws::LambdaIdentityCenter;
use jit_aws::identity_center::IdentityCenterClient;
use jit_aws::identity_center_fn::{Mode, Ports, serve};
use jit_core::channels::Deferrer;
use jit_core::identity_center::{
    Assignment, AssignmentManager, CachedGroups, GroupDirectory, IdentityCenter, Provisioning,
};
use jit_core::ports::{GrantError, ManualClock};
use jit_core::{AccountId, Principal};
use serde_json::json;

const FUNCTION: &str = "jit-identity-center";
const ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];

/// The `identity-center` function's handler in `mode` over `client`.
fn serving(mode: Mode, client: Arc<IdentityCenterClient>) -> Behaviour {
    Behaviour::Serve(handler(move |event| {
        let client = client.clone();
        async move {
            let ports = Ports {
                manager: client.as_ref(),
                provisioning: client.as_ref(),
                directory: client.as_ref(),
            };
            serve(&ports, mode, event)
                .await
                .map_err(|e| (e.error_type.to_string(), e.message))
        }
    }))
}

/// What Lambda reports for a function that ran out of time.
fn timing_out() -> Behaviour {
    Behaviour::Serve(handler(|_| async {
        Err((
            "Sandbox.Timedout".to_string(),
            "RequestId: x Error: Task timed out after 40.00 seconds".to_string(),
        ))
    }))
}

/// The caller's adapter, its Lambda client pointed at the fake.
async fn caller(fake: &FakeLambda, function: &str) -> LambdaIdentityCenter {
    LambdaIdentityCenter::from_config(&caller_config(fake).await, function)
}

struct Moto {
    sso: aws_sdk_ssoadmin::Client,
    idc: IdentityCenter,
    ps_name: String,
    ps_arn: String,
    group: String,
    member: Principal,
    member_id: String,
    outsider: Principal,
}

/// A permission set and two users, one of them in a new group, in moto's
/// Identity Center instance.
async fn moto() -> Moto {
    let config = common::sdk_config().await;
    let sso = aws_sdk_ssoadmin::Client::new(&config);
    let ids = aws_sdk_identitystore::Client::new(&config);
    let instances = sso.list_instances().send().await.unwrap();
    let instance = &instances.instances()[0];
    let instance_arn = instance.instance_arn().unwrap().to_string();
    let store_id = instance.identity_store_id().unwrap().to_string();
    let tag = common::unique_name("fn").replace('-', "");
    let ps_name = format!("Ps{}", &tag[tag.len() - 12..]);
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
    let mut users = vec![];
    for who in ["member", "outsider"] {
        let email = format!("{who}-{tag}@example.com");
        let id = ids
            .create_user()
            .identity_store_id(&store_id)
            .user_name(format!("{who}-{tag}"))
            .display_name(who)
            .name(Name::builder().given_name(who).family_name("Test").build())
            .emails(Email::builder().value(&email).primary(true).build())
            .send()
            .await
            .unwrap()
            .user_id()
            .to_string();
        users.push((email, id));
    }
    let group = format!("Platform{tag}");
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
        idc: IdentityCenter {
            instance_arn,
            identity_store_id: store_id.clone(),
            region: "us-east-1".into(),
            portal_url: format!("https://{store_id}.awsapps.com/start"),
            group_cache_secs: 300,
            local_directory: None,
        },
        ps_name,
        ps_arn,
        group,
        member: Principal::parse(users[0].0.clone()).unwrap(),
        member_id: users[0].1.clone(),
        outsider: Principal::parse(users[1].0.clone()).unwrap(),
    }
}

impl Moto {
    /// The function's own adapter, on moto.
    async fn adapter(&self) -> Arc<IdentityCenterClient> {
        Arc::new(IdentityCenterClient::new(
            &common::sdk_config().await,
            &self.idc,
        ))
    }

    /// The user ids moto's `ListAccountAssignments` shows in `account`.
    async fn assigned(&self, account: &str) -> Vec<String> {
        self.sso
            .list_account_assignments()
            .instance_arn(&self.idc.instance_arn)
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

    fn assignment(&self, account: &str) -> Assignment {
        Assignment {
            account: AccountId::parse(account).unwrap(),
            permission_set_arn: self.ps_arn.clone(),
            user_id: self.member_id.clone(),
        }
    }
}

#[tokio::test]
async fn assignments_are_made_and_removed_through_the_function() {
    // GIVEN moto's Identity Center behind the identity-center function
    // (mode `assignments`), and a task function's invoking adapter
    let m = moto().await;
    let fake = fake_lambda(FUNCTION, serving(Mode::Assignments, m.adapter().await)).await;
    let idc = caller(&fake, FUNCTION).await;

    // WHEN the grant's lookups are made
    // THEN the requester's user id and the permission set come back typed
    assert_eq!(
        idc.user_id(&m.member).await.unwrap().as_deref(),
        Some(m.member_id.as_str())
    );
    let nobody = Principal::parse("nobody@example.com").unwrap();
    assert_eq!(idc.user_id(&nobody).await.unwrap(), None);
    let ps = idc.permission_set(&m.ps_name).await.unwrap().unwrap();
    assert_eq!(ps.arn, m.ps_arn);
    assert_eq!(ps.name, m.ps_name);
    assert_eq!(ps.session_duration.as_deref(), Some("PT1H"));
    assert!(idc.permission_set("NoSuchSet").await.unwrap().is_none());
    // AND both are cached by the caller: asking again invokes nothing
    let before = fake.invocations.load(Ordering::SeqCst);
    idc.user_id(&m.member).await.unwrap();
    idc.permission_set(&m.ps_name).await.unwrap();
    assert_eq!(fake.invocations.load(Ordering::SeqCst), before);

    // WHEN the permission set is assigned in two accounts (once more in the
    // first: a retried step)
    for a in ACCOUNTS {
        idc.create(&m.assignment(a)).await.unwrap();
    }
    idc.create(&m.assignment(ACCOUNTS[0])).await.unwrap();
    // THEN Identity Center shows one assignment in each, and the adapter
    // lists them as the reconciler reads them
    for a in ACCOUNTS {
        assert_eq!(m.assigned(a).await, vec![m.member_id.clone()], "{a}");
        assert_eq!(
            idc.assigned_users(&AccountId::parse(a).unwrap(), &m.ps_arn)
                .await
                .unwrap(),
            vec![m.member_id.clone()]
        );
    }

    // WHEN they are deleted (twice: what is gone is success)
    for a in ACCOUNTS {
        idc.delete(&m.assignment(a)).await.unwrap();
        idc.delete(&m.assignment(a)).await.unwrap();
    }
    // THEN none is left
    for a in ACCOUNTS {
        assert!(m.assigned(a).await.is_empty(), "{a}");
    }

    // AND catalog check's provisioning read crosses too (moto answers its
    // own account only, if any)
    let provisioned = idc.provisioned_accounts(&m.ps_arn).await.unwrap();
    assert!(
        provisioned.iter().all(|a| a.as_str() == "123456789012"),
        "{provisioned:?}"
    );
}

#[tokio::test]
async fn the_directory_function_serves_groups_and_refuses_assignments() {
    // GIVEN the `directory` function (the HTTP API functions') and the
    // API's cached directory over the invoking adapter
    let m = moto().await;
    let fake = fake_lambda(FUNCTION, serving(Mode::Directory, m.adapter().await)).await;
    let idc = Arc::new(caller(&fake, FUNCTION).await);
    let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let groups = CachedGroups::new(idc.clone(), clock.clone(), 300);

    // WHEN a member's and an outsider's groups are read
    // THEN the member is in the group, the outsider in none
    assert_eq!(
        groups.groups_of(&m.member).await.unwrap(),
        vec![m.group.clone()]
    );
    assert!(groups.groups_of(&m.outsider).await.unwrap().is_empty());
    // AND within the cache time, asking again invokes nothing
    let before = fake.invocations.load(Ordering::SeqCst);
    clock.advance(chrono::Duration::seconds(299));
    groups.groups_of(&m.member).await.unwrap();
    assert_eq!(fake.invocations.load(Ordering::SeqCst), before);
    // AND after it, the directory is read again
    clock.advance(chrono::Duration::seconds(1));
    groups.groups_of(&m.member).await.unwrap();
    assert_eq!(fake.invocations.load(Ordering::SeqCst), before + 1);

    // WHEN the directory function is asked to assign (what a compromised
    // API function could try)
    let err = idc.create(&m.assignment(ACCOUNTS[0])).await.unwrap_err();
    // THEN it refuses, permanently, and nothing was assigned
    assert!(
        matches!(&err, GrantError::Other(msg) if msg.contains("refused") && msg.contains("createAssignment")),
        "{err:?}"
    );
    assert!(m.assigned(ACCOUNTS[0]).await.is_empty());
    assert!(matches!(
        idc.assigned_users(&AccountId::parse(ACCOUNTS[0]).unwrap(), &m.ps_arn)
            .await,
        Err(GrantError::Other(_))
    ));
}

#[tokio::test]
async fn function_errors_become_transient_or_permanent_grant_errors() {
    // GIVEN the function whose Identity Center does not answer (a refused
    // port: what the SDK calls a dispatch failure)
    let idc = IdentityCenter {
        instance_arn: "arn:aws:sso:::instance/ssoins-0000000000000000".into(),
        identity_store_id: "d-0000000000".into(),
        region: "us-east-1".into(),
        portal_url: "https://d-0000000000.awsapps.com/start".into(),
        group_cache_secs: 300,
        local_directory: None,
    };
    let refused = jit_aws::sdk::config_loader()
        .endpoint_url("http://127.0.0.1:1")
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let down = Arc::new(IdentityCenterClient::new(&refused, &idc));
    let fake = fake_lambda(FUNCTION, serving(Mode::Assignments, down)).await;
    let c = caller(&fake, FUNCTION).await;
    let alice = Principal::parse("alice@example.com").unwrap();

    // WHEN its lookups fail inside the function
    // THEN the caller sees a transient error (the step is retried)
    let err = c.user_id(&alice).await.unwrap_err();
    assert!(
        matches!(&err, GrantError::Transient(m) if m.contains("identity-center userId: Transient")),
        "{err:?}"
    );

    // WHEN the caller sends what the function refuses to act on (a user id
    // Identity Store never issues)
    let bad = Assignment {
        account: AccountId::parse("111111111111").unwrap(),
        permission_set_arn: "arn:aws:sso:::permissionSet/ssoins-0000000000000000/ps-1".into(),
        user_id: "not an id!".into(),
    };
    // THEN it is permanent, naming the field
    let err = c.create(&bad).await.unwrap_err();
    assert!(
        matches!(&err, GrantError::Other(m) if m.contains("Permanent") && m.contains("userId")),
        "{err:?}"
    );

    // WHEN the function runs out of time (Lambda reports it as an
    // unhandled error of its own type)
    let slow = fake_lambda(FUNCTION, timing_out()).await;
    let err = caller(&slow, FUNCTION)
        .await
        .delete(&bad)
        .await
        .unwrap_err();
    // THEN it is transient: every call is idempotent, the step retries
    assert!(
        matches!(&err, GrantError::Transient(m) if m.contains("Sandbox.Timedout")),
        "{err:?}"
    );

    // WHEN the function does not exist (a deployment mistake)
    let err = caller(&fake, "jit-no-such-function")
        .await
        .groups_of(&alice)
        .await
        .unwrap_err();
    // THEN it is permanent, with Lambda's error code, and no secret of the
    // caller's credentials is in it
    assert!(
        matches!(&err, GrantError::Other(m) if m.contains("ResourceNotFoundException")),
        "{err:?}"
    );
    assert!(!format!("{err:?}").contains(common::DUMMY_SECRET));
}

/// `LambdaDeferrer` (the approval callback handing its slow Slack work to a
/// second invocation of itself) goes through the same signed invoke, as an
/// `Event`: Lambda queues it and answers `202` with no payload.
#[tokio::test]
async fn deferred_work_is_queued_as_an_event_invoke() {
    // GIVEN Lambda, queueing what it is given
    let queued = Arc::new(std::sync::Mutex::new(Vec::new()));
    let fake = fake_lambda(FUNCTION, Behaviour::Queue(queued.clone())).await;
    let config = caller_config(&fake).await;

    // WHEN the callback defers a job
    let job = json!({"deferred": "slack-decision", "requestId": "01J0000000000000000000000"});
    jit_aws::LambdaDeferrer::from_config(&config, FUNCTION)
        .defer(&job)
        .await
        .unwrap();
    // THEN the function is invoked once, asynchronously, with the job as is
    assert_eq!(
        queued.lock().unwrap().as_slice(),
        std::slice::from_ref(&job)
    );

    // WHEN the function does not exist (a deployment mistake)
    let err = jit_aws::LambdaDeferrer::from_config(&config, "jit-no-such-function")
        .defer(&job)
        .await
        .unwrap_err();
    // THEN the deferral fails for good, naming Lambda's error, without the
    // caller's secret
    assert!(
        !err.is_transient() && err.to_string().contains("ResourceNotFoundException"),
        "{err:?}"
    );
    assert!(!format!("{err:?}").contains(common::DUMMY_SECRET));
    assert_eq!(queued.lock().unwrap().len(), 1);

    // WHEN Lambda cannot be reached at all
    let down = jit_aws::sdk::config_loader()
        .endpoint_url("http://127.0.0.1:1")
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
        .load()
        .await;
    let err = jit_aws::LambdaDeferrer::from_config(&down, FUNCTION)
        .defer(&job)
        .await
        .unwrap_err();
    // THEN it is transient: the caller falls back or retries
    assert!(err.is_transient(), "{err:?}");
}
