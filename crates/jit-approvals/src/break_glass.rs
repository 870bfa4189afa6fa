//! Break-glass, loudly: every self-approved request is announced in the
//! approvers' Slack channel and the catalog's `security_channel` and emailed
//! to every approver; until an approver records a review, the same channels
//! are reminded every `remind_every` of the entitlement's approvers.
//!
//! Level-triggered, like the reminders: [`sweep`] (run by the reminder
//! sweep, every 30 s in `jit-local` and every minute on AWS) finds the
//! break-glass requests awaiting review (`jit_core::break_glass::pending`)
//! and sends what is due. What went where is recorded on the request
//! (`breakGlassNotice`, a guarded write with an audit note), so a channel
//! that failed is tried again at the next sweep and one that got the
//! announcement never gets it twice. The messages carry no link: a review
//! is an API call (`jit review <id> …`), made by a signed-in approver.

use jit_core::break_glass::BreakGlassNotice;
use jit_core::catalog::Approvers;
use jit_core::channels::{ChannelError, ChatMessage, Email};
use jit_core::ports::StoreError;
use jit_core::request::{AuditAction, AuditEvent, Timestamp, system_actor};
use jit_core::{AccessRequest, RequestId};
use serde_json::json;

use crate::notifier::ApprovalNotifier;
use crate::render::{html_escape, mrkdwn_escape};

/// What one break-glass sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BreakGlassReport {
    pub announced: u32,
    pub reminded: u32,
    pub failures: u32,
}

/// The Slack channels a break-glass use goes to: the approvers' and the
/// security channel, each once.
pub fn slack_channels(approvers: &Approvers, security: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for c in approvers
        .slack_channel
        .iter()
        .map(String::as_str)
        .chain(security)
    {
        if !out.iter().any(|x| x == c) {
            out.push(c.to_string());
        }
    }
    out
}

fn headline(r: &AccessRequest, reminder: bool) -> String {
    let incident = r
        .break_glass
        .as_ref()
        .map(|b| b.incident.as_str())
        .unwrap_or("?");
    if reminder {
        format!(
            "Review needed: break-glass by {} on {} ({incident}) is not reviewed yet",
            r.requester.principal, r.entitlement
        )
    } else {
        format!(
            "BREAK-GLASS: {} granted themselves {} for {} ({incident})",
            r.requester.principal, r.entitlement, r.duration
        )
    }
}

fn review_command(r: &AccessRequest) -> String {
    format!(
        "jit review {} --verdict justified|not-justified --reason \"…\"",
        r.request_id
    )
}

/// The Slack message of an announcement or reminder.
pub fn slack_message(r: &AccessRequest, reminder: bool) -> ChatMessage {
    let text = headline(r, reminder);
    let body = format!(
        ":rotating_light: *{}*\n*{}* approved their own request for *{}* in account {} for {} (request `{}`).\n>{}\nAn approver must review it: `{}` (or `POST /requests/{}/review`).",
        mrkdwn_escape(&text),
        mrkdwn_escape(r.requester.principal.as_str()),
        mrkdwn_escape(&r.entitlement),
        r.account,
        r.duration,
        r.request_id,
        mrkdwn_escape(&r.justification).replace('\n', "\n>"),
        review_command(r),
        r.request_id,
    );
    ChatMessage {
        text,
        blocks: json!([{"type": "section", "text": {"type": "mrkdwn", "text": body}}]),
    }
}

/// The email of an announcement or reminder to one approver.
pub fn email(r: &AccessRequest, from: &str, to: &str, reminder: bool) -> Email {
    let subject = headline(r, reminder);
    let text = format!(
        "{who} approved their own request for {ent} in account {acct} for {dur}, without waiting for an approver (break-glass).\n\nJustification:\n{just}\n\nRequest {id}, created {at}.\n\nAs an approver of {ent}, review it: was it justified?\n\n    {cmd}\n\nor POST /requests/{id}/review with {{\"verdict\": \"justified\" | \"not-justified\", \"reason\": \"…\"}}. Reminders continue until someone does.\n",
        who = r.requester.principal,
        ent = r.entitlement,
        acct = r.account,
        dur = r.duration,
        just = r.justification,
        id = r.request_id,
        at = r
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        cmd = review_command(r),
    );
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body style=\"font-family:system-ui,sans-serif;max-width:40rem\">\
<h1 style=\"font-size:1.3rem;color:#b91c1c\">{title}</h1>\
<p><strong>{who}</strong> approved their own request for <strong>{ent}</strong> in account {acct} for {dur}, without waiting for an approver (break-glass).</p>\
<p><strong>Justification</strong></p><blockquote style=\"white-space:pre-wrap\">{just}</blockquote>\
<p>Request <code>{id}</code>. As an approver of {ent}, review it:</p><pre>{cmd}</pre>\
<p style=\"color:#555\">Reminders continue until someone does.</p></body></html>",
        title = html_escape(&subject),
        who = html_escape(r.requester.principal.as_str()),
        ent = html_escape(&r.entitlement),
        acct = r.account,
        dur = r.duration,
        just = html_escape(&r.justification),
        id = r.request_id,
        cmd = html_escape(&review_command(r)),
    );
    Email {
        from: from.to_string(),
        to: to.to_string(),
        subject,
        text,
        html,
    }
}

impl ApprovalNotifier {
    /// Sends one round (announcement or reminder) to the channels not in
    /// `skip`: `(delivered, failed)` channel names.
    async fn break_glass_round(
        &self,
        r: &AccessRequest,
        approvers: &Approvers,
        reminder: bool,
        skip: &[String],
    ) -> (Vec<String>, Vec<(String, ChannelError)>) {
        let (mut delivered, mut failed) = (vec![], vec![]);
        if let Some(chat) = &self.chat {
            let msg = slack_message(r, reminder);
            for channel in slack_channels(approvers, self.catalog.security_channel()) {
                let name = format!("slack:{channel}");
                if skip.contains(&name) {
                    continue;
                }
                match chat.post_message(&channel, &msg).await {
                    Ok(_) => delivered.push(name),
                    Err(e) => failed.push((name, e)),
                }
            }
        }
        if let Some(mail) = &self.mail {
            for to in self.email_recipients(r, approvers) {
                let name = format!("email:{to}");
                if skip.contains(&name) {
                    continue;
                }
                match mail
                    .mailer
                    .send(&email(r, &mail.from, to.as_str(), reminder))
                    .await
                {
                    Ok(()) => delivered.push(name),
                    Err(e) => failed.push((name, e)),
                }
            }
        }
        (delivered, failed)
    }

    /// Writes the break-glass notice (guarded, re-read on a lost race) with
    /// an audit note flagged `break-glass`. Nothing else changes.
    async fn record_break_glass(
        &self,
        id: &RequestId,
        note: &str,
        update: impl Fn(Option<BreakGlassNotice>) -> BreakGlassNotice,
    ) -> Result<(), StoreError> {
        let mut last = StoreError::Conflict { current: None };
        for _ in 0..5 {
            let r = self
                .store
                .get(id)
                .await?
                .ok_or(StoreError::NotFound(id.clone()))?;
            let now = self.clock.now();
            let mut next = r.clone();
            next.break_glass_notice = Some(update(r.break_glass_notice.clone()));
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
                Ok(()) => return Ok(()),
                Err(e @ StoreError::Conflict { .. }) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Announces a break-glass request (or finishes an announcement some
    /// channel of which failed), or reminds its reviewers when one is due.
    /// `Ok(None)`: nothing was due.
    pub async fn break_glass_due(
        &self,
        r: &AccessRequest,
        now: Timestamp,
    ) -> Result<Option<bool>, String> {
        let Some(e) = self.catalog.get(&r.entitlement) else {
            return Ok(None);
        };
        let approvers = e.approvers.clone();
        let (reminder, round, skip) = match &r.break_glass_notice {
            // Not announced yet, or some channel of the announcement failed.
            None => (false, 0, vec![]),
            Some(n) if n.round == 0 && !n.failed.is_empty() => (false, 0, n.delivered.clone()),
            Some(n) => {
                let due = n.last_at + chrono::Duration::seconds(approvers.remind_every_secs as i64);
                if now < due {
                    return Ok(None);
                }
                (true, n.round + 1, vec![])
            }
        };
        let (delivered, failed) = self.break_glass_round(r, &approvers, reminder, &skip).await;
        for (name, err) in &failed {
            tracing::warn!(request_id = %r.request_id, channel = %name, error = %err, "a break-glass notification channel failed");
        }
        if delivered.is_empty() && failed.is_empty() && skip.is_empty() {
            // No channel configured: say so once, on the announcement.
            if reminder {
                return Ok(None);
            }
        }
        let what = if reminder {
            format!("break-glass review reminder {round}")
        } else {
            "break-glass announced".to_string()
        };
        let mut note = match (delivered.is_empty(), failed.is_empty()) {
            (true, true) if skip.is_empty() => format!(
                "{what}: no channel is configured (no Slack channel or approver email, or no Slack token / mail sender); approvers see it with GET /requests?review=pending"
            ),
            _ => format!("{what}: {}", delivered.join(", ")),
        };
        if !failed.is_empty() {
            let f: Vec<String> = failed.iter().map(|(n, e)| format!("{n} ({e})")).collect();
            note.push_str(&format!("; failed: {}", f.join(", ")));
        }
        let failed_names: Vec<String> = failed.iter().map(|(n, _)| n.clone()).collect();
        self.record_break_glass(&r.request_id, &note, |prev| {
            let mut all = match (&prev, reminder) {
                (Some(p), false) => p.delivered.clone(),
                _ => vec![],
            };
            all.extend(delivered.iter().cloned());
            BreakGlassNotice {
                round,
                last_at: now,
                delivered: all,
                failed: failed_names.clone(),
            }
        })
        .await
        .map_err(|e| format!("recording the break-glass notice: {e}"))?;
        Ok(Some(reminder))
    }
}

/// Announces new break-glass requests and reminds the reviewers of those
/// still unreviewed (see the module's documentation).
pub async fn sweep(n: &ApprovalNotifier) -> Result<BreakGlassReport, StoreError> {
    let mut report = BreakGlassReport::default();
    let now = n.clock.now();
    for r in jit_core::break_glass::pending(n.store.as_ref(), &n.catalog, now).await? {
        match n.break_glass_due(&r, now).await {
            Ok(None) => {}
            Ok(Some(false)) => report.announced += 1,
            Ok(Some(true)) => report.reminded += 1,
            Err(e) => {
                report.failures += 1;
                tracing::warn!(request_id = %r.request_id, error = %e, "break-glass notification failed");
            }
        }
    }
    Ok(report)
}
