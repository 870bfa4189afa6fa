//! `jit stats`: the `/analytics` answer as tables with bars, for a terminal.
//! It reads the JSON generically (figure by figure), so a figure the API
//! adds later still prints.

use std::fmt::Write;

use serde_json::Value;

/// Width of the longest bar, in characters.
const BAR: f64 = 30.0;

/// A horizontal bar for `v` of `max`, in eighths of a character.
pub fn bar(v: f64, max: f64) -> String {
    if max <= 0.0 || v <= 0.0 {
        return String::new();
    }
    let eighths = ((v / max) * BAR * 8.0).round().max(1.0) as usize;
    let mut s = "█".repeat(eighths / 8);
    const PARTS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    s.push_str(PARTS[eighths % 8]);
    s
}

/// One character per value, heights relative to `max`.
pub fn sparkline(values: &[u64], max: u64) -> String {
    const LEVELS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    values
        .iter()
        .map(|&v| {
            if v == 0 || max == 0 {
                '·'
            } else {
                LEVELS[((v as f64 / max as f64) * 8.0).ceil().clamp(1.0, 8.0) as usize]
            }
        })
        .collect()
}

fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(u) => u.to_string(),
            None => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
        },
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `camelCase` → `Camel case`.
fn title(key: &str) -> String {
    let mut out = String::new();
    for (i, c) in key.chars().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
        } else if c.is_uppercase() {
            out.push(' ');
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn secs(v: &Value) -> String {
    match v.as_i64() {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) => format!("{:.1}h", s as f64 / 3600.0),
    }
}

/// Rows `key  value  bar`, biggest first.
fn bars(out: &mut String, rows: &[(String, f64, String)]) {
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    let w = rows
        .iter()
        .map(|r| r.0.chars().count())
        .max()
        .unwrap_or(0)
        .min(40);
    let vw = rows.iter().map(|r| r.2.len()).max().unwrap_or(0);
    for (k, v, shown) in rows {
        let _ = writeln!(out, "    {k:<w$}  {shown:>vw$}  {}", bar(*v, max));
    }
}

fn by_rows(by: &serde_json::Map<String, Value>) -> Vec<(String, f64, String)> {
    let mut rows: Vec<(String, f64, String)> = by
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0), num(v)))
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows
}

fn quantile_rows(out: &mut String, label: &str, m: &serde_json::Map<String, Value>) {
    if m.is_empty() {
        return;
    }
    let w = m
        .keys()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0)
        .max(label.len());
    let _ = writeln!(
        out,
        "    {label:<w$}  {:>6}  {:>7}  {:>7}",
        "count", "p50", "p90"
    );
    for (k, q) in m {
        let _ = writeln!(
            out,
            "    {k:<w$}  {:>6}  {:>7}  {:>7}",
            num(&q["count"]),
            secs(&q["p50Secs"]),
            secs(&q["p90Secs"])
        );
    }
}

/// Used vs granted (CloudTrail): per entitlement, what was granted, what
/// was called (bars by calls), what was refused, and the suggested ceiling.
fn used_vs_granted(out: &mut String, f: &Value) {
    let Some(m) = f["byEntitlement"].as_object().filter(|m| !m.is_empty()) else {
        let _ = writeln!(out, "    (no usage recorded)");
        return;
    };
    let list = |v: &Value| -> String {
        let items: Vec<String> = v
            .as_array()
            .map(|a| a.iter().map(num).collect())
            .unwrap_or_default();
        if items.is_empty() {
            "(none)".into()
        } else {
            items.join(", ")
        }
    };
    for (name, e) in m {
        let _ = writeln!(
            out,
            "    {name}: {} grants ({} with no allowed call), {} sessions, {} calls{}",
            num(&e["grants"]),
            num(&e["unusedGrants"]),
            num(&e["sessions"]),
            num(&e["calls"]),
            match e["truncated"].as_u64() {
                Some(n) if n > 0 => format!(", {n} truncated"),
                _ => String::new(),
            }
        );
        let _ = writeln!(out, "      granted: {}", list(&e["grantedActions"]));
        if let Some(Value::Object(used)) = e.get("usedActions") {
            let _ = writeln!(out, "      used:");
            bars(out, &by_rows(used));
        }
        if let Some(Value::Object(denied)) = e.get("deniedActions")
            && !denied.is_empty()
        {
            let _ = writeln!(out, "      refused:");
            bars(out, &by_rows(denied));
        }
        if e["unusedGrantedActions"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            let _ = writeln!(
                out,
                "      granted, never used: {}",
                list(&e["unusedGrantedActions"])
            );
        }
        let _ = writeln!(
            out,
            "      suggested ceiling: {}",
            list(&e["suggestedCeiling"])
        );
    }
}

fn figure(out: &mut String, key: &str, f: &Value) {
    let _ = writeln!(out, "  {}", title(key));
    if key == "usedVsGranted" {
        used_vs_granted(out, f);
    } else if let Some(Value::Object(days)) = f.get("days")
        && f.get("cells").is_none()
    {
        // requests per day by outcome
        let rows: Vec<(String, f64, String)> = days
            .iter()
            .map(|(d, outcomes)| {
                let total: u64 = outcomes
                    .as_object()
                    .map(|o| o.values().filter_map(Value::as_u64).sum())
                    .unwrap_or(0);
                let detail: Vec<String> = outcomes
                    .as_object()
                    .map(|o| o.iter().map(|(k, v)| format!("{k} {}", num(v))).collect())
                    .unwrap_or_default();
                (
                    format!("{d}  {}", detail.join(", ")),
                    total as f64,
                    total.to_string(),
                )
            })
            .collect();
        if rows.is_empty() {
            let _ = writeln!(out, "    (none)");
        }
        bars(out, &rows);
    } else if let Some(Value::Array(cells)) = f.get("cells") {
        let max = cells
            .iter()
            .flat_map(|r| r.as_array().into_iter().flatten())
            .filter_map(Value::as_u64)
            .max()
            .unwrap_or(0);
        let _ = writeln!(out, "    time zone {}; hours 0-23 →", num(&f["timeZone"]));
        let names = f["days"].as_array().cloned().unwrap_or_default();
        for (i, row) in cells.iter().enumerate() {
            let vals: Vec<u64> = row
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            let name = names.get(i).map(num).unwrap_or_default();
            let _ = writeln!(out, "    {name:<4} {}", sparkline(&vals, max));
        }
    } else if f.get("all").is_some() {
        let _ = writeln!(
            out,
            "    all: {} decisions, p50 {}, p90 {}",
            num(&f["all"]["count"]),
            secs(&f["all"]["p50Secs"]),
            secs(&f["all"]["p90Secs"])
        );
        for (label, k) in [("entitlement", "byEntitlement"), ("approver", "byApprover")] {
            if let Some(m) = f[k].as_object() {
                quantile_rows(out, label, m);
            }
        }
    } else if let Some(Value::Object(m)) = f.get("byEntitlement") {
        // standing access
        let _ = writeln!(
            out,
            "    standing {} h, granted {} h, replaced {} h",
            num(&f["standingHours"]),
            num(&f["grantedHours"]),
            num(&f["replacedHours"])
        );
        let rows: Vec<(String, f64, String)> = m
            .iter()
            .map(|(k, r)| {
                (
                    format!("{k} ({} eligible)", num(&r["eligiblePeople"])),
                    r["grantedHours"].as_f64().unwrap_or(0.0),
                    format!(
                        "{} of {} h",
                        num(&r["grantedHours"]),
                        num(&r["standingHours"])
                    ),
                )
            })
            .collect();
        bars(out, &rows);
    } else if let Some(Value::Object(m)) = f.get("byApprover") {
        // rubber-stamping
        let _ = writeln!(
            out,
            "    {} approvals within {} s of the request",
            num(&f["total"]),
            num(&f["withinSecs"])
        );
        let rows: Vec<(String, f64, String)> = m
            .iter()
            .map(|(k, r)| {
                (
                    k.clone(),
                    r["withinSecs"].as_f64().unwrap_or(0.0),
                    format!("{} of {}", num(&r["withinSecs"]), num(&r["decisions"])),
                )
            })
            .collect();
        bars(out, &rows);
    } else if let Some(Value::Object(m)) = f.get("approvals") {
        let _ = writeln!(
            out,
            "    top approver {} ({:.0}% of human approvals)",
            num(&f["topApprover"]),
            f["topShare"].as_f64().unwrap_or(0.0) * 100.0
        );
        bars(out, &by_rows(m));
    } else {
        let _ = writeln!(out, "    total {}", num(&f["total"]));
        if let Some(Value::Object(by)) = f.get("by") {
            bars(out, &by_rows(by));
        }
    }
    if let Some(e) = f["events"].as_str() {
        let _ = writeln!(out, "    counts: {e}");
    }
}

/// The whole report as text.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Access analytics {} → {} ({} audit events{})",
        num(&v["from"]),
        num(&v["to"]),
        num(&v["eventsRead"]),
        match v["entitlements"].as_array() {
            Some(e) => format!(
                "; your entitlements: {}",
                e.iter().map(num).collect::<Vec<_>>().join(", ")
            ),
            None => String::new(),
        }
    );
    for section in ["patterns", "usage", "security"] {
        let _ = writeln!(out, "\n{}", section.to_uppercase());
        if let Some(Value::Object(figs)) = v.get(section) {
            for (k, f) in figs {
                figure(&mut out, k, f);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value() {
        assert_eq!(bar(30.0, 30.0).chars().count(), 30);
        assert_eq!(bar(15.0, 30.0), "█".repeat(15));
        assert_eq!(bar(0.0, 30.0), "");
        assert!(!bar(0.01, 30.0).is_empty(), "a non-zero value shows");
        assert_eq!(sparkline(&[0, 1, 8], 8), "·▁█");
    }

    #[test]
    fn every_figure_shape_renders_with_its_events() {
        let v = serde_json::json!({
            "from": "2027-01-01T00:00:00Z", "to": "2027-01-31T00:00:00Z",
            "eventsRead": 42, "entitlements": null,
            "patterns": {
                "requestsPerDay": {"events": "created events", "days": {"2027-01-02": {"GRANTED": 2, "DENIED": 1}}},
                "hourOfWeek": {"events": "created events", "timeZone": "UTC", "days": ["mon","tue","wed","thu","fri","sat","sun"], "cells": [[0,1,2],[],[],[],[],[],[]]},
                "timeToDecision": {"events": "approvals", "all": {"count": 2, "p50Secs": 30, "p90Secs": 4000}, "byEntitlement": {"A": {"count": 2, "p50Secs": 30, "p90Secs": 4000}}, "byApprover": {}}
            },
            "usage": {
                "grants": {"events": "transitions to GRANTED", "total": 3, "by": {"A": 2, "B": 1}},
                "standingAccess": {"events": "grants", "standingHours": 720.0, "grantedHours": 2.5, "replacedHours": 717.5, "byEntitlement": {"A": {"eligiblePeople": 1, "standingHours": 720.0, "grantedHours": 2.5}}},
                "usedVsGranted": {"events": "usage events", "byEntitlement": {"Reader": {
                    "grants": 2, "unusedGrants": 1, "sessions": 3, "calls": 9, "truncated": 0,
                    "grantedActions": ["s3:Get*", "s3:List*"], "usedActions": {"s3:GetBucketPolicy": 4},
                    "deniedActions": {"s3:PutBucketPolicy": 1}, "unusedGrantedActions": ["s3:List*"],
                    "suggestedCeiling": ["s3:GetBucketPolicy"]}}}
            },
            "security": {
                "rubberStamping": {"events": "approvals", "withinSecs": 60, "total": 1, "byApprover": {"lead": {"decisions": 2, "withinSecs": 1}}},
                "approverConcentration": {"events": "approvals", "approvals": {"lead": 2}, "topApprover": "lead", "topShare": 1.0}
            }
        });
        let text = render(&v);
        for needle in [
            "PATTERNS",
            "Requests per day",
            "2027-01-02  DENIED 1, GRANTED 2",
            "mon  ·▄█",
            "p50 30s, p90 66m",
            "Grants",
            "total 3",
            "A  2  ████",
            "replaced 717.50 h",
            "1 of 2",
            "top approver lead (100% of human approvals)",
            "counts: transitions to GRANTED",
            "Reader: 2 grants (1 with no allowed call), 3 sessions, 9 calls",
            "granted: s3:Get*, s3:List*",
            "s3:GetBucketPolicy  4",
            "s3:PutBucketPolicy  1",
            "granted, never used: s3:List*",
            "suggested ceiling: s3:GetBucketPolicy",
            "counts: usage events",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
