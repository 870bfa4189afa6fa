//! The behaviours every [`RequestStore`] must have, one `pub async fn` each.
//!
//! Each function takes an empty store of its own (see the crate docs for
//! why), arranges what it needs, and panics with a message naming the broken
//! promise. [`store_suite!`](crate::store_suite) runs them all; an adapter can
//! also call one directly while debugging.

use futures::future::join_all;
use jit_core::lifecycle::Status;
use jit_core::ports::{CreateOutcome, Page, PageRequest, RequestStore, StoreError};
use jit_core::request::{AccessRequest, AuditAction, AuditEvent};
use jit_core::{Principal, RequestId};

use crate::data::*;

/// Which list an assertion walks.
#[derive(Debug, Clone, Copy)]
pub enum Listing<'a> {
    Requester(&'a Principal),
    Status(Status),
}

/// One page of `listing`.
pub async fn list(
    store: &dyn RequestStore,
    listing: Listing<'_>,
    page: &PageRequest,
) -> Result<Page<AccessRequest>, StoreError> {
    match listing {
        Listing::Requester(p) => store.list_by_requester(p, page).await,
        Listing::Status(s) => store.list_by_status(s, page).await,
    }
}

/// Every page of `listing` at `limit` per page, following cursors until there
/// is none. Panics if the cursor never runs out (a store that hands back the
/// same cursor would otherwise loop forever).
pub async fn all_pages(
    store: &dyn RequestStore,
    listing: Listing<'_>,
    limit: u32,
) -> Vec<Page<AccessRequest>> {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = list(store, listing, &PageRequest { limit, cursor })
            .await
            .unwrap_or_else(|e| panic!("listing {listing:?} failed: {e:?}"));
        assert!(
            page.items.len() <= limit as usize,
            "a page of {listing:?} holds {} items, over the limit of {limit}",
            page.items.len()
        );
        cursor = page.next_cursor.clone();
        pages.push(page);
        if cursor.is_none() {
            return pages;
        }
        assert!(
            pages.len() < 100,
            "listing {listing:?} never ran out of cursors"
        );
    }
}

/// All items of `listing`, in the order the store returned them.
pub async fn all_items(
    store: &dyn RequestStore,
    listing: Listing<'_>,
    limit: u32,
) -> Vec<AccessRequest> {
    all_pages(store, listing, limit)
        .await
        .into_iter()
        .flat_map(|p| p.items)
        .collect()
}

fn ids(items: &[AccessRequest]) -> Vec<RequestId> {
    items.iter().map(|r| r.request_id.clone()).collect()
}

fn assert_conflict(result: Result<(), StoreError>, want: Option<Status>, what: &str) {
    match result {
        Err(StoreError::Conflict { current }) => {
            assert_eq!(
                current, want,
                "{what}: the conflict must name the stored status"
            )
        }
        other => panic!("{what}: expected Conflict {{ current: {want:?} }}, got {other:?}"),
    }
}

async fn trail(store: &dyn RequestStore, id: &RequestId) -> Vec<AuditEvent> {
    store
        .audit_events(id)
        .await
        .unwrap_or_else(|e| panic!("reading the trail of {id} failed: {e:?}"))
}

async fn get(store: &dyn RequestStore, id: &RequestId) -> Option<AccessRequest> {
    store
        .get(id)
        .await
        .unwrap_or_else(|e| panic!("get {id} failed: {e:?}"))
}

// ---------------------------------------------------------------- create/get

pub async fn create_then_get_returns_an_equal_record(store: &dyn RequestStore) {
    // GIVEN a new request and its Created event
    let alice = unique_principal("alice");
    let request = sample_request(&alice, base_time());
    let event = created_event(&request);

    // WHEN it is created
    let outcome = store.create(&request, &event).await.expect("create");

    // THEN the store says it created exactly that request
    assert_eq!(outcome, CreateOutcome::Created(request.clone()));
    // AND get returns an equal record
    assert_eq!(get(store, &request.request_id).await, Some(request.clone()));
    // AND the trail holds the Created event, as written
    assert_eq!(trail(store, &request.request_id).await, vec![event]);
}

pub async fn get_of_an_unknown_id_is_none(store: &dyn RequestStore) {
    // GIVEN a store holding one request
    let alice = unique_principal("alice");
    create(store, &sample_request(&alice, base_time())).await;

    // WHEN another id is read
    let unknown = RequestId::generate(base_time());

    // THEN there is nothing, and that is not an error
    assert_eq!(get(store, &unknown).await, None);
    assert_eq!(trail(store, &unknown).await, vec![]);
}

pub async fn create_with_a_taken_id_is_already_exists_and_keeps_the_first(
    store: &dyn RequestStore,
) {
    // GIVEN a stored request
    let at = base_time();
    let alice = unique_principal("alice");
    let first = create(store, &sample_request(&alice, at)).await;
    let first_trail = trail(store, &first.request_id).await;

    // WHEN a different request (another requester) is created under the same id
    let mallory = unique_principal("mallory");
    let mut second = sample_request(&mallory, later(at, 5));
    second.request_id = first.request_id.clone();
    second.justification = "overwrite attempt".into();
    let result = store.create(&second, &created_event(&second)).await;

    // THEN it fails with AlreadyExists naming the id
    match result {
        Err(StoreError::AlreadyExists(id)) => assert_eq!(id, first.request_id),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // AND the first record and its trail are unchanged
    assert_eq!(get(store, &first.request_id).await, Some(first.clone()));
    assert_eq!(trail(store, &first.request_id).await, first_trail);
    // AND the second requester owns nothing
    assert!(
        all_items(store, Listing::Requester(&mallory), 10)
            .await
            .is_empty()
    );
}

// --------------------------------------------------------------- idempotency

pub async fn idempotent_retry_returns_the_first_request(store: &dyn RequestStore) {
    // GIVEN a request created with an idempotency key
    let at = base_time();
    let alice = unique_principal("alice");
    let first = create(
        store,
        &with_idempotency(sample_request(&alice, at), "key-1", "fp-a"),
    )
    .await;

    // WHEN the client retries: new id, same key, same fingerprint
    let retry = with_idempotency(sample_request(&alice, later(at, 1)), "key-1", "fp-a");
    let outcome = store
        .create(&retry, &created_event(&retry))
        .await
        .expect("an idempotent retry is not an error");

    // THEN the first request comes back
    assert_eq!(outcome, CreateOutcome::Existing(first.clone()));
    // AND nothing new was stored: no record, no event, one item listed
    assert_eq!(get(store, &retry.request_id).await, None);
    assert_eq!(trail(store, &retry.request_id).await, vec![]);
    assert_eq!(trail(store, &first.request_id).await.len(), 1);
    assert_eq!(
        ids(&all_items(store, Listing::Requester(&alice), 10).await),
        vec![first.request_id.clone()]
    );
}

pub async fn idempotent_retry_after_a_transition_returns_the_stored_state(
    store: &dyn RequestStore,
) {
    // GIVEN a request created with an idempotency key that has since moved on
    let at = base_time();
    let alice = unique_principal("alice");
    let first = create(
        store,
        &with_idempotency(sample_request(&alice, at), "key-1", "fp-a"),
    )
    .await;
    let moved = advance(store, &first, Status::Validating, later(at, 1)).await;

    // WHEN the client retries the create
    let retry = with_idempotency(sample_request(&alice, later(at, 2)), "key-1", "fp-a");
    let outcome = store.create(&retry, &created_event(&retry)).await;

    // THEN it gets the request as it is now, not as it was created
    match outcome {
        Ok(CreateOutcome::Existing(r)) => assert_eq!(r, moved),
        other => panic!("expected Existing(current), got {other:?}"),
    }
}

pub async fn reused_idempotency_key_with_another_body_conflicts(store: &dyn RequestStore) {
    // GIVEN a request created with an idempotency key
    let at = base_time();
    let alice = unique_principal("alice");
    let first = create(
        store,
        &with_idempotency(sample_request(&alice, at), "key-1", "fp-a"),
    )
    .await;

    // WHEN the same requester reuses the key for a different body
    let other = with_idempotency(sample_request(&alice, later(at, 1)), "key-1", "fp-b");
    let result = store.create(&other, &created_event(&other)).await;

    // THEN it is refused, naming the first request
    match result {
        Err(StoreError::IdempotencyConflict { existing }) => {
            assert_eq!(existing, first.request_id)
        }
        other => panic!("expected IdempotencyConflict, got {other:?}"),
    }
    // AND nothing was stored for it
    assert_eq!(get(store, &other.request_id).await, None);
    assert_eq!(trail(store, &other.request_id).await, vec![]);
    assert_eq!(get(store, &first.request_id).await, Some(first.clone()));
    assert_eq!(
        ids(&all_items(store, Listing::Requester(&alice), 10).await),
        vec![first.request_id]
    );
}

pub async fn idempotency_keys_are_scoped_to_the_requester(store: &dyn RequestStore) {
    // GIVEN alice created a request with a key
    let at = base_time();
    let alice = unique_principal("alice");
    let bob = unique_principal("bob");
    let hers = create(
        store,
        &with_idempotency(sample_request(&alice, at), "shared-key", "fp-a"),
    )
    .await;

    // WHEN bob uses the same key (even with the same fingerprint)
    let his = with_idempotency(sample_request(&bob, later(at, 1)), "shared-key", "fp-a");
    let outcome = store.create(&his, &created_event(&his)).await;

    // THEN bob's request is created on its own
    assert_eq!(
        outcome.expect("bob's create"),
        CreateOutcome::Created(his.clone())
    );
    assert_eq!(get(store, &his.request_id).await, Some(his.clone()));
    assert_eq!(get(store, &hers.request_id).await, Some(hers.clone()));
    assert_eq!(
        ids(&all_items(store, Listing::Requester(&alice), 10).await),
        vec![hers.request_id]
    );
    assert_eq!(
        ids(&all_items(store, Listing::Requester(&bob), 10).await),
        vec![his.request_id]
    );
}

// --------------------------------------------------------------- transitions

pub async fn transition_applies_and_appends_its_event_in_order(store: &dyn RequestStore) {
    // GIVEN a stored request
    let at = base_time();
    let alice = unique_principal("alice");
    let request = sample_request(&alice, at);
    let created = created_event(&request);
    store.create(&request, &created).await.expect("create");

    // WHEN it moves twice, each time from the version just read
    let (validating, ev1) = request
        .transition(Status::Validating, &change("system:workflow", later(at, 1)))
        .expect("lifecycle allows it");
    store
        .transition(&request, &validating, &ev1)
        .await
        .expect("first transition");
    let (pending, ev2) = validating
        .transition(
            Status::ApprovalPending,
            &change("system:workflow", later(at, 2)),
        )
        .expect("lifecycle allows it");
    store
        .transition(&validating, &pending, &ev2)
        .await
        .expect("second transition");

    // THEN the stored record is the last version
    let stored = get(store, &request.request_id).await.expect("still there");
    assert_eq!(stored, pending);
    assert_eq!(stored.version, 3);
    // AND the trail is Created, then each transition with what it changed, in order
    let ev1 = jit_core::trail::complete(Some(&request), &validating, &ev1);
    let ev2 = jit_core::trail::complete(Some(&validating), &pending, &ev2);
    assert_eq!(
        trail(store, &request.request_id).await,
        vec![created, ev1, ev2]
    );
}

pub async fn the_trail_alone_rebuilds_the_request(store: &dyn RequestStore) {
    // GIVEN a request stored, then moved on with every optional field set
    let at = base_time();
    let alice = unique_principal("alice");
    let request = sample_request(&alice, at);
    store
        .create(&request, &created_event(&request))
        .await
        .expect("create");
    let validating = advance(store, &request, Status::Validating, later(at, 1)).await;
    let pending = advance(store, &validating, Status::ApprovalPending, later(at, 2)).await;
    let (mut approved, event) = pending
        .transition(Status::Approved, &change("lead@example.com", later(at, 3)))
        .expect("lifecycle allows it");
    approved.decisions.push(jit_core::request::Decision {
        approver: Principal::parse("lead@example.com").expect("principal"),
        verdict: jit_core::request::Verdict::Approve,
        at: later(at, 3),
        reason: Some("ok".into()),
        groups: vec!["leads".into()],
        via: Some("api".into()),
        trusted_caller: None,
    });
    approved.session_policy = Some(r#"{"Version":"2012-10-17","Statement":[]}"#.into());
    store
        .transition(&pending, &approved, &event)
        .await
        .expect("approve");
    let granted = advance(store, &approved, Status::Granted, later(at, 4)).await;

    // WHEN the trail is read back and replayed
    let events = trail(store, &request.request_id).await;

    // THEN the created event carries the snapshot, later ones their changes,
    // and the replay is the stored record exactly
    assert!(events[0].snapshot.is_some(), "{:?}", events[0]);
    assert!(
        events[1..].iter().all(|e| e.changes.is_some()),
        "{events:?}"
    );
    assert_eq!(jit_core::trail::replay(&events).as_ref(), Some(&granted));
    assert_eq!(get(store, &request.request_id).await, Some(granted));
}

pub async fn transition_from_a_stale_version_conflicts_and_changes_nothing(
    store: &dyn RequestStore,
) {
    // GIVEN two readers read the same REQUESTED request, and the first moved it on
    let at = base_time();
    let alice = unique_principal("alice");
    let read_by_both = create(store, &sample_request(&alice, at)).await;
    let current = advance(store, &read_by_both, Status::Validating, later(at, 1)).await;
    let trail_before = trail(store, &read_by_both.request_id).await;

    // WHEN the second writes from its stale read
    let (cancelled, ev) = read_by_both
        .transition(Status::Cancelled, &change("alice", later(at, 2)))
        .expect("lifecycle allows it");
    let stale = store.transition(&read_by_both, &cancelled, &ev).await;

    // THEN it loses with the status actually stored
    assert_conflict(stale, Some(Status::Validating), "stale read");

    // WHEN a writer has the right status but a wrong version
    let mut wrong_version = current.clone();
    wrong_version.version = current.version + 7;
    let (denied, ev) = wrong_version
        .transition(Status::Denied, &change("bob", later(at, 3)))
        .expect("lifecycle allows it");
    let result = store.transition(&wrong_version, &denied, &ev).await;

    // THEN it loses too
    assert_conflict(result, Some(Status::Validating), "wrong version");
    // AND neither the record nor its trail changed
    assert_eq!(get(store, &current.request_id).await, Some(current.clone()));
    assert_eq!(trail(store, &current.request_id).await, trail_before);
}

pub async fn transition_from_a_wrong_status_conflicts_and_changes_nothing(
    store: &dyn RequestStore,
) {
    // GIVEN a request stored as VALIDATING, version 2
    let at = base_time();
    let alice = unique_principal("alice");
    let created = create(store, &sample_request(&alice, at)).await;
    let current = advance(store, &created, Status::Validating, later(at, 1)).await;
    let trail_before = trail(store, &current.request_id).await;

    // WHEN a writer believes it is APPROVAL_PENDING at that same version
    let mut believed = current.clone();
    believed.status = Status::ApprovalPending;
    let (granted, ev) = believed
        .transition(Status::Approved, &change("bob", later(at, 2)))
        .expect("lifecycle allows it");
    let result = store.transition(&believed, &granted, &ev).await;

    // THEN it loses with the status actually stored, and nothing changed
    assert_conflict(result, Some(Status::Validating), "wrong status");
    assert_eq!(get(store, &current.request_id).await, Some(current.clone()));
    assert_eq!(trail(store, &current.request_id).await, trail_before);
}

/// A transition of a request that was never stored is `NotFound`, not
/// `Conflict { current: None }`: "it changed meanwhile" would be a lie.
pub async fn transition_of_a_missing_request_is_not_found(store: &dyn RequestStore) {
    // GIVEN a request that was never stored
    let alice = unique_principal("alice");
    let ghost = sample_request(&alice, base_time());

    // WHEN it is transitioned
    let (next, ev) = ghost
        .transition(Status::Validating, &change("system:workflow", base_time()))
        .expect("lifecycle allows it");
    let result = store.transition(&ghost, &next, &ev).await;

    // THEN NotFound names it, and nothing was written
    match result {
        Err(StoreError::NotFound(id)) => assert_eq!(id, ghost.request_id),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(get(store, &ghost.request_id).await, None);
    assert_eq!(trail(store, &ghost.request_id).await, vec![]);
}

/// How many writers race in [`concurrent_transitions_have_exactly_one_winner`].
pub const RACERS: usize = 20;

pub async fn concurrent_transitions_have_exactly_one_winner(store: &dyn RequestStore) {
    // GIVEN a request waiting for approval
    let at = base_time();
    let alice = unique_principal("alice");
    let pending = pending_request(store, &alice, at).await;
    let trail_before = trail(store, &pending.request_id).await;

    // WHEN many writers, all from the same read, race to approve, deny or cancel it
    let targets = [Status::Approved, Status::Denied, Status::Cancelled];
    let attempts: Vec<(AccessRequest, AuditEvent)> = (0..RACERS)
        .map(|i| {
            pending
                .transition(
                    targets[i % targets.len()],
                    &change(&format!("racer-{i}"), later(at, 10)),
                )
                .expect("lifecycle allows it")
        })
        .collect();
    let results = join_all(
        attempts
            .iter()
            .map(|(next, ev)| store.transition(&pending, next, ev)),
    )
    .await;

    // THEN exactly one wins
    let winners: Vec<usize> = (0..RACERS).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "winners: {winners:?}, results: {results:?}"
    );
    let (won, won_event) = &attempts[winners[0]];
    // AND every other writer got Conflict naming the winner's status
    for (i, result) in results.into_iter().enumerate() {
        if i != winners[0] {
            assert_conflict(result, Some(won.status), &format!("racer {i}"));
        }
    }
    // AND the store holds the winner's version, with exactly its one event added
    assert_eq!(get(store, &pending.request_id).await.as_ref(), Some(won));
    let mut expected = trail_before;
    expected.push(jit_core::trail::complete(Some(&pending), won, won_event));
    assert_eq!(trail(store, &pending.request_id).await, expected);
}

// ----------------------------------------------------------------- listings

/// How many requests the pagination behaviours list, and at what page size.
pub const LISTED: usize = 7;
pub const PAGE_LIMIT: u32 = 3;

pub async fn list_by_requester_is_newest_first_and_paginated(store: &dyn RequestStore) {
    // GIVEN alice's requests, one second apart, interleaved with bob's
    let at = base_time();
    let alice = unique_principal("alice");
    let bob = unique_principal("bob");
    let mut hers = Vec::new();
    for i in 0..LISTED {
        let t = later(at, 2 * i as i64);
        hers.push(create(store, &sample_request(&alice, t)).await);
        if i % 3 == 0 {
            create(store, &sample_request(&bob, later(t, 1))).await;
        }
    }

    // WHEN alice's list is read 3 at a time
    let pages = all_pages(store, Listing::Requester(&alice), PAGE_LIMIT).await;

    // THEN the pages hold 3, 3 and 1, and only the last has no cursor
    let sizes: Vec<usize> = pages.iter().map(|p| p.items.len()).collect();
    assert_eq!(sizes, vec![3, 3, 1]);
    assert!(pages[..2].iter().all(|p| p.next_cursor.is_some()));
    // AND together they are all of hers and only hers, newest first, no gaps or duplicates
    let listed: Vec<AccessRequest> = pages.into_iter().flat_map(|p| p.items).collect();
    hers.reverse();
    assert_eq!(listed, hers);
}

pub async fn list_by_requester_of_nobody_is_empty(store: &dyn RequestStore) {
    // GIVEN a store with someone's request
    let alice = unique_principal("alice");
    create(store, &sample_request(&alice, base_time())).await;

    // WHEN a requester who never asked lists
    let nobody = unique_principal("nobody");
    let page = store
        .list_by_requester(&nobody, &PageRequest::first(PAGE_LIMIT))
        .await
        .expect("list");

    // THEN the page is empty and final
    assert_eq!(
        page,
        Page {
            items: vec![],
            next_cursor: None
        }
    );
}

pub async fn list_with_a_garbage_cursor_is_invalid_cursor(store: &dyn RequestStore) {
    // GIVEN a store with a request, so a list would have something to show
    let alice = unique_principal("alice");
    create(store, &sample_request(&alice, base_time())).await;

    for garbage in ["garbage!", "", "AAAA", "%%%", "eyJub3QiOiJ5b3VycyJ9"] {
        let page = PageRequest {
            limit: PAGE_LIMIT,
            cursor: Some(garbage.to_string()),
        };
        for listing in [
            Listing::Requester(&alice),
            Listing::Status(Status::Requested),
        ] {
            // WHEN a list is asked to continue from a cursor the store never gave
            let result = list(store, listing, &page).await;

            // THEN it is refused as an invalid cursor
            assert!(
                matches!(result, Err(StoreError::InvalidCursor)),
                "cursor {garbage:?} on {listing:?}: expected InvalidCursor, got {result:?}"
            );
        }
    }
}

pub async fn list_by_status_is_newest_first_and_paginated(store: &dyn RequestStore) {
    // GIVEN requests from several requesters, some moved on to VALIDATING
    let at = base_time();
    let mut requested = Vec::new();
    let mut validating = Vec::new();
    for i in 0..LISTED + 2 {
        let who = unique_principal(&format!("user{i}"));
        let r = create(store, &sample_request(&who, later(at, i as i64))).await;
        if i % 4 == 1 {
            validating
                .push(advance(store, &r, Status::Validating, later(at, 100 + i as i64)).await);
        } else {
            requested.push(r);
        }
    }
    assert_eq!(requested.len(), LISTED);

    // WHEN the REQUESTED list is read 3 at a time
    let pages = all_pages(store, Listing::Status(Status::Requested), PAGE_LIMIT).await;

    // THEN the pages hold 3, 3 and 1, the last without a cursor
    let sizes: Vec<usize> = pages.iter().map(|p| p.items.len()).collect();
    assert_eq!(sizes, vec![3, 3, 1]);
    assert!(pages[..2].iter().all(|p| p.next_cursor.is_some()));
    // AND they are exactly the REQUESTED ones, newest first
    let listed: Vec<AccessRequest> = pages.into_iter().flat_map(|p| p.items).collect();
    requested.reverse();
    assert_eq!(listed, requested);
    // AND the others are listed under their own status, newest first
    validating.reverse();
    assert_eq!(
        all_items(store, Listing::Status(Status::Validating), PAGE_LIMIT).await,
        validating
    );
    assert!(
        all_items(store, Listing::Status(Status::Granted), PAGE_LIMIT)
            .await
            .is_empty()
    );
}

pub async fn list_by_status_follows_transitions(store: &dyn RequestStore) {
    // GIVEN two requests waiting for approval
    let at = base_time();
    let alice = unique_principal("alice");
    let first = pending_request(store, &alice, at).await;
    let second = pending_request(store, &alice, later(at, 10)).await;
    let pending = Listing::Status(Status::ApprovalPending);
    assert_eq!(
        ids(&all_items(store, pending, PAGE_LIMIT).await),
        vec![second.request_id.clone(), first.request_id.clone()]
    );

    // WHEN the first is granted
    let approved = advance(store, &first, Status::Approved, later(at, 19)).await;
    let granted = advance(store, &approved, Status::Granted, later(at, 20)).await;

    // THEN it has left the APPROVAL_PENDING list and joined the GRANTED one, as stored now
    assert_eq!(all_items(store, pending, PAGE_LIMIT).await, vec![second]);
    assert_eq!(
        all_items(store, Listing::Status(Status::Granted), PAGE_LIMIT).await,
        vec![granted]
    );
    // AND the statuses it passed through list nothing
    for passed in [Status::Requested, Status::Validating, Status::Approved] {
        assert!(
            all_items(store, Listing::Status(passed), PAGE_LIMIT)
                .await
                .is_empty(),
            "{passed} still lists something"
        );
    }
}

// ---------------------------------------------------------------------- audit

pub async fn append_audit_without_a_record_is_kept(store: &dyn RequestStore) {
    // GIVEN a rejection: an id that never got a record
    let at = base_time();
    let id = RequestId::generate(at);
    let rejected = note_event(&id, at, AuditAction::Rejected, "not eligible");

    // WHEN its event is appended
    store.append_audit(&rejected).await.expect("append");

    // THEN it is readable under that id, and still no record exists
    assert_eq!(trail(store, &id).await, vec![rejected]);
    assert_eq!(get(store, &id).await, None);
    assert!(
        all_items(store, Listing::Status(Status::Requested), PAGE_LIMIT)
            .await
            .is_empty()
    );
}

/// A retried append (a Lambda or engine step run twice) must not double the
/// trail: appends are idempotent per event id.
pub async fn append_audit_twice_keeps_one_copy(store: &dyn RequestStore) {
    // GIVEN a request with a note appended
    let at = base_time();
    let alice = unique_principal("alice");
    let request = sample_request(&alice, at);
    let created = created_event(&request);
    store.create(&request, &created).await.expect("create");
    let note = note_event(
        &request.request_id,
        later(at, 1),
        AuditAction::Note,
        "slack notification failed",
    );
    store.append_audit(&note).await.expect("append");

    // WHEN the same event is appended again
    store
        .append_audit(&note)
        .await
        .expect("a repeated append is not an error");

    // THEN the trail holds it once
    assert_eq!(trail(store, &request.request_id).await, vec![created, note]);
}

pub async fn audit_events_are_oldest_first(store: &dyn RequestStore) {
    // GIVEN a request and another one, each with a trail
    let at = base_time();
    let alice = unique_principal("alice");
    let mine = sample_request(&alice, at);
    let created = created_event(&mine);
    store.create(&mine, &created).await.expect("create");
    let other = create(store, &sample_request(&alice, later(at, 1))).await;

    // WHEN notes are appended: a later one first, then an earlier one,
    // then three stamped with the very same instant
    let late = note_event(&mine.request_id, later(at, 20), AuditAction::Note, "late");
    let early = note_event(&mine.request_id, later(at, 10), AuditAction::Note, "early");
    store.append_audit(&late).await.expect("append");
    store.append_audit(&early).await.expect("append");
    let same_instant: Vec<AuditEvent> = ["first", "second", "third"]
        .into_iter()
        .map(|reason| note_event(&mine.request_id, later(at, 30), AuditAction::Note, reason))
        .collect();
    for ev in &same_instant {
        store.append_audit(ev).await.expect("append");
    }
    store
        .append_audit(&note_event(
            &other.request_id,
            later(at, 15),
            AuditAction::Note,
            "someone else's",
        ))
        .await
        .expect("append");

    // THEN the trail is oldest first, same-instant events in the order written,
    // and holds no other request's events
    let mut expected = vec![created, early, late];
    expected.extend(same_instant);
    assert_eq!(trail(store, &mine.request_id).await, expected);
}

// ----------------------------------------------------------------- round trip

pub async fn records_round_trip_every_optional_field(store: &dyn RequestStore) {
    // GIVEN a request with every optional field set
    let at = base_time();
    let alice = unique_principal("alice");
    let full = full_request(&alice, at);
    assert!(
        full.decided_at.is_some()
            && full.granted_at.is_some()
            && full.expires_at.is_some()
            && full.reason.is_some()
            && full.session_policy.is_some()
            && full.idempotency_key.is_some()
            && full.request_fingerprint.is_some()
            && full.requester.via.is_some()
            && full.task_token.is_some()
            && !full.used_link_nonces.is_empty()
            && full.notice.is_some()
            && !full.requester.groups.is_empty()
            && !full.decisions.is_empty(),
        "full_request must set every optional field"
    );

    // WHEN it is stored and read back every way there is
    create(store, &full).await;

    // THEN every read returns it unchanged
    assert_eq!(get(store, &full.request_id).await, Some(full.clone()));
    assert_eq!(
        all_items(store, Listing::Requester(&alice), PAGE_LIMIT).await,
        vec![full.clone()]
    );
    assert_eq!(
        all_items(store, Listing::Status(Status::Granted), PAGE_LIMIT).await,
        vec![full.clone()]
    );

    // WHEN it is then transitioned
    let revoked = advance(store, &full, Status::Revoked, later(at, 4000)).await;

    // THEN the new version round-trips too
    assert_eq!(get(store, &full.request_id).await, Some(revoked.clone()));
    assert_eq!(
        all_items(store, Listing::Status(Status::Revoked), PAGE_LIMIT).await,
        vec![revoked]
    );
    // AND a minimal request still reads back with its fields absent, not defaulted
    let minimal = create(store, &sample_request(&alice, later(at, 1))).await;
    assert_eq!(get(store, &minimal.request_id).await, Some(minimal));
}

// ----------------------------------------------------------------- seen once

/// A key no other behaviour (or run, on a shared table) uses.
fn unique_key(what: &str) -> String {
    format!("{what}:{}", RequestId::generate(base_time()))
}

pub async fn first_use_is_true_once_then_false_until_it_expires(store: &dyn RequestStore) {
    // GIVEN a key never seen, remembered for an hour
    let at = base_time();
    let key = unique_key("replay");
    let until = later(at, 3600);
    let seen = |now| store.first_use(&key, now, until);
    // THEN its first use counts, and any later one within the hour does not
    assert!(seen(at).await.expect("first use"), "the first use of a key");
    assert!(!seen(at).await.expect("second use"), "the same key again");
    assert!(
        !seen(later(at, 3599)).await.expect("use within the hour"),
        "the same key before its record expires"
    );
    // AND another key is unaffected
    assert!(
        store
            .first_use(&unique_key("other"), at, until)
            .await
            .expect("another key"),
        "another key's first use"
    );
    // AND once the record has expired the key may be recorded anew
    assert!(
        store
            .first_use(&key, later(at, 3601), later(at, 7200))
            .await
            .expect("use after expiry"),
        "a key whose record expired"
    );
    assert!(
        !store
            .first_use(&key, later(at, 3602), later(at, 7200))
            .await
            .expect("use after the new record"),
        "the new record stands"
    );
}

pub async fn concurrent_first_uses_of_one_key_have_exactly_one_winner(store: &dyn RequestStore) {
    // GIVEN one key, used by many callers at once
    let at = base_time();
    let key = unique_key("race");
    let results = join_all((0..RACERS).map(|_| store.first_use(&key, at, later(at, 600)))).await;
    // THEN exactly one of them is first
    let firsts = results.iter().filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(firsts, 1, "results: {results:?}");
    assert!(results.iter().all(Result::is_ok), "results: {results:?}");
}

// ------------------------------------------------- admin listing, analytics

/// Every page of the admin listing under `filter`, `limit` per page.
async fn all_of(
    store: &dyn RequestStore,
    filter: &jit_core::ports::RequestFilter,
    limit: u32,
) -> Vec<RequestId> {
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..100 {
        let page = store
            .list_all(filter, &PageRequest { limit, cursor })
            .await
            .unwrap_or_else(|e| panic!("list_all {filter:?} failed: {e:?}"));
        assert!(page.items.len() <= limit as usize, "over the limit");
        out.extend(page.items.iter().map(|r| r.request_id.clone()));
        cursor = page.next_cursor;
        if cursor.is_none() {
            return out;
        }
    }
    panic!("list_all {filter:?} never ran out of cursors")
}

pub async fn list_all_filters_and_pages_newest_first(store: &dyn RequestStore) {
    use jit_core::ports::RequestFilter;
    // GIVEN five requests of two requesters, two entitlements, two statuses,
    // a minute apart
    let at = base_time();
    let (alice, bob) = (unique_principal("alice"), unique_principal("bob"));
    let mut made = Vec::new();
    for (i, (who, ent)) in [
        (&alice, "A"),
        (&bob, "A"),
        (&alice, "B"),
        (&bob, "B"),
        (&alice, "A"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = sample_request(who, later(at, 60 * i as i64));
        r.entitlement = ent.into();
        let r = create(store, &r).await;
        let r = if i % 2 == 0 {
            advance(store, &r, Status::Validating, later(at, 60 * i as i64 + 1)).await
        } else {
            r
        };
        made.push(r);
    }
    let ids = |idx: &[usize]| -> Vec<RequestId> {
        idx.iter().map(|&i| made[i].request_id.clone()).collect()
    };
    let f = RequestFilter::default;

    // THEN every request comes newest first, in pages of 2
    assert_eq!(all_of(store, &f(), 2).await, ids(&[4, 3, 2, 1, 0]));
    // AND each filter, alone and together, keeps exactly the matching ones
    let by_status = RequestFilter {
        status: Some(Status::Validating),
        ..f()
    };
    assert_eq!(all_of(store, &by_status, 2).await, ids(&[4, 2, 0]));
    let by_requester = RequestFilter {
        requester: Some(alice.clone()),
        ..f()
    };
    assert_eq!(all_of(store, &by_requester, 1).await, ids(&[4, 2, 0]));
    let by_entitlement = RequestFilter {
        entitlement: Some("B".into()),
        ..f()
    };
    assert_eq!(all_of(store, &by_entitlement, 1).await, ids(&[3, 2]));
    let window = RequestFilter {
        from: Some(later(at, 60)),
        to: Some(later(at, 180)),
        ..f()
    };
    assert_eq!(all_of(store, &window, 5).await, ids(&[2, 1]));
    let all_four = RequestFilter {
        status: Some(Status::Validating),
        requester: Some(alice.clone()),
        entitlement: Some("A".into()),
        from: Some(later(at, 1)),
        to: Some(later(at, 600)),
    };
    assert_eq!(all_of(store, &all_four, 1).await, ids(&[4]));
    let none = RequestFilter {
        requester: Some(bob.clone()),
        status: Some(Status::Validating),
        ..f()
    };
    assert!(all_of(store, &none, 3).await.is_empty());
    // AND a cursor the store never issued is refused
    let garbage = store
        .list_all(
            &f(),
            &PageRequest {
                limit: 2,
                cursor: Some("not-a-cursor".into()),
            },
        )
        .await;
    assert!(
        matches!(garbage, Err(StoreError::InvalidCursor)),
        "{garbage:?}"
    );
}

pub async fn audit_events_between_reads_one_time_range_in_pages(store: &dyn RequestStore) {
    // GIVEN events over three UTC days: a request's trail and standalone
    // rejections, one just before and one at the end of the range
    let day0 = base_time()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        - chrono::Duration::days(3);
    let alice = unique_principal("alice");
    let t = |h: i64, s: i64| day0 + chrono::Duration::hours(h) + chrono::Duration::seconds(s);
    let request = sample_request(&alice, t(23, 59 * 60));
    let request = create(store, &request).await;
    let validating = advance(store, &request, Status::Validating, t(24, 30)).await;
    let _pending = advance(store, &validating, Status::ApprovalPending, t(49, 0)).await;
    let mut notes = Vec::new();
    for at in [t(10, 0), t(11, 0), t(30, 0), t(60, 0), t(71, 0)] {
        let id = RequestId::generate(at);
        let e = note_event(&id, at, AuditAction::Rejected, "not eligible");
        store.append_audit(&e).await.expect("append");
        notes.push(e);
    }

    // WHEN the range [day0 11:00, day2 23:00) is read 2 events per page
    let (from, to) = (t(11, 0), t(71, 0));
    let mut got = Vec::new();
    let mut cursor = None;
    for _ in 0..50 {
        let page = store
            .audit_events_between(from, to, &PageRequest { limit: 2, cursor })
            .await
            .expect("read by time");
        assert!(page.items.len() <= 2);
        got.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }

    // THEN it holds exactly the events at or after `from` and before `to`,
    // oldest first, across the day boundaries
    let at: Vec<_> = got.iter().map(|e| (e.at, e.action)).collect();
    assert_eq!(
        at,
        vec![
            (t(11, 0), AuditAction::Rejected),
            (t(23, 59 * 60), AuditAction::Created),
            (t(24, 30), AuditAction::Transition),
            (t(30, 0), AuditAction::Rejected),
            (t(49, 0), AuditAction::Transition),
            (t(60, 0), AuditAction::Rejected),
        ]
    );
    assert!(got[1].snapshot.is_some(), "events come back whole");
    // AND an empty range is empty
    let empty = store
        .audit_events_between(to, to, &PageRequest::first(10))
        .await
        .expect("read");
    assert!(empty.items.is_empty() && empty.next_cursor.is_none());
}

pub async fn event_digests_are_the_events_digested_in_the_same_pages(store: &dyn RequestStore) {
    // GIVEN a request granted with a session policy and its credentials
    // fetched, a rejection and a note, over two days
    let at = base_time() - chrono::Duration::days(2);
    let alice = unique_principal("alice");
    let mut request = sample_request(&alice, at);
    request.requester.groups = vec!["eng".into(), "sre".into()];
    let r = create(store, &request).await;
    let r = advance(store, &r, Status::Validating, later(at, 1)).await;
    let r = advance(store, &r, Status::Approved, later(at, 2)).await;
    advance(store, &r, Status::Granted, later(at, 86_400)).await;
    let mut rejected = note_event(
        &RequestId::generate(later(at, 5)),
        later(at, 5),
        AuditAction::Rejected,
        "not eligible",
    );
    rejected.entitlement = Some("Admin".into());
    rejected.code = Some("not_eligible".into());
    store.append_audit(&rejected).await.expect("append");
    let creds = note_event(
        &r.request_id,
        later(at, 86_401),
        AuditAction::CredentialsIssued,
        "key",
    );
    store.append_audit(&creds).await.expect("append");
    store.append_audit(&creds).await.expect("append twice");

    // WHEN events and digests of the range are read, 2 a page
    let (from, to) = (at, later(at, 86_402));
    let mut events = Vec::new();
    let mut digests = Vec::new();
    let (mut ce, mut cd) = (None, None);
    for _ in 0..20 {
        let pe = store
            .audit_events_between(
                from,
                to,
                &PageRequest {
                    limit: 2,
                    cursor: ce,
                },
            )
            .await
            .expect("events");
        let pd = store
            .event_digests_between(
                from,
                to,
                &PageRequest {
                    limit: 2,
                    cursor: cd,
                },
            )
            .await
            .expect("digests");
        assert_eq!(pe.items.len(), pd.items.len(), "pages of the same size");
        events.extend(pe.items);
        digests.extend(pd.items);
        (ce, cd) = (pe.next_cursor, pd.next_cursor);
        assert_eq!(ce.is_some(), cd.is_some());
        if ce.is_none() {
            break;
        }
    }

    // THEN each digest is its event's, in the same order
    assert_eq!(events.len(), 6);
    let want: Vec<_> = events
        .iter()
        .map(jit_core::analytics::EventDigest::of)
        .collect();
    assert_eq!(digests, want);
    assert_eq!(
        digests[0].groups,
        vec!["eng".to_string(), "sre".to_string()]
    );
    assert!(
        digests.iter().any(|d| d.expires_at.is_some()),
        "{digests:?}"
    );
}

/// The sweep records one `usage` event per ended assume-role grant, after
/// CloudTrail's delay, once — a second pass, or another process's pass,
/// writes nothing more — and analytics reads it back (from digests too).
pub async fn usage_is_recorded_once_per_ended_grant(store: &dyn RequestStore) {
    // GIVEN an ended assume-role grant whose two sessions called S3 (one
    // call refused), an ended attach-policy grant, and a grant ended too
    // recently for CloudTrail to be complete
    let (assume, attach, recent) = crate::usage::ended_grants(store).await;
    let source = crate::usage::FakeUsage::default()
        .with(
            "ASIAUSEDKEY1",
            &[
                ("s3.amazonaws.com", "GetObject", None),
                ("s3.amazonaws.com", "ListObjectsV2", None),
            ],
        )
        .with(
            "ASIAUSEDKEY2",
            &[
                ("s3.amazonaws.com", "GetObject", None),
                ("s3.amazonaws.com", "PutObject", Some("AccessDenied")),
            ],
        );

    // WHEN the sweep runs, runs again, and a second process runs it too
    let now = chrono::Utc::now();
    let first = jit_core::usage::UsageCollector::new()
        .collect(store, &source, now)
        .await
        .expect("first pass");
    let collector = jit_core::usage::UsageCollector::new();
    let second = collector
        .collect(store, &source, now)
        .await
        .expect("second pass");

    // THEN exactly one usage event, for the due assume-role grant, with
    // both sessions' calls
    assert_eq!(first.recorded, 1, "{first:?}");
    assert_eq!(
        second.recorded, 0,
        "a retried sweep records nothing: {second:?}"
    );
    let events = crate::usage::usage_events(store).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.request_id, assume.request_id);
    assert_ne!(e.request_id, attach.request_id);
    assert_ne!(e.request_id, recent.request_id);
    let rec = e.usage.as_deref().expect("a usage record");
    assert_eq!(rec.access_key_ids, vec!["ASIAUSEDKEY1", "ASIAUSEDKEY2"]);
    assert_eq!(
        rec.used,
        std::collections::BTreeMap::from([("s3:GetObject".into(), 2), ("s3:ListBucket".into(), 1)])
    );
    assert_eq!(
        rec.denied,
        std::collections::BTreeMap::from([("s3:PutObject".into(), 1)])
    );
    assert_eq!(
        rec.granted_actions.as_deref(),
        Some(&["s3:Get*".to_string(), "s3:List*".to_string()][..])
    );
    let asked: Vec<String> = source.asked().into_iter().map(|(k, _, _)| k).collect();
    assert!(!asked.contains(&"ASIARECENT".to_string()), "{asked:?}");
    // ... stamped when it was due: the grant's end + the delay
    let ended = assume.updated_at;
    assert_eq!(
        e.at,
        ended + chrono::Duration::minutes(jit_core::usage::USAGE_DELAY_MINS)
    );

    // AND analytics over events and over digests show it for the entitlement
    let (from, to) = (
        now - chrono::Duration::days(1),
        now + chrono::Duration::hours(1),
    );
    let mut digests = Vec::new();
    let mut page = PageRequest {
        limit: 100,
        cursor: None,
    };
    loop {
        let p = store
            .event_digests_between(from, to, &page)
            .await
            .expect("digests");
        digests.extend(p.items);
        match p.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    let mut a = jit_core::analytics::Analytics::new(jit_core::analytics::Params {
        from,
        to,
        entitlements: None,
        working_hours: Default::default(),
        eligible: Default::default(),
    });
    for d in &digests {
        a.add_digest(d);
    }
    let report = a.finish();
    let row = &report.usage.used_vs_granted.by_entitlement[&assume.entitlement];
    assert_eq!((row.grants, row.sessions, row.calls), (1, 2, 4), "{row:?}");
    assert_eq!(row.suggested_ceiling, vec!["s3:GetObject", "s3:ListBucket"]);
    assert!(row.unused_granted_actions.is_empty(), "{row:?}");
    assert_eq!(row.denied_actions["s3:PutObject"], 1);
}
