//! HTML building blocks: escaping, the page layout, the security headers,
//! and how statuses, times and durations read.

use http::{HeaderMap, HeaderValue, header};
use jit_core::request::Timestamp;
use serde_json::Value;

/// The stylesheet and script, built in (no other host is ever asked).
pub const CSS: &str = include_str!("../assets/console.css");
pub const JS: &str = include_str!("../assets/console.js");

/// The strict policy every console answer carries: nothing inline, nothing
/// from another origin, no framing, forms only to this origin.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON string field, escaped (empty when absent).
pub fn s(v: &Value) -> String {
    esc(v.as_str().unwrap_or_default())
}

/// The navigation and who is signed in, for the layout.
pub struct Chrome<'a> {
    pub user: Option<&'a str>,
    pub admin: bool,
    pub analytics: bool,
    pub csrf: Option<String>,
    /// `jit-local`: the banner saying sign-in is local-only.
    pub local: bool,
    /// Which link is the current page.
    pub current: &'a str,
}

/// A whole page.
pub fn page(title: &str, chrome: &Chrome<'_>, flash: Option<&Flash>, main: &str) -> String {
    let mut nav = String::new();
    if let Some(user) = chrome.user {
        let mut links = vec![("/", "My requests"), ("/ui/inbox", "Approvals")];
        if chrome.admin {
            links.push(("/ui/admin", "Admin"));
        }
        if chrome.analytics {
            links.push(("/ui/analytics", "Analytics"));
        }
        nav.push_str("<nav aria-label=\"Main\"><ul>");
        for (href, label) in links {
            let cur = if href == chrome.current {
                " aria-current=\"page\""
            } else {
                ""
            };
            nav.push_str(&format!("<li><a href=\"{href}\"{cur}>{label}</a></li>"));
        }
        nav.push_str("</ul>");
        nav.push_str(&format!(
            "<form method=\"post\" action=\"/ui/signout\" class=\"signout\"><span class=\"who\">{}</span>{}<button type=\"submit\" class=\"link\">Sign out</button></form></nav>",
            esc(user),
            chrome.csrf.as_deref().map(csrf_field).unwrap_or_default()
        ));
    }
    let banner = if chrome.local {
        "<p class=\"local-banner\" role=\"note\">Local mode (jit-local): sign-in picks any identity. The deployed console signs people in with OpenID Connect only.</p>"
    } else {
        ""
    };
    let flash = flash.map(Flash::html).unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta name=\"referrer\" content=\"same-origin\">\n<meta name=\"robots\" content=\"noindex\">\n\
<title>{title} · JIT Access</title>\n\
<link rel=\"stylesheet\" href=\"/ui/assets/console.css\">\n\
<script src=\"/ui/assets/console.js\" defer></script>\n</head>\n<body>\n\
<a class=\"skip\" href=\"#main\">Skip to content</a>\n\
<header><p class=\"brand\"><a href=\"/\">JIT Access</a></p>{nav}</header>\n{banner}\n\
<main id=\"main\" tabindex=\"-1\">\n{flash}{main}\n</main>\n</body>\n</html>\n",
        title = esc(title),
    )
}

pub fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(token)
    )
}

/// A one-time message shown on the next page (after a redirect).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Flash {
    /// `ok` or `error`.
    pub kind: String,
    pub text: String,
}

impl Flash {
    pub fn ok(text: impl Into<String>) -> Flash {
        Flash {
            kind: "ok".into(),
            text: text.into(),
        }
    }
    pub fn error(text: impl Into<String>) -> Flash {
        Flash {
            kind: "error".into(),
            text: text.into(),
        }
    }
    pub fn html(&self) -> String {
        let (role, class) = if self.kind == "error" {
            ("alert", "flash error")
        } else {
            ("status", "flash ok")
        };
        format!(
            "<p class=\"{class}\" role=\"{role}\" id=\"flash\">{}</p>\n",
            esc(&self.text)
        )
    }
}

/// Statuses after which nothing more happens.
pub fn is_final(status: &str) -> bool {
    matches!(
        status,
        "DENIED" | "CANCELLED" | "REVOKED" | "APPROVAL_TIMED_OUT" | "FAILED" | "EXPIRED"
    )
}

/// Pending statuses (a decision is still to come).
pub fn is_pending(status: &str) -> bool {
    matches!(
        status,
        "REQUESTED" | "VALIDATING" | "POLICY_GENERATION" | "APPROVAL_PENDING"
    )
}

/// A status as a badge (text, not colour alone, carries the meaning).
pub fn badge(status: &str, id: Option<&str>) -> String {
    let class = match status {
        "GRANTED" => "granted",
        "APPROVED" => "approved",
        s if is_pending(s) => "pending",
        "EXPIRED" | "CANCELLED" => "ended",
        _ => "refused",
    };
    let live = match id {
        Some(id) if !is_final(status) => format!(" data-live=\"{}\"", esc(id)),
        _ => String::new(),
    };
    format!("<span class=\"badge {class}\"{live}>{}</span>", esc(status))
}

/// `2027-01-15 08:00 UTC (in 29m)`, from an RFC 3339 field.
pub fn when(v: &Value, now: Timestamp) -> String {
    let Some(t) = v
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    else {
        return String::new();
    };
    let t = t.with_timezone(&chrono::Utc);
    let delta = (t - now).num_seconds();
    let rel = if delta.abs() < 60 {
        "now".to_string()
    } else if delta > 0 {
        format!("in {}", short_duration(delta as u64))
    } else {
        format!("{} ago", short_duration((-delta) as u64))
    };
    format!(
        "<time datetime=\"{}\">{} UTC</time> <span class=\"rel\">({rel})</span>",
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        t.format("%Y-%m-%d %H:%M")
    )
}

/// `1h30m`, `45m`, `2d3h`.
pub fn short_duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, (secs % 86400) / 3600, (secs % 3600) / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_content_and_attributes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(short_duration(30), "30s");
        assert_eq!(short_duration(900), "15m");
        assert_eq!(short_duration(5400), "1h30m");
        assert_eq!(short_duration(7200), "2h");
        assert_eq!(short_duration(2 * 86400 + 3 * 3600), "2d3h");
    }

    #[test]
    fn only_live_statuses_are_polled() {
        assert!(badge("GRANTED", Some("r1")).contains("data-live=\"r1\""));
        assert!(!badge("EXPIRED", Some("r1")).contains("data-live"));
        assert!(badge("APPROVAL_PENDING", None).contains("pending"));
    }
}
