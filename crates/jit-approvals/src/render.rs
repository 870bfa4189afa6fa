//! What approvers and requesters see: Slack Block Kit messages, the approval
//! email (text and HTML), the confirmation and result pages, and the MIME
//! form of an email for the local outbox. Pure functions of the record.
//!
//! Everything a requester typed is escaped for where it lands (Slack
//! mrkdwn, HTML). No function here ever renders a task token.

use chrono::SecondsFormat;
use jit_core::catalog::Approvers;
use jit_core::channels::{ChatMessage, Email};
use jit_core::decisions::missing_for_quorum;
use jit_core::request::{Timestamp, Verdict};
use jit_core::{AccessRequest, Status};
use serde_json::{Value, json};

/// Slack action ids of the message's buttons and its reason box.
pub const ACTION_APPROVE: &str = "jit_approve";
pub const ACTION_DENY: &str = "jit_deny";
pub const ACTION_OPEN_PAGE: &str = "jit_open_page";
pub const REASON_BLOCK: &str = "jit_reason";
pub const REASON_ACTION: &str = "reason";

/// Escapes text for Slack mrkdwn (`&`, `<`, `>` only, as Slack asks).
pub fn mrkdwn_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Slack's date formatting (shown in the reader's time zone) with a UTC fallback.
fn slack_time(t: Timestamp) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        t.timestamp(),
        time(t)
    )
}

fn plain(text: &str) -> Value {
    json!({ "type": "plain_text", "text": clip(text, 150), "emoji": true })
}

fn mrkdwn(text: &str) -> Value {
    json!({ "type": "mrkdwn", "text": clip(text, 3000) })
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

/// A one-line summary of a session policy: its actions and resources.
pub fn policy_summary(policy: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(policy) else {
        return format!("{} characters of policy JSON", policy.len());
    };
    let statements: Vec<&Value> = match v.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => vec![],
    };
    let mut allows = vec![];
    let mut denies = 0;
    for s in &statements {
        if s.get("Effect").and_then(Value::as_str) == Some("Deny") {
            denies += 1;
            continue;
        }
        match s.get("Action") {
            Some(Value::String(a)) => allows.push(a.clone()),
            Some(Value::Array(a)) => {
                allows.extend(a.iter().filter_map(Value::as_str).map(str::to_string))
            }
            _ => {}
        }
    }
    let mut text = if allows.is_empty() {
        format!("{} statement(s)", statements.len())
    } else {
        format!("allows {}", allows.join(", "))
    };
    if denies > 0 {
        text.push_str(&format!("; {denies} deny statement(s)"));
    }
    clip(&text, 300)
}

/// What the quorum still needs, in words (`None` when met).
pub fn quorum_text(r: &AccessRequest, a: &Approvers) -> Option<String> {
    let (short, groups) = missing_for_quorum(r, a)?;
    let mut text = if short == 1 {
        "needs 1 more approval".to_string()
    } else {
        format!("needs {short} more approvals")
    };
    if !groups.is_empty() {
        text.push_str(&format!(" (one from each of: {})", groups.join(", ")));
    }
    Some(text)
}

fn approvers_so_far(r: &AccessRequest) -> Vec<String> {
    r.decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Approve)
        .map(|d| d.approver.to_string())
        .collect()
}

fn detail_fields(r: &AccessRequest) -> Value {
    json!({
        "type": "section",
        "fields": [
            mrkdwn(&format!("*Requester*\n{}", mrkdwn_escape(r.requester.principal.as_str()))),
            mrkdwn(&format!("*Entitlement*\n{}", mrkdwn_escape(&r.entitlement))),
            mrkdwn(&format!("*Account*\n{}", r.account)),
            mrkdwn(&format!("*Duration*\n{}", r.duration)),
        ]
    })
}

/// The Slack message for a request: interactive (reason box, Approve, Deny,
/// a button for a personal approval-page link) while it waits for
/// decisions, the outcome without buttons after.
pub fn slack_message(
    r: &AccessRequest,
    approvers: &Approvers,
    deadline: Timestamp,
    now: Timestamp,
) -> ChatMessage {
    let status = r.effective_status(now);
    let waiting = status == Status::ApprovalPending && missing_for_quorum(r, approvers).is_some();
    let mut blocks = vec![
        json!({ "type": "header", "text": plain(&format!("Access request: {}", r.entitlement)) }),
        detail_fields(r),
        json!({ "type": "section", "text": mrkdwn(&format!("*Justification*\n{}", quote(&mrkdwn_escape(&r.justification)))) }),
    ];
    if let Some(p) = &r.session_policy {
        blocks.push(json!({ "type": "section", "text": mrkdwn(&format!("*Session policy*\n{}", mrkdwn_escape(&policy_summary(p)))) }));
    }
    let so_far = approvers_so_far(r);
    let text = if waiting {
        let mut context = format!("Request `{}`", r.request_id);
        if let Some(q) = quorum_text(r, approvers) {
            context.push_str(&format!(" · {q}"));
        }
        if !so_far.is_empty() {
            context.push_str(&format!(
                " · approved so far by {}",
                mrkdwn_escape(&so_far.join(", "))
            ));
        }
        context.push_str(&format!(" · decide by {}", slack_time(deadline)));
        blocks.push(json!({ "type": "context", "elements": [mrkdwn(&context)] }));
        blocks.push(json!({
            "type": "input",
            "block_id": REASON_BLOCK,
            "optional": true,
            "label": plain("Reason (required to deny)"),
            "element": { "type": "plain_text_input", "action_id": REASON_ACTION, "multiline": true, "max_length": 1000 }
        }));
        blocks.push(json!({
            "type": "actions",
            "block_id": "jit_decision",
            "elements": [
                { "type": "button", "action_id": ACTION_APPROVE, "style": "primary", "text": plain("Approve"), "value": r.request_id.as_str() },
                { "type": "button", "action_id": ACTION_DENY, "style": "danger", "text": plain("Deny"), "value": r.request_id.as_str() },
                { "type": "button", "action_id": ACTION_OPEN_PAGE, "text": plain("Open approval page"), "value": r.request_id.as_str() }
            ]
        }));
        format!(
            "{} requests {} ({}) for {}: approve or deny",
            r.requester.principal, r.entitlement, r.account, r.duration
        )
    } else {
        let outcome = outcome_text(r, status);
        blocks.push(json!({ "type": "section", "text": mrkdwn(&outcome) }));
        blocks.push(json!({ "type": "context", "elements": [mrkdwn(&format!("Request `{}`", r.request_id))] }));
        format!(
            "{} for {}: {}",
            r.entitlement, r.requester.principal, status
        )
    };
    ChatMessage {
        text,
        blocks: Value::Array(blocks),
    }
}

fn quote(s: &str) -> String {
    s.lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The outcome of a decided request, for the updated Slack message.
pub fn outcome_text(r: &AccessRequest, status: Status) -> String {
    let deny = r.decisions.iter().find(|d| d.verdict == Verdict::Deny);
    let approved_by = approvers_so_far(r);
    let by = |names: &[String]| mrkdwn_escape(&names.join(", "));
    match status {
        Status::Denied => match deny {
            Some(d) => format!(
                ":x: *Denied* by {} at {}{}",
                mrkdwn_escape(d.approver.as_str()),
                slack_time(d.at),
                d.reason
                    .as_deref()
                    .map(|t| format!(": {}", mrkdwn_escape(t)))
                    .unwrap_or_default()
            ),
            None => format!(
                ":x: *Denied*{}",
                r.reason
                    .as_deref()
                    .map(|t| format!(": {}", mrkdwn_escape(t)))
                    .unwrap_or_default()
            ),
        },
        Status::Granted => format!(
            ":white_check_mark: *Approved* by {} — granted{}",
            by(&approved_by),
            r.expires_at
                .map(|e| format!(" until {}", slack_time(e)))
                .unwrap_or_default()
        ),
        Status::Expired => format!(
            ":white_check_mark: *Approved* by {} — the grant has ended",
            by(&approved_by)
        ),
        Status::Revoked => format!(
            ":white_check_mark: *Approved* by {} — the grant was revoked",
            by(&approved_by)
        ),
        Status::ApprovalPending | Status::Approved => format!(
            ":white_check_mark: *Approved* by {} at {} — being granted",
            by(&approved_by),
            r.decided_at.map(slack_time).unwrap_or_default()
        ),
        Status::ApprovalTimedOut => {
            ":hourglass: *Expired*: nobody decided within the approval window".to_string()
        }
        Status::Cancelled => ":no_entry_sign: *Cancelled* by the requester".to_string(),
        Status::Failed => format!(
            ":warning: *Failed*{}",
            r.reason
                .as_deref()
                .map(|t| format!(": {}", mrkdwn_escape(t)))
                .unwrap_or_default()
        ),
        other => format!("Status: {other}"),
    }
}

/// A reminder's replacement for the previous message: no buttons, a pointer
/// to the newer one.
pub fn superseded_message(r: &AccessRequest) -> ChatMessage {
    ChatMessage {
        text: format!("Reminder sent for request {}", r.request_id),
        blocks: json!([
            { "type": "header", "text": plain(&format!("Access request: {}", r.entitlement)) },
            detail_fields(r),
            { "type": "context", "elements": [mrkdwn(&format!("Request `{}` · still waiting: a reminder with the buttons was posted below", r.request_id))] }
        ]),
    }
}

/// An ephemeral Slack answer (only the person who acted sees it).
pub fn ephemeral(text: &str) -> Value {
    json!({
        "response_type": "ephemeral",
        "replace_original": false,
        "text": text,
        "blocks": [ { "type": "section", "text": mrkdwn(text) } ]
    })
}

/// An ephemeral answer made of blocks.
pub fn ephemeral_blocks(text: &str, blocks: Vec<Value>) -> Value {
    json!({
        "response_type": "ephemeral",
        "replace_original": false,
        "text": text,
        "blocks": blocks
    })
}

/// One request as a Slack block (for `/jit list` and `/jit status`).
pub fn request_block(r: &AccessRequest, now: Timestamp) -> Value {
    let status = r.effective_status(now);
    let mut text = format!(
        "*{}* · `{}` · *{}*\n{} in {} for {}",
        mrkdwn_escape(&r.entitlement),
        r.request_id,
        status,
        mrkdwn_escape(r.requester.principal.as_str()),
        r.account,
        r.duration
    );
    if let Some(e) = r.expires_at
        && status == Status::Granted
    {
        text.push_str(&format!(" · until {}", slack_time(e)));
    }
    if let Some(reason) = &r.reason {
        text.push_str(&format!("\n_{}_", mrkdwn_escape(reason)));
    }
    json!({ "type": "section", "text": mrkdwn(&text) })
}

/// The approval email to one approver, with their personal link.
pub fn approval_email(
    r: &AccessRequest,
    approvers: &Approvers,
    deadline: Timestamp,
    link: &str,
    from: &str,
    to: &str,
    reminder: bool,
) -> Email {
    let prefix = if reminder { "Reminder: " } else { "" };
    let subject = clip(
        &format!(
            "{prefix}Approval needed: {} requests {} for {}",
            r.requester.principal, r.entitlement, r.duration
        ),
        200,
    );
    let quorum = quorum_text(r, approvers).unwrap_or_default();
    let policy = r.session_policy.as_deref().map(policy_summary);
    let mut text = format!(
        "{} asks for {} in account {} for {}.\n\nJustification:\n{}\n",
        r.requester.principal, r.entitlement, r.account, r.duration, r.justification
    );
    if let Some(p) = &policy {
        text.push_str(&format!("\nSession policy: {p}\n"));
    }
    text.push_str(&format!(
        "\nRequest {} {quorum}.\n\nReview it and approve or deny on this page (your personal link; it works once, until {}):\n\n{link}\n\nOpening the link changes nothing: you decide on the page. If you did not expect this email, ignore it.\n",
        r.request_id,
        time(deadline)
    ));
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body style=\"font-family:system-ui,sans-serif;max-width:40rem\">\
<h1 style=\"font-size:1.3rem\">{title}</h1>\
<p><strong>{who}</strong> asks for <strong>{ent}</strong> in account {acct} for {dur}.</p>\
<p><strong>Justification</strong></p><blockquote style=\"white-space:pre-wrap\">{just}</blockquote>",
        title = html_escape(&subject),
        who = html_escape(r.requester.principal.as_str()),
        ent = html_escape(&r.entitlement),
        acct = r.account,
        dur = r.duration,
        just = html_escape(&r.justification),
    );
    if let Some(p) = &policy {
        html.push_str(&format!(
            "<p><strong>Session policy:</strong> {}</p>",
            html_escape(p)
        ));
    }
    html.push_str(&format!(
        "<p>Request <code>{id}</code> {quorum}.</p>\
<p><a href=\"{href}\" style=\"display:inline-block;padding:.6rem 1rem;background:#1d4ed8;color:#fff;text-decoration:none;border-radius:.3rem\">Review and decide</a></p>\
<p>Your personal link works once, until {deadline}:<br><a href=\"{href}\">{href}</a></p>\
<p style=\"color:#555\">Opening the link changes nothing: you decide on the page. If you did not expect this email, ignore it.</p></body></html>",
        id = r.request_id,
        quorum = html_escape(&quorum),
        href = html_escape(link),
        deadline = time(deadline),
    ));
    Email {
        from: from.to_string(),
        to: to.to_string(),
        subject,
        text,
        html,
    }
}

/// An email as an RFC 5322 message (multipart/alternative), for the local
/// outbox's `.eml` files.
pub fn to_mime(mail: &Email, date: Timestamp) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}{}{}", mail.to, mail.subject, mail.text).as_bytes());
    let boundary: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let boundary = format!("jit-{boundary}");
    let subject = if mail.subject.is_ascii() {
        mail.subject.clone()
    } else {
        format!("=?utf-8?B?{}?=", b64(mail.subject.as_bytes()))
    };
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n\
--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n\
--{boundary}--\r\n",
        from = mail.from,
        to = mail.to,
        date = date.to_rfc2822(),
        text = mail.text.replace('\n', "\r\n"),
        html = mail.html,
    )
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A complete HTML page: small, accessible, no scripts.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta name=\"referrer\" content=\"same-origin\">\n<meta name=\"robots\" content=\"noindex\">\n\
<title>{title} · JIT Access</title>\n<style>\n\
body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#111}}\n\
dl{{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}}dt{{font-weight:600}}dd{{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}}\n\
label{{display:block;font-weight:600;margin-top:1rem}}textarea{{width:100%;min-height:5rem;font:inherit}}\n\
.buttons{{display:flex;gap:1rem;margin-top:1rem}}button{{font:inherit;padding:.6rem 1.2rem;border-radius:.3rem;border:2px solid #111;cursor:pointer}}\n\
button.approve{{background:#166534;color:#fff;border-color:#166534}}button.deny{{background:#fff;color:#991b1b;border-color:#991b1b}}\n\
button:focus{{outline:3px solid #f59e0b;outline-offset:2px}}.note{{color:#444}}\n\
</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        title = html_escape(title),
        body = body
    )
}

/// The confirmation page a signed link opens: details, a reason box,
/// Approve and Deny. The form posts the link's fields back; opening the
/// page changes nothing.
pub fn confirmation_page(
    r: &AccessRequest,
    approvers: &Approvers,
    approver: &str,
    expires_at: Timestamp,
    link_fields: &[(&str, &str)],
) -> String {
    let mut dl = format!(
        "<dt>Requester</dt><dd>{}</dd><dt>Entitlement</dt><dd>{}</dd><dt>Account</dt><dd>{}</dd><dt>Duration</dt><dd>{}</dd><dt>Justification</dt><dd>{}</dd>",
        html_escape(r.requester.principal.as_str()),
        html_escape(&r.entitlement),
        r.account,
        r.duration,
        html_escape(&r.justification)
    );
    if let Some(p) = &r.session_policy {
        dl.push_str(&format!(
            "<dt>Session policy</dt><dd>{}</dd>",
            html_escape(&policy_summary(p))
        ));
    }
    if let Some(q) = quorum_text(r, approvers) {
        dl.push_str(&format!("<dt>Quorum</dt><dd>{}</dd>", html_escape(&q)));
    }
    let so_far = approvers_so_far(r);
    if !so_far.is_empty() {
        dl.push_str(&format!(
            "<dt>Approved so far by</dt><dd>{}</dd>",
            html_escape(&so_far.join(", "))
        ));
    }
    let hidden: String = link_fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                html_escape(k),
                html_escape(v)
            )
        })
        .collect();
    let body = format!(
        "<h1>Approve or deny access</h1>\n\
<p>You are deciding as <strong>{approver}</strong>. This link works once, until {expires}.</p>\n\
<dl>{dl}</dl>\n\
<form method=\"post\" action=\"{id}\">\n{hidden}\n\
<label for=\"reason\">Reason <span class=\"note\">(required to deny; shown to the requester)</span></label>\n\
<textarea id=\"reason\" name=\"reason\" maxlength=\"1000\"></textarea>\n\
<div class=\"buttons\">\n\
<button type=\"submit\" name=\"decision\" value=\"approve\" class=\"approve\" id=\"approve\">Approve</button>\n\
<button type=\"submit\" name=\"decision\" value=\"deny\" class=\"deny\" id=\"deny\">Deny</button>\n\
</div>\n</form>",
        approver = html_escape(approver),
        expires = time(expires_at),
        id = r.request_id,
    );
    page("Approve or deny access", &body)
}

/// The page after a decision or a refusal.
pub fn result_page(heading: &str, message: &str) -> String {
    page(
        heading,
        &format!(
            "<h1 id=\"outcome\">{}</h1>\n<p id=\"message\" role=\"status\">{}</p>",
            html_escape(heading),
            html_escape(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            mrkdwn_escape("<@U1> & <!here>"),
            "&lt;@U1&gt; &amp; &lt;!here&gt;"
        );
        assert_eq!(
            html_escape("<script>\"x\"&'y'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;"
        );
    }

    #[test]
    fn policy_summaries_name_actions() {
        let p = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":"*"},{"Effect":"Deny","Action":"iam:*","Resource":"*"}]}"#;
        assert_eq!(
            policy_summary(p),
            "allows s3:GetObject, s3:ListBucket; 1 deny statement(s)"
        );
        assert!(policy_summary("not json").contains("characters"));
    }

    #[test]
    fn base64_for_mime_subjects() {
        assert_eq!(b64(b"ab"), "YWI=");
        assert_eq!(b64(b"abc"), "YWJj");
        assert_eq!(b64("é".as_bytes()), "w6k=");
    }
}
