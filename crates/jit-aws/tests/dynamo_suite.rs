//! The shared `RequestStore` behaviour suite, run against `DynamoStore` on
//! moto through the real SDK. Each behaviour gets its own tables.

mod common;

jit_testkit::store_suite!(|| async { common::fresh_store().await });
