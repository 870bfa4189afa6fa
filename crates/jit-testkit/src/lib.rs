//! The one behavioural test suite every [`RequestStore`] adapter runs, and
//! sample data for anyone's tests.
//!
//! The SQLite store (local mode) and the DynamoDB store (production, tested
//! on moto) must behave the same, or local mode stops being a faithful
//! rehearsal of production. So the promises `RequestStore` makes — guarded
//! transitions, atomic audit trails, idempotent creates, newest-first paging
//! with opaque cursors — are written down once, here, as executable
//! behaviours in [`suite`], and each adapter runs all of them:
//!
//! ```ignore
//! // crates/<adapter>/tests/suite.rs
//! jit_testkit::store_suite!(|| async { MyStore::connect_fresh().await.unwrap() });
//!
//! // or, to run the suite twice in one file, name a module per run:
//! jit_testkit::store_suite!(in_memory, || async { SqliteStore::in_memory().unwrap() });
//! jit_testkit::store_suite!(on_disk, || async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = SqliteStore::open(&dir.path().join("jit.db")).unwrap();
//!     jit_testkit::Guarded::new(store, dir) // the directory lives as long as the store
//! });
//! ```
//!
//! # Isolation: one fresh store per behaviour
//!
//! The factory is called once per test and **must return an empty store that
//! no other test writes to**. Behaviours assert exact results — "pages of 3,
//! 3 and 1", "the APPROVAL_PENDING list is empty now" — which a table shared
//! with concurrently running tests cannot give for `list_by_status`. For
//! DynamoDB that means a uniquely named table per call (cheap on moto); for
//! SQLite a new in-memory database or file. Behaviours still use a fresh
//! [`unique_principal`] per requester, so a leftover table from an earlier
//! run does not disturb the per-requester assertions.
//!
//! # Decisions the suite pins down
//!
//! Where the trait leaves room, the suite picks one answer so adapters agree:
//! - a transition of a request that was never stored is
//!   `StoreError::NotFound(id)`, not `Conflict { current: None }`;
//! - a cursor the store never issued (including `""`) is `InvalidCursor`;
//! - an idempotent retry returns the request *as stored now*, which may have
//!   moved on since it was created;
//! - audit events sort by event id (ULIDs from their `at`), so the trail is
//!   oldest first and events stamped with the same instant keep the order in
//!   which they were written;
//! - appending the same audit event (same event id) twice keeps one copy,
//!   so a retried step does not double the trail;
//! - `create` stores whatever status the record carries (tests seed GRANTED
//!   records directly).
//!
//! The expanded tests run on a two-worker multi-threaded runtime through
//! this crate's own tokio, so adapters need no tokio features for them; each
//! behaviour gets [`TIME_LIMIT`] before it fails instead of hanging.
//!
//! This crate is for tests only: it must never be a dependency of a shipped
//! binary, and it never talks to a real AWS account by itself.

extern crate self as jit_testkit;

pub mod data;
pub mod fake_access_analyzer;
pub mod fake_bedrock;
pub mod fake_slack;
pub mod ledger_suite;
pub mod suite;
pub mod usage;

use std::time::Duration;

use async_trait::async_trait;
use jit_core::lifecycle::Status;
use jit_core::ports::{CreateOutcome, Page, PageRequest, RequestStore, StoreError};
use jit_core::request::{AccessRequest, AuditEvent};
use jit_core::{Principal, RequestId};

pub use data::*;

/// How long one behaviour may take before it counts as hung.
pub const TIME_LIMIT: Duration = Duration::from_secs(120);

/// A store plus something that must outlive it: the temporary directory its
/// file lives in, a handle that drops a test table. The suite only sees the
/// store; the guard is dropped after it.
pub struct Guarded<S, G> {
    store: S,
    _guard: G,
}

impl<S, G> Guarded<S, G> {
    pub fn new(store: S, guard: G) -> Self {
        Guarded {
            store,
            _guard: guard,
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }
}

#[async_trait]
impl<S: RequestStore, G: Send + Sync> RequestStore for Guarded<S, G> {
    async fn create(
        &self,
        request: &AccessRequest,
        event: &AuditEvent,
    ) -> Result<CreateOutcome, StoreError> {
        self.store.create(request, event).await
    }

    async fn get(&self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        self.store.get(id).await
    }

    async fn transition(
        &self,
        prior: &AccessRequest,
        next: &AccessRequest,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.store.transition(prior, next, event).await
    }

    async fn list_by_requester(
        &self,
        requester: &Principal,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        self.store.list_by_requester(requester, page).await
    }

    async fn list_by_status(
        &self,
        status: Status,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        self.store.list_by_status(status, page).await
    }

    async fn audit_events(&self, id: &RequestId) -> Result<Vec<AuditEvent>, StoreError> {
        self.store.audit_events(id).await
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.store.append_audit(event).await
    }

    async fn list_all(
        &self,
        filter: &jit_core::ports::RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        self.store.list_all(filter, page).await
    }

    async fn audit_events_between(
        &self,
        from: jit_core::request::Timestamp,
        to: jit_core::request::Timestamp,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError> {
        self.store.audit_events_between(from, to, page).await
    }

    async fn first_use(
        &self,
        key: &str,
        now: jit_core::request::Timestamp,
        expires_at: jit_core::request::Timestamp,
    ) -> Result<bool, StoreError> {
        self.store.first_use(key, now, expires_at).await
    }
}

#[async_trait]
impl<S: jit_core::ledger::GrantLedger, G: Send + Sync> jit_core::ledger::GrantLedger
    for Guarded<S, G>
{
    async fn record_intent(&self, e: &jit_core::ledger::LedgerEntry) -> Result<(), StoreError> {
        self.store.record_intent(e).await
    }

    async fn record_outcome(&self, e: &jit_core::ledger::LedgerEntry) -> Result<(), StoreError> {
        self.store.record_outcome(e).await
    }

    async fn open_entries(&self) -> Result<Vec<jit_core::ledger::LedgerEntry>, StoreError> {
        self.store.open_entries().await
    }

    async fn entries_for(
        &self,
        resource: &str,
    ) -> Result<Vec<jit_core::ledger::LedgerEntry>, StoreError> {
        self.store.entries_for(resource).await
    }
}

#[doc(hidden)]
pub mod __private {
    pub use tokio;

    /// Runs one behaviour, failing it if it outlives [`TIME_LIMIT`](crate::TIME_LIMIT).
    pub async fn within_time_limit(name: &str, behaviour: impl std::future::Future<Output = ()>) {
        if tokio::time::timeout(crate::TIME_LIMIT, behaviour)
            .await
            .is_err()
        {
            panic!(
                "behaviour `{name}` did not finish within {:?}",
                crate::TIME_LIMIT
            );
        }
    }
}

/// Expands into one `#[tokio::test]` per behaviour in [`suite`], each on a
/// fresh store from `$factory` (a closure returning a future of the store;
/// see the crate docs for the isolation it must give).
///
/// `store_suite!(name, factory)` wraps the tests in `mod name` so one file
/// can run the suite on several configurations.
#[macro_export]
macro_rules! store_suite {
    ($module:ident, $factory:expr $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::store_suite!($factory);
        }
    };
    ($factory:expr $(,)?) => {
        $crate::__store_suite_tests! { $factory;
            create_then_get_returns_an_equal_record,
            get_of_an_unknown_id_is_none,
            create_with_a_taken_id_is_already_exists_and_keeps_the_first,
            idempotent_retry_returns_the_first_request,
            idempotent_retry_after_a_transition_returns_the_stored_state,
            reused_idempotency_key_with_another_body_conflicts,
            idempotency_keys_are_scoped_to_the_requester,
            transition_applies_and_appends_its_event_in_order,
            the_trail_alone_rebuilds_the_request,
            transition_from_a_stale_version_conflicts_and_changes_nothing,
            transition_from_a_wrong_status_conflicts_and_changes_nothing,
            transition_of_a_missing_request_is_not_found,
            concurrent_transitions_have_exactly_one_winner,
            list_by_requester_is_newest_first_and_paginated,
            list_by_requester_of_nobody_is_empty,
            list_with_a_garbage_cursor_is_invalid_cursor,
            list_by_status_is_newest_first_and_paginated,
            list_by_status_follows_transitions,
            append_audit_without_a_record_is_kept,
            append_audit_twice_keeps_one_copy,
            audit_events_are_oldest_first,
            list_all_filters_and_pages_newest_first,
            audit_events_between_reads_one_time_range_in_pages,
            event_digests_are_the_events_digested_in_the_same_pages,
            records_round_trip_every_optional_field,
            first_use_is_true_once_then_false_until_it_expires,
            concurrent_first_uses_of_one_key_have_exactly_one_winner,
            usage_is_recorded_once_per_ended_grant,
        }
    };
}

/// Like [`store_suite!`], for a `jit_core::ledger::GrantLedger` adapter:
/// one test per behaviour in [`ledger_suite`], each on a fresh ledger from
/// `$factory`.
#[macro_export]
macro_rules! ledger_suite {
    ($module:ident, $factory:expr $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::ledger_suite!($factory);
        }
    };
    ($factory:expr $(,)?) => {
        $crate::__ledger_suite_tests! { $factory;
            an_intent_is_open_and_listed,
            an_intent_written_twice_is_kept_once,
            a_completed_put_stays_open,
            a_completed_removal_closes_what_it_undid,
            a_failed_removal_stays_open,
            a_closed_outcome_closes_only_its_entry,
            a_removal_leaves_other_resources_alone,
            entries_round_trip_every_field,
            open_entries_are_oldest_first,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ledger_suite_tests {
    ($factory:expr; $($name:ident),+ $(,)?) => {
        $(
            #[$crate::__private::tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "jit_testkit::__private::tokio"
            )]
            async fn $name() {
                let factory = $factory;
                let ledger = factory().await;
                $crate::__private::within_time_limit(
                    stringify!($name),
                    $crate::ledger_suite::$name(&ledger),
                )
                .await;
            }
        )+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_suite_tests {
    ($factory:expr; $($name:ident),+ $(,)?) => {
        $(
            #[$crate::__private::tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "jit_testkit::__private::tokio"
            )]
            async fn $name() {
                let factory = $factory;
                let store = factory().await;
                $crate::__private::within_time_limit(
                    stringify!($name),
                    $crate::suite::$name(&store),
                )
                .await;
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Names of the behaviours: every `pub async fn` in `suite.rs` taking
    /// just a store.
    fn suite_functions() -> BTreeSet<String> {
        let src = include_str!("suite.rs");
        let mut names = BTreeSet::new();
        let mut rest = src;
        while let Some(i) = rest.find("pub async fn ") {
            rest = &rest[i + "pub async fn ".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let params = &rest[name.len()..rest.find(')').unwrap_or(rest.len())];
            let params: String = params.split_whitespace().collect();
            if params == "(store:&dynRequestStore" || params == "(store:&dynRequestStore," {
                names.insert(name);
            }
        }
        names
    }

    /// Names the macro expands, read from the macro's own text.
    fn macro_names() -> BTreeSet<String> {
        let src = include_str!("lib.rs");
        let start = src
            .find("__store_suite_tests! { $factory;")
            .expect("the macro's list");
        let body = &src[start..];
        let list = &body[body.find(';').expect("list start") + 1..body.find('}').expect("end")];
        list.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    #[test]
    fn the_macro_runs_every_behaviour_in_the_suite() {
        // GIVEN the behaviours written in suite.rs and the names store_suite! expands
        let functions = suite_functions();
        let expanded = macro_names();

        // THEN they are the same set (a new behaviour cannot be forgotten)
        assert!(functions.len() >= 20, "found only {functions:?}");
        assert_eq!(functions, expanded);
    }

    #[test]
    fn the_ledger_macro_runs_every_behaviour_in_the_ledger_suite() {
        let src = include_str!("ledger_suite.rs");
        let functions: BTreeSet<String> = src
            .split("pub async fn ")
            .skip(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect();
        let lib = include_str!("lib.rs");
        let start = lib
            .find("__ledger_suite_tests! { $factory;")
            .expect("the macro's list");
        let body = &lib[start..];
        let list = &body[body.find(';').expect("list start") + 1..body.find('}').expect("end")];
        let expanded: BTreeSet<String> = list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        assert!(functions.len() >= 9, "found only {functions:?}");
        assert_eq!(functions, expanded);
    }

    #[test]
    fn unique_principals_differ_and_are_valid() {
        let names: BTreeSet<String> = (0..100)
            .map(|_| super::unique_principal("alice").to_string())
            .collect();
        assert_eq!(names.len(), 100);
        assert!(names.iter().all(|n| n.starts_with("alice+")));
    }

    #[test]
    fn sample_requests_differ_only_where_asked() {
        let at = super::base_time();
        let who = super::unique_principal("alice");
        let a = super::sample_request(&who, at);
        let b = super::sample_request(&who, at);
        assert_ne!(a.request_id, b.request_id);
        assert_eq!(a.created_at, at);
        let keyed = super::with_idempotency(a.clone(), "k", "fp");
        assert_eq!(
            keyed.idempotency_key.as_ref().map(|k| k.as_str()),
            Some("k")
        );
        assert_eq!(keyed.request_fingerprint.as_deref(), Some("fp"));
    }
}
