//! The shared `RequestStore` and `GrantLedger` behaviour suites, run
//! against `DynamoStore` and `DynamoLedger` on moto through the real SDK.
//! Each behaviour gets its own tables.

use crate::common;

jit_testkit::store_suite!(|| async { common::fresh_store().await });

jit_testkit::ledger_suite!(ledger, || async { common::fresh_ledger().await });
