//! A JSON value kept as its text: the instances' own `/api/tags` and
//! `/api/ps` entries ride in the map this way.
//!
//! At 1,000 instances a map holds some 20,000 of them. As
//! `serde_json::Value` trees each is a few dozen allocations (every key,
//! every string, an index per object), which made most of syncd's memory
//! and most of the filter's decoding time; as text each is one allocation,
//! and decoding only checks and copies it. The few entries a fleet read
//! answers with are parsed when it is rendered ([`RawJson::to_value`]).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// A JSON value as compact text; `null` when empty.
#[derive(Debug, Clone, Default)]
pub struct RawJson(Option<Box<RawValue>>);

impl RawJson {
    /// JSON `null`.
    pub fn null() -> Self {
        RawJson(None)
    }

    /// Whether it is JSON `null`.
    pub fn is_null(&self) -> bool {
        self.0.is_none()
    }

    /// The value's compact text (`null` for null).
    pub fn text(&self) -> &str {
        self.0.as_deref().map_or("null", RawValue::get)
    }

    /// The value as a tree (`Value::Null` if it is null).
    pub fn to_value(&self) -> Value {
        // The text was checked as JSON when it was made or decoded.
        self.0
            .as_deref()
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or(Value::Null)
    }
}

impl From<&Value> for RawJson {
    fn from(value: &Value) -> Self {
        match value {
            Value::Null => RawJson(None),
            // Serialising a `Value` cannot fail.
            v => RawJson(serde_json::value::to_raw_value(v).ok()),
        }
    }
}

impl From<Value> for RawJson {
    fn from(value: Value) -> Self {
        RawJson::from(&value)
    }
}

impl PartialEq for RawJson {
    /// The same text (entries are written compactly, in their order).
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl Eq for RawJson {}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(raw) => raw.serialize(serializer),
            None => serializer.serialize_unit(),
        }
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(if raw.get() == "null" {
            RawJson(None)
        } else {
            RawJson(Some(raw))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_survives_a_round_trip_and_null_is_null() {
        let v = json!({"name": "m:latest", "details": {"format": "gguf"}, "n": 1.5});
        let raw = RawJson::from(&v);
        assert_eq!(raw.to_value(), v);
        let doc = serde_json::to_string(&json!({"x": 1})).unwrap();
        assert_eq!(doc, r#"{"x":1}"#);
        let wrapped: Vec<RawJson> = serde_json::from_str(r#"[{"b":1,"a":2}, null]"#).unwrap();
        assert_eq!(wrapped[0].text(), r#"{"b":1,"a":2}"#, "order kept");
        assert_eq!(wrapped[1], RawJson::null());
        assert_eq!(
            serde_json::to_string(&wrapped).unwrap(),
            r#"[{"b":1,"a":2},null]"#
        );
        assert_eq!(RawJson::from(Value::Null).to_value(), Value::Null);
        assert_eq!(
            serde_json::to_value(&raw).unwrap(),
            v,
            "a tree can be made of it"
        );
    }
}
