//! Go's `base64.StdEncoding.Decode` as a check on a stream of characters:
//! `encoding/json` decodes a JSON string into a `[]byte` (`api.ImageData`)
//! with it, and its first error (`illegal base64 data at input byte N`)
//! becomes the request's 400. Follows `decodeQuantum`: `\r` and `\n` are
//! skipped anywhere, `=` pads a quantum of two or three characters, only
//! line breaks may follow the padding; the offset is in bytes.

use crate::go_string::CharSink;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Data,
    /// One `=` after two characters: a second must follow.
    SecondPad,
    /// Padding done: only line breaks may follow.
    Trailing,
    /// Failed at this byte offset.
    Failed(usize),
}

/// The check over one string.
#[derive(Debug, Clone, Default)]
pub struct Base64Check {
    /// Bytes seen.
    len: usize,
    /// Characters of the quantum being read (0 to 3).
    quantum: usize,
    phase: Phase,
}

pub fn is_alphabet(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

impl Base64Check {
    fn byte(&mut self, b: u8) {
        let at = self.len;
        self.len += 1;
        let line_break = b == b'\n' || b == b'\r';
        self.phase = match self.phase {
            Phase::Failed(_) => return,
            _ if line_break => return,
            Phase::Data if is_alphabet(b) => {
                self.quantum = (self.quantum + 1) % 4;
                Phase::Data
            }
            Phase::Data if b == b'=' => match self.quantum {
                2 => Phase::SecondPad,
                3 => Phase::Trailing,
                _ => Phase::Failed(at),
            },
            Phase::Data => Phase::Failed(at),
            Phase::SecondPad if b == b'=' => Phase::Trailing,
            Phase::SecondPad => Phase::Failed(at.saturating_sub(1)),
            Phase::Trailing => Phase::Failed(at),
        };
    }

    /// `n` bytes of the alphabet in a row, at once (the scan's fast path
    /// through an image): the same as `n` calls of `byte` with them.
    pub fn alphabet_run(&mut self, n: usize) {
        if self.phase != Phase::Data {
            for _ in 0..n {
                self.byte(b'A');
            }
            return;
        }
        self.len += n;
        self.quantum = (self.quantum + n) % 4;
    }

    /// The offset Go's error names, once the string has ended; `None` when
    /// it decodes.
    pub fn error_offset(&self) -> Option<usize> {
        match self.phase {
            Phase::Failed(at) => Some(at),
            Phase::Data if self.quantum != 0 => Some(self.len - self.quantum),
            Phase::SecondPad => Some(self.len),
            _ => None,
        }
    }
}

impl CharSink for Base64Check {
    fn push(&mut self, c: char) {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            self.byte(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(s: &str) -> Option<usize> {
        let mut c = Base64Check::default();
        s.chars().for_each(|ch| c.push(ch));
        c.error_offset()
    }

    #[test]
    fn go_offsets() {
        for ok in [
            "",
            "aGVsbG8=",
            "aGVsbA==",
            "aGVs",
            "aGVs\r\nbG8=\n",
            "aG\nVsbA=\n=",
        ] {
            assert_eq!(offset(ok), None, "{ok:?}");
        }
        for (bad, at) in [
            ("aGVsbG8", 4),
            ("a", 0),
            ("!!", 0),
            ("aGVs!", 4),
            ("aG=", 3),
            ("aG=x", 2),
            ("a=", 1),
            ("aGV=x", 4),
            ("aGVsbG8=aa", 8),
            ("caf\u{e9}", 3),
        ] {
            assert_eq!(offset(bad), Some(at), "{bad:?}");
        }
    }
}
