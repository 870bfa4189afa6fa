//! The access request record and the audit events its transitions produce.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::duration::GrantDuration;
use crate::ids::{AccountId, IdempotencyKey, PolicyName, Principal, RequestId, RoleArn};
use crate::lifecycle::{Status, TransitionRefused};

pub type Timestamp = DateTime<Utc>;

/// How the requester's identity was established. Recorded on every request so
/// an auditor can tell a SigV4-proven principal from one a chat bot asserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthSource {
    /// API Gateway verified a SigV4 signature (IAM principal).
    Iam,
    /// API Gateway's JWT/Cognito authorizer verified a token.
    Jwt,
    /// `jit-local`'s `x-jit-user` header (local mode only).
    Local,
    /// A configured trusted caller asserted the requester in the body.
    TrustedCaller,
    /// A Slack request whose signature was verified (`/jit`, buttons); the
    /// person is the Slack user, mapped to an email or the catalog's name.
    Slack,
    /// A signed approval link (HMAC): proves one approver for one request.
    SignedLink,
}

/// Who asked, as established by the front door (never by the body alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requester {
    pub principal: Principal,
    pub authenticated_by: AuthSource,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The trusted caller that acted for the requester, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// What a grant does: assume a catalogued role, or attach a managed policy to
/// the requester's own principal (the Kubiya seed's mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "grantMode", rename_all = "kebab-case")]
pub enum GrantTarget {
    #[serde(rename_all = "camelCase")]
    AssumeRole { role_arn: RoleArn },
    #[serde(rename_all = "camelCase")]
    AttachPolicy { policy_name: PolicyName },
    /// IAM Identity Center: the permission set (name or ARN, as the catalog
    /// spells it) assigned to the requester's Identity Store user in each
    /// of `accounts` (on a request: the accounts asked for, a subset of the
    /// entitlement's) for the window. See `identity_center`, `assignments`.
    #[serde(rename_all = "camelCase")]
    PermissionSet {
        permission_set: String,
        accounts: Vec<AccountId>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Approve,
    Deny,
}

/// One approver's decision. Several may be recorded when a quorum is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub approver: Principal,
    pub verdict: Verdict,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The approver's groups when deciding: a quorum may need one approver
    /// from each of several groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Where the decision was made (`api`, `slack`, `link`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The trusted caller (a chat bot) the approver decided through, when
    /// the approver did not call themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_caller: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequest {
    pub request_id: RequestId,
    pub requester: Requester,
    pub entitlement: String,
    pub account: AccountId,
    #[serde(flatten)]
    pub target: GrantTarget,
    pub duration: GrantDuration,
    pub justification: String,
    pub status: Status,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub decisions: Vec<Decision>,
    /// The latest reason given for a status change (deny, cancel, failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A least-privilege session policy (IAM JSON), when one narrows the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_policy: Option<String>,
    /// What the requester said they need (`scope` of the create call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<crate::policy::Scope>,
    /// Where `sessionPolicy` came from (generator, digest, summary, notes):
    /// set by the GeneratePolicy step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_generation: Option<crate::policy::PolicyProvenance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<IdempotencyKey>,
    /// SHA-256 of what the create call asked for; a retry with the same
    /// idempotency key must ask for the same thing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_fingerprint: Option<String>,
    /// The seed's `simulateApproval` flag, recorded as asked; it only acts
    /// where the deployment enables demo mode.
    #[serde(default)]
    pub simulate_approval: bool,
    /// The workflow's task token while the request waits for a decision.
    /// It lives only here: never in a link, a log line, an audit event or an
    /// API answer (`jit-api` strips it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_token: Option<TaskToken>,
    /// Nonces of the signed approval links already used on this request,
    /// recorded in the decision's own guarded write: a link works once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_link_nonces: Vec<String>,
    /// How the approvers were told (rounds, channels, the Slack message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<crate::channels::NoticeState>,
    /// Extensions asked for after the grant, oldest first; at most one
    /// PENDING (see `extension`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<crate::extension::Extension>,
    /// The deny an early revoke put on the role for sessions already handed
    /// out, and its cleanup (see `revocation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_deny: Option<crate::revocation::SessionDeny>,
    /// A break-glass request: the incident it named and its review (see
    /// `break_glass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<crate::break_glass::BreakGlass>,
    /// How the break-glass announcement and review reminders went out
    /// (internal, like `notice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass_notice: Option<crate::break_glass::BreakGlassNotice>,
    /// Bumped by every write; stores make writes conditional on it.
    pub version: u64,
}

/// A Step Functions (or local engine) task token: a bearer capability to
/// complete the waiting approval task. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskToken(String);

impl TaskToken {
    /// Step Functions tokens are at most 2,048 characters; accept a little
    /// more for other engines, but never an empty or absurd one.
    pub fn parse(s: impl Into<String>) -> Result<Self, crate::ids::InvalidValue> {
        let s = s.into();
        if s.is_empty() || s.len() > 4096 || s.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(crate::ids::InvalidValue(
                "must be a task token (1-4096 visible characters)".into(),
            ));
        }
        Ok(TaskToken(s))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TaskToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskToken(<redacted>)")
    }
}

/// Who caused a change: a person (principal) or a named system component.
pub fn system_actor(component: &str) -> String {
    format!("system:{component}")
}

/// The context of a transition.
#[derive(Debug, Clone)]
pub struct Change {
    pub actor: String,
    pub at: Timestamp,
    pub reason: Option<String>,
    pub source: &'static str,
}

impl AccessRequest {
    /// The stored statuses in which a request may hold a live grant: what
    /// callers of [`AccessRequest::grant_is_live`] list from a store. Keep
    /// it and the predicate in step (they are the one definition).
    pub const LIVE_GRANT_STATUSES: &'static [Status] = &[Status::Granted];

    /// The one answer to "may this request hold access now?", used by
    /// everything that keeps or removes IAM state for a grant (overlapping
    /// attachments, the reconciler): GRANTED and before its `expiresAt`.
    /// APPROVED (decided, the Grant step under way) is deliberately not
    /// live: it has no window yet, and a request stuck there must not hold
    /// access forever. A grant being made is protected instead by the
    /// reconciler's grace period on fresh ledger intents, and RecordGranted
    /// settles the attachment again once GRANTED, so a cleanup that raced
    /// it costs a moment of access, never access beyond the grant.
    pub fn grant_is_live(&self, now: Timestamp) -> bool {
        match self.status {
            Status::Granted => self.expires_at.is_some_and(|e| now < e),
            _ => false,
        }
    }

    /// The status as a reader should see it: a GRANTED request past its
    /// `expiresAt` is EXPIRED even before anything revokes or deletes it.
    pub fn effective_status(&self, now: Timestamp) -> Status {
        match (self.status, self.expires_at) {
            (Status::Granted, Some(exp)) if exp <= now => Status::Expired,
            (s, _) => s,
        }
    }

    /// The next version of this request after `to`, and its audit event.
    /// Fails when the lifecycle table forbids the move.
    pub fn transition(
        &self,
        to: Status,
        change: &Change,
    ) -> Result<(AccessRequest, AuditEvent), TransitionRefused> {
        if !self.status.can_become(to) {
            return Err(TransitionRefused {
                from: self.status,
                to,
            });
        }
        let mut next = self.clone();
        next.status = to;
        next.updated_at = change.at;
        next.version = self.version + 1;
        if change.reason.is_some() {
            next.reason = change.reason.clone();
        }
        if to.is_terminal() {
            // An extension still waiting when the grant ends can no longer apply.
            for x in next.extensions.iter_mut() {
                if x.status == crate::extension::ExtensionStatus::Pending {
                    x.status = crate::extension::ExtensionStatus::Lapsed;
                }
            }
        }
        let waiting = |s: Status| matches!(s, Status::ApprovalPending | Status::Approved);
        if waiting(self.status) && !waiting(to) {
            // The token is a capability to complete the approval task. It is
            // kept while APPROVED (a resume that failed is retried with it)
            // and dropped once the request moves on: nobody may use it again.
            next.task_token = None;
        }
        match to {
            Status::Granted => {
                next.granted_at = Some(change.at);
                next.expires_at = Some(change.at + self.duration.as_chrono());
                next.decided_at.get_or_insert(change.at);
            }
            Status::Denied | Status::ApprovalTimedOut => {
                next.decided_at.get_or_insert(change.at);
            }
            _ => {}
        }
        let mut event = AuditEvent::new(
            &self.request_id,
            change.at,
            change.actor.clone(),
            AuditAction::Transition,
            Some(self.status),
            Some(to),
            change.reason.clone(),
            change.source,
        );
        event.flag_for(self);
        Ok((next, event))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// The request record was created (to = REQUESTED).
    Created,
    /// A lifecycle transition (from → to).
    Transition,
    /// A request refused before anything was stored (eligibility, policy).
    Rejected,
    /// An approver's decision that changes no status by itself (one vote
    /// of a quorum, or the approval that lets the workflow grant).
    Decision,
    /// Something noteworthy that changes no status (a notification failed, a
    /// decision that did not complete a quorum, …).
    Note,
    /// Credentials were handed to the requester (access key id and expiry
    /// only: never a secret).
    CredentialsIssued,
    /// A console sign-in URL was handed to the requester.
    ConsoleSignin,
    /// An extension was asked for or decided.
    Extension,
    /// What an ended assume-role grant's sessions called, from CloudTrail
    /// (`usage`: written once by the scheduled sweep, see [`crate::usage`]).
    Usage,
    /// An approver reviewed a break-glass request (`justified` or
    /// `not-justified`, with the reason).
    Review,
}

/// One line of the audit trail: who did what, when, from which status to which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// ULID: events sort by time within a request.
    pub event_id: String,
    pub request_id: RequestId,
    pub at: Timestamp,
    pub actor: String,
    pub action: AuditAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Which part of the system wrote it (`api`, `workflow`, …).
    pub source: String,
    /// `created` events: the request as first stored, so its history can be
    /// shown after the item is gone (see [`crate::trail`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Box<AccessRequest>>,
    /// Events written with a change of the record: the record's fields this
    /// write changed, with their new values (`null`: removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<serde_json::Map<String, serde_json::Value>>,
    /// `rejected` events: the entitlement the refused attempt was about
    /// (an ineligible attempt has no stored request to name it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<String>,
    /// `rejected` events: the refusal's error code (`not_eligible`,
    /// `self_approval`, `not_approver`), which analytics counts by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// `credentials-issued` and `console-signin` events: the access key id
    /// of the session handed out (an identifier, never the secret), which
    /// the usage sweep looks CloudTrail up by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// `usage` events: what the grant's sessions called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Box<crate::usage::UsageRecord>>,
    /// Marks that make an event stand out: `break-glass` on every event of
    /// a break-glass request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

impl AuditEvent {
    /// Flags this event as `r`'s events are flagged (`break-glass`).
    pub fn flag_for(&mut self, r: &AccessRequest) {
        if r.break_glass.is_some() && !self.flags.iter().any(|f| f == crate::break_glass::FLAG) {
            self.flags.push(crate::break_glass::FLAG.to_string());
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        request_id: &RequestId,
        at: Timestamp,
        actor: String,
        action: AuditAction,
        from: Option<Status>,
        to: Option<Status>,
        reason: Option<String>,
        source: &str,
    ) -> Self {
        AuditEvent {
            event_id: RequestId::generate(at).to_string(),
            request_id: request_id.clone(),
            at,
            actor,
            action,
            from,
            to,
            reason,
            source: source.to_string(),
            snapshot: None,
            changes: None,
            entitlement: None,
            code: None,
            access_key_id: None,
            usage: None,
            flags: Vec::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(at: Timestamp) -> AccessRequest {
        AccessRequest {
            request_id: RequestId::generate(at),
            requester: Requester {
                principal: Principal::parse("alice@example.com").unwrap(),
                authenticated_by: AuthSource::Jwt,
                groups: vec!["eng".into()],
                via: None,
            },
            entitlement: "JIT-ElevatedAdminRole".into(),
            account: AccountId::parse("123456789012").unwrap(),
            target: GrantTarget::AssumeRole {
                role_arn: RoleArn::parse("arn:aws:iam::123456789012:role/JIT-ElevatedAdminRole")
                    .unwrap(),
            },
            duration: GrantDuration::from_secs(3600).unwrap(),
            justification: "incident 42".into(),
            status: Status::Requested,
            created_at: at,
            updated_at: at,
            decided_at: None,
            granted_at: None,
            expires_at: None,
            decisions: vec![],
            reason: None,
            session_policy: None,
            scope: None,
            policy_generation: None,
            idempotency_key: None,
            request_fingerprint: None,
            simulate_approval: false,
            task_token: None,
            used_link_nonces: vec![],
            notice: None,
            extensions: vec![],
            session_deny: None,
            break_glass: None,
            break_glass_notice: None,
            version: 1,
        }
    }

    fn change(at: Timestamp) -> Change {
        Change {
            actor: "bob@example.com".into(),
            at,
            reason: Some("ok".into()),
            source: "test",
        }
    }

    #[test]
    fn grant_sets_window_and_expiry_reads_as_expired() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let r = sample(t0);
        let (r, _) = r.transition(Status::Validating, &change(t0)).unwrap();
        let (r, _) = r.transition(Status::ApprovalPending, &change(t0)).unwrap();
        let (r, _) = r.transition(Status::Approved, &change(t0)).unwrap();
        let t1 = t0 + chrono::Duration::seconds(60);
        assert!(!r.grant_is_live(t1), "APPROVED is not a live grant yet");
        let (g, ev) = r.transition(Status::Granted, &change(t1)).unwrap();
        assert_eq!(g.granted_at, Some(t1));
        assert_eq!(g.expires_at, Some(t1 + chrono::Duration::seconds(3600)));
        assert!(g.grant_is_live(t1));
        assert!(!g.grant_is_live(t1 + chrono::Duration::seconds(3600)));
        assert_eq!(g.version, r.version + 1);
        assert_eq!(ev.from, Some(Status::Approved));
        assert_eq!(ev.to, Some(Status::Granted));
        assert_eq!(ev.actor, "bob@example.com");
        assert_eq!(g.effective_status(t1), Status::Granted);
        let later = t1 + chrono::Duration::seconds(3600);
        assert_eq!(g.effective_status(later), Status::Expired);
    }

    #[test]
    fn a_grant_is_live_only_while_granted_and_before_its_expiry() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let r = sample(t0);
        assert!(!r.grant_is_live(t0), "REQUESTED holds nothing");
        let (r, _) = r.transition(Status::Validating, &change(t0)).unwrap();
        let (r, _) = r.transition(Status::Approved, &change(t0)).unwrap();
        assert!(!r.grant_is_live(t0), "APPROVED has no window yet");
        let (g, _) = r.transition(Status::Granted, &change(t0)).unwrap();
        let exp = g.expires_at.unwrap();
        assert!(g.grant_is_live(t0));
        assert!(g.grant_is_live(exp - chrono::Duration::milliseconds(1)));
        assert!(!g.grant_is_live(exp), "the window ends at expiresAt");
        let (e, _) = g.transition(Status::Revoked, &change(t0)).unwrap();
        assert!(!e.grant_is_live(t0), "a revoked grant is over at once");
        for s in Status::ALL {
            let mut x = g.clone();
            x.status = s;
            assert_eq!(
                x.grant_is_live(t0),
                AccessRequest::LIVE_GRANT_STATUSES.contains(&s),
                "{s}: the predicate and the status list agree"
            );
        }
    }

    #[test]
    fn forbidden_transition_changes_nothing() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let r = sample(t0);
        let err = r.transition(Status::Granted, &change(t0)).unwrap_err();
        assert_eq!(err.from, Status::Requested);
        assert_eq!(r.status, Status::Requested);
    }

    #[test]
    fn json_shape_is_camel_case_with_grant_mode() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let v = serde_json::to_value(sample(t0)).unwrap();
        assert_eq!(v["grantMode"], "assume-role");
        assert!(v["roleArn"].is_string());
        assert!(v["requestId"].is_string());
        assert_eq!(v["requester"]["authenticatedBy"], "jwt");
        let back: AccessRequest = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample_with_id(t0, &back.request_id));
    }

    fn sample_with_id(at: Timestamp, id: &RequestId) -> AccessRequest {
        let mut s = sample(at);
        s.request_id = id.clone();
        s
    }
}
