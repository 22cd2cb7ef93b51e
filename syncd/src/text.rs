//! Small text helpers shared by the commands and the clients: the one
//! column table every command prints, the short digest they show, Ollama's
//! `{"error": …}` text, and the NDJSON line splitter for streamed answers.

use std::fmt::Write;

/// The first 12 hex digits of a digest, as `ollama list` shows it.
pub fn short_digest(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// One table row from string cells.
pub fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Left-aligned columns two spaces apart; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            let width = widths.get(c).copied().unwrap_or(0);
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The text of an Ollama-style `{"error": "…"}` body, if it is one.
pub fn error_message(body: impl AsRef<[u8]>) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body.as_ref()).ok()?;
    value.get("error")?.as_str().map(str::to_string)
}

/// Splits a streamed body into its newline-terminated lines (NDJSON), as
/// the chunks arrive; blank lines are skipped.
#[derive(Debug, Default)]
pub struct NdjsonLines {
    buf: Vec<u8>,
}

impl NdjsonLines {
    /// Appends a chunk of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete, non-blank line (with its newline), if any.
    pub fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            let end = self.buf.iter().position(|b| *b == b'\n')?;
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some(line);
            }
        }
    }

    /// Bytes of the line not finished yet (to cap a line's length).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_all_but_the_last_column() {
        let rows = vec![row(&["A", "BB", "C"]), row(&["long", "x", "last one"])];
        assert_eq!(table(&rows), "A     BB  C\nlong  x   last one\n");
    }

    #[test]
    fn digests_errors_and_lines() {
        assert_eq!(short_digest(&"a".repeat(64)), "aaaaaaaaaaaa");
        assert_eq!(short_digest("abc"), "abc");
        assert_eq!(
            error_message(r#"{"error":"model not found"}"#).as_deref(),
            Some("model not found")
        );
        assert_eq!(error_message("not json"), None);
        assert_eq!(error_message(r#"{"error":1}"#), None);
        let mut lines = NdjsonLines::default();
        lines.push(b"{\"a\":1}\n\n{\"b\"");
        assert_eq!(lines.next_line().as_deref(), Some(&b"{\"a\":1}\n"[..]));
        assert_eq!(lines.next_line(), None);
        assert_eq!(lines.pending(), 4);
        lines.push(b":2}\n");
        assert_eq!(lines.next_line().as_deref(), Some(&b"{\"b\":2}\n"[..]));
    }
}
