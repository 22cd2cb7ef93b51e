//! Request bodies decoded the way gin's `ShouldBindJSON` (Go's
//! `encoding/json`) does, with its error texts: an empty body is `missing
//! request body`, trailing data after the first value is ignored, and type
//! mismatches name the Go struct field.

mod parse;

use serde_json::{Map, Value};

use crate::errors::ApiError;
pub use parse::{parse, push_lossy_go, GoValue, SyntaxError, MAX_DEPTH};

/// The Go type a field decodes into: what it accepts and the type name
/// Go's messages give.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Str,
    Bool,
    Int,
    Float,
    /// `float32`: numbers beyond its range do not fit.
    Float32,
    /// Any array (elements not checked); the Go type name.
    Array(&'static str),
    /// A slice whose elements are checked as the given kind.
    List(&'static str, &'static Kind),
    /// `map[string]interface {}` or another map of anything.
    Object(&'static str),
    /// A nested struct (pointer or not): Go type name and its fields.
    Struct(&'static str, &'static [(&'static str, Kind)]),
    /// `[]api.Message`: each element goes through `Message.UnmarshalJSON`,
    /// whose first type error ends the whole decode.
    Messages(&'static [(&'static str, Kind)]),
    /// `*api.ThinkValue` and its own validation.
    Think,
    /// `json.RawMessage`: kept as written, nothing checked.
    Raw,
    /// `*api.Duration` (`keep_alive`): its own decoder, whose error ends
    /// decoding.
    Duration,
    /// Anything (`any`, or types with their own decoder such as keep_alive).
    Any,
    /// A `map[string]…`: the Go type name and the values' kind.
    Map(&'static str, &'static Kind),
    /// A type with its own `UnmarshalJSON` that decodes into the kind
    /// within (`api.ToolPropertiesMap`, `api.ToolCallFunctionArguments`):
    /// Go names an error inside after the field holding it, and it ends
    /// decoding.
    Custom(&'static Kind),
    /// `api.PropertyType`: a string, or else a `[]string`.
    PropertyType,
}

/// Where a value sits, for Go's `Struct.field.path` in messages.
#[derive(Clone)]
struct Context<'a> {
    /// The innermost struct's short name (`GenerateRequest`).
    structure: &'a str,
    path: String,
}

impl Context<'_> {
    fn type_error(&self, value: &str, go_type: &str) -> TypeError {
        TypeError {
            value: value.to_string(),
            structure: self.structure.to_string(),
            path: self.path.clone(),
            go_type: go_type.to_string(),
        }
    }

    fn field<'b>(&self, structure: &'b str, name: &str) -> Context<'b> {
        let path = if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        };
        Context { structure, path }
    }
}

/// Go's `UnmarshalTypeError` with its struct and field context.
#[derive(Debug, Clone)]
struct TypeError {
    value: String,
    structure: String,
    path: String,
    go_type: String,
}

impl std::fmt::Display for TypeError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "json: cannot unmarshal {} into Go struct field {}.{} of type {}",
            self.value, self.structure, self.path, self.go_type
        )
    }
}

/// An error that ends decoding at once (from a type's own
/// `UnmarshalJSON`); type errors are saved instead and decoding goes on.
/// A type error from inside a custom decoder stays one, for an outer
/// `api.Message` to re-label.
enum Abort {
    Text(String),
    Type(TypeError),
}

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Abort::Text(t) => f.write_str(t),
            Abort::Type(e) => e.fmt(f),
        }
    }
}

/// The word Go's type errors use for a JSON value.
fn json_kind(v: &GoValue) -> &'static str {
    match v {
        GoValue::Null => "null",
        GoValue::Bool(_) => "bool",
        GoValue::Number(_) => "number",
        GoValue::Str(_) => "string",
        GoValue::Array(_) => "array",
        GoValue::Object(_) => "object",
    }
}

fn short_name(go_type: &str) -> &str {
    if go_type.starts_with("struct {") {
        // An anonymous struct has no name.
        return "";
    }
    go_type.rsplit('.').next().unwrap_or(go_type)
}

/// Checks `v` against `kind`; saves the first type error in `saved`.
fn check(
    v: &GoValue,
    kind: Kind,
    ctx: &Context,
    saved: &mut Option<TypeError>,
) -> Result<(), Abort> {
    let mut save = |e: TypeError| {
        saved.get_or_insert(e);
    };
    match (kind, v) {
        (Kind::Think, v) => return check_think(v),
        (Kind::Raw, _) => {}
        (Kind::Duration, v) => return check_duration(v, ctx),
        (_, GoValue::Null) => {}
        (Kind::Any, v) | (Kind::Object(_), v @ GoValue::Object(_)) => {
            if let Some(lit) = first_unrepresentable_number(v) {
                save(ctx.type_error(&format!("number {lit}"), "float64"));
            }
        }
        (Kind::Str, GoValue::Str(_)) | (Kind::Bool, GoValue::Bool(_)) => {}
        (Kind::Int, GoValue::Number(n)) => {
            if n.parse::<i64>().is_err() {
                save(ctx.type_error(&format!("number {n}"), "int"));
            }
        }
        (Kind::Float, GoValue::Number(n)) => {
            if !n.parse::<f64>().is_ok_and(f64::is_finite) {
                save(ctx.type_error(&format!("number {n}"), "float64"));
            }
        }
        (Kind::Float32, GoValue::Number(n)) => {
            if !n.parse::<f32>().is_ok_and(f32::is_finite) {
                save(ctx.type_error(&format!("number {n}"), "float32"));
            }
        }
        (Kind::Array(_), GoValue::Array(_)) => {}
        (Kind::List(_, elem), GoValue::Array(items)) => {
            for item in items {
                check(item, *elem, ctx, saved)?;
            }
        }
        (Kind::Struct(go_type, fields), GoValue::Object(members)) => {
            fields_of(
                members,
                fields,
                short_name(go_type),
                ctx,
                saved,
                &mut |_, _, _| {},
            )?;
        }
        (Kind::Messages(fields), GoValue::Array(items)) => {
            for item in items {
                check_message(item, fields, ctx)?;
            }
        }
        (Kind::Custom(inner), v) => return check_custom(v, *inner, ctx),
        (Kind::Map(_, value), GoValue::Object(members)) => {
            for (_, v) in members {
                check(v, *value, ctx, saved)?;
            }
        }
        (Kind::PropertyType, GoValue::Str(_)) => {}
        (Kind::PropertyType, GoValue::Array(items)) => {
            for item in items {
                check(item, Kind::Str, ctx, saved)?;
            }
        }
        (kind, v) => save(ctx.type_error(json_kind(v), go_type(kind))),
    }
    Ok(())
}

fn go_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "string",
        Kind::Bool => "bool",
        Kind::Int => "int",
        Kind::Float => "float64",
        Kind::Float32 => "float32",
        Kind::Array(t) | Kind::List(t, _) | Kind::Object(t) | Kind::Struct(t, _) => t,
        Kind::Messages(_) => "[]api.Message",
        Kind::Think => "api.ThinkValue",
        Kind::Raw => "json.RawMessage",
        Kind::Duration => "api.Duration",
        Kind::Any => "interface {}",
        Kind::Map(t, _) => t,
        Kind::Custom(inner) => go_type(*inner),
        Kind::PropertyType => "[]string",
    }
}

/// A custom decoder's value: its first error (a stop inside wins over a
/// saved one) is named after the field holding it and ends decoding.
fn check_custom(v: &GoValue, inner: Kind, ctx: &Context) -> Result<(), Abort> {
    let mut saved = None;
    let first = match check(v, inner, ctx, &mut saved) {
        Err(Abort::Type(e)) => Some(e),
        Err(other) => return Err(other),
        Ok(()) => saved,
    };
    match first {
        Some(e) => Err(Abort::Type(ctx.type_error(&e.value, &e.go_type))),
        None => Ok(()),
    }
}

/// One element of `messages`: `Message.UnmarshalJSON` decodes it into a
/// local `Alias` type and returns its first error, which ends the decode;
/// Go then names the outer struct and the full path.
fn check_message(
    item: &GoValue,
    fields: &'static [(&'static str, Kind)],
    ctx: &Context,
) -> Result<(), Abort> {
    let relabel = |inner: TypeError| {
        let mut e = ctx.type_error(&inner.value, &inner.go_type);
        if !inner.path.is_empty() {
            e.path = format!("{}.{}", e.path, inner.path);
        }
        Abort::Text(e.to_string())
    };
    match item {
        GoValue::Null => Ok(()),
        GoValue::Object(members) => {
            let alias = Context {
                structure: "Alias",
                path: String::new(),
            };
            let mut inner = None;
            fields_of(
                members,
                fields,
                "Alias",
                &alias,
                &mut inner,
                &mut |_, _, _| {},
            )
            .map_err(|a| match a {
                Abort::Type(e) => relabel(e),
                text => text,
            })?;
            inner.map_or(Ok(()), |e| Err(relabel(e)))
        }
        other => Err(relabel(TypeError {
            value: json_kind(other).into(),
            structure: "Alias".into(),
            path: String::new(),
            go_type: "api.Alias".into(),
        })),
    }
}

/// `api.Duration.UnmarshalJSON`: a number that fits a float64 (it decodes
/// into an `interface{}`; the outer decoder names the field), or a Go
/// duration string.
fn check_duration(v: &GoValue, ctx: &Context) -> Result<(), Abort> {
    let unsupported = |t: &str| Err(Abort::Text(format!("Unsupported type: '{t}'")));
    match v {
        GoValue::Number(n) if !n.parse::<f64>().is_ok_and(f64::is_finite) => Err(Abort::Text(
            ctx.type_error(&format!("number {n}"), "float64")
                .to_string(),
        )),
        GoValue::Null | GoValue::Number(_) => Ok(()),
        GoValue::Str(s) => crate::duration::parse_go_duration(s)
            .map(|_| ())
            .map_err(Abort::Text),
        GoValue::Bool(_) => unsupported("bool"),
        GoValue::Array(_) => unsupported("[]interface {}"),
        GoValue::Object(_) => unsupported("map[string]interface {}"),
    }
}

fn check_think(v: &GoValue) -> Result<(), Abort> {
    const LEVELS: &str = "(\"high\", \"medium\", \"low\", \"max\", true, or false)";
    match v {
        GoValue::Null | GoValue::Bool(_) => Ok(()),
        GoValue::Str(s) if ["high", "medium", "low", "max"].contains(&s.as_str()) => Ok(()),
        GoValue::Str(s) => Err(Abort::Text(format!(
            "invalid think value: {s:?} (must be \"high\", \"medium\", \"low\", \"max\", true, or false)"
        ))),
        _ => Err(Abort::Text(format!(
            "think must be a boolean or string {LEVELS}"
        ))),
    }
}

/// The first number literal inside `v` that Go cannot hold in a float64
/// (what `interface {}` gets); iterative, as `v` may be 10,000 deep.
fn first_unrepresentable_number(v: &GoValue) -> Option<&str> {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            GoValue::Number(n) if !n.parse::<f64>().is_ok_and(f64::is_finite) => return Some(n),
            GoValue::Array(items) => stack.extend(items.iter().rev()),
            GoValue::Object(members) => stack.extend(members.iter().rev().map(|m| &m.1)),
            _ => {}
        }
    }
    None
}

/// Walks an object's members against a struct's fields in document order
/// (Go matches a key exactly, else case-insensitively); `found` sees each
/// member with the field name it matched (or its own key if none).
fn fields_of<'v>(
    members: &'v [(String, GoValue)],
    fields: &[(&str, Kind)],
    structure: &str,
    ctx: &Context,
    saved: &mut Option<TypeError>,
    found: &mut dyn FnMut(&str, Option<Kind>, &'v GoValue),
) -> Result<(), Abort> {
    for (key, v) in members {
        let field = fields.iter().find(|(name, _)| name == key).or_else(|| {
            fields
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(key))
        });
        match field {
            Some((name, kind)) => {
                check(v, *kind, &ctx.field(structure, name), saved)?;
                found(name, Some(*kind), v);
            }
            None => found(key, None, v),
        }
    }
    Ok(())
}

/// Values deeper than this become `null` in the decoded map: the emulator
/// never looks that deep, and serde_json's values drop recursively.
const KEPT_DEPTH: usize = 64;

/// A [`GoValue`] as a serde_json value (numbers Go cannot hold are null).
pub fn to_json(v: &GoValue) -> Value {
    to_json_at(v, 0)
}

fn to_json_at(v: &GoValue, depth: usize) -> Value {
    if depth > KEPT_DEPTH {
        return Value::Null;
    }
    match v {
        GoValue::Null => Value::Null,
        GoValue::Bool(b) => Value::Bool(*b),
        GoValue::Number(n) => number(n),
        GoValue::Str(s) => Value::String(s.clone()),
        GoValue::Array(items) => items.iter().map(|i| to_json_at(i, depth + 1)).collect(),
        GoValue::Object(members) => {
            let mut map = Map::new();
            for (k, v) in members {
                map.insert(k.clone(), to_json_at(v, depth + 1));
            }
            Value::Object(map)
        }
    }
}

fn number(n: &str) -> Value {
    if let Ok(i) = n.parse::<i64>() {
        return i.into();
    }
    if let Ok(u) = n.parse::<u64>() {
        return u.into();
    }
    n.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// Decodes `body` as the Go struct `type_name` (`api.` is assumed without
/// a package) with the given fields, as `json.Decoder.Decode` would:
/// syntax first, then types in document order, the first error wins.
/// Unknown fields are kept in the map (Go ignores them; handlers may read
/// fields they do not type-check).
pub fn decode(
    body: &[u8],
    type_name: &str,
    fields: &[(&str, Kind)],
) -> Result<Map<String, Value>, ApiError> {
    let value = match parse(body) {
        Ok(v) => v,
        Err(SyntaxError::Empty) => return Err(ApiError::bad_request("missing request body")),
        Err(e) => return Err(ApiError::bad_request(e.to_string())),
    };
    let full_type = if type_name.contains('.') {
        type_name.to_string()
    } else {
        format!("api.{type_name}")
    };
    let members = match &value {
        GoValue::Object(members) => members,
        GoValue::Null => return Ok(Map::new()),
        other => {
            return Err(ApiError::bad_request(format!(
                "json: cannot unmarshal {} into Go value of type {full_type}",
                json_kind(other)
            )))
        }
    };
    let structure = short_name(&full_type);
    let root = Context {
        structure,
        path: String::new(),
    };
    let mut saved = None;
    let mut map = Map::new();
    let mut keep = |name: &str, matched: Option<Kind>, v: &GoValue| match (matched, v) {
        // A null leaves a scalar field as it was and clears anything else.
        (Some(Kind::Str | Kind::Bool | Kind::Int | Kind::Float | Kind::Float32), GoValue::Null) => {
        }
        (Some(_), GoValue::Null) => {
            map.remove(name);
        }
        (_, v) => {
            map.insert(name.to_string(), to_json(v));
        }
    };
    if let Err(abort) = fields_of(members, fields, structure, &root, &mut saved, &mut keep) {
        return Err(ApiError::bad_request(abort.to_string()));
    }
    match saved {
        Some(e) => Err(ApiError::bad_request(e.to_string())),
        None => Ok(map),
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
