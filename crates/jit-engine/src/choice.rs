//! Choice rules: parsing (with the load-time checks AWS makes) and
//! evaluation (with AWS's type rules: comparing a value of the wrong type is
//! simply false; a `Variable` or `…Path` that selects nothing is a
//! `States.Runtime` error, except for `IsPresent`).

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::{DefinitionError, StateError};
use crate::interp::Ctx;
use crate::path::{self, RefPath};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Numeric,
    Boolean,
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Test {
    Null,
    Present,
    Numeric,
    String,
    Boolean,
    Timestamp,
}

#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Literal(Value),
    Path(RefPath),
}

#[derive(Debug, Clone)]
pub(crate) enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Compare {
        variable: RefPath,
        kind: Kind,
        cmp: Cmp,
        operand: Operand,
    },
    Matches {
        variable: RefPath,
        pattern: String,
    },
    Test {
        variable: RefPath,
        test: Test,
        expected: bool,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct ChoiceRule {
    pub cond: Cond,
    pub next: String,
}

fn comparison(op: &str) -> Option<(Kind, Cmp, bool)> {
    let (op, is_path) = match op.strip_suffix("Path") {
        Some(base) => (base, true),
        None => (op, false),
    };
    let (kind, rest) = if let Some(r) = op.strip_prefix("String") {
        (Kind::String, r)
    } else if let Some(r) = op.strip_prefix("Numeric") {
        (Kind::Numeric, r)
    } else if let Some(r) = op.strip_prefix("Boolean") {
        (Kind::Boolean, r)
    } else if let Some(r) = op.strip_prefix("Timestamp") {
        (Kind::Timestamp, r)
    } else {
        return None;
    };
    let cmp = match rest {
        "Equals" => Cmp::Eq,
        "LessThan" => Cmp::Lt,
        "GreaterThan" => Cmp::Gt,
        "LessThanEquals" => Cmp::Le,
        "GreaterThanEquals" => Cmp::Ge,
        _ => return None,
    };
    if kind == Kind::Boolean && cmp != Cmp::Eq {
        return None;
    }
    Some((kind, cmp, is_path))
}

fn test_op(op: &str) -> Option<Test> {
    Some(match op {
        "IsNull" => Test::Null,
        "IsPresent" => Test::Present,
        "IsNumeric" => Test::Numeric,
        "IsString" => Test::String,
        "IsBoolean" => Test::Boolean,
        "IsTimestamp" => Test::Timestamp,
        _ => return None,
    })
}

/// Parses one rule. `top` rules carry `Next`; nested ones must not.
pub(crate) fn parse_rule(
    state: &str,
    field: &str,
    v: &Value,
    top: bool,
) -> Result<(Cond, Option<String>), DefinitionError> {
    let err = |f: String, m: String| DefinitionError::at(state, f, m);
    let obj = v
        .as_object()
        .ok_or_else(|| err(field.to_string(), "a choice rule must be an object".into()))?;
    let next = match obj.get("Next") {
        None if top => {
            return Err(err(
                format!("{field}.Next"),
                "a top-level choice rule needs Next".into(),
            ));
        }
        None => None,
        Some(_) if !top => {
            return Err(err(
                format!("{field}.Next"),
                "Next is only allowed on top-level choice rules".into(),
            ));
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(err(format!("{field}.Next"), "must be a string".into()));
        }
    };

    let mut operators: Vec<&String> = obj
        .keys()
        .filter(|k| !matches!(k.as_str(), "Next" | "Comment" | "Variable"))
        .collect();
    operators.sort();
    if operators.len() != 1 {
        return Err(err(
            field.to_string(),
            format!(
                "a choice rule needs exactly one operator (And, Or, Not or a comparison), found {}",
                if operators.is_empty() {
                    "none".to_string()
                } else {
                    operators
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        ));
    }
    let op = operators[0].as_str();
    let opf = format!("{field}.{op}");
    let operand = &obj[op];

    let cond = match op {
        "And" | "Or" => {
            let items = operand
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| err(opf.clone(), "must be a non-empty array of rules".into()))?;
            if obj.contains_key("Variable") {
                return Err(err(
                    format!("{field}.Variable"),
                    format!("not allowed with {op}"),
                ));
            }
            let mut conds = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                conds.push(parse_rule(state, &format!("{opf}[{i}]"), item, false)?.0);
            }
            if op == "And" {
                Cond::And(conds)
            } else {
                Cond::Or(conds)
            }
        }
        "Not" => {
            if obj.contains_key("Variable") {
                return Err(err(
                    format!("{field}.Variable"),
                    "not allowed with Not".into(),
                ));
            }
            Cond::Not(Box::new(parse_rule(state, &opf, operand, false)?.0))
        }
        _ => {
            let variable = match obj.get("Variable") {
                Some(Value::String(s)) => {
                    path::parse(s).map_err(|m| err(format!("{field}.Variable"), m))?
                }
                Some(_) => {
                    return Err(err(format!("{field}.Variable"), "must be a string".into()));
                }
                None => {
                    return Err(err(
                        format!("{field}.Variable"),
                        format!("{op} needs a Variable"),
                    ));
                }
            };
            if op == "StringMatches" {
                let pattern = operand
                    .as_str()
                    .ok_or_else(|| err(opf.clone(), "must be a string".into()))?;
                Cond::Matches {
                    variable,
                    pattern: pattern.to_string(),
                }
            } else if let Some(test) = test_op(op) {
                let expected = operand
                    .as_bool()
                    .ok_or_else(|| err(opf.clone(), "must be true or false".into()))?;
                Cond::Test {
                    variable,
                    test,
                    expected,
                }
            } else if let Some((kind, cmp, is_path)) = comparison(op) {
                let operand = if is_path {
                    let s = operand
                        .as_str()
                        .ok_or_else(|| err(opf.clone(), "must be a path string".into()))?;
                    Operand::Path(path::parse(s).map_err(|m| err(opf.clone(), m))?)
                } else {
                    let ok = match kind {
                        Kind::String => operand.is_string(),
                        Kind::Numeric => operand.is_number(),
                        Kind::Boolean => operand.is_boolean(),
                        Kind::Timestamp => operand.as_str().and_then(parse_timestamp).is_some(),
                    };
                    if !ok {
                        let want = match kind {
                            Kind::String => "a string",
                            Kind::Numeric => "a number",
                            Kind::Boolean => "a boolean",
                            Kind::Timestamp => "an RFC 3339 timestamp string",
                        };
                        return Err(err(opf, format!("must be {want}")));
                    }
                    Operand::Literal(operand.clone())
                };
                Cond::Compare {
                    variable,
                    kind,
                    cmp,
                    operand,
                }
            } else {
                return Err(err(opf, "unknown choice rule operator".into()));
            }
        }
    };
    Ok((cond, next))
}

/// RFC 3339 as Step Functions accepts it: an uppercase `T` separator.
pub(crate) fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if s.len() < 20 || s.as_bytes()[10] != b'T' {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn resolve<'a>(p: &RefPath, input: &'a Value, ctx: &'a Ctx<'_>) -> Option<&'a Value> {
    if p.context {
        p.get(ctx.root())
    } else {
        p.get(input)
    }
}

impl Cond {
    pub(crate) fn eval(&self, input: &Value, ctx: &Ctx<'_>) -> Result<bool, StateError> {
        match self {
            Cond::And(cs) => {
                for c in cs {
                    if !c.eval(input, ctx)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Cond::Or(cs) => {
                for c in cs {
                    if c.eval(input, ctx)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Cond::Not(c) => Ok(!c.eval(input, ctx)?),
            Cond::Test {
                variable,
                test,
                expected,
            } => {
                let v = resolve(variable, input, ctx);
                let actual = match (test, v) {
                    (Test::Present, v) => v.is_some(),
                    (_, None) => return Err(missing(variable)),
                    (Test::Null, Some(v)) => v.is_null(),
                    (Test::Numeric, Some(v)) => v.is_number(),
                    (Test::String, Some(v)) => v.is_string(),
                    (Test::Boolean, Some(v)) => v.is_boolean(),
                    (Test::Timestamp, Some(v)) => v.as_str().and_then(parse_timestamp).is_some(),
                };
                Ok(actual == *expected)
            }
            Cond::Matches { variable, pattern } => {
                let v = resolve(variable, input, ctx).ok_or_else(|| missing(variable))?;
                Ok(v.as_str().is_some_and(|s| wildcard_match(pattern, s)))
            }
            Cond::Compare {
                variable,
                kind,
                cmp,
                operand,
            } => {
                let v = resolve(variable, input, ctx).ok_or_else(|| missing(variable))?;
                let rhs = match operand {
                    Operand::Literal(l) => l,
                    Operand::Path(p) => resolve(p, input, ctx).ok_or_else(|| missing(p))?,
                };
                Ok(compare(*kind, *cmp, v, rhs))
            }
        }
    }
}

fn missing(p: &RefPath) -> StateError {
    StateError::runtime(format!(
        "Invalid path '{}': The choice state's condition path references an invalid value.",
        p.text
    ))
}

fn ordering_ok(cmp: Cmp, o: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match cmp {
        Cmp::Eq => o == Equal,
        Cmp::Lt => o == Less,
        Cmp::Gt => o == Greater,
        Cmp::Le => o != Greater,
        Cmp::Ge => o != Less,
    }
}

fn compare(kind: Kind, cmp: Cmp, lhs: &Value, rhs: &Value) -> bool {
    match kind {
        Kind::String => match (lhs.as_str(), rhs.as_str()) {
            (Some(a), Some(b)) => ordering_ok(cmp, a.cmp(b)),
            _ => false,
        },
        Kind::Boolean => match (lhs.as_bool(), rhs.as_bool()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
        Kind::Numeric => match (lhs.as_f64(), rhs.as_f64()) {
            (Some(a), Some(b)) if lhs.is_number() && rhs.is_number() => {
                a.partial_cmp(&b).is_some_and(|o| ordering_ok(cmp, o))
            }
            _ => false,
        },
        Kind::Timestamp => match (
            lhs.as_str().and_then(parse_timestamp),
            rhs.as_str().and_then(parse_timestamp),
        ) {
            (Some(a), Some(b)) => ordering_ok(cmp, a.cmp(&b)),
            _ => false,
        },
    }
}

/// `StringMatches`: `*` matches any run of characters; `\*` and `\\` are
/// literal.
fn wildcard_match(pattern: &str, s: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok {
        Star,
        Ch(char),
    }
    let mut toks = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => toks.push(Tok::Ch(it.next().unwrap_or('\\'))),
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Ch(c)),
        }
    }
    let chars: Vec<char> = s.chars().collect();
    // Classic greedy matcher with backtracking to the last star.
    let (mut p, mut i) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while i < chars.len() {
        if p < toks.len() && toks[p] == Tok::Ch(chars[i]) {
            p += 1;
            i += 1;
        } else if p < toks.len() && toks[p] == Tok::Star {
            star = Some(p);
            mark = i;
            p += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    while p < toks.len() && toks[p] == Tok::Star {
        p += 1;
    }
    p == toks.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_string_matches() {
        let cases = [
            ("log-*.txt", "log-2024.txt", true),
            ("log-*.txt", "log-.txt", true),
            ("log-*.txt", "log-2024.csv", false),
            ("*", "", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("*x*y", "aaxbby", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, s, want) in cases {
            assert_eq!(wildcard_match(pattern, s), want, "{pattern} vs {s}");
        }
    }

    #[test]
    fn operator_names_parse_with_and_without_path() {
        assert_eq!(
            comparison("StringEquals"),
            Some((Kind::String, Cmp::Eq, false))
        );
        assert_eq!(
            comparison("NumericLessThanEqualsPath"),
            Some((Kind::Numeric, Cmp::Le, true))
        );
        assert_eq!(
            comparison("TimestampGreaterThanPath"),
            Some((Kind::Timestamp, Cmp::Gt, true))
        );
        assert_eq!(
            comparison("BooleanEqualsPath"),
            Some((Kind::Boolean, Cmp::Eq, true))
        );
        assert_eq!(comparison("BooleanLessThan"), None);
        assert_eq!(comparison("Timestamp"), None);
        assert_eq!(comparison("StringContains"), None);
    }
}
