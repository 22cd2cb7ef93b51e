//! Which instances a fleet management request acts on, from the published
//! map (and the placement, for pulls and creates). Pure, tested as tables.
//!
//! Only healthy instances are ever targets: a down instance cannot be
//! reached, and the map keeps listing what it held until it is back.

use model_map::{InstanceState, ModelMap};

use super::placement::{DefaultRule, Placement};

fn healthy(map: &ModelMap) -> impl Iterator<Item = &InstanceState> {
    map.instances.iter().filter(|i| i.healthy)
}

/// Healthy instances holding the model with routing key `key`, at any
/// digest (delete, copy and a create's base act on every copy).
pub fn holders<'m>(map: &'m ModelMap, key: &str) -> Vec<&'m InstanceState> {
    let Some(entry) = map.model(key) else {
        return Vec::new();
    };
    healthy(map)
        .filter(|i| entry.replicas.iter().any(|r| r.instance == i.name))
        .collect()
}

/// Healthy instances where the model is loaded (the unload idiom).
pub fn loaded_on<'m>(map: &'m ModelMap, key: &str) -> Vec<&'m InstanceState> {
    let Some(entry) = map.model(key) else {
        return Vec::new();
    };
    healthy(map)
        .filter(|i| {
            entry
                .replicas
                .iter()
                .any(|r| r.instance == i.name && r.loaded.is_some())
        })
        .collect()
}

/// Where a fleet pull of `key` goes: the placement's instances for a model
/// it lists (`instances`, or the holders plus enough others for
/// `replicas`); an unlisted model goes everywhere under `default = "all"`
/// or without a placement, and under `default = "keep"` to its holders
/// (everywhere when nobody holds it yet). Holders are always re-pulled:
/// that is what "update" means.
pub fn pull_targets<'m>(
    map: &'m ModelMap,
    placement: Option<&Placement>,
    key: &str,
) -> Vec<&'m InstanceState> {
    let everyone: Vec<&InstanceState> = healthy(map).collect();
    let held = holders(map, key);
    let rule = placement.and_then(|p| p.rule(key));
    match (rule, placement.map(|p| p.default)) {
        (Some(rule), _) => match (&rule.instances, rule.replicas) {
            (Some(list), _) => everyone
                .into_iter()
                .filter(|i| list.contains(&i.name))
                .collect(),
            (None, Some(n)) => fill(held, everyone, map, n as usize),
            (None, None) => everyone,
        },
        (None, Some(DefaultRule::Keep)) if !held.is_empty() => held,
        _ => everyone,
    }
}

/// `held`, then the instances holding the fewest models, until `n`.
fn fill<'m>(
    mut held: Vec<&'m InstanceState>,
    everyone: Vec<&'m InstanceState>,
    map: &ModelMap,
    n: usize,
) -> Vec<&'m InstanceState> {
    let count = |name: &str| {
        map.models
            .iter()
            .filter(|m| m.replicas.iter().any(|r| r.instance == name))
            .count()
    };
    let mut others: Vec<&InstanceState> = everyone
        .into_iter()
        .filter(|i| !held.iter().any(|h| h.name == i.name))
        .collect();
    others.sort_by_key(|i| (count(&i.name), i.name.clone()));
    let missing = n.saturating_sub(held.len());
    held.extend(others.into_iter().take(missing));
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use model_map::{Loaded, ModelEntry, Replica};

    fn instance(name: &str, healthy: bool) -> InstanceState {
        InstanceState {
            name: name.into(),
            url: format!("http://{name}"),
            cluster: name.into(),
            authority: name.into(),
            address: String::new(),
            healthy,
            version: None,
        }
    }

    fn replica(instance: &str, loaded: bool) -> Replica {
        Replica {
            instance: instance.into(),
            digest: "d1".into(),
            size: 1,
            modified_at: String::new(),
            modified_unix: 0,
            details: model_map::RawJson::null(),
            loaded: loaded.then(|| Loaded {
                size: 1,
                size_vram: 1,
                expires_at: String::new(),
                expires_unix: 0,
                context_length: None,
                entry: None,
            }),
            listed: None,
        }
    }

    /// gpu-a and gpu-b hold llama3.2 (loaded on gpu-a), gpu-d holds it but
    /// is down; gpu-c holds nothing.
    fn map() -> ModelMap {
        let entry = ModelEntry {
            key: "registry.ollama.ai/library/llama3.2:latest".into(),
            name: "llama3.2:latest".into(),
            canonical_digest: "d1".into(),
            digest_mismatch: false,
            replicas: vec![
                replica("gpu-a", true),
                replica("gpu-b", false),
                replica("gpu-d", true),
            ],
        };
        ModelMap::new(
            vec![
                instance("gpu-a", true),
                instance("gpu-b", true),
                instance("gpu-c", true),
                instance("gpu-d", false),
            ],
            vec![entry],
        )
    }

    const KEY: &str = "registry.ollama.ai/library/llama3.2:latest";
    const OTHER: &str = "registry.ollama.ai/library/qwen2.5:latest";

    fn names(v: Vec<&InstanceState>) -> Vec<&str> {
        v.into_iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn holders_and_loaded_are_the_healthy_ones() {
        let m = map();
        assert_eq!(names(holders(&m, KEY)), ["gpu-a", "gpu-b"]);
        assert_eq!(names(loaded_on(&m, KEY)), ["gpu-a"]);
        assert!(holders(&m, OTHER).is_empty());
    }

    #[test]
    fn pull_targets_follow_the_placement() {
        let m = map();
        let toml = |s: &str| Placement::from_toml(s, "test", None).unwrap();
        let cases: Vec<(Option<Placement>, &str, Vec<&str>)> = vec![
            (None, KEY, vec!["gpu-a", "gpu-b", "gpu-c"]),
            (None, OTHER, vec!["gpu-a", "gpu-b", "gpu-c"]),
            (
                Some(toml("default = \"keep\"")),
                KEY,
                vec!["gpu-a", "gpu-b"],
            ),
            (
                Some(toml("default = \"keep\"")),
                OTHER,
                vec!["gpu-a", "gpu-b", "gpu-c"],
            ),
            (
                Some(toml(
                    "[[model]]\nname = \"llama3.2\"\ninstances = [\"gpu-c\", \"gpu-d\"]",
                )),
                KEY,
                vec!["gpu-c"],
            ),
            (
                Some(toml("[[model]]\nname = \"llama3.2\"\nreplicas = 3")),
                KEY,
                vec!["gpu-a", "gpu-b", "gpu-c"],
            ),
            (
                Some(toml("[[model]]\nname = \"llama3.2\"\nreplicas = 1")),
                KEY,
                vec!["gpu-a", "gpu-b"],
            ),
            (
                Some(toml("[[model]]\nname = \"qwen2.5\"\nreplicas = 1")),
                OTHER,
                vec!["gpu-c"],
            ),
        ];
        for (placement, key, want) in cases {
            let got = names(pull_targets(&m, placement.as_ref(), key));
            assert_eq!(got, want, "{placement:?} {key}");
        }
    }
}
