//! The approval notifier: tells a waiting request's approvers in Slack (one
//! message in the entitlement's channel, with buttons) and by email (one
//! message per approver, each with that approver's own signed link), records
//! what went where on the request, reminds, and updates the Slack message
//! once the request is decided.
//!
//! A failing channel does not stop the other: each failure is an audit
//! event. Only when *no* channel got through does the step fail — with
//! `Transient` when retrying may help, so the definition's Retry covers it
//! (a retry skips the channels already told in this round, so nobody gets
//! the same notice twice). A channel that failed while another got through
//! is tried again with the next reminder.

use std::sync::Arc;

use async_trait::async_trait;
use jit_core::catalog::Approvers;
use jit_core::channels::{ChannelError, ChatApi, ChatMessageRef, Mailer, NoticeState};
use jit_core::links::{LinkClaims, LinkKey};
use jit_core::ports::{ApprovalNotice, Clock, Notifier, NotifyError, RequestStore, StoreError};
use jit_core::request::{AuditAction, AuditEvent, Timestamp, system_actor};
use jit_core::{AccessRequest, Catalog, Principal, RequestId, Status};

use crate::render;

/// Email settings: the mailer and the verified sender address.
#[derive(Clone)]
pub struct MailSettings {
    pub mailer: Arc<dyn Mailer>,
    pub from: String,
}

/// The notifier's dependencies, built once at start.
#[derive(Clone)]
pub struct ApprovalNotifier {
    pub store: Arc<dyn RequestStore>,
    pub catalog: Arc<Catalog>,
    pub clock: Arc<dyn Clock>,
    pub links: LinkKey,
    /// Where approval links point: the API's base URL (with the stage on
    /// API Gateway), e.g. `https://abc.execute-api.eu-west-1.amazonaws.com/Prod`.
    pub public_url: String,
    pub chat: Option<Arc<dyn ChatApi>>,
    pub mail: Option<MailSettings>,
}

/// What one round of sending did.
#[derive(Debug, Default)]
struct RoundResult {
    delivered: Vec<String>,
    failed: Vec<(String, ChannelError)>,
    slack: Option<ChatMessageRef>,
}

fn channel_name(kind: &str, target: &str) -> String {
    format!("{kind}:{target}")
}

impl ApprovalNotifier {
    /// A personal, single-use link to the confirmation page.
    pub fn approval_link(
        &self,
        id: &RequestId,
        approver: &Principal,
        deadline: Timestamp,
    ) -> String {
        let claims = LinkClaims::new(id.clone(), approver.clone(), deadline);
        format!(
            "{}/approvals/{}?{}",
            self.public_url.trim_end_matches('/'),
            id,
            self.links.sign(&claims)
        )
    }

    /// Who gets an email: the listed addresses, the catalog's members of the
    /// approver groups and the mapped Slack approvers that are addresses —
    /// never the requester, each once.
    pub fn email_recipients(&self, r: &AccessRequest, a: &Approvers) -> Vec<Principal> {
        let mut out: Vec<Principal> = vec![];
        let candidates = a
            .emails
            .iter()
            .cloned()
            .chain(
                a.groups
                    .iter()
                    .flat_map(|g| self.catalog.members_of(g).iter().cloned()),
            )
            .chain(
                a.slack_users
                    .iter()
                    .filter_map(|u| self.catalog.slack_principal(u).cloned()),
            );
        for p in candidates {
            if p.as_str().contains('@') && p != r.requester.principal && !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    async fn send_round(
        &self,
        r: &AccessRequest,
        approvers: &Approvers,
        deadline: Timestamp,
        reminder: bool,
        skip: &[String],
    ) -> RoundResult {
        let mut res = RoundResult::default();
        let now = self.clock.now();
        if let (Some(chat), Some(channel)) = (&self.chat, &approvers.slack_channel) {
            let name = channel_name("slack", channel);
            if !skip.contains(&name) {
                let msg = render::slack_message(r, approvers, deadline, now);
                match chat.post_message(channel, &msg).await {
                    Ok(at) => {
                        res.delivered.push(name);
                        res.slack = Some(at);
                    }
                    Err(e) => res.failed.push((name, e)),
                }
            }
        }
        if let Some(mail) = &self.mail {
            for to in self.email_recipients(r, approvers) {
                let name = channel_name("email", to.as_str());
                if skip.contains(&name) {
                    continue;
                }
                let link = self.approval_link(&r.request_id, &to, deadline);
                let email = render::approval_email(
                    r,
                    approvers,
                    deadline,
                    &link,
                    &mail.from,
                    to.as_str(),
                    reminder,
                );
                match mail.mailer.send(&email).await {
                    Ok(()) => res.delivered.push(name),
                    Err(e) => res.failed.push((name, e)),
                }
            }
        }
        res
    }

    async fn audit(&self, id: &RequestId, reason: String) -> Result<(), StoreError> {
        let event = AuditEvent::new(
            id,
            self.clock.now(),
            system_actor("notifier"),
            AuditAction::Note,
            None,
            None,
            Some(reason),
            "notifier",
        );
        self.store.append_audit(&event).await
    }

    /// Writes the notice state (guarded, re-read on a lost race) with one
    /// audit note. The status is never changed here.
    async fn record(
        &self,
        id: &RequestId,
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
            let now = self.clock.now();
            let mut next = r.clone();
            next.notice = Some(update(r.notice.clone()));
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

    async fn audit_failures(&self, id: &RequestId, res: &RoundResult, what: &str) {
        for (name, e) in &res.failed {
            tracing::warn!(request_id = %id, channel = %name, error = %e, "a notification channel failed");
            if let Err(err) = self
                .audit(id, format!("{what} via {name} failed: {e}"))
                .await
            {
                tracing::error!(request_id = %id, error = %err, "could not audit a notification failure");
            }
        }
    }

    fn approvers_of(&self, r: &AccessRequest) -> Option<Approvers> {
        self.catalog
            .get(&r.entitlement)
            .map(|e| e.approvers.clone())
    }

    /// Sends a reminder round (a new Slack message replacing the previous
    /// one's buttons, new emails with fresh links). The sweep calls it.
    pub async fn remind(&self, r: &AccessRequest) -> Result<(), NotifyError> {
        let (Some(n), Some(approvers)) = (r.notice.clone(), self.approvers_of(r)) else {
            return Ok(());
        };
        let res = self.send_round(r, &approvers, n.deadline, true, &[]).await;
        self.audit_failures(&r.request_id, &res, "reminder").await;
        let round = n.round + 1;
        let now = self.clock.now();
        let note = format!(
            "reminder {round} sent{}",
            describe(&res.delivered)
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
        let new_slack = res.slack.clone();
        let delivered = res.delivered.clone();
        let failed: Vec<String> = res.failed.iter().map(|(n, _)| n.clone()).collect();
        self.record(&r.request_id, &note, |prev| {
            let prev_slack = prev.and_then(|p| p.slack);
            NoticeState {
                round,
                last_at: now,
                deadline: n.deadline,
                delivered: delivered.clone(),
                failed: failed.clone(),
                slack: new_slack.clone().or(prev_slack),
                closed: false,
            }
        })
        .await
        .map_err(|e| NotifyError::Transient(format!("recording the reminder: {e}")))?;
        // The older message loses its buttons: one live message per request.
        if let (Some(chat), Some(old), Some(_)) = (&self.chat, &n.slack, &res.slack)
            && let Err(e) = chat
                .update_message(old, &render::superseded_message(r))
                .await
        {
            tracing::warn!(request_id = %r.request_id, error = %e, "could not update the superseded Slack message");
        }
        if res.delivered.is_empty() && !res.failed.is_empty() {
            return Err(failure(&res));
        }
        Ok(())
    }

    /// Shows a decision (or the end of the wait) on the Slack message: who,
    /// when, the outcome; the buttons go once nothing is left to decide.
    /// Reads the stored record, so any caller may pass a stale copy.
    pub async fn show_outcome(&self, id: &RequestId) -> Result<(), NotifyError> {
        let Some(chat) = &self.chat else {
            return Ok(());
        };
        let r = self
            .store
            .get(id)
            .await
            .map_err(|e| NotifyError::Transient(e.to_string()))?
            .ok_or_else(|| NotifyError::Failed(format!("no request {id}")))?;
        let (Some(n), Some(approvers)) = (r.notice.clone(), self.approvers_of(&r)) else {
            return Ok(());
        };
        let Some(at) = &n.slack else {
            return Ok(());
        };
        if n.closed {
            return Ok(());
        }
        let now = self.clock.now();
        let msg = render::slack_message(&r, &approvers, n.deadline, now);
        if let Err(e) = chat.update_message(at, &msg).await {
            let _ = self
                .audit(id, format!("updating the Slack message failed: {e}"))
                .await;
            return Err(match e {
                ChannelError::Transient(m) => NotifyError::Transient(m),
                ChannelError::Failed(m) => NotifyError::Failed(m),
            });
        }
        // Once the request has left APPROVAL_PENDING nothing more will
        // change on the message: record that it shows the outcome.
        let status = r.effective_status(now);
        // APPROVED is decided but not final: the message changes once more
        // when the grant is recorded.
        if !matches!(status, Status::ApprovalPending | Status::Approved) {
            self.record(id, &format!("approval message updated: {status}"), |prev| {
                let mut n = prev.unwrap_or_else(|| n.clone());
                n.closed = true;
                n
            })
            .await
            .map_err(|e| NotifyError::Transient(format!("recording the update: {e}")))?;
        }
        Ok(())
    }
}

fn describe(names: &[String]) -> Option<String> {
    (!names.is_empty()).then(|| names.join(", "))
}

fn failure(res: &RoundResult) -> NotifyError {
    let text = res
        .failed
        .iter()
        .map(|(n, e)| format!("{n}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    if res.failed.iter().any(|(_, e)| e.is_transient()) {
        NotifyError::Transient(text)
    } else {
        NotifyError::Failed(text)
    }
}

#[async_trait]
impl Notifier for ApprovalNotifier {
    async fn approval_requested(&self, notice: &ApprovalNotice) -> Result<(), NotifyError> {
        let id = &notice.request.request_id;
        let stored = self
            .store
            .get(id)
            .await
            .map_err(|e| NotifyError::Transient(e.to_string()))?;
        let prev = stored.as_ref().and_then(|r| r.notice.clone());
        // A retried step keeps the first round's deadline and skips the
        // channels that round already reached.
        let (deadline, skip) = match &prev {
            Some(n) if n.round == 0 => (n.deadline, n.delivered.clone()),
            _ => (notice.deadline, vec![]),
        };
        let res = self
            .send_round(&notice.request, &notice.approvers, deadline, false, &skip)
            .await;
        self.audit_failures(id, &res, "approval notice").await;
        if res.delivered.is_empty() && res.failed.is_empty() {
            if skip.is_empty() {
                let note = "no channel is configured to tell the approvers (no Slack channel or approver email, or no Slack token / mail sender); they can decide through the API";
                tracing::warn!(request_id = %id, "{note}");
                self.audit(id, note.into())
                    .await
                    .map_err(|e| NotifyError::Transient(e.to_string()))?;
            }
            return Ok(());
        }
        let now = self.clock.now();
        let note = match describe(&res.delivered) {
            Some(d) => format!("approvers notified: {d}"),
            None => "notifying approvers failed on every channel".to_string(),
        };
        let (delivered, failed, slack) = (
            res.delivered.clone(),
            res.failed
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>(),
            res.slack.clone(),
        );
        let recorded = self
            .record(id, &note, |prev| {
                let mut all = match &prev {
                    Some(p) if p.round == 0 => p.delivered.clone(),
                    _ => vec![],
                };
                all.extend(delivered.iter().cloned());
                NoticeState {
                    round: 0,
                    last_at: now,
                    deadline,
                    delivered: all,
                    failed: failed.clone(),
                    slack: slack.clone().or(prev.and_then(|p| p.slack)),
                    closed: false,
                }
            })
            .await
            .map_err(|e| NotifyError::Transient(format!("recording the notice: {e}")))?;
        let told = !recorded
            .notice
            .as_ref()
            .is_some_and(|n| n.delivered.is_empty());
        if !told {
            return Err(failure(&res));
        }
        // Decided while we were posting: show it on the message right away.
        if recorded.status != Status::ApprovalPending
            && let Err(e) = self.show_outcome(id).await
        {
            tracing::warn!(request_id = %id, error = %e, "could not show the outcome on the Slack message");
        }
        Ok(())
    }

    async fn decided(&self, request: &AccessRequest) -> Result<(), NotifyError> {
        self.show_outcome(&request.request_id).await
    }
}
