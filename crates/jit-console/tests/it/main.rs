//! jit-console's integration tests, as one binary.

mod oidc;
