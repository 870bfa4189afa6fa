//! The project's own `state-machine/approval.asl.json` loads and runs its
//! main paths (canned task answers). If an edit to the definition uses
//! something the engine does not support, this fails first.

use jit_engine::{
    CannedTasks, ExecutionStatus, StateMachine, Substitutions, run_with_canned_tasks,
};
use serde_json::json;

const DEFINITION: &str = include_str!("../../../../state-machine/approval.asl.json");

fn substitutions() -> Substitutions {
    // Every ${…} placeholder in the file, as template.yaml passes them.
    let mut subs = Substitutions::new();
    let mut rest = DEFINITION;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let end = after.find('}').expect("closed placeholder");
        let name = &after[..end];
        subs.insert(
            name.to_string(),
            format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
        );
        rest = &after[end + 1..];
    }
    subs
}

#[test]
fn the_approval_definition_loads() {
    // WHEN the file loads with its substitutions THEN it is accepted
    let sm = StateMachine::load(DEFINITION, &substitutions())
        .unwrap_or_else(|e| panic!("approval.asl.json is refused: {e}"));
    assert!(sm.state_names().len() > 5);
    // AND without them the refusal names a placeholder
    let e = StateMachine::load(DEFINITION, &Substitutions::new()).unwrap_err();
    assert!(
        e.to_string()
            .contains("unresolved substitution placeholder"),
        "{e}"
    );
}

#[tokio::test]
async fn approved_requests_are_granted_then_revoked_and_denied_ones_stop() {
    // GIVEN a request needing approval, approved, granted for an hour
    let input = json!({"requestId": "R1", "autoApprove": false, "approvalTimeoutSeconds": 600});
    let approved = CannedTasks::from_json(
        r#"{"RequestApproval": [{"output": {"approved": true}}],
            "RecordGranted": [{"output": {"expiresAt": "2030-01-01T01:00:00Z"}}]}"#,
    )
    .unwrap()
    .with_substitutions(substitutions());
    // WHEN it runs
    let report = run_with_canned_tasks(DEFINITION, input.clone(), approved)
        .await
        .unwrap();
    // THEN it is granted, waits for expiry, revokes, and succeeds
    assert_eq!(report.status, ExecutionStatus::Succeeded, "{report:?}");
    for state in ["RequestApproval", "Grant", "WaitForExpiry", "Revoke"] {
        assert!(
            report.states.iter().any(|s| s == state),
            "{state} in {:?}",
            report.states
        );
    }

    // GIVEN the approver denies
    let denied =
        CannedTasks::from_json(r#"{"RequestApproval": [{"error": "Denied", "cause": "no"}]}"#)
            .unwrap()
            .with_substitutions(substitutions());
    let report = run_with_canned_tasks(DEFINITION, input.clone(), denied)
        .await
        .unwrap();
    // THEN nothing is granted
    assert!(
        !report.states.iter().any(|s| s == "Grant"),
        "{:?}",
        report.states
    );

    // GIVEN nobody answers within the window
    let timeout = CannedTasks::from_json(r#"{"RequestApproval": [{"timeout": true}]}"#)
        .unwrap()
        .with_substitutions(substitutions());
    let report = run_with_canned_tasks(DEFINITION, input, timeout)
        .await
        .unwrap();
    // THEN the timeout branch runs and nothing is granted
    assert!(
        !report.states.iter().any(|s| s == "Grant"),
        "{:?}",
        report.states
    );
    let timed_out = report
        .history
        .iter()
        .any(|e| e.event_type == "TaskTimedOut");
    assert!(timed_out);
}
