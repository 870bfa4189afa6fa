//! The JIT access broker's domain: requests, their lifecycle, the catalog,
//! the rules, and the ports the outside world is reached through.
//!
//! This crate does no I/O and knows no AWS SDK: everything it needs from the
//! world comes in through the traits in [`ports`]. That keeps every decision
//! testable without a network and shared by every front door.

pub mod analytics;
pub mod assignments;
pub mod attachments;
pub mod break_glass;
pub mod catalog;
pub mod catalog_check;
pub mod channels;
pub mod decisions;
pub mod duration;
pub mod entitlements;
pub mod error;
pub mod export;
pub mod extension;
pub mod extension_links;
pub mod grant_ports;
pub mod grants_api;
pub mod identity;
pub mod identity_center;
pub mod ids;
pub mod inline_grants;
pub mod instant;
pub mod ledger;
pub mod lifecycle;
pub mod links;
pub mod policy;
pub mod policy_step;
pub mod policy_use;
pub mod ports;
pub mod reconcile;
pub mod recovery;
pub mod reports;
pub mod request;
pub mod revocation;
pub mod service;
pub mod session_policy;
pub mod tasks;
#[cfg(test)]
mod test_fakes;
pub mod trail;
pub mod usage;

pub use catalog::{Catalog, CatalogError, Entitlement};
pub use duration::GrantDuration;
pub use error::ServiceError;
pub use identity::{Caller, Identity};
pub use ids::{AccountId, IdempotencyKey, PolicyName, Principal, RequestId, RoleArn};
pub use lifecycle::Status;
pub use ports::{Clock, RequestStore, Workflow};
pub use request::{AccessRequest, AuditEvent, AuthSource, GrantTarget, Requester};
pub use service::Broker;
