//! The model map as one Envoy worker routes with it: the map from syncd plus
//! what the policy would otherwise recompute per request, worked out once
//! when the map is installed.

use std::collections::HashMap;
use std::ops::Deref;

use model_map::ModelMap;

/// A model map ready for routing. Derefs to the [`ModelMap`].
#[derive(Debug)]
pub struct RoutingMap {
    map: ModelMap,
    /// Per model (in the map's order): its replicas at the canonical
    /// digest on instances the map lists, so a request walks no names.
    holders: Vec<Vec<Holder>>,
    /// Per instance: models loaded there and on no other healthy instance.
    sole_copies: HashMap<String, u32>,
}

/// A replica at the canonical digest, by instance position in the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// Index into the map's `instances`.
    pub instance: usize,
    /// The model is loaded there.
    pub loaded: bool,
}

impl RoutingMap {
    pub fn new(map: ModelMap) -> Self {
        let sole_copies = count_sole_copies(&map);
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
            map,
            holders,
            sole_copies,
        }
    }

    /// The replicas of the model with routing key `key` at its canonical
    /// digest, on instances the map lists (`None`: not in the map).
    pub fn holders(&self, key: &str) -> Option<&[Holder]> {
        let k = self
            .map
            .models
            .binary_search_by(|m| m.key.as_str().cmp(key))
            .ok()?;
        self.holders.get(k).map(Vec::as_slice)
    }

    /// Models loaded on `instance` and on no other healthy instance, per
    /// the map: what a load there may evict with nowhere else to serve it.
    pub fn sole_copies(&self, instance: &str) -> u32 {
        self.sole_copies.get(instance).copied().unwrap_or(0)
    }
}

impl Deref for RoutingMap {
    type Target = ModelMap;

    fn deref(&self) -> &ModelMap {
        &self.map
    }
}

/// One pass over the map's loaded replicas (at each model's canonical
/// digest).
fn count_sole_copies(map: &ModelMap) -> HashMap<String, u32> {
    let healthy = |name: &str| map.instance(name).is_some_and(|i| i.healthy);
    let mut sole: HashMap<String, u32> = HashMap::new();
    for entry in &map.models {
        let loaded: Vec<&str> = entry
            .canonical_replicas()
            .filter(|r| r.loaded.is_some())
            .map(|r| r.instance.as_str())
            .collect();
        for &here in &loaded {
            let elsewhere = loaded.iter().any(|&other| other != here && healthy(other));
            if !elsewhere {
                *sole.entry(here.to_string()).or_default() += 1;
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
            RoutingMap::new(fleet()).models.len(),
            4,
            "derefs to the map"
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
}
