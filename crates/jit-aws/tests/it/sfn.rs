//! `SfnWorkflow` against Step Functions on moto, through the real SDK.
//!
//! Each test makes its own IAM role and state machine. The machine waits an
//! hour before its Pass state, so an execution stays RUNNING whether or not
//! the moto server has been told to execute definitions.

use crate::common;

use aws_sdk_sfn::types::ExecutionStatus;
use jit_aws::{SfnWorkflow, StateMachineArn};
use jit_core::RequestId;
use jit_core::ports::{Workflow, WorkflowError, WorkflowInput};

const DEFINITION: &str = r#"{
  "Comment": "test: holds, then passes",
  "StartAt": "Hold",
  "States": {
    "Hold": { "Type": "Wait", "Seconds": 3600, "Next": "Done" },
    "Done": { "Type": "Pass", "End": true }
  }
}"#;

const TRUST_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{
    "Effect": "Allow",
    "Principal": { "Service": "states.amazonaws.com" },
    "Action": "sts:AssumeRole"
  }]
}"#;

struct Fixture {
    sfn: aws_sdk_sfn::Client,
    workflow: SfnWorkflow,
}

/// A fresh role and state machine, and the workflow adapter on it.
async fn fixture() -> Fixture {
    let config = common::sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&config);
    let sfn = aws_sdk_sfn::Client::new(&config);
    let role = iam
        .create_role()
        .role_name(common::unique_name("jit-sfn-role"))
        .assume_role_policy_document(TRUST_POLICY)
        .send()
        .await
        .expect("create the state machine's role on moto");
    let role_arn = role.role().expect("a created role").arn().to_string();
    let created = sfn
        .create_state_machine()
        .name(common::unique_name("jit-approval"))
        .definition(DEFINITION)
        .role_arn(role_arn)
        .send()
        .await
        .expect("create the state machine on moto");
    let arn = StateMachineArn::parse(created.state_machine_arn()).expect("moto's ARN parses");
    Fixture {
        workflow: SfnWorkflow::new(sfn.clone(), arn),
        sfn,
    }
}

fn input_for(id: &RequestId) -> WorkflowInput {
    WorkflowInput {
        generate_policy: false,
        request_id: id.clone(),
        entitlement: "JIT-ElevatedAdminRole".into(),
        auto_approve: false,
        approval_timeout_seconds: 900,
        duration_seconds: 3600,
    }
}

fn new_id() -> RequestId {
    RequestId::generate(chrono::Utc::now())
}

async fn executions(f: &Fixture) -> Vec<(String, ExecutionStatus)> {
    let out = f
        .sfn
        .list_executions()
        .state_machine_arn(f.workflow.state_machine().as_str())
        .send()
        .await
        .expect("list executions");
    out.executions()
        .iter()
        .map(|e| (e.name().to_string(), e.status().clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_names_the_execution_after_the_request_and_passes_the_input() {
    // GIVEN a state machine and a stored request's workflow input
    let f = fixture().await;
    let id = new_id();
    let input = input_for(&id);

    // WHEN the workflow is started
    f.workflow.start(&input).await.expect("start");

    // THEN an execution named after the request exists, at the derived ARN
    let described = f
        .sfn
        .describe_execution()
        .execution_arn(f.workflow.state_machine().execution_arn(&id))
        .send()
        .await
        .expect("the execution is at the derived ARN");
    assert_eq!(described.name(), Some(id.as_str()));
    assert_eq!(described.status(), &ExecutionStatus::Running);
    // AND its input is the workflow input as camelCase JSON
    let got: serde_json::Value =
        serde_json::from_str(described.input().expect("an input")).expect("JSON input");
    assert_eq!(
        got,
        serde_json::json!({
            "requestId": id.as_str(),
            "entitlement": "JIT-ElevatedAdminRole",
            "autoApprove": false,
            "approvalTimeoutSeconds": 900,
            "durationSeconds": 3600,
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_twice_is_ok_and_leaves_one_execution() {
    // GIVEN a started workflow
    let f = fixture().await;
    let id = new_id();
    f.workflow
        .start(&input_for(&id))
        .await
        .expect("first start");

    // WHEN it is started again for the same request (a retried API call)
    let again = f.workflow.start(&input_for(&id)).await;

    // THEN that is not an error, and there is still exactly one execution
    assert!(again.is_ok(), "second start: {again:?}");
    assert_eq!(
        executions(&f).await,
        vec![(id.to_string(), ExecutionStatus::Running)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_aborts_the_execution() {
    // GIVEN two running workflows
    let f = fixture().await;
    let (cancelled, other) = (new_id(), new_id());
    f.workflow
        .start(&input_for(&cancelled))
        .await
        .expect("start");
    f.workflow.start(&input_for(&other)).await.expect("start");

    // WHEN one request's workflow is stopped
    f.workflow
        .stop(&cancelled, "cancelled by the requester")
        .await
        .expect("stop");

    // THEN that execution is ABORTED and the other still runs
    let mut got = executions(&f).await;
    got.sort();
    let mut want = vec![
        (cancelled.to_string(), ExecutionStatus::Aborted),
        (other.to_string(), ExecutionStatus::Running),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_of_an_unknown_execution_is_not_found() {
    // GIVEN a state machine with no execution for a request
    let f = fixture().await;
    let id = new_id();

    // WHEN that request's workflow is stopped
    let result = f.workflow.stop(&id, "cancelled").await;

    // THEN NotFound names the request
    match result {
        Err(WorkflowError::NotFound(got)) => assert_eq!(got, id),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_on_a_missing_state_machine_is_a_backend_error_with_the_service_code() {
    // GIVEN an adapter configured with a state machine that does not exist
    let f = fixture().await;
    let missing = StateMachineArn::parse(format!(
        "arn:aws:states:us-east-1:123456789012:stateMachine:{}",
        common::unique_name("missing")
    ))
    .expect("well-formed ARN");
    let workflow = SfnWorkflow::new(f.sfn.clone(), missing);

    // WHEN a workflow is started
    let result = workflow.start(&input_for(&new_id())).await;

    // THEN it is a backend error naming the service's error code, without credentials
    match result {
        Err(WorkflowError::Backend(msg)) => {
            assert!(msg.contains("StateMachineDoesNotExist"), "{msg}");
            assert!(!msg.contains(common::DUMMY_SECRET), "{msg}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_after_the_execution_closed_is_success_and_starts_nothing() {
    // GIVEN a request whose execution was started and then stopped
    let f = fixture().await;
    let id = new_id();
    f.workflow.start(&input_for(&id)).await.expect("start");
    f.workflow.stop(&id, "cancelled").await.expect("stop");

    // WHEN a start for it is retried (Step Functions answers ExecutionAlreadyExists)
    let raw = f
        .sfn
        .start_execution()
        .state_machine_arn(f.workflow.state_machine().as_str())
        .name(id.as_str())
        .input("{}")
        .send()
        .await;
    let retried = f.workflow.start(&input_for(&id)).await;

    // THEN the service refuses the name, the adapter reports success,
    // and no second execution exists
    let code = raw
        .err()
        .and_then(|e| e.into_service_error().meta().code().map(str::to_string));
    assert_eq!(code.as_deref(), Some("ExecutionAlreadyExists"));
    assert!(retried.is_ok(), "{retried:?}");
    assert_eq!(
        executions(&f).await,
        vec![(id.to_string(), ExecutionStatus::Aborted)]
    );
}
