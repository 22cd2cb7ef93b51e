//! Merged reads against a Go-shaped instance, byte for byte: what syncd
//! reads from an instance's `/api/tags` and `/api/ps` and what the filter
//! answers from the map must be the same bytes when one instance holds
//! the models, including `capabilities`, cloud entries (`remote_model`,
//! `remote_host`), fields no Ollama sends yet, and `expires_at` to the
//! nanosecond.
//!
//! The fixtures are written as Go's `json.Marshal` writes Ollama's
//! `api.ListResponse` and `api.ProcessResponse` (v0.33.0-rc2,
//! `api/types.go`): fields in declaration order, omitempty fields left
//! out, `<`, `>`, `&` escaped.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use model_map::ModelMap;
use syncd::build::{build_map, holdings, InstanceView};
use syncd::config::Instance;
use syncd::ollama::{Ps, Tags};

const TAGS: &str = concat!(
    r#"{"models":["#,
    r#"{"name":"gpt-oss:120b-cloud","model":"gpt-oss:120b-cloud","remote_model":"gpt-oss:120b","remote_host":"https://ollama.com:443","modified_at":"2026-11-30T10:00:00.123456789Z","size":384,"digest":"f1b1a4b1cbd1ab1bd1a1c5b1e2d3a4f5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1","details":{"parent_model":"","format":"","family":"gptoss","families":["gptoss"],"parameter_size":"116.8B","quantization_level":"MXFP4"},"capabilities":["completion","tools","thinking"]},"#,
    r#"{"name":"llama3.2:latest","model":"llama3.2:latest","modified_at":"2026-11-29T08:30:00+01:00","size":2019393189,"digest":"a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72","details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"3.2B","quantization_level":"Q4_K_M","context_length":131072,"embedding_length":3072},"capabilities":["completion","tools"],"future_field":{"b":1,"a":"x \u003c y \u0026 z"}},"#,
    r#"{"name":"nomic-embed-text:latest","model":"nomic-embed-text:latest","modified_at":"2026-11-28T00:00:00Z","size":274302450,"digest":"0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f","details":{"parent_model":"","format":"gguf","family":"nomic-bert","families":["nomic-bert"],"parameter_size":"137M","quantization_level":"F16"},"capabilities":["embedding"]}"#,
    r#"]}"#
);

const PS: &str = concat!(
    r#"{"models":["#,
    r#"{"name":"llama3.2:latest","model":"llama3.2:latest","size":3528400896,"digest":"a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72","details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"3.2B","quantization_level":"Q4_K_M"},"expires_at":"2026-12-01T22:35:12.123456789Z","size_vram":3528400896,"context_length":4096,"future_ps_field":true}"#,
    r#"]}"#
);

fn map_of(tags: &str, ps: &str) -> ModelMap {
    let tags: Tags = serde_json::from_str(tags).expect("fixture is valid");
    let ps: Ps = serde_json::from_str(ps).expect("fixture is valid");
    let (held, invalid) = holdings(&tags, &ps);
    assert!(invalid.is_empty(), "{invalid:?}");
    let instance = Instance {
        name: "a".into(),
        url: "http://127.0.0.1:11434".into(),
        cluster: "a".into(),
        authority: "127.0.0.1:11434".into(),
        ..Default::default()
    };
    build_map(&[InstanceView {
        instance: &instance,
        address: "127.0.0.1:11434",
        healthy: true,
        version: Some("0.33.0"),
        held: &held,
    }])
}

#[test]
fn merged_tags_and_ps_are_the_instances_bytes() {
    let map = map_of(TAGS, PS);
    // Through the JSON syncd serves and the filter decodes.
    let served: ModelMap = serde_json::from_slice(&serde_json::to_vec(&map).unwrap()).unwrap();
    assert_eq!(filter::fleet_reads::tags(&served), TAGS);
    assert_eq!(filter::fleet_reads::ps(&served), PS);
}

#[test]
fn the_exact_expiry_does_not_change_the_map_id() {
    let a = map_of(TAGS, PS);
    let b = map_of(TAGS, &PS.replace("22:35:12.123456789Z", "22:35:48.5Z"));
    assert_eq!(a.id, b.id, "same minute, same id");
    assert_eq!(
        filter::fleet_reads::ps(&b),
        PS.replace("22:35:12.123456789Z", "22:35:48.5Z"),
        "while the answer is exact"
    );
    let c = map_of(TAGS, &PS.replace("22:35:12", "22:36:12"));
    assert_ne!(a.id, c.id, "a new minute is a new map");
}

#[test]
fn openai_models_are_derived_from_the_entries() {
    let map = map_of(TAGS, PS);
    assert_eq!(
        filter::fleet_reads::openai_models(&map),
        concat!(
            r#"{"object":"list","data":["#,
            r#"{"id":"gpt-oss:120b-cloud","object":"model","created":1796032800,"owned_by":"library"},"#,
            r#"{"id":"llama3.2:latest","object":"model","created":1795937400,"owned_by":"library"},"#,
            r#"{"id":"nomic-embed-text:latest","object":"model","created":1795824000,"owned_by":"library"}"#,
            r#"]}"#
        )
    );
}
