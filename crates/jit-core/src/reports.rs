//! The admin listing (`GET /requests?scope=all`) and access analytics
//! (`GET /analytics`) as use cases over the store.

use std::collections::{BTreeMap, BTreeSet};

use crate::analytics::{Analytics, Params, Report};
use crate::error::ServiceError;
use crate::identity::Caller;
use crate::ports::{MAX_EVENT_PAGE, Page, PageRequest, RequestFilter};
use crate::request::{AccessRequest, AuditAction, Timestamp};
use crate::service::Broker;

/// The longest range one analytics call reads; longer trails are Athena's
/// (see the README).
pub const MAX_ANALYTICS_DAYS: i64 = 400;

/// An instant as a query gives it: RFC 3339, or a day (`2027-01-15`,
/// midnight UTC).
pub fn parse_instant(v: &str) -> Option<Timestamp> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// The range `GET /analytics` reads when the query names none: the 30
/// days before `to`.
pub fn default_from(to: Timestamp) -> Timestamp {
    to - chrono::Duration::days(30)
}

/// How many pages of a person's earlier requests are read to tell a
/// first-time use of an entitlement.
const FIRST_USE_PAGES: usize = 10;

impl Broker {
    /// The authenticated person and their groups, or 403: these views are
    /// for people, not for an app key alone.
    async fn person(
        &self,
        caller: &Caller,
    ) -> Result<(crate::Principal, Vec<String>), ServiceError> {
        match &caller.identity {
            Some(id) => Ok((
                id.principal.clone(),
                self.groups_of(&id.principal, &id.groups).await?,
            )),
            None => Err(ServiceError::forbidden(
                "not_admin",
                None,
                "only members of the catalog's admin_groups may list all requests or read analytics; the call carries no person",
            )),
        }
    }

    /// Every request, filtered and paged: members of `admin_groups` only.
    pub async fn list_all(
        &self,
        caller: &Caller,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, ServiceError> {
        let (_, groups) = self.person(caller).await?;
        if !self.catalog.is_admin(&groups) {
            return Err(ServiceError::forbidden(
                "not_admin",
                Some("scope"),
                "only members of the catalog's admin_groups may list all requests",
            ));
        }
        if let (Some(f), Some(t)) = (filter.from, filter.to)
            && f >= t
        {
            return Err(ServiceError::invalid("to", "must be after `from`"));
        }
        let page = PageRequest {
            limit: page.limit.clamp(1, PageRequest::MAX_LIMIT),
            cursor: page.cursor.clone(),
        };
        Ok(self.store.list_all(filter, &page).await?)
    }

    /// Audit events of `[from, to)`, oldest first, paged: members of
    /// `admin_groups` only. With `action`, only events of that action (a
    /// page may then hold fewer than `limit`): `rejected` lists the refused
    /// attempts, ineligible ones included, which belong to no request.
    pub async fn audit_between(
        &self,
        caller: &Caller,
        from: Timestamp,
        to: Timestamp,
        action: Option<AuditAction>,
        page: &PageRequest,
    ) -> Result<Page<crate::request::AuditEvent>, ServiceError> {
        let (_, groups) = self.person(caller).await?;
        if !self.catalog.is_admin(&groups) {
            return Err(ServiceError::forbidden(
                "not_admin",
                None,
                "only members of the catalog's admin_groups may list the audit trail",
            ));
        }
        if from >= to {
            return Err(ServiceError::invalid("to", "must be after `from`"));
        }
        let page = PageRequest {
            limit: page.limit.clamp(1, PageRequest::MAX_LIMIT),
            cursor: page.cursor.clone(),
        };
        let mut found = self.store.audit_events_between(from, to, &page).await?;
        if let Some(a) = action {
            found.items.retain(|e| e.action == a);
        }
        Ok(found)
    }

    /// Analytics for `[from, to)`: admins see every entitlement, approvers
    /// the entitlements they approve, anyone else is refused (403).
    pub async fn analytics(
        &self,
        caller: &Caller,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Report, ServiceError> {
        let (who, groups) = self.person(caller).await?;
        let entitlements = if self.catalog.is_admin(&groups) {
            None
        } else {
            let mine: BTreeSet<String> = self
                .catalog
                .entitlements()
                .iter()
                .filter(|e| self.catalog.is_approver(e, &who, &groups))
                .map(|e| e.name.clone())
                .collect();
            if mine.is_empty() {
                return Err(ServiceError::forbidden(
                    "not_admin",
                    None,
                    "analytics are for members of the catalog's admin_groups and for approvers (their entitlements)",
                ));
            }
            Some(mine)
        };
        if from >= to {
            return Err(ServiceError::invalid("to", "must be after `from`"));
        }
        if to - from > chrono::Duration::days(MAX_ANALYTICS_DAYS) {
            return Err(ServiceError::invalid(
                "from",
                format!(
                    "the range is longer than {MAX_ANALYTICS_DAYS} days; query longer trails with Athena (README, \"Analytics at scale\")"
                ),
            ));
        }
        let mut eligible: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in self.catalog.entitlements() {
            let people = eligible.entry(e.name.clone()).or_default();
            for g in &e.eligible_groups {
                people.extend(self.catalog.members_of(g).iter().map(|p| p.to_string()));
            }
        }
        let mut a = Analytics::new(Params {
            from,
            to,
            entitlements,
            working_hours: self.catalog.working_hours().clone(),
            eligible,
        });

        // The next page is read (on the store's own thread) while this one
        // is folded: reading and folding cost about the same.
        type Fetch = std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = Result<
                            Page<crate::analytics::EventDigest>,
                            crate::ports::StoreError,
                        >,
                    > + Send,
            >,
        >;
        let fetch = |cursor: Option<String>| -> Fetch {
            let store = self.store.clone();
            Box::pin(async move {
                store
                    .event_digests_between(
                        from,
                        to,
                        &PageRequest {
                            limit: MAX_EVENT_PAGE,
                            cursor,
                        },
                    )
                    .await
            })
        };
        let mut pending = fetch(None);
        loop {
            let page = pending.await?;
            let mut next = page.next_cursor.clone().map(|c| fetch(Some(c)));
            let mut ready = None;
            if let Some(n) = next.as_mut() {
                // Start it: a store call begins its work on the first poll.
                ready = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(match n.as_mut().poll(cx) {
                        std::task::Poll::Ready(r) => Some(r),
                        std::task::Poll::Pending => None,
                    })
                })
                .await;
            }
            for e in &page.items {
                a.add_digest(e);
            }
            match (next, ready) {
                (None, _) => break,
                (Some(_), Some(r)) => pending = Box::pin(std::future::ready(r)),
                (Some(n), None) => pending = n,
            }
        }
        // Requests created before the range: their created event says who
        // and what they are.
        for id in a.missing() {
            let trail = self.store.audit_events(&id).await?;
            if let Some(created) = trail.iter().find(|e| e.action == AuditAction::Created) {
                a.add_context(created);
            }
        }
        // First-time use: was the pair granted before the range?
        for (requester, entitlement) in a.granted_pairs() {
            let Ok(p) = crate::Principal::parse(requester.clone()) else {
                continue;
            };
            let filter = RequestFilter {
                requester: Some(p),
                entitlement: Some(entitlement.clone()),
                to: Some(from),
                ..Default::default()
            };
            let mut cursor = None;
            for _ in 0..FIRST_USE_PAGES {
                let page = self
                    .store
                    .list_all(
                        &filter,
                        &PageRequest {
                            limit: PageRequest::MAX_LIMIT,
                            cursor,
                        },
                    )
                    .await?;
                if page.items.iter().any(|r| r.granted_at.is_some()) {
                    a.granted_before(&requester, &entitlement);
                    break;
                }
                cursor = page.next_cursor;
                if cursor.is_none() {
                    break;
                }
            }
        }
        Ok(a.finish())
    }
}
