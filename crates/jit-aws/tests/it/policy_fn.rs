//! `LambdaPolicyGenerator` (the deployed `request` function's policy
//! generator): a scope checked at create, or previewed, by invoking the
//! `generate-policy` function with `{"generate": GenerationInput}`. The
//! function is the **loopback fake of Lambda's Invoke wire format**
//! (`common::fake_lambda`) whose handler is the function's own answer
//! (`policy_fn::serve`) over the deterministic generator, so what crosses
//! the wire both ways is what the real pair exchanges.

use crate::common;
use crate::common::fake_lambda::{Behaviour, FakeLambda, caller_config, fake_lambda, handler};

use std::sync::Arc;

use jit_aws::LambdaPolicyGenerator;
use jit_aws::policy_fn::serve;
use jit_core::policy::{GenerationError, GenerationInput, PolicyGenerator, Scope};
use serde_json::{Value, json};

const FUNCTION: &str = "jit-generate-policy";

/// The `generate-policy` function: generate events answered by `serve`
/// over the deterministic generator; anything else is what the step
/// would do with it here (not exercised), an error.
fn generate_policy() -> Behaviour {
    let generator: Arc<dyn PolicyGenerator> = Arc::new(jit_policy::Generators::new(None));
    Behaviour::Serve(handler(move |event: Value| {
        let generator = generator.clone();
        async move {
            serve(generator.as_ref(), &event).await.ok_or((
                "NotAGenerateEvent".to_string(),
                format!("not a generate event: {event}"),
            ))
        }
    }))
}

async fn generator(fake: &FakeLambda, function: &str) -> LambdaPolicyGenerator {
    LambdaPolicyGenerator::from_config(&caller_config(fake).await, function, false)
}

fn input(scope: Value, ceiling: &[&str]) -> GenerationInput {
    GenerationInput {
        entitlement: "OnCallReadOnly".into(),
        scope: Some(serde_json::from_value::<Scope>(scope).unwrap()),
        fixed_policy: None,
        justification: "INC-42: read the logs".into(),
        ceiling: ceiling.iter().map(|c| c.to_string()).collect(),
    }
}

#[tokio::test]
async fn a_scope_is_generated_and_validated_by_the_function() {
    // GIVEN the generate-policy function
    let fake = fake_lambda(FUNCTION, generate_policy()).await;
    let g = generator(&fake, FUNCTION).await;

    // WHEN the request function asks for S3 read on one bucket
    let policy = g
        .generate(&input(
            json!({"access": "read", "services": ["s3"], "resources": ["arn:aws:s3:::prod-logs/*"]}),
            &[],
        ))
        .await
        .unwrap();
    // THEN the answer is the deterministic generator's, across the wire:
    // only S3 read actions, on that bucket's objects, no `*` action
    assert_eq!(policy.generator, "deterministic");
    let doc: Value = serde_json::from_str(&policy.document).unwrap();
    let statements = doc["Statement"].as_array().unwrap();
    assert!(!statements.is_empty(), "{doc}");
    for s in statements {
        for a in s["Action"].as_array().unwrap() {
            let a = a.as_str().unwrap();
            assert!(a.starts_with("s3:") && !a.contains('*'), "{doc}");
        }
        assert_eq!(s["Resource"], "arn:aws:s3:::prod-logs/*", "{doc}");
    }
    assert_eq!(
        fake.invocations.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // WHEN the scope asks beyond the entitlement's ceiling
    let err = g
        .generate(&input(
            json!({"actions": ["s3:DeleteObject"], "resources": ["arn:aws:s3:::prod-logs/*"]}),
            &["s3:Get*", "s3:List*"],
        ))
        .await
        .unwrap_err();
    // THEN the function's refusal comes back as is: a 400 naming the scope
    assert!(
        matches!(&err, GenerationError::Refused { field, .. } if field.starts_with("scope")),
        "{err:?}"
    );

    // AND a scope in words is accepted only where an AI generator is
    assert!(!g.describes());
    assert!(
        LambdaPolicyGenerator::from_config(&caller_config(&fake).await, FUNCTION, true).describes()
    );
}

#[tokio::test]
async fn a_function_that_cannot_answer_makes_generation_unavailable() {
    let scope = json!({"access": "read", "services": ["s3"]});

    // WHEN the function does not exist (a deployment mistake)
    let fake = fake_lambda(FUNCTION, generate_policy()).await;
    let err = generator(&fake, "jit-no-such-function")
        .await
        .generate(&input(scope.clone(), &[]))
        .await
        .unwrap_err();
    // THEN unavailable (503), with Lambda's error code and no secret
    assert!(
        matches!(&err, GenerationError::Unavailable { message } if message.contains("ResourceNotFoundException")),
        "{err:?}"
    );
    assert!(!format!("{err:?}").contains(common::DUMMY_SECRET));

    // WHEN the function fails (it ran out of time)
    let slow = fake_lambda(
        FUNCTION,
        Behaviour::Serve(handler(|_| async {
            Err((
                "Sandbox.Timedout".to_string(),
                "Task timed out after 30.00 seconds".to_string(),
            ))
        })),
    )
    .await;
    let err = generator(&slow, FUNCTION)
        .await
        .generate(&input(scope.clone(), &[]))
        .await
        .unwrap_err();
    // THEN unavailable, naming what happened
    assert!(
        matches!(&err, GenerationError::Unavailable { message } if message.contains("Sandbox.Timedout")),
        "{err:?}"
    );

    // WHEN it answers something that is not the protocol
    let odd = fake_lambda(
        FUNCTION,
        Behaviour::Serve(handler(|_| async { Ok(json!({"unexpected": true})) })),
    )
    .await;
    let err = generator(&odd, FUNCTION)
        .await
        .generate(&input(scope, &[]))
        .await
        .unwrap_err();
    // THEN unavailable too: nothing is taken for a policy unless it is one
    assert!(
        matches!(&err, GenerationError::Unavailable { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_function_tells_generate_events_from_its_step_events() {
    let generator = jit_policy::Generators::new(None);
    // The GeneratePolicy step's event is not answered here (the step runs).
    assert!(
        serve(
            &generator,
            &json!({"requestId": "01J0000000000000000000000"})
        )
        .await
        .is_none()
    );
    // A generate event that does not decode is answered, as unavailable.
    let answer = serve(&generator, &json!({"generate": {"scope": 3}}))
        .await
        .unwrap();
    assert_eq!(answer["error"]["kind"], "unavailable", "{answer}");
}
