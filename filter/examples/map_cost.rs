//! What a big map costs the filter, on the host: a map shaped like the
//! scale benchmark's (1,000 instances × 200 models, 20 per instance, the
//! first 2 loaded, each replica with its `/api/tags` and `/api/ps`
//! entries), decoded from syncd's JSON, turned into the compact routing
//! map and decoded from that, as the fetching worker and the others do.
//! Run with `cargo run --release -p filter --example map_cost`; it prints
//! figures, it asserts nothing. (Envoy's V8 runs the same code slower.)

use std::time::Instant;

use filter::map_store::decode_map;
use filter::routing_map::RoutingMap;
use model_map::{InstanceState, Loaded, ModelEntry, ModelMap, Replica};
use serde_json::json;

const INSTANCES: usize = 1000;
const MODELS: usize = 200;
const PER_INSTANCE: usize = 20;

fn replica(i: usize, model: &str, loaded: bool) -> Replica {
    let details = json!({"parent_model": "", "format": "gguf", "family": "llama",
        "families": ["llama"], "parameter_size": "3.2B", "quantization_level": "Q4_K_M"});
    let digest = format!("{:064x}", model.len() * 7919);
    let listed = json!({"name": format!("{model}:latest"), "model": format!("{model}:latest"),
        "modified_at": "2026-11-30T12:00:00.123456789Z", "size": 2_019_393_189u64,
        "digest": digest, "details": details});
    let loaded = loaded.then(|| Loaded {
        size: 2_019_393_189,
        size_vram: 2_019_393_189,
        expires_at: "2026-12-01T00:05:00Z".into(),
        expires_unix: 1_764_547_500,
        context_length: Some(4096),
        entry: Some(
            json!({"name": format!("{model}:latest"), "model": format!("{model}:latest"),
            "size": 2_019_393_189u64, "digest": digest, "details": details,
            "expires_at": "2026-12-01T00:05:42.123456789Z", "size_vram": 2_019_393_189u64,
            "context_length": 4096})
            .into(),
        ),
    });
    Replica {
        instance: format!("n{i}"),
        digest,
        size: 2_019_393_189,
        modified_at: "2026-11-30T12:00:00.123456789Z".into(),
        modified_unix: 1_764_504_000,
        details: details.into(),
        loaded,
        listed: Some(listed.into()),
    }
}

fn big_map() -> ModelMap {
    let instances = (0..INSTANCES)
        .map(|i| InstanceState {
            name: format!("n{i}"),
            url: format!("http://127.0.0.1:{}", 20_000 + i),
            cluster: format!("ollama_n{i}"),
            authority: format!("127.0.0.1:{}", 20_000 + i),
            address: format!("127.0.0.1:{}", 20_000 + i),
            healthy: true,
            version: Some("0.9.7".into()),
        })
        .collect();
    let mut replicas: Vec<Vec<Replica>> = vec![Vec::new(); MODELS];
    for i in 0..INSTANCES {
        for k in 0..PER_INSTANCE {
            let j = (i * PER_INSTANCE + k) % MODELS;
            if let Some(r) = replicas.get_mut(j) {
                r.push(replica(i, &format!("s{j}"), k < 2));
            }
        }
    }
    let mut models: Vec<ModelEntry> = replicas
        .into_iter()
        .enumerate()
        .map(|(j, replicas)| {
            let name = model_map::ModelName::parse(&format!("s{j}")).unwrap_or_else(|e| {
                eprintln!("{e}");
                std::process::exit(1)
            });
            ModelEntry {
                key: name.key(),
                name: name.display_shortest(),
                canonical_digest: replicas
                    .first()
                    .map(|r| r.digest.clone())
                    .unwrap_or_default(),
                digest_mismatch: false,
                replicas,
            }
        })
        .collect();
    models.sort_by(|a, b| a.key.cmp(&b.key));
    ModelMap::new(instances, models).sealed()
}

/// Median milliseconds of five runs of `f`.
fn ms(mut f: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs.get(2).copied().unwrap_or(0.0)
}

fn main() {
    let map = big_map();
    let json = serde_json::to_vec(&map).unwrap_or_default();
    let routing = RoutingMap::new(map.clone());
    let compact = routing.encode();
    println!("syncd's JSON: {:.2} MB", json.len() as f64 / 1e6);
    println!("compact routing map: {:.3} MB", compact.len() as f64 / 1e6);
    let decode = ms(|| {
        std::hint::black_box(decode_map(&json).ok());
    });
    let build = ms(|| {
        std::hint::black_box(RoutingMap::of(&map));
    });
    let reads = ms(|| {
        std::hint::black_box(filter::fleet_reads::FleetReads::render(&map));
    });
    let tags = ms(|| {
        std::hint::black_box(filter::fleet_reads::tags(&map));
    });
    let ps = ms(|| {
        std::hint::black_box(filter::fleet_reads::ps(&map));
    });
    let models = ms(|| {
        std::hint::black_box(filter::fleet_reads::openai_models(&map));
    });
    let encode = ms(|| {
        std::hint::black_box(routing.encode());
    });
    let install = ms(|| {
        std::hint::black_box(RoutingMap::decode(&compact).ok());
    });
    let seal = ms(|| {
        std::hint::black_box(map.clone().sealed());
    });
    println!("decode syncd's JSON (the fetching worker, once per process): {decode:.1} ms");
    println!("build the routing map and render the fleet reads: {build:.1} ms");
    println!("  of which rendering the fleet reads: {reads:.1} ms");
    println!("    /api/tags {tags:.1} ms, /api/ps {ps:.1} ms, /v1/models {models:.1} ms");
    println!("encode the compact form: {encode:.1} ms");
    println!("decode the compact form (every other worker): {install:.2} ms");
    println!("syncd: clone + seal (hash) the map: {seal:.1} ms");
}
