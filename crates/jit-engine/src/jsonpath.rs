//! The JSONPath Step Functions accepts where a field is a *path* (not a
//! *reference path*): `InputPath`, `OutputPath`, and `….$` fields of
//! `Parameters`, `ResultSelector` and `ItemSelector`. AWS evaluates these
//! with Jayway JsonPath, so this follows its rules:
//!
//! - steps: `.name`, `['name']`, `["name"]`, `[0]`, `[-1]`, `.*`, `[*]`,
//!   `..name` / `..*` (recursive descent), unions `['a','b']` / `[0,2]`,
//!   slices `[1:]`, `[:2]`, `[::2]`, filters `[?(@.x == 0)]` with `==`,
//!   `!=`, `<`, `<=`, `>`, `>=`, `&&`, `||`, `!`, parentheses, existence
//!   (`[?(@.x)]`), literals and `@…`/`$…` operands;
//! - a trailing `.length()` gives the length of the array (or string, or
//!   object) selected;
//! - a *definite* path (names and non-negative indexes only) selects one
//!   node or nothing; any other selects a list — an array of every match,
//!   possibly empty, leaves missing from some branches skipped.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// `.name` / `['name']`; several names for a union.
    Names(Vec<String>),
    /// `[i]` / `[i,j]`; negative counts from the end.
    Indexes(Vec<i64>),
    Wildcard,
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Filter(Box<Expr>),
    /// `..` followed by the step applied at every depth.
    Descend(Box<Step>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, CmpOp, Operand),
    Exists(Operand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    /// `@…` (relative to the item) or `$…` (to the document root).
    Path {
        relative: bool,
        steps: Vec<Step>,
    },
    Literal(Value),
}

/// A parsed JSONPath. `context` is true for `$$…`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonPath {
    pub context: bool,
    pub steps: Vec<Step>,
    /// A trailing `.length()`.
    pub length: bool,
    /// Selects one node or nothing (names and single indexes only).
    pub definite: bool,
    pub text: String,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let bad = |why: &str| format!("invalid JSONPath {text}: {why}");
        let rest = text
            .strip_prefix('$')
            .ok_or_else(|| format!("not a JSONPath (must start with $): {text}"))?;
        let (context, rest) = match rest.strip_prefix('$') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let (rest, length) = match rest.strip_suffix(".length()") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let mut p = Parser {
            s: rest.as_bytes(),
            i: 0,
        };
        let steps = p.steps(false).map_err(|e| bad(&e))?;
        if p.i != p.s.len() {
            return Err(bad(&format!("unexpected text at {}", &rest[p.i..])));
        }
        Ok(JsonPath {
            context,
            definite: !length && definite(&steps),
            steps,
            length,
            text: text.to_string(),
        })
    }

    /// A definite path selects at most one node; any other selects a list.
    pub fn is_definite(&self) -> bool {
        self.definite
    }

    /// The value the path selects in `root`: the node (or `None`) for a
    /// definite path, an array of matches for any other, and their length
    /// with `.length()` (`None` when what is selected has none).
    pub fn select(&self, root: &Value) -> Option<Value> {
        if self.is_definite() {
            return self.get(root).cloned();
        }
        let mut out = Vec::new();
        walk(&self.steps, root, root, &mut out);
        if self.length {
            if definite(&self.steps) {
                return match out.first()? {
                    Value::Array(a) => Some(Value::from(a.len())),
                    Value::Object(m) => Some(Value::from(m.len())),
                    Value::String(s) => Some(Value::from(s.chars().count())),
                    _ => None,
                };
            }
            return Some(Value::from(out.len()));
        }
        Some(Value::Array(out.into_iter().cloned().collect()))
    }

    /// The node a definite path selects.
    pub fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        let mut cur = root;
        for step in &self.steps {
            cur = match (step, cur) {
                (Step::Names(n), Value::Object(m)) if n.len() == 1 => m.get(&n[0])?,
                (Step::Indexes(ix), Value::Array(a)) if ix.len() == 1 => {
                    let i = if ix[0] < 0 {
                        a.len() as i64 + ix[0]
                    } else {
                        ix[0]
                    };
                    a.get(usize::try_from(i).ok()?)?
                }
                _ => return None,
            };
        }
        Some(cur)
    }

    /// The path in AWS's bracket notation: `$['a'][0]`.
    pub fn normalized(&self) -> String {
        let mut s = String::from(if self.context { "$$" } else { "$" });
        for step in &self.steps {
            match step {
                Step::Names(n) => {
                    let quoted: Vec<String> = n.iter().map(|n| format!("'{n}'")).collect();
                    s.push_str(&format!("[{}]", quoted.join(",")));
                }
                Step::Indexes(ix) => {
                    let v: Vec<String> = ix.iter().map(i64::to_string).collect();
                    s.push_str(&format!("[{}]", v.join(",")));
                }
                Step::Wildcard => s.push_str("[*]"),
                _ => return self.text.clone(),
            }
        }
        s
    }
}

fn definite(steps: &[Step]) -> bool {
    steps.iter().all(|s| match s {
        Step::Names(n) => n.len() == 1,
        Step::Indexes(ix) => ix.len() == 1,
        _ => false,
    })
}

fn walk<'a>(steps: &[Step], root: &'a Value, cur: &'a Value, out: &mut Vec<&'a Value>) {
    let Some((step, rest)) = steps.split_first() else {
        out.push(cur);
        return;
    };
    let next = |v: &'a Value, out: &mut Vec<&'a Value>| walk(rest, root, v, out);
    match step {
        Step::Names(names) => {
            if let Value::Object(m) = cur {
                for n in names {
                    if let Some(v) = m.get(n) {
                        next(v, out);
                    }
                }
            }
        }
        Step::Indexes(ix) => {
            if let Value::Array(a) = cur {
                for &i in ix {
                    let i = if i < 0 { a.len() as i64 + i } else { i };
                    if i >= 0
                        && let Some(v) = a.get(i as usize)
                    {
                        next(v, out);
                    }
                }
            }
        }
        Step::Wildcard => match cur {
            Value::Array(a) => a.iter().for_each(|v| next(v, out)),
            Value::Object(m) => m.values().for_each(|v| next(v, out)),
            _ => {}
        },
        Step::Slice(start, end, step) => {
            if let Value::Array(a) = cur {
                for i in slice_indexes(a.len(), *start, *end, *step) {
                    next(&a[i], out);
                }
            }
        }
        Step::Filter(expr) => match cur {
            Value::Array(a) => {
                for v in a {
                    if eval_expr(expr, root, v) {
                        next(v, out);
                    }
                }
            }
            Value::Object(m) => {
                for v in m.values() {
                    if eval_expr(expr, root, v) {
                        next(v, out);
                    }
                }
            }
            _ => {}
        },
        Step::Descend(inner) => {
            let mut nodes = Vec::new();
            descendants(cur, &mut nodes);
            for node in nodes {
                let mut matched = Vec::new();
                walk(
                    std::slice::from_ref(inner.as_ref()),
                    root,
                    node,
                    &mut matched,
                );
                for m in matched {
                    next(m, out);
                }
            }
        }
    }
}

/// `v` and every node below it, parents first.
fn descendants<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Array(a) => a.iter().for_each(|x| descendants(x, out)),
        Value::Object(m) => m.values().for_each(|x| descendants(x, out)),
        _ => {}
    }
}

fn slice_indexes(
    len: usize,
    start: Option<i64>,
    end: Option<i64>,
    step: Option<i64>,
) -> Vec<usize> {
    let len = len as i64;
    let step = step.unwrap_or(1);
    if step <= 0 {
        return Vec::new();
    }
    let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
    let s = start.map_or(0, norm);
    let e = end.map_or(len, norm);
    (s..e).step_by(step as usize).map(|i| i as usize).collect()
}

fn operand_value(o: &Operand, root: &Value, item: &Value) -> Option<Value> {
    match o {
        Operand::Literal(v) => Some(v.clone()),
        Operand::Path { relative, steps } => {
            let base = if *relative { item } else { root };
            if definite(steps) {
                let p = JsonPath {
                    context: false,
                    steps: steps.clone(),
                    length: false,
                    definite: true,
                    text: String::new(),
                };
                p.get(base).cloned()
            } else {
                let mut out = Vec::new();
                walk(steps, root, base, &mut out);
                Some(Value::Array(out.into_iter().cloned().collect()))
            }
        }
    }
}

fn eval_expr(e: &Expr, root: &Value, item: &Value) -> bool {
    match e {
        Expr::Or(a, b) => eval_expr(a, root, item) || eval_expr(b, root, item),
        Expr::And(a, b) => eval_expr(a, root, item) && eval_expr(b, root, item),
        Expr::Not(a) => !eval_expr(a, root, item),
        Expr::Exists(o) => operand_value(o, root, item).is_some_and(|v| match o {
            Operand::Literal(_) => !matches!(v, Value::Null | Value::Bool(false)),
            _ => true,
        }),
        Expr::Cmp(l, op, r) => {
            let (Some(l), Some(r)) = (operand_value(l, root, item), operand_value(r, root, item))
            else {
                return false;
            };
            compare(&l, *op, &r)
        }
    }
}

fn compare(l: &Value, op: CmpOp, r: &Value) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (l, r) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match op {
        CmpOp::Eq => ord.map_or(l == r, |o| o == Ordering::Equal),
        CmpOp::Ne => ord.map_or(l != r, |o| o != Ordering::Equal),
        CmpOp::Lt => ord == Some(Ordering::Less),
        CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Gt => ord == Some(Ordering::Greater),
        CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c == b' ') {
            self.i += 1;
        }
    }

    fn eat(&mut self, t: &str) -> bool {
        if self.s[self.i..].starts_with(t.as_bytes()) {
            self.i += t.len();
            true
        } else {
            false
        }
    }

    /// Steps until the end, or (in a filter) until an operator or `)`.
    fn steps(&mut self, in_filter: bool) -> Result<Vec<Step>, String> {
        let mut steps = Vec::new();
        loop {
            match self.peek() {
                None => break,
                Some(b'.') => {
                    if self.eat("..") {
                        let inner = match self.peek() {
                            Some(b'[') => self.bracket()?,
                            Some(b'*') => {
                                self.i += 1;
                                Step::Wildcard
                            }
                            _ => Step::Names(vec![self.name()?]),
                        };
                        steps.push(Step::Descend(Box::new(inner)));
                    } else {
                        self.i += 1;
                        if self.eat("*") {
                            steps.push(Step::Wildcard);
                        } else {
                            steps.push(Step::Names(vec![self.name()?]));
                        }
                    }
                }
                Some(b'[') => steps.push(self.bracket()?),
                Some(_) if in_filter => break,
                Some(c) => return Err(format!("unexpected '{}'", c as char)),
            }
        }
        Ok(steps)
    }

    fn name(&mut self) -> Result<String, String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if matches!(
                c,
                b'.' | b'['
                    | b']'
                    | b'('
                    | b')'
                    | b' '
                    | b'='
                    | b'!'
                    | b'<'
                    | b'>'
                    | b'&'
                    | b'|'
                    | b','
                    | b'\''
                    | b'"'
                    | b'*'
                    | b'?'
                    | b'@'
                    | b':'
            ) {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return Err("empty field name".into());
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn quoted(&mut self) -> Result<String, String> {
        let q = self.peek().ok_or("unterminated string")?;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated string".into()),
                Some(b'\\') => {
                    self.i += 1;
                    if let Some(c) = self.peek() {
                        out.push(c);
                        self.i += 1;
                    }
                }
                Some(c) if c == q => {
                    self.i += 1;
                    break;
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn int(&mut self) -> Option<i64> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        match t.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                self.i = start;
                None
            }
        }
    }

    fn bracket(&mut self) -> Result<Step, String> {
        self.i += 1; // [
        self.skip_ws();
        let step = match self.peek() {
            Some(b'*') => {
                self.i += 1;
                Step::Wildcard
            }
            Some(b'?') => {
                self.i += 1;
                self.skip_ws();
                if !self.eat("(") {
                    return Err("a filter is [?(…)]".into());
                }
                let e = self.expr()?;
                self.skip_ws();
                if !self.eat(")") {
                    return Err("unclosed filter".into());
                }
                Step::Filter(Box::new(e))
            }
            Some(b'\'') | Some(b'"') => {
                let mut names = vec![self.quoted()?];
                self.skip_ws();
                while self.eat(",") {
                    self.skip_ws();
                    names.push(self.quoted()?);
                    self.skip_ws();
                }
                Step::Names(names)
            }
            _ => {
                let first = self.int();
                self.skip_ws();
                if self.peek() == Some(b':') {
                    self.i += 1;
                    let end = self.int();
                    let step = if self.eat(":") { self.int() } else { None };
                    Step::Slice(first, end, step)
                } else {
                    let mut ix = vec![first.ok_or("expected an index, a name, * or a filter")?];
                    while self.eat(",") {
                        self.skip_ws();
                        ix.push(self.int().ok_or("expected an index")?);
                        self.skip_ws();
                    }
                    Step::Indexes(ix)
                }
            }
        };
        self.skip_ws();
        if !self.eat("]") {
            return Err("expected ]".into());
        }
        Ok(step)
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut l = self.and()?;
        loop {
            self.skip_ws();
            if self.eat("||") {
                let r = self.and()?;
                l = Expr::Or(Box::new(l), Box::new(r));
            } else {
                return Ok(l);
            }
        }
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut l = self.unary()?;
        loop {
            self.skip_ws();
            if self.eat("&&") {
                let r = self.unary()?;
                l = Expr::And(Box::new(l), Box::new(r));
            } else {
                return Ok(l);
            }
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.skip_ws();
        if self.peek() == Some(b'!') && self.s.get(self.i + 1) != Some(&b'=') {
            self.i += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(b'(') {
            self.i += 1;
            let e = self.expr()?;
            self.skip_ws();
            if !self.eat(")") {
                return Err("unclosed (".into());
            }
            return Ok(e);
        }
        let l = self.operand()?;
        self.skip_ws();
        let op = if self.eat("==") {
            CmpOp::Eq
        } else if self.eat("!=") {
            CmpOp::Ne
        } else if self.eat("<=") {
            CmpOp::Le
        } else if self.eat(">=") {
            CmpOp::Ge
        } else if self.eat("<") {
            CmpOp::Lt
        } else if self.eat(">") {
            CmpOp::Gt
        } else {
            return Ok(Expr::Exists(l));
        };
        self.skip_ws();
        let r = self.operand()?;
        Ok(Expr::Cmp(l, op, r))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        self.skip_ws();
        match self.peek() {
            Some(b'@') | Some(b'$') => {
                let relative = self.peek() == Some(b'@');
                self.i += 1;
                let steps = self.steps(true)?;
                Ok(Operand::Path { relative, steps })
            }
            Some(b'\'') | Some(b'"') => Ok(Operand::Literal(Value::String(self.quoted()?))),
            _ => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.'))
                {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                let v: Value = serde_json::from_str(t)
                    .map_err(|_| format!("not a literal or path in a filter: {t:?}"))?;
                Ok(Operand::Literal(v))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(path: &str, doc: &Value) -> Option<Value> {
        JsonPath::parse(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .select(doc)
    }

    #[test]
    fn selects_like_jayway() {
        let doc = json!({"items": [
            {"id": 1, "x": 0, "tag": "a"},
            {"id": 2, "x": 5, "tag": "b"},
            {"id": 3, "tag": "c"}
        ], "m": {"a": 1, "b": 2}});
        let cases = [
            ("$.items[0].id", json!(1)),
            ("$.items[-1].id", json!(3)),
            ("$.items[*].id", json!([1, 2, 3])),
            ("$.items[*].x", json!([0, 5])),
            ("$.items[1:].id", json!([2, 3])),
            ("$.items[:2].id", json!([1, 2])),
            ("$.items[::2].id", json!([1, 3])),
            ("$.items[0,2].id", json!([1, 3])),
            ("$.items[?(@.x == 0)].id", json!([1])),
            ("$.items[?(@.x > 1)].tag", json!(["b"])),
            ("$.items[?(@.x)].id", json!([1, 2])),
            ("$.items[?(@.tag == 'c' || @.id == 1)].id", json!([1, 3])),
            ("$.items[?(@.x >= 0 && @.tag != 'a')].id", json!([2])),
            ("$..id", json!([1, 2, 3])),
            ("$.m['a','b']", json!([1, 2])),
            ("$.m.*", json!([1, 2])),
            ("$.items.length()", json!(3)),
            ("$.items[?(@.x == 9)]", json!([])),
        ];
        for (p, want) in cases {
            assert_eq!(sel(p, &doc), Some(want), "{p}");
        }
        assert_eq!(sel("$.nope", &doc), None);
        assert!(JsonPath::parse("$.items[0]").unwrap().is_definite());
        assert!(!JsonPath::parse("$.items[*]").unwrap().is_definite());
    }

    #[test]
    fn refuses_what_is_not_a_path() {
        for p in ["a.b", "$.", "$[", "$.a[?(@.x ==)]", "$.a[?@.x]", "$.a b"] {
            assert!(JsonPath::parse(p).is_err(), "{p} should be refused");
        }
    }
}
