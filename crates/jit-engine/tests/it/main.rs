//! This crate's integration tests, as one binary (one link instead of one
//! per file: the test build is the slow part of CI). Each module was a
//! `tests/<name>.rs` of its own; run one with `cargo test --test it <name>::`.

mod approval_definition;
mod aws_fidelity;
mod backlog;
mod callback;
mod canned_run;
mod choice;
mod common;
mod crash;
mod driver;
mod durability;
mod history;
mod intrinsics;
mod invoke_response;
mod jsonpath;
mod load_refusals;
mod map_parallel;
mod paths;
mod perf;
mod retry_catch;
mod wait;
