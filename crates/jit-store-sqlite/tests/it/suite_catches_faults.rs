//! The suite is only worth running if it fails on a broken store. Each case
//! here wraps a correct store in one plausible bug and checks that the
//! behaviours meant to catch it do fail.

use std::sync::Once;

use async_trait::async_trait;
use jit_core::lifecycle::Status;
use jit_core::ports::{CreateOutcome, Page, PageRequest, RequestStore, StoreError};
use jit_core::request::{AccessRequest, AuditEvent};
use jit_core::{Principal, RequestId};
use jit_store_sqlite::SqliteStore;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Lists oldest first.
    OldestFirst,
    /// Writes over whatever is stored, ignoring the prior's status and version.
    Unguarded,
    /// Forgets idempotency keys.
    NoIdempotency,
    /// Reports conflicts without the current status.
    ConflictWithoutStatus,
    /// Calls a missing request a conflict.
    MissingIsConflict,
    /// Drops optional fields it has no column for.
    DropsOptionals,
    /// Returns the audit trail newest first.
    TrailNewestFirst,
    /// Appends an event every time it is asked, duplicates included.
    DuplicateAppends,
    /// Says every key is new (a replay goes through).
    ForgetsSeenKeys,
    /// Never lets a seen key expire.
    KeepsSeenKeysForever,
}

struct Faulty {
    inner: SqliteStore,
    fault: Fault,
}

impl Faulty {
    fn new(fault: Fault) -> Self {
        Faulty {
            inner: SqliteStore::in_memory().expect("in-memory store"),
            fault,
        }
    }

    fn damage(&self, mut r: AccessRequest) -> AccessRequest {
        if self.fault == Fault::DropsOptionals {
            r.session_policy = None;
            r.requester.via = None;
            r.decisions.clear();
        }
        r
    }

    fn damage_page(&self, mut page: Page<AccessRequest>) -> Page<AccessRequest> {
        if self.fault == Fault::OldestFirst {
            page.items.reverse();
        }
        page.items = page.items.into_iter().map(|r| self.damage(r)).collect();
        page
    }
}

#[async_trait]
impl RequestStore for Faulty {
    async fn create(
        &self,
        request: &AccessRequest,
        event: &AuditEvent,
    ) -> Result<CreateOutcome, StoreError> {
        let mut request = request.clone();
        if self.fault == Fault::NoIdempotency {
            request.idempotency_key = None;
        }
        self.inner.create(&request, event).await
    }

    async fn get(&self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        Ok(self.inner.get(id).await?.map(|r| self.damage(r)))
    }

    async fn transition(
        &self,
        prior: &AccessRequest,
        next: &AccessRequest,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let result = if self.fault == Fault::Unguarded {
            match self.inner.get(&prior.request_id).await? {
                Some(current) => self.inner.transition(&current, next, event).await,
                None => Err(StoreError::NotFound(prior.request_id.clone())),
            }
        } else {
            self.inner.transition(prior, next, event).await
        };
        match (self.fault, result) {
            (Fault::ConflictWithoutStatus, Err(StoreError::Conflict { .. })) => {
                Err(StoreError::Conflict { current: None })
            }
            (Fault::MissingIsConflict, Err(StoreError::NotFound(_))) => {
                Err(StoreError::Conflict { current: None })
            }
            (_, result) => result,
        }
    }

    async fn list_by_requester(
        &self,
        requester: &Principal,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        let page = self.inner.list_by_requester(requester, page).await?;
        Ok(self.damage_page(page))
    }

    async fn list_by_status(
        &self,
        status: Status,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        let page = self.inner.list_by_status(status, page).await?;
        Ok(self.damage_page(page))
    }

    async fn audit_events(&self, id: &RequestId) -> Result<Vec<AuditEvent>, StoreError> {
        let mut events = self.inner.audit_events(id).await?;
        if self.fault == Fault::TrailNewestFirst {
            events.reverse();
        }
        Ok(events)
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        if self.fault == Fault::DuplicateAppends {
            let mut copy = event.clone();
            copy.event_id = RequestId::generate(event.at).to_string();
            self.inner.append_audit(&copy).await?;
        }
        self.inner.append_audit(event).await
    }

    async fn first_use(
        &self,
        key: &str,
        now: jit_core::request::Timestamp,
        expires_at: jit_core::request::Timestamp,
    ) -> Result<bool, StoreError> {
        match self.fault {
            Fault::ForgetsSeenKeys => Ok(true),
            Fault::KeepsSeenKeysForever => {
                let never = chrono::DateTime::<chrono::Utc>::MAX_UTC;
                self.inner.first_use(key, now.min(expires_at), never).await
            }
            _ => self.inner.first_use(key, now, expires_at).await,
        }
    }
}

/// Panics inside the spawned behaviours are the expected outcome here;
/// keep them off the console so a real failure stands out.
fn quiet_worker_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some("tokio-runtime-worker") {
                default(info);
            }
        }));
    });
}

/// Runs each named behaviour on a fresh store with `fault` and asserts that
/// it fails, and that the same behaviour passes on a correct store.
macro_rules! caught {
    ($fault:expr => $($behaviour:ident),+ $(,)?) => {{
        quiet_worker_panics();
        $(
            let store = Faulty::new($fault);
            let outcome =
                tokio::spawn(async move { jit_testkit::suite::$behaviour(&store).await }).await;
            assert!(
                outcome.as_ref().is_err_and(|e| e.is_panic()),
                "`{}` did not catch {:?}",
                stringify!($behaviour),
                $fault
            );
            let correct = SqliteStore::in_memory().unwrap();
            jit_testkit::suite::$behaviour(&correct).await;
        )+
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_oldest_first_is_caught() {
    caught!(Fault::OldestFirst =>
        list_by_requester_is_newest_first_and_paginated,
        list_by_status_is_newest_first_and_paginated,
        list_by_status_follows_transitions,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unguarded_write_is_caught() {
    caught!(Fault::Unguarded =>
        transition_from_a_stale_version_conflicts_and_changes_nothing,
        transition_from_a_wrong_status_conflicts_and_changes_nothing,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_idempotency_keys_are_caught() {
    caught!(Fault::NoIdempotency =>
        idempotent_retry_returns_the_first_request,
        idempotent_retry_after_a_transition_returns_the_stored_state,
        reused_idempotency_key_with_another_body_conflicts,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_not_found_must_say_what_is_stored() {
    caught!(Fault::ConflictWithoutStatus =>
        transition_from_a_stale_version_conflicts_and_changes_nothing,
        transition_from_a_wrong_status_conflicts_and_changes_nothing,
        concurrent_transitions_have_exactly_one_winner,
    );
    caught!(Fault::MissingIsConflict => transition_of_a_missing_request_is_not_found);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_records_are_caught() {
    caught!(Fault::DropsOptionals => records_round_trip_every_optional_field);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disordered_or_doubled_trail_is_caught() {
    caught!(Fault::TrailNewestFirst =>
        audit_events_are_oldest_first,
        transition_applies_and_appends_its_event_in_order,
    );
    caught!(Fault::DuplicateAppends =>
        append_audit_without_a_record_is_kept,
        append_audit_twice_keeps_one_copy,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_forgets_or_never_forgets_seen_keys_is_caught() {
    caught!(Fault::ForgetsSeenKeys =>
        first_use_is_true_once_then_false_until_it_expires,
        concurrent_first_uses_of_one_key_have_exactly_one_winner,
    );
    caught!(Fault::KeepsSeenKeysForever => first_use_is_true_once_then_false_until_it_expires);
}
