//! The behaviours every [`GrantLedger`] must have, one `pub async fn` each,
//! run by [`ledger_suite!`](crate::ledger_suite) against SQLite and
//! DynamoDB (on moto). The closing rule itself is `jit_core::ledger::undoes`;
//! these check that each adapter stores, lists and applies it the same way.

use jit_core::ledger::{GrantLedger, LedgerEntry, LedgerKind, LedgerOp, LedgerOutcome};
use jit_core::ports::IamPrincipal;
use jit_core::request::Timestamp;
use jit_core::{AccountId, PolicyName, RequestId, RoleArn};

use crate::data::*;

/// A principal no other behaviour uses, as an IAM user name.
fn user() -> IamPrincipal {
    let p = unique_principal("alice");
    IamPrincipal::User(p.as_str().split('@').next().unwrap_or("alice").to_string())
}

fn managed(who: &IamPrincipal, op: LedgerOp, at: Timestamp) -> LedgerEntry {
    LedgerEntry::managed(
        &RequestId::generate(at),
        op,
        &AccountId::parse(SAMPLE_ACCOUNT).expect("account"),
        who,
        &PolicyName::parse("ReadOnlyAccess").expect("policy"),
        at,
    )
}

fn completed(mut e: LedgerEntry, at: Timestamp, outcome: LedgerOutcome) -> LedgerEntry {
    e.completed_at = Some(at);
    e.outcome = Some(outcome);
    e
}

async fn intent(ledger: &dyn GrantLedger, e: &LedgerEntry) {
    ledger
        .record_intent(e)
        .await
        .unwrap_or_else(|err| panic!("record_intent failed: {err:?}"));
}

async fn outcome(ledger: &dyn GrantLedger, e: &LedgerEntry) {
    ledger
        .record_outcome(e)
        .await
        .unwrap_or_else(|err| panic!("record_outcome failed: {err:?}"));
}

async fn history(ledger: &dyn GrantLedger, e: &LedgerEntry) -> Vec<LedgerEntry> {
    ledger
        .entries_for(&e.resource())
        .await
        .unwrap_or_else(|err| panic!("entries_for failed: {err:?}"))
}

async fn open_of(ledger: &dyn GrantLedger, resource: &str) -> Vec<LedgerEntry> {
    ledger
        .open_entries()
        .await
        .unwrap_or_else(|err| panic!("open_entries failed: {err:?}"))
        .into_iter()
        .filter(|e| e.resource() == resource)
        .collect()
}

fn open_copy(e: &LedgerEntry, open: bool) -> LedgerEntry {
    let mut e = e.clone();
    e.open = open;
    e
}

pub async fn an_intent_is_open_and_listed(ledger: &dyn GrantLedger) {
    let e = managed(&user(), LedgerOp::Put, base_time());
    intent(ledger, &e).await;
    assert_eq!(
        open_of(ledger, &e.resource()).await,
        vec![open_copy(&e, true)],
        "an intent is open until its outcome says otherwise"
    );
    assert_eq!(history(ledger, &e).await, vec![open_copy(&e, true)]);
}

pub async fn an_intent_written_twice_is_kept_once(ledger: &dyn GrantLedger) {
    let e = managed(&user(), LedgerOp::Put, base_time());
    intent(ledger, &e).await;
    intent(ledger, &e).await;
    assert_eq!(
        history(ledger, &e).await.len(),
        1,
        "a retried write keeps one copy"
    );
}

pub async fn a_completed_put_stays_open(ledger: &dyn GrantLedger) {
    let t = base_time();
    let e = managed(&user(), LedgerOp::Put, t);
    intent(ledger, &e).await;
    let done = completed(e, later(t, 1), LedgerOutcome::Done);
    outcome(ledger, &done).await;
    assert_eq!(
        open_of(ledger, &done.resource()).await,
        vec![open_copy(&done, true)],
        "the broker holds what a put put"
    );
}

pub async fn a_completed_removal_closes_what_it_undid(ledger: &dyn GrantLedger) {
    let t = base_time();
    let who = user();
    let put = completed(
        managed(&who, LedgerOp::Put, t),
        later(t, 1),
        LedgerOutcome::Done,
    );
    let earlier_removal = managed(&who, LedgerOp::Remove, later(t, 2));
    let in_flight = managed(&who, LedgerOp::Put, later(t, 3));
    let removal = managed(&who, LedgerOp::Remove, later(t, 4));
    for e in [&put, &earlier_removal, &in_flight, &removal] {
        intent(ledger, e).await;
    }
    outcome(ledger, &put).await;
    let removal = completed(removal, later(t, 5), LedgerOutcome::Done);
    outcome(ledger, &removal).await;

    let open: Vec<String> = open_of(ledger, &put.resource())
        .await
        .into_iter()
        .map(|e| e.entry_id)
        .collect();
    assert_eq!(
        open,
        vec![in_flight.entry_id.clone()],
        "only the put still in flight stays open (its call may land after the removal)"
    );
    let all = history(ledger, &put).await;
    assert_eq!(all.len(), 4);
    let stored = all.iter().find(|e| e.entry_id == removal.entry_id).unwrap();
    assert_eq!(
        stored,
        &open_copy(&removal, false),
        "the removal's outcome is kept"
    );
}

pub async fn a_failed_removal_stays_open(ledger: &dyn GrantLedger) {
    let t = base_time();
    let who = user();
    let put = completed(
        managed(&who, LedgerOp::Put, t),
        later(t, 1),
        LedgerOutcome::Done,
    );
    intent(ledger, &put).await;
    outcome(ledger, &put).await;
    let removal = managed(&who, LedgerOp::Remove, later(t, 2));
    intent(ledger, &removal).await;
    let failed = completed(
        removal,
        later(t, 3),
        LedgerOutcome::Failed {
            error: "Throttling".into(),
        },
    );
    outcome(ledger, &failed).await;
    assert_eq!(
        open_of(ledger, &put.resource()).await.len(),
        2,
        "a failed removal undid nothing and is itself half-done"
    );
}

pub async fn a_closed_outcome_closes_only_its_entry(ledger: &dyn GrantLedger) {
    let t = base_time();
    let who = user();
    let put = completed(
        managed(&who, LedgerOp::Put, t),
        later(t, 1),
        LedgerOutcome::Done,
    );
    intent(ledger, &put).await;
    outcome(ledger, &put).await;
    let removal = managed(&who, LedgerOp::Remove, later(t, 2));
    intent(ledger, &removal).await;
    let closed = completed(
        removal,
        later(t, 3),
        LedgerOutcome::Closed {
            reason: "superseded".into(),
        },
    );
    outcome(ledger, &closed).await;
    assert_eq!(
        open_of(ledger, &put.resource()).await,
        vec![open_copy(&put, true)]
    );
}

pub async fn a_removal_leaves_other_resources_alone(ledger: &dyn GrantLedger) {
    let t = base_time();
    let (a, b) = (user(), user());
    let put_b = completed(
        managed(&b, LedgerOp::Put, t),
        later(t, 1),
        LedgerOutcome::Done,
    );
    intent(ledger, &put_b).await;
    outcome(ledger, &put_b).await;
    let removal_a = managed(&a, LedgerOp::Remove, later(t, 2));
    intent(ledger, &removal_a).await;
    outcome(
        ledger,
        &completed(removal_a, later(t, 3), LedgerOutcome::Done),
    )
    .await;
    assert_eq!(open_of(ledger, &put_b.resource()).await.len(), 1);
}

pub async fn entries_round_trip_every_field(ledger: &dyn GrantLedger) {
    let t = base_time();
    let role = RoleArn::parse("arn:aws:iam::123456789012:role/ops/JIT-Admin").expect("role");
    let id = RequestId::generate(t);
    let mut e = LedgerEntry::inline(
        &id,
        LedgerKind::RevokeDeny,
        LedgerOp::Put,
        &role,
        &format!("jit-revoke-{id}"),
        t,
    );
    e.remove_after = Some(later(t, 3720));
    intent(ledger, &e).await;
    let failed = completed(
        e,
        later(t, 1),
        LedgerOutcome::Failed {
            error: "LimitExceeded: inline policies at IAM's size limit".into(),
        },
    );
    outcome(ledger, &failed).await;
    assert_eq!(
        history(ledger, &failed).await,
        vec![open_copy(&failed, true)]
    );
    assert_eq!(failed.role_arn.as_ref(), Some(&role), "the path is kept");
}

pub async fn open_entries_are_oldest_first(ledger: &dyn GrantLedger) {
    let t = base_time();
    let entries: Vec<LedgerEntry> = (0..5)
        .map(|i| managed(&user(), LedgerOp::Put, later(t, 10 - 2 * i)))
        .collect();
    for e in &entries {
        intent(ledger, e).await;
    }
    let ids: Vec<String> = entries.iter().map(|e| e.entry_id.clone()).collect();
    let listed: Vec<String> = ledger
        .open_entries()
        .await
        .expect("open_entries")
        .into_iter()
        .map(|e| e.entry_id)
        .filter(|id| ids.contains(id))
        .collect();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(listed, want);
}
