//! The model map as the filter routes with it: what routing and the fleet
//! reads need, worked out once per map by the worker that fetched it, and
//! shared with every other worker of the Envoy process in a compact form.
//!
//! The map syncd sends is large at scale (1,000 instances × 200 models is
//! about 7 MB of JSON, mostly the instances' own `/api/tags` and `/api/ps`
//! entries). A worker needs little of it to route: each model's holders at
//! the canonical digest (by instance position), each instance's
//! addresses and health, and each instance's count of sole loaded copies.
//! The fleet reads need even less once rendered: four answer bodies and
//! each listed model's `created`. So the worker holding the fetch lease
//! decodes the map once, builds a [`RoutingMap`], and writes
//! [`RoutingMap::encode`] (tens of kilobytes per hundred models) to shared
//! data; every worker installs it with [`RoutingMap::decode`]. No worker
//! keeps the full map.

use std::collections::HashMap;
use std::sync::OnceLock;

use model_map::{InstanceState, ModelMap};
use serde::{Deserialize, Serialize};

use crate::fleet_reads::FleetReads;

/// Version of [`RoutingMap::encode`]'s format; part of its shared-data
/// key, so two filter builds in one process never read each other's.
pub const ROUTING_FORMAT: u32 = 1;

/// A model map ready for routing, without the parts only syncd and the
/// rendered fleet reads need.
#[derive(Debug, Serialize, Deserialize)]
pub struct RoutingMap {
    /// The map's id.
    pub id: String,
    /// Every instance of the map, in its order.
    pub instances: Vec<InstanceState>,
    /// Every model's routing key, sorted (the map's order).
    keys: Vec<String>,
    /// Per model (in `keys`' order): its replicas at the canonical digest
    /// on instances the map lists, so a request walks no names.
    holders: Vec<Vec<Holder>>,
    /// Per instance (in `instances`' order): models loaded there and on
    /// no other healthy instance.
    sole_copies: Vec<u32>,
    /// The fleet-wide reads, rendered.
    reads: FleetReads,
    /// Position of each instance by name, built on the first lookup.
    #[serde(skip)]
    instance_index: OnceLock<HashMap<String, usize>>,
}

/// A replica at the canonical digest, by instance position in the map.
/// Encoded as one number, `instance × 2 + loaded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "u64", into = "u64")]
pub struct Holder {
    /// Index into the map's `instances`.
    pub instance: usize,
    /// The model is loaded there.
    pub loaded: bool,
}

impl From<Holder> for u64 {
    fn from(h: Holder) -> u64 {
        (h.instance as u64) << 1 | u64::from(h.loaded)
    }
}

impl From<u64> for Holder {
    fn from(v: u64) -> Holder {
        Holder {
            instance: usize::try_from(v >> 1).unwrap_or(usize::MAX),
            loaded: v & 1 == 1,
        }
    }
}

/// Why an encoded routing map from shared data is not used.
#[derive(Debug, thiserror::Error)]
#[error("shared routing map does not decode: {0}")]
pub struct RoutingMapError(#[from] serde_json::Error);

impl RoutingMap {
    /// Works out what routing needs from `map` (and renders its fleet
    /// reads), dropping the rest.
    pub fn new(map: ModelMap) -> Self {
        Self::of(&map)
    }

    /// [`RoutingMap::new`] without taking the map.
    pub fn of(map: &ModelMap) -> Self {
        let position: HashMap<&str, usize> = map
            .instances
            .iter()
            .enumerate()
            .rev()
            .map(|(k, i)| (i.name.as_str(), k))
            .collect();
        let holders = map
            .models
            .iter()
            .map(|entry| {
                entry
                    .canonical_replicas()
                    .filter_map(|r| {
                        position.get(r.instance.as_str()).map(|&instance| Holder {
                            instance,
                            loaded: r.loaded.is_some(),
                        })
                    })
                    .collect()
            })
            .collect();
        RoutingMap {
            id: map.id.clone(),
            instances: map.instances.clone(),
            keys: map.models.iter().map(|m| m.key.clone()).collect(),
            holders,
            sole_copies: count_sole_copies(map, &position),
            reads: FleetReads::render(map),
            instance_index: OnceLock::new(),
        }
    }

    /// The compact form other workers install with [`RoutingMap::decode`].
    pub fn encode(&self) -> Vec<u8> {
        // Strings, numbers and vectors of them always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A routing map from [`RoutingMap::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, RoutingMapError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Number of models in the map.
    pub fn model_count(&self) -> usize {
        self.keys.len()
    }

    /// The fleet-wide reads of this map, rendered.
    pub fn reads(&self) -> &FleetReads {
        &self.reads
    }

    /// The replicas of the model with routing key `key` at its canonical
    /// digest, on instances the map lists (`None`: not in the map).
    pub fn holders(&self, key: &str) -> Option<&[Holder]> {
        let k = self.keys.binary_search_by(|m| m.as_str().cmp(key)).ok()?;
        self.holders.get(k).map(Vec::as_slice)
    }

    /// The instance of this name.
    pub fn instance(&self, name: &str) -> Option<&InstanceState> {
        self.position(name).and_then(|k| self.instances.get(k))
    }

    fn position(&self, name: &str) -> Option<usize> {
        let index = self.instance_index.get_or_init(|| {
            let mut index = HashMap::with_capacity(self.instances.len());
            for (k, instance) in self.instances.iter().enumerate() {
                index.entry(instance.name.clone()).or_insert(k);
            }
            index
        });
        index.get(name).copied()
    }

    /// Models loaded on `instance` and on no other healthy instance, per
    /// the map: what a load there may evict with nowhere else to serve it.
    pub fn sole_copies(&self, instance: &str) -> u32 {
        self.position(instance)
            .and_then(|k| self.sole_copies.get(k))
            .copied()
            .unwrap_or(0)
    }
}

/// One pass over the map's loaded replicas (at each model's canonical
/// digest), counted per instance position.
fn count_sole_copies(map: &ModelMap, position: &HashMap<&str, usize>) -> Vec<u32> {
    let healthy = |name: &str| {
        position
            .get(name)
            .and_then(|&k| map.instances.get(k))
            .is_some_and(|i| i.healthy)
    };
    let mut sole = vec![0u32; map.instances.len()];
    for entry in &map.models {
        let loaded: Vec<&str> = entry
            .canonical_replicas()
            .filter(|r| r.loaded.is_some())
            .map(|r| r.instance.as_str())
            .collect();
        for &here in &loaded {
            let elsewhere = loaded.iter().any(|&other| other != here && healthy(other));
            let slot = position.get(here).and_then(|&k| sole.get_mut(k));
            if let (false, Some(count)) = (elsewhere, slot) {
                *count += 1;
            }
        }
    }
    sole
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{entry, fleet, instance, replica};

    #[test]
    fn sole_copies_count_models_loaded_nowhere_else_healthy() {
        // x only on a; y on b and c; z on a and on d, which is down.
        let mut models = vec![
            entry("x", "d", vec![replica("a", "d", 1, Some(9))]),
            entry(
                "y",
                "d",
                vec![replica("b", "d", 1, Some(9)), replica("c", "d", 1, Some(9))],
            ),
            entry(
                "z",
                "d",
                vec![replica("a", "d", 1, Some(9)), replica("d", "d", 1, Some(9))],
            ),
            entry("w", "d", vec![replica("c", "other", 1, Some(9))]),
        ];
        models.sort_by(|p, q| p.key.cmp(&q.key));
        let map = RoutingMap::new(ModelMap::new(
            vec![
                instance("a", true, None),
                instance("b", true, None),
                instance("c", true, None),
                instance("d", false, None),
            ],
            models,
        ));
        assert_eq!(map.sole_copies("a"), 2, "x, and z (its other copy is down)");
        assert_eq!(map.sole_copies("b"), 0);
        assert_eq!(map.sole_copies("c"), 0, "w is not at its canonical digest");
        assert_eq!(map.sole_copies("d"), 0, "a's copy of z is healthy");
        assert_eq!(map.sole_copies("nobody"), 0);
        assert_eq!(
            RoutingMap::new(fleet()).model_count(),
            4,
            "every model of the map"
        );
    }

    #[test]
    fn holders_are_canonical_replicas_on_listed_instances() {
        let map = RoutingMap::new(fleet());
        let named = |map: &RoutingMap, key: &str| -> Vec<(String, bool)> {
            let key = model_map::ModelName::parse(key).unwrap().key();
            map.holders(&key)
                .unwrap()
                .iter()
                .map(|h| (map.instances[h.instance].name.clone(), h.loaded))
                .collect()
        };
        assert_eq!(
            named(&map, "llama3:latest"),
            [("a".into(), true), ("b".into(), false)]
        );
        assert_eq!(
            named(&map, "user/tiny:1b"),
            [("a".into(), false)],
            "b holds another digest"
        );
        let nope = model_map::ModelName::parse("nope").unwrap().key();
        assert!(map.holders(&nope).is_none());
        let mut unlisted = fleet();
        unlisted.instances.retain(|i| i.name != "b");
        let map = RoutingMap::new(unlisted);
        assert_eq!(named(&map, "mistral:latest"), [], "b is not listed");
    }

    #[test]
    fn the_compact_form_routes_and_reads_as_the_original() {
        let map = RoutingMap::new(fleet());
        let back = RoutingMap::decode(&map.encode()).unwrap();
        assert_eq!(back.id, fleet().id);
        assert_eq!(back.instances, fleet().instances);
        let key = model_map::ModelName::parse("llama3").unwrap().key();
        assert_eq!(back.holders(&key), map.holders(&key));
        assert_eq!(back.sole_copies("a"), map.sole_copies("a"));
        assert_eq!(back.reads(), map.reads());
        assert_eq!(back.instance("b").map(|i| i.name.as_str()), Some("b"));
        assert!(RoutingMap::decode(b"{").is_err());
        let h = Holder {
            instance: 1234,
            loaded: true,
        };
        assert_eq!(Holder::from(u64::from(h)), h);
    }
}
