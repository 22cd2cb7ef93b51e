//! The model map: which instance holds which model, at which digest, where it
//! is loaded, and which instances are healthy.
//!
//! syncd builds it and serves it as JSON; the filter decodes the same JSON
//! with the same types. The identifier is a hash of everything else in the
//! map, so it changes exactly when the content does, and two daemons that
//! see the same fleet publish the same identifier.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::OnceLock;

use crate::RawJson;

/// Version of the JSON format, bumped on incompatible changes.
pub const MAP_FORMAT: u32 = 1;

/// The whole fleet as the filter sees it. Build one with [`ModelMap::new`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ModelMap {
    /// Format version ([`MAP_FORMAT`]).
    pub format: u32,
    /// Content identifier ([`ModelMap::content_id`]); empty until sealed.
    #[serde(default)]
    pub id: String,
    /// Every configured instance, in configuration order.
    pub instances: Vec<InstanceState>,
    /// Every model held by at least one instance, sorted by `key`.
    pub models: Vec<ModelEntry>,
    /// Position of each instance by name, built on the first lookup: the
    /// filter looks up every holder of a model on every request, and a
    /// fleet may have a thousand instances.
    #[serde(skip)]
    instance_index: OnceLock<HashMap<String, usize>>,
}

impl PartialEq for ModelMap {
    /// Equal content; the lookup index is not content.
    fn eq(&self, other: &Self) -> bool {
        self.format == other.format
            && self.id == other.id
            && self.instances == other.instances
            && self.models == other.models
    }
}

/// One Ollama instance and how it is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    /// Unique name, valid as an Envoy cluster name.
    pub name: String,
    /// Base URL, e.g. `http://10.0.0.5:11434`.
    pub url: String,
    /// The Envoy cluster that reaches this instance.
    pub cluster: String,
    /// `host:port` of the URL, for routing by host name where there are no
    /// per-instance clusters.
    pub authority: String,
    /// `IP:port` as Envoy's fleet cluster knows this instance (syncd
    /// resolves the URL's host on every poll): the filter lists these in
    /// the override-host header. Empty while the host does not resolve.
    #[serde(default)]
    pub address: String,
    /// Whether the health thresholds currently count it as up.
    pub healthy: bool,
    /// Ollama version from `/api/version`, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One model (one routing key) across the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Routing key: lowercase `host/namespace/model:tag`.
    pub key: String,
    /// Display name as Ollama lists it (`llama3:latest`).
    pub name: String,
    /// The digest requests are routed to: the majority among holders, ties
    /// to the newest `modified_at`.
    pub canonical_digest: String,
    /// True when holders disagree on the digest.
    pub digest_mismatch: bool,
    /// One entry per instance holding the model, in instance order.
    pub replicas: Vec<Replica>,
}

/// A model as one instance holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    /// Instance name.
    pub instance: String,
    /// Manifest digest, hex without `sha256:`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// `modified_at` exactly as the instance reported it.
    pub modified_at: String,
    /// `modified_at` as Unix seconds, for sorting and `/v1/models`.
    pub modified_unix: i64,
    /// `details` exactly as the instance reported it, for a map without
    /// `listed` (an older syncd's); null, and left out of the JSON, when
    /// `listed` carries it.
    #[serde(default, skip_serializing_if = "RawJson::is_null")]
    pub details: RawJson,
    /// Present when `/api/ps` lists the model on this instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded: Option<Loaded>,
    /// The instance's `/api/tags` entry exactly as it sent it (every field,
    /// known or not, in its order): merged `/api/tags` answers with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<RawJson>,
}

/// Loaded state from `/api/ps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loaded {
    pub size: u64,
    pub size_vram: u64,
    /// `expires_at` exactly as reported.
    pub expires_at: String,
    /// `expires_at` as Unix seconds, for sorting merged `/api/ps`.
    pub expires_unix: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
    /// The instance's `/api/ps` entry exactly as it sent it, `expires_at`
    /// to the nanosecond; that field is volatile and is left out of the
    /// map id ([`ModelMap::content_id`]), the minute above stays in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<RawJson>,
}

impl ModelMap {
    /// A map of the current format, not yet sealed.
    pub fn new(instances: Vec<InstanceState>, models: Vec<ModelEntry>) -> Self {
        ModelMap {
            format: MAP_FORMAT,
            id: String::new(),
            instances,
            models,
            instance_index: OnceLock::new(),
        }
    }

    /// The identifier of this content: the first 16 hex digits of the
    /// SHA-256 of the map serialised with an empty `id` and the exact
    /// `expires_at` of `/api/ps` entries blanked (`null`: it moves on
    /// every finished request; the minute in [`Loaded::expires_at`] counts
    /// instead).
    pub fn content_id(&self) -> String {
        self.clone().hash_own_content()
    }

    /// Sets `id` from the content and returns the map. Unlike
    /// [`ModelMap::content_id`] it hashes the map in place, without a
    /// copy: at 1,000 instances the map's JSON values are tens of MiB.
    pub fn sealed(mut self) -> Self {
        self.id = self.hash_own_content();
        self
    }

    /// [`ModelMap::content_id`] of this map, computed by blanking the id
    /// and the exact expiries for the hash and putting them back after.
    fn hash_own_content(&mut self) -> String {
        let id = std::mem::take(&mut self.id);
        let mut exact = Vec::new();
        for entry in self.ps_entries() {
            let blanked = without_exact_expiry(entry);
            exact.push(std::mem::replace(entry, blanked));
        }
        // Serialising plain structs of strings, numbers and JSON values
        // cannot fail; an empty hash input would still give a stable id.
        let bytes = serde_json::to_vec(&*self).unwrap_or_default();
        for (slot, value) in self.ps_entries().zip(exact) {
            *slot = value;
        }
        self.id = id;
        let digest = Sha256::digest(&bytes);
        hex::encode(digest.get(..8).unwrap_or_default())
    }

    /// Every kept `/api/ps` entry, in map order.
    fn ps_entries(&mut self) -> impl Iterator<Item = &mut RawJson> {
        self.models
            .iter_mut()
            .flat_map(|m| m.replicas.iter_mut())
            .filter_map(|r| r.loaded.as_mut()?.entry.as_mut())
    }

    /// The entry for a routing key (see [`crate::name::routing_key`]).
    pub fn model(&self, key: &str) -> Option<&ModelEntry> {
        self.models
            .binary_search_by(|m| m.key.as_str().cmp(key))
            .ok()
            .and_then(|i| self.models.get(i))
    }

    /// The instance of this name. The index is checked on every use, so
    /// a map whose instances were changed after a lookup is still answered
    /// right (by a scan).
    pub fn instance(&self, name: &str) -> Option<&InstanceState> {
        let index = self.instance_index.get_or_init(|| {
            let mut index = HashMap::with_capacity(self.instances.len());
            for (i, instance) in self.instances.iter().enumerate() {
                index.entry(instance.name.clone()).or_insert(i);
            }
            index
        });
        index
            .get(name)
            .and_then(|&i| self.instances.get(i))
            .filter(|i| i.name == name)
            .or_else(|| self.instances.iter().find(|i| i.name == name))
    }
}

impl ModelEntry {
    /// Replicas at the canonical digest: the ones requests may go to.
    pub fn canonical_replicas(&self) -> impl Iterator<Item = &Replica> {
        self.replicas
            .iter()
            .filter(|r| r.digest == self.canonical_digest)
    }
}

/// Picks the canonical digest among `(digest, modified_unix)` pairs: the
/// digest most replicas hold; on a tie, the one with the newest
/// `modified_unix`; on a further tie, the smallest digest (so the choice
/// never depends on instance order).
pub fn canonical_digest<'a>(replicas: impl IntoIterator<Item = (&'a str, i64)>) -> Option<String> {
    let mut tally: Vec<(&str, usize, i64)> = Vec::new();
    for (digest, modified) in replicas {
        match tally.iter_mut().find(|(d, _, _)| *d == digest) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 = entry.2.max(modified);
            }
            None => tally.push((digest, 1, modified)),
        }
    }
    tally
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(a.2.cmp(&b.2)).then(b.0.cmp(a.0)))
        .map(|(d, _, _)| d.to_string())
}

/// An `/api/ps` entry with its exact `expires_at` blanked (`null`), as
/// the map id hashes it.
fn without_exact_expiry(entry: &RawJson) -> RawJson {
    let mut value = entry.to_value();
    if let Some(expiry) = value.get_mut("expires_at") {
        *expiry = serde_json::Value::Null;
    }
    RawJson::from(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(instance: &str, digest: &str) -> Replica {
        Replica {
            instance: instance.into(),
            digest: digest.into(),
            size: 1,
            modified_at: "2025-01-01T00:00:00Z".into(),
            modified_unix: 1_735_689_600,
            details: serde_json::json!({"format": "gguf"}).into(),
            loaded: None,
            listed: None,
        }
    }

    fn sample() -> ModelMap {
        ModelMap::new(
            vec![InstanceState {
                name: "a".into(),
                url: "http://127.0.0.1:1".into(),
                cluster: "ollama_a".into(),
                authority: "127.0.0.1:1".into(),
                address: "127.0.0.1:1".into(),
                healthy: true,
                version: Some("0.9.7".into()),
            }],
            vec![ModelEntry {
                key: "registry.ollama.ai/library/m:latest".into(),
                name: "m:latest".into(),
                canonical_digest: "d1".into(),
                digest_mismatch: false,
                replicas: vec![replica("a", "d1")],
            }],
        )
        .sealed()
    }

    #[test]
    fn id_follows_content_and_only_content() {
        let a = sample();
        assert_eq!(a.id, sample().id, "same content, same id");
        assert_eq!(a.id.len(), 16);
        let mut b = a.clone();
        b.instances[0].healthy = false;
        assert_ne!(b.content_id(), a.id);
        let round: ModelMap = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
        assert_eq!(round.content_id(), a.id, "id survives a JSON round trip");
    }

    #[test]
    fn exact_expiry_is_kept_but_not_hashed() {
        let mut a = sample();
        a.models[0].replicas[0].loaded = Some(Loaded {
            size: 1,
            size_vram: 1,
            expires_at: "2026-01-01T00:05:00Z".into(),
            expires_unix: 1_767_225_900,
            context_length: Some(4096),
            entry: Some(
                serde_json::json!({"name": "m:latest", "expires_at": "2026-01-01T00:05:01.5Z"})
                    .into(),
            ),
        });
        let id = a.content_id();
        let kept = a.clone();
        assert_eq!(a.clone().sealed().id, id, "sealing hashes the same way");
        assert_eq!(a, kept, "and puts the exact expiry back");
        a.models[0].replicas[0].loaded.as_mut().unwrap().entry = Some(
            serde_json::json!({"name": "m:latest", "expires_at": "2026-01-01T00:05:42.25Z"}).into(),
        );
        assert_eq!(
            a.content_id(),
            id,
            "the exact expiry moves without a new id"
        );
        a.models[0].replicas[0]
            .loaded
            .as_mut()
            .unwrap()
            .expires_unix += 60;
        assert_ne!(a.content_id(), id, "the minute still counts");
    }

    #[test]
    fn instance_lookup_survives_changes_after_indexing() {
        let mut m = sample();
        assert_eq!(
            m.instance("a").map(|i| i.cluster.as_str()),
            Some("ollama_a")
        );
        m.instances[0].name = "b".into();
        assert!(
            m.instance("a").is_none(),
            "a stale index entry is not trusted"
        );
        assert_eq!(
            m.instance("b").map(|i| i.cluster.as_str()),
            Some("ollama_a")
        );
        assert!(m.instance("zz").is_none());
        assert_eq!(m.clone(), m, "the index is not part of equality");
    }

    #[test]
    fn lookup_by_key() {
        let m = sample();
        assert!(m.model("registry.ollama.ai/library/m:latest").is_some());
        assert!(m.model("registry.ollama.ai/library/x:latest").is_none());
        assert_eq!(m.instance("a").unwrap().cluster, "ollama_a");
    }

    #[test]
    fn canonical_digest_is_majority_then_newest() {
        assert_eq!(
            canonical_digest([("old", 1), ("new", 2), ("old", 1)]).as_deref(),
            Some("old")
        );
        assert_eq!(
            canonical_digest([("old", 1), ("new", 2)]).as_deref(),
            Some("new")
        );
        assert_eq!(
            canonical_digest([("b", 1), ("a", 1)]).as_deref(),
            Some("a"),
            "full tie is decided by the digest, not by order"
        );
        assert_eq!(canonical_digest([]), None);
    }
}
