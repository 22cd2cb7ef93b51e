//! The limits on what one instance may put into the map, defined once for
//! syncd (which refuses what is over them before it builds a map) and the
//! filter (which decodes each model entry of a map on its own, so one bad
//! entry costs that entry, not the map).
//!
//! Real Ollama answers are far inside them: an `/api/tags` entry is about
//! 400 bytes nested 3 deep, a busy instance holds a few hundred models.
//! Together they bound what one instance costs syncd and every Envoy,
//! whatever it answers (see syncd's README, "Memory").

use thiserror::Error;

/// Nesting of any value kept verbatim from an instance (a whole
/// `/api/tags` or `/api/ps` entry, with its `details`), counted from that
/// value. A model entry of the map adds at most 4 levels above it (entry,
/// replicas, replica, loaded), far under [`DECODER_DEPTH`].
pub const MAX_VERBATIM_DEPTH: usize = 32;

/// Bytes of one `/api/tags` or `/api/ps` entry as the instance sent it.
pub const MAX_VERBATIM_BYTES: usize = 16 * 1024;

/// Models (`/api/tags` entries) one instance may list; `/api/ps` has the
/// same cap. Over it, the poll fails.
pub const MAX_MODELS_PER_INSTANCE: usize = 2048;

/// Bytes of all the entries one instance's `/api/tags` and `/api/ps`
/// answers contribute to the map. Over it, the poll fails.
pub const MAX_INSTANCE_BYTES: usize = 2 * 1024 * 1024;

/// Bytes of verbatim entries in the whole map, over every instance. A poll
/// that would take the fleet over it fails for that instance.
pub const MAX_MAP_VERBATIM_BYTES: usize = 64 * 1024 * 1024;

/// The nesting serde_json decodes before it gives up (its fixed recursion
/// limit): the filter decodes each model entry with it, counted from the
/// entry. syncd checks every entry it publishes against it.
pub const DECODER_DEPTH: usize = 128;

/// What is over a limit, in words for an instance's `last_error`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitError {
    #[error("{what} is nested {depth} deep, over the limit of {limit}")]
    TooDeep {
        what: String,
        depth: usize,
        limit: usize,
    },
    #[error("{what} is {bytes} bytes, over the limit of {limit}")]
    TooLarge {
        what: String,
        bytes: usize,
        limit: usize,
    },
}

/// How deep `json` nests (`0` for a scalar, `1` for `{}` or `[]`), found
/// by one pass over the bytes, without recursion or allocation; brackets
/// inside strings do not count. Malformed text gets a number too: the
/// decoder, not this, rejects it.
pub fn json_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Checks one verbatim entry (`what` names it in the error) against
/// [`MAX_VERBATIM_BYTES`] and [`MAX_VERBATIM_DEPTH`].
pub fn check_verbatim(what: &str, json: &[u8]) -> Result<(), LimitError> {
    if json.len() > MAX_VERBATIM_BYTES {
        return Err(LimitError::TooLarge {
            what: what.to_string(),
            bytes: json.len(),
            limit: MAX_VERBATIM_BYTES,
        });
    }
    check_depth(what, json, MAX_VERBATIM_DEPTH)
}

/// Checks `json` nests at most `limit` deep.
pub fn check_depth(what: &str, json: &[u8], limit: usize) -> Result<(), LimitError> {
    let depth = json_depth(json);
    if depth > limit {
        return Err(LimitError::TooDeep {
            what: what.to_string(),
            depth,
            limit,
        });
    }
    Ok(())
}

/// The first `max` characters of `text`, marked when cut: for names an
/// instance sent that go into logs and errors.
pub fn shortened(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or_default()),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(json_depth(b"1"), 0);
        assert_eq!(json_depth(b"{}"), 1);
        assert_eq!(json_depth(br#"{"a":[{"b":"[[[[\"{"}]}"#), 3);
        assert_eq!(json_depth(nested(124).as_bytes()), 124);
        assert_eq!(json_depth(b"]]]]["), 1, "malformed text still ends");
    }

    #[test]
    fn verbatim_limits_name_what_is_over() {
        assert!(check_verbatim("x", nested(MAX_VERBATIM_DEPTH).as_bytes()).is_ok());
        let deep = check_verbatim("/api/tags entry \"m\"", nested(33).as_bytes()).unwrap_err();
        assert_eq!(
            deep.to_string(),
            "/api/tags entry \"m\" is nested 33 deep, over the limit of 32"
        );
        let big = format!("\"{}\"", "a".repeat(MAX_VERBATIM_BYTES));
        let err = check_verbatim("e", big.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("over the limit of 16384"), "{err}");
    }

    #[test]
    fn shortened_cuts_on_characters() {
        assert_eq!(shortened("abc", 5), "abc");
        assert_eq!(shortened("ééééé", 2), "éé…");
    }
}
