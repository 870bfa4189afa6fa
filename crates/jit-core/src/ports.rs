//! Ports: what the core needs from the outside world, as narrow traits.
//! Adapters live in other crates (`jit-aws`, `jit-store-sqlite`, `jit-engine`).

use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::{Principal, RequestId};
use crate::lifecycle::Status;
use crate::request::{AccessRequest, AuditEvent, Timestamp};

/// Why a store call failed. `Backend` text is for logs only: it never reaches
/// an HTTP body.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a request with id {0} already exists")]
    AlreadyExists(RequestId),
    #[error("idempotency key already used for request {existing} with a different body")]
    IdempotencyConflict { existing: RequestId },
    /// The guarded write lost: the stored request is no longer the one read.
    #[error("request changed meanwhile (now {current:?})")]
    Conflict { current: Option<Status> },
    #[error("no request {0}")]
    NotFound(RequestId),
    #[error("the pagination cursor is not valid")]
    InvalidCursor,
    #[error("store backend: {0}")]
    Backend(String),
}

/// The result of a create: the new request, or the first one made with the
/// same idempotency key and the same body.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    Created(AccessRequest),
    Existing(AccessRequest),
}

/// A page of results, newest first, and an opaque cursor for the next page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 100;

    pub fn first(limit: u32) -> Self {
        PageRequest {
            limit,
            cursor: None,
        }
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest::first(Self::DEFAULT_LIMIT)
    }
}

/// What the admin listing (`GET /requests?scope=all`) filters on; every
/// field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// The stored status.
    pub status: Option<Status>,
    pub entitlement: Option<String>,
    pub requester: Option<Principal>,
    /// Created at or after this instant.
    pub from: Option<Timestamp>,
    /// Created before this instant.
    pub to: Option<Timestamp>,
}

/// The most audit events one [`RequestStore::audit_events_between`] call
/// returns: analytics reads many, a page at a time.
pub const MAX_EVENT_PAGE: u32 = 1000;

/// Requests and their audit trail.
///
/// Every write that changes a request is conditional on the version (and so
/// the status) the caller read, and appends its audit event in the same
/// atomic write: a record never changes without its trail.
#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Stores a new request with its `Created` event. Fails with
    /// `AlreadyExists` when the id is taken. When the request carries an
    /// idempotency key already used by the same requester, returns the first
    /// request if the fingerprints match, else `IdempotencyConflict`.
    async fn create(
        &self,
        request: &AccessRequest,
        event: &AuditEvent,
    ) -> Result<CreateOutcome, StoreError>;

    async fn get(&self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError>;

    /// Replaces `prior` with `next` only if the stored request still has
    /// `prior`'s status and version, appending `event` atomically. Otherwise
    /// `Conflict` with the current status, and nothing is written.
    async fn transition(
        &self,
        prior: &AccessRequest,
        next: &AccessRequest,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// A requester's requests, newest first.
    async fn list_by_requester(
        &self,
        requester: &Principal,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError>;

    /// Requests by stored status, newest first.
    async fn list_by_status(
        &self,
        status: Status,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError>;

    /// A request's audit trail, oldest first.
    async fn audit_events(&self, id: &RequestId) -> Result<Vec<AuditEvent>, StoreError>;

    /// Appends an event that changes no request: a rejection before anything
    /// was stored, a notification failure, a partial decision.
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;

    /// Every stored request matching `filter`, newest first (the admin
    /// listing). Stores that cannot list everything say so.
    async fn list_all(
        &self,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        let _ = (filter, page);
        Err(StoreError::Backend(
            "this store cannot list all requests".into(),
        ))
    }

    /// Audit events with `from <= at < to`, oldest first, at most
    /// `page.limit` (up to [`MAX_EVENT_PAGE`]) per call; read through an
    /// index by time, never a scan. What analytics is computed from.
    async fn audit_events_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError> {
        let _ = (from, to, page);
        Err(StoreError::Backend(
            "this store cannot read audit events by time".into(),
        ))
    }

    /// [`RequestStore::audit_events_between`] as analytics reads it: a
    /// digest per event. Stores that keep digests apart (SQLite) answer
    /// without parsing whole events; the default derives them.
    async fn event_digests_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<crate::analytics::EventDigest>, StoreError> {
        let p = self.audit_events_between(from, to, page).await?;
        Ok(Page {
            items: p
                .items
                .iter()
                .map(crate::analytics::EventDigest::of)
                .collect(),
            next_cursor: p.next_cursor,
        })
    }

    /// Records `key` as seen at `now`, to be remembered until `expires_at`:
    /// `true` the first time (or once an earlier record has expired),
    /// `false` while an earlier record stands. One conditional write, so of
    /// callers racing with one key — two Lambda instances handed the same
    /// replayed Slack request — exactly one gets `true`.
    async fn first_use(
        &self,
        key: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError>;
}

/// What the approval workflow is started with. No secrets, no tokens: this
/// lands in the execution history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowInput {
    pub request_id: RequestId,
    pub entitlement: String,
    /// The catalog's auto-approve rule (or demo mode's `simulateApproval`) accepted it.
    pub auto_approve: bool,
    pub approval_timeout_seconds: u32,
    pub duration_seconds: u32,
    /// The request carries a `scope` (or its entitlement a fixed session
    /// policy): the workflow's GeneratePolicy step runs. Others skip it.
    /// Absent when false: an unscoped request's input is what it was before
    /// the step existed (a restarted start stays idempotent).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generate_policy: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("workflow backend: {0}")]
    Backend(String),
    #[error("no workflow execution for request {0}")]
    NotFound(RequestId),
    /// The task the token belonged to is over (timed out, completed,
    /// stopped): the decision came too late.
    #[error("the approval task is no longer waiting")]
    TaskGone,
}

/// Where a request's execution is, as the reconcile pass needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionState {
    /// No execution was ever started for the request.
    Missing,
    Running,
    /// It ended (succeeded, failed, timed out or was stopped).
    Ended,
}

/// The approval workflow (Step Functions, or the local engine).
#[async_trait]
pub trait Workflow: Send + Sync {
    /// Starts the workflow for a stored request. Idempotent: the execution is
    /// named after the request id, and starting it twice with the same input
    /// is not an error.
    async fn start(&self, input: &WorkflowInput) -> Result<(), WorkflowError>;

    /// Stops a running execution (a cancelled request).
    async fn stop(&self, id: &RequestId, reason: &str) -> Result<(), WorkflowError>;

    /// Completes the waiting approval task: the workflow goes on to grant.
    async fn send_task_success(
        &self,
        token: &crate::request::TaskToken,
        output: &serde_json::Value,
    ) -> Result<(), WorkflowError>;

    /// Fails the waiting approval task with a named error (`Denied`).
    async fn send_task_failure(
        &self,
        token: &crate::request::TaskToken,
        error: &str,
        cause: &str,
    ) -> Result<(), WorkflowError>;

    /// Whether the request's execution exists and is still running: the
    /// reconcile pass starts a missing one and fails a request whose
    /// execution ended without finishing it.
    /// Backends that cannot tell (test doubles) say so; the pass skips them.
    async fn execution_state(&self, id: &RequestId) -> Result<ExecutionState, WorkflowError> {
        Err(WorkflowError::Backend(format!(
            "this workflow backend cannot describe the execution of {id}"
        )))
    }

    /// The execution's history, as Step Functions' event list (`type`,
    /// `timestamp`, details). Empty when the backend keeps none.
    async fn history(&self, id: &RequestId) -> Result<Vec<serde_json::Value>, WorkflowError>;

    /// Runs the instant workflow (`state-machine/instant.asl.json`: validate
    /// then grant, for a request a rule approves) to its end and answers
    /// within `timeout`: Step Functions' `StartSyncExecution` on an Express
    /// machine, or `jit-local`'s engine. It never waits or revokes: the
    /// Standard workflow, started afterwards with the request id, owns the
    /// expiry. The default (backends without an instant machine, test
    /// doubles) is [`InstantRun::Unsupported`]: the caller then waits on
    /// the Standard workflow alone.
    async fn run_instant(
        &self,
        input: &WorkflowInput,
        timeout: std::time::Duration,
    ) -> Result<InstantRun, WorkflowError> {
        let _ = (input, timeout);
        Ok(InstantRun::Unsupported)
    }
}

/// How an instant (Express, synchronous) run ended. Its output carries the
/// request id and status only: credentials are vended afterwards by the
/// API, never by a workflow, so none is in any execution's output,
/// history or logs.
#[derive(Debug, Clone, PartialEq)]
pub enum InstantRun {
    /// The run ended normally; its output (`{"requestId", "status", …}`).
    Succeeded(serde_json::Value),
    /// The run failed or was refused (`error`, `cause` as Step Functions
    /// reports them); the Standard workflow takes the request from there.
    Failed { error: String, cause: String },
    /// Still running when the caller stopped waiting.
    TimedOut,
    /// This backend has no instant workflow.
    Unsupported,
}

/// Time, injected so tests can fast-forward.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// A clock that moves only when told to.
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        ManualClock(Mutex::new(at))
    }
    pub fn advance(&self, by: chrono::Duration) {
        let mut t = self.0.lock().expect("clock lock");
        *t += by;
    }
    pub fn set(&self, at: Timestamp) {
        *self.0.lock().expect("clock lock") = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock")
    }
}

/// A secret string (a session key, a token): never printed, never logged.
/// `Debug` and `Display` show a placeholder; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that must hand it over.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What one STS `AssumeRole` call asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRoleSpec {
    pub role_arn: crate::ids::RoleArn,
    /// `RoleSessionName`: who and which request, so CloudTrail says both.
    pub session_name: String,
    /// `SourceIdentity`: the requester, carried through role chaining and
    /// matched by the early-revoke deny statement.
    pub source_identity: String,
    pub duration_secs: u32,
    pub session_policy: Option<String>,
    /// Session tags (`jit:request-id`, …).
    pub tags: Vec<(String, String)>,
}

/// Credentials from STS. Only the access key id is shown by `Debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    pub expiration: Timestamp,
}

/// Why a grant step failed, classified so the workflow can retry the
/// transient and the API can name the fix for the rest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("the role does not exist: {0}")]
    RoleMissing(String),
    #[error("the role's trust policy does not let the broker assume it: {0}")]
    TrustRefused(String),
    #[error("the requested session is longer than the role allows: {0}")]
    DurationTooLong(String),
    #[error("the policy does not exist or is not attachable: {0}")]
    PolicyMissing(String),
    #[error("the principal to attach to does not exist: {0}")]
    PrincipalMissing(String),
    /// Throttling, a 5xx, a timeout: worth retrying.
    #[error("transient AWS error: {0}")]
    Transient(String),
    #[error("{0}")]
    Other(String),
}

/// Vends role credentials (STS on AWS; a local issuer with clearly fake keys).
#[async_trait]
pub trait CredentialIssuer: Send + Sync {
    async fn assume_role(&self, spec: &AssumeRoleSpec) -> Result<IssuedCredentials, GrantError>;
}

/// The IAM identity a managed policy is attached to in attach-policy mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "kebab-case")]
pub enum IamPrincipal {
    User(String),
    Role(String),
}

impl IamPrincipal {
    /// The IAM identity for a requester: an IAM user or role ARN names it;
    /// an assumed-role session names its role; anything else (an email from
    /// a JWT) is taken as an IAM user name, as the Kubiya seed did.
    pub fn for_requester(principal: &Principal) -> Result<IamPrincipal, String> {
        let p = principal.as_str();
        let valid = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        };
        let name = |n: &str, kind: &str| -> Result<String, String> {
            if valid(n) {
                Ok(n.to_string())
            } else {
                Err(format!("`{n}` is not a valid IAM {kind} name"))
            }
        };
        if let Some(rest) = p.strip_prefix("arn:") {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let resource = parts.get(4).copied().unwrap_or_default();
            return match (parts.get(1).copied(), resource.split_once('/')) {
                (Some("iam"), Some(("user", path_name))) => Ok(IamPrincipal::User(name(
                    path_name.rsplit('/').next().unwrap_or_default(),
                    "user",
                )?)),
                (Some("iam"), Some(("role", path_name))) => Ok(IamPrincipal::Role(name(
                    path_name.rsplit('/').next().unwrap_or_default(),
                    "role",
                )?)),
                (Some("sts"), Some(("assumed-role", rest))) => Ok(IamPrincipal::Role(name(
                    rest.split('/').next().unwrap_or_default(),
                    "role",
                )?)),
                _ => Err(format!(
                    "`{p}` is not an IAM user, role or assumed-role ARN"
                )),
            };
        }
        Ok(IamPrincipal::User(name(p, "user")?))
    }
}

/// Attaches and detaches managed policies (IAM on AWS; recorded locally).
#[async_trait]
pub trait PolicyAttacher: Send + Sync {
    async fn attach(
        &self,
        account: &crate::ids::AccountId,
        to: &IamPrincipal,
        policy: &crate::ids::PolicyName,
    ) -> Result<(), GrantError>;
    /// Detaching what is not attached is not an error (a retried revoke).
    async fn detach(
        &self,
        account: &crate::ids::AccountId,
        from: &IamPrincipal,
        policy: &crate::ids::PolicyName,
    ) -> Result<(), GrantError>;

    /// Creates or replaces the inline policy `name` on the user or role
    /// (`PutUserPolicy`/`PutRolePolicy`): an attach-policy grant narrowed by
    /// a scope is its generated policy, put inline as `jit-<request id>`
    /// instead of the managed policy. Adapters that cannot refuse loudly.
    async fn put_inline_policy(
        &self,
        account: &crate::ids::AccountId,
        to: &IamPrincipal,
        name: &str,
        document: &str,
    ) -> Result<(), GrantError> {
        let _ = (account, to, document);
        Err(GrantError::Other(format!(
            "this policy attacher cannot put the inline policy {name}"
        )))
    }

    /// Deletes the inline policy; deleting what is not there (a retried
    /// revoke, a principal deleted meanwhile) is not an error.
    async fn delete_inline_policy(
        &self,
        account: &crate::ids::AccountId,
        from: &IamPrincipal,
        name: &str,
    ) -> Result<(), GrantError> {
        let _ = (account, from);
        Err(GrantError::Other(format!(
            "this policy attacher cannot delete the inline policy {name}"
        )))
    }
}

/// What approvers are told when a request waits for them.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalNotice {
    pub request: AccessRequest,
    pub approvers: crate::catalog::Approvers,
    pub deadline: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("transient notification failure: {0}")]
    Transient(String),
    #[error("notification failed: {0}")]
    Failed(String),
}

/// Tells approvers a request waits for them, and updates them after the
/// decision (Slack and email on AWS; an outbox locally).
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn approval_requested(&self, notice: &ApprovalNotice) -> Result<(), NotifyError>;
    async fn decided(&self, request: &AccessRequest) -> Result<(), NotifyError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_principal_for_requesters() {
        let cases = [
            (
                "arn:aws:iam::123456789012:user/ops/alice",
                Ok(IamPrincipal::User("alice".into())),
            ),
            (
                "arn:aws:iam::123456789012:role/Engineer",
                Ok(IamPrincipal::Role("Engineer".into())),
            ),
            (
                "arn:aws:sts::123456789012:assumed-role/Engineer/alice",
                Ok(IamPrincipal::Role("Engineer".into())),
            ),
            (
                "alice@example.com",
                Ok(IamPrincipal::User("alice@example.com".into())),
            ),
        ];
        for (p, want) in cases {
            let got = IamPrincipal::for_requester(&Principal::parse(p).unwrap());
            assert_eq!(got, want, "{p}");
        }
        for bad in [
            "arn:aws:s3:::bucket",
            "arn:aws:iam::123456789012:group/admins",
            "alice smith",
        ] {
            assert!(
                IamPrincipal::for_requester(&Principal::parse(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_never_print() {
        let c = IssuedCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI"),
            session_token: Secret::new("FwoGZXIvYXdzE"),
            expiration: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        };
        let shown = format!("{c:?} {}", c.session_token);
        assert!(
            !shown.contains("wJalrXUtnFEMI") && !shown.contains("FwoGZXIvYXdzE"),
            "{shown}"
        );
        assert_eq!(c.secret_access_key.expose(), "wJalrXUtnFEMI");
    }
}
