//! The approval channels' adapters: SES v2 and Secrets Manager through the
//! real SDK against moto, and the Slack Web API client against a loopback
//! fake that records calls and can fail.

use crate::common;

use std::time::Duration;

use jit_aws::{SecretsManagerSource, SesMailer, SlackWebApi};
use jit_core::channels::{
    ChannelError, ChatApi, ChatMessage, ChatMessageRef, Email, Mailer, SecretSource,
};
use jit_core::ports::Secret;
use jit_testkit::fake_slack::{FakeSlack, SlackBehaviour};
use serde_json::json;

const TOKEN: &str = "xoxb-test-token-never-printed";

#[tokio::test]
async fn ses_sends_an_email_from_a_verified_sender_and_refuses_an_unverified_one() {
    let config = common::sdk_config().await;
    let sender = format!("{}@example.com", common::unique_name("jit-approvals"));
    // GIVEN a verified sender identity
    aws_sdk_sesv2::Client::new(&config)
        .create_email_identity()
        .email_identity(&sender)
        .send()
        .await
        .expect("verifying the sender on moto");
    let capture = common::Capture::default();
    let client = aws_sdk_sesv2::Client::from_conf(
        aws_sdk_sesv2::config::Builder::from(&config)
            .interceptor(capture.clone())
            .build(),
    );
    let mailer = SesMailer::new(client);
    let link = "http://127.0.0.1:3000/approvals/01JX?a=lead%40example.com&e=1&n=N&s=SIG";
    let mail = Email {
        from: sender.clone(),
        to: "lead@example.com".into(),
        subject: "Approval needed: alice requests Admin".into(),
        text: format!("Decide here: {link}"),
        html: format!("<p><a href=\"{link}\">Decide</a></p>"),
    };
    // WHEN an approval email is sent
    mailer.send(&mail).await.expect("moto's SES accepts it");
    // THEN SES got one message to the approver, from the sender, with both
    // parts carrying the link
    let sent = capture.json_bodies();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let m = &sent[0];
    assert_eq!(m["FromEmailAddress"], sender.as_str());
    assert_eq!(m["Destination"]["ToAddresses"], json!(["lead@example.com"]));
    let simple = &m["Content"]["Simple"];
    assert_eq!(
        simple["Subject"]["Data"],
        "Approval needed: alice requests Admin"
    );
    assert!(
        simple["Body"]["Text"]["Data"]
            .as_str()
            .unwrap()
            .contains(link)
    );
    assert!(
        simple["Body"]["Html"]["Data"]
            .as_str()
            .unwrap()
            .contains(link)
    );
    assert_eq!(simple["Body"]["Html"]["Charset"], "UTF-8");

    // AND a sender nobody verified is refused, as a permanent failure
    let mut unverified = mail.clone();
    unverified.from = "nobody-verified-me@example.net".into();
    match mailer.send(&unverified).await {
        Err(ChannelError::Failed(text)) => {
            assert!(text.starts_with("SendEmail:"), "{text}");
            assert!(
                !text.contains(link),
                "the body never reaches an error: {text}"
            );
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

#[tokio::test]
async fn secrets_manager_reads_a_string_secret_and_names_a_missing_one() {
    let config = common::sdk_config().await;
    let name = common::unique_name("jit-link-secret");
    aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name(&name)
        .secret_string("  0123456789abcdef0123456789abcdef  ")
        .send()
        .await
        .expect("creating the secret on moto");
    let source = SecretsManagerSource::from_config(&config);
    let s = source.secret(&name).await.expect("the secret reads");
    assert_eq!(s.expose(), "0123456789abcdef0123456789abcdef");
    assert!(!format!("{s:?}").contains("0123"), "never printed");
    match source.secret("no-such-secret-anywhere").await {
        Err(ChannelError::Failed(text)) => assert!(text.contains("ResourceNotFound"), "{text}"),
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

fn message() -> ChatMessage {
    ChatMessage {
        text: "alice requests Admin".into(),
        blocks: json!([{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]),
    }
}

#[tokio::test]
async fn slack_posts_updates_looks_up_and_responds_with_the_bot_token() {
    let fake = FakeSlack::start(SlackBehaviour {
        emails: vec![("U0LEAD".into(), "lead@example.com".into())],
        ..SlackBehaviour::default()
    })
    .await;
    let slack = SlackWebApi::new(&fake.api_url(), Secret::new(TOKEN)).unwrap();
    // WHEN a message is posted and then updated
    let at = slack
        .post_message("#jit-approvals", &message())
        .await
        .unwrap();
    assert_eq!(at.channel, "C0FAKECHAN");
    slack.update_message(&at, &message()).await.unwrap();
    // THEN both calls carried the token and the message
    let posts = fake.calls_to("chat.postMessage");
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(posts[0].body["channel"], "#jit-approvals");
    assert_eq!(posts[0].body["blocks"][0]["type"], "section");
    let updates = fake.calls_to("chat.update");
    assert_eq!(updates[0].body["ts"], at.ts.as_str());
    // AND users.info gives the email (or none)
    assert_eq!(
        slack.user_email("U0LEAD").await.unwrap().as_deref(),
        Some("lead@example.com")
    );
    assert_eq!(slack.user_email("U0NOBODY").await.unwrap(), None);
    // AND a response_url gets the body, without the token
    slack
        .respond(&fake.response_url("r1"), &json!({"text": "ok"}))
        .await
        .unwrap();
    let responds = fake.calls_to("respond");
    assert_eq!(responds[0].body["text"], "ok");
    assert_eq!(responds[0].authorization, None);
}

#[tokio::test]
async fn slack_failures_are_classified_and_never_carry_the_token() {
    let fake = FakeSlack::start(SlackBehaviour {
        post_unavailable: true,
        ..SlackBehaviour::default()
    })
    .await;
    let slack = SlackWebApi::new(&fake.api_url(), Secret::new(TOKEN)).unwrap();
    let cases = [
        (
            SlackBehaviour {
                post_unavailable: true,
                ..SlackBehaviour::default()
            },
            true,
            "HTTP 503",
        ),
        (
            SlackBehaviour {
                post_error: Some("ratelimited".into()),
                ..SlackBehaviour::default()
            },
            true,
            "ratelimited",
        ),
        (
            SlackBehaviour {
                post_error: Some("channel_not_found".into()),
                ..SlackBehaviour::default()
            },
            false,
            "channel_not_found",
        ),
    ];
    for (behaviour, transient, needle) in cases {
        fake.set_behaviour(behaviour);
        let err = slack.post_message("#x", &message()).await.unwrap_err();
        assert_eq!(err.is_transient(), transient, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
        assert!(!err.to_string().contains(TOKEN));
    }
    // A closed port is a transient failure too.
    let gone = SlackWebApi::new("http://127.0.0.1:9/api", Secret::new(TOKEN)).unwrap();
    let at = ChatMessageRef {
        channel: "C1".into(),
        ts: "1.0".into(),
    };
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        gone.update_message(&at, &message()),
    )
    .await
    .expect("bounded")
    .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(SlackWebApi::new("ftp://x", Secret::new(TOKEN)).is_err());
}
