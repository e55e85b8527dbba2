//! JSON parsing that refuses duplicate object keys at any depth.
//!
//! `serde_json` keeps the last of two equal keys, so a token carrying `"nonce"` twice could show one
//! value to this verifier and another to a different parser. Signed security tokens must mean one
//! thing only, hence a parser that refuses them outright.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a strict parse failed. Deliberately carries no text from the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrictJsonError {
    #[error("duplicate key in a JSON object")]
    DuplicateKey,
    #[error("not a JSON object")]
    NotAnObject,
    #[error("malformed JSON")]
    Malformed,
}

/// Parses `bytes` as one JSON object, refusing duplicate keys anywhere inside it.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match de.deserialize_any(StrictVisitor) {
        Ok(v) => v,
        Err(e) if e.to_string().starts_with(DUPLICATE_MARKER) => {
            return Err(StrictJsonError::DuplicateKey);
        }
        Err(_) => return Err(StrictJsonError::Malformed),
    };
    de.end().map_err(|_| StrictJsonError::Malformed)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(StrictJsonError::NotAnObject),
    }
}

const DUPLICATE_MARKER: &str = "strict-json: duplicate key";

struct StrictVisitor;

/// Wraps a nested value so `next_value` and `next_element` recurse through [`StrictVisitor`].
struct Strict(Value);

impl<'de> de::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
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

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(DUPLICATE_MARKER));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use StrictJsonError::*;
        let cases: &[(&str, Result<(), StrictJsonError>)] = &[
            (r#"{"a":1,"b":[1,2,{"c":null}]}"#, Ok(())),
            (r#"{}"#, Ok(())),
            // Duplicates at the top level, nested, and spelled with an escape.
            (r#"{"a":1,"a":2}"#, Err(DuplicateKey)),
            (r#"{"a":{"b":1,"b":1}}"#, Err(DuplicateKey)),
            (r#"{"a":[{"b":1,"b":2}]}"#, Err(DuplicateKey)),
            (r#"{"nonce":"x","non\u0063e":"y"}"#, Err(DuplicateKey)),
            // Keys differing only in case are different keys.
            (r#"{"a":1,"A":2}"#, Ok(())),
            (r#"[1,2]"#, Err(NotAnObject)),
            (r#""s""#, Err(NotAnObject)),
            (r#"{"a":1} trailing"#, Err(Malformed)),
            (r#"{"a":1"#, Err(Malformed)),
            (r#"{"a":1,}"#, Err(Malformed)),
            ("", Err(Malformed)),
        ];
        for (input, want) in cases {
            let got = parse_object(input.as_bytes()).map(|_| ());
            assert_eq!(&got, want, "input {input}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "{\"a\":".repeat(10_000), "1");
        assert_eq!(
            parse_object(deep.as_bytes()),
            Err(StrictJsonError::Malformed)
        );
    }

    #[test]
    fn values_survive() {
        let m = parse_object(br#"{"n":1.5,"s":"x","b":true,"z":null,"u":18446744073709551615}"#)
            .unwrap();
        assert_eq!(m["n"], 1.5);
        assert_eq!(m["s"], "x");
        assert_eq!(m["b"], true);
        assert!(m["z"].is_null());
        assert_eq!(m["u"].as_u64(), Some(u64::MAX));
    }
}
