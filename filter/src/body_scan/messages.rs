//! The elements of a `messages` array, checked as Go decodes them: each
//! element's fields by kind, and (for the OpenAI layer) the content types
//! `openai.FromChatRequest` accepts. Only the element's own fields are
//! looked at; what they hold is skipped like any other value.

use super::{Kind, ScanError};

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
#[derive(Debug)]
pub struct Messages {
    pub schema: &'static MessageSchema,
    pub in_element: bool,
    /// The element field whose key was just read.
    pub slot: Option<usize>,
    /// The element field whose array value is open (its elements are
    /// values at the next depth).
    open_array: Option<&'static str>,
    /// The current element's first type error.
    element_error: Option<ScanError>,
    /// The current element's `content` kind and whether it has tool calls.
    content: Option<&'static str>,
    tool_calls: bool,
    /// The first element whose content `FromChatRequest` rejects.
    pub content_error: Option<String>,
}

impl Messages {
    pub fn new(schema: &'static MessageSchema) -> Self {
        Messages {
            schema,
            in_element: false,
            slot: None,
            open_array: None,
            element_error: None,
            content: None,
            tool_calls: false,
            content_error: None,
        }
    }

    /// An element of `kind` starts; a non-object is a type error (for
    /// `api.Message`, one that ends decoding).
    pub fn element_starts(&mut self, kind: &'static str) -> Option<(ScanError, bool)> {
        self.slot = None;
        match kind {
            "object" => {
                self.in_element = true;
                self.element_error = None;
                self.content = None;
                self.tool_calls = false;
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
            "content" => self.content = Some(kind),
            "tool_calls" => self.tool_calls = kind != "null",
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

    /// The element field whose array value just opened.
    pub fn opened_array(&self) -> Option<&'static str> {
        self.open_array
    }

    /// An error inside the current element (its decoder keeps the first).
    pub fn inner_error(&mut self, e: ScanError) {
        self.element_error.get_or_insert(e);
    }

    /// The element object closed: its error if it ends decoding, after
    /// noting a content type `FromChatRequest` would reject.
    pub fn element_ends(&mut self) -> Option<ScanError> {
        self.in_element = false;
        if self.schema.content_types && self.content_error.is_none() {
            let go_type = match self.content {
                Some("string" | "array") => None,
                _ if self.tool_calls => None,
                None | Some("null") => Some("<nil>"),
                Some("number") => Some("float64"),
                Some("bool") => Some("bool"),
                Some(_) => Some("map[string]interface {}"),
            };
            self.content_error = go_type.map(|t| format!("invalid message content type: {t}"));
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
