//! A JSON reader that accepts and rejects exactly what Go's
//! `json.Decoder.Decode` does, with its error texts (Go 1.x
//! `encoding/json/scanner.go` and `decode.go`, read for this, not copied):
//!
//! - only the first value counts: whatever follows it is never read;
//! - nesting deeper than 10,000 is `exceeded max depth`;
//! - invalid UTF-8 inside a string becomes U+FFFD, one per bad byte, and
//!   so does a lone or mismatched `\u` surrogate;
//! - numbers keep their literal text, because Go's type errors quote it
//!   (`number 1e400`) and only the target type decides what fits.
//!
//! serde_json differs on each of these points, so it cannot stand in.
//! The reader is iterative: a 10,000-deep body must not overflow a stack.

/// Go's `maxNestingDepth`.
pub const MAX_DEPTH: usize = 10_000;

/// A decoded JSON value; objects keep their members in document order,
/// duplicates included (Go applies them one after another).
#[derive(Debug, Clone, PartialEq)]
pub enum GoValue {
    Null,
    Bool(bool),
    /// The literal as written.
    Number(String),
    Str(String),
    Array(Vec<GoValue>),
    Object(Vec<(String, GoValue)>),
}

impl Drop for GoValue {
    /// Iterative, so dropping a 10,000-deep value does not recurse.
    fn drop(&mut self) {
        let mut stack = Vec::new();
        take_children(self, &mut stack);
        while let Some(mut v) = stack.pop() {
            take_children(&mut v, &mut stack);
        }
    }
}

fn take_children(v: &mut GoValue, into: &mut Vec<GoValue>) {
    match v {
        GoValue::Array(items) => into.append(items),
        GoValue::Object(members) => into.extend(std::mem::take(members).into_iter().map(|m| m.1)),
        _ => {}
    }
}

/// Why a body is not JSON, as Go words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxError {
    /// Nothing but whitespace (`io.EOF`; Ollama says `missing request body`).
    Empty,
    /// The body ended inside a value (`io.ErrUnexpectedEOF`).
    UnexpectedEof,
    /// `invalid character 'c' <context>`.
    Invalid(String),
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            SyntaxError::Empty => f.write_str("EOF"),
            SyntaxError::UnexpectedEof => f.write_str("unexpected EOF"),
            SyntaxError::Invalid(m) => f.write_str(m),
        }
    }
}

/// Reads the first JSON value of `body`.
pub fn parse(body: &[u8]) -> Result<GoValue, SyntaxError> {
    let mut r = Reader { b: body, i: 0 };
    r.skip_space();
    if r.i >= body.len() {
        return Err(SyntaxError::Empty);
    }
    r.value()
}

enum Frame {
    Array(Vec<GoValue>),
    Object(Vec<(String, GoValue)>, String),
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

/// What starting a value gave: a finished value, or an open container.
enum Begun {
    Done(GoValue),
    Open(Frame),
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn next_byte(&mut self) -> Result<u8, SyntaxError> {
        let c = self.peek().ok_or(SyntaxError::UnexpectedEof)?;
        self.i += 1;
        Ok(c)
    }

    fn value(&mut self) -> Result<GoValue, SyntaxError> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            let mut done = match self.begin(stack.len())? {
                Begun::Open(frame) => {
                    stack.push(frame);
                    continue;
                }
                Begun::Done(v) => v,
            };
            // Hand the finished value to its container, closing as many
            // containers as end here.
            loop {
                let Some(frame) = stack.last_mut() else {
                    return Ok(done);
                };
                self.skip_space();
                let c = self.next_byte()?;
                match frame {
                    Frame::Array(items) => {
                        items.push(done);
                        match c {
                            b',' => break,
                            b']' => {}
                            c => return Err(invalid(c, "after array element")),
                        }
                    }
                    Frame::Object(members, key) => {
                        members.push((std::mem::take(key), done));
                        match c {
                            b',' => {
                                self.skip_space();
                                *key = self.key()?;
                                break;
                            }
                            b'}' => {}
                            c => return Err(invalid(c, "after object key:value pair")),
                        }
                    }
                }
                done = match stack.pop() {
                    Some(Frame::Array(items)) => GoValue::Array(items),
                    Some(Frame::Object(members, _)) => GoValue::Object(members),
                    // Cannot happen: the frame was just looked at.
                    None => return Err(SyntaxError::UnexpectedEof),
                };
            }
        }
    }

    /// Starts a value at nesting `depth`.
    fn begin(&mut self, depth: usize) -> Result<Begun, SyntaxError> {
        self.skip_space();
        let c = self.next_byte()?;
        match c {
            b'{' | b'[' if depth + 1 > MAX_DEPTH => Err(invalid(c, "exceeded max depth")),
            b'{' => {
                self.skip_space();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Begun::Done(GoValue::Object(Vec::new())));
                }
                let key = self.key()?;
                Ok(Begun::Open(Frame::Object(Vec::new(), key)))
            }
            b'[' => {
                self.skip_space();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Begun::Done(GoValue::Array(Vec::new())));
                }
                Ok(Begun::Open(Frame::Array(Vec::new())))
            }
            b'"' => self.string().map(|s| Begun::Done(GoValue::Str(s))),
            b'-' | b'0'..=b'9' => self.number(c).map(|n| Begun::Done(GoValue::Number(n))),
            b't' => self.literal("true", GoValue::Bool(true)).map(Begun::Done),
            b'f' => self.literal("false", GoValue::Bool(false)).map(Begun::Done),
            b'n' => self.literal("null", GoValue::Null).map(Begun::Done),
            c => Err(invalid(c, "looking for beginning of value")),
        }
    }

    /// An object key and its colon; the reader is just past `{` or `,`
    /// and any space.
    fn key(&mut self) -> Result<String, SyntaxError> {
        match self.next_byte()? {
            b'"' => {}
            c => return Err(invalid(c, "looking for beginning of object key string")),
        }
        let key = self.string()?;
        self.skip_space();
        match self.next_byte()? {
            b':' => Ok(key),
            c => Err(invalid(c, "after object key")),
        }
    }

    fn literal(&mut self, word: &'static str, v: GoValue) -> Result<GoValue, SyntaxError> {
        for expected in word.bytes().skip(1) {
            let c = self.next_byte()?;
            if c != expected {
                let context = format!("in literal {word} (expecting {})", quote_char(expected));
                return Err(invalid(c, &context));
            }
        }
        Ok(v)
    }

    /// A number's literal; the first byte (`-` or a digit) is read.
    fn number(&mut self, first: u8) -> Result<String, SyntaxError> {
        let start = self.i - 1;
        let mut c = first;
        if c == b'-' {
            c = self.next_byte()?;
            if !c.is_ascii_digit() {
                return Err(invalid(c, "in numeric literal"));
            }
        }
        if c != b'0' {
            self.digits();
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            let d = self.next_byte()?;
            if !d.is_ascii_digit() {
                return Err(invalid(d, "after decimal point in numeric literal"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            let mut d = self.next_byte()?;
            if d == b'+' || d == b'-' {
                d = self.next_byte()?;
            }
            if !d.is_ascii_digit() {
                return Err(invalid(d, "in exponent of numeric literal"));
            }
            self.digits();
        }
        // Only ASCII was accepted, so the slice is valid UTF-8.
        Ok(String::from_utf8_lossy(self.b.get(start..self.i).unwrap_or_default()).into_owned())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    /// A string's contents; the opening quote is read. Go's unquoting:
    /// bad UTF-8 bytes and unpaired surrogates become U+FFFD.
    fn string(&mut self) -> Result<String, SyntaxError> {
        let mut out = String::new();
        let mut high: Option<u16> = None;
        let mut raw_start = self.i;
        loop {
            let c = self.next_byte()?;
            if c != b'"' && c != b'\\' && c >= 0x20 {
                continue;
            }
            let raw = self.b.get(raw_start..self.i - 1).unwrap_or_default();
            if !raw.is_empty() {
                flush_high(&mut out, &mut high);
                push_lossy_go(&mut out, raw);
            }
            match c {
                b'"' => {
                    flush_high(&mut out, &mut high);
                    return Ok(out);
                }
                b'\\' => self.escape(&mut out, &mut high)?,
                c => return Err(invalid(c, "in string literal")),
            }
            raw_start = self.i;
        }
    }

    fn escape(&mut self, out: &mut String, high: &mut Option<u16>) -> Result<(), SyntaxError> {
        let c = self.next_byte()?;
        let simple = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                unicode_escape(out, high, unit);
                return Ok(());
            }
            c => return Err(invalid(c, "in string escape code")),
        };
        flush_high(out, high);
        out.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u16, SyntaxError> {
        let mut unit = 0u16;
        for _ in 0..4 {
            let c = self.next_byte()?;
            let Some(d) = (c as char).to_digit(16) else {
                return Err(invalid(c, "in \\u hexadecimal character escape"));
            };
            unit = unit * 16 + d as u16;
        }
        Ok(unit)
    }
}

/// One `\uXXXX` unit: a high surrogate waits for its low half; anything
/// unpaired is U+FFFD, as Go's `unquote` writes it.
fn unicode_escape(out: &mut String, high: &mut Option<u16>, unit: u16) {
    match (high.take(), unit) {
        (Some(h), 0xDC00..=0xDFFF) => {
            let c = 0x10000 + ((u32::from(h) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
            out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
        }
        (pending, 0xD800..=0xDBFF) => {
            if pending.is_some() {
                out.push('\u{FFFD}');
            }
            *high = Some(unit);
        }
        (pending, unit) => {
            if pending.is_some() {
                out.push('\u{FFFD}');
            }
            out.push(char::from_u32(u32::from(unit)).unwrap_or('\u{FFFD}'));
        }
    }
}

fn flush_high(out: &mut String, high: &mut Option<u16>) {
    if high.take().is_some() {
        out.push('\u{FFFD}');
    }
}

/// Appends `raw`, replacing each byte of an invalid UTF-8 sequence with
/// U+FFFD (Go's `utf8.DecodeRune` steps one byte past a bad sequence;
/// Rust's lossy conversion would replace a whole truncated sequence once).
pub fn push_lossy_go(out: &mut String, mut raw: &[u8]) {
    loop {
        match std::str::from_utf8(raw) {
            Ok(s) => {
                out.push_str(s);
                return;
            }
            Err(e) => {
                let (good, rest) = raw.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len());
                out.extend(std::iter::repeat_n('\u{FFFD}', bad));
                raw = rest.get(bad..).unwrap_or_default();
            }
        }
    }
}

fn invalid(c: u8, context: &str) -> SyntaxError {
    SyntaxError::Invalid(format!("invalid character {} {context}", quote_char(c)))
}

/// Go's `quoteChar`: the byte as a rune, quoted as `strconv.Quote` would.
pub fn quote_char(c: u8) -> String {
    match c {
        b'\'' => return "'\\''".into(),
        b'"' => return "'\"'".into(),
        _ => {}
    }
    let inner = match c {
        0x07 => "\\a".into(),
        0x08 => "\\b".into(),
        0x0c => "\\f".into(),
        b'\n' => "\\n".into(),
        b'\r' => "\\r".into(),
        b'\t' => "\\t".into(),
        0x0b => "\\v".into(),
        b'\\' => "\\\\".into(),
        c if c < 0x20 || c == 0x7f => format!("\\x{c:02x}"),
        // U+0080..U+00A0 and the soft hyphen are not printable in Go.
        c if (0x80..=0xa0).contains(&c) || c == 0xad => format!("\\u{c:04x}"),
        c => char::from(c).to_string(),
    };
    format!("'{inner}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &[u8]) -> String {
        parse(body).unwrap_err().to_string()
    }

    #[test]
    fn go_syntax_texts() {
        let cases: &[(&[u8], &str)] = &[
            (b"x", "invalid character 'x' looking for beginning of value"),
            (
                b"{\"a\":tru}",
                "invalid character '}' in literal true (expecting 'e')",
            ),
            (b"{\"a\":nul", "unexpected EOF"),
            (
                b"{\"a\":fals3}",
                "invalid character '3' in literal false (expecting 'e')",
            ),
            (
                b"{\"a\":01}",
                "invalid character '1' after object key:value pair",
            ),
            (b"[01]", "invalid character '1' after array element"),
            (
                b"{\"a\":1.}",
                "invalid character '}' after decimal point in numeric literal",
            ),
            (b"{\"a\":-}", "invalid character '}' in numeric literal"),
            (
                b"{\"a\":1e}",
                "invalid character '}' in exponent of numeric literal",
            ),
            (
                b"{\"a\":\"\\x\"}",
                "invalid character 'x' in string escape code",
            ),
            (
                b"{\"a\":\"\\u12g4\"}",
                "invalid character 'g' in \\u hexadecimal character escape",
            ),
            (
                b"{\"a\":\"\n\"}",
                "invalid character '\\n' in string literal",
            ),
            (
                b"\xef\xbb\xbf{}",
                "invalid character '\u{ef}' looking for beginning of value",
            ),
            (
                b"\xff\xfe{\x00}",
                "invalid character '\u{ff}' looking for beginning of value",
            ),
            (
                b"{\x00\"a\":1}",
                "invalid character '\\x00' looking for beginning of object key string",
            ),
            (b"{\"a\" 1}", "invalid character '1' after object key"),
            (
                b"{\"a\":1,}",
                "invalid character '}' looking for beginning of object key string",
            ),
            (
                b"[1,]",
                "invalid character ']' looking for beginning of value",
            ),
            (
                b"{'a':1}",
                "invalid character '\\'' looking for beginning of object key string",
            ),
            (
                b"{\"a\":\x80}",
                "invalid character '\\u0080' looking for beginning of value",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(err(body), *want, "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(parse(b"  \n").unwrap_err(), SyntaxError::Empty);
        assert_eq!(
            parse(b"{\"a\":[1,").unwrap_err(),
            SyntaxError::UnexpectedEof
        );
    }

    #[test]
    fn only_the_first_value_is_read() {
        assert_eq!(parse(b"01").unwrap(), GoValue::Number("0".into()));
        assert_eq!(parse(b"{} x").unwrap(), GoValue::Object(vec![]));
        assert_eq!(parse(b"1e400").unwrap(), GoValue::Number("1e400".into()));
    }

    #[test]
    fn depth_limit_is_ten_thousand() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(nested(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            err(nested(MAX_DEPTH + 1).as_bytes()),
            "invalid character '[' exceeded max depth"
        );
    }

    #[test]
    fn bad_utf8_and_surrogates_become_replacement_characters() {
        let s = |body: &[u8]| match &parse(body).unwrap() {
            GoValue::Str(s) => s.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(s(b"\"a\xffb\""), "a\u{FFFD}b");
        assert_eq!(
            s(b"\"\xe2\x82A\""),
            "\u{FFFD}\u{FFFD}A",
            "one per byte, as Go"
        );
        assert_eq!(s(b"\"\\ud83d\\ude00\""), "\u{1F600}");
        assert_eq!(s(b"\"\\ud83dx\""), "\u{FFFD}x");
        assert_eq!(s(b"\"\\ude00\""), "\u{FFFD}");
        assert_eq!(s(b"\"\\ud83d\\u0041\""), "\u{FFFD}A");
    }
}
