//! The whole lifecycle through `jit-local`'s HTTP handler, with the local
//! engine running `state-machine/approval.asl.json` on a manual clock: each
//! test fast-forwards Waits and timeouts instead of sleeping.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use jit_core::ports::{
    AssumeRoleSpec, Clock, CredentialIssuer, GrantError, IssuedCredentials, ManualClock,
};
use jit_local::grants::LocalIssuer;
use jit_local::{Config, Overrides};
use serde_json::json;

const KEY: &str = "lifecycle-test-key-0123456789";

use common::Local;

fn config(dir: &Path) -> Config {
    let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog.example.yaml");
    Config {
        demo_mode: true,
        ..common::config(dir, &catalog, KEY)
    }
}

fn start_clock() -> Arc<ManualClock> {
    common::fixed_clock()
}

fn open(dir: &Path, clock: Arc<ManualClock>, overrides: Overrides) -> Local {
    Local::open(&config(dir), clock, overrides, KEY)
}

async fn shutdown(l: Local) {
    l.app.shutdown().await;
}

#[tokio::test]
async fn auto_approved_request_is_granted_then_expires_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path(), start_clock(), Overrides::default());
    let id = l.request("sre@example.com", "OnCallReadOnly", "30m").await;
    assert_eq!(l.status(&id).await, "GRANTED");
    l.forward(29 * 60).await;
    assert_eq!(l.status(&id).await, "GRANTED");
    l.forward(60).await;
    assert_eq!(l.status(&id).await, "EXPIRED");
    assert_eq!(
        l.states(&id).await,
        [
            "Validate",
            "NeedsPolicy",
            "Route",
            "Grant",
            "RecordGranted",
            "WaitForExpiry",
            "Revoke",
            "Expired"
        ]
    );
    let (_, audit) = l
        .call(
            "GET",
            &format!("/requests/{id}/audit"),
            "sre@example.com",
            None,
        )
        .await;
    let path: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["to"].as_str())
        .collect();
    assert_eq!(
        path,
        ["REQUESTED", "VALIDATING", "APPROVED", "GRANTED", "EXPIRED"]
    );
    shutdown(l).await;
}

#[tokio::test]
async fn manual_approval_grants_and_the_history_hides_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path(), start_clock(), Overrides::default());
    let id = l
        .request("alice@example.com", "JIT-ElevatedAdminRole", "1h")
        .await;
    assert_eq!(l.status(&id).await, "APPROVAL_PENDING");
    let (s, v) = l
        .post(
            &format!("/requests/{id}/approve"),
            "alice@example.com",
            json!({}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("self_approval"))
    );
    let (s, v) = l
        .post(
            &format!("/requests/{id}/approve"),
            "lead@example.com",
            json!({"reason": "ok"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(l.status(&id).await, "GRANTED");
    let (s, history) = l
        .call(
            "GET",
            &format!("/requests/{id}/history"),
            "alice@example.com",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let text = history.to_string();
    assert!(
        text.contains("TaskSubmitted") || text.contains("TaskScheduled"),
        "{text}"
    );
    assert!(
        text.contains("<redacted>"),
        "the callback task's token is hidden"
    );
    let outbox = std::fs::read_to_string(dir.path().join("outbox/notifications.jsonl")).unwrap();
    assert!(outbox.contains(&id), "approvers were told");
    assert!(
        !outbox.to_lowercase().contains("token"),
        "the outbox carries no token"
    );
    shutdown(l).await;
}

#[tokio::test]
async fn the_local_api_key_may_decide_for_an_approver_it_names_and_the_record_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path(), start_clock(), Overrides::default());
    let id = l
        .request("alice@example.com", "JIT-ElevatedAdminRole", "1h")
        .await;
    assert_eq!(l.status(&id).await, "APPROVAL_PENDING");
    // The key alone (no x-jit-user) names the approver: holding the key is
    // being anyone already, so it is a trusted decider too.
    let (s, v) = common::call_as(
        &l.app,
        l.key,
        "POST",
        &format!("/requests/{id}/approve"),
        None,
        Some(json!({"requester": "lead@example.com"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["decisions"][0]["approver"], "lead@example.com");
    assert_eq!(v["decisions"][0]["trustedCaller"], "jit-local-api-key");
    assert_eq!(l.status(&id).await, "GRANTED");
    shutdown(l).await;
}

#[tokio::test]
async fn deny_timeout_and_cancel_end_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path(), start_clock(), Overrides::default());
    let denied = l
        .request("alice@example.com", "JIT-ElevatedAdminRole", "1h")
        .await;
    let timed_out = l
        .request("bob@example.com", "JIT-ElevatedAdminRole", "1h")
        .await;
    let cancelled = l
        .request("carol@example.com", "JIT-ElevatedAdminRole", "1h")
        .await;

    let (s, _) = l
        .post(
            &format!("/requests/{denied}/deny"),
            "lead@example.com",
            json!({"reason": "freeze"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(l.status(&denied).await, "DENIED");
    assert_eq!(l.states(&denied).await.last().unwrap(), "Denied");

    let (s, _) = l
        .post(
            &format!("/requests/{cancelled}/cancel"),
            "carol@example.com",
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(l.status(&cancelled).await, "CANCELLED");
    let d = l
        .app
        .engine()
        .unwrap()
        .describe_execution(&cancelled)
        .unwrap();
    assert_eq!(
        d.status.as_str(),
        "SUCCEEDED",
        "a cancel never stops the execution: it ends itself"
    );

    l.forward(3601).await;
    assert_eq!(l.status(&timed_out).await, "APPROVAL_TIMED_OUT");
    assert_eq!(l.states(&timed_out).await.last().unwrap(), "TimedOut");
    let (s, v) = l
        .post(
            &format!("/requests/{timed_out}/approve"),
            "lead@example.com",
            json!({}),
        )
        .await;
    assert_eq!(s, 409, "too late: {v}");
    shutdown(l).await;
}

/// Fails the first `failures` calls with a transient error (or every call
/// with a trust-policy refusal), then behaves like the local issuer.
struct FlakyIssuer {
    failures: usize,
    calls: AtomicUsize,
    permanent: bool,
    inner: LocalIssuer,
}

#[async_trait]
impl CredentialIssuer for FlakyIssuer {
    async fn assume_role(&self, spec: &AssumeRoleSpec) -> Result<IssuedCredentials, GrantError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.permanent {
            return Err(GrantError::TrustRefused("AssumeRole: AccessDenied".into()));
        }
        if n < self.failures {
            return Err(GrantError::Transient("AssumeRole: Throttling".into()));
        }
        self.inner.assume_role(spec).await
    }
}

#[tokio::test]
async fn a_grant_that_fails_twice_is_retried_and_one_that_always_fails_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let clock = start_clock();
    let flaky = Arc::new(FlakyIssuer {
        failures: 2,
        calls: AtomicUsize::new(0),
        permanent: false,
        inner: LocalIssuer::new(clock.clone()),
    });
    let l = open(
        dir.path(),
        clock.clone(),
        Overrides {
            issuer: Some(flaky.clone()),
            ..Default::default()
        },
    );
    let id = l.request("sre@example.com", "OnCallReadOnly", "30m").await;
    assert_eq!(
        l.status(&id).await,
        "APPROVED",
        "auto-approved before the grant, waiting for the first retry"
    );
    l.forward(2).await;
    l.forward(4).await;
    assert_eq!(l.status(&id).await, "GRANTED");
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    shutdown(l).await;

    let dir = tempfile::tempdir().unwrap();
    let broken = Arc::new(FlakyIssuer {
        failures: 0,
        calls: AtomicUsize::new(0),
        permanent: true,
        inner: LocalIssuer::new(clock.clone()),
    });
    let l = open(
        dir.path(),
        clock,
        Overrides {
            issuer: Some(broken.clone()),
            ..Default::default()
        },
    );
    let id = l.request("sre@example.com", "OnCallReadOnly", "30m").await;
    let (_, v) = l
        .call("GET", &format!("/requests/{id}"), "sre@example.com", None)
        .await;
    assert_eq!(v["status"], "FAILED");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("GrantFailed") && reason.contains("trust policy"),
        "{reason}"
    );
    assert_eq!(
        broken.calls.load(Ordering::SeqCst),
        1,
        "a permanent error is not retried"
    );
    assert_eq!(l.states(&id).await.last().unwrap(), "Failed");
    shutdown(l).await;
}

#[tokio::test]
async fn restart_mid_approval_and_mid_wait_resumes_both() {
    let dir = tempfile::tempdir().unwrap();
    let clock = start_clock();
    let l = open(dir.path(), clock.clone(), Overrides::default());
    let waiting = l
        .request("alice@example.com", "JIT-ElevatedAdminRole", "1h")
        .await;
    let granted = l.request("sre@example.com", "OnCallReadOnly", "30m").await;
    assert_eq!(l.status(&waiting).await, "APPROVAL_PENDING");
    assert_eq!(l.status(&granted).await, "GRANTED");
    shutdown(l).await; // "kill": nothing is kept in memory across this

    // Down for 40 minutes: the grant's expiry passes meanwhile.
    clock.advance(chrono::Duration::minutes(40));
    let l = open(dir.path(), clock.clone(), Overrides::default());
    assert_eq!(
        l.app.resumed().map(|r| r.running),
        Some(2),
        "both executions resumed"
    );
    l.settle().await;
    assert_eq!(
        l.status(&granted).await,
        "EXPIRED",
        "the timer that passed while down fired at start"
    );
    let (s, v) = l
        .post(
            &format!("/requests/{waiting}/approve"),
            "lead@example.com",
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "the stored token still completes the task: {v}");
    assert_eq!(l.status(&waiting).await, "GRANTED");
    shutdown(l).await;
}

#[tokio::test]
async fn concurrent_approve_and_deny_through_the_engine_have_one_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path(), start_clock(), Overrides::default());
    let mut outcomes = std::collections::HashMap::new();
    for trial in 0..100 {
        let id = l
            .request(
                &format!("user{trial}@example.com"),
                "JIT-ElevatedAdminRole",
                "1h",
            )
            .await;
        let (approve, deny) = (
            format!("/requests/{id}/approve"),
            format!("/requests/{id}/deny"),
        );
        let a = l.post(&approve, "lead@example.com", json!({}));
        let d = l.post(&deny, "security@example.com", json!({"reason": "no"}));
        let ((sa, _), (sd, _)) = tokio::join!(a, d);
        let mut statuses = [sa, sd];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "trial {trial}");
        let final_status = l.status(&id).await;
        let expected = if sa == 200 { "GRANTED" } else { "DENIED" };
        assert_eq!(final_status, expected, "trial {trial}");
        *outcomes.entry(final_status).or_insert(0) += 1;
    }
    assert_eq!(outcomes.values().sum::<i32>(), 100);
    shutdown(l).await;
}

#[test]
fn the_clock_is_the_engines() {
    // The engine and the tasks share the one manual clock: nothing here
    // reads the system time (a guard against a test that sleeps).
    let c = start_clock();
    let before = c.now();
    c.advance(chrono::Duration::seconds(5));
    assert_eq!((c.now() - before).num_seconds(), 5);
}

#[tokio::test]
async fn attach_policy_grants_attach_then_detach_and_the_ttl_backstop_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path(), start_clock(), Overrides::default());
    let attached = || l.app.attacher().unwrap().attachments();
    // The Kubiya seed's entry: attach ReadOnlyAccess to the requester.
    let body =
        json!({"entitlement": "Read Only Access", "duration": "1h", "justification": "audit"});
    let (s, v) = l
        .call("POST", "/requests", "dave@example.com", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    let (s, _) = l
        .post(
            &format!("/requests/{id}/approve"),
            "lead@example.com",
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(l.status(&id).await, "GRANTED");
    assert_eq!(attached().len(), 1);
    assert_eq!(attached()[0].2, "ReadOnlyAccess");
    l.forward(3600).await;
    assert_eq!(l.status(&id).await, "EXPIRED");
    assert!(attached().is_empty(), "detached at expiry");

    // A second grant whose Wait never fired (say, the state machine was
    // deleted): DynamoDB's TTL removes the item days later and the stream
    // backstop revokes what is still live.
    let body =
        json!({"entitlement": "Read Only Access", "duration": "1h", "justification": "again"});
    let (_, v) = l
        .call("POST", "/requests", "erin@example.com", Some(body))
        .await;
    let id2 = v["requestId"].as_str().unwrap().to_string();
    l.post(
        &format!("/requests/{id2}/approve"),
        "lead@example.com",
        json!({}),
    )
    .await;
    assert_eq!(attached().len(), 1);
    let record = l
        .app
        .broker
        .store
        .get(&jit_core::RequestId::parse(&id2).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, jit_core::Status::Granted);
    l.app
        .tasks()
        .unwrap()
        .expired_by_ttl(&record)
        .await
        .unwrap();
    assert!(attached().is_empty(), "the backstop detached it");
    let trail = l
        .app
        .broker
        .store
        .audit_events(&record.request_id)
        .await
        .unwrap();
    assert!(
        trail
            .last()
            .unwrap()
            .reason
            .as_deref()
            .unwrap()
            .contains("revoked"),
        "{trail:?}"
    );
    shutdown(l).await;
}

/// A person, as the local front door establishes one.
fn person(email: &str) -> jit_core::Caller {
    jit_core::Caller {
        identity: Some(jit_core::Identity {
            principal: jit_core::Principal::parse(email.to_string()).unwrap(),
            auth: jit_core::AuthSource::Local,
            groups: vec![],
        }),
        trusted_as: None,
        trusted_to_decide: false,
        identify_hint: None,
    }
}

#[tokio::test]
async fn the_quorum_approval_and_a_cancel_exclude_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path(), start_clock(), Overrides::default());
    let id = l
        .request("alice@example.com", "JIT-ElevatedAdminRole", "1h")
        .await;
    assert_eq!(l.status(&id).await, "APPROVAL_PENDING");
    // GIVEN the approval that meets the quorum, recorded before the
    // workflow had a chance to grant
    let approved = l
        .app
        .broker
        .approve(&person("lead@example.com"), &id, None, None)
        .await
        .unwrap();
    assert_eq!(approved.status.as_str(), "APPROVED");
    // WHEN the requester cancels, THEN it is refused: the grant is under way
    let err = l
        .app
        .broker
        .cancel(&person("alice@example.com"), &id, None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            jit_core::ServiceError::Conflict {
                code: "already_decided",
                ..
            }
        ),
        "{err:?}"
    );
    // AND the workflow grants
    l.settle().await;
    assert_eq!(l.status(&id).await, "GRANTED");
    let (_, audit) = l
        .call(
            "GET",
            &format!("/requests/{id}/audit"),
            "alice@example.com",
            None,
        )
        .await;
    let path: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["to"].as_str())
        .collect();
    assert_eq!(
        path,
        [
            "REQUESTED",
            "VALIDATING",
            "APPROVAL_PENDING",
            "APPROVED",
            "GRANTED"
        ]
    );
    shutdown(l).await;
}

#[tokio::test]
async fn a_cancel_fails_the_waiting_task_and_the_workflow_ends_itself() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path(), start_clock(), Overrides::default());
    let id = l
        .request("alice@example.com", "JIT-ElevatedAdminRole", "1h")
        .await;
    let (s, v) = l
        .post(
            &format!("/requests/{id}/cancel"),
            "alice@example.com",
            json!({"reason": "not needed"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(l.status(&id).await, "CANCELLED");
    // Nothing stopped the execution: it ended through its own states.
    let states = l.states(&id).await;
    assert_eq!(
        states[states.len() - 3..],
        ["RequestApproval", "Undo", "NoLongerApplies"],
        "{states:?}"
    );
    let d = l.app.engine().unwrap().describe_execution(&id).unwrap();
    assert_eq!(d.status.as_str(), "SUCCEEDED");
    // An approval after the cancel is refused
    let (s, v) = l
        .post(
            &format!("/requests/{id}/approve"),
            "lead@example.com",
            json!({}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("already_decided"))
    );
    shutdown(l).await;
}

#[tokio::test]
async fn a_rerun_validate_on_a_granted_request_continues_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path(), start_clock(), Overrides::default());
    let id = l.request("sre@example.com", "OnCallReadOnly", "30m").await;
    assert_eq!(l.status(&id).await, "GRANTED");
    // The Validate step delivered again (a retried Lambda, a resumed
    // execution) answers where the request is: Route goes on from there.
    let answer = l
        .app
        .tasks()
        .unwrap()
        .update_status(json!({"requestId": id, "to": "VALIDATING"}))
        .await
        .unwrap();
    assert_eq!(answer["status"], "GRANTED");
    assert_eq!(l.status(&id).await, "GRANTED");
    // The definition routes a GRANTED answer back to the expiry Wait.
    let definition: serde_json::Value =
        serde_json::from_str(jit_local::workflow::APPROVAL_DEFINITION).unwrap();
    let routes = &definition["States"]["Route"]["Choices"];
    assert_eq!(routes[0]["And"][1]["StringEquals"], "GRANTED");
    assert_eq!(routes[0]["Next"], "RecordGranted");
    shutdown(l).await;
}

#[tokio::test]
async fn a_request_left_without_a_workflow_gets_one_from_the_reconcile_pass() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path(), start_clock(), Overrides::default());
    // GIVEN a request stored by a front door that died before it started
    // the workflow
    let requester = jit_core::Principal::parse("alice@example.com".to_string()).unwrap();
    let r = jit_testkit::data::sample_request(&requester, l.now());
    let created = jit_core::request::AuditEvent::new(
        &r.request_id,
        l.now(),
        "alice@example.com".into(),
        jit_core::request::AuditAction::Created,
        None,
        Some(jit_core::Status::Requested),
        None,
        "api",
    );
    l.app.broker.store.create(&r, &created).await.unwrap();
    let id = r.request_id.to_string();
    // WHEN the pass runs within the grace period, THEN it leaves it alone
    let report = l.app.broker.recover_workflows(false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    // AND after it, a dry run only reports it
    l.forward(61).await;
    let report = l.app.broker.recover_workflows(true).await.unwrap();
    assert_eq!(report.started, std::slice::from_ref(&r.request_id));
    assert_eq!(l.status(&id).await, "REQUESTED");
    // AND a real pass starts its workflow, which takes it on
    let report = l.app.broker.recover_workflows(false).await.unwrap();
    assert_eq!(report.started, std::slice::from_ref(&r.request_id));
    l.settle().await;
    assert_eq!(l.status(&id).await, "APPROVAL_PENDING");
    // AND a second pass finds nothing to do
    l.forward(61).await;
    let report = l.app.broker.recover_workflows(false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    shutdown(l).await;
}
