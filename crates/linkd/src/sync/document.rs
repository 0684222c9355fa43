//! The one parser for sync documents: the write path accepts exactly what
//! the change feed and the event stream can later read back. A document is
//! refused on write, with a reason, when it nests deeper than
//! [`MAX_DEPTH`] or repeats a key inside one object; otherwise a feed
//! reader would get `null` (serde_json stops at 128 levels) or a
//! silently collapsed object where the writer sent two values.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Deepest nesting of arrays and objects a document may have. Below
/// serde_json's own recursion limit (128), so every stored document reads
/// back; far above what settings need.
pub const MAX_DEPTH: usize = 64;

/// Why a body is not a document linkd keeps.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// Not JSON at all (a syntax error or trailing bytes).
    #[error("the body must be a JSON value in UTF-8 ({0})")]
    NotJson(String),
    /// JSON, but deeper than [`MAX_DEPTH`] or with a repeated key.
    #[error("{0}")]
    Refused(String),
}

/// Parses a document as the feed reads it, under the same limits as
/// writes.
pub fn parse(text: &str) -> Result<Value, DocumentError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Level(0)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| match e.classify() {
            // Errors raised by `Level` below are data errors; syntax and
            // end-of-input errors are plain malformed JSON.
            serde_json::error::Category::Data => DocumentError::Refused(e.to_string()),
            _ => DocumentError::NotJson(e.to_string()),
        })?;
    Ok(value)
}

/// A value at this depth: the number of arrays and objects around it.
#[derive(Clone, Copy)]
struct Level(usize);

impl Level {
    fn inside<E: de::Error>(self) -> Result<Level, E> {
        if self.0 >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "the document nests arrays and objects deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Level(self.0 + 1))
    }
}

impl<'de> DeserializeSeed<'de> for Level {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.inside()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.inside()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // RFC 8259 §4: names within an object SHOULD be unique; with
            // repeats, readers disagree on the value (serde_json keeps the
            // last), so the writer is told instead.
            if object.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(de::Error::custom(format_args!(
                    "the key {shown:?} appears twice in one object"
                )));
            }
            let value = map.next_value_seed(inner)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"a":[1,-2,3.5,"x",true,null,{"b":{}}],"c":18446744073709551615}"#,
            "\"only a string\"",
            " 7 ",
            "null",
        ] {
            let ours = parse(text).unwrap();
            let theirs: Value = serde_json::from_str(text).unwrap();
            assert_eq!(ours, theirs, "{text}");
        }
    }

    #[test]
    fn refuses_depth_past_the_limit() {
        assert!(parse(&nested(MAX_DEPTH)).is_ok());
        let e = parse(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(matches!(e, DocumentError::Refused(_)), "{e:?}");
        assert!(e.to_string().contains("deeper than 64 levels"), "{e}");
        // Far past serde_json's own limit: refused by ours, not a stack
        // overflow nor a recursion-limit syntax error.
        assert!(matches!(
            parse(&nested(5000)).unwrap_err(),
            DocumentError::Refused(_)
        ));
        let objects = format!("{}1{}", r#"{"a":"#.repeat(65), "}".repeat(65));
        assert!(matches!(
            parse(&objects).unwrap_err(),
            DocumentError::Refused(_)
        ));
    }

    #[test]
    fn refuses_repeated_keys_at_any_depth() {
        for text in [r#"{"a":1,"a":2}"#, r#"[{"x":{"k":1,"j":2,"k":3}}]"#] {
            let e = parse(text).unwrap_err();
            assert!(e.to_string().contains("appears twice"), "{text}: {e}");
        }
        // The same key in two different objects is fine.
        assert!(parse(r#"{"a":{"k":1},"b":{"k":2}}"#).is_ok());
    }

    #[test]
    fn malformed_json_is_not_json() {
        for text in ["", "{", "[1,]", "1 2", "{\"a\" 1}"] {
            assert!(
                matches!(parse(text), Err(DocumentError::NotJson(_))),
                "{text:?}"
            );
        }
    }
}
