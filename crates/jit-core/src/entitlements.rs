//! What a caller may ask for: the catalog seen from one requester, so that
//! nobody has to guess entitlement names (`GET /entitlements`,
//! `jit entitlements`).

use crate::catalog::Entitlement;
use crate::error::ServiceError;
use crate::identity::Caller;
use crate::service::Broker;

/// One entry of the caller's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requestable<'a> {
    pub entitlement: &'a Entitlement,
    /// The caller's own request within the rule's duration would be
    /// approved without a person. `None` when the caller is a trusted app
    /// naming nobody (it depends on whom it asks for).
    pub auto_approved_for_you: Option<bool>,
}

impl Broker {
    /// The entitlements the caller may request, in catalog order: those
    /// whose `eligible_groups` admit the caller's groups (asserted plus the
    /// catalog's own memberships). A trusted caller naming nobody (`requester`
    /// in `on_behalf_of`, else none) sees every entry, since it may file for
    /// anyone.
    pub async fn requestable(
        &self,
        caller: &Caller,
        on_behalf_of: Option<&str>,
    ) -> Result<Vec<Requestable<'_>>, ServiceError> {
        let who = self.acting(caller, on_behalf_of).await?;
        Ok(self
            .catalog
            .entitlements()
            .iter()
            .filter_map(|e| match &who {
                Some((_, groups)) => self.catalog.is_eligible(e, groups).then(|| Requestable {
                    entitlement: e,
                    auto_approved_for_you: Some(
                        e.auto_approve
                            .as_ref()
                            .is_some_and(|a| a.groups.iter().any(|g| groups.contains(g))),
                    ),
                }),
                None => Some(Requestable {
                    entitlement: e,
                    auto_approved_for_you: None,
                }),
            })
            .collect())
    }
}
