//! Extensions announced like requests: a Slack message in the
//! entitlement's approval channel, updated in place as decisions arrive,
//! and one email per approver with a personal signed link to the
//! extension's own confirmation page (`/approvals/{id}/extension/{n}`,
//! single use, until the extension's window ends). Reminders every
//! `remind_every` (at most `max_reminders`), and the extension's window
//! (the entitlement's `approval_timeout` from the ask) ends it `TIMED_OUT`.
//!
//! Level-triggered like the reminders: [`sweep`] (run by the reminder
//! sweep) looks at the GRANTED requests, announces a pending extension
//! nobody was told of, reminds, times out, and shows outcomes decided
//! elsewhere (the REST API, a link, a timeout) on the Slack message. What
//! went where is the extension's `notice` (internal), written with a
//! guarded same-status write and an audit note.

use jit_core::catalog::Approvers;
use jit_core::channels::{ChatMessage, NoticeState};
use jit_core::extension::{Extension, ExtensionStatus};
use jit_core::links::LinkClaims;
use jit_core::ports::{PageRequest, StoreError};
use jit_core::request::{AuditAction, AuditEvent, Timestamp, system_actor};
use jit_core::{AccessRequest, Principal, RequestId, Status};
use serde_json::json;

use crate::notifier::ApprovalNotifier;
use crate::render::{html_escape, mrkdwn_escape, page};

/// What one extension sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExtensionReport {
    pub announced: u32,
    pub reminded: u32,
    pub timed_out: u32,
    pub outcomes_shown: u32,
    pub failures: u32,
}

fn human_secs(secs: u32) -> String {
    jit_core::GrantDuration::from_secs(secs as u64)
        .map(|d| d.to_string())
        .unwrap_or_else(|_| format!("{secs}s"))
}

fn status_word(x: &Extension) -> &'static str {
    match x.status {
        ExtensionStatus::Pending => "Waiting for a decision",
        ExtensionStatus::Approved => "Approved",
        ExtensionStatus::Denied => "Denied",
        ExtensionStatus::Lapsed => "Lapsed (the grant ended first)",
        ExtensionStatus::TimedOut => "Timed out (nobody decided)",
    }
}

/// The extension's Slack message: who asks for how much more on what, why,
/// and where it stands (decisions so far, or the outcome).
pub fn slack_message(r: &AccessRequest, x: &Extension) -> ChatMessage {
    let text = format!(
        "Extension: {} asks for {} more on {} ({})",
        r.requester.principal,
        human_secs(x.duration_secs),
        r.entitlement,
        status_word(x)
    );
    let mut lines = vec![format!(
        "*{}* asks for *{}* more on *{}* (request `{}`).\n>{}",
        mrkdwn_escape(r.requester.principal.as_str()),
        human_secs(x.duration_secs),
        mrkdwn_escape(&r.entitlement),
        r.request_id,
        mrkdwn_escape(&x.reason).replace('\n', "\n>")
    )];
    for d in &x.decisions {
        lines.push(format!(
            "{} by {}{}",
            match d.verdict {
                jit_core::request::Verdict::Approve => "Approved",
                jit_core::request::Verdict::Deny => "Denied",
            },
            mrkdwn_escape(d.approver.as_str()),
            d.reason
                .as_deref()
                .map(|r| format!(": {}", mrkdwn_escape(r)))
                .unwrap_or_default()
        ));
    }
    lines.push(format!("*{}*", status_word(x)));
    if x.status == ExtensionStatus::Pending {
        lines.push(format!(
            "Approvers: use the link in your email, or `jit approve {} --extension`.",
            r.request_id
        ));
    }
    ChatMessage {
        text,
        blocks: json!([{"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n")}}]),
    }
}

/// One approver's email: the extension and their personal link.
pub fn email(
    r: &AccessRequest,
    x: &Extension,
    link: &str,
    deadline: Timestamp,
    from: &str,
    to: &str,
    reminder: bool,
) -> jit_core::channels::Email {
    let prefix = if reminder { "Reminder: " } else { "" };
    let subject = format!(
        "{prefix}Extension needed: {} asks for {} more on {}",
        r.requester.principal,
        human_secs(x.duration_secs),
        r.entitlement
    );
    let until = deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = format!(
        "{} asks for {} more on {} (request {}).\n\nReason:\n{}\n\nDecide on this page (your personal link; it works once, until {until}):\n\n{link}\n\nOpening the link changes nothing: you decide on the page. It decides this extension only.\n",
        r.requester.principal,
        human_secs(x.duration_secs),
        r.entitlement,
        r.request_id,
        x.reason
    );
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head><body style=\"font-family:system-ui,sans-serif;max-width:40rem\"><h1 style=\"font-size:1.3rem\">{t}</h1><p><strong>{who}</strong> asks for <strong>{more}</strong> more on <strong>{ent}</strong> (request <code>{id}</code>).</p><p><strong>Reason</strong></p><blockquote style=\"white-space:pre-wrap\">{why}</blockquote><p><a href=\"{href}\">Review and decide</a></p><p>Your personal link works once, until {until}:<br><a href=\"{href}\">{href}</a></p></body></html>",
        t = html_escape(&subject),
        who = html_escape(r.requester.principal.as_str()),
        more = human_secs(x.duration_secs),
        ent = html_escape(&r.entitlement),
        id = r.request_id,
        why = html_escape(&x.reason),
        href = html_escape(link),
    );
    jit_core::channels::Email {
        from: from.to_string(),
        to: to.to_string(),
        subject,
        text,
        html,
    }
}

/// The page an extension link opens: the extension, a reason box,
/// Approve and Deny; the form posts the link's fields back.
pub fn confirmation_page(
    r: &AccessRequest,
    x: &Extension,
    index: usize,
    approver: &str,
    expires_at: Timestamp,
    link_fields: &[(&str, &str)],
) -> String {
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
        "<h1>Approve or deny an extension</h1>\n\
<p>You are deciding as <strong>{approver}</strong>, on this extension only. This link works once, until {expires}.</p>\n\
<dl><dt>Requester</dt><dd>{who}</dd><dt>Entitlement</dt><dd>{ent}</dd><dt>Asks for</dt><dd>{more} more</dd><dt>Now expires</dt><dd>{exp}</dd><dt>Reason</dt><dd>{why}</dd></dl>\n\
<form method=\"post\" action=\"{index}\">\n{hidden}\n\
<label for=\"reason\">Reason <span class=\"note\">(required to deny; shown to the requester)</span></label>\n\
<textarea id=\"reason\" name=\"reason\" maxlength=\"1000\"></textarea>\n\
<div class=\"buttons\">\n\
<button type=\"submit\" name=\"decision\" value=\"approve\" class=\"approve\" id=\"approve\">Approve</button>\n\
<button type=\"submit\" name=\"decision\" value=\"deny\" class=\"deny\" id=\"deny\">Deny</button>\n\
</div>\n</form>",
        approver = html_escape(approver),
        expires = expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        who = html_escape(r.requester.principal.as_str()),
        ent = html_escape(&r.entitlement),
        more = human_secs(x.duration_secs),
        exp = r
            .expires_at
            .map(|e| e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default(),
        why = html_escape(&x.reason),
    );
    page("Approve or deny an extension", &body)
}

impl ApprovalNotifier {
    /// A personal, single-use link to the extension's confirmation page.
    pub fn extension_link(
        &self,
        id: &RequestId,
        index: usize,
        approver: &Principal,
        deadline: Timestamp,
    ) -> String {
        let claims = LinkClaims::new(id.clone(), approver.clone(), deadline);
        format!(
            "{}/approvals/{}/extension/{index}?{}",
            self.public_url.trim_end_matches('/'),
            id,
            self.links.sign_extension(&claims, index)
        )
    }

    /// Writes the notice of the extension at `index` (guarded, re-read on a
    /// lost race) with an audit note. Nothing else changes.
    async fn record_extension(
        &self,
        id: &RequestId,
        index: usize,
        note: &str,
        update: impl Fn(Option<NoticeState>) -> NoticeState,
    ) -> Result<AccessRequest, StoreError> {
        let mut last = StoreError::Conflict { current: None };
        for _ in 0..5 {
            let r = self
                .store
                .get(id)
                .await?
                .ok_or(StoreError::NotFound(id.clone()))?;
            let Some(x) = r.extensions.get(index) else {
                return Err(StoreError::NotFound(id.clone()));
            };
            let now = self.clock.now();
            let mut next = r.clone();
            next.extensions[index].notice = Some(update(x.notice.clone()));
            next.version += 1;
            next.updated_at = now;
            let event = AuditEvent::new(
                id,
                now,
                system_actor("notifier"),
                AuditAction::Note,
                None,
                None,
                Some(note.to_string()),
                "notifier",
            );
            match self.store.transition(&r, &next, &event).await {
                Ok(()) => return Ok(next),
                Err(e @ StoreError::Conflict { .. }) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Tells the approvers of a pending extension (round 0) or reminds them:
    /// Slack (first round: a new message; later: the same one, updated) and
    /// an email with a fresh personal link each.
    async fn tell_extension(
        &self,
        r: &AccessRequest,
        index: usize,
        approvers: &Approvers,
        deadline: Timestamp,
    ) -> Result<(), String> {
        let x = &r.extensions[index];
        let prev = x.notice.clone();
        let reminder = prev.is_some();
        let (mut delivered, mut failed) = (vec![], vec![]);
        let mut slack = prev.as_ref().and_then(|n| n.slack.clone());
        if let (Some(chat), Some(channel)) = (&self.chat, &approvers.slack_channel) {
            let msg = slack_message(r, x);
            let name = format!("slack:{channel}");
            let sent = match &slack {
                Some(at) => chat.update_message(at, &msg).await.map(|()| at.clone()),
                None => chat.post_message(channel, &msg).await,
            };
            match sent {
                Ok(at) => {
                    delivered.push(name);
                    slack = Some(at);
                }
                Err(e) => failed.push(format!("{name} ({e})")),
            }
        }
        if let Some(mail) = &self.mail {
            for to in self.email_recipients(r, approvers) {
                let name = format!("email:{to}");
                let link = self.extension_link(&r.request_id, index, &to, deadline);
                let m = email(r, x, &link, deadline, &mail.from, to.as_str(), reminder);
                match mail.mailer.send(&m).await {
                    Ok(()) => delivered.push(name),
                    Err(e) => failed.push(format!("{name} ({e})")),
                }
            }
        }
        let round = prev.as_ref().map_or(0, |n| n.round + 1);
        let now = self.clock.now();
        let note = format!(
            "extension {} {}: {}{}",
            index + 1,
            if reminder {
                format!("reminder {round} sent")
            } else {
                "announced".into()
            },
            if delivered.is_empty() {
                "no channel".to_string()
            } else {
                delivered.join(", ")
            },
            if failed.is_empty() {
                String::new()
            } else {
                format!("; failed: {}", failed.join(", "))
            }
        );
        self.record_extension(&r.request_id, index, &note, |_| NoticeState {
            round,
            last_at: now,
            deadline,
            delivered: delivered.clone(),
            failed: failed.clone(),
            slack: slack.clone(),
            closed: false,
        })
        .await
        .map_err(|e| format!("recording the extension notice: {e}"))?;
        Ok(())
    }

    /// Shows where the newest extension of a request stands on its Slack
    /// message; once it is decided (or lapsed, or timed out), the message
    /// is closed. Reads the stored record.
    pub async fn show_extension(&self, id: &RequestId) -> Result<bool, String> {
        let Some(chat) = &self.chat else {
            return Ok(false);
        };
        let r = self
            .store
            .get(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no request {id}"))?;
        let Some(index) = r.extensions.len().checked_sub(1) else {
            return Ok(false);
        };
        let x = &r.extensions[index];
        let Some(n) = x.notice.clone() else {
            return Ok(false);
        };
        let (Some(at), false) = (&n.slack, n.closed) else {
            return Ok(false);
        };
        chat.update_message(at, &slack_message(&r, x))
            .await
            .map_err(|e| e.to_string())?;
        if x.status != ExtensionStatus::Pending {
            self.record_extension(
                id,
                index,
                &format!(
                    "extension {} message updated: {}",
                    index + 1,
                    status_word(x)
                ),
                |prev| {
                    let mut n = prev.unwrap_or_else(|| n.clone());
                    n.closed = true;
                    n
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        }
        Ok(true)
    }
}

/// Announces, reminds, times out and shows outcomes of extensions (see the
/// module's documentation).
pub async fn sweep(n: &ApprovalNotifier) -> Result<ExtensionReport, StoreError> {
    let mut report = ExtensionReport::default();
    let now = n.clock.now();
    let mut cursor = None;
    let mut seen = Vec::new();
    loop {
        let page = n
            .store
            .list_by_status(
                Status::Granted,
                &PageRequest {
                    limit: PageRequest::MAX_LIMIT,
                    cursor: cursor.take(),
                },
            )
            .await?;
        seen.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    // Recently ended grants may leave a lapsed extension's message open.
    for status in [Status::Expired, Status::Revoked] {
        let page = n
            .store
            .list_by_status(status, &PageRequest::first(50))
            .await?;
        seen.extend(page.items);
    }
    for r in seen {
        let (Some(index), Some(e)) = (
            r.extensions.len().checked_sub(1),
            n.catalog.get(&r.entitlement),
        ) else {
            continue;
        };
        let x = &r.extensions[index];
        let deadline = jit_core::extension_links::deadline(x, e.approval_timeout_secs);
        let result =
            if x.status == ExtensionStatus::Pending && r.effective_status(now) == Status::Granted {
                if now >= deadline {
                    match jit_core::extension_links::time_out(
                        n.store.as_ref(),
                        &r,
                        e.approval_timeout_secs,
                        now,
                    )
                    .await
                    {
                        Ok(Some(_)) => {
                            report.timed_out += 1;
                            n.show_extension(&r.request_id).await.map(|_| ())
                        }
                        Ok(None) => Ok(()),
                        Err(err) => Err(err.to_string()),
                    }
                } else {
                    match &x.notice {
                        None => {
                            report.announced += 1;
                            n.tell_extension(&r, index, &e.approvers, deadline).await
                        }
                        Some(s)
                            if s.round < e.approvers.max_reminders
                                && now
                                    >= s.last_at
                                        + chrono::Duration::seconds(
                                            e.approvers.remind_every_secs as i64,
                                        ) =>
                        {
                            report.reminded += 1;
                            n.tell_extension(&r, index, &e.approvers, deadline).await
                        }
                        Some(_) => Ok(()),
                    }
                }
            } else if x
                .notice
                .as_ref()
                .is_some_and(|s| s.slack.is_some() && !s.closed)
            {
                match n.show_extension(&r.request_id).await {
                    Ok(true) => {
                        report.outcomes_shown += 1;
                        Ok(())
                    }
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                }
            } else {
                Ok(())
            };
        if let Err(e) = result {
            report.failures += 1;
            tracing::warn!(request_id = %r.request_id, error = %e, "extension notification failed");
        }
    }
    Ok(report)
}
