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
    let mut map = match value {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => {
            return Err(ApiError::bad_request(format!(
                "json: cannot unmarshal {} into Go value of type api.{type_name}",
                json_kind(&other)
            )))
        }
    };
    for (name, kind) in fields {
        // Go also accepts a key that matches a field case-insensitively.
        if !map.contains_key(*name) {
            let folded = map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned();
            if let Some(v) = folded.and_then(|k| map.remove(&k)) {
                map.insert((*name).to_string(), v);
            }
        }
        if let Some(v) = map.get(*name) {
            if !kind.accepts(v) {
                return Err(ApiError::bad_request(format!(
                    "json: cannot unmarshal {} into Go struct field {type_name}.{name} of type {}",
                    json_kind(v),
                    kind.go_type()
                )));
            }
        }
    }
    Ok(map)
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
    }
}
