//! The approval callback through `SfnWorkflow`: a `waitForTaskToken` task
//! completed with `send_task_success`/`send_task_failure`, and the
//! execution history with its token redacted. Needs moto to execute state
//! machines, which `scripts/test` switches on before any test runs.

use crate::common;

use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use jit_aws::{SfnWorkflow, StateMachineArn};
use jit_core::RequestId;
use jit_core::ports::{Workflow, WorkflowError, WorkflowInput};
use jit_core::request::TaskToken;
use serde_json::{Value, json};

/// An empty zip archive: moto stores the code but never runs it.
const EMPTY_ZIP: [u8; 22] = [
    0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// How long a test waits for moto's interpreter to reach a state.
const PATIENCE: Duration = Duration::from_secs(20);

struct Fixture {
    sfn: aws_sdk_sfn::Client,
    workflow: SfnWorkflow,
}

/// A role, a Lambda function, and a state machine that asks for approval
/// through it and waits for the task token to come back.
async fn fixture() -> Fixture {
    let config = common::sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&config);
    let lambda = aws_sdk_lambda::Client::new(&config);
    let sfn = aws_sdk_sfn::Client::new(&config);
    let role_arn = iam
        .create_role()
        .role_name(common::unique_name("jit-cb-role"))
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await
        .expect("create role")
        .role()
        .expect("a role")
        .arn()
        .to_string();
    let function_arn = lambda
        .create_function()
        .function_name(common::unique_name("jit-notify"))
        .runtime(aws_sdk_lambda::types::Runtime::Python312)
        .role(&role_arn)
        .handler("notify.handler")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(EMPTY_ZIP.to_vec()))
                .build(),
        )
        .send()
        .await
        .expect("create function")
        .function_arn()
        .expect("a function ARN")
        .to_string();
    let definition = json!({
        "StartAt": "RequestApproval",
        "States": {
            "RequestApproval": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {
                    "FunctionName": function_arn,
                    "Payload": { "taskToken.$": "$$.Task.Token", "requestId.$": "$.requestId" }
                },
                "Next": "Approved"
            },
            "Approved": { "Type": "Pass", "End": true }
        }
    });
    let created = sfn
        .create_state_machine()
        .name(common::unique_name("jit-callback"))
        .definition(definition.to_string())
        .role_arn(role_arn)
        .send()
        .await
        .expect("create state machine");
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

impl Fixture {
    /// Starts the workflow for a new request and waits until the approval
    /// task waits for its token; returns the request id and the token, read
    /// straight from Step Functions (as the notifying Lambda would get it).
    async fn waiting_for_approval(&self) -> (RequestId, TaskToken) {
        let id = RequestId::generate(chrono::Utc::now());
        self.workflow.start(&input_for(&id)).await.expect("start");
        let arn = self.workflow.state_machine().execution_arn(&id);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let history = self
                .sfn
                .get_execution_history()
                .execution_arn(&arn)
                .send()
                .await
                .expect("history");
            let submitted = history
                .events()
                .iter()
                .any(|e| e.r#type().as_str() == "TaskSubmitted");
            let scheduled = history
                .events()
                .iter()
                .find_map(|e| e.task_scheduled_event_details());
            if let (true, Some(scheduled)) = (submitted, scheduled) {
                let parameters: Value =
                    serde_json::from_str(scheduled.parameters()).expect("JSON parameters");
                let token = parameters["Payload"]["taskToken"]
                    .as_str()
                    .expect("the token in the task's payload");
                return (id, TaskToken::parse(token).expect("a task token"));
            }
            assert!(
                Instant::now() < deadline,
                "the approval task never waited (is moto executing state machines? \
                 run through ./scripts/test)"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_for_status(&self, id: &RequestId, want: ExecutionStatus) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = self
                .sfn
                .describe_execution()
                .execution_arn(self.workflow.state_machine().execution_arn(id))
                .send()
                .await
                .expect("describe execution")
                .status()
                .clone();
            if status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "execution {id} is {status:?}, never {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_task_success_completes_the_waiting_approval() {
    // GIVEN an execution waiting for approval
    let f = fixture().await;
    let (id, token) = f.waiting_for_approval().await;

    // WHEN the approval is sent with its token
    f.workflow
        .send_task_success(&token, &json!({ "approved": true, "approver": "bob" }))
        .await
        .expect("send task success");

    // THEN the execution goes on and succeeds
    f.wait_for_status(&id, ExecutionStatus::Succeeded).await;

    // AND the same token used again finds no waiting task
    let again = f
        .workflow
        .send_task_success(&token, &json!({ "approved": true }))
        .await;
    assert!(
        matches!(again, Err(WorkflowError::TaskGone)),
        "second use of a token: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_task_failure_fails_the_execution_with_the_named_error() {
    // GIVEN an execution waiting for approval
    let f = fixture().await;
    let (id, token) = f.waiting_for_approval().await;

    // WHEN the request is denied
    f.workflow
        .send_task_failure(&token, "Denied", "bob: not during the freeze")
        .await
        .expect("send task failure");

    // THEN the execution fails with that error, as its history says
    f.wait_for_status(&id, ExecutionStatus::Failed).await;
    let history = f.workflow.history(&id).await.expect("history");
    let failed = history
        .iter()
        .find(|e| e["type"] == "ExecutionFailed")
        .unwrap_or_else(|| panic!("no ExecutionFailed in {history:#?}"));
    // (moto 5.2.5 drops the cause of a failed task; AWS keeps it, so only
    // the error name, which the state machine's Catch matches on, is checked)
    assert_eq!(failed["executionFailedEventDetails"]["error"], "Denied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lists_the_events_in_order_with_the_task_token_redacted() {
    // GIVEN an execution waiting for approval
    let f = fixture().await;
    let (id, token) = f.waiting_for_approval().await;

    // WHEN its history is read through the port
    let history = f.workflow.history(&id).await.expect("history");

    // THEN it starts with ExecutionStarted carrying the workflow input
    assert_eq!(history[0]["type"], "ExecutionStarted");
    let input: Value = serde_json::from_str(
        history[0]["executionStartedEventDetails"]["input"]
            .as_str()
            .expect("input as a JSON string"),
    )
    .expect("JSON input");
    assert_eq!(input, serde_json::to_value(input_for(&id)).expect("JSON"));
    // AND ids increase and timestamps are RFC 3339
    for pair in history.windows(2) {
        assert!(pair[0]["id"].as_i64() < pair[1]["id"].as_i64(), "{pair:?}");
    }
    for event in &history {
        let at = event["timestamp"].as_str().expect("a timestamp");
        assert!(
            chrono::DateTime::parse_from_rfc3339(at).is_ok(),
            "timestamp {at}"
        );
    }
    // AND the scheduled task's parameters are kept, except the token
    let scheduled = history
        .iter()
        .find(|e| e["type"] == "TaskScheduled")
        .unwrap_or_else(|| panic!("no TaskScheduled in {history:#?}"));
    let parameters: Value = serde_json::from_str(
        scheduled["taskScheduledEventDetails"]["parameters"]
            .as_str()
            .expect("parameters as a JSON string"),
    )
    .expect("JSON parameters");
    assert_eq!(parameters["Payload"]["requestId"], id.as_str());
    assert_eq!(parameters["Payload"]["taskToken"], "<redacted>");
    // AND the token appears nowhere
    let text = serde_json::to_string(&history).expect("JSON");
    assert!(!text.contains(token.expose()), "the token leaked: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_an_unknown_execution_is_not_found() {
    // GIVEN a state machine with no execution for a request
    let f = fixture().await;
    let id = RequestId::generate(chrono::Utc::now());

    // WHEN its history is read
    let result = f.workflow.history(&id).await;

    // THEN NotFound names the request
    match result {
        Err(WorkflowError::NotFound(got)) => assert_eq!(got, id),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_no_task_waits_for_is_task_gone() {
    // GIVEN a token that no execution issued
    let f = fixture().await;
    let bogus = TaskToken::parse("AAAAKgAAAAIAAAAAAAAAAbogus-token-never-issued").expect("token");

    // WHEN a decision is sent with it
    let success = f.workflow.send_task_success(&bogus, &json!({})).await;
    let failure = f.workflow.send_task_failure(&bogus, "Denied", "no").await;

    // THEN both find no waiting task
    assert!(
        matches!(success, Err(WorkflowError::TaskGone)),
        "{success:?}"
    );
    assert!(
        matches!(failure, Err(WorkflowError::TaskGone)),
        "{failure:?}"
    );
}

// ---------------------------------------------------------------------------
// Decisions racing a cancel or a denial, through the Broker on DynamoStore +
// SfnWorkflow: the chaos suite's race invariants on the AWS adapters, as far
// as moto can show them (see `docs/ARCHITECTURE.md`, "Chaos suite"). moto
// runs no Lambda code, so nothing here grants: what is checked is the
// store's outcome, the losing call's 409, and whether the execution went on
// past the approval (on AWS, into Grant).

const RACE_CATALOG: &str = r#"
entitlements:
  - name: JIT-ElevatedAdminRole
    role_arn: "arn:aws:iam::123456789012:role/JIT-ElevatedAdminRole"
    approvers: { emails: [lead@example.com, security@example.com] }
"#;

/// Rounds per rival; the rival's lag sweeps 0–35 ms (moto answers in
/// milliseconds to tens of milliseconds).
const RACE_ROUNDS: usize = 8;

fn person(email: &str) -> jit_core::Caller {
    jit_core::Caller::person(
        jit_core::Principal::parse(email).expect("a principal"),
        jit_core::AuthSource::Jwt,
        vec![],
    )
}

impl Fixture {
    /// A stored APPROVAL_PENDING request whose execution waits on moto, its
    /// task token on the record as the notify step leaves it.
    async fn pending_on_both(&self, store: &jit_aws::DynamoStore) -> (RequestId, String) {
        use jit_core::ports::RequestStore;
        let (id, token) = self.waiting_for_approval().await;
        let requester = jit_testkit::data::unique_principal("racer");
        let at = jit_testkit::data::base_time();
        let mut r = jit_testkit::data::sample_request(&requester, at);
        r.request_id = id.clone();
        let r = jit_testkit::data::create(store, &r).await;
        let r = jit_testkit::data::advance(store, &r, jit_core::Status::Validating, at).await;
        let r = jit_testkit::data::advance(store, &r, jit_core::Status::ApprovalPending, at).await;
        let mut next = r.clone();
        next.version += 1;
        next.task_token = Some(token);
        let event = jit_testkit::data::note_event(
            &id,
            at,
            jit_core::request::AuditAction::Note,
            "approval task waiting",
        );
        store
            .transition(&r, &next, &event)
            .await
            .expect("storing the task token");
        (id, requester.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_racing_a_cancel_or_a_denial_has_exactly_one_outcome() {
    use jit_core::ServiceError;
    use jit_core::ports::RequestStore;
    let f = fixture().await;
    let store = common::fresh_store().await;
    let broker = jit_core::Broker {
        store: std::sync::Arc::new(store.clone()),
        workflow: std::sync::Arc::new(f.workflow.clone()),
        catalog: std::sync::Arc::new(
            jit_core::Catalog::parse(RACE_CATALOG, "race.yaml").expect("catalog"),
        ),
        clock: std::sync::Arc::new(jit_core::ports::SystemClock),
        settings: jit_core::service::Settings { demo_mode: false },
        grants: None,
        policy: None,
    };
    let (lead, security) = (person("lead@example.com"), person("security@example.com"));

    // GIVEN requests waiting for approval on moto's Step Functions and in DynamoDB
    let mut rounds = vec![];
    for cancel in [true, false] {
        for i in 0..RACE_ROUNDS {
            let (id, requester) = f.pending_on_both(&store).await;
            rounds.push((cancel, i, id, requester));
        }
    }

    // WHEN the lead approves while the requester cancels (or another
    // approver denies), the rival `lag` later
    let mut broken = vec![];
    let mut moto_overlaps = 0;
    for (cancel, i, id, requester) in &rounds {
        let before = store.get(id).await.expect("read").expect("stored").version;
        let lag = Duration::from_millis(5 * *i as u64);
        let reason = Some("race".to_string());
        let requester = person(requester);
        let (approved, rival) = tokio::join!(
            broker.approve(&lead, id.as_str(), None, reason.clone()),
            async {
                tokio::time::sleep(lag).await;
                if *cancel {
                    broker
                        .cancel(&requester, id.as_str(), None, reason.clone())
                        .await
                } else {
                    broker
                        .deny(&security, id.as_str(), None, reason.clone())
                        .await
                }
            }
        );
        let rival_name = if *cancel { "cancel" } else { "deny" };
        let conflict = |r: &Result<jit_core::AccessRequest, ServiceError>| {
            matches!(r, Err(ServiceError::Conflict { .. }))
        };
        // moto's TransactWriteItems is not atomic under concurrency (about
        // 1 in 100 concurrent conditional writes on one version both
        // succeed): both calls answered yet the version moved only once
        // means moto lost a write, not that the broker let both win (two
        // accepted writes in turn move it twice). Such a round shows nothing.
        let after = store.get(id).await.expect("read").map(|r| r.version);
        if approved.is_ok() && rival.is_ok() && after.is_some_and(|v| v < before + 2) {
            moto_overlaps += 1;
            eprintln!(
                "{id}: moto applied two conditional writes on version {before}; round not counted"
            );
            continue;
        }
        // THEN exactly one call wins and the loser is a 409
        let one_winner =
            (approved.is_ok() && conflict(&rival)) || (rival.is_ok() && conflict(&approved));
        // AND the store and the execution show the winner's outcome
        let status = store
            .get(id)
            .await
            .expect("read")
            .map(|r| r.status.to_string())
            .unwrap_or_else(|| "NOT STORED".into());
        let execution = {
            let deadline = Instant::now() + PATIENCE;
            loop {
                let s = f
                    .sfn
                    .describe_execution()
                    .execution_arn(f.workflow.state_machine().execution_arn(id))
                    .send()
                    .await
                    .expect("describe execution")
                    .status()
                    .clone();
                if s != ExecutionStatus::Running || Instant::now() >= deadline {
                    break s;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let went_on = execution == ExecutionStatus::Succeeded;
        let consistent = match (approved.is_ok(), rival.is_ok()) {
            (true, false) => went_on && !matches!(status.as_str(), "CANCELLED" | "DENIED"),
            (false, true) => !went_on && status == if *cancel { "CANCELLED" } else { "DENIED" },
            _ => false,
        };
        if !one_winner || !consistent {
            let show = |r: &Result<jit_core::AccessRequest, ServiceError>| match r {
                Ok(r) => format!("ok ({})", r.status),
                Err(e) => format!("{e:?}"),
            };
            broken.push(format!(
                "{id} (lag {lag:?}): approve {} | {rival_name} {} | stored {status}, execution {execution:?}{}",
                show(&approved),
                show(&rival),
                if went_on && matches!(status.as_str(), "CANCELLED" | "DENIED") {
                    " — ended yet its workflow went on past the approval (into Grant, on AWS)"
                } else {
                    ""
                }
            ));
        }
    }
    assert!(
        moto_overlaps <= 2,
        "{moto_overlaps} of {} rounds lost to moto's non-atomic conditional writes: the test shows too little",
        rounds.len()
    );
    assert!(
        broken.is_empty(),
        "{} of {} approve-vs-cancel/deny races on DynamoStore + SfnWorkflow (moto) \
         did not have exactly one outcome (the winner's status, the loser a 409):\n  {}",
        broken.len(),
        rounds.len(),
        broken.join("\n  ")
    );
}
