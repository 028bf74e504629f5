//! Strict decoders for untrusted token parts: base64url without padding and
//! JSON objects that reject duplicate keys at every depth.
//!
//! Must never happen: two parsers disagreeing about what a token says. So
//! padding, non-canonical trailing bits, whitespace and duplicate JSON keys
//! (where "which one wins" differs between libraries) are all refused.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Decodes base64url without padding; `None` on any deviation.
pub(crate) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.as_bytes()).ok()
}

/// Encodes base64url without padding.
pub(crate) fn b64url_encode(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// Parses `bytes` as one JSON object, rejecting duplicate keys anywhere,
/// trailing data and non-objects.
pub(crate) fn parse_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<StrictValue>(bytes).ok()?.0 {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Parses `bytes` as any JSON value, rejecting duplicate keys anywhere.
pub(crate) fn parse_value(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice::<StrictValue>(bytes)
        .ok()
        .map(|v| v.0)
}

/// A JSON value whose objects had no duplicate keys.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<StrictValue, E> {
        Number::from_f64(v)
            .map(|n| StrictValue(Value::Number(n)))
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(StrictValue(Value::Array(out)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                // The key is attacker-controlled: never put it in the error.
                return Err(de::Error::custom("duplicate key"));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(StrictValue(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_is_strict() {
        assert_eq!(b64url_decode("YQ"), Some(b"a".to_vec()));
        assert_eq!(b64url_decode("YQ=="), None);
        assert_eq!(b64url_decode("YR"), None, "non-canonical trailing bits");
        assert_eq!(b64url_decode("Y Q"), None);
        assert_eq!(b64url_decode("a+b/"), None, "standard alphabet");
        assert_eq!(b64url_decode(""), Some(Vec::new()));
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(parse_object(br#"{"a":1,"b":2}"#).is_some());
        assert!(parse_object(br#"{"a":1,"a":2}"#).is_none());
        assert!(parse_object(br#"{"x":{"a":1,"a":2}}"#).is_none());
        assert!(parse_object(br#"{"x":[{"a":1,"a":2}]}"#).is_none());
        // Escaped spellings of the same key are the same key.
        assert!(parse_object(br#"{"exp":1,"\u0065xp":2}"#).is_none());
    }

    #[test]
    fn only_objects_without_trailing_data() {
        assert!(parse_object(b"[1]").is_none());
        assert!(parse_object(b"\"s\"").is_none());
        assert!(parse_object(br#"{"a":1} x"#).is_none());
        assert!(parse_object(br#"{"a":1}{"b":2}"#).is_none());
        assert!(parse_object(b"").is_none());
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_value(deep.as_bytes()).is_none());
    }
}
