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
}

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("workflow backend: {0}")]
    Backend(String),
    #[error("no workflow execution for request {0}")]
    NotFound(RequestId),
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
