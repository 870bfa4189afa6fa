//! The shared `RequestStore` and `GrantLedger` behaviours, on both ways local mode opens a
//! database: in memory (tests, demos) and a WAL file on disk (jit-local).

use jit_store_sqlite::SqliteStore;

jit_testkit::store_suite!(in_memory, || async {
    SqliteStore::in_memory().expect("an in-memory database")
});

jit_testkit::store_suite!(on_disk, || async {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(&dir.path().join("jit.db")).expect("a database file");
    jit_testkit::Guarded::new(store, dir)
});

jit_testkit::ledger_suite!(ledger_in_memory, || async {
    SqliteStore::in_memory().expect("in-memory store")
});

jit_testkit::ledger_suite!(ledger_on_disk, || async {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(&dir.path().join("jit.db")).expect("a database file");
    jit_testkit::Guarded::new(store, dir)
});
