//! A conversation's key: a hash of the part of a request body that stays
//! the same from one turn to the next, so the default policy can send a
//! conversation's turns where its prompt is already in a slot's cache.
//!
//! Chat (`messages`): the raw bytes of the elements up to and including
//! the first `user` message (the system prompt and the first question),
//! at most [`ELEMENT_BYTES`] of each and [`MAX_ELEMENTS`] elements.
//! Generate (`system`, `prompt`): the raw bytes of `system` (when it comes
//! before `prompt`, as clients send it; a later one is not read) and of
//! the first [`PROMPT_BYTES`] of `prompt`. Embeddings have no key: Ollama does
//! not reuse its prompt cache for them.
//!
//! The walker reads the same body windows as the scan, after it, without
//! decoding: it tracks depth, strings and the few keys it needs, and
//! stops as soon as the key is known. It assumes the JSON is valid: an
//! invalid body is answered by the scan's error before any routing.

/// Most bytes of one message element hashed.
pub const ELEMENT_BYTES: usize = 2048;
/// Most message elements hashed (when no `user` message comes first).
pub const MAX_ELEMENTS: usize = 8;
/// Most bytes of a generate `prompt` hashed.
pub const PROMPT_BYTES: usize = 2048;

/// Which part of the body makes the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The `messages` array (native and OpenAI chat).
    Messages,
    /// `system` and `prompt` (native generate, OpenAI completions).
    Prompt,
}

/// The field whose value is being hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    Messages,
    System,
    Prompt,
}

/// Incremental walker finding a conversation key in a JSON body.
#[derive(Debug)]
pub struct ConversationKey {
    source: Source,
    depth: u32,
    in_string: bool,
    escape: bool,
    /// The next string at this depth is an object key.
    key_next: bool,
    /// The current string is a key we read (short keys only).
    key: Option<Vec<u8>>,
    /// The value after the key just read is hashed as this.
    pending: Option<Capture>,
    /// The next string value is a message's `role`.
    role_next: bool,
    /// Reading a message's `role`.
    in_role: bool,
    capture: Option<Capture>,
    /// Bytes hashed of the current element or string.
    taken: usize,
    elements: usize,
    role: Vec<u8>,
    user_seen: bool,
    messages: Option<u64>,
    system: Option<u64>,
    prompt: Option<u64>,
    hash: u64,
    done: bool,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl ConversationKey {
    pub fn new(source: Source) -> Self {
        ConversationKey {
            source,
            depth: 0,
            in_string: false,
            escape: false,
            key_next: false,
            key: None,
            pending: None,
            role_next: false,
            in_role: false,
            capture: None,
            taken: 0,
            elements: 0,
            role: Vec::new(),
            user_seen: false,
            messages: None,
            system: None,
            prompt: None,
            hash: FNV_OFFSET,
            done: false,
        }
    }

    /// Reads the next window of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut i = 0;
        while i < chunk.len() && !self.done {
            let reading = self.key.is_some() || self.in_role;
            if self.in_string && !self.escape && !reading {
                // Through the plain bytes of a string at once: hashed up
                // to the cap, skipped after it.
                let rest = chunk.get(i..).unwrap_or_default();
                // While hashing, look no further than the cap.
                let rest = rest.get(..self.search_limit()).unwrap_or(rest);
                let plain = rest
                    .iter()
                    .position(|&c| c == b'"' || c == b'\\')
                    .unwrap_or(rest.len());
                self.hash_span(rest.get(..plain).unwrap_or_default());
                i += plain;
            }
            let Some(&c) = chunk.get(i) else { return };
            if self.hashing() {
                self.hash_byte(c);
            }
            self.step(c);
            i += 1;
        }
    }

    /// The key, once anything of the conversation was read.
    pub fn key(&self) -> Option<u64> {
        match self.source {
            Source::Messages => self.messages.or_else(|| self.partial(Capture::Messages)),
            Source::Prompt => {
                let prompt = self.prompt.or_else(|| self.partial(Capture::Prompt))?;
                Some(mix(self.system.unwrap_or(0) ^ mix(prompt)))
            }
        }
    }

    fn partial(&self, what: Capture) -> Option<u64> {
        (self.capture == Some(what) && self.taken > 0).then_some(mix(self.hash))
    }

    fn hashing(&self) -> bool {
        match self.capture {
            Some(Capture::Messages) => self.taken < ELEMENT_BYTES,
            Some(Capture::Prompt) => self.taken < PROMPT_BYTES,
            Some(Capture::System) => true,
            None => false,
        }
    }

    /// Bytes the current capture may still hash (0 without a capture).
    fn room(&self) -> usize {
        match self.capture {
            Some(Capture::Messages) => ELEMENT_BYTES.saturating_sub(self.taken),
            Some(Capture::Prompt) => PROMPT_BYTES.saturating_sub(self.taken),
            Some(Capture::System) => usize::MAX,
            None => 0,
        }
    }

    /// How far to look for the end of a string's plain bytes: the room
    /// left while hashing, else anywhere.
    fn search_limit(&self) -> usize {
        match self.room() {
            0 => usize::MAX,
            room => room,
        }
    }

    fn hash_span(&mut self, span: &[u8]) {
        if self.capture.is_none() {
            return;
        }
        let taken = span.get(..self.room().min(span.len())).unwrap_or_default();
        let mut h = self.hash;
        for &c in taken {
            h = (h ^ u64::from(c)).wrapping_mul(FNV_PRIME);
        }
        self.hash = h;
        self.taken += taken.len();
        if self.capture == Some(Capture::Prompt) && self.taken >= PROMPT_BYTES {
            // The start of the prompt is the key: no need to walk the rest.
            self.prompt = Some(mix(self.hash));
            self.done = true;
        }
    }

    fn hash_byte(&mut self, c: u8) {
        self.hash = (self.hash ^ u64::from(c)).wrapping_mul(FNV_PRIME);
        self.taken += 1;
    }

    fn step(&mut self, c: u8) {
        if self.in_string {
            self.string_byte(c);
            return;
        }
        match c {
            b'"' => self.string_starts(),
            b'{' | b'[' => self.container_starts(c),
            b'}' | b']' => self.container_ends(),
            b',' => self.key_next = self.object_here(),
            b':' => {}
            _ => {}
        }
    }

    /// Whether the container at the current depth is an object whose keys
    /// matter: the top level, or a message element.
    fn object_here(&self) -> bool {
        self.depth == 1 || (self.depth == 3 && self.capture == Some(Capture::Messages))
    }

    fn string_starts(&mut self) {
        self.in_string = true;
        if self.key_next {
            self.key_next = false;
            self.key = Some(Vec::new());
            return;
        }
        if std::mem::take(&mut self.role_next) {
            self.role.clear();
            self.in_role = true;
            return;
        }
        match self.pending.take() {
            Some(what @ (Capture::System | Capture::Prompt)) if self.depth == 1 => {
                self.capture = Some(what);
                self.hash = FNV_OFFSET;
                self.taken = 0;
            }
            _ => {}
        }
    }

    fn string_byte(&mut self, c: u8) {
        if self.escape {
            self.escape = false;
            self.string_char(c);
            return;
        }
        match c {
            b'\\' => {
                self.escape = true;
                self.string_char(c);
            }
            b'"' => self.string_ends(),
            _ => self.string_char(c),
        }
    }

    fn string_char(&mut self, c: u8) {
        if let Some(key) = self.key.as_mut().filter(|k| k.len() < 16) {
            key.push(c);
        } else if self.in_role && self.role.len() < 16 {
            self.role.push(c);
        }
    }

    fn string_ends(&mut self) {
        self.in_string = false;
        if let Some(key) = self.key.take() {
            if self.depth == 3 {
                self.role_next = key == b"role" && self.capture == Some(Capture::Messages);
            } else {
                self.pending = self.field_of(&key);
            }
            return;
        }
        if std::mem::take(&mut self.in_role) {
            self.user_seen |= self.role == b"user";
            return;
        }
        match self.capture {
            Some(Capture::System) => {
                self.system = Some(mix(self.hash));
                self.end_capture();
            }
            Some(Capture::Prompt) => {
                self.prompt = Some(mix(self.hash));
                self.end_capture();
            }
            _ => {}
        }
    }

    /// What the value after `key` is, at the current depth.
    fn field_of(&self, key: &[u8]) -> Option<Capture> {
        match (self.depth, self.source, key) {
            (1, Source::Messages, b"messages") if self.messages.is_none() => {
                Some(Capture::Messages)
            }
            (1, Source::Prompt, b"system") => Some(Capture::System),
            (1, Source::Prompt, b"prompt") => Some(Capture::Prompt),
            _ => None,
        }
    }

    fn container_starts(&mut self, c: u8) {
        self.depth += 1;
        if self.pending.take() == Some(Capture::Messages) && self.depth == 2 && c == b'[' {
            self.capture = Some(Capture::Messages);
            self.hash = FNV_OFFSET;
            self.hash_byte(c);
        }
        if self.depth == 3 && self.capture == Some(Capture::Messages) {
            self.taken = 0;
        }
        // A value that is not a string: the role is not read.
        self.role_next = false;
        self.key_next = c == b'{' && self.object_here();
    }

    fn container_ends(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if self.capture != Some(Capture::Messages) {
            return;
        }
        if self.depth == 2 {
            // A message element ended.
            self.elements += 1;
            if self.user_seen || self.elements >= MAX_ELEMENTS {
                self.messages = Some(mix(self.hash));
                self.done = true;
            }
        } else if self.depth == 1 {
            self.messages = Some(mix(self.hash));
            self.done = true;
        }
    }

    fn end_capture(&mut self) {
        self.capture = None;
        self.done = self.prompt.is_some();
    }
}

/// splitmix64's finaliser: FNV's low bits alone spread poorly.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The key of a whole body (tests and the cost example).
pub fn key_of(source: Source, body: &[u8]) -> Option<u64> {
    let mut walker = ConversationKey::new(source);
    walker.feed(body);
    walker.key()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(turns: &[&str]) -> Vec<u8> {
        let mut messages = vec![r#"{"role":"system","content":"be brief"}"#.to_string()];
        for (i, t) in turns.iter().enumerate() {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            messages.push(format!(r#"{{"role":"{role}","content":"{t}"}}"#));
        }
        format!(
            r#"{{"model":"llama3","messages":[{}],"stream":false}}"#,
            messages.join(",")
        )
        .into_bytes()
    }

    #[test]
    fn every_turn_of_a_chat_has_the_first_turns_key() {
        let first = key_of(Source::Messages, &chat(&["hi"]));
        assert!(first.is_some());
        let later = key_of(
            Source::Messages,
            &chat(&["hi", "hello!", "how are \\\"you\\\"?"]),
        );
        assert_eq!(first, later);
        let other = key_of(Source::Messages, &chat(&["hey"]));
        assert_ne!(first, other, "another first question, another key");
    }

    #[test]
    fn the_key_does_not_depend_on_where_the_windows_split() {
        let body = chat(&["hi", "hello", "more"]);
        let whole = key_of(Source::Messages, &body);
        for split in 1..body.len() {
            let mut w = ConversationKey::new(Source::Messages);
            let (a, b) = body.split_at(split);
            w.feed(a);
            w.feed(b);
            assert_eq!(w.key(), whole, "split at {split}");
        }
    }

    #[test]
    fn keys_elsewhere_in_the_body_do_not_count() {
        let nested = br#"{"options":{"messages":[1]},"messages":[{"role":"user","content":"x"}]}"#;
        let plain = br#"{"messages":[{"role":"user","content":"x"}]}"#;
        assert_eq!(
            key_of(Source::Messages, nested),
            key_of(Source::Messages, plain)
        );
        assert_eq!(key_of(Source::Messages, br#"{"model":"m"}"#), None);
        assert!(key_of(Source::Messages, br#"{"messages":[]}"#).is_some());
    }

    #[test]
    fn a_long_first_message_is_hashed_only_so_far() {
        let long = |tail: &str| {
            let content = format!("{}{tail}", "x".repeat(ELEMENT_BYTES * 2));
            format!(r#"{{"messages":[{{"role":"user","content":"{content}"}}]}}"#).into_bytes()
        };
        assert_eq!(
            key_of(Source::Messages, &long("a")),
            key_of(Source::Messages, &long("b"))
        );
    }

    #[test]
    fn generate_keys_on_system_and_the_start_of_prompt() {
        let body = |system: &str, prompt: &str| {
            format!(r#"{{"model":"m","system":"{system}","prompt":"{prompt}"}}"#).into_bytes()
        };
        let long = "p".repeat(PROMPT_BYTES);
        let a = key_of(Source::Prompt, &body("s", &format!("{long} turn 1")));
        let b = key_of(Source::Prompt, &body("s", &format!("{long} turn 2")));
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(
            a,
            key_of(Source::Prompt, &body("t", &format!("{long} turn 1")))
        );
        assert!(key_of(Source::Prompt, br#"{"model":"m","prompt":"q"}"#).is_some());
        assert_eq!(
            key_of(Source::Prompt, br#"{"model":"m","system":"q"}"#),
            None
        );
    }
}
