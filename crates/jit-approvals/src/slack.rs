//! Slack's side of the wire: request signatures (checked before anything
//! is parsed), interaction payloads, and the `/jit` command's grammar.
//!
//! A request is Slack's only if `X-Slack-Signature` is `v0=` + the
//! HMAC-SHA256, under the app's signing secret, of `v0:<timestamp>:<body>`,
//! and `X-Slack-Request-Timestamp` is within five minutes of now (so a
//! captured request cannot be replayed later).

use hmac::{Hmac, Mac};
use http::HeaderMap;
use jit_core::Catalog;
use jit_core::channels::ChatMessageRef;
use jit_core::links::parse_form;
use jit_core::ports::Secret;
use jit_core::request::Timestamp;
use serde_json::Value;
use sha2::Sha256;

use crate::render::{ACTION_APPROVE, ACTION_DENY, ACTION_OPEN_PAGE, REASON_ACTION, REASON_BLOCK};

/// The replay window Slack documents: five minutes either way.
pub const MAX_SKEW_SECS: i64 = 300;
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
pub const SIGNATURE_HEADER: &str = "x-slack-signature";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackAuthError {
    #[error("the request carries no Slack signature")]
    Missing,
    #[error("the request's timestamp is more than five minutes from now")]
    Stale,
    #[error("the Slack signature does not match")]
    BadSignature,
}

/// Checks a request's Slack signature and timestamp. Constant-time.
pub fn verify_request(
    signing_secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> Result<(), SlackAuthError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(ts_text), Some(signature)) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER))
    else {
        return Err(SlackAuthError::Missing);
    };
    let ts: i64 = ts_text.parse().map_err(|_| SlackAuthError::Missing)?;
    if (now.timestamp() - ts).abs() > MAX_SKEW_SECS {
        return Err(SlackAuthError::Stale);
    }
    let given = signature
        .strip_prefix("v0=")
        .and_then(hex_decode)
        .ok_or(SlackAuthError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(b"v0:");
    mac.update(ts_text.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| SlackAuthError::BadSignature)
}

/// Signs a body as Slack would (`v0=<hex>`): for the local fake and tests.
pub fn sign_request(signing_secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "v0={}",
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A button press on an approval message, as far as we use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub user_id: String,
    pub action_id: String,
    /// The request the button belongs to (the button's `value`).
    pub request_id: String,
    /// What the reason box held when the button was pressed.
    pub reason: Option<String>,
    pub response_url: Option<String>,
    /// Slack's id of this one interaction (a replay carries the same).
    pub trigger_id: Option<String>,
    /// The message the button is on.
    pub message: Option<ChatMessageRef>,
}

/// Parses an interaction body (`payload=<JSON>`, form-encoded). Only
/// `block_actions` on our own buttons are accepted.
pub fn parse_interaction(body: &[u8]) -> Result<Interaction, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    let form = parse_form(text).ok_or("the body is not form-encoded")?;
    let payload = form
        .iter()
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.as_str())
        .ok_or("no `payload` field")?;
    let v: Value = jit_api::strict_json::parse(payload.as_bytes()).map_err(|e| match e {
        jit_api::strict_json::StrictJsonError::DuplicateKey { path, .. } => {
            format!("`payload` repeats the key `{path}`")
        }
        jit_api::strict_json::StrictJsonError::Syntax(_) => "`payload` is not JSON".to_string(),
    })?;
    if v.get("type").and_then(Value::as_str) != Some("block_actions") {
        return Err("only button presses (block_actions) are handled".into());
    }
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    let user_id = s("/user/id").ok_or("no user id")?;
    let action = v.pointer("/actions/0").ok_or("no action in the payload")?;
    let action_id = action
        .get("action_id")
        .and_then(Value::as_str)
        .filter(|a| [ACTION_APPROVE, ACTION_DENY, ACTION_OPEN_PAGE].contains(a))
        .ok_or("not one of this app's buttons")?
        .to_string();
    let request_id = action
        .get("value")
        .and_then(Value::as_str)
        .ok_or("the button carries no request id")?
        .to_string();
    let reason = v
        .pointer(&format!(
            "/state/values/{REASON_BLOCK}/{REASON_ACTION}/value"
        ))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    let message = match (
        s("/container/channel_id").or_else(|| s("/channel/id")),
        s("/container/message_ts").or_else(|| s("/message/ts")),
    ) {
        (Some(channel), Some(ts)) => Some(ChatMessageRef { channel, ts }),
        _ => None,
    };
    Ok(Interaction {
        user_id,
        action_id,
        request_id,
        reason,
        response_url: s("/response_url"),
        trigger_id: s("/trigger_id"),
        message,
    })
}

/// A slash command invocation (form-encoded fields Slack sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlashCommand {
    pub user_id: String,
    pub command: String,
    pub text: String,
    pub response_url: Option<String>,
    /// Slack's id of this one invocation (a replay carries the same).
    pub trigger_id: Option<String>,
}

pub fn parse_slash_command(body: &[u8]) -> Result<SlashCommand, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    let form = parse_form(text).ok_or("the body is not form-encoded")?;
    let get = |k: &str| form.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    Ok(SlashCommand {
        user_id: get("user_id").ok_or("no user_id")?,
        command: get("command").unwrap_or_else(|| "/jit".into()),
        text: get("text").unwrap_or_default(),
        response_url: get("response_url"),
        trigger_id: get("trigger_id"),
    })
}

/// What `/jit` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JitCommand {
    Request {
        entitlement: String,
        duration: String,
        reason: String,
    },
    List,
    Status(String),
    Cancel(String),
    Help,
}

pub const USAGE: &str = "*/jit* — just-in-time AWS access\n\
• `/jit request <entitlement> <duration> <reason>` — e.g. `/jit request OnCallReadOnly 30m INC-42 database failover`\n\
• `/jit list` — your requests, and those waiting for your approval\n\
• `/jit status <request id>`\n\
• `/jit cancel <request id>`";

/// Parses `/jit`'s text. An error is the message to show: what was wrong
/// and what to type instead. Entitlement names may hold spaces: quote them,
/// or type them as the catalog spells them.
pub fn parse_command(text: &str, catalog: &Catalog) -> Result<JitCommand, String> {
    let text = text.trim();
    let (verb, rest) = text
        .split_once(char::is_whitespace)
        .map(|(v, r)| (v, r.trim()))
        .unwrap_or((text, ""));
    match verb.to_ascii_lowercase().as_str() {
        "" | "help" => Ok(JitCommand::Help),
        "list" | "ls" if rest.is_empty() => Ok(JitCommand::List),
        "list" | "ls" => Err("`/jit list` takes nothing after it. Type `/jit list`.".into()),
        "status" | "cancel" => {
            let id = rest.trim();
            if id.is_empty() || id.contains(char::is_whitespace) {
                return Err(format!(
                    "Name one request id: type `/jit {verb} <request id>` (ids look like `01JABCDEF…`; `/jit list` shows yours)."
                ));
            }
            Ok(if verb.eq_ignore_ascii_case("status") {
                JitCommand::Status(id.to_string())
            } else {
                JitCommand::Cancel(id.to_string())
            })
        }
        "request" | "req" => parse_request(rest, catalog),
        other => Err(format!(
            "`{other}` is not a `/jit` command. Type one of these instead:\n{USAGE}"
        )),
    }
}

fn parse_request(rest: &str, catalog: &Catalog) -> Result<JitCommand, String> {
    let usage = "Type `/jit request <entitlement> <duration> <reason>`, e.g. `/jit request OnCallReadOnly 30m INC-42 database failover`.";
    if rest.is_empty() {
        return Err(format!("Say what you need. {usage}"));
    }
    let (entitlement, after) = if let Some(quoted) = rest.strip_prefix('"') {
        let end = quoted
            .find('"')
            .ok_or_else(|| format!("The entitlement's closing quote is missing. {usage}"))?;
        (quoted[..end].to_string(), quoted[end + 1..].trim_start())
    } else {
        // The longest catalogued name the text starts with, so names with
        // spaces ("Read Only Access") work without quotes.
        let named = catalog
            .entitlements()
            .iter()
            .map(|e| e.name.as_str())
            .filter(|n| {
                rest.starts_with(n)
                    && rest[n.len()..]
                        .chars()
                        .next()
                        .is_none_or(char::is_whitespace)
            })
            .max_by_key(|n| n.len());
        match named {
            Some(n) => (n.to_string(), rest[n.len()..].trim_start()),
            None => {
                let (first, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                (first.to_string(), after.trim_start())
            }
        }
    };
    let (duration, reason) = after
        .split_once(char::is_whitespace)
        .map(|(d, r)| (d.to_string(), r.trim().to_string()))
        .unwrap_or((after.to_string(), String::new()));
    if duration.is_empty() {
        return Err(format!("How long do you need `{entitlement}`? {usage}"));
    }
    if reason.is_empty() {
        return Err(format!(
            "Say why you need `{entitlement}`: add a reason after the duration. {usage}"
        ));
    }
    Ok(JitCommand::Request {
        entitlement,
        duration,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

    fn headers(ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TIMESTAMP_HEADER, ts.to_string().parse().unwrap());
        h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        h
    }

    fn at(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn slacks_documented_example_verifies() {
        // The example from Slack's "Verifying requests from Slack" page.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let h = headers(
            1531420618,
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        );
        assert_eq!(
            verify_request(&Secret::new(SECRET), &h, body, at(1531420618 + 10)),
            Ok(())
        );
        assert_eq!(
            sign_request(SECRET, 1531420618, body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn forged_stale_and_missing_signatures_are_refused() {
        let body = b"payload=%7B%7D";
        let now = 1_800_000_000;
        let good = sign_request(SECRET, now, body);
        let secret = Secret::new(SECRET);
        assert_eq!(
            verify_request(&secret, &headers(now, &good), body, at(now)),
            Ok(())
        );
        let cases = [
            (
                "another secret",
                headers(now, &sign_request("another-secret", now, body)),
                b"payload=%7B%7D".as_slice(),
                SlackAuthError::BadSignature,
            ),
            (
                "a changed body",
                headers(now, &good),
                b"payload=%7B%22x%22%7D".as_slice(),
                SlackAuthError::BadSignature,
            ),
            (
                "six minutes old",
                headers(now - 360, &sign_request(SECRET, now - 360, body)),
                body.as_slice(),
                SlackAuthError::Stale,
            ),
            (
                "six minutes ahead",
                headers(now + 360, &sign_request(SECRET, now + 360, body)),
                body.as_slice(),
                SlackAuthError::Stale,
            ),
            (
                "not hex",
                headers(now, "v0=zz"),
                body.as_slice(),
                SlackAuthError::BadSignature,
            ),
            (
                "nothing",
                HeaderMap::new(),
                body.as_slice(),
                SlackAuthError::Missing,
            ),
        ];
        for (what, h, body, want) in cases {
            assert_eq!(
                verify_request(&secret, &h, body, at(now)),
                Err(want),
                "{what}"
            );
        }
    }

    fn catalog() -> Catalog {
        Catalog::parse(
            "defaults: {approvers: {emails: [lead@example.com]}}\nentitlements:\n  - name: OnCallReadOnly\n    role_arn: 'arn:aws:iam::123456789012:role/R'\npolicies:\n  - {policy_name: P, aws_account_id: '123456789012', request_name: Read Only Access}\n",
            "c.yaml",
        )
        .unwrap()
    }

    #[test]
    fn jit_commands_parse_and_errors_say_what_to_type() {
        let c = catalog();
        let req = |e: &str, d: &str, r: &str| JitCommand::Request {
            entitlement: e.into(),
            duration: d.into(),
            reason: r.into(),
        };
        let ok = [
            ("", JitCommand::Help),
            ("help", JitCommand::Help),
            ("list", JitCommand::List),
            ("status 01JABC", JitCommand::Status("01JABC".into())),
            ("cancel 01JABC", JitCommand::Cancel("01JABC".into())),
            (
                "request OnCallReadOnly 30m INC-42 db failover",
                req("OnCallReadOnly", "30m", "INC-42 db failover"),
            ),
            (
                "request Read Only Access 1h audit",
                req("Read Only Access", "1h", "audit"),
            ),
            (
                "request \"Read Only Access\" 1h audit",
                req("Read Only Access", "1h", "audit"),
            ),
            ("request Unknown 1h why", req("Unknown", "1h", "why")),
        ];
        for (text, want) in ok {
            assert_eq!(parse_command(text, &c), Ok(want), "{text}");
        }
        let bad = [
            ("request", "/jit request <entitlement>"),
            ("request OnCallReadOnly", "How long"),
            ("request OnCallReadOnly 30m", "Say why"),
            ("status", "/jit status <request id>"),
            ("frobnicate", "not a `/jit` command"),
        ];
        for (text, needle) in bad {
            let err = parse_command(text, &c).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn interactions_parse_our_buttons_only() {
        let payload = serde_json::json!({
            "type": "block_actions",
            "user": {"id": "U0LEAD"},
            "response_url": "https://hooks.slack.com/actions/T/1/x",
            "container": {"type": "message", "channel_id": "C0APPROVALS", "message_ts": "1700000000.000100"},
            "state": {"values": {"jit_reason": {"reason": {"type": "plain_text_input", "value": " freeze "}}}},
            "actions": [{"action_id": "jit_deny", "value": "01JREQUEST"}]
        });
        let body = format!(
            "payload={}",
            jit_core::links::percent_encode(&payload.to_string())
        );
        let i = parse_interaction(body.as_bytes()).unwrap();
        assert_eq!(i.user_id, "U0LEAD");
        assert_eq!(i.action_id, "jit_deny");
        assert_eq!(i.request_id, "01JREQUEST");
        assert_eq!(i.reason.as_deref(), Some("freeze"));
        assert_eq!(i.message.unwrap().channel, "C0APPROVALS");
        let other = payload.to_string().replace("jit_deny", "someone_elses");
        let body = format!("payload={}", jit_core::links::percent_encode(&other));
        assert!(parse_interaction(body.as_bytes()).is_err());
        // A key given twice (which of the two would count?) is refused.
        let twice = payload.to_string().replace(
            r#""value":"01JREQUEST""#,
            r#""value":"01JREQUEST","value":"01JOTHER""#,
        );
        assert_ne!(twice, payload.to_string());
        let body = format!("payload={}", jit_core::links::percent_encode(&twice));
        assert_eq!(
            parse_interaction(body.as_bytes()).unwrap_err(),
            "`payload` repeats the key `actions[0].value`"
        );
    }
}
