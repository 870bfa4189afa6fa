//! The Lambda adapter on the sample events (the same files `sam local
//! invoke` and `cargo lambda invoke` use): API Gateway requests become the
//! handler's requests with the stage stripped and the link's query kept; a
//! direct invocation is told apart from anything API Gateway can send.

use approval_callback::{Config, api_request, is_direct_invocation};
use jit_core::links::{LinkParams, parse_form};

fn event(name: &str) -> lambda_http::Request {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn a_link_get_keeps_its_path_and_signed_query() {
    let e = event("approval-callback-get.json");
    assert!(!is_direct_invocation(&e));
    let req = api_request(e);
    assert_eq!(req.method, http::Method::GET);
    assert_eq!(req.path, "/approvals/01JQ3Z6YH0B1V0Q8M4R6T2W9XA");
    let pairs = parse_form(req.query.as_deref().unwrap()).unwrap();
    let p = LinkParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert_eq!(p.approver.as_deref(), Some("lead@example.com"));
    assert_eq!(p.expires.as_deref(), Some("1800003600"));
    assert_eq!(p.nonce.as_deref(), Some("01JQ3Z6YH0B1V0Q8M4R6T2W9XB"));
    assert_eq!(p.signature.as_deref(), Some("c2lnbmF0dXJl"));
}

#[test]
fn a_slack_post_keeps_its_headers_and_raw_body() {
    let req = api_request(event("slack-interaction.json"));
    assert_eq!(req.path, "/slack/interactions");
    assert_eq!(
        req.headers.get("x-slack-request-timestamp").unwrap(),
        "1800000000"
    );
    assert_eq!(
        &req.body[..],
        b"payload=%7B%22type%22%3A%22block_actions%22%7D"
    );
}

#[test]
fn direct_invocations_are_recognised() {
    let job = r#"{"jitDeferred": {"kind": "slack-command", "body": "x"}, "at": 1, "tag": "t"}"#;
    let e = lambda_http::request::from_str(job).expect("a pass-through event");
    assert!(is_direct_invocation(&e));
}

#[test]
fn configuration_names_what_is_missing() {
    let base = [
        (
            "JIT_STATE_MACHINE_ARN",
            "arn:aws:states:eu-west-1:123456789012:stateMachine:jit",
        ),
        ("AWS_LAMBDA_FUNCTION_NAME", "jit-approval-callback"),
        ("JIT_LINK_SECRET_ID", "jit/link-secret"),
    ];
    let lookup = |skip: &str| {
        let pairs: Vec<(String, String)> = base
            .iter()
            .filter(|(k, _)| *k != skip)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    let cfg = Config::from_lookup(lookup("")).unwrap();
    assert_eq!(cfg.function_name, "jit-approval-callback");
    assert_eq!(cfg.table, "JITAccessRequests");
    for (var, _) in base {
        assert_eq!(Config::from_lookup(lookup(var)).unwrap_err().var, var);
    }
}
