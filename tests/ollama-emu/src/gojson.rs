//! Request bodies decoded the way gin's `ShouldBindJSON` (Go's
//! `encoding/json`) does, with its error texts: an empty body is `missing
//! request body`, trailing data after the first value is ignored, and type
//! mismatches name the Go struct field.

use serde_json::{Map, Value};

use crate::errors::ApiError;

/// The Go type a field decodes into, for mismatch messages.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Str,
    Bool,
    Int,
    Float,
    /// Any array; the Go type name for messages.
    Array(&'static str),
    /// Any object; the Go type name for messages.
    Object(&'static str),
    /// Anything (`any`, or types with their own decoder such as keep_alive).
    Any,
}

impl Kind {
    fn go_type(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Float => "float64",
            Kind::Array(t) | Kind::Object(t) => t,
            Kind::Any => "interface {}",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match (self, v) {
            (_, Value::Null) | (Kind::Any, _) => true,
            (Kind::Str, Value::String(_)) | (Kind::Bool, Value::Bool(_)) => true,
            (Kind::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (Kind::Float, Value::Number(_)) => true,
            (Kind::Array(_), Value::Array(_)) | (Kind::Object(_), Value::Object(_)) => true,
            _ => false,
        }
    }
}

fn json_kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) if n.is_f64() => format!("number {n}"),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

/// Decodes `body` as the Go struct `type_name` with the given fields.
/// Unknown fields are ignored, as in Go.
pub fn decode(
    body: &[u8],
    type_name: &str,
    fields: &[(&str, Kind)],
) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("missing request body"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: Value = serde::Deserialize::deserialize(&mut de)
        .map_err(|e| ApiError::bad_request(syntax_message(body, &e)))?;
    let entries = match value {
        Value::Object(_) => {
            // Parse again keeping every key in order: Go applies duplicate
            // keys one after another, so the last one wins, and `null` on a
            // scalar field leaves the earlier value in place.
            let Entries(entries) = serde_json::from_slice(body)
                .or_else(|_| Entries::first_value(body))
                .map_err(|e| ApiError::bad_request(syntax_message(body, &e)))?;
            entries
        }
        Value::Null => Vec::new(),
        other => {
            return Err(ApiError::bad_request(format!(
                "json: cannot unmarshal {} into Go value of type api.{type_name}",
                json_kind(&other)
            )))
        }
    };
    let mut map = Map::new();
    for (key, v) in entries {
        // Go matches a key to a field exactly or else case-insensitively.
        let field = fields.iter().find(|(name, _)| *name == key).or_else(|| {
            fields
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&key))
        });
        let Some((name, kind)) = field else {
            map.insert(key, v);
            continue;
        };
        if !kind.accepts(&v) {
            return Err(ApiError::bad_request(format!(
                "json: cannot unmarshal {} into Go struct field {type_name}.{name} of type {}",
                json_kind(&v),
                kind.go_type()
            )));
        }
        match (kind, v) {
            (Kind::Str | Kind::Bool | Kind::Int | Kind::Float, Value::Null) => {}
            (_, Value::Null) => {
                map.remove(*name);
            }
            (_, v) => {
                map.insert((*name).to_string(), v);
            }
        }
    }
    Ok(map)
}

/// A JSON object's members in document order, duplicates kept.
struct Entries(Vec<(String, Value)>);

impl Entries {
    /// Like `serde_json::from_slice`, but ignores what follows the first
    /// value (as Go's `json.Decoder` does).
    fn first_value(body: &[u8]) -> Result<Entries, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(body);
        serde::Deserialize::deserialize(&mut de)
    }
}

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = a.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Maps a serde_json error to the `encoding/json` text.
fn syntax_message(body: &[u8], e: &serde_json::Error) -> String {
    if e.is_eof() {
        return "unexpected EOF".into();
    }
    let text = e.to_string();
    let Some(c) = char_at(body, e.line(), e.column()) else {
        return "unexpected EOF".into();
    };
    let context = if text.starts_with("key must be a string") {
        "looking for beginning of object key string"
    } else if text.starts_with("expected `:`") {
        "after object key"
    } else if text.starts_with("expected `,` or `}`") {
        "after object key:value pair"
    } else if text.starts_with("expected `,` or `]`") {
        "after array element"
    } else if text.starts_with("trailing comma") {
        if c == '}' {
            "looking for beginning of object key string"
        } else {
            "looking for beginning of value"
        }
    } else if text.starts_with("invalid number") {
        "in numeric literal"
    } else if text.starts_with("invalid escape") {
        "in string escape code"
    } else if text.starts_with("control character") {
        "in string literal"
    } else {
        "looking for beginning of value"
    };
    format!("invalid character {} {context}", go_quote_char(c))
}

fn char_at(body: &[u8], line: usize, column: usize) -> Option<char> {
    let text = String::from_utf8_lossy(body);
    let l = text.lines().nth(line.checked_sub(1)?)?;
    l.get(column.checked_sub(1)?..)?.chars().next()
}

fn go_quote_char(c: char) -> String {
    match c {
        '\'' => "'\\''".into(),
        '"' => "'\"'".into(),
        c if c.is_control() => format!("'\\x{:02x}'", c as u32),
        c => format!("'{c}'"),
    }
}

/// A string field, empty if absent or null.
pub fn str_field<'a>(map: &'a Map<String, Value>, name: &str) -> &'a str {
    map.get(name).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        decode(
            body.as_bytes(),
            "GenerateRequest",
            &[("model", Kind::Str), ("stream", Kind::Bool)],
        )
        .unwrap_err()
        .message
    }

    #[test]
    fn go_error_texts() {
        assert_eq!(err(""), "missing request body");
        assert_eq!(
            err("x"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(err("{\"model\":"), "unexpected EOF");
        assert_eq!(
            err("{\"model\":1}"),
            "json: cannot unmarshal number into Go struct field GenerateRequest.model of type string"
        );
        assert_eq!(
            err("{\"stream\":\"yes\"}"),
            "json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool"
        );
        assert_eq!(
            err("[]"),
            "json: cannot unmarshal array into Go value of type api.GenerateRequest"
        );
        assert!(decode(b"{\"model\":\"a\"} trailing", "X", &[]).is_ok());
        let folded = decode(b"{\"Model\":\"a\"}", "X", &[("model", Kind::Str)]).unwrap();
        assert_eq!(str_field(&folded, "model"), "a");
        let fields = &[("model", Kind::Str)];
        let last = decode(br#"{"model":"a","MODEL":"b"}"#, "X", fields).unwrap();
        assert_eq!(str_field(&last, "model"), "b", "the last duplicate wins");
        let kept = decode(br#"{"model":"a","model":null} tail"#, "X", fields).unwrap();
        assert_eq!(
            str_field(&kept, "model"),
            "a",
            "null leaves a string field alone"
        );
    }
}
