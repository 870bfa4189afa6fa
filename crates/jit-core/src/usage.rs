//! Used vs granted: which AWS actions an assume-role grant's sessions
//! actually called, so the catalog's entitlements can be narrowed to what
//! people use.
//!
//! After a grant ends, the scheduled sweep ([`collect_usage`]) reads the
//! access key ids the broker handed out for it (the `accessKeyId` of its
//! `credentials-issued` and `console-signin` events), asks CloudTrail for
//! the calls made with each ([`UsageSource`], `LookupEvents` by
//! `AccessKeyId` on AWS), and appends one `usage` audit event carrying a
//! [`UsageRecord`]. Analytics folds those events per entitlement
//! ([`UsedVsGrantedBuilder`]): granted actions, used actions, and a
//! suggested ceiling.
//!
//! Never here: a secret (only key *ids* are read or written), a write that
//! could count twice (the event id is derived from the request, so a retried
//! or concurrent sweep writes the same event, which stores keep once).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::RequestId;
use crate::lifecycle::Status;
use crate::ports::{PageRequest, RequestStore, StoreError};
use crate::request::{AuditAction, AuditEvent, GrantTarget, Timestamp, system_actor};

/// How long after a grant ends its usage is collected. CloudTrail's event
/// history typically shows a call within 15 minutes (not guaranteed):
/// twice that, so a late event is rarely missed.
pub const USAGE_DELAY_MINS: i64 = 30;

/// How long after [`USAGE_DELAY_MINS`] the sweep keeps trying a grant whose
/// lookup failed (throttled, CloudTrail unavailable, the sweep not running);
/// after that the grant has no `usage` event and is left out of the figures.
pub const USAGE_RETRY_HOURS: i64 = 6;

/// Grants looked up per sweep: CloudTrail allows 2 `LookupEvents` calls a
/// second per account and region, and the sweep runs every minute within
/// the Lambda's timeout; the rest wait for the next minute.
pub const MAX_GRANTS_PER_SWEEP: usize = 10;

/// Calls read per grant, all its sessions together (CloudTrail pages hold
/// 50: 20 pages, 10 s at CloudTrail's 2 calls a second). A grant whose
/// sessions made more is recorded as `truncated`, its first calls counted:
/// bounded so one busy grant cannot outlast the sweep's budget and be
/// retried from scratch every minute.
pub const MAX_CALLS_PER_GRANT: usize = 1_000;

/// Requests remembered as needing no record, at most.
const MAX_REMEMBERED: usize = 10_000;

/// Lookups start this long before the first credentials were issued (clock
/// skew between the broker and CloudTrail).
const SKEW_SECS: i64 = 300;

/// One call CloudTrail recorded for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    /// `s3.amazonaws.com`.
    pub event_source: String,
    /// `GetObject`.
    pub event_name: String,
    pub at: Timestamp,
    /// The call's `errorCode`, if it failed.
    pub error_code: Option<String>,
}

/// What a lookup found for one access key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    pub calls: Vec<ApiCall>,
    /// More calls exist than the lookup was allowed to read.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// The source refused for now (CloudTrail's rate limit): stop this
    /// sweep's lookups, try again next minute.
    #[error("usage source throttled: {0}")]
    Throttled(String),
    /// Any other failure (network, permissions): this grant is retried next
    /// minute, the others still looked up.
    #[error("usage source: {0}")]
    Failed(String),
}

/// The port: the calls made with one access key. Production: CloudTrail
/// `LookupEvents` (`jit_aws::CloudTrailUsage`). `jit-local` has none: its
/// credentials are fake and call nothing.
#[async_trait]
pub trait UsageSource: Send + Sync {
    /// Calls made with `access_key_id` between `start` and `end`, at most
    /// `max_calls` of them.
    async fn calls_by_access_key(
        &self,
        access_key_id: &str,
        start: Timestamp,
        end: Timestamp,
        max_calls: usize,
    ) -> Result<Lookup, UsageError>;
}

/// What a `usage` event records about one ended grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRecord {
    /// The access key ids looked up (ids only: never a secret).
    pub access_key_ids: Vec<String>,
    /// The time range looked up.
    pub from: Timestamp,
    pub to: Timestamp,
    /// The actions the grant's session policy allowed (patterns as written,
    /// e.g. `s3:Get*`). `None`: no session policy narrowed the grant, so the
    /// role's own policies bound it (they are not read: `*` in analytics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_actions: Option<Vec<String>>,
    /// Calls that were allowed (succeeded, or failed for another reason
    /// than authorization), per IAM action (`s3:GetObject`).
    #[serde(default)]
    pub used: BTreeMap<String, u64>,
    /// Calls refused for lack of permission, per IAM action.
    #[serde(default)]
    pub denied: BTreeMap<String, u64>,
    /// Calls read in total (events with no IAM action, like console
    /// sign-in, are counted here but in neither map).
    pub calls: u64,
    /// The sessions made more calls than were read ([`MAX_CALLS_PER_GRANT`]).
    #[serde(default)]
    pub truncated: bool,
}

/// The IAM action a CloudTrail event stands for: the event source's service
/// prefix and the event name, with the renames where the two differ for
/// common calls. `None` for events that authorize nothing (console sign-in).
/// Best effort: CloudTrail's event names are API operations, which are the
/// IAM action names for nearly every service but not all.
pub fn iam_action(event_source: &str, event_name: &str) -> Option<String> {
    let service = event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(event_source);
    if service.is_empty() || event_name.is_empty() || service == "signin" {
        return None;
    }
    let prefix = match service {
        "monitoring" => "cloudwatch",
        "email" => "ses",
        "tagging" => "tag",
        other => other,
    };
    let name = match (prefix, event_name) {
        ("s3", "ListObjects" | "ListObjectsV2" | "HeadBucket") => "ListBucket",
        ("s3", "ListObjectVersions") => "ListBucketVersions",
        ("s3", "ListBuckets") => "ListAllMyBuckets",
        ("s3", "HeadObject") => "GetObject",
        // Lambda's event names carry the API version: GetFunction20150331v2.
        ("lambda", n) => strip_api_version(n),
        (_, n) => n,
    };
    Some(format!("{prefix}:{name}"))
}

fn strip_api_version(name: &str) -> &str {
    let base = match name.rfind('v') {
        Some(i)
            if i > 0 && name[i + 1..].chars().all(|c| c.is_ascii_digit()) && i + 1 < name.len() =>
        {
            &name[..i]
        }
        _ => name,
    };
    let digits = base
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 8 && base.len() > 8 {
        &base[..base.len() - 8]
    } else {
        name
    }
}

/// Whether a call failed for lack of permission.
fn is_denial(code: &str) -> bool {
    code.contains("AccessDenied") || code.contains("UnauthorizedOperation") || code == "Forbidden"
}

/// The actions a session policy allows (its `Allow` statements' `Action`),
/// or `None` when it bounds nothing by action (no policy, unparsable, or a
/// `NotAction` allow).
pub fn granted_actions(session_policy: Option<&str>) -> Option<Vec<String>> {
    let doc: serde_json::Value = serde_json::from_str(session_policy?).ok()?;
    let statements = match doc.get("Statement")? {
        serde_json::Value::Array(a) => a.clone(),
        one @ serde_json::Value::Object(_) => vec![one.clone()],
        _ => return None,
    };
    let mut out = BTreeSet::new();
    for st in &statements {
        if st.get("Effect").and_then(|e| e.as_str()) != Some("Allow") {
            continue;
        }
        if st.get("NotAction").is_some() {
            return None;
        }
        match st.get("Action") {
            Some(serde_json::Value::String(a)) => {
                out.insert(a.clone());
            }
            Some(serde_json::Value::Array(list)) => {
                out.extend(list.iter().filter_map(|a| a.as_str().map(str::to_string)));
            }
            _ => {}
        }
    }
    Some(out.into_iter().collect())
}

/// IAM's action matching: case-insensitive, `*` any run, `?` one character.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], a) || (!a.is_empty() && go(p, &a[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => go(&p[1..], &a[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// Folds the calls of a grant's sessions into its record.
pub fn record(
    access_key_ids: Vec<String>,
    from: Timestamp,
    to: Timestamp,
    granted_actions: Option<Vec<String>>,
    lookups: &[Lookup],
) -> UsageRecord {
    let mut r = UsageRecord {
        access_key_ids,
        from,
        to,
        granted_actions,
        ..Default::default()
    };
    for l in lookups {
        r.truncated |= l.truncated;
        for c in &l.calls {
            r.calls += 1;
            let Some(action) = iam_action(&c.event_source, &c.event_name) else {
                continue;
            };
            let map = match &c.error_code {
                Some(code) if is_denial(code) => &mut r.denied,
                _ => &mut r.used,
            };
            *map.entry(action).or_default() += 1;
        }
    }
    r
}

/// The id of a request's `usage` event: a ULID of `at` whose random part is
/// derived from the request id, so every sweep that records the same grant
/// writes the same event — stores keep the first (their `append_audit` is
/// idempotent per event id) and nothing is counted twice.
pub fn usage_event_id(request_id: &RequestId, at: Timestamp) -> String {
    let digest = Sha256::digest(format!("usage:{request_id}").as_bytes());
    let mut bits = [0u8; 16];
    bits[6..].copy_from_slice(&digest[..10]);
    let random = u128::from_be_bytes(bits);
    let ms = at.timestamp_millis().max(0) as u64;
    ulid::Ulid::from_parts(ms, random).to_string()
}

/// The access key ids a request's trail says the broker issued, in order,
/// each once. Events written before `accessKeyId` was a field name it in
/// their reason only (`… access key id ASIA…, …`).
pub fn issued_key_ids(trail: &[AuditEvent]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for e in trail {
        if !matches!(
            e.action,
            AuditAction::CredentialsIssued | AuditAction::ConsoleSignin
        ) {
            continue;
        }
        let id = e.access_key_id.clone().or_else(|| {
            let reason = e.reason.as_deref()?;
            let rest = &reason[reason.find("access key id ")? + "access key id ".len()..];
            let id: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            (!id.is_empty()).then_some(id)
        });
        if let Some(id) = id
            && seen.insert(id.clone())
        {
            out.push(id);
        }
    }
    out
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageSweepReport {
    /// `usage` events written.
    pub recorded: u32,
    /// Ended grants still to look up (next minute: over the per-sweep
    /// budget, or the source throttled).
    pub pending: u32,
    /// Grants whose lookup failed (retried next minute until
    /// [`USAGE_RETRY_HOURS`] after they became due).
    pub failed: u32,
}

/// The sweep's use case: records the usage of assume-role grants that ended
/// at least [`USAGE_DELAY_MINS`] ago. Keep one for the life of the process:
/// it remembers requests found to need no record (attach-policy grants,
/// requests never granted), so their trails are read once, not every minute.
pub struct UsageCollector {
    not_applicable: Mutex<HashSet<String>>,
    /// No grant is started once a pass has run this long (the grant under
    /// way finishes: at most [`MAX_CALLS_PER_GRANT`] more calls).
    budget: std::time::Duration,
}

impl Default for UsageCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl UsageCollector {
    /// A collector that starts grants during the first 10 s of a pass.
    pub fn new() -> Self {
        Self::with_budget(std::time::Duration::from_secs(10))
    }

    pub fn with_budget(budget: std::time::Duration) -> Self {
        UsageCollector {
            not_applicable: Mutex::new(HashSet::new()),
            budget,
        }
    }

    /// One pass at `now`. Reads the audit events of the last
    /// [`USAGE_DELAY_MINS`] + [`USAGE_RETRY_HOURS`] by time: the grants that
    /// ended in the retry window, and the `usage` events already written for
    /// them (a `usage` event's time is its grant's end plus the delay, which
    /// falls in the same read).
    pub async fn collect(
        &self,
        store: &dyn RequestStore,
        source: &dyn UsageSource,
        now: Timestamp,
    ) -> Result<UsageSweepReport, StoreError> {
        let delay = chrono::Duration::minutes(USAGE_DELAY_MINS);
        let from = now - delay - chrono::Duration::hours(USAGE_RETRY_HOURS);
        let due_by = now - delay;
        let mut ended: BTreeMap<String, Timestamp> = BTreeMap::new();
        let mut recorded: HashSet<String> = HashSet::new();
        let mut page = PageRequest {
            limit: crate::ports::MAX_EVENT_PAGE,
            cursor: None,
        };
        loop {
            let p = store.event_digests_between(from, now, &page).await?;
            for d in &p.items {
                match d.action {
                    AuditAction::Usage => {
                        recorded.insert(d.request_id.clone());
                    }
                    AuditAction::Transition
                        if matches!(
                            d.to,
                            Some(Status::Expired | Status::Revoked | Status::Failed)
                        ) && d.at <= due_by =>
                    {
                        ended.entry(d.request_id.clone()).or_insert(d.at);
                    }
                    _ => {}
                }
            }
            match p.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        let mut due: Vec<(Timestamp, String)> = {
            let skip = self.not_applicable.lock().expect("not poisoned");
            ended
                .into_iter()
                .filter(|(id, _)| !recorded.contains(id) && !skip.contains(id))
                .map(|(id, at)| (at, id))
                .collect()
        };
        due.sort();
        let mut report = UsageSweepReport::default();
        let mut looked_up = 0;
        let mut throttled = false;
        let started = std::time::Instant::now();
        for (ended_at, id) in due {
            if throttled || looked_up >= MAX_GRANTS_PER_SWEEP || started.elapsed() >= self.budget {
                report.pending += 1;
                continue;
            }
            let Ok(request_id) = RequestId::parse(id.as_str()) else {
                continue;
            };
            let trail = store.audit_events(&request_id).await?;
            let Some(plan) = plan(&trail) else {
                let mut skip = self.not_applicable.lock().expect("not poisoned");
                // Bounded: forgetting only costs one more trail read each.
                if skip.len() >= MAX_REMEMBERED {
                    skip.clear();
                }
                skip.insert(id);
                continue;
            };
            looked_up += 1;
            let mut lookups: Vec<Lookup> = Vec::with_capacity(plan.keys.len());
            let mut failure = None;
            let mut left = MAX_CALLS_PER_GRANT;
            for key in &plan.keys {
                if left == 0 {
                    // Keys not read at all: the record says it is partial.
                    lookups.push(Lookup {
                        calls: vec![],
                        truncated: true,
                    });
                    break;
                }
                match source.calls_by_access_key(key, plan.from, now, left).await {
                    Ok(l) => {
                        left = left.saturating_sub(l.calls.len());
                        lookups.push(l)
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            match failure {
                Some(e @ UsageError::Throttled(_)) => {
                    tracing::warn!(request_id = %request_id, error = %e, "usage lookup throttled; the rest wait for the next sweep");
                    throttled = true;
                    report.pending += 1;
                    continue;
                }
                Some(e) => {
                    tracing::warn!(request_id = %request_id, error = %e, "usage lookup failed; retried next sweep");
                    report.failed += 1;
                    continue;
                }
                None => {}
            }
            let rec = record(plan.keys, plan.from, now, plan.granted, &lookups);
            let at = ended_at + delay;
            let event = AuditEvent {
                event_id: usage_event_id(&request_id, at),
                entitlement: Some(plan.entitlement),
                reason: Some(format!(
                    "{} calls by {} sessions (CloudTrail): {} actions used, {} refused{}",
                    rec.calls,
                    rec.access_key_ids.len(),
                    rec.used.len(),
                    rec.denied.len(),
                    if rec.truncated { "; truncated" } else { "" }
                )),
                usage: Some(Box::new(rec)),
                ..AuditEvent::new(
                    &request_id,
                    at,
                    system_actor("usage"),
                    AuditAction::Usage,
                    None,
                    None,
                    None,
                    "sweep",
                )
            };
            store.append_audit(&event).await?;
            tracing::info!(request_id = %request_id, "usage recorded");
            report.recorded += 1;
        }
        Ok(report)
    }
}

/// What to look up for one ended request, or `None` if it needs no record.
struct Plan {
    entitlement: String,
    keys: Vec<String>,
    from: Timestamp,
    granted: Option<Vec<String>>,
}

fn plan(trail: &[AuditEvent]) -> Option<Plan> {
    let snapshot = trail
        .iter()
        .find(|e| e.action == AuditAction::Created)
        .and_then(|e| e.snapshot.as_deref())?;
    if !matches!(snapshot.target, GrantTarget::AssumeRole { .. }) {
        return None;
    }
    let granted_at = trail.iter().find_map(|e| {
        (e.action == AuditAction::Transition && e.to == Some(Status::Granted)).then_some(e.at)
    })?;
    // The record as it was when the grant ended: its session policy may
    // have been chosen after creation.
    let session_policy = crate::trail::replay(trail)
        .and_then(|r| r.session_policy)
        .or_else(|| snapshot.session_policy.clone());
    let keys = issued_key_ids(trail);
    let first_issued = trail
        .iter()
        .filter(|e| {
            matches!(
                e.action,
                AuditAction::CredentialsIssued | AuditAction::ConsoleSignin
            )
        })
        .map(|e| e.at)
        .min()
        .unwrap_or(granted_at);
    Some(Plan {
        entitlement: snapshot.entitlement.clone(),
        keys,
        from: first_issued.min(granted_at) - chrono::Duration::seconds(SKEW_SECS),
        granted: granted_actions(session_policy.as_deref()),
    })
}

/// Used vs granted for one entitlement, over the `usage` events of a range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntitlementUsage {
    /// Ended grants with a `usage` event.
    pub grants: u64,
    /// Of them, grants whose sessions made no allowed call (including
    /// grants whose credentials were never fetched).
    pub unused_grants: u64,
    /// Access keys looked up.
    pub sessions: u64,
    pub calls: u64,
    /// Grants with more calls than were read.
    pub truncated: u64,
    /// The union of what the grants allowed: their session policies'
    /// actions, or `*` when a grant had none (the role's policies bounded it).
    pub granted_actions: Vec<String>,
    /// Allowed calls per action.
    pub used_actions: BTreeMap<String, u64>,
    /// Refused calls per action: needed, not granted.
    pub denied_actions: BTreeMap<String, u64>,
    /// Granted patterns no used action matched (empty when granted is `*`).
    pub unused_granted_actions: Vec<String>,
    /// The catalog ceiling these grants would have needed: the actions
    /// used, sorted. Refused calls are not in it (review `deniedActions`).
    pub suggested_ceiling: Vec<String>,
}

/// The `usage.usedVsGranted` figure of `GET /analytics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsedVsGranted {
    pub events: String,
    pub by_entitlement: BTreeMap<String, EntitlementUsage>,
}

/// Accumulates [`UsageRecord`]s per entitlement.
#[derive(Debug, Default)]
pub struct UsedVsGrantedBuilder {
    by: BTreeMap<String, (EntitlementUsage, BTreeSet<String>, bool)>,
}

impl UsedVsGrantedBuilder {
    pub fn add(&mut self, entitlement: &str, r: &UsageRecord) {
        let (e, granted, unbounded) = self.by.entry(entitlement.to_string()).or_default();
        e.grants += 1;
        e.sessions += r.access_key_ids.len() as u64;
        e.calls += r.calls;
        e.truncated += u64::from(r.truncated);
        if r.used.is_empty() {
            e.unused_grants += 1;
        }
        for (a, n) in &r.used {
            *e.used_actions.entry(a.clone()).or_default() += n;
        }
        for (a, n) in &r.denied {
            *e.denied_actions.entry(a.clone()).or_default() += n;
        }
        match &r.granted_actions {
            Some(list) => granted.extend(list.iter().cloned()),
            None => *unbounded = true,
        }
    }

    pub fn finish(self) -> UsedVsGranted {
        let by_entitlement = self
            .by
            .into_iter()
            .map(|(name, (mut e, granted, unbounded))| {
                if unbounded {
                    e.granted_actions = vec!["*".into()];
                } else {
                    e.unused_granted_actions = granted
                        .iter()
                        .filter(|p| !e.used_actions.keys().any(|a| action_matches(p, a)))
                        .cloned()
                        .collect();
                    e.granted_actions = granted.into_iter().collect();
                }
                e.suggested_ceiling = e.used_actions.keys().cloned().collect();
                (name, e)
            })
            .collect();
        UsedVsGranted {
            events: "usage events (one per ended assume-role grant, written by the scheduled sweep from CloudTrail LookupEvents by the access key ids of its credentials-issued and console-signin events), by the time they were due: the grant's end + 30 min".into(),
            by_entitlement,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudtrail_events_name_iam_actions() {
        for (source, name, want) in [
            ("s3.amazonaws.com", "GetObject", Some("s3:GetObject")),
            ("s3.amazonaws.com", "ListObjectsV2", Some("s3:ListBucket")),
            ("s3.amazonaws.com", "HeadObject", Some("s3:GetObject")),
            (
                "s3.amazonaws.com",
                "ListBuckets",
                Some("s3:ListAllMyBuckets"),
            ),
            (
                "monitoring.amazonaws.com",
                "GetMetricData",
                Some("cloudwatch:GetMetricData"),
            ),
            (
                "lambda.amazonaws.com",
                "GetFunction20150331v2",
                Some("lambda:GetFunction"),
            ),
            (
                "lambda.amazonaws.com",
                "ListFunctions20150331",
                Some("lambda:ListFunctions"),
            ),
            ("lambda.amazonaws.com", "Invoke", Some("lambda:Invoke")),
            (
                "ec2.amazonaws.com",
                "DescribeInstances",
                Some("ec2:DescribeInstances"),
            ),
            ("signin.amazonaws.com", "ConsoleLogin", None),
            ("", "X", None),
        ] {
            assert_eq!(iam_action(source, name).as_deref(), want, "{source} {name}");
        }
    }

    #[test]
    fn session_policies_give_their_allowed_actions() {
        let p = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":["s3:GetObject","s3:List*"],"Resource":"*"},
            {"Effect":"Allow","Action":"ec2:DescribeInstances","Resource":"*"},
            {"Effect":"Deny","Action":"*","Resource":"*"}]}"#;
        assert_eq!(
            granted_actions(Some(p)).unwrap(),
            vec!["ec2:DescribeInstances", "s3:GetObject", "s3:List*"]
        );
        assert_eq!(granted_actions(None), None);
        assert_eq!(granted_actions(Some("not json")), None);
        let not_action = r#"{"Statement":{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}}"#;
        assert_eq!(granted_actions(Some(not_action)), None);
    }

    #[test]
    fn action_patterns_match_as_iam_does() {
        assert!(action_matches("s3:Get*", "s3:GetObject"));
        assert!(action_matches("S3:getobject", "s3:GetObject"));
        assert!(action_matches("*", "ec2:DescribeInstances"));
        assert!(action_matches(
            "ec2:Describe?nstances",
            "ec2:DescribeInstances"
        ));
        assert!(!action_matches("s3:Put*", "s3:GetObject"));
        assert!(!action_matches("s3:GetObject", "s3:GetObjectAcl"));
    }

    #[test]
    fn key_ids_come_from_the_field_or_from_older_events_reason() {
        let at = chrono::Utc::now();
        let id = RequestId::generate(at);
        let mut a = AuditEvent::new(
            &id,
            at,
            "alice".into(),
            AuditAction::CredentialsIssued,
            None,
            None,
            Some("credentials issued: access key id ASIAOLD1, valid 900 s, until x".into()),
            "api",
        );
        a.access_key_id = None;
        let mut b = AuditEvent::new(
            &id,
            at,
            "alice".into(),
            AuditAction::ConsoleSignin,
            None,
            None,
            Some("console sign-in URL issued: session access key id ASIANEW2, until x".into()),
            "api",
        );
        b.access_key_id = Some("ASIANEW2".into());
        let again = a.clone();
        let note = AuditEvent::new(
            &id,
            at,
            "x".into(),
            AuditAction::Note,
            None,
            None,
            Some("access key id ASIANOPE".into()),
            "api",
        );
        assert_eq!(
            issued_key_ids(&[a, note, b, again]),
            vec!["ASIAOLD1", "ASIANEW2"]
        );
    }

    #[test]
    fn usage_event_ids_are_stable_per_request_and_sort_at_their_time() {
        let at = chrono::Utc::now();
        let a = RequestId::generate(at);
        let b = RequestId::generate(at);
        assert_eq!(usage_event_id(&a, at), usage_event_id(&a, at));
        assert_ne!(usage_event_id(&a, at), usage_event_id(&b, at));
        let ulid = ulid::Ulid::from_string(&usage_event_id(&a, at)).unwrap();
        assert_eq!(ulid.timestamp_ms(), at.timestamp_millis() as u64);
    }

    /// A source that answers from a script: per key, calls or an error;
    /// every lookup logged.
    #[derive(Default)]
    struct Scripted {
        errors: std::collections::HashMap<String, UsageError>,
        asked: Mutex<Vec<String>>,
        /// Calls each key made (default 1).
        calls_per_key: Option<usize>,
        /// The `max_calls` of each lookup.
        max_asked: Mutex<Vec<usize>>,
    }

    #[async_trait]
    impl UsageSource for Scripted {
        async fn calls_by_access_key(
            &self,
            key: &str,
            _: Timestamp,
            _: Timestamp,
            max: usize,
        ) -> Result<Lookup, UsageError> {
            self.asked.lock().unwrap().push(key.to_string());
            self.max_asked.lock().unwrap().push(max);
            let made = self.calls_per_key.unwrap_or(1);
            match self.errors.get(key) {
                Some(e) => Err(e.clone()),
                None => Ok(Lookup {
                    calls: vec![
                        call("ec2.amazonaws.com", "DescribeInstances", None);
                        made.min(max)
                    ],
                    truncated: made > max,
                }),
            }
        }
    }

    /// `n` assume-role grants that ended `ended_mins_ago`, one credential
    /// set each (key `KEY<i>`), oldest first.
    async fn ended(
        store: &crate::test_fakes::MemoryStore,
        n: usize,
        now: Timestamp,
    ) -> Vec<RequestId> {
        let mut ids = vec![];
        for i in 0..n {
            let at = now - chrono::Duration::hours(3) + chrono::Duration::seconds(i as i64);
            let r = crate::request::tests::sample(at);
            store
                .create(
                    &r,
                    &AuditEvent::new(
                        &r.request_id,
                        at,
                        "alice".into(),
                        AuditAction::Created,
                        None,
                        Some(Status::Requested),
                        None,
                        "test",
                    ),
                )
                .await
                .unwrap();
            let mut cur = r;
            for (to, secs) in [
                (Status::Validating, 1),
                (Status::Approved, 2),
                (Status::Granted, 3),
                (Status::Expired, 3_600 + i as i64),
            ] {
                let change = crate::request::Change {
                    actor: "system:workflow".into(),
                    at: at + chrono::Duration::seconds(secs),
                    reason: None,
                    source: "test",
                };
                if to == Status::Expired {
                    let mut e = AuditEvent::new(
                        &cur.request_id,
                        at + chrono::Duration::seconds(10),
                        "alice".into(),
                        AuditAction::CredentialsIssued,
                        None,
                        None,
                        None,
                        "api",
                    );
                    e.access_key_id = Some(format!("KEY{i}"));
                    store.append_audit(&e).await.unwrap();
                }
                let (next, event) = cur.transition(to, &change).unwrap();
                store.transition(&cur, &next, &event).await.unwrap();
                cur = next;
            }
            ids.push(cur.request_id);
        }
        ids
    }

    fn usage_count(store: &crate::test_fakes::MemoryStore) -> usize {
        store
            .all_events()
            .iter()
            .filter(|e| e.action == AuditAction::Usage)
            .count()
    }

    #[tokio::test]
    async fn a_sweep_looks_up_ten_grants_at_most_and_the_next_takes_the_rest() {
        // GIVEN twelve ended grants
        let store = crate::test_fakes::MemoryStore::default();
        let now = chrono::Utc::now();
        ended(&store, 12, now).await;
        let source = Scripted::default();
        let c = UsageCollector::new();

        // WHEN the sweep runs twice, then a third time
        let first = c.collect(&store, &source, now).await.unwrap();
        let second = c
            .collect(&store, &source, now + chrono::Duration::minutes(1))
            .await
            .unwrap();
        let third = c
            .collect(&store, &source, now + chrono::Duration::minutes(2))
            .await
            .unwrap();

        // THEN ten, then the two left, then nothing; each key asked once
        assert_eq!((first.recorded, first.pending), (10, 2));
        assert_eq!((second.recorded, second.pending), (2, 0));
        assert_eq!(third, UsageSweepReport::default());
        assert_eq!(usage_count(&store), 12);
        let mut asked = source.asked.lock().unwrap().clone();
        asked.sort();
        asked.dedup();
        assert_eq!(asked.len(), 12);
        assert_eq!(source.asked.lock().unwrap().len(), 12);
    }

    #[tokio::test]
    async fn throttling_stops_the_sweep_and_a_failed_lookup_is_retried_not_recorded() {
        // GIVEN three ended grants: CloudTrail refuses the first's key and
        // throttles the second's
        let store = crate::test_fakes::MemoryStore::default();
        let now = chrono::Utc::now();
        ended(&store, 3, now).await;
        let mut source = Scripted::default();
        source
            .errors
            .insert("KEY0".into(), UsageError::Failed("AccessDenied".into()));
        source
            .errors
            .insert("KEY1".into(), UsageError::Throttled("slow down".into()));
        let c = UsageCollector::new();

        // WHEN the sweep runs
        let report = c.collect(&store, &source, now).await.unwrap();

        // THEN nothing recorded: one failed, the throttled one and the one
        // after it wait (the third key was not asked)
        assert_eq!(
            report,
            UsageSweepReport {
                recorded: 0,
                pending: 2,
                failed: 1
            }
        );
        assert_eq!(usage_count(&store), 0);
        assert_eq!(*source.asked.lock().unwrap(), vec!["KEY0", "KEY1"]);

        // WHEN CloudTrail recovers THEN the next sweep records all three
        let report = c
            .collect(
                &store,
                &Scripted::default(),
                now + chrono::Duration::minutes(1),
            )
            .await
            .unwrap();
        assert_eq!(report.recorded, 3);
        assert_eq!(usage_count(&store), 3);
    }

    #[tokio::test]
    async fn a_pass_starts_no_grant_past_its_budget_and_reads_a_grant_up_to_its_cap() {
        // GIVEN two ended grants
        let store = crate::test_fakes::MemoryStore::default();
        let now = chrono::Utc::now();
        ended(&store, 2, now).await;
        // WHEN a pass has no time budget THEN both wait, nothing is asked
        let source = Scripted::default();
        let none = UsageCollector::with_budget(std::time::Duration::ZERO)
            .collect(&store, &source, now)
            .await
            .unwrap();
        assert_eq!((none.recorded, none.pending), (0, 2));
        assert!(source.asked.lock().unwrap().is_empty());

        // GIVEN a grant whose two sessions made 700 calls each
        let store = crate::test_fakes::MemoryStore::default();
        let ids = ended(&store, 1, now).await;
        let mut e = AuditEvent::new(
            &ids[0],
            now - chrono::Duration::hours(2) - chrono::Duration::minutes(30),
            "alice".into(),
            AuditAction::CredentialsIssued,
            None,
            None,
            None,
            "api",
        );
        e.access_key_id = Some("KEY-B".into());
        store.append_audit(&e).await.unwrap();
        let source = Scripted {
            calls_per_key: Some(700),
            ..Default::default()
        };
        // WHEN the sweep records it
        let c = UsageCollector::new();
        assert_eq!(c.collect(&store, &source, now).await.unwrap().recorded, 1);
        // THEN the second session is read up to what the grant has left,
        // and the record says it is partial
        assert_eq!(
            *source.max_asked.lock().unwrap(),
            vec![MAX_CALLS_PER_GRANT, MAX_CALLS_PER_GRANT - 700]
        );
        let rec = store
            .all_events()
            .into_iter()
            .find_map(|e| e.usage)
            .unwrap();
        assert_eq!(rec.calls, MAX_CALLS_PER_GRANT as u64);
        assert!(rec.truncated);
    }

    #[tokio::test]
    async fn a_grant_is_not_due_before_the_delay_nor_after_the_retry_window() {
        let store = crate::test_fakes::MemoryStore::default();
        let now = chrono::Utc::now();
        ended(&store, 1, now).await; // ended 2 h ago
        let source = Scripted::default();
        let c = UsageCollector::new();
        // 10 minutes after it ended: not due
        let soon = now - chrono::Duration::hours(2) + chrono::Duration::minutes(10);
        assert_eq!(
            c.collect(&store, &source, soon).await.unwrap(),
            UsageSweepReport::default()
        );
        // 7 hours after it ended: out of the retry window
        let late = now + chrono::Duration::hours(5);
        assert_eq!(
            c.collect(&store, &source, late).await.unwrap(),
            UsageSweepReport::default()
        );
        assert!(source.asked.lock().unwrap().is_empty());
        assert_eq!(usage_count(&store), 0);
    }

    fn call(source: &str, name: &str, error: Option<&str>) -> ApiCall {
        ApiCall {
            event_source: source.into(),
            event_name: name.into(),
            at: chrono::Utc::now(),
            error_code: error.map(str::to_string),
        }
    }

    #[test]
    fn records_split_allowed_and_refused_calls_and_aggregate_per_entitlement() {
        let t = chrono::Utc::now();
        let one = record(
            vec!["ASIA1".into()],
            t,
            t,
            Some(vec!["s3:Get*".into(), "s3:List*".into(), "ec2:*".into()]),
            &[Lookup {
                calls: vec![
                    call("s3.amazonaws.com", "GetObject", None),
                    call("s3.amazonaws.com", "GetObject", Some("NoSuchKey")),
                    call("s3.amazonaws.com", "PutObject", Some("AccessDenied")),
                    call("signin.amazonaws.com", "ConsoleLogin", None),
                ],
                truncated: false,
            }],
        );
        assert_eq!(one.calls, 4);
        assert_eq!(one.used, BTreeMap::from([("s3:GetObject".into(), 2)]));
        assert_eq!(one.denied, BTreeMap::from([("s3:PutObject".into(), 1)]));
        let idle = record(vec![], t, t, Some(vec!["s3:GetObject".into()]), &[]);
        let mut b = UsedVsGrantedBuilder::default();
        b.add("Reader", &one);
        b.add("Reader", &idle);
        let unbounded = record(
            vec!["ASIA2".into()],
            t,
            t,
            None,
            &[Lookup {
                calls: vec![call("ec2.amazonaws.com", "DescribeInstances", None)],
                truncated: true,
            }],
        );
        b.add("Admin", &unbounded);
        let out = b.finish();
        let r = &out.by_entitlement["Reader"];
        assert_eq!(
            (r.grants, r.unused_grants, r.sessions, r.calls),
            (2, 1, 1, 4)
        );
        assert_eq!(
            r.granted_actions,
            vec!["ec2:*", "s3:Get*", "s3:GetObject", "s3:List*"]
        );
        assert_eq!(r.unused_granted_actions, vec!["ec2:*", "s3:List*"]);
        assert_eq!(r.suggested_ceiling, vec!["s3:GetObject"]);
        assert_eq!(r.denied_actions["s3:PutObject"], 1);
        let a = &out.by_entitlement["Admin"];
        assert_eq!(a.granted_actions, vec!["*"]);
        assert!(a.unused_granted_actions.is_empty());
        assert_eq!(
            (a.truncated, a.suggested_ceiling.clone()),
            (1, vec!["ec2:DescribeInstances".to_string()])
        );
    }
}
