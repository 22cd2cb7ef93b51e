use super::*;
use serde_json::json;

fn inst(name: &str) -> Instance {
    Instance {
        name: name.into(),
        url: format!("http://{name}:11434"),
        cluster: name.into(),
        authority: format!("{name}:11434"),
        ..Default::default()
    }
}

fn tags(models: &[(&str, &str, &str)]) -> Tags {
    serde_json::from_value(json!({
        "models": models.iter().map(|(name, digest, modified)| json!({
            "name": name, "model": name, "modified_at": modified,
            "size": 100, "digest": digest, "details": {"format": "gguf"}
        })).collect::<Vec<_>>()
    }))
    .unwrap()
}

fn ps(models: &[&str]) -> Ps {
    serde_json::from_value(json!({
        "models": models.iter().map(|name| json!({
            "name": name, "model": name, "size": 100, "size_vram": 60, "digest": "x",
            "expires_at": "2024-06-04T14:38:31.83753-07:00", "context_length": 4096
        })).collect::<Vec<_>>()
    }))
    .unwrap()
}

const T1: &str = "2025-01-01T00:00:00Z";
const T2: &str = "2025-02-01T00:00:00+01:00";

#[test]
fn holdings_key_names_and_attach_loaded_state() {
    let (held, invalid) = holdings(
        &tags(&[
            ("Llama3:latest", "sha256:aa", T1),
            ("user/m:1", "bb", T2),
            ("bad name", "cc", T1),
        ]),
        &ps(&["llama3", "gone:latest"]),
    );
    assert_eq!(invalid, ["bad name"]);
    assert_eq!(held.len(), 2);
    assert_eq!(held[0].key, "registry.ollama.ai/library/llama3:latest");
    assert_eq!(held[0].name, "Llama3:latest");
    assert_eq!(held[0].replica.digest, "aa", "sha256: prefix dropped");
    assert_eq!(held[0].replica.modified_unix, 1_735_689_600);
    let loaded = held[0].replica.loaded.as_ref().unwrap();
    assert_eq!((loaded.size_vram, loaded.context_length), (60, Some(4096)));
    assert_eq!(
        (loaded.expires_at.as_str(), loaded.expires_unix),
        ("2024-06-04T14:38:00-07:00", 1_717_537_080),
        "expiry kept to the minute, offset kept"
    );
    assert_eq!(held[1].name, "user/m:1");
    assert_eq!(
        held[1].replica.modified_unix, 1_738_364_400,
        "offset honoured"
    );
    assert!(held[1].replica.loaded.is_none());
}

fn map_of(fleet: &[(&Instance, bool, Tags)]) -> ModelMap {
    let held: Vec<_> = fleet
        .iter()
        .map(|(_, _, t)| holdings(t, &ps(&[])).0)
        .collect();
    let views: Vec<_> = fleet
        .iter()
        .zip(&held)
        .map(|((i, healthy, _), h)| InstanceView {
            instance: i,
            address: "",
            healthy: *healthy,
            version: Some("0.9.7"),
            held: h,
        })
        .collect();
    build_map(&views)
}

#[test]
fn replicas_merge_across_spellings_in_instance_order() {
    let (a, b) = (inst("b-first"), inst("a-second"));
    let map = map_of(&[
        (&a, true, tags(&[("llama3", "d1", T1), ("zeta:1", "z", T1)])),
        (
            &b,
            true,
            tags(&[("library/llama3:latest", "d1", T1), ("alpha:1", "a", T1)]),
        ),
    ]);
    let keys: Vec<_> = map.models.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "registry.ollama.ai/library/alpha:1",
            "registry.ollama.ai/library/llama3:latest",
            "registry.ollama.ai/library/zeta:1"
        ]
    );
    let llama = &map.models[1];
    assert_eq!(llama.name, "llama3:latest");
    let holders: Vec<_> = llama.replicas.iter().map(|r| r.instance.as_str()).collect();
    assert_eq!(holders, ["b-first", "a-second"]);
    assert!(!llama.digest_mismatch);
    assert_eq!(map.instances[0].name, "b-first", "configuration order");
    assert_eq!(map.id, map.content_id());
}

#[test]
fn disagreeing_digests_pick_majority_then_newest() {
    let (a, b, c) = (inst("a"), inst("b"), inst("c"));
    let map = map_of(&[
        (&a, true, tags(&[("m", "old", T1)])),
        (&b, true, tags(&[("m", "new", T2)])),
        (&c, true, tags(&[("m", "old", T1)])),
    ]);
    assert_eq!(map.models[0].canonical_digest, "old");
    assert!(map.models[0].digest_mismatch);
    let map = map_of(&[
        (&a, true, tags(&[("m", "old", T1)])),
        (&b, true, tags(&[("m", "new", T2)])),
    ]);
    assert_eq!(map.models[0].canonical_digest, "new", "tie goes to newest");
}

#[test]
fn down_instances_keep_models_but_do_not_vote() {
    let (a, b, c) = (inst("a"), inst("b"), inst("c"));
    let map = map_of(&[
        (&a, false, tags(&[("m", "stale", T1)])),
        (&b, false, tags(&[("m", "stale", T1)])),
        (&c, true, tags(&[("m", "live", T1)])),
    ]);
    let m = &map.models[0];
    assert_eq!(m.replicas.len(), 3);
    assert_eq!(m.canonical_digest, "live");
    assert!(!map.instances[0].healthy);
    let all_down = map_of(&[(&a, false, tags(&[("m", "stale", T1)]))]);
    assert_eq!(all_down.models[0].canonical_digest, "stale");
}

#[test]
fn id_is_stable_and_follows_content() {
    let a = inst("a");
    let one = map_of(&[(&a, true, tags(&[("m", "d", T1), ("n", "e", T1)]))]);
    let reordered = map_of(&[(&a, true, tags(&[("n", "e", T1), ("m", "d", T1)]))]);
    assert_eq!(one.id, reordered.id, "tags order does not matter");
    let down = map_of(&[(&a, false, tags(&[("m", "d", T1), ("n", "e", T1)]))]);
    assert_ne!(one.id, down.id);
    let new_digest = map_of(&[(&a, true, tags(&[("m", "d2", T1), ("n", "e", T1)]))]);
    assert_ne!(one.id, new_digest.id);
}

#[test]
fn expiry_moving_within_a_minute_leaves_the_map_alone() {
    // Ollama reports "now + keep-alive" while a model loads: two polls (or
    // two syncd replicas) a few seconds apart must publish one map.
    let at = |expires: &str| {
        let ps: Ps = serde_json::from_value(json!({"models": [{
            "name": "m:latest", "model": "m:latest", "size": 1, "size_vram": 1,
            "digest": "x", "expires_at": expires
        }]}))
        .unwrap();
        let held = holdings(&tags(&[("m:latest", "aa", T1)]), &ps).0;
        let (entry, expiry) = held[0]
            .replica
            .loaded
            .as_ref()
            .map(|l| (l.entry.clone(), l.expires_at.clone()))
            .unwrap_or_default();
        let id = ModelMap::new(Vec::new(), Vec::new()).content_id();
        let map = ModelMap::new(
            Vec::new(),
            vec![model_map::ModelEntry {
                key: held[0].key.clone(),
                name: held[0].name.clone(),
                canonical_digest: "aa".into(),
                digest_mismatch: false,
                replicas: vec![held[0].replica.clone()],
            }],
        );
        assert_ne!(map.content_id(), id);
        // The exact expiry is kept for `/api/ps`; the id only sees the minute.
        (
            map.content_id(),
            expiry,
            entry.map(|e| e.to_value()["expires_at"] == expires),
        )
    };
    let (a, b) = (at("2025-01-01T00:05:01.5Z"), at("2025-01-01T00:05:59.9Z"));
    assert_eq!((a.0, a.1), (b.0, b.1));
    assert_eq!((a.2, b.2), (Some(true), Some(true)));
    assert_ne!(at("2025-01-01T00:05:59Z").0, at("2025-01-01T00:06:00Z").0);
    assert_eq!(expiry_minute("soon"), ("soon".to_string(), 0));
    assert_eq!(
        expiry_minute("2025-01-01T00:05:59Z").0,
        "2025-01-01T00:05:00Z"
    );
}
