//! Reference paths: the subset of JSONPath that Step Functions calls a
//! *reference path* — `$`, `$.a.b`, `$.a[0]`, `$['a']` — plus `$$…` for the
//! context object. Anything that can select more than one node (wildcards,
//! filters, slices, recursive descent) or that is an intrinsic function is
//! refused when the definition loads.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Field(String),
    Index(usize),
}

/// A parsed reference path. `context` is true for `$$…` paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefPath {
    pub context: bool,
    pub segs: Vec<Seg>,
    pub text: String,
}

/// Why a string is not a reference path; the caller adds state and field.
pub(crate) fn parse(text: &str) -> Result<RefPath, String> {
    if is_intrinsic(text) {
        return Err(format!(
            "intrinsic functions are not supported by the local engine: {text}"
        ));
    }
    let rest = text
        .strip_prefix('$')
        .ok_or_else(|| format!("not a JSONPath (must start with $): {text}"))?;
    let (context, mut rest) = match rest.strip_prefix('$') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let unsupported =
        || format!("this field takes a reference path ($, $.a.b, $.a[0], $['a']), not {text}");
    let mut segs = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            if r.starts_with('.') {
                return Err(unsupported());
            }
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            if name.is_empty()
                || name.chars().any(|c| {
                    c.is_whitespace()
                        || matches!(
                            c,
                            '*' | '?' | '@' | '(' | ')' | ',' | ':' | '\'' | '"' | ']'
                        )
                })
            {
                return Err(unsupported());
            }
            segs.push(Seg::Field(name.to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            if let Some(q) = r.chars().next().filter(|c| *c == '\'' || *c == '"') {
                let body = &r[1..];
                let close = body.find(q).ok_or_else(unsupported)?;
                let name = &body[..close];
                let after = body[close + 1..]
                    .strip_prefix(']')
                    .ok_or_else(unsupported)?;
                if name.is_empty() {
                    return Err(unsupported());
                }
                segs.push(Seg::Field(name.to_string()));
                rest = after;
            } else {
                let close = r.find(']').ok_or_else(unsupported)?;
                let digits = &r[..close];
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(unsupported());
                }
                let index: usize = digits.parse().map_err(|_| unsupported())?;
                segs.push(Seg::Index(index));
                rest = &r[close + 1..];
            }
        } else {
            return Err(unsupported());
        }
    }
    Ok(RefPath {
        context,
        segs,
        text: text.to_string(),
    })
}

/// `States.Format(…)`, `States.Array(…)` and friends.
pub(crate) fn is_intrinsic(text: &str) -> bool {
    text.starts_with("States.") && text.contains('(')
}

impl RefPath {
    pub fn is_root(&self) -> bool {
        self.segs.is_empty()
    }

    /// The node the path selects in `root`, if it exists.
    pub fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        let mut cur = root;
        for seg in &self.segs {
            cur = match (seg, cur) {
                (Seg::Field(name), Value::Object(map)) => map.get(name)?,
                (Seg::Index(i), Value::Array(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Puts `value` at this path inside `root`, creating missing objects on
    /// the way, as `ResultPath` does. Fails (ResultPathMatchFailure) when a
    /// node on the way exists but cannot hold the next step: a string where
    /// an object is needed, or an index past an array's end.
    pub fn set(&self, root: &mut Value, value: Value) -> Result<(), String> {
        if self.segs.is_empty() {
            *root = value;
            return Ok(());
        }
        let mut cur = root;
        let last = self.segs.len() - 1;
        for (i, seg) in self.segs.iter().enumerate() {
            let is_last = i == last;
            match seg {
                Seg::Field(name) => {
                    let map = match cur {
                        Value::Object(m) => m,
                        other => {
                            return Err(format!(
                                "unable to apply ResultPath {} to {}: {} is not an object",
                                self.text,
                                kind(other),
                                self.prefix(i)
                            ));
                        }
                    };
                    if is_last {
                        map.insert(name.clone(), value);
                        return Ok(());
                    }
                    let needs_object = !matches!(self.segs[i + 1], Seg::Index(_));
                    cur = map.entry(name.clone()).or_insert_with(|| {
                        if needs_object {
                            Value::Object(Map::new())
                        } else {
                            Value::Array(Vec::new())
                        }
                    });
                }
                Seg::Index(idx) => {
                    let items = match cur {
                        Value::Array(a) => a,
                        other => {
                            return Err(format!(
                                "unable to apply ResultPath {} to {}: {} is not an array",
                                self.text,
                                kind(other),
                                self.prefix(i)
                            ));
                        }
                    };
                    let len = items.len();
                    let slot = items.get_mut(*idx).ok_or_else(|| {
                        format!(
                            "unable to apply ResultPath {}: index {idx} is past the end of an array of {len}",
                            self.text
                        )
                    })?;
                    if is_last {
                        *slot = value;
                        return Ok(());
                    }
                    cur = slot;
                }
            }
        }
        Ok(())
    }

    /// The path in the bracket notation AWS's messages use: `$['a'][0]`.
    pub fn normalized(&self) -> String {
        let mut s = String::from(if self.context { "$$" } else { "$" });
        for seg in &self.segs {
            match seg {
                Seg::Field(f) => {
                    s.push_str("['");
                    s.push_str(f);
                    s.push_str("']");
                }
                Seg::Index(i) => s.push_str(&format!("[{i}]")),
            }
        }
        s
    }

    fn prefix(&self, n: usize) -> String {
        let mut s = String::from(if self.context { "$$" } else { "$" });
        for seg in &self.segs[..n] {
            match seg {
                Seg::Field(f) => {
                    s.push('.');
                    s.push_str(f);
                }
                Seg::Index(i) => s.push_str(&format!("[{i}]")),
            }
        }
        s
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_reference_path_forms() {
        let cases: &[(&str, bool, Vec<Seg>)] = &[
            ("$", false, vec![]),
            ("$$", true, vec![]),
            (
                "$.a.b",
                false,
                vec![Seg::Field("a".into()), Seg::Field("b".into())],
            ),
            ("$.a[0]", false, vec![Seg::Field("a".into()), Seg::Index(0)]),
            ("$['a b']", false, vec![Seg::Field("a b".into())]),
            (
                "$$.Execution.Id",
                true,
                vec![Seg::Field("Execution".into()), Seg::Field("Id".into())],
            ),
            (
                "$.a[2].b",
                false,
                vec![
                    Seg::Field("a".into()),
                    Seg::Index(2),
                    Seg::Field("b".into()),
                ],
            ),
        ];
        for (text, context, segs) in cases {
            let p = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((&p.context, &p.segs), (context, segs), "{text}");
        }
    }

    #[test]
    fn refuses_everything_that_is_not_a_reference_path() {
        for text in [
            "$..a",
            "$.a[*]",
            "$.*",
            "$.a[?(@.b == 1)]",
            "$.a[0:2]",
            "$.a[-1]",
            "$.a[0,1]",
            "a.b",
            "$.",
            "$[",
            "$.a b",
            "States.Format('{}', $.a)",
        ] {
            assert!(parse(text).is_err(), "{text} should be refused");
        }
        let e = parse("States.Format('x {}', $.a)").unwrap_err();
        assert!(e.contains("intrinsic"), "{e}");
    }

    #[test]
    fn get_returns_the_node_or_none() {
        let doc = json!({"a": {"b": [10, {"c": true}]}});
        assert_eq!(parse("$.a.b[1].c").unwrap().get(&doc), Some(&json!(true)));
        assert_eq!(parse("$['a']['b'][0]").unwrap().get(&doc), Some(&json!(10)));
        assert_eq!(parse("$.a.x").unwrap().get(&doc), None);
        assert_eq!(parse("$.a.b[5]").unwrap().get(&doc), None);
        assert_eq!(parse("$.a[0]").unwrap().get(&doc), None);
        assert_eq!(parse("$").unwrap().get(&doc), Some(&doc));
    }

    #[test]
    fn set_creates_nested_objects_and_refuses_non_objects() {
        let mut doc = json!({"a": 1});
        parse("$.x.y.z").unwrap().set(&mut doc, json!("v")).unwrap();
        assert_eq!(doc, json!({"a": 1, "x": {"y": {"z": "v"}}}));

        let mut doc = json!({"a": [1, 2]});
        parse("$.a[1]").unwrap().set(&mut doc, json!(9)).unwrap();
        assert_eq!(doc, json!({"a": [1, 9]}));

        let mut doc = json!({"a": "str"});
        assert!(parse("$.a.b").unwrap().set(&mut doc, json!(1)).is_err());
        let mut doc = json!("scalar");
        assert!(parse("$.a").unwrap().set(&mut doc, json!(1)).is_err());
        let mut doc = json!({"a": [1]});
        assert!(parse("$.a[3]").unwrap().set(&mut doc, json!(1)).is_err());
    }
}
