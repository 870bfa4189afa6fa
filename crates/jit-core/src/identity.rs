//! Who is calling, as the front door established it.
//!
//! The front door (API Gateway's request context in Lambda, the local headers
//! in `jit-local`) builds a [`Caller`]; the core never reads identity from a
//! body field, except where a trusted caller asserts a requester.

use crate::ids::Principal;
use crate::request::AuthSource;

/// An authenticated person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub principal: Principal,
    pub auth: AuthSource,
    /// Groups the authenticator asserted (JWT claims, local header).
    pub groups: Vec<String>,
}

/// The caller of one API call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caller {
    /// The person, when the authenticator identified one.
    pub identity: Option<Identity>,
    /// Set when the calling app is a configured trusted caller (a chat bot,
    /// `jit-local`'s API key): it may name the requester in the body. The
    /// value names the trusted caller in the record's `requester.via`.
    pub trusted_as: Option<String>,
}

impl Caller {
    pub fn person(principal: Principal, auth: AuthSource, groups: Vec<String>) -> Self {
        Caller {
            identity: Some(Identity {
                principal,
                auth,
                groups,
            }),
            trusted_as: None,
        }
    }
}
