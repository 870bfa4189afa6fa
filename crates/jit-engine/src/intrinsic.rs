//! Intrinsic functions (`States.Format(…)` and the rest), as Step Functions
//! documents them, where AWS accepts them: `….$` fields of `Parameters`,
//! `ResultSelector`, `ItemSelector`, and a Fail state's `ErrorPath` /
//! `CausePath`. Arguments are string literals (`'…'`, with `\'`, `\{`,
//! `\}` and `\\` escapes), numbers, `true`/`false`/`null`, paths (`$…`,
//! `$$…`) and nested calls. A bad argument is `States.Runtime` naming the
//! function and what was wrong with which argument.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use sha2::Digest as _;

use crate::error::StateError;
use crate::interp::Ctx;
use crate::jsonpath::JsonPath;

/// AWS's bound on the input of Base64Encode/Decode and Hash.
const MAX_CHARS: usize = 10_000;
/// AWS's bound on the arrays ArrayRange makes.
const MAX_RANGE: usize = 1_000;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Literal(Value),
    Path(JsonPath),
    Call(Call),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    pub name: String,
    pub args: Vec<Arg>,
    pub text: String,
}

/// The functions and how many arguments each takes (min, max).
const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("States.Format", 1, usize::MAX),
    ("States.StringToJson", 1, 1),
    ("States.JsonToString", 1, 1),
    ("States.Array", 0, usize::MAX),
    ("States.ArrayPartition", 2, 2),
    ("States.ArrayContains", 2, 2),
    ("States.ArrayRange", 3, 3),
    ("States.ArrayGetItem", 2, 2),
    ("States.ArrayLength", 1, 1),
    ("States.ArrayUnique", 1, 1),
    ("States.Base64Encode", 1, 1),
    ("States.Base64Decode", 1, 1),
    ("States.Hash", 2, 2),
    ("States.JsonMerge", 3, 3),
    ("States.MathRandom", 2, 3),
    ("States.MathAdd", 2, 2),
    ("States.StringSplit", 2, 2),
    ("States.UUID", 0, 0),
];

/// The functions whose result is a string (what ErrorPath/CausePath take).
pub(crate) const STRING_FUNCTIONS: &[&str] = &[
    "States.Format",
    "States.JsonToString",
    "States.ArrayGetItem",
    "States.Base64Encode",
    "States.Base64Decode",
    "States.Hash",
    "States.UUID",
];

/// Parses an intrinsic function call; the error says what is wrong.
pub(crate) fn parse(text: &str) -> Result<Call, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        text,
    };
    let call = p.call()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text after the call: {}", &text[p.i..]));
    }
    Ok(call)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn call(&mut self) -> Result<Call, String> {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.')
        {
            self.i += 1;
        }
        let name = self.text[start..self.i].to_string();
        let Some(&(_, min, max)) = FUNCTIONS.iter().find(|(n, ..)| *n == name) else {
            return Err(format!("unknown intrinsic function {name}"));
        };
        self.ws();
        if self.s.get(self.i) != Some(&b'(') {
            return Err(format!("{name} needs (…)"));
        }
        self.i += 1;
        let mut args = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&b')') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                args.push(self.arg()?);
                self.ws();
                match self.s.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b')') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(format!("{name}: expected , or ) in the arguments")),
                }
            }
        }
        if args.len() < min || args.len() > max {
            return Err(if min == max {
                format!("{name} takes {min} argument(s), not {}", args.len())
            } else {
                format!("{name} takes {min} to {max} arguments, not {}", args.len())
            });
        }
        Ok(Call {
            name,
            args,
            text: self.text[start..self.i].to_string(),
        })
    }

    fn arg(&mut self) -> Result<Arg, String> {
        match self.s.get(self.i) {
            Some(b'\'') => {
                self.i += 1;
                let mut out = String::new();
                let rest = &self.text[self.i..];
                let mut chars = rest.char_indices();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string literal".into()),
                        Some((_, '\\')) => match chars.next() {
                            // `\{` and `\}` stay escaped for States.Format's
                            // template, which reads them as literal braces.
                            Some((_, c @ ('{' | '}'))) => {
                                out.push('\\');
                                out.push(c);
                            }
                            Some((_, c)) => out.push(c),
                            None => return Err("unterminated string literal".into()),
                        },
                        Some((k, '\'')) => {
                            self.i += k + 1;
                            return Ok(Arg::Literal(Value::String(out)));
                        }
                        Some((_, c)) => out.push(c),
                    }
                }
            }
            Some(b'$') => {
                // A path runs to the next , or ) outside brackets and quotes.
                let start = self.i;
                let mut depth = 0i32;
                let mut quote: Option<u8> = None;
                while let Some(&c) = self.s.get(self.i) {
                    match (quote, c) {
                        (Some(q), c) if c == q => quote = None,
                        (Some(_), _) => {}
                        (None, b'\'' | b'"') => quote = Some(c),
                        (None, b'[' | b'(') => depth += 1,
                        (None, b']') => depth -= 1,
                        (None, b')') if depth == 0 => break,
                        (None, b')') => depth -= 1,
                        (None, b',') if depth == 0 => break,
                        _ => {}
                    }
                    self.i += 1;
                }
                let text = self.text[start..self.i].trim_end();
                Ok(Arg::Path(JsonPath::parse(text)?))
            }
            Some(c) if c.is_ascii_alphabetic() && self.text[self.i..].starts_with("States.") => {
                Ok(Arg::Call(self.call()?))
            }
            Some(_) => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| !matches!(c, b',' | b')') && !c.is_ascii_whitespace())
                {
                    self.i += 1;
                }
                let t = &self.text[start..self.i];
                match serde_json::from_str::<Value>(t) {
                    Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => {
                        Ok(Arg::Literal(v))
                    }
                    _ => Err(format!("not an argument: {t}")),
                }
            }
            None => Err("missing argument".into()),
        }
    }
}

fn err(call: &Call, what: impl std::fmt::Display) -> StateError {
    StateError::runtime(format!("Invalid arguments in {}: {what}", call.name))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Evaluates a call on the state's input (and `$$`).
pub(crate) fn eval(call: &Call, input: &Value, ctx: &Ctx<'_>) -> Result<Value, StateError> {
    let mut args = Vec::with_capacity(call.args.len());
    for a in &call.args {
        args.push(match a {
            Arg::Literal(v) => v.clone(),
            Arg::Call(c) => eval(c, input, ctx)?,
            Arg::Path(p) => ctx.select(p, input).ok_or_else(|| {
                StateError::runtime(format!(
                    "The JSONPath '{}' specified for the function {} could not be found in the input '{}'",
                    p.text,
                    call.name,
                    if p.context { ctx.root().to_string() } else { input.to_string() }
                ))
            })?,
        });
    }
    apply(call, args)
}

fn string<'a>(call: &Call, v: &'a Value, which: &str) -> Result<&'a str, StateError> {
    v.as_str().ok_or_else(|| {
        err(
            call,
            format!("the {which} argument must be a string, not a {}", kind(v)),
        )
    })
}

fn array<'a>(call: &Call, v: &'a Value, which: &str) -> Result<&'a Vec<Value>, StateError> {
    v.as_array().ok_or_else(|| {
        err(
            call,
            format!("the {which} argument must be an array, not a {}", kind(v)),
        )
    })
}

fn integer(call: &Call, v: &Value, which: &str) -> Result<i64, StateError> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        _ => None,
    }
    .ok_or_else(|| {
        err(
            call,
            format!("the {which} argument must be an integer, not {v}"),
        )
    })
}

/// A number argument of the Math functions and ArrayRange: AWS rounds
/// fractions half up (as Java's `Math.round`: 1.5 → 2, -1.5 → -1).
fn rounded(call: &Call, v: &Value, which: &str) -> Result<i64, StateError> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.abs() < 9.0e15)
                .map(|f| (f + 0.5).floor() as i64)
        }),
        _ => None,
    }
    .ok_or_else(|| {
        err(
            call,
            format!("the {which} argument must be a number, not {v}"),
        )
    })
}

fn apply(call: &Call, mut args: Vec<Value>) -> Result<Value, StateError> {
    let a = |i: usize| -> &Value { &args[i] };
    Ok(match call.name.as_str() {
        "States.Format" => {
            let template = string(call, a(0), "first")?.to_string();
            let values: Vec<Value> = args.drain(1..).collect();
            let mut out = String::new();
            let mut used = 0;
            let mut chars = template.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            out.push(n);
                        }
                    }
                    '{' if chars.peek() == Some(&'}') => {
                        chars.next();
                        let v = values.get(used).ok_or_else(|| {
                            err(
                                call,
                                format!(
                                    "the template has more placeholders than the {} value(s) given",
                                    values.len()
                                ),
                            )
                        })?;
                        match v {
                            Value::String(s) => out.push_str(s),
                            Value::Array(_) | Value::Object(_) => {
                                return Err(err(
                                    call,
                                    format!(
                                        "placeholder {} takes a string, number, boolean or null, not an {}",
                                        used + 1,
                                        kind(v)
                                    ),
                                ));
                            }
                            other => out.push_str(&other.to_string()),
                        }
                        used += 1;
                    }
                    c => out.push(c),
                }
            }
            if used != values.len() {
                return Err(err(
                    call,
                    format!(
                        "the template has {used} placeholder(s) but {} value(s) were given",
                        values.len()
                    ),
                ));
            }
            Value::String(out)
        }
        "States.StringToJson" => {
            let s = string(call, a(0), "first")?;
            serde_json::from_str(s)
                .map_err(|e| err(call, format!("the string is not valid JSON: {e}")))?
        }
        "States.JsonToString" => Value::String(a(0).to_string()),
        "States.Array" => Value::Array(args),
        "States.ArrayPartition" => {
            let items = array(call, a(0), "first")?;
            let size = integer(call, a(1), "second")?;
            if size <= 0 {
                return Err(err(
                    call,
                    format!("the chunk size must be a positive integer, not {size}"),
                ));
            }
            Value::Array(
                items
                    .chunks(size as usize)
                    .map(|c| Value::Array(c.to_vec()))
                    .collect(),
            )
        }
        "States.ArrayContains" => {
            let items = array(call, a(0), "first")?;
            Value::Bool(items.contains(a(1)))
        }
        "States.ArrayRange" => {
            let (start, end, step) = (
                rounded(call, a(0), "first")?,
                rounded(call, a(1), "second")?,
                rounded(call, a(2), "third")?,
            );
            if step == 0 {
                return Err(err(call, "the step must not be 0"));
            }
            let mut out = Vec::new();
            let mut x = start;
            while (step > 0 && x <= end) || (step < 0 && x >= end) {
                if out.len() == MAX_RANGE {
                    return Err(err(
                        call,
                        format!("the range would have more than {MAX_RANGE} items"),
                    ));
                }
                out.push(Value::from(x));
                x = match x.checked_add(step) {
                    Some(n) => n,
                    None => break,
                };
            }
            Value::Array(out)
        }
        "States.ArrayGetItem" => {
            let items = array(call, a(0), "first")?;
            let i = integer(call, a(1), "second")?;
            usize::try_from(i)
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
                .ok_or_else(|| {
                    err(
                        call,
                        format!("index {i} is out of bounds for an array of {}", items.len()),
                    )
                })?
        }
        "States.ArrayLength" => Value::from(array(call, a(0), "first")?.len()),
        "States.ArrayUnique" => {
            let items = array(call, a(0), "first")?;
            let mut out: Vec<Value> = Vec::with_capacity(items.len());
            for v in items {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Value::Array(out)
        }
        "States.Base64Encode" => {
            let s = string(call, a(0), "first")?;
            if s.chars().count() > MAX_CHARS {
                return Err(err(
                    call,
                    format!("the input is longer than {MAX_CHARS} characters"),
                ));
            }
            Value::String(STANDARD.encode(s.as_bytes()))
        }
        "States.Base64Decode" => {
            let s = string(call, a(0), "first")?;
            if s.chars().count() > MAX_CHARS {
                return Err(err(
                    call,
                    format!("the input is longer than {MAX_CHARS} characters"),
                ));
            }
            let bytes = STANDARD
                .decode(s.as_bytes())
                .map_err(|e| err(call, format!("the input is not base64: {e}")))?;
            Value::String(
                String::from_utf8(bytes)
                    .map_err(|_| err(call, "the decoded data is not UTF-8 text"))?,
            )
        }
        "States.Hash" => {
            let data = match a(0) {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if data.chars().count() > MAX_CHARS {
                return Err(err(
                    call,
                    format!("the input is longer than {MAX_CHARS} characters"),
                ));
            }
            let alg = string(call, a(1), "second")?;
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            Value::String(match alg {
                "MD5" => hex(&crate::digest::md5(data.as_bytes())),
                "SHA-1" => hex(&crate::digest::sha1(data.as_bytes())),
                "SHA-256" => hex(&sha2::Sha256::digest(data.as_bytes())),
                "SHA-384" => hex(&sha2::Sha384::digest(data.as_bytes())),
                "SHA-512" => hex(&sha2::Sha512::digest(data.as_bytes())),
                other => {
                    return Err(err(
                        call,
                        format!(
                            "unknown algorithm {other} (MD5, SHA-1, SHA-256, SHA-384 or SHA-512)"
                        ),
                    ));
                }
            })
        }
        "States.JsonMerge" => {
            let (Value::Object(x), Value::Object(y)) = (a(0), a(1)) else {
                return Err(err(call, "the first two arguments must be objects"));
            };
            match a(2) {
                Value::Bool(false) => {}
                Value::Bool(true) => {
                    return Err(err(
                        call,
                        "only a shallow merge is supported (the third argument must be false)",
                    ));
                }
                other => {
                    return Err(err(
                        call,
                        format!("the third argument must be a boolean, not {other}"),
                    ));
                }
            }
            let mut out: Map<String, Value> = x.clone();
            for (k, v) in y {
                out.insert(k.clone(), v.clone());
            }
            Value::Object(out)
        }
        "States.MathRandom" => {
            let (lo, hi) = (
                rounded(call, a(0), "first")?,
                rounded(call, a(1), "second")?,
            );
            if hi <= lo {
                return Err(err(
                    call,
                    format!("the end ({hi}) must be greater than the start ({lo})"),
                ));
            }
            let unit = match args.get(2) {
                Some(seed) => {
                    let mut x = integer(call, seed, "third")? as u64 ^ 0x9E37_79B9_7F4A_7C15;
                    x ^= x >> 30;
                    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    x ^= x >> 27;
                    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
                    x ^= x >> 31;
                    (x >> 11) as f64 / (1u64 << 53) as f64
                }
                None => crate::token::unit().map_err(|e| StateError::runtime(e.to_string()))?,
            };
            let span = (hi - lo) as f64;
            Value::from(lo + (unit * span) as i64)
        }
        "States.MathAdd" => {
            let (x, y) = (
                rounded(call, a(0), "first")?,
                rounded(call, a(1), "second")?,
            );
            Value::from(
                x.checked_add(y)
                    .ok_or_else(|| err(call, "the sum overflows"))?,
            )
        }
        "States.StringSplit" => {
            let s = string(call, a(0), "first")?;
            let delims: Vec<char> = string(call, a(1), "second")?.chars().collect();
            Value::Array(
                s.split(|c| delims.contains(&c))
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            )
        }
        "States.UUID" => {
            let mut b = [0u8; 16];
            getrandom::fill(&mut b)
                .map_err(|e| StateError::runtime(format!("random source: {e}")))?;
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
            Value::String(format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            ))
        }
        other => {
            return Err(StateError::runtime(format!(
                "unknown intrinsic function {other}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_calls_paths_and_literals() {
        let c = parse("States.Format('{} and \\'{}\\'', $.a[?(@.x == 1)].y, States.Array(1, -2.5, true, null))").unwrap();
        assert_eq!(c.name, "States.Format");
        assert_eq!(c.args.len(), 3);
        assert_eq!(c.args[0], Arg::Literal(Value::String("{} and '{}'".into())));
        assert!(matches!(&c.args[1], Arg::Path(p) if p.text == "$.a[?(@.x == 1)].y"));
        assert!(matches!(&c.args[2], Arg::Call(n) if n.args.len() == 4));
        let braces = parse("States.Format('\\{\\}')").unwrap();
        assert_eq!(braces.args[0], Arg::Literal(Value::String("\\{\\}".into())));
        for bad in [
            "States.Nope(1)",
            "States.ArrayLength()",
            "States.Format('x'",
            "States.UUID(1)",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn md5_and_sha1_digests_match_known_vectors() {
        let call = parse("States.Hash('abc', 'MD5')").unwrap();
        let v = apply(&call, vec![Value::from("abc"), Value::from("MD5")]).unwrap();
        assert_eq!(v, Value::from("900150983cd24fb0d6963f7d28e17f72"));
        let v = apply(&call, vec![Value::from("abc"), Value::from("SHA-1")]).unwrap();
        assert_eq!(v, Value::from("a9993e364706816aba3e25717850c26c9cd0d89d"));
    }
}
