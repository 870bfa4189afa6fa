//! The shared suite with every call alternating between two connections to
//! one file: what happens when `jit-local` and a second process (the CLI, a
//! restarted server) hold the same database. Guarded writes must still have
//! one winner, which takes SQLite's own locking (`BEGIN IMMEDIATE`,
//! `busy_timeout`), not this process's mutex.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use jit_core::lifecycle::Status;
use jit_core::ports::{CreateOutcome, Page, PageRequest, RequestStore, StoreError};
use jit_core::request::{AccessRequest, AuditEvent};
use jit_core::{Principal, RequestId};
use jit_store_sqlite::SqliteStore;
use tempfile::TempDir;

struct TwoConnections {
    stores: [SqliteStore; 2],
    next: AtomicUsize,
    _dir: TempDir,
}

impl TwoConnections {
    fn open() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("shared.db");
        let a = SqliteStore::open(&path).expect("first connection");
        let b = SqliteStore::open(&path).expect("second connection");
        TwoConnections {
            stores: [a, b],
            next: AtomicUsize::new(0),
            _dir: dir,
        }
    }

    fn pick(&self) -> &SqliteStore {
        &self.stores[self.next.fetch_add(1, Ordering::Relaxed) % 2]
    }
}

#[async_trait]
impl RequestStore for TwoConnections {
    async fn create(
        &self,
        request: &AccessRequest,
        event: &AuditEvent,
    ) -> Result<CreateOutcome, StoreError> {
        self.pick().create(request, event).await
    }
    async fn get(&self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        self.pick().get(id).await
    }
    async fn transition(
        &self,
        prior: &AccessRequest,
        next: &AccessRequest,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.pick().transition(prior, next, event).await
    }
    async fn list_by_requester(
        &self,
        requester: &Principal,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        self.pick().list_by_requester(requester, page).await
    }
    async fn list_by_status(
        &self,
        status: Status,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        self.pick().list_by_status(status, page).await
    }
    async fn audit_events(&self, id: &RequestId) -> Result<Vec<AuditEvent>, StoreError> {
        self.pick().audit_events(id).await
    }
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.pick().append_audit(event).await
    }
    async fn list_all(
        &self,
        filter: &jit_core::ports::RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        self.pick().list_all(filter, page).await
    }
    async fn audit_events_between(
        &self,
        from: jit_core::request::Timestamp,
        to: jit_core::request::Timestamp,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError> {
        self.pick().audit_events_between(from, to, page).await
    }
    async fn first_use(
        &self,
        key: &str,
        now: jit_core::request::Timestamp,
        expires_at: jit_core::request::Timestamp,
    ) -> Result<bool, StoreError> {
        self.pick().first_use(key, now, expires_at).await
    }
}

jit_testkit::store_suite!(|| async { TwoConnections::open() });
