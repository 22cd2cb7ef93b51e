//! Models "on disk", the emulated registry that `/api/pull` fetches from,
//! and uploaded blobs.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use model_map::name::ModelName;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{normalize_digest, ModelSpec};

/// One model on disk.
#[derive(Debug, Clone)]
pub struct Model {
    /// The name as first written, for display.
    pub name: ModelName,
    /// The routing key (lowercase, fully qualified).
    pub key: String,
    /// Manifest digest, lowercase hex without `sha256:`.
    pub digest: String,
    pub size: u64,
    pub family: String,
    pub parameter_size: String,
    pub quantization_level: String,
    pub embedding: bool,
    pub modified_at: DateTime<Utc>,
}

/// The digest every emulator gives a name nobody configured: the hex
/// sha256 of its routing key.
pub fn default_digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A size in bytes for a parameter count like `"3.2B"` or `"137M"` at
/// roughly 4.5 bits per weight (Q4_K_M), plus a digest-derived jitter so
/// models differ.
fn derived_size(parameter_size: &str, digest: &str) -> u64 {
    let (num, scale) = match parameter_size.chars().last() {
        Some('B') | Some('b') => (&parameter_size[..parameter_size.len() - 1], 1e9),
        Some('M') | Some('m') => (&parameter_size[..parameter_size.len() - 1], 1e6),
        _ => (parameter_size, 1.0),
    };
    let params = num.parse::<f64>().unwrap_or(3.2) * scale;
    let jitter = u64::from_str_radix(digest.get(..6).unwrap_or("0"), 16).unwrap_or(0);
    (params * 0.5625) as u64 + jitter
}

impl Model {
    /// Builds a model from a spec whose name and digest were validated.
    pub fn from_spec(spec: &ModelSpec, now: DateTime<Utc>) -> Option<Model> {
        let name = ModelName::parse(&spec.name).ok()?;
        let key = name.key();
        let digest = match &spec.digest {
            Some(d) => normalize_digest(d)?,
            None => default_digest(&key),
        };
        let parameter_size = spec.parameter_size.clone().unwrap_or_else(|| "3.2B".into());
        Some(Model {
            size: spec
                .size
                .unwrap_or_else(|| derived_size(&parameter_size, &digest)),
            family: spec
                .family
                .clone()
                .unwrap_or_else(|| if spec.embedding { "bert" } else { "llama" }.into()),
            quantization_level: spec
                .quantization_level
                .clone()
                .unwrap_or_else(|| "Q4_K_M".into()),
            parameter_size,
            embedding: spec.embedding,
            modified_at: spec.modified_at.unwrap_or(now),
            name,
            key,
            digest,
        })
    }

    /// `DisplayShortest`, used as `name` and `model` in tags and ps.
    pub fn display(&self) -> String {
        self.name.display_shortest()
    }

    /// The `details` object of tags, ps and show.
    pub fn details(&self) -> Value {
        json!({
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        })
    }

    /// Ollama's `capabilities` list.
    pub fn capabilities(&self) -> Vec<&'static str> {
        if self.embedding {
            vec!["embedding"]
        } else {
            vec!["completion"]
        }
    }

    /// The single weights layer's digest (hex), distinct from the manifest.
    pub fn layer_digest(&self) -> String {
        hex::encode(Sha256::digest(format!("layer:{}", self.digest).as_bytes()))
    }
}

/// Models on disk, the registry and blobs. Keys are routing keys.
#[derive(Debug, Default)]
pub struct ModelStore {
    models: HashMap<String, Model>,
    /// Registry overrides: `Some(digest)` or `None` for "not in the registry".
    registry: HashMap<String, Option<String>>,
    blobs: HashSet<String>,
}

impl ModelStore {
    pub fn get(&self, key: &str) -> Option<&Model> {
        self.models.get(key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Model> {
        self.models.get_mut(key)
    }

    /// Adds or replaces a model.
    pub fn insert(&mut self, model: Model) {
        self.models.insert(model.key.clone(), model);
    }

    pub fn remove(&mut self, key: &str) -> Option<Model> {
        self.models.remove(key)
    }

    pub fn clear(&mut self) {
        self.models.clear();
    }

    /// All models, newest `modified_at` first (as `/api/tags` lists them).
    pub fn newest_first(&self) -> Vec<&Model> {
        let mut all: Vec<&Model> = self.models.values().collect();
        all.sort_by(|a, b| b.modified_at.cmp(&a.modified_at).then(a.key.cmp(&b.key)));
        all
    }

    /// What a pull of `key` would fetch: `None` if the registry lacks it.
    pub fn registry_digest(&self, key: &str) -> Option<String> {
        match self.registry.get(key) {
            Some(entry) => entry.clone(),
            None => Some(default_digest(key)),
        }
    }

    pub fn set_registry(&mut self, key: String, digest: Option<String>) {
        self.registry.insert(key, digest);
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blobs.contains(digest)
    }

    /// Records a blob; true if it was new.
    pub fn add_blob(&mut self, digest: String) -> bool {
        self.blobs.insert(digest)
    }
}
