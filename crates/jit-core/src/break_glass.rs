//! Break-glass: an eligible requester approves their own request when there
//! is no time to wait, loudly, and someone reviews it afterwards.
//!
//! An entitlement marked `break_glass: true` in the catalog (with its own
//! `max_duration`) is requested only this way (`"breakGlass": true`): the
//! justification must be at least [`MIN_JUSTIFICATION_CHARS`] characters
//! and carry an incident reference (the catalog's `incident_pattern`). The
//! request is recorded with the requester's own approval and goes through
//! the normal workflow as an approved request: Validate, Grant, RecordGranted,
//! then the Standard workflow's Wait and Revoke, every IAM change through the
//! grant ledger — so the expiry is exactly as guaranteed as any other grant's.
//! Every audit event of such a request carries the flag [`FLAG`].
//!
//! Loud: the notifier's sweep (`jit_approvals::reminders::sweep`) announces it
//! in the approvers' Slack channel and the catalog's `security_channel` and
//! emails every approver, then reminds them until one records a review
//! (`POST /requests/{id}/review`, [`Broker::review`]). The review is kept
//! on the request and in the trail; `GET /requests?review=pending`
//! ([`Broker::pending_reviews`]) lists the requests still waiting for one.

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::ServiceError;
use crate::identity::Caller;
use crate::ids::Principal;
use crate::ports::{PageRequest, RequestFilter, RequestStore, StoreError};
use crate::request::{AccessRequest, AuditAction, AuditEvent, Timestamp};
use crate::service::{Broker, MAX_JUSTIFICATION_CHARS};

/// The shortest break-glass justification: long enough to say what broke.
pub const MIN_JUSTIFICATION_CHARS: usize = 20;

/// The incident reference a justification must carry when the catalog
/// names no `incident_pattern`: a ticket key such as `INC-123`, `SEC-42`,
/// `PD-7` (upper-case letters or digits, a dash, digits).
pub const DEFAULT_INCIDENT_PATTERN: &str = r"\b[A-Z][A-Z0-9]*-[0-9]+\b";

/// The flag on every audit event of a break-glass request.
pub const FLAG: &str = "break-glass";

/// How far back the pending-review listing and the reminder sweep look.
/// Requests older than this without a review drop out of both (they stay
/// in the trail and the admin listing); a break-glass use three months old
/// and never reviewed is an audit finding, not a reminder.
pub const REVIEW_LOOKBACK_DAYS: i64 = 90;

/// The catalog's incident-reference pattern, compiled once at load.
#[derive(Debug, Clone)]
pub struct IncidentPattern {
    source: String,
    re: regex_lite::Regex,
}

impl IncidentPattern {
    /// Compiles a pattern (regular-expression syntax, as `regex-lite`
    /// takes it). An empty pattern would accept anything: refused.
    pub fn parse(source: &str) -> Result<IncidentPattern, String> {
        if source.trim().is_empty() {
            return Err("must not be empty: it is what an incident reference looks like".into());
        }
        let re = regex_lite::Regex::new(source)
            .map_err(|e| format!("is not a valid regular expression: {e}"))?;
        if re.is_match("") {
            return Err(
                "matches the empty text, so every justification would carry an incident reference"
                    .into(),
            );
        }
        Ok(IncidentPattern {
            source: source.to_string(),
            re,
        })
    }

    /// The first incident reference in `text`.
    pub fn find<'t>(&self, text: &'t str) -> Option<&'t str> {
        self.re.find(text).map(|m| m.as_str())
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl Default for IncidentPattern {
    fn default() -> Self {
        IncidentPattern::parse(DEFAULT_INCIDENT_PATTERN).expect("the default pattern compiles")
    }
}

impl PartialEq for IncidentPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for IncidentPattern {}

/// What a break-glass request carries: the incident it named and, once an
/// approver looked at it, the review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlass {
    /// The incident reference found in the justification.
    pub incident: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
}

/// An approver's verdict on a break-glass use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReviewVerdict {
    Justified,
    NotJustified,
}

impl ReviewVerdict {
    pub fn parse(s: &str) -> Option<ReviewVerdict> {
        match s {
            "justified" => Some(ReviewVerdict::Justified),
            "not-justified" => Some(ReviewVerdict::NotJustified),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewVerdict::Justified => "justified",
            ReviewVerdict::NotJustified => "not-justified",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    pub reviewer: Principal,
    pub verdict: ReviewVerdict,
    pub reason: String,
    pub at: Timestamp,
    /// The trusted caller the reviewer acted through, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_caller: Option<String>,
}

/// The notifier's bookkeeping for a break-glass request (internal: never in
/// an answer): round 0 is the announcement, then one per reminder; which
/// channels got the current round and which failed (tried again at the
/// next sweep), and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlassNotice {
    pub round: u32,
    pub last_at: Timestamp,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

impl AccessRequest {
    /// A break-glass request nobody has reviewed yet.
    pub fn awaits_review(&self) -> bool {
        self.break_glass
            .as_ref()
            .is_some_and(|b| b.review.is_none())
    }
}

/// Checks a break-glass justification and answers the incident reference
/// it carries. Each refusal is a `400` naming `justification`.
pub fn check_justification(
    pattern: &IncidentPattern,
    justification: &str,
) -> Result<String, ServiceError> {
    let n = justification.trim().chars().count();
    if n < MIN_JUSTIFICATION_CHARS {
        return Err(ServiceError::Invalid {
            code: "justification_too_short",
            field: Some("justification".into()),
            message: format!(
                "is {n} characters; a break-glass justification must be at least {MIN_JUSTIFICATION_CHARS}: say what is broken and name the incident (`INC-123: primary database down, failing over`)"
            ),
        });
    }
    match pattern.find(justification) {
        Some(incident) => Ok(incident.to_string()),
        None => Err(ServiceError::Invalid {
            code: "incident_reference_missing",
            field: Some("justification".into()),
            message: format!(
                "names no incident reference: a break-glass justification must carry one matching `{}` (the catalog's `incident_pattern`), e.g. `INC-123: primary database down`",
                pattern.as_str()
            ),
        }),
    }
}

/// Every break-glass request created in the last [`REVIEW_LOOKBACK_DAYS`]
/// that still awaits a review, newest first. Break-glass entitlements are
/// requested only as break-glass, so this reads their entries' requests.
pub async fn pending(
    store: &dyn RequestStore,
    catalog: &Catalog,
    now: Timestamp,
) -> Result<Vec<AccessRequest>, StoreError> {
    let from = now - chrono::Duration::days(REVIEW_LOOKBACK_DAYS);
    let mut out = Vec::new();
    for e in catalog.entitlements().iter().filter(|e| e.break_glass) {
        let filter = RequestFilter {
            entitlement: Some(e.name.clone()),
            from: Some(from),
            ..RequestFilter::default()
        };
        let mut cursor = None;
        loop {
            let page = store
                .list_all(
                    &filter,
                    &PageRequest {
                        limit: PageRequest::MAX_LIMIT,
                        cursor: cursor.take(),
                    },
                )
                .await?;
            out.extend(page.items.into_iter().filter(AccessRequest::awaits_review));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    out.sort_by(|a, b| b.request_id.cmp(&a.request_id));
    Ok(out)
}

impl Broker {
    /// Records an approver's review of a break-glass request. Only an
    /// approver of its entitlement, never its requester; once.
    pub async fn review(
        &self,
        caller: &Caller,
        id: &str,
        on_behalf_of: Option<&str>,
        verdict: Option<&str>,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        let verdict = match verdict {
            None => {
                return Err(ServiceError::invalid(
                    "verdict",
                    "is required: `justified` or `not-justified`",
                ));
            }
            Some(v) => ReviewVerdict::parse(v).ok_or_else(|| {
                ServiceError::invalid(
                    "verdict",
                    format!("must be `justified` or `not-justified`, not `{v}`"),
                )
            })?,
        };
        let reason = reason.unwrap_or_default();
        if reason.trim().is_empty() {
            return Err(ServiceError::invalid(
                "reason",
                "is required: say why the break-glass use was (not) justified",
            ));
        }
        if reason.chars().count() > MAX_JUSTIFICATION_CHARS {
            return Err(ServiceError::invalid(
                "reason",
                format!("must be at most {MAX_JUSTIFICATION_CHARS} characters"),
            ));
        }
        if reason
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(ServiceError::invalid(
                "reason",
                "must not contain control characters",
            ));
        }
        let (who, groups) = self
            .deciding(caller, on_behalf_of, "review")
            .await?
            .ok_or_else(|| {
                ServiceError::invalid(
                    "requester",
                    "is required when a trusted caller reviews for an approver",
                )
            })?;
        let seen_as = (who.clone(), groups.clone());
        let actor = caller.actor(&who);
        for _ in 0..3 {
            let r = self.load_visible(caller, Some(&seen_as), id).await?;
            let Some(bg) = &r.break_glass else {
                return Err(ServiceError::Conflict {
                    code: "not_break_glass",
                    field: None,
                    message:
                        "this request was not a break-glass request; there is nothing to review"
                            .into(),
                    current: Some(r.status),
                });
            };
            if who == r.requester.principal {
                self.audit_refusal(
                    &r,
                    actor.clone(),
                    "self_review",
                    "tried to review their own break-glass request".into(),
                    "api",
                )
                .await?;
                return Err(ServiceError::forbidden(
                    "self_review",
                    None,
                    "nobody reviews their own break-glass request: another approver of the entitlement must",
                ));
            }
            let is_approver = self
                .catalog
                .get(&r.entitlement)
                .is_some_and(|e| self.catalog.is_approver(e, &who, &groups));
            if !is_approver {
                self.audit_refusal(
                    &r,
                    actor.clone(),
                    "not_approver",
                    "tried to review a break-glass request without being an approver".into(),
                    "api",
                )
                .await?;
                return Err(ServiceError::forbidden(
                    "not_approver",
                    None,
                    format!(
                        "only an approver of `{}` may review its break-glass requests",
                        r.entitlement
                    ),
                ));
            }
            if let Some(done) = &bg.review {
                return Err(ServiceError::Conflict {
                    code: "already_reviewed",
                    field: None,
                    message: format!(
                        "already reviewed by {} ({}) at {}",
                        done.reviewer,
                        done.verdict.as_str(),
                        done.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    current: Some(r.status),
                });
            }
            let now = self.clock.now();
            let mut next = r.clone();
            next.version += 1;
            next.updated_at = now;
            if let Some(b) = next.break_glass.as_mut() {
                b.review = Some(Review {
                    reviewer: who.clone(),
                    verdict,
                    reason: reason.clone(),
                    at: now,
                    trusted_caller: caller.through().map(str::to_string),
                });
            }
            let event = AuditEvent::new(
                &r.request_id,
                now,
                actor.clone(),
                AuditAction::Review,
                None,
                None,
                Some(format!("{}: {reason}", verdict.as_str())),
                "api",
            );
            match self.store.transition(&r, &next, &event).await {
                Ok(()) => {
                    tracing::info!(request_id = %r.request_id, verdict = verdict.as_str(), "break-glass reviewed");
                    return Ok(next);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Unavailable {
            code: "busy",
            message: "the request kept changing while the review was written; retry".into(),
        })
    }

    /// `GET /requests?review=pending`: the break-glass requests awaiting a
    /// review that the caller may review (an approver of the entitlement,
    /// not the requester). Everything pending is answered at once:
    /// break-glass uses are rare, and the listing is bounded by
    /// [`REVIEW_LOOKBACK_DAYS`].
    pub async fn pending_reviews(
        &self,
        caller: &Caller,
        on_behalf_of: Option<&str>,
    ) -> Result<Vec<AccessRequest>, ServiceError> {
        let (who, groups) = self.acting(caller, on_behalf_of).await?.ok_or_else(|| {
            ServiceError::invalid(
                "requester",
                "is required when a trusted caller lists requests",
            )
        })?;
        let mut all = pending(self.store.as_ref(), &self.catalog, self.clock.now()).await?;
        all.retain(|r| {
            r.requester.principal != who
                && self
                    .catalog
                    .get(&r.entitlement)
                    .is_some_and(|e| self.catalog.is_approver(e, &who, &groups))
        });
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn justifications_need_twenty_characters_and_an_incident_reference() {
        let p = IncidentPattern::default();
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("INC-123: db down", Err("justification_too_short")),
            ("   INC-1  short       ", Err("justification_too_short")),
            (
                "the primary database is down, failing over",
                Err("incident_reference_missing"),
            ),
            (
                "inc-123: the primary database is down",
                Err("incident_reference_missing"),
            ),
            ("INC-123: the primary database is down", Ok("INC-123")),
            ("failing over the primary db (SEC42-7)", Ok("SEC42-7")),
            ("per PD-7, restoring the payment queue", Ok("PD-7")),
        ];
        for (text, want) in cases {
            let got = check_justification(&p, text);
            match (want, got) {
                (Ok(incident), Ok(found)) => assert_eq!(found, *incident, "{text}"),
                (Err(code), Err(ServiceError::Invalid { code: c, field, .. })) => {
                    assert_eq!(c, *code, "{text}");
                    assert_eq!(field.as_deref(), Some("justification"));
                }
                (want, got) => panic!("{text}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn a_catalog_pattern_replaces_the_default_and_bad_ones_are_refused() {
        let p = IncidentPattern::parse(r"#\d{4,}").unwrap();
        assert_eq!(
            check_justification(&p, "pager #12345: the queue is stuck").unwrap(),
            "#12345"
        );
        let err = check_justification(&p, "INC-123: the queue is stuck again").unwrap_err();
        assert!(err.to_string().contains(r"#\d{4,}"), "{err}");
        assert!(IncidentPattern::parse("").is_err());
        assert!(IncidentPattern::parse("(").unwrap_err().contains("regular"));
        assert!(IncidentPattern::parse("x*").unwrap_err().contains("empty"));
    }

    #[test]
    fn verdicts_are_the_two_words_the_api_takes() {
        assert_eq!(
            ReviewVerdict::parse("justified"),
            Some(ReviewVerdict::Justified)
        );
        assert_eq!(
            ReviewVerdict::parse("not-justified"),
            Some(ReviewVerdict::NotJustified)
        );
        assert_eq!(ReviewVerdict::parse("Justified"), None);
        assert_eq!(
            serde_json::to_value(ReviewVerdict::NotJustified).unwrap(),
            "not-justified"
        );
    }
}
