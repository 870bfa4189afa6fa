//! This crate's integration tests, as one binary (one link instead of one
//! per file: the test build is the slow part of CI). Each module was a
//! `tests/<name>.rs` of its own; run one with `cargo test --test it <name>::`.

mod access_analyzer;
mod analytics;
mod approvals;
mod asl_cli;
mod aws_grants;
mod aws_permission_sets;
mod backpressure;
mod bedrock;
mod break_glass;
mod browser;
mod chaos;
mod common;
mod console;
mod grants;
mod http;
mod instant;
mod kill;
mod least_privilege;
mod lifecycle;
mod openapi;
mod permission_sets;
mod reconcile;
mod usage;
