//! Building the model map from what each instance last reported: pure
//! functions, so merging, keys, canonical digests and id stability are
//! tested without a network.
//!
//! Volatile facts (last seen, latency, error counters) stay out of the map,
//! so its id changes only when routing-relevant content does. Each
//! `/api/tags` and `/api/ps` entry is also kept exactly as the instance
//! sent it, for the merged reads. A loaded model's expiry counts to the
//! minute (see [`expiry_minute`]): Ollama reports it as "now + keep-alive"
//! while a model loads and moves it on every finished request, which would
//! otherwise change the map on every poll and make replicas of syncd
//! publish different maps; the exact value rides in the kept `/api/ps`
//! entry, which the map id leaves out.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat};
use model_map::map::canonical_digest;
use model_map::name::ModelName;
use model_map::{InstanceState, Loaded, ModelEntry, ModelMap, RawJson, Replica};

use crate::config::Instance;
use crate::ollama::{Ps, Tags};

/// One model as one instance holds it, keyed and ready for the map.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// Routing key of the reported name.
    pub key: String,
    /// `DisplayShortest` of the reported name.
    pub name: String,
    /// The replica, `instance` still empty.
    pub replica: Replica,
}

/// What one instance contributes to the map.
#[derive(Debug, Clone, Copy)]
pub struct InstanceView<'a> {
    pub instance: &'a Instance,
    /// `IP:port` Envoy knows it by (see [`crate::resolve`]); empty if unknown.
    pub address: &'a str,
    pub healthy: bool,
    pub version: Option<&'a str>,
    pub held: &'a [Held],
}

/// Turns `/api/tags` and `/api/ps` into held models, sorted by key. Also
/// returns the reported names that are not valid Ollama names (skipped).
/// A model in `/api/ps` but not in `/api/tags` is ignored: there is no
/// manifest to route to.
pub fn holdings(tags: &Tags, ps: &Ps) -> (Vec<Held>, Vec<String>) {
    let mut loaded: BTreeMap<String, Loaded> = BTreeMap::new();
    for m in &ps.models {
        let Ok(name) = ModelName::parse(reported(&m.name, &m.model)) else {
            continue;
        };
        let (expires_at, expires_unix) = expiry_minute(&m.expires_at);
        loaded.entry(name.key()).or_insert_with(|| Loaded {
            size: m.size,
            size_vram: m.size_vram,
            expires_at,
            expires_unix,
            context_length: m.context_length,
            entry: Some(RawJson::from(&m.raw)),
        });
    }
    let mut held: BTreeMap<String, Held> = BTreeMap::new();
    let mut invalid = Vec::new();
    for m in &tags.models {
        let raw = reported(&m.name, &m.model);
        let Ok(name) = ModelName::parse(raw) else {
            invalid.push(raw.to_string());
            continue;
        };
        let key = name.key();
        let replica = Replica {
            instance: String::new(),
            digest: m.digest.trim_start_matches("sha256:").to_string(),
            size: m.size,
            modified_at: m.modified_at.clone(),
            modified_unix: unix_seconds(&m.modified_at),
            // `listed` carries it.
            details: RawJson::null(),
            loaded: loaded.get(&key).cloned(),
            listed: Some(RawJson::from(&m.raw)),
        };
        held.entry(key.clone()).or_insert(Held {
            key,
            name: name.display_shortest(),
            replica,
        });
    }
    (held.into_values().collect(), invalid)
}

fn reported<'a>(name: &'a str, model: &'a str) -> &'a str {
    if name.trim().is_empty() {
        model
    } else {
        name
    }
}

/// RFC 3339 (with offset) as Unix seconds; 0 when unparsable.
pub fn unix_seconds(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).map_or(0, |t| t.timestamp())
}

/// `expires_at` truncated to the whole minute, as RFC 3339 (offset kept)
/// and Unix seconds; unparsable text is kept as is, with 0.
///
/// Two polls (or two syncd replicas) then report the same expiry unless it
/// moved past a minute boundary, and `ollama ps` shows minutes anyway.
pub fn expiry_minute(s: &str) -> (String, i64) {
    let Ok(t) = DateTime::parse_from_rfc3339(s) else {
        return (s.to_string(), 0);
    };
    let unix = t.timestamp().div_euclid(60) * 60;
    let text = DateTime::from_timestamp(unix, 0)
        .map(|utc| utc.with_timezone(t.offset()))
        .map_or_else(
            || s.to_string(),
            |m| m.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
    (text, unix)
}

/// A replica and whether its instance is healthy (only those vote).
type Vote = (Replica, bool);

/// The sealed map of `views`, which are in configuration order.
///
/// Down instances keep their last known models, marked `healthy: false`,
/// so the filter skips them but the fleet view stays complete. The
/// canonical digest is chosen among healthy holders when there is one, so
/// stale copies on a down instance cannot outvote a live one.
pub fn build_map(views: &[InstanceView<'_>]) -> ModelMap {
    let instances = views
        .iter()
        .map(|v| InstanceState {
            name: v.instance.name.clone(),
            url: v.instance.url.clone(),
            cluster: v.instance.cluster.clone(),
            authority: v.instance.authority.clone(),
            address: v.address.to_string(),
            healthy: v.healthy,
            version: v.version.map(str::to_string),
        })
        .collect();
    let mut by_key: BTreeMap<&str, (&str, Vec<Vote>)> = BTreeMap::new();
    for v in views {
        for h in v.held {
            let mut replica = h.replica.clone();
            replica.instance = v.instance.name.clone();
            by_key
                .entry(&h.key)
                .or_insert((&h.name, Vec::new()))
                .1
                .push((replica, v.healthy));
        }
    }
    let models = by_key
        .into_iter()
        .map(|(key, (name, replicas))| entry(key, name, replicas))
        .collect();
    ModelMap::new(instances, models).sealed()
}

fn entry(key: &str, name: &str, replicas: Vec<Vote>) -> ModelEntry {
    let any_healthy = replicas.iter().any(|(_, healthy)| *healthy);
    let voters = replicas
        .iter()
        .filter(|(_, healthy)| *healthy || !any_healthy)
        .map(|(r, _)| (r.digest.as_str(), r.modified_unix));
    let canonical = canonical_digest(voters).unwrap_or_default();
    let digest_mismatch = replicas.iter().any(|(r, _)| r.digest != canonical);
    ModelEntry {
        key: key.to_string(),
        name: name.to_string(),
        canonical_digest: canonical,
        digest_mismatch,
        replicas: replicas.into_iter().map(|(r, _)| r).collect(),
    }
}

/// `map` without the instances' raw entries (each replica's `details` and
/// `/api/tags` entry, each loaded model's `/api/ps` entry): what syncd
/// keeps of a map once its JSON is written. Its id stays the published
/// one; nothing but the filter's merged reads uses those entries.
pub fn without_raw_entries(mut map: ModelMap) -> ModelMap {
    for replica in map.models.iter_mut().flat_map(|m| m.replicas.iter_mut()) {
        replica.details = RawJson::null();
        replica.listed = None;
        if let Some(loaded) = replica.loaded.as_mut() {
            loaded.entry = None;
        }
    }
    map
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
