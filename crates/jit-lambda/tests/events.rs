//! The task Lambdas' sample events (`events/`) decode as the Lambdas expect.

use jit_core::tasks::TaskError;
use jit_core::{GrantTarget, Status};
use jit_lambda::{TaskConfig, TaskFailure, from_dynamodb_json, ttl_removals};
use lambda_runtime::Diagnostic;
use serde_json::{Value, json};

fn event(name: &str) -> Value {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn ttl_stream_yields_only_service_removals_with_their_record() {
    let removed = ttl_removals(&event("expire-ttl-stream.json")).unwrap();
    assert_eq!(
        removed.len(),
        1,
        "the user delete (no Service identity) is skipped"
    );
    let r = &removed[0];
    assert_eq!(r.request_id.as_str(), "01KAJ3Q4Z5R6S7T8V9W0XYZ123");
    assert_eq!(r.status, Status::Granted);
    assert!(
        matches!(&r.target, GrantTarget::AttachPolicy { policy_name } if policy_name.as_str() == "AWSReadOnlyAccess")
    );
    assert_eq!(r.requester.groups, vec!["engineering"]);
    assert!(
        ttl_removals(&json!({"requestId": "x"})).is_err(),
        "not a stream event"
    );
}

#[test]
fn ttl_removals_of_seen_once_markers_are_skipped() {
    // A replayed-Slack marker (`SEEN#…`, TTL'd on expiresAt) shares the table.
    let marker = json!({"Records": [{
        "eventName": "REMOVE",
        "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
        "dynamodb": {"OldImage": {
            "requestId": {"S": "SEEN#slack:signature:0123abcd"},
            "expiresAt": {"N": "1800003600"}
        }}
    }]});
    assert_eq!(ttl_removals(&marker).unwrap(), vec![]);
}

#[test]
fn dynamodb_json_types() {
    let v = json!({"M": {"a": {"N": "1.5"}, "b": {"L": [{"BOOL": true}, {"NULL": true}]}, "c": {"SS": ["x"]}}});
    assert_eq!(
        from_dynamodb_json(&v).unwrap(),
        json!({"a": 1.5, "b": [true, null], "c": ["x"]})
    );
    assert!(from_dynamodb_json(&json!({"N": "x"})).is_err());
    assert!(from_dynamodb_json(&json!({"B": "AA=="})).is_err());
    assert!(from_dynamodb_json(&json!({"S": "a", "N": "1"})).is_err());
}

#[test]
fn task_payload_samples_have_the_fields_the_steps_read() {
    for (file, fields) in [
        ("update-status.json", &["requestId", "to"][..]),
        (
            "update-status-failed.json",
            &["requestId", "to", "error"][..],
        ),
        ("assume-role.json", &["requestId"][..]),
        ("slack-notify.json", &["requestId", "taskToken"][..]),
        ("expire.json", &["requestId"][..]),
    ] {
        let v = event(file);
        for f in fields {
            assert!(v.get(f).is_some(), "{file} lacks {f}");
        }
    }
}

#[test]
fn errors_carry_the_names_the_state_machine_matches() {
    let definition = std::fs::read_to_string(format!(
        "{}/../../state-machine/approval.asl.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    for (err, name) in [
        (TaskError::NoLongerApplies("x".into()), "NoLongerApplies"),
        (TaskError::Transient("x".into()), "Transient"),
    ] {
        let d: Diagnostic = TaskFailure(err).into();
        assert_eq!(d.error_type, name);
        assert!(
            definition.contains(&format!("\"{name}\"")),
            "the definition matches {name}"
        );
    }
}

#[test]
fn config_defaults_and_errors() {
    let c = TaskConfig::from_lookup(|_| None).unwrap();
    assert_eq!(c.table, "JITAccessRequests");
    assert_eq!(c.audit_table, "JITAccessAudit");
    assert_eq!(c.ledger_table, "JITGrantLedger");
    let c = TaskConfig::from_lookup(|k| (k == "JIT_LEDGER_TABLE").then(|| "MyLedger".to_string()))
        .unwrap();
    assert_eq!(c.ledger_table, "MyLedger");
    let err =
        TaskConfig::from_lookup(|k| (k == "JIT_AUDIT_TABLE").then(|| "no spaces".to_string()))
            .unwrap_err();
    assert_eq!(err.var, "JIT_AUDIT_TABLE");
}
