//! Access analytics: patterns, usage and security figures computed from
//! audit events alone — a pure function, no I/O.
//!
//! The input is the audit events of a time range (read by time from the
//! store, see `RequestStore::audit_events_between`), fed one at a time to
//! [`Analytics::add`], so memory holds one small record per request, not the
//! events. Requests with events in the range but created before it need
//! their `created` event for who and what they are: [`Analytics::missing`]
//! names them and [`Analytics::add_context`] takes them. Every figure in the
//! [`Report`] says which events it counts (`events`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{Datelike, FixedOffset, Timelike};
use serde::{Deserialize, Serialize};

use crate::ids::RequestId;
use crate::lifecycle::Status;
use crate::request::{AuditAction, AuditEvent, Timestamp};

/// Approvals decided this soon after the request are "rubber-stamped".
pub const RUBBER_STAMP_SECS: i64 = 60;

/// When people are expected to work: grants outside these hours are a
/// security figure. Catalog key `working_hours`; default Monday to Friday,
/// 09:00-18:00 UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingHours {
    /// Monday first.
    pub days: [bool; 7],
    /// Minutes after midnight, local time; `start < end`.
    pub start_min: u32,
    pub end_min: u32,
    /// A fixed UTC offset: named zones with daylight saving would need the
    /// tz database in the `request` Lambda, which its size limit forbids.
    pub offset: FixedOffset,
}

impl Default for WorkingHours {
    fn default() -> Self {
        WorkingHours {
            days: [true, true, true, true, true, false, false],
            start_min: 9 * 60,
            end_min: 18 * 60,
            offset: FixedOffset::east_opt(0).expect("UTC"),
        }
    }
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The catalog's `working_hours` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkingHours {
    #[serde(default)]
    pub days: Option<Vec<String>>,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    #[serde(default)]
    pub time_zone: Option<String>,
}

impl WorkingHours {
    /// Parses the catalog's entry; the error names the sub-field.
    pub fn parse(raw: &RawWorkingHours) -> Result<WorkingHours, (&'static str, String)> {
        let mut wh = WorkingHours::default();
        if let Some(days) = &raw.days {
            wh.days = [false; 7];
            for d in days {
                let i = DAY_NAMES
                    .iter()
                    .position(|n| d.eq_ignore_ascii_case(n))
                    .ok_or(("days", format!("`{d}` is not a day; use mon, tue, … sun")))?;
                wh.days[i] = true;
            }
        }
        let hm = |field: &'static str, s: &str| -> Result<u32, (&'static str, String)> {
            let bad = || (field, format!("`{s}` is not a time of day like 09:00"));
            let (h, m) = s.split_once(':').ok_or_else(bad)?;
            let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            if h > 24 || m > 59 || (h == 24 && m > 0) {
                return Err(bad());
            }
            Ok(h * 60 + m)
        };
        if let Some(s) = &raw.start {
            wh.start_min = hm("start", s)?;
        }
        if let Some(s) = &raw.end {
            wh.end_min = hm("end", s)?;
        }
        if wh.start_min >= wh.end_min {
            return Err(("end", "must be after `start`".into()));
        }
        if let Some(tz) = &raw.time_zone {
            wh.offset = parse_offset(tz).ok_or((
                "time_zone",
                format!("`{tz}` is not UTC or a fixed offset like +01:00 (named zones are not supported)"),
            ))?;
        }
        Ok(wh)
    }

    /// Whether `at` falls inside working hours.
    pub fn contains(&self, at: Timestamp) -> bool {
        let local = at.with_timezone(&self.offset);
        let day = local.weekday().num_days_from_monday() as usize;
        let min = local.hour() * 60 + local.minute();
        self.days[day] && min >= self.start_min && min < self.end_min
    }

    /// The zone as shown in reports: `UTC` or `+HH:MM`.
    pub fn zone_label(&self) -> String {
        let secs = self.offset.local_minus_utc();
        if secs == 0 {
            return "UTC".into();
        }
        let sign = if secs < 0 { '-' } else { '+' };
        let a = secs.abs();
        format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
    }
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return FixedOffset::east_opt(0);
    }
    let sign = match s.chars().next()? {
        '+' => 1,
        '-' => -1,
        _ => return None,
    };
    let (h, m) = s[1..].split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if !(0..=14).contains(&h) || !(0..60).contains(&m) || s[1..].len() != 5 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// What a report covers and the knowledge it needs besides the events.
#[derive(Debug, Clone)]
pub struct Params {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Only requests for these entitlements (an approver's view); `None`: all.
    pub entitlements: Option<BTreeSet<String>>,
    pub working_hours: WorkingHours,
    /// Per entitlement, the people the catalog knows to be eligible (members
    /// of its `eligible_groups`): the standing access a JIT grant replaces.
    pub eligible: BTreeMap<String, BTreeSet<String>>,
}

/// A count, in total and broken down by `by`'s keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Count {
    /// Which audit events are counted.
    pub events: String,
    pub total: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by: BTreeMap<String, u64>,
}

/// Hours, in total and by entitlement (two decimals).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hours {
    pub events: String,
    pub total: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by: BTreeMap<String, f64>,
}

/// Median and 90th percentile of a set of durations, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quantiles {
    pub count: u64,
    pub p50_secs: Option<i64>,
    pub p90_secs: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub events: String,
    pub all: Quantiles,
    pub by_entitlement: BTreeMap<String, Quantiles>,
    pub by_approver: BTreeMap<String, Quantiles>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PerDay {
    pub events: String,
    /// UTC day → outcome → requests.
    pub days: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heatmap {
    pub events: String,
    pub time_zone: String,
    /// Row labels of `cells`, Monday first.
    pub days: Vec<String>,
    /// `cells[day][hour]`: requests created then.
    pub cells: Vec<Vec<u64>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StandingRow {
    pub eligible_people: u64,
    pub standing_hours: f64,
    pub granted_hours: f64,
}

/// The standing access JIT replaced: every eligible person holding the
/// entitlement for the whole range, against the hours actually granted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    pub events: String,
    pub standing_hours: f64,
    pub granted_hours: f64,
    pub replaced_hours: f64,
    pub by_entitlement: BTreeMap<String, StandingRow>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StampRow {
    pub decisions: u64,
    pub within_secs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RubberStamping {
    pub events: String,
    pub within_secs: i64,
    pub total: u64,
    pub by_approver: BTreeMap<String, StampRow>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Concentration {
    pub events: String,
    pub approvals: BTreeMap<String, u64>,
    pub top_approver: Option<String>,
    /// The top approver's share of human approvals (0 to 1).
    pub top_share: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Patterns {
    pub requests_per_day: PerDay,
    pub requests_by_entitlement: Count,
    pub requests_by_requester: Count,
    pub requests_by_group: Count,
    pub hour_of_week: Heatmap,
    pub duration_asked_hours: Hours,
    pub duration_granted_hours: Hours,
    pub time_to_decision: Latency,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub grants: Count,
    pub elevated_hours: Hours,
    pub credentials_issued: Count,
    pub console_signins: Count,
    pub extensions: Count,
    pub early_revokes: Count,
    pub approvals: Count,
    pub standing_access: Standing,
    /// Per entitlement: what ended assume-role grants allowed, what their
    /// sessions called (CloudTrail), and a suggested ceiling.
    #[serde(default)]
    pub used_vs_granted: crate::usage::UsedVsGranted,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Security {
    pub denied: Count,
    pub ineligible: Count,
    pub self_approval: Count,
    pub not_approver: Count,
    pub outside_working_hours: Count,
    pub first_time_use: Count,
    pub rubber_stamping: RubberStamping,
    pub approver_concentration: Concentration,
    pub approval_timeouts: Count,
    pub reconciler_drift: Count,
    pub revocations: Count,
    /// Break-glass requests granted in the range (self-approved, announced,
    /// reviewed afterwards).
    #[serde(default)]
    pub break_glass_grants: Count,
    /// Of those, the ones no approver has reviewed yet.
    #[serde(default)]
    pub break_glass_unreviewed: Count,
}

/// The answer of `GET /analytics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub from: Timestamp,
    pub to: Timestamp,
    /// `all`, or the entitlements an approver's view is limited to.
    pub entitlements: Option<Vec<String>>,
    /// Audit events read for the range.
    pub events_read: u64,
    pub patterns: Patterns,
    pub usage: Usage,
    pub security: Security,
}

/// What analytics reads of one audit event: the event without the parts no
/// figure needs (the snapshot's other fields, the other changes). Stores
/// may keep it apart to read it fast (`RequestStore::event_digests_between`).
#[derive(Debug, Clone, PartialEq)]
pub struct EventDigest {
    pub event_id: String,
    pub request_id: String,
    pub at: Timestamp,
    pub actor: String,
    pub action: AuditAction,
    pub to: Option<Status>,
    pub code: Option<String>,
    /// The snapshot's entitlement (`created`), else the event's (`rejected`).
    pub entitlement: Option<String>,
    /// `created` events: the snapshot's requester, groups, creation time
    /// and asked duration.
    pub requester: Option<String>,
    pub groups: Vec<String>,
    pub created_at: Option<Timestamp>,
    pub duration_secs: Option<u32>,
    /// From the event's changes.
    pub granted_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    /// `usage` events: their record.
    pub usage: Option<Box<crate::usage::UsageRecord>>,
}

/// A `created` event's digest `code` when its request is break-glass: the
/// one mark of it analytics needs, kept in the column stores already have
/// (`created` events carry no refusal code of their own).
pub const BREAK_GLASS_CODE: &str = crate::break_glass::FLAG;

impl EventDigest {
    pub fn of(e: &AuditEvent) -> EventDigest {
        let snap = e.snapshot.as_deref();
        let ch = e.changes.as_ref();
        EventDigest {
            event_id: e.event_id.clone(),
            request_id: e.request_id.to_string(),
            at: e.at,
            actor: e.actor.clone(),
            action: e.action,
            to: e.to,
            code: e.code.clone().or_else(|| {
                (e.action == AuditAction::Created && snap.is_some_and(|s| s.break_glass.is_some()))
                    .then(|| BREAK_GLASS_CODE.to_string())
            }),
            entitlement: snap
                .map(|s| s.entitlement.clone())
                .or_else(|| e.entitlement.clone()),
            requester: snap.map(|s| s.requester.principal.to_string()),
            groups: snap.map(|s| s.requester.groups.clone()).unwrap_or_default(),
            created_at: snap.map(|s| s.created_at),
            duration_secs: snap.map(|s| s.duration.secs()),
            granted_at: ts(ch.and_then(|c| c.get("grantedAt"))),
            expires_at: ts(ch.and_then(|c| c.get("expiresAt"))),
            usage: e.usage.clone(),
        }
    }
}

/// What one event tells about its request, kept until the report is made.
#[derive(Debug, Clone)]
enum Fact {
    Created(Timestamp),
    To {
        at: Timestamp,
        status: Status,
        /// Kept for people and revokes only (the figures never name a
        /// system actor otherwise): one allocation fewer per event.
        actor: Option<String>,
        expires_at: Option<Timestamp>,
        granted_at: Option<Timestamp>,
    },
    Vote {
        at: Timestamp,
        actor: String,
    },
    Credentials,
    Console,
    Extended(Timestamp),
    Refused {
        code: String,
    },
    Drift,
    Usage(Box<crate::usage::UsageRecord>),
    /// The request is break-glass (its `created` event says so).
    BreakGlass,
    /// An approver reviewed it (a `review` event).
    Reviewed,
}

/// Who and what a request is, from its `created` snapshot (or, for a
/// refusal without a request, from the event itself).
#[derive(Debug, Clone, Default)]
struct Who {
    entitlement: String,
    requester: String,
    groups: Vec<String>,
    created_at: Option<Timestamp>,
    asked_secs: u32,
}

#[derive(Debug, Default)]
struct Req {
    who: Option<Who>,
    facts: Vec<Fact>,
}

/// The accumulator: feed it events, then [`Analytics::finish`].
pub struct Analytics {
    params: Params,
    reqs: HashMap<String, Req>,
    events_read: u64,
    /// (requester, entitlement) pairs granted before the range.
    granted_before: BTreeSet<(String, String)>,
}

fn is_system(actor: &str) -> bool {
    actor.starts_with("system:")
}

/// The person behind an actor (`alice via slack-bot` → `alice`).
fn person(actor: &str) -> &str {
    actor.split(" via ").next().unwrap_or(actor)
}

fn ts(v: Option<&serde_json::Value>) -> Option<Timestamp> {
    v.and_then(|v| v.as_str())
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&chrono::Utc))
}

fn hours(secs: i64) -> f64 {
    secs.max(0) as f64 / 3600.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn quantiles(mut v: Vec<i64>) -> Quantiles {
    v.sort_unstable();
    let q = |p: f64| -> Option<i64> {
        if v.is_empty() {
            return None;
        }
        // Nearest rank.
        let rank = (p * v.len() as f64).ceil().max(1.0) as usize;
        Some(v[rank.min(v.len()) - 1])
    };
    Quantiles {
        count: v.len() as u64,
        p50_secs: q(0.5),
        p90_secs: q(0.9),
    }
}

fn count(events: &str) -> Count {
    Count {
        events: events.into(),
        ..Default::default()
    }
}

impl Count {
    fn add(&mut self, key: &str) {
        self.total += 1;
        match self.by.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                self.by.insert(key.to_string(), 1);
            }
        }
    }
}

impl Hours {
    fn add(&mut self, key: &str, h: f64) {
        self.total += h;
        match self.by.get_mut(key) {
            Some(n) => *n += h,
            None => {
                self.by.insert(key.to_string(), h);
            }
        }
    }
    fn rounded(mut self) -> Self {
        self.total = round2(self.total);
        for v in self.by.values_mut() {
            *v = round2(*v);
        }
        self
    }
}

impl Analytics {
    pub fn new(params: Params) -> Self {
        Analytics {
            params,
            reqs: HashMap::new(),
            events_read: 0,
            granted_before: BTreeSet::new(),
        }
    }

    /// Takes one event of the range (any order). Events outside
    /// `[from, to)` are ignored.
    pub fn add(&mut self, e: &AuditEvent) {
        self.add_digest(&EventDigest::of(e));
    }

    /// [`Analytics::add`] for what a store read for analytics.
    pub fn add_digest(&mut self, e: &EventDigest) {
        if e.at < self.params.from || e.at >= self.params.to {
            return;
        }
        self.events_read += 1;
        let fact = match e.action {
            AuditAction::Created => {
                self.set_who(e);
                Some(Fact::Created(e.at))
            }
            AuditAction::Transition => e.to.map(|status| Fact::To {
                at: e.at,
                status,
                actor: (!is_system(&e.actor) || status == Status::Revoked).then(|| e.actor.clone()),
                expires_at: e.expires_at,
                granted_at: e.granted_at,
            }),
            AuditAction::Decision => Some(Fact::Vote {
                at: e.at,
                actor: e.actor.clone(),
            }),
            AuditAction::CredentialsIssued => Some(Fact::Credentials),
            AuditAction::ConsoleSignin => Some(Fact::Console),
            AuditAction::Extension => e.expires_at.map(Fact::Extended),
            AuditAction::Rejected => {
                if let Some(ent) = &e.entitlement {
                    let r = self.reqs.entry(e.request_id.clone()).or_default();
                    if r.who.is_none() && e.code.as_deref() == Some("not_eligible") {
                        r.who = Some(Who {
                            entitlement: ent.clone(),
                            requester: person(&e.actor).to_string(),
                            ..Default::default()
                        });
                    }
                }
                e.code.as_ref().map(|c| Fact::Refused { code: c.clone() })
            }
            AuditAction::Note if e.actor == crate::request::system_actor("reconciler") => {
                Some(Fact::Drift)
            }
            AuditAction::Usage => e.usage.clone().map(Fact::Usage),
            AuditAction::Review => Some(Fact::Reviewed),
            _ => None,
        };
        if e.action == AuditAction::Created && e.code.as_deref() == Some(BREAK_GLASS_CODE) {
            self.reqs
                .entry(e.request_id.clone())
                .or_default()
                .facts
                .push(Fact::BreakGlass);
        }
        if let Some(f) = fact {
            match self.reqs.get_mut(&e.request_id) {
                Some(r) => r.facts.push(f),
                None => {
                    self.reqs.insert(
                        e.request_id.clone(),
                        Req {
                            who: None,
                            facts: vec![f],
                        },
                    );
                }
            }
        }
    }

    /// Who and what a request is, from its `created` event's snapshot.
    fn set_who(&mut self, e: &EventDigest) {
        let (Some(entitlement), Some(requester)) = (&e.entitlement, &e.requester) else {
            return;
        };
        self.reqs.entry(e.request_id.clone()).or_default().who = Some(Who {
            entitlement: entitlement.clone(),
            requester: requester.clone(),
            groups: e.groups.clone(),
            created_at: e.created_at,
            asked_secs: e.duration_secs.unwrap_or(0),
        });
    }

    /// Requests with events in the range whose `created` event was not
    /// among them (created earlier): the caller reads their trails.
    pub fn missing(&self) -> Vec<RequestId> {
        self.reqs
            .iter()
            .filter(|(_, r)| r.who.is_none())
            .filter_map(|(id, _)| RequestId::parse(id.as_str()).ok())
            .collect()
    }

    /// Takes a `created` event from before the range: who and what its
    /// request is (nothing of it is counted).
    pub fn add_context(&mut self, created: &AuditEvent) {
        if created.snapshot.is_some() && self.reqs.contains_key(created.request_id.as_str()) {
            self.set_who(&EventDigest::of(created));
        }
    }

    /// (requester, entitlement) pairs granted in the range: the caller
    /// tells which of them were granted before it ([`Analytics::granted_before`]).
    pub fn granted_pairs(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for r in self.reqs.values() {
            if let Some(w) = &r.who
                && r.facts.iter().any(|f| {
                    matches!(
                        f,
                        Fact::To {
                            status: Status::Granted,
                            ..
                        }
                    )
                })
            {
                out.insert((w.requester.clone(), w.entitlement.clone()));
            }
        }
        out
    }

    /// Marks a pair as granted before the range: not a first-time use.
    pub fn granted_before(&mut self, requester: &str, entitlement: &str) {
        self.granted_before
            .insert((requester.to_string(), entitlement.to_string()));
    }

    pub fn finish(self) -> Report {
        let Analytics {
            params,
            reqs,
            events_read,
            granted_before,
        } = self;
        let (from, to) = (params.from, params.to);
        let wh = &params.working_hours;
        let mut p = Patterns {
            requests_per_day: PerDay {
                events: "created events, by their UTC day; outcome: the status of the request's last transition before `to` (REQUESTED if none)".into(),
                days: BTreeMap::new(),
            },
            requests_by_entitlement: count("created events, by the snapshot's entitlement"),
            requests_by_requester: count("created events, by the snapshot's requester"),
            requests_by_group: count("created events, once per group of the requester's snapshot"),
            hour_of_week: Heatmap {
                events: "created events, by weekday and hour in the working-hours time zone".into(),
                time_zone: wh.zone_label(),
                days: DAY_NAMES.iter().map(|d| d.to_string()).collect(),
                cells: vec![vec![0; 24]; 7],
            },
            duration_asked_hours: Hours {
                events: "created events: the snapshot's duration".into(),
                ..Default::default()
            },
            duration_granted_hours: Hours {
                events: "transitions to GRANTED: expiresAt - grantedAt from their changes, plus extension events that moved expiresAt".into(),
                ..Default::default()
            },
            time_to_decision: Latency {
                events: "transitions to APPROVED or DENIED by a person (not system:*), from the request's created snapshot's createdAt".into(),
                ..Default::default()
            },
        };
        let mut u = Usage {
            grants: count("transitions to GRANTED"),
            elevated_hours: Hours {
                events: "transitions to GRANTED: from grantedAt to the first later transition (EXPIRED, REVOKED, FAILED) or expiresAt, within [from, to)".into(),
                ..Default::default()
            },
            credentials_issued: count("credentials-issued events"),
            console_signins: count("console-signin events"),
            extensions: count("extension events whose changes moved expiresAt"),
            early_revokes: count("transitions to REVOKED"),
            approvals: count("transitions to APPROVED: `auto` when the actor is system:*, else `human`"),
            standing_access: Standing {
                events: "transitions to GRANTED (granted hours as elevatedHours) against the catalog's eligible people × the range's hours".into(),
                ..Default::default()
            },
            used_vs_granted: Default::default(),
        };
        let mut s = Security {
            denied: count("transitions to DENIED"),
            ineligible: count("rejected events with code not_eligible"),
            self_approval: count("rejected events with code self_approval"),
            not_approver: count("rejected events with code not_approver"),
            outside_working_hours: count("transitions to GRANTED at a time outside the catalog's working_hours"),
            first_time_use: count("transitions to GRANTED of a (requester, entitlement) pair with no grant earlier in the range or before it"),
            rubber_stamping: RubberStamping {
                events: format!("human approvals (decision events and transitions to APPROVED by a person) within {RUBBER_STAMP_SECS} s of the request's createdAt"),
                within_secs: RUBBER_STAMP_SECS,
                ..Default::default()
            },
            approver_concentration: Concentration {
                events: "human approvals (decision events and transitions to APPROVED by a person), by approver".into(),
                ..Default::default()
            },
            approval_timeouts: count("transitions to APPROVAL_TIMED_OUT"),
            reconciler_drift: count("note events by system:reconciler"),
            revocations: count("transitions to REVOKED, by who revoked"),
            break_glass_grants: count("transitions to GRANTED of requests whose created event is flagged break-glass"),
            break_glass_unreviewed: count("break-glass grants (as above) with no review event yet"),
        };
        let mut used_vs_granted = crate::usage::UsedVsGrantedBuilder::default();
        let mut decide_all = Vec::new();
        let mut decide_ent: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut decide_by: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        // First grants per pair within the range, in time order.
        let mut grants_in_order: Vec<(Timestamp, String, String)> = Vec::new();

        for (_, r) in reqs {
            let Some(w) = r.who else { continue };
            if let Some(only) = &params.entitlements
                && !only.contains(&w.entitlement)
            {
                continue;
            }
            let ent = w.entitlement.as_str();
            let mut facts = r.facts;
            facts.sort_by_key(|f| match f {
                Fact::Created(at) | Fact::To { at, .. } | Fact::Vote { at, .. } => Some(*at),
                Fact::Extended(at) => Some(*at),
                _ => None,
            });
            let created_here = facts.iter().find_map(|f| match f {
                Fact::Created(at) => Some(*at),
                _ => None,
            });
            if let Some(at) = created_here {
                let outcome = facts
                    .iter()
                    .rev()
                    .find_map(|f| match f {
                        Fact::To { status, .. } => Some(status.as_str()),
                        _ => None,
                    })
                    .unwrap_or(Status::Requested.as_str());
                *p.requests_per_day
                    .days
                    .entry(at.format("%Y-%m-%d").to_string())
                    .or_default()
                    .entry(outcome.to_string())
                    .or_default() += 1;
                p.requests_by_entitlement.add(ent);
                p.requests_by_requester.add(&w.requester);
                for g in &w.groups {
                    p.requests_by_group.add(g);
                }
                let local = at.with_timezone(&wh.offset);
                p.hour_of_week.cells[local.weekday().num_days_from_monday() as usize]
                    [local.hour() as usize] += 1;
                p.duration_asked_hours
                    .add(ent, hours(i64::from(w.asked_secs)));
            }
            let mut granted: Option<(Timestamp, Option<Timestamp>)> = None;
            let mut ended: Option<Timestamp> = None;
            for f in &facts {
                match f {
                    Fact::To {
                        at,
                        status,
                        actor,
                        expires_at,
                        granted_at,
                    } => {
                        let human = actor.as_deref().is_some_and(|a| !is_system(a));
                        let actor = actor.as_deref().unwrap_or("system:");
                        match status {
                            Status::Granted => {
                                u.grants.add(ent);
                                let g = granted_at.unwrap_or(*at);
                                granted = Some((g, *expires_at));
                                if let Some(x) = expires_at {
                                    p.duration_granted_hours
                                        .add(ent, hours((*x - g).num_seconds()));
                                }
                                if !wh.contains(*at) {
                                    s.outside_working_hours.add(ent);
                                }
                                grants_in_order.push((*at, w.requester.clone(), ent.to_string()));
                            }
                            Status::Approved => {
                                u.approvals.add(if human { "human" } else { "auto" });
                                if human {
                                    approval(&mut s, &w, *at, person(actor));
                                }
                            }
                            Status::Denied => s.denied.add(ent),
                            Status::Revoked => {
                                u.early_revokes.add(ent);
                                s.revocations.add(person(actor));
                            }
                            Status::ApprovalTimedOut => s.approval_timeouts.add(ent),
                            _ => {}
                        }
                        if matches!(status, Status::Approved | Status::Denied)
                            && human
                            && let Some(c) = w.created_at
                        {
                            let secs = (*at - c).num_seconds();
                            decide_all.push(secs);
                            decide_ent.entry(ent.to_string()).or_default().push(secs);
                            decide_by
                                .entry(person(actor).to_string())
                                .or_default()
                                .push(secs);
                        }
                        if granted.is_some()
                            && ended.is_none()
                            && matches!(status, Status::Expired | Status::Revoked | Status::Failed)
                        {
                            ended = Some(*at);
                        }
                    }
                    Fact::Vote { at, actor } => {
                        if !is_system(actor) {
                            approval(&mut s, &w, *at, person(actor));
                        }
                    }
                    Fact::Credentials => u.credentials_issued.add(ent),
                    Fact::Console => u.console_signins.add(ent),
                    Fact::Extended(x) => {
                        u.extensions.add(ent);
                        if let Some((g, old)) = granted {
                            if let Some(old) = old {
                                p.duration_granted_hours
                                    .add(ent, hours((*x - old).num_seconds()));
                            } else {
                                p.duration_granted_hours
                                    .add(ent, hours((*x - g).num_seconds()));
                            }
                            granted = Some((g, Some(*x)));
                        }
                    }
                    Fact::Refused { code } => match code.as_str() {
                        "not_eligible" => s.ineligible.add(ent),
                        "self_approval" => s.self_approval.add(ent),
                        "not_approver" => s.not_approver.add(ent),
                        _ => {}
                    },
                    Fact::Drift => s.reconciler_drift.add(ent),
                    Fact::Usage(record) => used_vs_granted.add(ent, record),
                    Fact::Created(_) | Fact::BreakGlass | Fact::Reviewed => {}
                }
            }
            if granted.is_some() && facts.iter().any(|f| matches!(f, Fact::BreakGlass)) {
                s.break_glass_grants.add(ent);
                if !facts.iter().any(|f| matches!(f, Fact::Reviewed)) {
                    s.break_glass_unreviewed.add(ent);
                }
            }
            if let Some((g, x)) = granted {
                // The window ends at expiresAt even when the record was
                // marked EXPIRED later; a revoke ends it early.
                let end = [ended, x, Some(to)]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(to);
                let h = hours((end - g.max(from)).num_seconds());
                u.elevated_hours.add(ent, h);
            }
        }

        // First-time use: the first grant of each pair in the range, unless
        // the pair was granted before the range.
        grants_in_order.sort();
        let mut seen = granted_before;
        for (_, who, ent) in grants_in_order {
            if seen.insert((who, ent.clone())) {
                s.first_time_use.add(&ent);
            }
        }

        p.time_to_decision.all = quantiles(decide_all);
        p.time_to_decision.by_entitlement = decide_ent
            .into_iter()
            .map(|(k, v)| (k, quantiles(v)))
            .collect();
        p.time_to_decision.by_approver = decide_by
            .into_iter()
            .map(|(k, v)| (k, quantiles(v)))
            .collect();

        let c = &mut s.approver_concentration;
        let human_total: u64 = c.approvals.values().sum();
        if let Some((who, n)) = c
            .approvals
            .iter()
            .max_by_key(|(k, n)| (**n, std::cmp::Reverse((*k).clone())))
        {
            c.top_approver = Some(who.clone());
            c.top_share = round2(*n as f64 / human_total.max(1) as f64);
        }

        let range_hours = hours((to - from).num_seconds());
        let st = &mut u.standing_access;
        let ents: BTreeSet<String> = params
            .eligible
            .keys()
            .cloned()
            .chain(u.elevated_hours.by.keys().cloned())
            .filter(|e| params.entitlements.as_ref().is_none_or(|o| o.contains(e)))
            .collect();
        for e in ents {
            let people = params.eligible.get(&e).map_or(0, |p| p.len() as u64);
            let granted = u.elevated_hours.by.get(&e).copied().unwrap_or(0.0);
            let row = StandingRow {
                eligible_people: people,
                standing_hours: round2(people as f64 * range_hours),
                granted_hours: round2(granted),
            };
            st.standing_hours += row.standing_hours;
            st.granted_hours += row.granted_hours;
            st.by_entitlement.insert(e, row);
        }
        st.standing_hours = round2(st.standing_hours);
        st.granted_hours = round2(st.granted_hours);
        st.replaced_hours = round2((st.standing_hours - st.granted_hours).max(0.0));

        u.used_vs_granted = used_vs_granted.finish();
        p.duration_asked_hours = p.duration_asked_hours.rounded();
        p.duration_granted_hours = p.duration_granted_hours.rounded();
        u.elevated_hours = u.elevated_hours.rounded();

        Report {
            from,
            to,
            entitlements: params.entitlements.map(|s| s.into_iter().collect()),
            events_read,
            patterns: p,
            usage: u,
            security: s,
        }
    }
}

/// One human approval: rubber-stamping and concentration.
fn approval(s: &mut Security, w: &Who, at: Timestamp, approver: &str) {
    let row = s
        .rubber_stamping
        .by_approver
        .entry(approver.to_string())
        .or_default();
    row.decisions += 1;
    if let Some(c) = w.created_at
        && (at - c).num_seconds() <= RUBBER_STAMP_SECS
    {
        row.within_secs += 1;
        s.rubber_stamping.total += 1;
    }
    *s.approver_concentration
        .approvals
        .entry(approver.to_string())
        .or_default() += 1;
}

/// The whole computation over a slice: `events` of the range, `context`
/// the `created` events of requests created before it.
pub fn compute(params: Params, events: &[AuditEvent], context: &[AuditEvent]) -> Report {
    let mut a = Analytics::new(params);
    for e in events {
        a.add(e);
    }
    for e in context {
        a.add_context(e);
    }
    a.finish()
}
