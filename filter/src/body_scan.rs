//! Finds the model in a request body exactly as Ollama's Go decoder would,
//! reading the body chunk by chunk in constant memory.
//!
//! Ollama binds bodies with gin's `ShouldBindJSON`, i.e. one
//! `json.Decoder.Decode`: the first JSON value is checked for syntax in full
//! (Go's scanner, with its error texts), bytes after it are ignored, then it
//! is unmarshalled into the request struct: keys match fields
//! case-insensitively (Go's folding, so `ſ` is `s` and `K` is `k`), the last
//! duplicate wins, `null` leaves a string field alone, and any other
//! non-string is a type error. [`BodyScanner`] mirrors the scanner state by
//! state and only keeps the top-level keys it was asked for.

mod base64;
mod messages;
pub mod nested;

pub use messages::MessageSchema;
use messages::Messages;

use crate::go_string::{CharSink, GoStringDecoder};

/// Nesting limit of Go's scanner (`maxNestingDepth`).
const MAX_DEPTH: usize = 10_000;
/// Longest trimmed value kept; longer is no valid model name (≤ 593 bytes).
const VALUE_CAP: usize = 1024;
/// White space kept around a value, only for echoing it in messages.
const PAD_CAP: usize = 256;

/// The Go type of a top-level request field, as far as JSON's value kinds
/// tell it apart: what the scan checks so that a body Ollama would reject
/// with 400 is rejected before the model decides 404 or 503. Each carries
/// the Go type name its error message gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string (model fields are captured, others only checked).
    Str,
    /// A string whose value a later check reads (captured, capped).
    Text,
    Bool,
    /// A number field of this Go type (`int`, `float64`, `float32`): the
    /// literal must parse as one, as Go's `strconv` reads it.
    Number(&'static str),
    Array(&'static str),
    /// A map or a struct.
    Object(&'static str),
    /// `*api.ThinkValue`: a bool or a string, else its own error.
    Think,
    /// A `messages` array whose elements' fields are checked too.
    Messages(&'static MessageSchema),
    /// `*api.Duration` (`keep_alive`): a number, or a string Go's
    /// `time.ParseDuration` reads; else its decoder's error.
    Duration,
    /// Anything, decoded into `interface{}` (its numbers must fit a
    /// `float64`).
    Any,
    /// Anything, kept as bytes (`json.RawMessage`, custom decoders).
    Raw,
    /// An array element of this Go type, which takes this JSON kind.
    Element(&'static str, &'static str),
    /// A struct, slice or map whose own fields and elements are checked.
    Nested(&'static nested::Shape),
}

impl Kind {
    fn accepts(self, kind: &str) -> bool {
        match self {
            _ if kind == "null" => true,
            Kind::Any | Kind::Raw => true,
            Kind::Str | Kind::Text => kind == "string",
            Kind::Bool => kind == "bool",
            Kind::Number(_) => kind == "number",
            Kind::Array(_) => kind == "array",
            Kind::Object(_) => kind == "object",
            Kind::Think => kind == "bool" || kind == "string",
            Kind::Messages(_) => kind == "array",
            Kind::Duration => kind == "number" || kind == "string",
            Kind::Element(_, json_kinds) => json_kinds.split('|').any(|k| k == kind),
            Kind::Nested(shape) => shape.accepts(kind),
        }
    }

    fn go_type(self) -> &'static str {
        match self {
            Kind::Str | Kind::Text => "string",
            Kind::Bool => "bool",
            Kind::Number(t) | Kind::Array(t) | Kind::Object(t) | Kind::Element(t, _) => t,
            Kind::Think => "api.ThinkValue",
            Kind::Messages(m) => m.array_type,
            Kind::Duration => "api.Duration",
            Kind::Any | Kind::Raw => "interface {}",
            Kind::Nested(shape) => shape.go_type(),
        }
    }
}

/// Why the body gives no model, in Go's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    /// Nothing but white space (`io.EOF`).
    Empty,
    /// A syntax error, with Go's message.
    Syntax(String),
    /// The first value is cut short (`io.ErrUnexpectedEOF`).
    UnexpectedEof,
    /// The top-level value is not an object: `array`, `string`, `number`,
    /// `bool`.
    TopLevel(&'static str),
    /// A wanted field holds a value of the wrong kind (`number`, `bool`,
    /// `object`, `array`, `string`); the first such field in document
    /// order, as Go keeps the first error.
    FieldType {
        field: &'static str,
        /// `string`, `bool`, … or `number <literal>` for a number that
        /// does not fit the field's Go type.
        kind: String,
        go_type: &'static str,
    },
    /// `think` is neither a bool nor a string: `ThinkValue.UnmarshalJSON`
    /// fails and ends decoding with its own text.
    Think,
    /// `think` is a string but not a level: its decoder's text names it.
    ThinkValue(String),
    /// `keep_alive`'s decoder failed, with its text (`time: invalid
    /// duration "x"`, `Unsupported type: 'bool'`).
    Duration(String),
    /// An `api.ImageData` string Go's base64 decoder refuses (saved like
    /// a type error): `illegal base64 data at input byte N`.
    Base64 { at: usize, ends_decoding: bool },
    /// A type error inside a `messages` element (or the element itself).
    Nested {
        /// The struct Go names, when not the request's own.
        structure: Option<&'static str>,
        path: String,
        kind: String,
        go_type: &'static str,
        /// From `api.Message.UnmarshalJSON`: decoding stops there.
        ends_decoding: bool,
    },
}

impl ScanError {
    /// A type's own decoder failed (`think`, `api.Message`): that ends
    /// decoding at once, so it wins over any type error before it and none
    /// comes after it.
    fn ends_decoding(&self) -> bool {
        matches!(
            self,
            ScanError::Think
                | ScanError::ThinkValue(_)
                | ScanError::Duration(_)
                | ScanError::Nested {
                    ends_decoding: true,
                    ..
                }
                | ScanError::Base64 {
                    ends_decoding: true,
                    ..
                }
        )
    }
}

impl ScanError {
    /// Go's error text for a request struct `strukt` of package `pkg`;
    /// `None` for [`ScanError::Empty`], which each API words differently.
    pub fn go_message(&self, pkg: &str, strukt: &str) -> Option<String> {
        Some(match self {
            ScanError::Empty => return None,
            ScanError::Syntax(m) => m.clone(),
            ScanError::UnexpectedEof => "unexpected EOF".into(),
            ScanError::TopLevel(kind) => {
                format!("json: cannot unmarshal {kind} into Go value of type {pkg}.{strukt}")
            }
            ScanError::FieldType {
                field,
                kind,
                go_type,
            } => format!(
                "json: cannot unmarshal {kind} into Go struct field {strukt}.{field} of type {go_type}"
            ),
            ScanError::Think => "think must be a boolean or string (\"high\", \"medium\", \"low\", \"max\", true, or false)".into(),
            ScanError::Nested {
                structure,
                path,
                kind,
                go_type,
                ..
            } => format!(
                "json: cannot unmarshal {kind} into Go struct field {}.{path} of type {go_type}",
                structure.unwrap_or(strukt)
            ),
            ScanError::Duration(m) => m.clone(),
            ScanError::Base64 { at, .. } => format!("illegal base64 data at input byte {at}"),
            ScanError::ThinkValue(v) => format!(
                "invalid think value: {} (must be \"high\", \"medium\", \"low\", \"max\", true, or false)",
                crate::errors::go_quote(v)
            ),
        })
    }
}

/// A string field as decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldValue {
    /// The value as sent (white space around it capped at a few hundred
    /// bytes), for messages that echo the client's string.
    pub verbatim: String,
    /// The value after Go's `strings.TrimSpace`; `None` when longer than
    /// any valid model name.
    pub trimmed: Option<String>,
    /// Whether the decoded string was empty (for Go's `cmp.Or`); for a
    /// field that is only checked, whether its array or object was empty.
    pub is_empty: bool,
    /// The JSON kind of the value (`string` for captured fields; for the
    /// others that of their last occurrence, `null` included).
    pub kind: &'static str,
    /// What a check after decoding will reject in it (`messages`: the
    /// first content type `openai.FromChatRequest` refuses).
    pub note: Option<String>,
}

/// The wanted fields, in the order they were asked for; `None` when absent
/// or only ever `null`.
pub type Fields = Vec<Option<FieldValue>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    BeginValue,
    BeginValueOrEmpty,
    BeginStringOrEmpty,
    BeginString,
    InString,
    InStringEsc,
    InStringEscU(u8),
    Neg,
    Zero,
    One,
    Dot,
    Dot0,
    E,
    ESign,
    E0,
    Lit(&'static str, u8),
    EndValue,
    Done,
    Error,
}

#[derive(Debug, Clone, Default)]
struct ValueBuf {
    lead: String,
    core: String,
    pending: String,
    len: usize,
    overflow: bool,
}

impl CharSink for ValueBuf {
    fn push(&mut self, c: char) {
        self.len += 1;
        if c.is_whitespace() {
            let pad = if self.core.is_empty() {
                &mut self.lead
            } else {
                &mut self.pending
            };
            if pad.len() < PAD_CAP {
                pad.push(c);
            }
            return;
        }
        if self.core.len() + self.pending.len() + c.len_utf8() > VALUE_CAP {
            self.overflow = true;
            // Any white space kept inside already makes the name invalid.
            self.pending.clear();
            return;
        }
        self.core.push_str(&self.pending);
        self.pending.clear();
        self.core.push(c);
    }
}

impl ValueBuf {
    fn finish(self) -> FieldValue {
        FieldValue {
            verbatim: format!("{}{}{}", self.lead, self.core, self.pending),
            trimmed: (!self.overflow).then_some(self.core),
            is_empty: self.len == 0,
            kind: "string",
            note: None,
        }
    }
}

/// Matches a key against the wanted field names with Go's case folding.
#[derive(Debug, Clone)]
struct KeyMatch {
    pos: usize,
    alive: u32,
    /// Match exactly (a `map[string]any`'s keys), not with Go's folding.
    exact: bool,
}

impl KeyMatch {
    fn new(names: &[&str], exact: bool) -> Self {
        KeyMatch {
            pos: 0,
            alive: (1u32 << names.len().min(31)) - 1,
            exact,
        }
    }

    /// The name matched in full, if any.
    fn found(&self, names: &[&str]) -> Option<usize> {
        (0..names.len()).find(|&i| {
            self.alive & (1 << i) != 0 && names.get(i).is_some_and(|n| n.len() == self.pos)
        })
    }
}

#[derive(Debug, Clone)]
enum Capture {
    None,
    Key(KeyMatch, &'static [&'static str]),
    Value(usize, ValueBuf),
    /// An `api.ImageData` string, checked as Go's base64 decoder reads it.
    Base64(base64::Base64Check),
    /// An OpenAI content part's `type`, matched against its types.
    PartType(KeyMatch),
}

struct KeySink<'a>(&'a mut KeyMatch, &'static [&'static str]);

impl CharSink for KeySink<'_> {
    fn push(&mut self, c: char) {
        let folded = match c {
            c if self.0.exact => c.is_ascii().then_some(c as u8),
            c if c.is_ascii() => Some(c.to_ascii_lowercase() as u8),
            '\u{17f}' => Some(b's'),
            '\u{212a}' => Some(b'k'),
            _ => None,
        };
        let pos = self.0.pos;
        for (i, name) in self.1.iter().enumerate() {
            if name.as_bytes().get(pos).copied() != folded {
                self.0.alive &= !(1 << i);
            }
        }
        self.0.pos += 1;
    }
}

/// Incremental Go-compatible JSON scanner that extracts top-level string
/// fields. Feed chunks with [`BodyScanner::feed`], then
/// [`BodyScanner::finish`] at end of body unless [`BodyScanner::result`]
/// already answered.
pub struct BodyScanner {
    fields: &'static [&'static str],
    /// The Go kind of each field, aligned with `fields` (missing: string).
    kinds: &'static [Kind],
    /// How many leading fields are captured (the model fields); string
    /// values of the others are only skipped, on the fast path.
    captured: usize,
    /// The depth-1 field whose container value is open, to tell `[]`.
    open_slot: Option<usize>,
    /// A top-level number being read for a number field: its slot and
    /// literal so far.
    number: Option<(usize, String)>,
    /// The Go type `number` must fit, and whether a misfit ends decoding
    /// (it does inside `api.Duration`'s own decoder).
    number_check: (&'static str, bool),
    /// Inside the `messages` array (its field slot and element state).
    messages: Option<(usize, Messages)>,
    /// What the last `messages` array left of each element (Go decodes a
    /// repeated one into the same slice).
    message_states: Vec<messages::ElementState>,
    /// Inside a top-level field of [`Kind::Nested`].
    nested: Option<nested::Tracker>,
    /// The number being checked is inside `nested` (which names it).
    nested_number: bool,
    state: St,
    stack: Box<[u64; MAX_DEPTH / 64 + 1]>,
    depth: usize,
    in_key: bool,
    seen_value: bool,
    top_kind: Option<&'static str>,
    slot: Option<usize>,
    capture: Capture,
    decoder: GoStringDecoder,
    escape: u32,
    values: Fields,
    type_error: Option<ScanError>,
    error: Option<ScanError>,
}

impl BodyScanner {
    /// A scanner for the top-level string fields `fields` (lowercase ASCII
    /// JSON names, at most 32).
    pub fn new(fields: &'static [&'static str]) -> Self {
        Self::with_kinds(fields, &[], fields.len())
    }

    /// A scanner for a body route: its model fields, then the fields
    /// whose kinds Ollama's decoder would reject.
    pub fn for_route(route: &crate::endpoint::BodyRoute) -> Self {
        Self::with_kinds(route.names, route.kinds, route.fields.len())
    }

    /// A scanner for `fields` of the given kinds (string where missing):
    /// the first `captured` are read as strings, the others only have
    /// their kind checked.
    pub fn with_kinds(
        fields: &'static [&'static str],
        kinds: &'static [Kind],
        captured: usize,
    ) -> Self {
        BodyScanner {
            fields,
            kinds,
            captured,
            open_slot: None,
            number_check: ("float64", false),
            number: None,
            messages: None,
            message_states: Vec::new(),
            nested: None,
            nested_number: false,
            state: St::BeginValue,
            stack: Box::new([0; MAX_DEPTH / 64 + 1]),
            depth: 0,
            in_key: false,
            seen_value: false,
            top_kind: None,
            slot: None,
            capture: Capture::None,
            decoder: GoStringDecoder::default(),
            escape: 0,
            values: vec![None; fields.len()],
            type_error: None,
            error: None,
        }
    }

    /// Scans the next chunk. Returns true once the outcome is known, after
    /// which further bytes are ignored (as Go ignores them).
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        let mut i = 0;
        while i < chunk.len() {
            if matches!(self.state, St::Done | St::Error) {
                return true;
            }
            if self.state == St::InString && matches!(self.capture, Capture::None) {
                // Fast path through long strings nobody needs decoded.
                let rest = chunk.get(i..).unwrap_or_default();
                i += rest
                    .iter()
                    .position(|&c| c < 0x20 || c == b'"' || c == b'\\')
                    .unwrap_or(rest.len());
            }
            i += self.base64_run(chunk.get(i..).unwrap_or_default());
            let Some(&c) = chunk.get(i) else { break };
            self.step(c);
            i += 1;
        }
        matches!(self.state, St::Done | St::Error)
    }

    /// Fast path through an image: the run of base64 alphabet bytes at
    /// the start of `rest` inside a checked string, counted at once.
    /// Returns how many bytes it took (0 when not in such a string).
    fn base64_run(&mut self, rest: &[u8]) -> usize {
        if self.state != St::InString || !self.decoder.is_idle() {
            return 0;
        }
        let Capture::Base64(check) = &mut self.capture else {
            return 0;
        };
        let n = rest.iter().take_while(|&&b| base64::is_alphabet(b)).count();
        check.alphabet_run(n);
        n
    }

    /// Ends the body (EOF).
    pub fn finish(&mut self) {
        match self.state {
            St::Done | St::Error => {}
            St::Zero | St::One | St::Dot0 | St::E0 if self.depth == 0 => self.state = St::Done,
            _ => {
                self.error = Some(if self.seen_value {
                    ScanError::UnexpectedEof
                } else {
                    ScanError::Empty
                });
                self.state = St::Error;
            }
        }
    }

    /// The outcome, once known: the wanted fields or Go's error.
    pub fn result(&self) -> Option<Result<Fields, ScanError>> {
        match self.state {
            St::Error => Some(Err(self.error.clone().unwrap_or(ScanError::UnexpectedEof))),
            St::Done => Some(match self.top_kind {
                Some("object") => match &self.type_error {
                    Some(e) => Err(e.clone()),
                    None => Ok(self.values.clone()),
                },
                Some("null") | None => Ok(vec![None; self.fields.len()]),
                Some(kind) => Err(ScanError::TopLevel(kind)),
            }),
            _ => None,
        }
    }

    fn fail(&mut self, c: u8, context: &str) {
        self.error = Some(ScanError::Syntax(format!(
            "invalid character {} {context}",
            quote_char(c)
        )));
        self.state = St::Error;
    }

    fn step(&mut self, c: u8) {
        let space = matches!(c, b' ' | b'\t' | b'\r' | b'\n');
        if let Some((_, literal)) = &mut self.number {
            let in_number = matches!(
                self.state,
                St::Neg | St::Zero | St::One | St::Dot | St::Dot0 | St::E | St::ESign | St::E0
            );
            if in_number
                && matches!(c, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                && literal.len() < VALUE_CAP
            {
                literal.push(char::from(c));
            }
        }
        match self.state {
            St::BeginValue if space => {}
            St::BeginValue => self.begin_value(c),
            St::BeginValueOrEmpty if space => {}
            St::BeginValueOrEmpty if c == b']' => {
                self.mark_empty();
                self.pop()
            }
            St::BeginValueOrEmpty => self.begin_value(c),
            St::BeginStringOrEmpty if space => {}
            St::BeginStringOrEmpty if c == b'}' => {
                self.mark_empty();
                self.pop()
            }
            St::BeginStringOrEmpty | St::BeginString => self.begin_key(c, space),
            St::InString => self.in_string(c),
            St::InStringEsc => self.in_escape(c),
            St::InStringEscU(n) => match (c as char).to_digit(16) {
                Some(h) => {
                    self.escape = self.escape * 16 + h;
                    if n == 3 {
                        let u = self.escape;
                        self.with_sink(|d, s| d.unicode_escape(u, s));
                        self.state = St::InString;
                    } else {
                        self.state = St::InStringEscU(n + 1);
                    }
                }
                None => self.fail(c, "in \\u hexadecimal character escape"),
            },
            St::Neg => match c {
                b'0' => self.state = St::Zero,
                b'1'..=b'9' => self.state = St::One,
                _ => self.fail(c, "in numeric literal"),
            },
            St::One if c.is_ascii_digit() => {}
            St::One | St::Zero => match c {
                b'.' => self.state = St::Dot,
                b'e' | b'E' => self.state = St::E,
                _ => self.end_value(c, space),
            },
            St::Dot if c.is_ascii_digit() => self.state = St::Dot0,
            St::Dot => self.fail(c, "after decimal point in numeric literal"),
            St::Dot0 if c == b'e' || c == b'E' => self.state = St::E,
            St::Dot0 | St::E0 if c.is_ascii_digit() => {}
            St::Dot0 | St::E0 => self.end_value(c, space),
            St::E if c == b'+' || c == b'-' => self.state = St::ESign,
            St::E | St::ESign if c.is_ascii_digit() => self.state = St::E0,
            St::E | St::ESign => self.fail(c, "in exponent of numeric literal"),
            St::Lit(word, pos) => {
                let expected = word.as_bytes().get(usize::from(pos)).copied().unwrap_or(0);
                if c != expected {
                    let context = format!("in literal {word} (expecting {})", quote_char(expected));
                    self.fail(c, &context);
                } else if usize::from(pos) + 1 == word.len() {
                    self.value_done();
                } else {
                    self.state = St::Lit(word, pos + 1);
                }
            }
            St::EndValue => self.end_value(c, space),
            St::Done | St::Error => {}
        }
    }

    fn begin_value(&mut self, c: u8) {
        self.seen_value = true;
        let kind = match c {
            b'{' => "object",
            b'[' => "array",
            b'"' => "string",
            b'-' | b'0'..=b'9' => "number",
            b't' | b'f' => "bool",
            b'n' => "null",
            _ => return self.fail(c, "looking for beginning of value"),
        };
        self.value_starts(kind);
        if let Some((_, literal)) = &mut self.number {
            literal.push(char::from(c));
        }
        match c {
            b'{' => {
                if self.push(c, true) {
                    self.in_key = true;
                    self.state = St::BeginStringOrEmpty;
                }
            }
            b'[' => {
                if self.push(c, false) {
                    self.state = St::BeginValueOrEmpty;
                }
            }
            b'"' => self.state = St::InString,
            b'-' => self.state = St::Neg,
            b'0' => self.state = St::Zero,
            b't' => self.state = St::Lit("true", 1),
            b'f' => self.state = St::Lit("false", 1),
            b'n' => self.state = St::Lit("null", 1),
            _ => self.state = St::One,
        }
    }

    /// Bookkeeping for a value of `kind` starting at the current position.
    fn value_starts(&mut self, kind: &'static str) {
        if self.depth == 0 {
            self.top_kind = Some(kind);
            return;
        }
        if self.top_kind != Some("object") {
            return;
        }
        if self.depth != 1 {
            self.inner_value_starts(kind);
            self.nested_value_starts(kind);
            return self.message_value_starts(kind);
        }
        self.open_slot = None;
        let Some(slot) = self.slot else { return };
        let expected = self.kinds.get(slot).copied().unwrap_or(Kind::Str);
        // Go's `null` zeroes a slice, map or pointer but leaves a string,
        // bool or number as an earlier duplicate key set it.
        let keeps_value = kind == "null"
            && matches!(
                expected,
                Kind::Str | Kind::Text | Kind::Bool | Kind::Number(_)
            );
        if slot >= self.captured && !keeps_value {
            if let Some(v) = self.values.get_mut(slot) {
                *v = Some(FieldValue {
                    kind,
                    ..FieldValue::default()
                });
            }
        }
        if matches!(kind, "array" | "object") {
            self.open_slot = Some(slot);
        }
        if let (Kind::Messages(schema), "array") = (expected, kind) {
            let states = std::mem::take(&mut self.message_states);
            self.messages = Some((slot, Messages::new(schema, states)));
        }
        if let (Kind::Messages(_), "null") = (expected, kind) {
            // A nil slice: nothing of an earlier array is left.
            self.message_states.clear();
        }
        if let Kind::Nested(shape) = expected {
            if matches!(kind, "array" | "object") && shape.accepts(kind) {
                let field = self.fields.get(slot).copied().unwrap_or("");
                self.nested = Some(nested::Tracker::new(field, shape));
            }
        }
        if expected == Kind::Think && !expected.accepts(kind) {
            // Its own decoder fails: that error ends decoding at once.
            return self.stop_decoding(ScanError::Think);
        }
        if expected == Kind::Duration && !expected.accepts(kind) && kind != "null" {
            let go_type = match kind {
                "bool" => "bool",
                "array" => "[]interface {}",
                _ => "map[string]interface {}",
            };
            let text = format!("Unsupported type: '{go_type}'");
            return self.stop_decoding(ScanError::Duration(text));
        }
        if self.decoding_stopped() {
            return;
        }
        let read =
            slot < self.captured || matches!(expected, Kind::Think | Kind::Text | Kind::Duration);
        if kind == "string" && read {
            self.capture = Capture::Value(slot, ValueBuf::default());
        } else if let (Some(check), "number") = (number_check(expected), kind) {
            self.number_check = check;
            self.number = Some((slot, String::new()));
        } else if !expected.accepts(kind) {
            self.type_mismatch(slot, kind.to_string(), expected);
        }
    }

    /// Records a type error unless an earlier one is kept (Go keeps the
    /// first).
    fn type_mismatch(&mut self, slot: usize, kind: String, expected: Kind) {
        let field = self.fields.get(slot).copied().unwrap_or("");
        self.save(ScanError::FieldType {
            field,
            kind,
            go_type: expected.go_type(),
        });
    }

    /// A type error Go saves: the first one is kept, unless decoding
    /// already stopped.
    fn save(&mut self, e: ScanError) {
        if self.type_error.is_none() {
            self.type_error = Some(e);
        }
    }

    /// An error from a type's own decoder: decoding stops, so it replaces
    /// a saved error, unless decoding stopped earlier.
    fn stop_decoding(&mut self, e: ScanError) {
        if !self.decoding_stopped() {
            self.type_error = Some(e);
        }
    }

    fn decoding_stopped(&self) -> bool {
        self.type_error
            .as_ref()
            .is_some_and(ScanError::ends_decoding)
    }

    /// A value inside `messages`: an element (depth 2) or one of an
    /// element's fields (depth 3).
    fn message_value_starts(&mut self, kind: &'static str) {
        let depth = self.depth;
        let Some((_, m)) = self.messages.as_mut() else {
            return;
        };
        match depth {
            4 if m.in_content() => return m.part_starts(kind),
            5 if m.in_part() => {
                if m.part_field_starts(kind) {
                    self.capture = Capture::PartType(KeyMatch::new(messages::PART_TYPES, true));
                }
                return;
            }
            6 if m.in_image_url() => return m.url_starts(kind),
            _ => {}
        }
        let found = match depth {
            2 => m.element_starts(kind),
            3 if m.in_element => m.field_starts(kind).map(|e| (e, false)),
            4 if m.in_element && m.image_starts(kind) => {
                self.capture = Capture::Base64(base64::Base64Check::default());
                None
            }
            _ => None,
        };
        match found {
            Some((e, true)) => self.stop_decoding(e),
            Some((e, false)) if !self.decoding_stopped() => self.save(e),
            _ => {}
        }
        self.tool_calls_start(kind);
    }

    /// An element's `tool_calls` array opened: its elements are tracked
    /// like a [`Kind::Nested`] field's.
    fn tool_calls_start(&mut self, kind: &'static str) {
        let Some((_, m)) = self.messages.as_ref() else {
            return;
        };
        if self.depth != 3 || kind != "array" || m.opened_array() != Some("tool_calls") {
            return;
        }
        let naming = if m.schema.custom_decoder {
            nested::Naming::Request
        } else {
            nested::Naming::Within("Message")
        };
        let shape = m.schema.tool_calls;
        self.nested = Some(nested::Tracker::at("messages.tool_calls", 3, naming, shape));
    }

    /// An error inside a tracked value: inside `api.Message` it waits for
    /// the element's end (its decoder keeps the first); else Go saves it
    /// or stops there.
    fn nested_error(&mut self, e: ScanError, custom: bool) {
        if let Some((_, m)) = self
            .messages
            .as_mut()
            .filter(|(_, m)| m.in_element && m.schema.custom_decoder)
        {
            return if custom {
                m.inner_abort(e)
            } else {
                m.inner_error(e)
            };
        }
        if e.ends_decoding() {
            self.stop_decoding(e)
        } else {
            self.save(e)
        }
    }

    /// A container closes at the current depth: an element of `messages`
    /// may end decoding; `messages` itself leaves its findings behind.
    fn container_ends(&mut self) {
        if let Some(t) = self.nested.as_mut() {
            if t.close() {
                self.nested = None;
            }
        }
        if let Some((_, m)) = self.messages.as_mut() {
            match self.depth {
                5 if m.in_part() => m.part_ends(),
                6 if m.in_image_url() => m.image_url_ends(),
                _ => {}
            }
        }
        match self.depth {
            3 => {
                let ended = self
                    .messages
                    .as_mut()
                    .filter(|(_, m)| m.in_element)
                    .and_then(|(_, m)| m.element_ends());
                if let Some(e) = ended {
                    self.stop_decoding(e);
                }
            }
            2 => {
                if let Some((slot, m)) = self.messages.take() {
                    let (note, states) = m.finish();
                    self.message_states = states;
                    if let Some(Some(v)) = self.values.get_mut(slot) {
                        v.note = note;
                    }
                }
            }
            _ => {}
        }
    }

    /// A number being checked ended: Go's `strconv` must read it as its
    /// Go type (`ParseInt`, or `ParseFloat` in range).
    fn number_done(&mut self) {
        let nested_number = std::mem::take(&mut self.nested_number);
        let Some((slot, literal)) = self.number.take() else {
            return;
        };
        let (go_type, ends_decoding) = self.number_check;
        if let (Some(Some(v)), Some(Kind::Number(_))) =
            (self.values.get_mut(slot), self.kinds.get(slot))
        {
            // Kept for checks after decoding (`top_logprobs` range).
            v.verbatim.clone_from(&literal);
        }
        let fits = match go_type {
            "float32" => literal.parse::<f32>().is_ok_and(f32::is_finite),
            "float64" => literal.parse::<f64>().is_ok_and(f64::is_finite),
            _ => literal.parse::<i64>().is_ok(),
        };
        if fits || self.decoding_stopped() {
            return;
        }
        let kind = format!("number {literal}");
        if let Some(c) = self
            .nested
            .as_ref()
            .filter(|_| nested_number)
            .map(nested::Tracker::number_context)
        {
            return self.nested_error(c.error(kind, go_type), c.custom);
        }
        if ends_decoding {
            let path = self.fields.get(slot).copied().unwrap_or("").to_string();
            let e = ScanError::Nested {
                structure: None,
                path,
                kind,
                go_type,
                ends_decoding: true,
            };
            return self.stop_decoding(e);
        }
        self.save(ScanError::FieldType {
            field: self.fields.get(slot).copied().unwrap_or(""),
            kind,
            go_type,
        });
    }

    /// An `api.ImageData` string ended: a top-level one's base64 error is
    /// saved; one in a message fails that message's own decoder.
    fn image_done(&mut self, check: &base64::Base64Check) {
        let Some(at) = check.error_offset() else {
            return;
        };
        let stopped = self.decoding_stopped();
        match self.messages.as_mut() {
            Some((_, m)) if self.depth == 4 => m.inner_error(ScanError::Base64 {
                at,
                ends_decoding: true,
            }),
            _ if !stopped => self.save(ScanError::Base64 {
                at,
                ends_decoding: false,
            }),
            _ => {}
        }
    }

    /// A value below a top-level field (outside `messages`): the elements
    /// of typed arrays (`context`, `images`, `tools`) must be of their
    /// element type, and every number decoded into an `interface{}`
    /// (`options`, `input`, `stop`, …) must fit a `float64`.
    fn inner_value_starts(&mut self, kind: &'static str) {
        if self.messages.is_some() || self.decoding_stopped() {
            return;
        }
        let Some(slot) = self.open_slot else { return };
        let expected = self.kinds.get(slot).copied().unwrap_or(Kind::Str);
        let element = match expected {
            Kind::Array(t) if self.depth == 2 => array_element(t),
            Kind::Any | Kind::Object("map[string]interface {}") => Some(Kind::Any),
            _ => None,
        };
        let Some(element) = element else { return };
        if let (Some(check), "number") = (number_check(element), kind) {
            self.number_check = check;
            self.number = Some((slot, String::new()));
        } else if let (Kind::Element("api.ImageData", _), "string") = (element, kind) {
            self.capture = Capture::Base64(base64::Base64Check::default());
        } else if !element.accepts(kind) {
            let field = self.fields.get(slot).copied().unwrap_or("");
            self.save(ScanError::FieldType {
                field,
                kind: kind.to_string(),
                go_type: element.go_type(),
            });
        }
    }

    /// A value inside a [`Kind::Nested`] field: its kind is checked
    /// against the shape there; a number is read to check its literal.
    fn nested_value_starts(&mut self, kind: &'static str) {
        let depth = self.depth;
        let Some(t) = self.nested.as_mut() else {
            return;
        };
        if t.inner_depth() != depth {
            return;
        }
        let check = t.value_starts(kind);
        if self.decoding_stopped() {
            return;
        }
        match check {
            nested::Check::None => {}
            nested::Check::Error(e, custom) => self.nested_error(e, custom),
            nested::Check::Number(go_type) => {
                let slot = self.open_slot.unwrap_or(0);
                self.number_check = (go_type, false);
                self.number = Some((slot, String::new()));
                self.nested_number = true;
            }
        }
    }

    /// The keys to match for a key at the current depth inside a
    /// [`Kind::Nested`] field, when its innermost container is a struct.
    fn nested_keys(&self) -> Option<&'static [&'static str]> {
        let t = self.nested.as_ref()?;
        if t.inner_depth() != self.depth {
            return None;
        }
        t.struct_keys()
    }

    /// A captured string of a `think` field ended: Go accepts only the
    /// levels, else its decoder's error ends decoding.
    fn think_done(&mut self, slot: usize, value: &FieldValue) {
        const LEVELS: [&str; 4] = ["high", "medium", "low", "max"];
        if self.kinds.get(slot) == Some(&Kind::Duration) {
            if let Err(text) = model_map::go_duration::parse_go_duration(&value.verbatim) {
                self.stop_decoding(ScanError::Duration(text));
            }
            return;
        }
        if self.kinds.get(slot) == Some(&Kind::Think) && !LEVELS.contains(&value.verbatim.as_str())
        {
            self.stop_decoding(ScanError::ThinkValue(value.verbatim.clone()));
        }
    }

    /// A container closed right after opening: if it is a top-level
    /// field's value, that value is empty.
    fn mark_empty(&mut self) {
        if self.depth == 2 {
            if let Some(Some(v)) = self.open_slot.and_then(|i| self.values.get_mut(i)) {
                v.is_empty = true;
            }
        }
    }

    fn begin_key(&mut self, c: u8, space: bool) {
        if space {
            return;
        }
        if c != b'"' {
            return self.fail(c, "looking for beginning of object key string");
        }
        self.slot = None;
        let element = self.messages.as_ref().filter(|(_, m)| m.in_element);
        let names = match (self.depth, element) {
            (1, _) if self.top_kind == Some("object") => Some((self.fields, false)),
            (3, Some((_, m))) => Some((m.schema.names, false)),
            (5, Some((_, m))) if m.in_part() => Some((messages::PART_KEYS, true)),
            (6, Some((_, m))) if m.in_image_url() => Some((messages::URL_KEYS, true)),
            _ => self.nested_keys().map(|keys| (keys, false)),
        };
        if let Some((names, exact)) = names {
            self.capture = Capture::Key(KeyMatch::new(names, exact), names);
        }
        self.state = St::InString;
    }

    /// A key was matched (`found`: which of the names asked for): the
    /// slot of whatever object is open at this depth.
    fn key_read(&mut self, found: Option<usize>) {
        let nested = self.nested_keys().is_some();
        match (self.depth, self.messages.as_mut(), self.nested.as_mut()) {
            (3, Some((_, msgs)), _) if msgs.in_element => msgs.slot = found,
            (5, Some((_, msgs)), _) if msgs.in_part() => msgs.part_key(found),
            (6, Some((_, msgs)), _) if msgs.in_image_url() => msgs.url_key(found),
            (_, _, Some(t)) if nested => t.key_read(found),
            _ => self.slot = found,
        }
    }

    fn in_string(&mut self, c: u8) {
        match c {
            b'"' => {
                self.with_sink(|d, s| d.finish(s));
                match std::mem::replace(&mut self.capture, Capture::None) {
                    Capture::Key(m, names) => self.key_read(m.found(names)),
                    Capture::PartType(m) => {
                        if let Some((_, msgs)) = self.messages.as_mut() {
                            msgs.part_type_read(m.found(messages::PART_TYPES));
                        }
                    }
                    Capture::Value(slot, buf) => {
                        let value = buf.finish();
                        self.think_done(slot, &value);
                        if let Some(v) = self.values.get_mut(slot) {
                            *v = Some(value);
                        }
                    }
                    Capture::Base64(check) => self.image_done(&check),
                    Capture::None => {}
                }
                self.value_done();
            }
            b'\\' => self.state = St::InStringEsc,
            c if c < 0x20 => self.fail(c, "in string literal"),
            c => self.with_sink(|d, s| d.byte(c, s)),
        }
    }

    fn in_escape(&mut self, c: u8) {
        let decoded = match c {
            b'b' => '\x08',
            b'f' => '\x0c',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'\\' | b'/' | b'"' => c as char,
            b'u' => {
                self.escape = 0;
                self.state = St::InStringEscU(0);
                return;
            }
            _ => return self.fail(c, "in string escape code"),
        };
        self.with_sink(|d, s| d.escaped(decoded, s));
        self.state = St::InString;
    }

    fn with_sink(&mut self, f: impl FnOnce(&mut GoStringDecoder, &mut dyn CharSink)) {
        match &mut self.capture {
            Capture::None => {}
            Capture::Key(m, names) => f(&mut self.decoder, &mut KeySink(m, names)),
            Capture::Value(_, buf) => f(&mut self.decoder, buf),
            Capture::Base64(check) => f(&mut self.decoder, check),
            Capture::PartType(m) => f(&mut self.decoder, &mut KeySink(m, messages::PART_TYPES)),
        }
    }

    /// A value ended; a top-level one ends the scan (Go's decoder stops
    /// right after the closing byte of the first value).
    fn value_done(&mut self) {
        self.state = if self.depth == 0 {
            St::Done
        } else {
            St::EndValue
        };
    }

    fn end_value(&mut self, c: u8, space: bool) {
        self.number_done();
        if self.depth == 0 {
            self.state = St::Done;
            return;
        }
        if space {
            self.state = St::EndValue;
            return;
        }
        let object = self.top_is_object();
        match (object, self.in_key, c) {
            (true, true, b':') => {
                self.in_key = false;
                self.state = St::BeginValue;
            }
            (true, true, _) => self.fail(c, "after object key"),
            (true, false, b',') => {
                self.in_key = true;
                self.state = St::BeginString;
            }
            (true, false, b'}') | (false, _, b']') => self.pop(),
            (true, false, _) => self.fail(c, "after object key:value pair"),
            (false, _, b',') => self.state = St::BeginValue,
            (false, _, _) => self.fail(c, "after array element"),
        }
    }

    fn top_is_object(&self) -> bool {
        let i = self.depth.saturating_sub(1);
        self.stack
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn push(&mut self, c: u8, object: bool) -> bool {
        if self.depth >= MAX_DEPTH {
            self.fail(c, "exceeded max depth");
            return false;
        }
        let i = self.depth;
        if let Some(w) = self.stack.get_mut(i / 64) {
            if object {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
        self.depth += 1;
        true
    }

    fn pop(&mut self) {
        self.container_ends();
        self.depth = self.depth.saturating_sub(1);
        // The parent, if an object, is always past its key here.
        self.in_key = false;
        self.value_done();
    }
}

/// The Go type a number in a value of this kind must fit, and whether
/// a misfit ends decoding; `None` for kinds whose numbers are not read.
fn number_check(kind: Kind) -> Option<(&'static str, bool)> {
    match kind {
        Kind::Number(t) => Some((t, false)),
        Kind::Any => Some(("float64", false)),
        // `api.Duration` decodes into an `interface{}` itself.
        Kind::Duration => Some(("float64", true)),
        _ => None,
    }
}

/// The kind of the elements of an array field Go decodes element by
/// element, as far as the scan checks them.
fn array_element(array_type: &str) -> Option<Kind> {
    match array_type {
        "[]int" => Some(Kind::Number("int")),
        // `[]byte` also takes an array of bytes.
        "[]api.ImageData" => Some(Kind::Element("api.ImageData", "string|array")),
        "api.Tools" | "[]api.Tool" => Some(Kind::Element("api.Tool", "object")),
        _ => None,
    }
}

/// Go's `quoteChar`: the byte as a rune in single quotes, escaped like
/// `strconv.Quote`.
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => r"'\''".into(),
        b'"' => "'\"'".into(),
        _ => {
            let mut s = String::from("'");
            crate::errors::push_go_escaped(&mut s, char::from(c));
            s.push('\'');
            s
        }
    }
}

#[cfg(test)]
#[path = "body_scan_tests.rs"]
mod tests;
