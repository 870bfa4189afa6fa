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
    /// The trusted caller may also *decide* for the person it names
    /// (approve, deny, decide an extension, revoke). Configured separately:
    /// an app trusted to file requests for people is not thereby trusted
    /// to approve them.
    pub trusted_to_decide: bool,
    /// How a person identifies themself at this front door, for the
    /// `unauthenticated` refusal (`jit-local`: the `x-jit-user` header);
    /// `None`: the deployed API's wording (IAM signature or a token).
    pub identify_hint: Option<&'static str>,
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
            trusted_to_decide: false,
            identify_hint: None,
        }
    }

    /// The trusted caller acting for someone it names, when that is what
    /// this call is (no authenticated person of its own).
    pub fn through(&self) -> Option<&str> {
        match (&self.identity, &self.trusted_as) {
            (None, Some(t)) => Some(t),
            _ => None,
        }
    }

    /// How `who` appears as the actor of a record this call writes: the
    /// person, and the trusted caller they acted through when there is one
    /// (`lead@example.com via arn:aws:sts::…:assumed-role/slackbot/x`).
    pub fn actor(&self, who: &Principal) -> String {
        match self.through() {
            Some(t) => format!("{who} via {t}"),
            None => who.to_string(),
        }
    }
}
