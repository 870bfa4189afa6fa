//! Backpressure: while the engine is `max_backlog` executions behind,
//! creates answer `503` with `Retry-After` and store nothing; once it has
//! caught up they are accepted again. The engine's driver is off, so the
//! backlog only moves when the test runs the engine.

use crate::common;

use std::path::Path;

use common::{Local, respond};
use jit_local::Config;
use serde_json::{Value, json};

const KEY: &str = "backpressure-test-key-0123456789";
const BOUND: usize = 3;

fn config(dir: &Path) -> Config {
    let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog.example.yaml");
    Config {
        demo_mode: true,
        max_backlog: BOUND,
        ..common::config(dir, &catalog, KEY)
    }
}

fn create_body(n: usize) -> Value {
    json!({"entitlement": "OnCallReadOnly", "duration": "30m", "justification": format!("INC-{n}")})
}

fn seed_body() -> Value {
    json!({
        "requester": "alice@example.com",
        "role": "JIT-ElevatedAdminRole",
        "roleArn": "arn:aws:iam::123456789012:role/JIT-ElevatedAdminRole",
        "duration": 900,
        "simulateApproval": true
    })
}

/// Every request `user` can see.
async fn listed(l: &Local, user: &str) -> usize {
    let (status, v) = l.call("GET", "/requests", user, None).await;
    assert_eq!(status, 200, "{v}");
    v["requests"].as_array().unwrap().len()
}

#[tokio::test]
async fn creates_past_the_bound_are_refused_until_the_engine_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let l = Local::open(
        &config(dir.path()),
        common::fixed_clock(),
        Default::default(),
        KEY,
    );
    let engine = l.app.engine().unwrap().clone();
    // GIVEN creates accepted while the engine, not running, falls behind
    for n in 0..BOUND {
        let r = respond(
            &l.app,
            KEY,
            "POST",
            "/requests",
            "sre@example.com",
            Some(create_body(n)),
        )
        .await;
        assert_eq!(r.status(), 201, "{}", r.body());
    }
    assert_eq!(engine.backlog(), BOUND);
    let r = respond(&l.app, KEY, "GET", "/local/engine", "ops@example.com", None).await;
    assert_eq!(r.status(), 200, "{}", r.body());
    let v: Value = serde_json::from_str(r.body()).unwrap();
    assert_eq!(v, json!({"backlog": BOUND, "maxBacklog": BOUND}));
    // WHEN more creates arrive, through both create routes
    for (path, user, body) in [
        ("/requests", "sre@example.com", create_body(99)),
        ("/requests/", "sre@example.com", create_body(98)),
        ("/request-access", "alice@example.com", seed_body()),
    ] {
        let r = respond(&l.app, KEY, "POST", path, user, Some(body)).await;
        // THEN each is 503 with Retry-After and the one JSON error shape
        assert_eq!(r.status(), 503, "{path}: {}", r.body());
        assert_eq!(r.headers()["retry-after"], "1", "{path}");
        let v: Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!(v["error"]["code"], "overloaded", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("3 executions behind"), "{message}");
    }
    // AND a create posted from the web console meets the same check (a
    // page, not JSON), before its form or session is even read
    let r = respond(
        &l.app,
        KEY,
        "POST",
        "/ui/requests",
        "sre@example.com",
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status(), 503, "{}", r.body());
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.body().contains("3 executions behind"), "{}", r.body());
    // AND nothing was started for them
    assert_eq!(engine.backlog(), BOUND);
    // AND nothing stored (reads still pass; a read settles the engine here,
    // so it catches up)
    assert_eq!(listed(&l, "sre@example.com").await, BOUND);
    assert_eq!(listed(&l, "alice@example.com").await, 0);
    assert_eq!(engine.backlog(), 0);
    // WHEN the engine has caught up THEN creates are accepted again
    let r = respond(
        &l.app,
        KEY,
        "POST",
        "/request-access",
        "alice@example.com",
        Some(seed_body()),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.body());
    l.settle().await;
    assert_eq!(listed(&l, "alice@example.com").await, 1);
    l.app.shutdown().await;
}
