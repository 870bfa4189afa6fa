//! jit-policy's integration tests, as one binary.

mod parliament;
