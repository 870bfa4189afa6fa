//! Output for people (`--output text`, the default): durations as `1h30m`,
//! times to the second in UTC (`2026-12-04T16:10:01Z`) with how far away
//! they are, and a line for each thing a person acts on. `--output json`
//! prints the API's JSON instead, untouched.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn requester_of(r: &Value) -> String {
    let q = &r["requester"];
    for k in ["email", "id", "principal", "name"] {
        if let Some(s) = q[k].as_str() {
            return s.to_string();
        }
    }
    text(q)
}

/// `3600` → `1h`, `5400` → `1h30m`, `45` → `45s`, `0` → `0s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        (secs % 86_400) / 3600,
        (secs % 3600) / 60,
        secs % 60,
    );
    let mut out = String::new();
    for (n, unit) in [(d, 'd'), (h, 'h'), (m, 'm'), (s, 's')] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// A duration field (seconds, or already text) for people.
fn duration_of(v: &Value) -> String {
    match v.as_u64() {
        Some(n) => duration(n),
        None => text(v),
    }
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `2026-12-04T16:10:01Z`: RFC 3339 to the second, UTC.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `in 42m` / `3h ago` (to the minute beyond one, else seconds).
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let span = |s: i64| {
        let s = s.unsigned_abs();
        if s >= 60 {
            duration(s - s % 60)
        } else {
            duration(s)
        }
    };
    if secs == 0 {
        "just now".into()
    } else if secs > 0 {
        format!("in {}", span(secs))
    } else {
        format!("{} ago", span(secs))
    }
}

/// A time field with its distance from now; `-` when absent.
fn when(v: &Value, now: DateTime<Utc>) -> String {
    match parse_time(v) {
        Some(t) => format!("{} ({})", time(t), relative(t, now)),
        None => text(v),
    }
}

/// What a status means for the person reading it.
fn status_line(r: &Value, now: DateTime<Utc>) -> String {
    let status = text(&r["status"]);
    let note = match status.as_str() {
        "REQUESTED" | "VALIDATING" | "POLICY_GENERATION" => "being checked",
        "APPROVAL_PENDING" => "waiting for an approver",
        "APPROVED" => "approved, granting",
        "GRANTED" => match parse_time(&r["expiresAt"]) {
            Some(t) => return format!("GRANTED (expires {})", relative(t, now)),
            None => "",
        },
        _ => "",
    };
    if note.is_empty() {
        status
    } else {
        format!("{status} ({note})")
    }
}

pub fn print_request(r: &Value, now: DateTime<Utc>) {
    let mut rows: Vec<(&str, String)> = vec![
        ("id", text(&r["requestId"])),
        ("status", status_line(r, now)),
        ("entitlement", text(&r["entitlement"])),
        ("account", text(&r["account"])),
        ("requester", requester_of(r)),
        ("duration", duration_of(&r["duration"])),
        ("justification", text(&r["justification"])),
        ("created", when(&r["createdAt"], now)),
    ];
    if !r["decidedAt"].is_null() {
        rows.push(("decided", when(&r["decidedAt"], now)));
    }
    if !r["grantedAt"].is_null() {
        rows.push(("granted", when(&r["grantedAt"], now)));
    }
    rows.push(("expires", when(&r["expiresAt"], now)));
    for (k, v) in rows {
        println!("{k:<14}{v}");
    }
    if let Some(reason) = r["reason"].as_str() {
        println!("{:<14}{reason}", "reason");
    }
    for d in r["decisions"].as_array().into_iter().flatten() {
        println!("{:<14}{}", "decision", decision(d));
    }
    for e in r["extensions"].as_array().into_iter().flatten() {
        println!("{:<14}{}", "extension", extension(e, now));
    }
    if let Some(bg) = r.get("breakGlass").filter(|b| b.is_object()) {
        println!("{:<14}{}", "break-glass", break_glass(bg));
    }
}

/// A break-glass request's incident and where its review stands.
fn break_glass(bg: &Value) -> String {
    let incident = text(&bg["incident"]);
    match bg.get("review").filter(|v| v.is_object()) {
        None => {
            format!("{incident}: self-approved, review pending (an approver runs `jit review`)")
        }
        Some(rv) => {
            let mut line = format!(
                "{incident}: reviewed {} by {}",
                text(&rv["verdict"]),
                text(&rv["reviewer"])
            );
            if let Some(t) = parse_time(&rv["at"]) {
                line.push_str(&format!(" at {}", time(t)));
            }
            if let Some(reason) = rv["reason"].as_str() {
                line.push_str(&format!(": {reason}"));
            }
            line
        }
    }
}

fn decision(d: &Value) -> String {
    let mut line = format!("{} by {}", text(&d["verdict"]), text(&d["approver"]));
    if let Some(t) = parse_time(&d["decidedAt"]).or_else(|| parse_time(&d["at"])) {
        line.push_str(&format!(" at {}", time(t)));
    }
    if let Some(reason) = d["reason"].as_str() {
        line.push_str(&format!(": {reason}"));
    }
    line
}

fn extension(e: &Value, now: DateTime<Utc>) -> String {
    let mut line = format!(
        "+{} {} (asked by {}",
        duration_of(&e["durationSecs"]),
        text(&e["status"]),
        text(&e["requestedBy"])
    );
    if let Some(t) = parse_time(&e["requestedAt"]) {
        line.push_str(&format!(" {}", relative(t, now)));
    }
    line.push(')');
    if let Some(reason) = e["reason"].as_str() {
        line.push_str(&format!(": {reason}"));
    }
    if let Some(t) = parse_time(&e["newExpiresAt"]) {
        line.push_str(&format!("; now expires {}", time(t)));
    }
    line
}

pub fn print_list(v: &Value, now: DateTime<Utc>) {
    let empty = Vec::new();
    let items = v["requests"].as_array().unwrap_or(&empty);
    if items.is_empty() {
        println!("no requests");
        return;
    }
    println!(
        "{:<28} {:<18} {:<24} {:<24} {:<8} EXPIRES",
        "ID", "STATUS", "ENTITLEMENT", "REQUESTER", "DURATION"
    );
    for r in items {
        let expires = parse_time(&r["expiresAt"])
            .map(|t| relative(t, now))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<28} {:<18} {:<24} {:<24} {:<8} {}",
            text(&r["requestId"]),
            text(&r["status"]),
            text(&r["entitlement"]),
            requester_of(r),
            duration_of(&r["duration"]),
            expires
        );
    }
    if let Some(c) = v["nextCursor"].as_str() {
        println!("(more: `jit list --all`, or go on with `jit list --cursor {c}`)");
    }
}

pub fn print_entitlements(v: &Value) {
    let empty = Vec::new();
    let items = v["entitlements"].as_array().unwrap_or(&empty);
    if items.is_empty() {
        println!("no entitlements you may request (ask the platform team to add you to a group)");
        return;
    }
    let mut rows: Vec<[String; 6]> = vec![[
        "NAME".into(),
        "ACCOUNT".into(),
        "MODE".into(),
        "DURATION".into(),
        "APPROVAL".into(),
        "DESCRIPTION".into(),
    ]];
    for e in items {
        rows.push([
            text(&e["name"]),
            text(&e["accountId"]),
            text(&e["grantMode"]),
            format!(
                "{}–{} ({})",
                duration_of(&e["minDuration"]),
                duration_of(&e["maxDuration"]),
                duration_of(&e["defaultDuration"])
            ),
            approval(e),
            e["description"].as_str().unwrap_or("").to_string(),
        ]);
    }
    print_table(&rows);
    println!(
        "(DURATION: shortest–longest (default); ask with `jit request <NAME> --duration 30m --reason …`)"
    );
}

/// Columns as wide as their widest cell (in characters), two spaces apart;
/// the last column is not padded.
fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        println!("{}", line.trim_end());
    }
}

fn approval(e: &Value) -> String {
    let auto = &e["autoApprove"];
    if e["autoApprovedForYou"] == Value::Bool(true) {
        return format!(
            "auto-approved for you ≤{}",
            duration_of(&auto["maxDuration"])
        );
    }
    let a = &e["approvers"];
    let mut who: Vec<String> = a["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    who.extend(
        a["emails"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string),
    );
    let n = a["requiredApprovals"].as_u64().unwrap_or(1);
    let head = if n > 1 {
        format!("{n} of ")
    } else {
        String::new()
    };
    if who.is_empty() {
        "no approvers".into()
    } else {
        format!("{head}{}", who.join(", "))
    }
}

/// `jit policy preview`: who generated it, per service the access levels
/// and resources, the notes, its size against STS's limit, the document.
pub fn print_policy_preview(v: &Value) {
    let text = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    println!(
        "Session policy for {} — generated by {} ({})",
        text("entitlement"),
        text("generator"),
        text("digest")
    );
    for line in v["summary"].as_array().into_iter().flatten() {
        let list = |k: &str| {
            line[k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "  {:<16} {:<24} on {}",
            line["service"].as_str().unwrap_or("-"),
            list("access"),
            list("resources")
        );
    }
    for n in v["notes"].as_array().into_iter().flatten() {
        println!("  note: {}", n.as_str().unwrap_or_default());
    }
    println!(
        "  {} of {} characters once bounded by the window",
        v["packedChars"], v["maxChars"]
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&v["policy"]).unwrap_or_default()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_and_times_for_people() {
        assert_eq!(duration(3600), "1h");
        assert_eq!(duration(5400), "1h30m");
        assert_eq!(duration(900), "15m");
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(90_000), "1d1h");
        let now: DateTime<Utc> = "2026-12-04T16:00:00Z".parse().unwrap();
        let t: DateTime<Utc> = "2026-12-04T16:42:30.093560723Z".parse().unwrap();
        assert_eq!(time(t), "2026-12-04T16:42:30Z");
        assert_eq!(relative(t, now), "in 42m");
        assert_eq!(relative(now - chrono::Duration::hours(3), now), "3h ago");
        assert_eq!(relative(now + chrono::Duration::seconds(20), now), "in 20s");
        assert_eq!(
            when(&json!("2026-12-04T16:42:30.093560723+00:00"), now),
            "2026-12-04T16:42:30Z (in 42m)"
        );
        assert_eq!(when(&Value::Null, now), "-");
    }

    #[test]
    fn statuses_say_what_happens_next() {
        let now: DateTime<Utc> = "2026-12-04T16:00:00Z".parse().unwrap();
        assert_eq!(
            status_line(&json!({"status": "APPROVED"}), now),
            "APPROVED (approved, granting)"
        );
        assert_eq!(
            status_line(
                &json!({"status": "GRANTED", "expiresAt": "2026-12-04T17:00:00Z"}),
                now
            ),
            "GRANTED (expires in 1h)"
        );
        assert_eq!(status_line(&json!({"status": "DENIED"}), now), "DENIED");
    }

    #[test]
    fn extensions_and_approvals_read_as_sentences() {
        let now: DateTime<Utc> = "2026-12-04T16:00:00Z".parse().unwrap();
        let e = json!({"durationSecs": 1800, "status": "PENDING", "requestedBy": "a@example.com",
                       "requestedAt": "2026-12-04T15:58:00Z", "reason": "more"});
        assert_eq!(
            extension(&e, now),
            "+30m PENDING (asked by a@example.com 2m ago): more"
        );
        let ent = json!({"autoApprovedForYou": true, "autoApprove": {"maxDuration": 3600}});
        assert_eq!(approval(&ent), "auto-approved for you ≤1h");
        let ent = json!({"approvers": {"groups": ["leads"], "emails": ["x@example.com"], "requiredApprovals": 2}});
        assert_eq!(approval(&ent), "2 of leads, x@example.com");
    }
}
