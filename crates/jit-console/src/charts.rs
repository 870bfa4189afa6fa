//! `GET /analytics` as pictures: inline SVG drawn here, on the server, so
//! the page needs no charting script and no other host. Each chart is an
//! `img` with a title and a description, each mark carries a `<title>`
//! (a tooltip, read by screen readers), and each chart's numbers are also
//! in a table beside it: colour is never the only way to read a figure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::html::{esc, short_duration};

/// Outcomes in the order they stack, with their colour (each at least 3:1
/// against the white page, as WCAG asks of graphics).
const OUTCOMES: &[(&str, &str)] = &[
    ("GRANTED", "#15803d"),
    ("EXPIRED", "#0f766e"),
    ("APPROVED", "#2563eb"),
    ("APPROVAL_PENDING", "#b45309"),
    ("REQUESTED", "#a16207"),
    ("DENIED", "#b91c1c"),
    ("REVOKED", "#7c3aed"),
    ("CANCELLED", "#6b7280"),
    ("APPROVAL_TIMED_OUT", "#9d174d"),
    ("FAILED", "#111827"),
];

fn colour(outcome: &str) -> &'static str {
    OUTCOMES
        .iter()
        .find(|(o, _)| *o == outcome)
        .map(|(_, c)| *c)
        .unwrap_or("#475569")
}

fn svg_open(id: &str, w: u32, h: u32, title: &str, desc: &str) -> String {
    format!(
        "<svg id=\"{id}\" class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"{id}-t {id}-d\" preserveAspectRatio=\"xMinYMin meet\"><title id=\"{id}-t\">{}</title><desc id=\"{id}-d\">{}</desc>",
        esc(title),
        esc(desc)
    )
}

/// Requests per day, stacked by outcome.
pub fn per_day(days: &BTreeMap<String, BTreeMap<String, u64>>) -> String {
    if days.is_empty() {
        return "<p>No requests in this range.</p>".into();
    }
    let (w, h, left, bottom, top) = (720u32, 240u32, 36u32, 40u32, 10u32);
    let max = days
        .values()
        .map(|m| m.values().sum::<u64>())
        .max()
        .unwrap_or(1)
        .max(1);
    let n = days.len() as u32;
    let slot = ((w - left) as f64) / n as f64;
    let bar = (slot * 0.8).clamp(1.0, 48.0);
    let plot_h = (h - bottom - top) as f64;
    let total: u64 = days.values().flat_map(|m| m.values()).sum();
    let mut svg = svg_open(
        "chart-per-day",
        w,
        h,
        "Requests per day by outcome",
        &format!("{total} requests over {n} days, stacked by their outcome"),
    );
    // Axis: zero and the maximum.
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{y0}\" x2=\"{w}\" y2=\"{y0}\" stroke=\"#6b7280\"/><text x=\"{lx}\" y=\"{y0}\" class=\"axis\" text-anchor=\"end\">0</text><text x=\"{lx}\" y=\"{yt}\" class=\"axis\" text-anchor=\"end\">{max}</text>",
        y0 = h - bottom,
        lx = left - 4,
        yt = top + 8
    );
    for (i, (day, outcomes)) in days.iter().enumerate() {
        let x = left as f64 + i as f64 * slot + (slot - bar) / 2.0;
        let mut y = (h - bottom) as f64;
        for (o, _) in OUTCOMES.iter().copied().chain(
            outcomes
                .keys()
                .filter(|k| !OUTCOMES.iter().any(|(o, _)| o == k))
                .map(|k| (k.as_str(), "")),
        ) {
            let Some(&c) = outcomes.get(o) else { continue };
            let bh = c as f64 / max as f64 * plot_h;
            y -= bh;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{} {}: {c}</title></rect>",
                colour(o),
                esc(day),
                esc(o)
            );
        }
        // A date label under every bar when there is room, else about eight.
        let every = (n / 8).max(1) as usize;
        if i % every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                h - bottom + 16,
                esc(day.get(5..).unwrap_or(day))
            );
        }
    }
    svg.push_str("</svg>");
    let present: Vec<&str> = OUTCOMES
        .iter()
        .map(|(o, _)| *o)
        .filter(|o| days.values().any(|m| m.contains_key(*o)))
        .collect();
    let mut legend = String::from("<ul class=\"legend\">");
    for o in &present {
        let _ = write!(
            legend,
            "<li><svg width=\"12\" height=\"12\" aria-hidden=\"true\"><rect width=\"12\" height=\"12\" fill=\"{}\"/></svg> {}</li>",
            colour(o),
            esc(o)
        );
    }
    legend.push_str("</ul>");
    let mut table = String::from(
        "<details><summary>The numbers</summary><div class=\"table\"><table><thead><tr><th scope=\"col\">Day</th>",
    );
    for o in &present {
        let _ = write!(table, "<th scope=\"col\">{}</th>", esc(o));
    }
    table.push_str("</tr></thead><tbody>");
    for (day, m) in days {
        let _ = write!(table, "<tr><th scope=\"row\">{}</th>", esc(day));
        for o in &present {
            let _ = write!(table, "<td>{}</td>", m.get(*o).copied().unwrap_or(0));
        }
        table.push_str("</tr>");
    }
    table.push_str("</tbody></table></div></details>");
    format!("{svg}{legend}{table}")
}

/// The hour-of-week heatmap: 7 rows (Monday first) × 24 hours.
pub fn heatmap(days: &[String], cells: &[Vec<u64>], tz: &str) -> String {
    let (cw, ch, left, top) = (26u32, 22u32, 40u32, 18u32);
    let w = left + 24 * cw;
    let h = top + 7 * ch + 4;
    let max = cells.iter().flatten().copied().max().unwrap_or(0).max(1);
    let total: u64 = cells.iter().flatten().sum();
    let mut svg = svg_open(
        "chart-heatmap",
        w,
        h,
        "Requests by hour of the week",
        &format!("{total} requests by weekday and hour ({tz}); darker is more"),
    );
    for hour in (0..24).step_by(3) {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"12\" class=\"axis\" text-anchor=\"middle\">{hour:02}</text>",
            left + hour * cw + cw / 2
        );
    }
    for (d, row) in cells.iter().enumerate().take(7) {
        let label = days.get(d).map(String::as_str).unwrap_or("");
        let y = top + d as u32 * ch;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" class=\"axis\" text-anchor=\"end\">{}</text>",
            left - 4,
            y + ch / 2 + 4,
            esc(label.get(..3).unwrap_or(label))
        );
        for (hour, &c) in row.iter().enumerate().take(24) {
            // Opacity from 0.08 (none) to 1 (the busiest hour).
            let o = if c == 0 {
                0.06
            } else {
                0.2 + 0.8 * c as f64 / max as f64
            };
            let _ = write!(
                svg,
                "<rect x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"#1d4ed8\" fill-opacity=\"{o:.2}\"><title>{} {hour:02}:00: {c}</title></rect>",
                left + hour as u32 * cw + 1,
                cw - 2,
                ch - 2,
                esc(label)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars, largest first, at most `top` of them; each label can
/// link somewhere (`href(key)`).
pub fn bars(
    id: &str,
    title: &str,
    unit: &str,
    values: &[(String, f64)],
    top: usize,
    href: &dyn Fn(&str) -> Option<String>,
) -> String {
    let mut v: Vec<&(String, f64)> = values.iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(top);
    if v.is_empty() {
        return format!("<p id=\"{id}-empty\">No data.</p>");
    }
    let max = v
        .iter()
        .map(|x| x.1)
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let (w, row, left) = (720u32, 24u32, 260u32);
    let h = row * v.len() as u32 + 4;
    let mut svg = svg_open(id, w, h, title, &format!("{} bars, largest first", v.len()));
    for (i, (k, x)) in v.iter().enumerate() {
        let y = i as u32 * row;
        let bw = (x / max) * (w - left - 70) as f64;
        let label = if k.chars().count() > 36 {
            format!("{}…", k.chars().take(35).collect::<String>())
        } else {
            k.clone()
        };
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" class=\"label\" text-anchor=\"end\">{}</text><rect x=\"{left}\" y=\"{}\" width=\"{bw:.1}\" height=\"{}\" fill=\"#2563eb\"><title>{}: {}</title></rect><text x=\"{:.1}\" y=\"{}\" class=\"value\">{}</text>",
            left - 6,
            y + row / 2 + 5,
            esc(&label),
            y + 3,
            row - 6,
            esc(k),
            fmt_num(*x, unit),
            left as f64 + bw + 4.0,
            y + row / 2 + 5,
            fmt_num(*x, unit)
        );
    }
    svg.push_str("</svg>");
    let mut table = format!(
        "<details><summary>The numbers</summary><div class=\"table\"><table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        esc(unit)
    );
    for (k, x) in &v {
        let name = match href(k) {
            Some(u) => format!("<a href=\"{}\">{}</a>", esc(&u), esc(k)),
            None => esc(k),
        };
        let _ = write!(
            table,
            "<tr><th scope=\"row\">{name}</th><td>{}</td></tr>",
            fmt_num(*x, unit)
        );
    }
    table.push_str("</tbody></table></div></details>");
    format!("{svg}{table}")
}

fn fmt_num(x: f64, unit: &str) -> String {
    match unit {
        "seconds" => short_duration(x.max(0.0) as u64),
        _ if x.fract() == 0.0 => format!("{x:.0}"),
        _ => format!("{x:.2}"),
    }
}

fn counts(v: &Value) -> Vec<(String, f64)> {
    v["by"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, n)| n.as_f64().map(|n| (k.clone(), n)))
        .collect()
}

fn admin_link(params: &[(&str, &str)]) -> String {
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", jit_core::links::percent_encode(v)))
        .collect();
    format!("/ui/admin?{}", q.join("&"))
}

/// The security signals: what each counts, how many, and where (by
/// entitlement, each linking to those requests in the admin listing).
fn signals_table(sec: &Value) -> String {
    // (field, label, the status its requests end in, if one)
    let rows: &[(&str, &str, Option<&str>)] = &[
        ("denied", "Denied requests", Some("DENIED")),
        ("ineligible", "Requests refused: not eligible", None),
        (
            "selfApproval",
            "Attempts to approve one's own request",
            None,
        ),
        ("notApprover", "Decisions refused: not an approver", None),
        (
            "outsideWorkingHours",
            "Grants outside working hours",
            Some("GRANTED"),
        ),
        (
            "firstTimeUse",
            "First use of an entitlement by a person",
            None,
        ),
        (
            "approvalTimeouts",
            "Approvals that timed out",
            Some("APPROVAL_TIMED_OUT"),
        ),
        ("reconcilerDrift", "Drift the reconciler repaired", None),
        (
            "revocations",
            "Early revokes (by who revoked)",
            Some("REVOKED"),
        ),
        ("breakGlassGrants", "Break-glass grants", Some("GRANTED")),
        (
            "breakGlassUnreviewed",
            "Break-glass grants not yet reviewed",
            Some("GRANTED"),
        ),
    ];
    let mut t = String::from(
        "<div class=\"table\"><table id=\"signals\"><caption>Security signals</caption><thead><tr><th scope=\"col\">Signal</th><th scope=\"col\">Count</th><th scope=\"col\">Where</th></tr></thead><tbody>",
    );
    for (key, label, status) in rows {
        let v = &sec[*key];
        let total = v["total"].as_u64().unwrap_or(0);
        let mut by: Vec<(String, f64)> = counts(v);
        by.sort_by(|a, b| b.1.total_cmp(&a.1));
        let where_: Vec<String> = by
            .iter()
            .take(8)
            .map(|(k, n)| {
                let href = if *key == "revocations" {
                    admin_link(&[("status", "REVOKED")])
                } else {
                    let mut p = vec![("entitlement", k.as_str())];
                    if let Some(s) = status {
                        p.push(("status", s));
                    }
                    admin_link(&p)
                };
                format!("<a href=\"{}\">{}</a> ({n})", esc(&href), esc(k))
            })
            .collect();
        let _ = write!(
            t,
            "<tr><th scope=\"row\" title=\"{}\">{}</th><td>{total}</td><td>{}</td></tr>",
            esc(v["events"].as_str().unwrap_or_default()),
            esc(label),
            where_.join(", ")
        );
    }
    let rs = &sec["rubberStamping"];
    let _ = write!(
        t,
        "<tr><th scope=\"row\">Approvals within {} of the request</th><td>{}</td><td>{}</td></tr>",
        short_duration(rs["withinSecs"].as_u64().unwrap_or(0)),
        rs["total"].as_u64().unwrap_or(0),
        rs["byApprover"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, r)| r["withinSecs"].as_u64().unwrap_or(0) > 0)
            .map(|(k, r)| format!("{} ({} of {})", esc(k), r["withinSecs"], r["decisions"]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ac = &sec["approverConcentration"];
    let _ = write!(
        t,
        "<tr><th scope=\"row\">Top approver's share of approvals</th><td>{:.0}%</td><td>{}</td></tr>",
        ac["topShare"].as_f64().unwrap_or(0.0) * 100.0,
        esc(ac["topApprover"].as_str().unwrap_or("-"))
    );
    t.push_str("</tbody></table></div>");
    t
}

/// `2027-01-15 08:00 UTC` from an RFC 3339 field.
fn to_minute(v: &Value) -> String {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_default()
}

/// The analytics page's main content from a `GET /analytics` answer.
pub fn analytics_page(report: &Value, from: &str, to: &str) -> String {
    let p = &report["patterns"];
    let u = &report["usage"];
    let mut out = String::from("<h1>Analytics</h1>\n");
    let _ = writeln!(
        out,
        "<form method=\"get\" action=\"/ui/analytics\" class=\"filters\" aria-label=\"Range\"><div><label for=\"a-from\">From</label><input id=\"a-from\" name=\"from\" type=\"text\" value=\"{}\" placeholder=\"2027-01-01\"></div><div><label for=\"a-to\">To</label><input id=\"a-to\" name=\"to\" type=\"text\" value=\"{}\" placeholder=\"2027-01-31\"></div><div><button type=\"submit\">Show</button></div></form>",
        esc(from),
        esc(to)
    );
    let scope = match report["entitlements"].as_array() {
        Some(list) => format!(
            "your entitlements only ({})",
            list.iter()
                .filter_map(Value::as_str)
                .map(esc)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "every entitlement".into(),
    };
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} to {} · {} · {} audit events read</p>",
        esc(&to_minute(&report["from"])),
        esc(&to_minute(&report["to"])),
        scope,
        report["eventsRead"].as_u64().unwrap_or(0)
    );
    let _ = writeln!(
        out,
        "<ul class=\"kpis\"><li><strong>{}</strong> requests</li><li><strong>{}</strong> grants</li><li><strong>{}</strong> elevated hours</li><li><strong>{}</strong> median time to decision</li></ul>",
        p["requestsByEntitlement"]["total"].as_u64().unwrap_or(0),
        u["grants"]["total"].as_u64().unwrap_or(0),
        fmt_num(u["elevatedHours"]["total"].as_f64().unwrap_or(0.0), "hours"),
        p["timeToDecision"]["all"]["p50Secs"]
            .as_u64()
            .map(short_duration)
            .unwrap_or_else(|| "-".into()),
    );

    let days: BTreeMap<String, BTreeMap<String, u64>> =
        serde_json::from_value(p["requestsPerDay"]["days"].clone()).unwrap_or_default();
    let _ = writeln!(
        out,
        "<section aria-labelledby=\"h-per-day\"><h2 id=\"h-per-day\">Requests per day by outcome</h2>{}</section>",
        per_day(&days)
    );
    let hw = &p["hourOfWeek"];
    let hdays: Vec<String> = serde_json::from_value(hw["days"].clone()).unwrap_or_default();
    let cells: Vec<Vec<u64>> = serde_json::from_value(hw["cells"].clone()).unwrap_or_default();
    let _ = writeln!(
        out,
        "<section aria-labelledby=\"h-heatmap\"><h2 id=\"h-heatmap\">When people ask (hour of week, {})</h2>{}</section>",
        esc(hw["timeZone"].as_str().unwrap_or("UTC")),
        heatmap(&hdays, &cells, hw["timeZone"].as_str().unwrap_or("UTC"))
    );
    let by_ent = counts(&p["requestsByEntitlement"]);
    let _ = writeln!(
        out,
        "<section aria-labelledby=\"h-top-ent\"><h2 id=\"h-top-ent\">Top entitlements</h2>{}</section>",
        bars(
            "chart-top-entitlements",
            "Requests by entitlement",
            "requests",
            &by_ent,
            10,
            &|k| Some(admin_link(&[("entitlement", k)]))
        )
    );
    let by_req = counts(&p["requestsByRequester"]);
    let _ = writeln!(
        out,
        "<section aria-labelledby=\"h-top-req\"><h2 id=\"h-top-req\">Top requesters</h2>{}</section>",
        bars(
            "chart-top-requesters",
            "Requests by requester",
            "requests",
            &by_req,
            10,
            &|k| Some(admin_link(&[("requester", k)]))
        )
    );
    let ttd = &p["timeToDecision"];
    let mut lat: Vec<(String, f64)> = Vec::new();
    for (k, q) in ttd["byEntitlement"].as_object().into_iter().flatten() {
        if let Some(x) = q["p50Secs"].as_f64() {
            lat.push((format!("{k} (median)"), x));
        }
        if let Some(x) = q["p90Secs"].as_f64() {
            lat.push((format!("{k} (90th percentile)"), x));
        }
    }
    let _ = writeln!(
        out,
        "<section aria-labelledby=\"h-ttd\"><h2 id=\"h-ttd\">Time to decision</h2><p>All decisions: median {}, 90th percentile {} ({} decisions).</p>{}</section>",
        ttd["all"]["p50Secs"]
            .as_u64()
            .map(short_duration)
            .unwrap_or_else(|| "-".into()),
        ttd["all"]["p90Secs"]
            .as_u64()
            .map(short_duration)
            .unwrap_or_else(|| "-".into()),
        ttd["all"]["count"].as_u64().unwrap_or(0),
        bars(
            "chart-time-to-decision",
            "Time to decision by entitlement",
            "seconds",
            &lat,
            20,
            &|_| None
        )
    );
    let elevated = counts(&u["elevatedHours"]);
    let _ = writeln!(
        out,
        "<section aria-labelledby=\"h-elevated\"><h2 id=\"h-elevated\">Elevated hours</h2><p>{} hours held in total; standing access would have been {} hours.</p>{}</section>",
        fmt_num(u["elevatedHours"]["total"].as_f64().unwrap_or(0.0), "hours"),
        fmt_num(
            u["standingAccess"]["standingHours"].as_f64().unwrap_or(0.0),
            "hours"
        ),
        bars(
            "chart-elevated-hours",
            "Elevated hours by entitlement",
            "hours",
            &elevated,
            10,
            &|k| Some(admin_link(&[("entitlement", k)]))
        )
    );
    let _ = writeln!(
        out,
        "<section aria-labelledby=\"h-signals\"><h2 id=\"h-signals\">Security signals</h2>{}</section>",
        signals_table(&report["security"])
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn per_day_stacks_each_outcome_with_a_title() {
        let mut days = BTreeMap::new();
        days.insert(
            "2027-01-15".to_string(),
            BTreeMap::from([("GRANTED".to_string(), 3u64), ("DENIED".to_string(), 1)]),
        );
        let svg = per_day(&days);
        assert!(
            svg.contains("<title>2027-01-15 GRANTED: 3</title>"),
            "{svg}"
        );
        assert!(svg.contains("<title>2027-01-15 DENIED: 1</title>"));
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("<td>3</td>"), "the numbers are in a table too");
    }

    #[test]
    fn the_heatmap_has_a_cell_per_hour_and_day() {
        let days: Vec<String> = [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ]
        .iter()
        .map(|d| d.to_string())
        .collect();
        let mut cells = vec![vec![0u64; 24]; 7];
        cells[0][9] = 4;
        let svg = heatmap(&days, &cells, "UTC");
        assert_eq!(svg.matches("<rect").count(), 7 * 24);
        assert!(svg.contains("<title>Monday 09:00: 4</title>"));
    }

    #[test]
    fn names_are_escaped_and_bars_link_where_asked() {
        let v = vec![("<b>x</b>".to_string(), 2.0), ("a".to_string(), 5.0)];
        let out = bars("c", "t", "requests", &v, 10, &|k| {
            Some(format!("/ui/admin?e={k}"))
        });
        assert!(!out.contains("<b>x</b>"));
        assert!(out.contains("&lt;b&gt;x&lt;/b&gt;"));
        // Largest first.
        assert!(out.find(">a<").unwrap() < out.find("&lt;b&gt;").unwrap());
    }

    #[test]
    fn signals_link_to_the_requests_they_count() {
        let sec = json!({"denied": {"events": "e", "total": 2, "by": {"JIT-Admin": 2}}});
        let t = signals_table(&sec);
        assert!(
            t.contains("/ui/admin?entitlement=JIT-Admin&amp;status=DENIED"),
            "{t}"
        );
    }
}
