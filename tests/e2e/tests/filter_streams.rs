//! Streams through the filter with the real syncd: chunks pass through as
//! the instance produces them, and the in-flight counts return to zero
//! after a burst of concurrent streams of which half are cut by the client.

use e2e::Rig;
use std::time::{Duration, Instant};

const CHAT: &str = r#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}"#;

async fn inflight(envoy: &e2e::Envoy, name: &str) -> Option<i64> {
    envoy
        .stat(&format!("wasmcustom.ollama_lb.inflight.{name}"))
        .await
}

/// The per-model count of llama3.2 on instance `name`.
async fn model_inflight(envoy: &e2e::Envoy, name: &str) -> Option<i64> {
    envoy
        .stat(&format!(
            "wasmcustom.ollama_lb.model_inflight.{name}.registry.ollama.ai/library/llama3.2:latest"
        ))
        .await
}

#[tokio::test]
async fn streams_pass_through_and_every_stream_end_is_counted() -> anyhow::Result<()> {
    let mut rig = Rig::new("filter_streams");
    let args = [
        "--model",
        "llama3.2",
        "--loaded",
        "llama3.2",
        "--tokens-per-second",
        "25",
        "--response-tokens",
        "20",
        "--num-parallel",
        "16",
    ];
    let a = rig.emulator("a", &args).await?;
    let b = rig.emulator("b", &args).await?;
    let syncd = rig.syncd(&[&a, &b], &[]).await?;
    let config = rig.envoy_config(&[&a, &b], syncd.addr);
    let envoy = rig.envoy(&config, 2).await?;
    let client = e2e::http();
    envoy.wait_for_map().await?;

    // Unbuffered: 20 tokens at 25/s take ~800 ms; the first must arrive long
    // before the last.
    let started = Instant::now();
    let mut resp = client
        .post(format!("{}/api/chat", envoy.url))
        .body(CHAT)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let mut first = None;
    let mut chunks = 0;
    while let Some(chunk) = resp.chunk().await? {
        first.get_or_insert(started.elapsed());
        chunks += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let (first, total) = (first.expect("a chunk"), started.elapsed());
    assert_eq!(chunks, 21, "20 tokens and the final line");
    assert!(
        first * 4 < total,
        "first chunk after {first:?}, the whole stream took {total:?}"
    );

    // A burst of 12 concurrent streams; every other one is dropped by the
    // client after its first chunk.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let client = client.clone();
        let url = format!("{}/api/chat", envoy.url);
        tasks.push(tokio::spawn(async move {
            let mut resp = client.post(url).body(CHAT).send().await?;
            anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
            if i % 2 == 0 {
                resp.chunk().await?;
                return Ok(false); // dropping the response resets the stream
            }
            while resp.chunk().await?.is_some() {}
            Ok(true)
        }));
    }
    // Streams are counted while they run, per instance and per model.
    e2e::until(
        "streams counted in flight",
        e2e::envoy::PATIENCE,
        || async {
            let during =
                inflight(&envoy, "a").await.unwrap_or(0) + inflight(&envoy, "b").await.unwrap_or(0);
            let per_model = model_inflight(&envoy, "a").await.unwrap_or(0)
                + model_inflight(&envoy, "b").await.unwrap_or(0);
            (during > 0 && per_model > 0).then_some(())
        },
    )
    .await?;
    let mut completed = 0;
    for t in tasks {
        if t.await?? {
            completed += 1;
        }
    }
    assert_eq!(completed, 6);
    // The cut streams end in Envoy when it notices the reset; give it a
    // moment, then every count must be back at zero.
    let mut counts = (None, None, None, None);
    let settled = (Some(0), Some(0), Some(0), Some(0));
    for _ in 0..100 {
        counts = (
            inflight(&envoy, "a").await,
            inflight(&envoy, "b").await,
            model_inflight(&envoy, "a").await,
            model_inflight(&envoy, "b").await,
        );
        if counts == settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        counts, settled,
        "in-flight counts (per instance, per model) after the burst"
    );
    Ok(())
}
