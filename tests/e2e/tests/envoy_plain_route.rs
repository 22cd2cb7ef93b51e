//! The rig itself: the real Envoy with the fleet cluster and no filter, in
//! front of two emulators, streaming a chat through it from the instance
//! the override-host header names.

use e2e::rig::Rig;
use std::time::Instant;

#[tokio::test]
async fn envoy_streams_a_chat_from_either_emulator() -> anyhow::Result<()> {
    let mut rig = Rig::new("envoy_plain_route");
    let a = rig
        .emulator(
            "a",
            &[
                "--model",
                "llama3.2",
                "--loaded",
                "llama3.2",
                "--tokens-per-second",
                "40",
            ],
        )
        .await?;
    let b = rig
        .emulator(
            "b",
            &[
                "--model",
                "llama3.2",
                "--loaded",
                "llama3.2",
                "--tokens-per-second",
                "40",
            ],
        )
        .await?;
    // No filter, so no map polls: syncd's address only has to be valid.
    let no_syncd = std::net::TcpListener::bind("127.0.0.1:0")?;
    let mut config = rig.envoy_config(&[&a, &b], no_syncd.local_addr()?);
    config.wasm_path = None;
    config.fleet_endpoints = e2e::envoy_config::FleetEndpoints::Static;
    let envoy = rig.envoy(&config, 1).await?;

    for emu in [&a, &b] {
        let started = Instant::now();
        let mut resp = e2e::http()
            .post(format!("{}/api/chat", envoy.url))
            .header("x-ollama-lb-endpoints", emu.addr.to_string())
            .json(&serde_json::json!({
                "model": "llama3.2",
                "messages": [{"role": "user", "content": "hi"}],
            }))
            .send()
            .await?;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-emu-instance"], emu.name.as_str());
        assert_eq!(
            resp.headers()["content-type"],
            "application/x-ndjson",
            "native streams are NDJSON"
        );
        let mut body = Vec::new();
        let mut first_chunk_at = None;
        while let Some(chunk) = resp.chunk().await? {
            first_chunk_at.get_or_insert_with(|| started.elapsed());
            body.extend_from_slice(&chunk);
        }
        let total = started.elapsed();
        let lines: Vec<serde_json::Value> = String::from_utf8(body)?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        assert!(lines.len() > 2, "streamed in several chunks: {lines:?}");
        let last = lines.last().expect("at least one line");
        assert_eq!(last["done"], true);
        assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));
        let first = first_chunk_at.expect("a chunk arrived");
        assert!(
            first < total / 2,
            "Envoy passes chunks through as they come (first {first:?}, all {total:?})"
        );
    }
    Ok(())
}
