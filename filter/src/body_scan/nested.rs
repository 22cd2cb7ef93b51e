//! Typed values below a top-level field (`tools`, `stream_options`,
//! `response_format`, `reasoning`), checked as Go decodes them: struct
//! fields by kind, slice elements, map values, and the values a type's own
//! `UnmarshalJSON` reads (`api.ToolPropertiesMap`, `api.PropertyType`),
//! whose errors Go re-labels with the field holding that value and which
//! end decoding. Only kinds are checked, on the fly; nothing is decoded.

use super::{Kind, ScanError};

/// What Go decodes a JSON value into, as far as kinds tell.
#[derive(Debug, PartialEq, Eq)]
pub enum Shape {
    /// A plain value of this kind (`Any` values' numbers must fit a
    /// `float64` at any depth; `Raw` is not looked into).
    Leaf(Kind),
    Struct(&'static StructShape),
    /// A slice of this Go type and its element.
    Slice(&'static str, &'static Shape),
    /// A `map[string]…` of this Go type and its value.
    Map(&'static str, &'static Shape),
    /// A type with its own `UnmarshalJSON` that decodes into the shape
    /// within: an error inside names the field holding it and ends
    /// decoding.
    Custom(&'static Shape),
    /// `api.PropertyType`: a string, or else a `[]string`.
    PropertyType,
}

/// A struct's JSON fields (keys lowercase ASCII, as matched; names as
/// Go's errors print them).
#[derive(Debug, PartialEq, Eq)]
pub struct StructShape {
    /// The type name Go's errors give as the struct (`Tool`).
    pub name: &'static str,
    /// The type name for a value that is not an object (`api.Tool`).
    pub go_type: &'static str,
    pub keys: &'static [&'static str],
    pub names: &'static [&'static str],
    pub shapes: &'static [Shape],
}

static ANY: Shape = Shape::Leaf(Kind::Any);
static STRINGS: Shape = Shape::Slice("[]string", &Shape::Leaf(Kind::Str));

impl Shape {
    pub fn accepts(&self, kind: &str) -> bool {
        match self {
            _ if kind == "null" => true,
            Shape::Leaf(k) => k.accepts(kind),
            Shape::Struct(_) | Shape::Map(..) => kind == "object",
            Shape::Slice(..) => kind == "array",
            Shape::Custom(inner) => inner.accepts(kind),
            Shape::PropertyType => kind == "string" || kind == "array",
        }
    }

    pub fn go_type(&self) -> &'static str {
        match self {
            Shape::Leaf(k) => k.go_type(),
            Shape::Struct(s) => s.go_type,
            Shape::Slice(t, _) | Shape::Map(t, _) => t,
            Shape::Custom(inner) => inner.go_type(),
            Shape::PropertyType => "[]string",
        }
    }
}

/// Where Go's error for a value names it: the struct (`None`: the
/// request's), the field path, and whether the error ends decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub structure: Option<&'static str>,
    pub path: String,
    pub ends_decoding: bool,
    /// From a custom decoder's value: within `api.Message` too, it wins
    /// over a type error saved before it.
    pub custom: bool,
}

impl Context {
    pub fn error(&self, kind: String, go_type: &'static str) -> ScanError {
        ScanError::Nested {
            structure: self.structure,
            path: self.path.clone(),
            kind,
            go_type,
            ends_decoding: self.ends_decoding,
        }
    }
}

/// What a value starting inside a tracked field asks of the scanner.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    None,
    /// A type error, and whether a custom decoder's (see
    /// [`Context::custom`]).
    Error(ScanError, bool),
    /// A number whose literal must fit this Go type (its context, only
    /// needed when it does not, from [`Tracker::number_context`]).
    Number(&'static str),
}

#[derive(Debug)]
struct Frame {
    /// The shape of this open container (`None`: not looked into).
    shape: Option<&'static Shape>,
    /// A struct's field whose key was just read.
    slot: Option<usize>,
}

/// How errors inside a tracked value name their struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// As Go does: the innermost struct whose field is open, else the
    /// request's.
    Innermost,
    /// Inside a plain struct element (`openai.Message`): the innermost,
    /// else this one.
    Within(&'static str),
    /// Inside `api.Message`, whose own decoder names every error after the
    /// request and ends decoding.
    Request,
}

/// The open containers of one field's value, outermost first.
#[derive(Debug)]
pub struct Tracker {
    /// The field path the value is at (`tools`, `messages.tool_calls`).
    field: &'static str,
    /// The scanner depth at which the value started.
    base_depth: usize,
    naming: Naming,
    frames: Vec<Frame>,
    /// Inside a custom decoder's value: how many frames were open with
    /// it, and its field's context, which names every error inside.
    relabel: Option<(usize, Context)>,
    /// The last value started was itself a custom decoder's.
    custom_value: bool,
}

impl Tracker {
    /// The top-level `field`'s container value of `shape` opened.
    pub fn new(field: &'static str, shape: &'static Shape) -> Self {
        Self::at(field, 1, Naming::Innermost, shape)
    }

    /// A container value of `shape` at `field`, started at scanner
    /// `depth`, its errors named as `naming` says.
    pub fn at(field: &'static str, depth: usize, naming: Naming, shape: &'static Shape) -> Self {
        let mut t = Tracker {
            field,
            base_depth: depth,
            naming,
            frames: Vec::new(),
            relabel: None,
            custom_value: false,
        };
        t.open(Some(shape));
        t
    }

    /// The scanner depth of values directly inside the innermost open
    /// container.
    pub fn inner_depth(&self) -> usize {
        self.base_depth + self.frames.len()
    }

    /// The keys to match when the innermost open container is a struct.
    pub fn struct_keys(&self) -> Option<&'static [&'static str]> {
        match self.frames.last()?.shape? {
            Shape::Struct(s) => Some(s.keys),
            _ => None,
        }
    }

    /// A key of the innermost struct was read: its field, if known.
    pub fn key_read(&mut self, slot: Option<usize>) {
        if let Some(f) = self.frames.last_mut() {
            f.slot = slot;
        }
    }

    /// The innermost container closed; true when the field's value ended.
    pub fn close(&mut self) -> bool {
        if self
            .relabel
            .as_ref()
            .is_some_and(|(open, _)| *open == self.frames.len())
        {
            self.relabel = None;
        }
        self.frames.pop();
        self.frames.is_empty()
    }

    /// Where an error in the value just started is named.
    pub fn number_context(&self) -> Context {
        match &self.relabel {
            Some((_, c)) => c.clone(),
            None => self.context(self.custom_value),
        }
    }

    /// A value of JSON `kind` starts in the innermost container.
    pub fn value_starts(&mut self, kind: &'static str) -> Check {
        let expected = self.expected();
        let container = matches!(kind, "object" | "array");
        self.custom_value = false;
        let Some(mut shape) = expected else {
            if container {
                self.open(None);
            }
            return Check::None;
        };
        while let Shape::Custom(inner) = shape {
            self.custom_value = true;
            shape = inner;
        }
        if !shape.accepts(kind) {
            let context = self.number_context();
            if container {
                self.open(None);
            }
            let e = context.error(kind.to_string(), shape.go_type());
            return Check::Error(e, context.custom);
        }
        let check = match (shape, kind) {
            (Shape::Leaf(Kind::Number(t)), "number") => Check::Number(t),
            (Shape::Leaf(Kind::Any), "number") => Check::Number("float64"),
            _ => Check::None,
        };
        if container {
            if self.custom_value && self.relabel.is_none() {
                self.relabel = Some((self.frames.len() + 1, self.context(true)));
            }
            let inner = match shape {
                Shape::Leaf(Kind::Any) => Some(&ANY),
                Shape::Leaf(_) => None,
                Shape::PropertyType => Some(&STRINGS),
                _ => Some(shape),
            };
            self.open(inner);
        }
        check
    }

    fn open(&mut self, shape: Option<&'static Shape>) {
        self.frames.push(Frame { shape, slot: None });
    }

    /// The shape of a value in the innermost container.
    fn expected(&self) -> Option<&'static Shape> {
        let frame = self.frames.last()?;
        match frame.shape? {
            Shape::Struct(s) => s.shapes.get(frame.slot?),
            Shape::Slice(_, e) | Shape::Map(_, e) => Some(e),
            Shape::Leaf(Kind::Any) => Some(&ANY),
            _ => None,
        }
    }

    /// Go's error context here: the innermost struct whose field is open
    /// and the names of all open struct fields, from the request's.
    fn context(&self, ends_decoding: bool) -> Context {
        let mut path = self.field.to_string();
        let mut structure = match self.naming {
            Naming::Within(name) => Some(name),
            _ => None,
        };
        for f in &self.frames {
            if let (Some(Shape::Struct(s)), Some(slot)) = (f.shape, f.slot) {
                if let Some(name) = s.names.get(slot) {
                    path.push('.');
                    path.push_str(name);
                    structure = Some(s.name);
                }
            }
        }
        let request = self.naming == Naming::Request;
        Context {
            structure: structure.filter(|_| !request),
            path,
            ends_decoding: ends_decoding || request,
            custom: ends_decoding,
        }
    }
}

macro_rules! shape_struct {
    ($name:ident, $short:literal, $go:literal, [$($key:literal / $field:literal => $shape:expr),* $(,)?]) => {
        pub static $name: StructShape = StructShape {
            name: $short,
            go_type: $go,
            keys: &[$($key),*],
            names: &[$($field),*],
            shapes: &[$($shape),*],
        };
    };
}

const STR: Shape = Shape::Leaf(Kind::Str);
const ANY_LEAF: Shape = Shape::Leaf(Kind::Any);

// As in Ollama v0.33.0-rc2 `openai/openai.go` and `api/types.go`.
shape_struct!(STREAM_OPTIONS, "StreamOptions", "openai.StreamOptions", [
    "include_usage" / "include_usage" => Shape::Leaf(Kind::Bool),
]);
shape_struct!(REASONING, "Reasoning", "openai.Reasoning", ["effort" / "effort" => STR]);
shape_struct!(JSON_SCHEMA, "JsonSchema", "openai.JsonSchema", [
    "schema" / "schema" => Shape::Leaf(Kind::Raw),
]);
shape_struct!(RESPONSE_FORMAT, "ResponseFormat", "openai.ResponseFormat", [
    "type" / "type" => STR,
    "json_schema" / "json_schema" => Shape::Struct(&JSON_SCHEMA),
]);
shape_struct!(TOOL_PROPERTY, "ToolProperty", "api.ToolProperty", [
    "anyof" / "anyOf" => Shape::Slice("[]api.ToolProperty", &Shape::Struct(&TOOL_PROPERTY)),
    "type" / "type" => Shape::Custom(&Shape::PropertyType),
    "items" / "items" => ANY_LEAF,
    "description" / "description" => STR,
    "enum" / "enum" => Shape::Slice("[]interface {}", &ANY_LEAF),
    "properties" / "properties" => Shape::Custom(&PROPERTIES_MAP),
    "required" / "required" => Shape::Slice("[]string", &STR),
]);
static PROPERTIES_MAP: Shape = Shape::Map(
    "map[string]api.ToolProperty",
    &Shape::Struct(&TOOL_PROPERTY),
);
shape_struct!(TOOL_PARAMETERS, "ToolFunctionParameters", "api.ToolFunctionParameters", [
    "type" / "type" => STR,
    "$defs" / "$defs" => ANY_LEAF,
    "items" / "items" => ANY_LEAF,
    "required" / "required" => Shape::Slice("[]string", &STR),
    "properties" / "properties" => Shape::Custom(&PROPERTIES_MAP),
]);
shape_struct!(TOOL_FUNCTION, "ToolFunction", "api.ToolFunction", [
    "name" / "name" => STR,
    "description" / "description" => STR,
    "parameters" / "parameters" => Shape::Struct(&TOOL_PARAMETERS),
]);
shape_struct!(TOOL, "Tool", "api.Tool", [
    "type" / "type" => STR,
    "items" / "items" => ANY_LEAF,
    "function" / "function" => Shape::Struct(&TOOL_FUNCTION),
]);

shape_struct!(TOOL_CALL_FUNCTION, "ToolCallFunction", "api.ToolCallFunction", [
    "index" / "index" => Shape::Leaf(Kind::Number("int")),
    "name" / "name" => STR,
    "arguments" / "arguments" => Shape::Custom(&Shape::Map("map[string]interface {}", &ANY_LEAF)),
]);
shape_struct!(TOOL_CALL, "ToolCall", "api.ToolCall", [
    "id" / "id" => STR,
    "function" / "function" => Shape::Struct(&TOOL_CALL_FUNCTION),
]);
shape_struct!(OPENAI_TOOL_CALL_FUNCTION, "",
    "struct { Name string \"json:\\\"name\\\"\"; Arguments string \"json:\\\"arguments\\\"\" }", [
    "name" / "name" => STR,
    "arguments" / "arguments" => STR,
]);
shape_struct!(OPENAI_TOOL_CALL, "ToolCall", "openai.ToolCall", [
    "id" / "id" => STR,
    "index" / "index" => Shape::Leaf(Kind::Number("int")),
    "type" / "type" => STR,
    "function" / "function" => Shape::Struct(&OPENAI_TOOL_CALL_FUNCTION),
]);

/// `tool_calls` of an `api.Message`.
pub static API_TOOL_CALLS: Shape = Shape::Slice("[]api.ToolCall", &Shape::Struct(&TOOL_CALL));
/// `tool_calls` of an `openai.Message`.
pub static OPENAI_TOOL_CALLS: Shape =
    Shape::Slice("[]openai.ToolCall", &Shape::Struct(&OPENAI_TOOL_CALL));
/// `stream_options` (`*openai.StreamOptions`).
pub static STREAM_OPTIONS_SHAPE: Shape = Shape::Struct(&STREAM_OPTIONS);
/// `reasoning` (`*openai.Reasoning`).
pub static REASONING_SHAPE: Shape = Shape::Struct(&REASONING);
/// `response_format` (`*openai.ResponseFormat`).
pub static RESPONSE_FORMAT_SHAPE: Shape = Shape::Struct(&RESPONSE_FORMAT);
/// `tools` of `/api/chat` (`api.Tools`).
pub static API_TOOLS: Shape = Shape::Slice("api.Tools", &Shape::Struct(&TOOL));
/// `tools` of `/v1/chat/completions` (`[]api.Tool`).
pub static OPENAI_TOOLS: Shape = Shape::Slice("[]api.Tool", &Shape::Struct(&TOOL));
