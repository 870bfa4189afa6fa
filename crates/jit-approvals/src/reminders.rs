//! The reminder sweep: run every minute or so (an EventBridge schedule on
//! the `slack-notify` Lambda; a timer in `jit-local`), it reminds the
//! approvers of requests nobody decided after the entitlement's
//! `remind_every` (default 15 minutes, at most `max_reminders` times, never
//! after the approval window), and, as a backstop, shows the outcome on
//! Slack messages of recently decided requests that still show buttons
//! (a decision made through the REST API, a cancel, a timeout).
//!
//! It works the same on Step Functions and on the local engine because it
//! touches neither: it reads the store and calls the notifier.

use jit_core::Status;
use jit_core::ports::{PageRequest, StoreError};

use crate::notifier::ApprovalNotifier;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub reminded: u32,
    pub outcomes_shown: u32,
    pub failures: u32,
    /// Break-glass announcements and review reminders (`break_glass::sweep`).
    pub break_glass: crate::break_glass::BreakGlassReport,
    /// Extensions announced, reminded, timed out (`extensions::sweep`).
    pub extensions: crate::extensions::ExtensionReport,
}

/// Statuses whose recent requests may still show an open Slack message.
const DECIDED: [Status; 6] = [
    Status::Approved,
    Status::Granted,
    Status::Denied,
    Status::Cancelled,
    Status::ApprovalTimedOut,
    Status::Failed,
];

/// How many of the newest decided requests per status the backstop looks at.
const BACKSTOP_PAGE: u32 = 50;

pub async fn sweep(n: &ApprovalNotifier) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    let now = n.clock.now();
    let mut cursor = None;
    loop {
        let page = n
            .store
            .list_by_status(
                Status::ApprovalPending,
                &PageRequest {
                    limit: PageRequest::MAX_LIMIT,
                    cursor: cursor.take(),
                },
            )
            .await?;
        for r in &page.items {
            let (Some(state), Some(e)) = (&r.notice, n.catalog.get(&r.entitlement)) else {
                continue;
            };
            let due =
                state.last_at + chrono::Duration::seconds(e.approvers.remind_every_secs as i64);
            if now < state.deadline && now >= due && state.round < e.approvers.max_reminders {
                match n.remind(r).await {
                    Ok(()) => report.reminded += 1,
                    Err(err) => {
                        report.failures += 1;
                        tracing::warn!(request_id = %r.request_id, error = %err, "reminder failed");
                    }
                }
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    for status in DECIDED {
        let page = n
            .store
            .list_by_status(status, &PageRequest::first(BACKSTOP_PAGE))
            .await?;
        for r in page.items {
            let open = r
                .notice
                .as_ref()
                .is_some_and(|s| s.slack.is_some() && !s.closed);
            if !open {
                continue;
            }
            match n.show_outcome(&r.request_id).await {
                Ok(()) => report.outcomes_shown += 1,
                Err(err) => {
                    report.failures += 1;
                    tracing::warn!(request_id = %r.request_id, error = %err, "could not show an outcome");
                }
            }
        }
    }
    report.break_glass = crate::break_glass::sweep(n).await?;
    report.extensions = crate::extensions::sweep(n).await?;
    Ok(report)
}
