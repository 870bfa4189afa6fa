//! The local notifier: approvers are "told" on the console and in
//! `<data-dir>/outbox/notifications.jsonl`, one JSON object per line. Slack
//! and email arrive with the approvals issue.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use jit_core::AccessRequest;
use jit_core::ports::{ApprovalNotice, Notifier, NotifyError};
use serde_json::json;

pub struct OutboxNotifier {
    file: PathBuf,
    lock: Mutex<()>,
    print: bool,
}

impl OutboxNotifier {
    pub fn open(dir: PathBuf, print: bool) -> std::io::Result<Self> {
        crate::private_fs::dir(&dir)?;
        Ok(OutboxNotifier {
            file: dir.join("notifications.jsonl"),
            lock: Mutex::new(()),
            print,
        })
    }

    fn write(&self, line: serde_json::Value) -> Result<(), NotifyError> {
        let _g = self.lock.lock().expect("outbox lock");
        let mut f = crate::private_fs::open(
            &self.file,
            crate::private_fs::options().create(true).append(true),
        )
        .map_err(|e| NotifyError::Transient(format!("{}: {e}", self.file.display())))?;
        writeln!(f, "{line}")
            .map_err(|e| NotifyError::Transient(format!("{}: {e}", self.file.display())))
    }
}

#[async_trait]
impl Notifier for OutboxNotifier {
    async fn approval_requested(&self, n: &ApprovalNotice) -> Result<(), NotifyError> {
        let r = &n.request;
        if self.print {
            println!(
                "[approval needed] {} asks for {} ({}) for {} — \"{}\"; approvers: {}; decide by {}: POST /requests/{}/approve",
                r.requester.principal,
                r.entitlement,
                r.account,
                r.duration,
                r.justification,
                describe_approvers(n),
                n.deadline
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                r.request_id
            );
        }
        self.write(json!({
            "kind": "approval-requested",
            "requestId": r.request_id,
            "requester": r.requester.principal,
            "entitlement": r.entitlement,
            "durationSeconds": r.duration.secs(),
            "justification": r.justification,
            "approverEmails": n.approvers.emails,
            "approverGroups": n.approvers.groups,
            "slackChannel": n.approvers.slack_channel,
            "deadline": n.deadline,
        }))
    }

    async fn decided(&self, r: &AccessRequest) -> Result<(), NotifyError> {
        if self.print {
            println!("[decided] request {} is {}", r.request_id, r.status);
        }
        self.write(json!({ "kind": "decided", "requestId": r.request_id, "status": r.status, "decisions": r.decisions }))
    }
}

fn describe_approvers(n: &ApprovalNotice) -> String {
    let mut parts: Vec<String> = n.approvers.emails.iter().map(|e| e.to_string()).collect();
    parts.extend(n.approvers.groups.iter().map(|g| format!("group {g}")));
    if parts.is_empty() {
        "(none configured)".into()
    } else {
        parts.join(", ")
    }
}
