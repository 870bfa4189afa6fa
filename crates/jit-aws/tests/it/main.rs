//! This crate's integration tests, as one binary (one link instead of one
//! per file: the test build is the slow part of CI). Each module was a
//! `tests/<name>.rs` of its own; run one with `cargo test --test it <name>::`.

mod access;
mod asl_crosscheck;
mod ceiling;
mod common;
mod dynamo;
mod dynamo_suite;
mod dynamo_trail;
mod grants;
mod identity_center;
mod identity_center_fn;
mod notify;
mod policy_fn;
mod reconcile;
mod sdk;
mod sfn;
mod sfn_callback;
mod usage;
