//! JSON parsed strictly: a key given twice in one object is refused.
//!
//! `serde_json` keeps the last of two equal keys without a word, so
//! `{"duration": 900, "duration": 43200}` would read as whatever the last
//! parser in a chain of proxies, loggers and validators happened to keep.
//! Every JSON body a person sends goes through [`parse`] instead, which
//! names the repeated key (with its path when it is nested).

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrictJsonError {
    /// `key` appears twice in one object; `path` locates that object's key
    /// from the top (`duration`, `scope.actions`, `items[2].name`).
    DuplicateKey { path: String, key: String },
    /// Not JSON at all: serde_json's description.
    Syntax(String),
}

impl fmt::Display for StrictJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrictJsonError::DuplicateKey { key, .. } => write!(f, "duplicate key `{key}`"),
            StrictJsonError::Syntax(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StrictJsonError {}

/// Parses `bytes` as one JSON value, refusing any object with a repeated key.
pub fn parse(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Seed {
        path: String::new(),
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match (parsed, duplicate.into_inner()) {
        (_, Some((path, key))) => Err(StrictJsonError::DuplicateKey { path, key }),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(StrictJsonError::Syntax(e.to_string())),
    }
}

/// Builds a [`Value`] like serde_json's own visitor, carrying where it is
/// (for the error) and a slot for the first repeated key found.
struct Seed<'a> {
    path: String,
    duplicate: &'a RefCell<Option<(String, String)>>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let seed = Seed {
                path: format!("{}[{}]", self.path, out.len()),
                duplicate: self.duplicate,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if out.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some((path, key.clone()));
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(Seed {
                path,
                duplicate: self.duplicate,
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(text: &str) -> Option<(String, String)> {
        match parse(text.as_bytes()) {
            Err(StrictJsonError::DuplicateKey { path, key }) => Some((path, key)),
            _ => None,
        }
    }

    #[test]
    fn repeated_keys_are_named_with_their_path() {
        assert_eq!(
            dup(r#"{"duration": 900, "duration": 43200}"#),
            Some(("duration".into(), "duration".into()))
        );
        assert_eq!(
            dup(r#"{"a": {"b": 1, "c": {"d": 1, "d": 2}}}"#),
            Some(("a.c.d".into(), "d".into()))
        );
        assert_eq!(
            dup(r#"{"items": [{"x": 1}, {"y": 1, "y": 1}]}"#),
            Some(("items[1].y".into(), "y".into()))
        );
        // An escaped spelling of the same key is the same key.
        assert_eq!(
            dup(r#"{"reason": "a", "re\u0061son": "b"}"#),
            Some(("reason".into(), "reason".into()))
        );
    }

    #[test]
    fn everything_else_parses_as_serde_json_does() {
        for text in [
            r#"{"a": 1, "b": [1, 2.5, -3, "x", null, true, {"a": 1}], "c": {"a": 2}}"#,
            "[]",
            "\"s\"",
            "18446744073709551615",
            " {\"a\": {}} ",
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(parse(text.as_bytes()).unwrap(), want, "{text}");
        }
        for bad in ["{\"a\": ", "{} x", "", "{\"a\" 1}"] {
            assert!(
                matches!(parse(bad.as_bytes()), Err(StrictJsonError::Syntax(_))),
                "{bad}"
            );
        }
    }
}
