//! The request lifecycle as one transition table.
//!
//! Every status change in every store goes through [`Status::can_become`];
//! stores then make the write conditional on the status read, so two approvers
//! clicking at once, or approve racing cancel, yield exactly one outcome.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Requested,
    Validating,
    PolicyGeneration,
    ApprovalPending,
    /// Decided, being granted: the approval that met the quorum (or the
    /// auto-approve rule) moved the request here in a guarded write, so a
    /// cancel or a second decision can no longer interleave with the grant.
    Approved,
    Granted,
    Expired,
    Denied,
    Cancelled,
    Revoked,
    ApprovalTimedOut,
    Failed,
}

use Status::*;

/// The allowed transitions, and only these. `(from, to)`.
///
/// Every grant goes through `APPROVED`: the quorum-meeting approval (or, on
/// the auto-approve path, the Grant step itself) writes it before anything
/// is granted, and nothing but the workflow moves a request out of it. A
/// cancel is only possible before it, so "cancelled" and "granting" exclude
/// each other by the store's guarded write. `APPROVED → FAILED` and
/// `GRANTED → FAILED` record a grant or revoke that could not be carried
/// out; whoever writes them undoes what was granted. `APPROVED →
/// APPROVAL_TIMED_OUT` is the quorum met just as the approval window closed:
/// the workflow had already left the waiting task and grants nothing.
pub const TRANSITIONS: &[(Status, Status)] = &[
    (Requested, Validating),
    (Requested, Cancelled),
    (Requested, Failed),
    (Validating, PolicyGeneration),
    (Validating, ApprovalPending),
    (Validating, Approved),
    (Validating, Denied),
    (Validating, Cancelled),
    (Validating, Failed),
    (PolicyGeneration, ApprovalPending),
    (PolicyGeneration, Approved),
    (PolicyGeneration, Cancelled),
    (PolicyGeneration, Failed),
    (ApprovalPending, Approved),
    (ApprovalPending, Denied),
    (ApprovalPending, Cancelled),
    (ApprovalPending, ApprovalTimedOut),
    (ApprovalPending, Failed),
    (Approved, Granted),
    (Approved, ApprovalTimedOut),
    (Approved, Failed),
    (Granted, Expired),
    (Granted, Revoked),
    (Granted, Failed),
];

impl Status {
    pub const ALL: [Status; 12] = [
        Requested,
        Validating,
        PolicyGeneration,
        ApprovalPending,
        Approved,
        Granted,
        Expired,
        Denied,
        Cancelled,
        Revoked,
        ApprovalTimedOut,
        Failed,
    ];

    /// Whether the table allows `self → to`.
    pub fn can_become(self, to: Status) -> bool {
        TRANSITIONS.contains(&(self, to))
    }

    /// No transition leaves a terminal status.
    pub fn is_terminal(self) -> bool {
        !TRANSITIONS.iter().any(|(from, _)| *from == self)
    }

    /// Still waiting for a decision or a grant: the requester may cancel.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            Requested | Validating | PolicyGeneration | ApprovalPending
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Requested => "REQUESTED",
            Validating => "VALIDATING",
            PolicyGeneration => "POLICY_GENERATION",
            ApprovalPending => "APPROVAL_PENDING",
            Approved => "APPROVED",
            Granted => "GRANTED",
            Expired => "EXPIRED",
            Denied => "DENIED",
            Cancelled => "CANCELLED",
            Revoked => "REVOKED",
            ApprovalTimedOut => "APPROVAL_TIMED_OUT",
            Failed => "FAILED",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown status `{s}`; one of {}", names.join(", "))
            })
    }
}

/// A refused transition, named so callers (and the state machine) can tell
/// "this no longer applies" from a fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {from} request cannot become {to}")]
pub struct TransitionRefused {
    pub from: Status,
    pub to: Status,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected table written out independently of `TRANSITIONS`, as the
    /// list of successors per status.
    fn expected(from: Status) -> &'static [Status] {
        match from {
            Requested => &[Validating, Cancelled, Failed],
            Validating => &[
                PolicyGeneration,
                ApprovalPending,
                Approved,
                Denied,
                Cancelled,
                Failed,
            ],
            PolicyGeneration => &[ApprovalPending, Approved, Cancelled, Failed],
            ApprovalPending => &[Approved, Denied, Cancelled, ApprovalTimedOut, Failed],
            Approved => &[Granted, ApprovalTimedOut, Failed],
            Granted => &[Expired, Revoked, Failed],
            Expired | Denied | Cancelled | Revoked | ApprovalTimedOut | Failed => &[],
        }
    }

    #[test]
    fn every_pair_is_allowed_or_forbidden_as_specified() {
        let mut checked = 0;
        for from in Status::ALL {
            for to in Status::ALL {
                let want = expected(from).contains(&to);
                assert_eq!(from.can_become(to), want, "{from} -> {to}");
                checked += 1;
            }
        }
        assert_eq!(checked, 144);
    }

    #[test]
    fn terminal_and_pending_sets() {
        let terminal: Vec<_> = Status::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            vec![
                Expired,
                Denied,
                Cancelled,
                Revoked,
                ApprovalTimedOut,
                Failed
            ]
        );
        let pending: Vec<_> = Status::ALL.into_iter().filter(|s| s.is_pending()).collect();
        assert_eq!(
            pending,
            vec![Requested, Validating, PolicyGeneration, ApprovalPending]
        );
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert!("granted".parse::<Status>().is_err());
    }
}
