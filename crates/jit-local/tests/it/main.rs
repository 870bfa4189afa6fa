//! This crate's integration tests, as one binary (one link instead of one
//! per file: the test build is the slow part of CI). Each module was a
//! `tests/<name>.rs` of its own; run one with `cargo test --test it <name>::`.

mod access_analyzer;
mod analytics;
mod approvals;
mod asl_cli;
mod aws_grants;
mod backpressure;
mod bedrock;
mod browser;
mod chaos;
mod common;
mod grants;
mod http;
mod kill;
mod least_privilege;
mod lifecycle;
mod openapi;
mod reconcile;
