//! A small fleet for unit tests.

use model_map::{InstanceState, Loaded, ModelEntry, ModelMap, Replica};
use serde_json::json;

pub fn instance(name: &str, healthy: bool, version: Option<&str>) -> InstanceState {
    InstanceState {
        name: name.into(),
        url: format!("http://{name}:11434"),
        cluster: format!("ollama_{name}"),
        authority: format!("{name}:11434"),
        address: format!(
            "10.0.0.{}:11434",
            name.bytes().map(u32::from).sum::<u32>() % 250
        ),
        healthy,
        version: version.map(str::to_string),
    }
}

pub fn replica(instance: &str, digest: &str, modified_unix: i64, loaded: Option<i64>) -> Replica {
    Replica {
        instance: instance.into(),
        digest: digest.into(),
        size: 100,
        modified_at: format!("t{modified_unix}"),
        modified_unix,
        details: json!({"format": "gguf", "family": "llama"}).into(),
        loaded: loaded.map(|expires_unix| Loaded {
            size: 100,
            size_vram: 50,
            expires_at: format!("e{expires_unix}"),
            expires_unix,
            context_length: Some(4096),
            entry: None,
        }),
        listed: None,
    }
}

pub fn entry(name: &str, canonical: &str, replicas: Vec<Replica>) -> ModelEntry {
    let parsed = model_map::ModelName::parse(name).expect("fixture names are valid");
    ModelEntry {
        key: parsed.key(),
        name: parsed.display_shortest(),
        canonical_digest: canonical.into(),
        digest_mismatch: replicas.iter().any(|r| r.digest != canonical),
        replicas,
    }
}

/// a, b healthy; c down. llama3 on a (loaded) and b; qwen on c only;
/// user/tiny on a and b but b holds another digest; mistral on b loaded.
pub fn fleet() -> ModelMap {
    let mut models = vec![
        entry(
            "llama3",
            "d1",
            vec![
                replica("a", "d1", 200, Some(900)),
                replica("b", "d1", 100, None),
            ],
        ),
        entry("qwen", "q1", vec![replica("c", "q1", 300, Some(950))]),
        entry(
            "user/tiny:1b",
            "t1",
            vec![
                replica("a", "t1", 50, None),
                replica("b", "t0", 40, Some(800)),
            ],
        ),
        entry("mistral", "m1", vec![replica("b", "m1", 150, Some(990))]),
    ];
    models.sort_by(|x, y| x.key.cmp(&y.key));
    ModelMap::new(
        vec![
            instance("a", true, Some("0.9.7")),
            instance("b", true, Some("0.12.10")),
            instance("c", false, Some("0.1.0")),
        ],
        models,
    )
    .sealed()
}
