//! Approvers where they work: Slack and email.
//!
//! - [`notifier::ApprovalNotifier`] — the `Notifier` the approval step uses:
//!   a Block Kit message in the entitlement's Slack channel and one email
//!   per approver with a personal signed link; what went where is recorded
//!   on the request; failures are audit events; reminders; the message is
//!   updated in place after the decision.
//! - [`reminders::sweep`] — re-notifies undecided requests.
//! - [`break_glass`] — announces break-glass uses and reminds their
//!   reviewers until one records a review (run by the same sweep).
//! - [`extensions`] — announces extensions (Slack, email with links to the
//!   extension's own page), reminds, times out (run by the same sweep).
//! - [`handler::Approvals`] — the approval callback's routes: the signed
//!   link's confirmation page and decision, Slack interactivity and `/jit`.
//! - [`render`] and [`slack`] — what people see, and Slack's wire format.
//!
//! Decisions themselves (who may decide, quorum, single-use links) live in
//! `jit-core`; the Slack, SES and Secrets Manager adapters in `jit-aws`.
//! This crate never logs a link, a signing secret or a token.

pub mod break_glass;
pub mod extensions;
pub mod handler;
pub mod notifier;
pub mod reminders;
pub mod render;
pub mod slack;

pub use handler::{Approvals, Deferral, Job, is_approvals_path};
pub use notifier::{ApprovalNotifier, MailSettings};
