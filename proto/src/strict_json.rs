//! JSON to [`serde_json::Value`] like `serde_json::from_str`, but noticing a member name that
//! appears twice in one object: serde_json silently keeps the last one, so
//! `{"method":"ping","method":"config.set"}` would run `config.set`. The protocol refuses such
//! a message (`-32600`); parsing still succeeds, so that the error can carry the request's id.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `text` into a value, and names the first member name found twice in one object
/// (at any depth), if any.
///
/// # Errors
/// What `serde_json::from_str::<Value>` would refuse (not JSON, trailing characters, nesting
/// past serde_json's recursion limit).
pub(crate) fn from_str(text: &str) -> Result<(Value, Option<String>), serde_json::Error> {
    let mut duplicate = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = ValueSeed {
        duplicate: &mut duplicate,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok((value, duplicate))
}

/// Deserializes any value, as serde_json's own `Value` visitor does, and records the first
/// duplicate member name in `duplicate`.
pub(crate) struct ValueSeed<'a> {
    pub duplicate: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
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

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed {
            duplicate: &mut *self.duplicate,
        })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed {
                duplicate: &mut *self.duplicate,
            })?;
            if members.contains_key(&key) {
                if self.duplicate.is_none() {
                    *self.duplicate = Some(key);
                }
            } else {
                members.insert(key, value);
            }
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_as_serde_json_does() {
        for text in [
            r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":18446744073709551615}"#,
            "-0",
            "1e300",
            r#""\u0000\ud83d\ude00""#,
            "[]",
        ] {
            let (v, dup) = from_str(text).unwrap();
            assert_eq!(v, serde_json::from_str::<Value>(text).unwrap(), "{text}");
            assert_eq!(dup, None);
        }
        for bad in ["", "{", "[1,]", "{\"a\":1} x", "1e400"] {
            assert!(from_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_the_first_duplicate_at_any_depth() {
        let (v, dup) = from_str(r#"{"method":"ping","method":"config.set"}"#).unwrap();
        assert_eq!(dup.as_deref(), Some("method"));
        assert_eq!(v, json!({"method": "ping"}));
        let (_, dup) = from_str(r#"{"params":[{"limit":1,"limit":2}],"id":1,"id":2}"#).unwrap();
        assert_eq!(dup.as_deref(), Some("limit"));
    }
}
