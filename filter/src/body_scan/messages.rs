//! The elements of a `messages` array, checked as Go decodes them: each
//! element's fields by kind, and (for the OpenAI layer) the content types
//! `openai.FromChatRequest` accepts. Only the element's own fields are
//! looked at; what they hold is skipped like any other value.

use super::{Kind, ScanError};

/// The keys of an OpenAI content part that `FromChatRequest` reads (a
/// part is a `map[string]any`: keys match exactly, the last one wins).
pub const PART_KEYS: &[&str] = &["type", "text", "image_url", "input_audio"];
/// The part types it takes, aligned with the keys they need.
pub const PART_TYPES: &[&str] = &["text", "image_url", "input_audio"];
/// The key it reads in an `image_url` object.
pub const URL_KEYS: &[&str] = &["url"];

/// What `image_url` held last in a part.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ImageUrl {
    #[default]
    Missing,
    Str,
    /// An object, and whether its last `url` is a string.
    Object(bool),
    Other,
}

/// The content part being read (an object).
#[derive(Debug, Default)]
struct Part {
    /// The index in [`PART_TYPES`] of its last `type`, if one of them.
    kind: Option<usize>,
    text_is_string: bool,
    image_url: ImageUrl,
    audio_is_object: bool,
    /// The key just read.
    slot: Option<usize>,
}

impl Part {
    fn ok(&self) -> bool {
        match self.kind {
            Some(0) => self.text_is_string,
            Some(1) => matches!(self.image_url, ImageUrl::Str | ImageUrl::Object(true)),
            Some(2) => self.audio_is_object,
            _ => false,
        }
    }
}

/// A route's message struct.
#[derive(Debug, PartialEq, Eq)]
pub struct MessageSchema {
    /// The slice type, for a `messages` that is not an array.
    pub array_type: &'static str,
    /// The element type named when an element is not an object.
    pub element_type: &'static str,
    /// `api.Message` has its own `UnmarshalJSON`: an element's first type
    /// error ends decoding, named after the outer struct. `openai.Message`
    /// has none: errors are saved and named after `Message`.
    pub custom_decoder: bool,
    pub names: &'static [&'static str],
    pub kinds: &'static [Kind],
    /// Check `content` as `FromChatRequest` does.
    pub content_types: bool,
    /// What `tool_calls` holds.
    pub tool_calls: &'static super::nested::Shape,
}

/// Where the scan is inside `messages`.
/// What `FromChatRequest` reads of one element: Go decodes a repeated
/// `messages` into the same slice, element by element, so an element
/// keeps what an earlier array's element at its index set unless it sets
/// it again (and `null` elements change nothing).
#[derive(Debug, Default, Clone, Copy)]
pub struct ElementState {
    /// The kind of its `content`, and whether an array's part failed.
    content: Option<&'static str>,
    parts_bad: bool,
    /// Whether its `tool_calls` is non-nil.
    tool_calls: bool,
}

impl ElementState {
    /// `FromChatRequest`'s error for this element, if any.
    fn content_error(&self) -> Option<String> {
        let go_type = match self.content {
            Some("array") if self.parts_bad => return Some("invalid message format".into()),
            Some("string" | "array") => return None,
            _ if self.tool_calls => return None,
            None | Some("null") => "<nil>",
            Some("number") => "float64",
            Some("bool") => "bool",
            Some(_) => "map[string]interface {}",
        };
        Some(format!("invalid message content type: {go_type}"))
    }
}

#[derive(Debug)]
pub struct Messages {
    pub schema: &'static MessageSchema,
    pub in_element: bool,
    /// The element field whose key was just read.
    pub slot: Option<usize>,
    /// The element field whose array value is open (its elements are
    /// values at the next depth).
    open_array: Option<&'static str>,
    /// The current element's first type error, and whether a custom
    /// decoder's error stopped it.
    element_error: Option<ScanError>,
    element_aborted: bool,
    /// The current element's content and tool calls.
    current: ElementState,
    /// Every element's so far, kept across repeated `messages` (OpenAI).
    states: Vec<ElementState>,
    /// How many elements this array has had.
    count: usize,
    /// The content part open (OpenAI messages).
    part: Option<Part>,
    /// Inside a part's `image_url` object; its `url` key just read.
    in_image_url: bool,
    url_slot: bool,
}

impl Messages {
    /// A `messages` array opens; `states` are the elements an earlier
    /// one left.
    pub fn new(schema: &'static MessageSchema, states: Vec<ElementState>) -> Self {
        Messages {
            schema,
            in_element: false,
            slot: None,
            open_array: None,
            element_error: None,
            element_aborted: false,
            current: ElementState::default(),
            states,
            count: 0,
            part: None,
            in_image_url: false,
            url_slot: false,
        }
    }

    /// The array closed: the first element whose content
    /// `FromChatRequest` rejects, and the elements' states for a
    /// repeated `messages`.
    pub fn finish(mut self) -> (Option<String>, Vec<ElementState>) {
        if self.count == 0 {
            // Go gives an empty array a new, empty slice.
            self.states.clear();
        }
        let error = if self.schema.content_types {
            let n = self.count.min(self.states.len());
            self.states
                .get(..n)
                .unwrap_or_default()
                .iter()
                .find_map(ElementState::content_error)
        } else {
            None
        };
        (error, self.states)
    }

    /// An element of `kind` starts; a non-object is a type error (for
    /// `api.Message`, one that ends decoding).
    pub fn element_starts(&mut self, kind: &'static str) -> Option<(ScanError, bool)> {
        self.slot = None;
        if self.schema.content_types {
            if self.states.len() <= self.count {
                self.states.push(ElementState::default());
            }
            self.count += 1;
        }
        match kind {
            "object" => {
                self.in_element = true;
                self.element_error = None;
                self.element_aborted = false;
                let index = self.count.saturating_sub(1);
                self.current = self.states.get(index).copied().unwrap_or_default();
                None
            }
            "null" => None,
            _ => Some((
                self.error(kind.to_string(), None, self.schema.element_type),
                self.schema.custom_decoder,
            )),
        }
    }

    /// A value of `kind` starts for the element field just named. Returns
    /// an error to save now (the OpenAI struct) or `None`; `api.Message`'s
    /// errors wait for the element's end.
    pub fn field_starts(&mut self, kind: &'static str) -> Option<ScanError> {
        self.open_array = None;
        let slot = self.slot.take()?;
        let name = self.schema.names.get(slot).copied()?;
        if kind == "array" {
            self.open_array = Some(name);
        }
        let expected = self.schema.kinds.get(slot).copied()?;
        match name {
            "content" => {
                self.current.content = Some(kind);
                self.current.parts_bad = false;
            }
            "tool_calls" => self.current.tool_calls = kind != "null",
            _ => {}
        }
        if expected.accepts(kind) {
            return None;
        }
        let e = self.error(kind.to_string(), Some(name), expected.go_type());
        if self.schema.custom_decoder {
            self.element_error.get_or_insert(e);
            None
        } else {
            Some(e)
        }
    }

    /// An element of a message's `images` starts: a string is checked as
    /// base64 by the caller (true); an array (of bytes) or null passes;
    /// anything else fails the message's decoder.
    pub fn image_starts(&mut self, kind: &'static str) -> bool {
        if self.open_array != Some("images") || !self.schema.custom_decoder {
            return false;
        }
        match kind {
            "string" => true,
            "array" | "null" => false,
            _ => {
                let e = self.error(kind.to_string(), Some("images"), "api.ImageData");
                self.inner_error(e);
                false
            }
        }
    }

    /// Whether a value at depth 4 is a content part `FromChatRequest`
    /// checks.
    pub fn in_content(&self) -> bool {
        self.in_element && self.schema.content_types && self.open_array == Some("content")
    }

    /// A content part of `kind` starts: only an object can pass.
    pub fn part_starts(&mut self, kind: &'static str) {
        if kind == "object" {
            self.part = Some(Part::default());
        } else {
            self.current.parts_bad = true;
        }
    }

    pub fn in_part(&self) -> bool {
        self.in_element && self.part.is_some()
    }

    pub fn in_image_url(&self) -> bool {
        self.in_element && self.in_image_url
    }

    /// A key of the open part was read.
    pub fn part_key(&mut self, found: Option<usize>) {
        if let Some(p) = self.part.as_mut() {
            p.slot = found;
        }
    }

    /// A value of the open part starts; true when it is a `type` string
    /// the caller must read (and pass to [`Messages::part_type_read`]).
    pub fn part_field_starts(&mut self, kind: &'static str) -> bool {
        let Some(p) = self.part.as_mut() else {
            return false;
        };
        match p.slot.take().and_then(|i| PART_KEYS.get(i).copied()) {
            Some("type") if kind == "string" => return true,
            Some("type") => p.kind = None,
            Some("text") => p.text_is_string = kind == "string",
            Some("image_url") => {
                p.image_url = match kind {
                    "string" => ImageUrl::Str,
                    "object" => ImageUrl::Object(false),
                    _ => ImageUrl::Other,
                };
                self.in_image_url = kind == "object";
                self.url_slot = false;
            }
            Some("input_audio") => p.audio_is_object = kind == "object",
            _ => {}
        }
        false
    }

    /// The part's `type` string was read: its index in [`PART_TYPES`].
    pub fn part_type_read(&mut self, found: Option<usize>) {
        if let Some(p) = self.part.as_mut() {
            p.kind = found;
        }
    }

    /// A key of the open `image_url` object was read.
    pub fn url_key(&mut self, found: Option<usize>) {
        self.url_slot = found.is_some();
    }

    /// A value of the `image_url` object starts.
    pub fn url_starts(&mut self, kind: &'static str) {
        if std::mem::take(&mut self.url_slot) {
            if let Some(p) = self.part.as_mut() {
                p.image_url = ImageUrl::Object(kind == "string");
            }
        }
    }

    pub fn image_url_ends(&mut self) {
        self.in_image_url = false;
    }

    /// The open part closed: it passes or fails the content.
    pub fn part_ends(&mut self) {
        if let Some(p) = self.part.take() {
            if !p.ok() {
                self.current.parts_bad = true;
            }
        }
    }

    /// The element field whose array value just opened.
    pub fn opened_array(&self) -> Option<&'static str> {
        self.open_array
    }

    /// An error inside the current element (its decoder keeps the first).
    pub fn inner_error(&mut self, e: ScanError) {
        self.element_error.get_or_insert(e);
    }

    /// A custom decoder's error inside the current element: it stops the
    /// element's decoding, so it replaces a type error saved before it
    /// (but not an earlier such stop).
    pub fn inner_abort(&mut self, e: ScanError) {
        if !self.element_aborted {
            self.element_aborted = true;
            self.element_error = Some(e);
        }
    }

    /// The element object closed: its error if it ends decoding, after
    /// noting a content type `FromChatRequest` would reject.
    pub fn element_ends(&mut self) -> Option<ScanError> {
        self.in_element = false;
        let index = self.count.saturating_sub(1);
        if let Some(state) = self.states.get_mut(index) {
            *state = self.current;
        }
        self.element_error.take()
    }

    fn error(&self, kind: String, field: Option<&str>, go_type: &'static str) -> ScanError {
        let path = match field {
            Some(f) => format!("messages.{f}"),
            None => "messages".into(),
        };
        ScanError::Nested {
            // `api.Message`'s error is re-labelled with the outer struct;
            // a field of `openai.Message` names the innermost one.
            structure: (!self.schema.custom_decoder && field.is_some()).then_some("Message"),
            path,
            kind,
            go_type,
            ends_decoding: self.schema.custom_decoder,
        }
    }
}
