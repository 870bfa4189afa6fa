//! This crate's integration tests, as one binary (one link instead of one
//! per file: the test build is the slow part of CI). Each module was a
//! `tests/<name>.rs` of its own; run one with `cargo test --test it <name>::`.

mod file_db;
mod suite;
mod suite_catches_faults;
mod two_connections;
