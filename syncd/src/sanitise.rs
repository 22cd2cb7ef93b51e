//! What an instance's `/api/tags` and `/api/ps` answers may put into the
//! map, checked before anything is built from them, with the limits of
//! [`model_map::limits`].
//!
//! The list is first read with each entry kept as raw text and at most
//! [`MAX_MODELS_PER_INSTANCE`] of them kept at all (the rest are only
//! counted), so a 4 MiB answer of 100,000 tiny entries costs its bytes,
//! not a hundred thousand decoded values. Then:
//! - an entry over [`MAX_VERBATIM_BYTES`] or nested past
//!   [`MAX_VERBATIM_DEPTH`] is refused alone (the instance's other models
//!   stay routable; its `last_error` names the entry);
//! - more entries than [`MAX_MODELS_PER_INSTANCE`], or entries adding up to
//!   more than [`MAX_INSTANCE_BYTES`], fail the poll: the instance is
//!   treated as a failing one.

use std::fmt;

use model_map::limits::{check_verbatim, shortened, MAX_INSTANCE_BYTES, MAX_MODELS_PER_INSTANCE};
#[cfg(doc)]
use model_map::limits::{MAX_VERBATIM_BYTES, MAX_VERBATIM_DEPTH};
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::ollama::PollError;

/// An answer's `models`, entries as raw text, at most
/// [`MAX_MODELS_PER_INSTANCE`] kept.
#[derive(Debug, Default)]
pub struct RawList {
    entries: Vec<Box<RawValue>>,
    /// How many entries the answer had, kept or not.
    listed: usize,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    models: Option<RawList>,
}

impl<'de> Deserialize<'de> for RawList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(RawListVisitor)
    }
}

struct RawListVisitor;

impl<'de> Visitor<'de> for RawListVisitor {
    type Value = RawList;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of models")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawList, A::Error> {
        let mut list = RawList::default();
        loop {
            if list.entries.len() < MAX_MODELS_PER_INSTANCE {
                match seq.next_element::<Box<RawValue>>()? {
                    Some(raw) => list.entries.push(raw),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            list.listed += 1;
        }
        Ok(list)
    }
}

/// The entries of one answer that passed, and what was refused.
#[derive(Debug, Default)]
pub struct Checked {
    /// Each entry that passed, decoded.
    pub entries: Vec<serde_json::Value>,
    /// One line per entry refused alone.
    pub refused: Vec<String>,
    /// Bytes of the entries that passed.
    pub bytes: usize,
}

/// Reads an answer of `path` (`/api/tags`, `/api/ps`) and checks it.
pub fn check_answer(path: &'static str, body: &[u8]) -> Result<Checked, PollError> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| PollError::InvalidJson {
        path,
        message: e.to_string(),
    })?;
    let list = answer.models.unwrap_or_default();
    if list.listed > MAX_MODELS_PER_INSTANCE {
        return Err(PollError::OverLimit {
            path,
            message: format!(
                "lists {} models, over the limit of {MAX_MODELS_PER_INSTANCE} per instance",
                list.listed
            ),
        });
    }
    let mut checked = Checked::default();
    for (at, raw) in list.entries.iter().enumerate() {
        let text = raw.get();
        let what = format!("{path} entry {at}{}", name_of(text));
        if let Err(e) = check_verbatim(&what, text.as_bytes()) {
            checked.refused.push(e.to_string());
            continue;
        }
        checked.bytes += text.len();
        let value = serde_json::from_str(text).map_err(|e| PollError::InvalidJson {
            path,
            message: e.to_string(),
        })?;
        checked.entries.push(value);
    }
    check_instance_bytes(path, checked.bytes)?;
    Ok(checked)
}

/// Fails when an instance's entries add up to more than
/// [`MAX_INSTANCE_BYTES`].
pub fn check_instance_bytes(path: &'static str, bytes: usize) -> Result<(), PollError> {
    if bytes > MAX_INSTANCE_BYTES {
        return Err(PollError::OverLimit {
            path,
            message: format!(
                "its models take {bytes} bytes, over the limit of {MAX_INSTANCE_BYTES} per instance"
            ),
        });
    }
    Ok(())
}

/// ` ("name")` of an entry, shortened, when it has one (the rest of the
/// entry is skipped over, not decoded).
fn name_of(text: &str) -> String {
    #[derive(Deserialize)]
    struct Named {
        #[serde(default)]
        name: String,
    }
    let named = serde_json::from_str::<Named>(text).map(|n| n.name);
    match named {
        Ok(name) if !name.is_empty() => format!(" ({:?})", shortened(&name, 100)),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model_map::limits::{MAX_VERBATIM_BYTES, MAX_VERBATIM_DEPTH};
    use serde_json::json;

    fn deep(levels: usize) -> serde_json::Value {
        (0..levels).fold(json!(1), |inner, _| json!([inner]))
    }

    fn answer(entries: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({ "models": entries })).unwrap()
    }

    #[test]
    fn an_entry_over_a_limit_is_refused_alone() {
        let body = answer(vec![
            json!({"name": "good:latest", "details": {"format": "gguf"}}),
            json!({"name": "deep:latest", "details": deep(123)}),
            json!({"name": "big:latest", "details": {"x": "a".repeat(MAX_VERBATIM_BYTES)}}),
            json!({"name": "edge:latest", "details": deep(MAX_VERBATIM_DEPTH - 2)}),
        ]);
        let checked = check_answer("/api/tags", &body).unwrap();
        let names: Vec<_> = checked.entries.iter().map(|e| e["name"].clone()).collect();
        assert_eq!(names, [json!("good:latest"), json!("edge:latest")]);
        assert_eq!(checked.refused.len(), 2);
        assert_eq!(
            checked.refused[0],
            "/api/tags entry 1 (\"deep:latest\") is nested 124 deep, over the limit of 32"
        );
        assert!(
            checked.refused[1].contains("(\"big:latest\") is 16"),
            "{:?}",
            checked.refused
        );
    }

    #[test]
    fn too_many_entries_fail_the_poll_and_are_not_all_decoded() {
        let entries = (0..100_000)
            .map(|i| json!({"name": format!("m{i}")}))
            .collect();
        let err = check_answer("/api/tags", &answer(entries)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "GET /api/tags: lists 100000 models, over the limit of 2048 per instance"
        );
        let at_cap = (0..MAX_MODELS_PER_INSTANCE).map(|i| json!({"name": format!("m{i}")}));
        assert!(check_answer("/api/ps", &answer(at_cap.collect())).is_ok());
    }

    #[test]
    fn entries_adding_up_past_the_instance_budget_fail_the_poll() {
        let fat = json!({"name": "m", "details": {"x": "a".repeat(MAX_VERBATIM_BYTES - 100)}});
        let entries = vec![fat; MAX_INSTANCE_BYTES / MAX_VERBATIM_BYTES + 2];
        let err = check_answer("/api/tags", &answer(entries)).unwrap_err();
        assert!(err.to_string().contains("per instance"), "{err}");
    }

    #[test]
    fn null_missing_and_garbage() {
        assert!(check_answer("/api/tags", br#"{"models":null}"#)
            .unwrap()
            .entries
            .is_empty());
        assert!(check_answer("/api/tags", br#"{}"#)
            .unwrap()
            .entries
            .is_empty());
        let err = check_answer("/api/tags", b"<html>").unwrap_err();
        assert!(
            err.to_string().starts_with("GET /api/tags: invalid JSON"),
            "{err}"
        );
        assert!(check_answer("/api/tags", br#"{"models":3}"#).is_err());
    }
}
