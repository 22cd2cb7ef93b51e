//! Incremental decoding of a JSON string's contents the way Go's
//! `encoding/json` unquotes it: escapes, surrogate pairs (a lone or
//! mismatched surrogate becomes U+FFFD) and invalid UTF-8 (each bad byte
//! becomes U+FFFD, as `utf8.DecodeRune` consumes one byte on error).

/// Receives decoded characters.
pub trait CharSink {
    fn push(&mut self, c: char);
}

impl CharSink for String {
    fn push(&mut self, c: char) {
        String::push(self, c);
    }
}

/// Decoder state between bytes; the escape syntax itself is checked by the
/// scanner, which calls the matching method.
#[derive(Debug, Default, Clone)]
pub struct GoStringDecoder {
    utf8: [u8; 4],
    utf8_len: usize,
    surrogate: Option<u32>,
}

const REPLACEMENT: char = '\u{fffd}';

impl GoStringDecoder {
    /// Whether no partial UTF-8 sequence or surrogate is pending, so an
    /// ASCII byte stands for itself.
    pub fn is_idle(&self) -> bool {
        self.utf8_len == 0 && self.surrogate.is_none()
    }

    /// A raw (unescaped) byte of the string.
    pub fn byte(&mut self, b: u8, out: &mut dyn CharSink) {
        self.flush_surrogate(out);
        if self.utf8_len == 0 && b < 0x80 {
            out.push(b as char);
            return;
        }
        // At most three bytes of an unfinished sequence are ever pending.
        let Some(slot) = self.utf8.get_mut(self.utf8_len) else {
            self.flush_utf8(out);
            return self.byte(b, out);
        };
        *slot = b;
        self.utf8_len += 1;
        self.drain_utf8(out);
    }

    /// A simple escape (`\n`, `\"`, ...) already translated to its char.
    pub fn escaped(&mut self, c: char, out: &mut dyn CharSink) {
        self.flush_utf8(out);
        self.flush_surrogate(out);
        out.push(c);
    }

    /// A `\uXXXX` escape.
    pub fn unicode_escape(&mut self, u: u32, out: &mut dyn CharSink) {
        self.flush_utf8(out);
        if let Some(high) = self.surrogate.take() {
            if (0xd800..0xdc00).contains(&high) && (0xdc00..0xe000).contains(&u) {
                let c = 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00);
                out.push(char::from_u32(c).unwrap_or(REPLACEMENT));
                return;
            }
            out.push(REPLACEMENT);
        }
        if (0xd800..0xe000).contains(&u) {
            self.surrogate = Some(u);
        } else {
            out.push(char::from_u32(u).unwrap_or(REPLACEMENT));
        }
    }

    /// The closing quote.
    pub fn finish(&mut self, out: &mut dyn CharSink) {
        self.flush_utf8(out);
        self.flush_surrogate(out);
    }

    fn flush_surrogate(&mut self, out: &mut dyn CharSink) {
        if self.surrogate.take().is_some() {
            out.push(REPLACEMENT);
        }
    }

    /// Every pending byte of an unfinished sequence is invalid on its own.
    fn flush_utf8(&mut self, out: &mut dyn CharSink) {
        for _ in 0..self.utf8_len {
            out.push(REPLACEMENT);
        }
        self.utf8_len = 0;
    }

    fn drain_utf8(&mut self, out: &mut dyn CharSink) {
        while self.utf8_len > 0 {
            match std::str::from_utf8(self.pending()) {
                Ok(s) => {
                    s.chars().for_each(|c| out.push(c));
                    self.utf8_len = 0;
                }
                Err(e) if e.valid_up_to() > 0 => {
                    let n = e.valid_up_to();
                    if let Ok(s) = std::str::from_utf8(self.pending().get(..n).unwrap_or_default())
                    {
                        s.chars().for_each(|c| out.push(c));
                    }
                    self.shift(n);
                }
                Err(e) if e.error_len().is_none() => return,
                Err(_) => {
                    out.push(REPLACEMENT);
                    self.shift(1);
                }
            }
        }
    }

    fn pending(&self) -> &[u8] {
        self.utf8.get(..self.utf8_len).unwrap_or_default()
    }

    fn shift(&mut self, n: usize) {
        self.utf8.copy_within(n..self.utf8_len, 0);
        self.utf8_len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(bytes: &[u8]) -> String {
        let mut d = GoStringDecoder::default();
        let mut s = String::new();
        bytes.iter().for_each(|&b| d.byte(b, &mut s));
        d.finish(&mut s);
        s
    }

    #[test]
    fn utf8_valid_and_invalid() {
        assert_eq!(raw("héllo😀".as_bytes()), "héllo😀");
        assert_eq!(raw(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(raw(b"\xe2\x82A"), "\u{fffd}\u{fffd}A");
        assert_eq!(
            raw(b"\xed\xa0\x80"),
            "\u{fffd}\u{fffd}\u{fffd}",
            "UTF-8 surrogate"
        );
        assert_eq!(raw(b"x\xe2"), "x\u{fffd}", "truncated at the quote");
    }

    #[test]
    fn surrogates() {
        let mut d = GoStringDecoder::default();
        let mut s = String::new();
        d.unicode_escape(0xd83d, &mut s);
        d.unicode_escape(0xde00, &mut s);
        d.unicode_escape(0xd83d, &mut s);
        d.unicode_escape(0x41, &mut s);
        d.unicode_escape(0xde00, &mut s);
        d.byte(b'x', &mut s);
        d.unicode_escape(0xdbff, &mut s);
        d.finish(&mut s);
        assert_eq!(s, "😀\u{fffd}A\u{fffd}x\u{fffd}");
    }
}
