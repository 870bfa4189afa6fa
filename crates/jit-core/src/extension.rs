//! Extensions of a live grant, kept on the request itself.
//!
//! An extension asks for more time on a GRANTED request. It goes through the
//! entitlement's approval rules: an auto-approve rule that accepts the new
//! total applies at once; otherwise it waits (PENDING) for the
//! entitlement's approvers, with the same quorum as the request had. On
//! approval `expiresAt` moves; the workflow's Revoke step finds it moved and
//! loops back to a new Wait (`Extended` in `approval.asl.json`). The total
//! (from the grant to the new `expiresAt`) never exceeds the entitlement's
//! `max_duration`. At most one extension is pending at a time; one still
//! pending when the grant ends lapses.

use serde::{Deserialize, Serialize};

use crate::ids::Principal;
use crate::request::{Decision, Timestamp};

/// The shortest extension worth asking for.
pub const MIN_EXTENSION_SECS: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExtensionStatus {
    Pending,
    Approved,
    Denied,
    /// The grant ended (expired, revoked) before a decision.
    Lapsed,
    /// Nobody decided within the entitlement's approval window.
    TimedOut,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    pub requested_by: Principal,
    pub requested_at: Timestamp,
    /// Seconds added to `expiresAt` on approval.
    pub duration_secs: u32,
    pub reason: String,
    pub status: ExtensionStatus,
    /// Approved by an auto-approve rule, without a person.
    #[serde(default)]
    pub auto_approved: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<Decision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Timestamp>,
    /// `expiresAt` before and after, once approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_expires_at: Option<Timestamp>,
    /// How its approvers were told (internal, like the request's `notice`;
    /// see `jit_approvals::extensions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<crate::channels::NoticeState>,
}
