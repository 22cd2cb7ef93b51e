//! Decoding a map one model entry at a time, so that an entry the decoder
//! cannot take (nested past [`DECODER_DEPTH`], or of the wrong shape)
//! costs that model, not the map: the rest of the fleet stays routable.
//!
//! The outer pass keeps each entry as raw text (serde_json skips over a
//! value without recursion, however deep), then each entry is checked and
//! decoded on its own, its nesting counted from the entry. syncd runs the
//! same check ([`undecodable_entries`]) on every map before publishing it.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::limits::{check_depth, DECODER_DEPTH};
use crate::map::{InstanceState, ModelEntry, ModelMap};

/// A decoded map and the entries it left out.
#[derive(Debug)]
pub struct Decoded {
    pub map: ModelMap,
    /// One line per model entry left out: its position, key when readable,
    /// and why.
    pub rejected: Vec<String>,
}

#[derive(Deserialize)]
struct Shell<'a> {
    format: u32,
    #[serde(default)]
    id: String,
    instances: Vec<InstanceState>,
    #[serde(borrow)]
    models: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct KeyOnly {
    key: String,
}

/// Decodes `json`; only a document whose outer shape (format, id,
/// instances, the list of models) is not a map fails as a whole.
pub fn decode_map(json: &[u8]) -> Result<Decoded, serde_json::Error> {
    let shell: Shell<'_> = serde_json::from_slice(json)?;
    let mut models = Vec::with_capacity(shell.models.len());
    let mut rejected = Vec::new();
    for (at, raw) in shell.models.iter().enumerate() {
        match decode_entry(raw) {
            Ok(entry) => models.push(entry),
            Err(why) => rejected.push(format!("model entry {at}{}: {why}", key_of(raw))),
        }
    }
    let mut map = ModelMap::new(shell.instances, models);
    map.format = shell.format;
    map.id = shell.id;
    Ok(Decoded { map, rejected })
}

/// The positions of the model entries of `json` that the decoder would
/// leave out for their nesting (syncd's check before it publishes).
pub fn undecodable_entries(json: &[u8]) -> Result<Vec<usize>, serde_json::Error> {
    let shell: Shell<'_> = serde_json::from_slice(json)?;
    Ok(shell
        .models
        .iter()
        .enumerate()
        .filter(|(_, raw)| check_depth("", raw.get().as_bytes(), DECODER_DEPTH).is_err())
        .map(|(at, _)| at)
        .collect())
}

fn decode_entry(raw: &RawValue) -> Result<ModelEntry, String> {
    check_depth("it", raw.get().as_bytes(), DECODER_DEPTH).map_err(|e| e.to_string())?;
    serde_json::from_str(raw.get()).map_err(|e| e.to_string())
}

/// ` ("key")` when the entry has a readable key, else nothing.
fn key_of(raw: &RawValue) -> String {
    serde_json::from_str::<KeyOnly>(raw.get())
        .map(|k| format!(" ({:?})", crate::limits::shortened(&k.key, 200)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::Replica;
    use serde_json::json;

    fn entry(key: &str, details: serde_json::Value) -> ModelEntry {
        ModelEntry {
            key: key.into(),
            name: key.into(),
            canonical_digest: "d".into(),
            digest_mismatch: false,
            replicas: vec![Replica {
                instance: "a".into(),
                digest: "d".into(),
                size: 1,
                modified_at: String::new(),
                modified_unix: 0,
                details: details.into(),
                loaded: None,
                listed: None,
            }],
        }
    }

    fn deep(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn a_too_deep_entry_costs_that_entry_not_the_map() {
        let good = entry("a", json!({"format": "gguf"}));
        let map = ModelMap::new(vec![], vec![good.clone(), entry("b", json!("DEEP"))]).sealed();
        let text = serde_json::to_string(&map).unwrap();
        let with_details = |levels| {
            text.replacen(
                r#""details":"DEEP""#,
                &format!(r#""details":{}"#, deep(levels)),
                1,
            )
        };
        // Nested 124 deep, b's details would take a one-pass decode into
        // JSON trees past serde_json's limit counted from the root (what
        // froze routing before); entry by entry, b's entry is within it.
        let text = with_details(124);
        assert_eq!(decode_map(text.as_bytes()).unwrap().map.models.len(), 2);
        // Nested 200 deep, b's entry is past it too: b alone is left out.
        let text = with_details(200);
        let decoded = decode_map(text.as_bytes()).unwrap();
        assert_eq!(decoded.map.models, vec![good]);
        assert_eq!(decoded.map.id, map.id);
        assert_eq!(decoded.rejected.len(), 1);
        assert!(
            decoded.rejected[0].starts_with("model entry 1 (\"b\"): it is nested"),
            "{:?}",
            decoded.rejected
        );
        assert_eq!(undecodable_entries(text.as_bytes()).unwrap(), [1]);
    }

    #[test]
    fn a_misshapen_entry_is_left_out_and_a_broken_shell_fails() {
        let text = r#"{"format":1,"id":"x","instances":[],"models":[{"key":"k","name":3}]}"#;
        let decoded = decode_map(text.as_bytes()).unwrap();
        assert!(decoded.map.models.is_empty());
        assert!(
            decoded.rejected[0].contains("(\"k\")"),
            "{:?}",
            decoded.rejected
        );
        assert!(decode_map(b"{").is_err());
        assert!(decode_map(br#"{"format":1,"instances":[],"models":3}"#).is_err());
    }
}
