//! `expires_at` in the merged `/api/ps` is what the instance sent, to the
//! nanosecond, while the map id stays: syncd republishes a map whose id is
//! unchanged but whose exact entries moved under the same id with a later
//! `x-ollama-lb-map-fresh`, and the filter, which sends its own `fresh=`,
//! installs it without treating it as a new map.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use e2e::Rig;
use serde_json::{json, Value};
use std::time::Duration;

async fn text(url: String) -> anyhow::Result<String> {
    Ok(e2e::http().get(url).send().await?.text().await?)
}

/// The `expires_at` of the only model an `/api/ps` body lists.
fn expiry(ps: &str) -> String {
    let v: Value = serde_json::from_str(ps).unwrap_or(Value::Null);
    v["models"][0]["expires_at"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The minute of an RFC 3339 time, which the map id counts.
fn minute(rfc3339: &str) -> String {
    rfc3339.get(..16).unwrap_or_default().to_string()
}

#[tokio::test]
async fn the_merged_ps_shows_the_exact_expiry_under_the_same_map_id() -> anyhow::Result<()> {
    let mut rig = Rig::new("exact_expiry");
    let a = rig.emulator("a", &["--loaded", "llama3"]).await?;
    let b = rig.emulator("b", &["--model", "llama3"]).await?;
    let syncd = rig.syncd(&[&a, &b], &[]).await?;
    let config = rig.envoy_config(&[&a, &b], syncd.addr);
    let envoy = rig.envoy(&config, 2).await?;
    let map_id = || async {
        let map: Value = e2e::http()
            .get(format!("{}/v1/map", syncd.url))
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok(map["id"].as_str().unwrap_or_default().to_string())
    };

    // Move a's expiry by a few seconds until a move stays inside one
    // minute (the id counts minutes), then wait for Envoy to show it.
    let mut moved_within_minute = false;
    for step in 1..=20u64 {
        let before = expiry(&text(format!("{}/api/ps", a.url)).await?);
        // The map settled on `before` (Envoy shows it exactly).
        let mut settled = false;
        for _ in 0..400 {
            if expiry(&text(format!("{}/api/ps", envoy.url)).await?) == before {
                settled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(settled, "Envoy never showed the expiry {before}");
        let id_before = map_id().await?;
        let keep_alive = format!("{}s", 300 + 3 * step);
        e2e::http()
            .post(format!("{}/_emu/load", a.url))
            .json(&json!({"name": "llama3", "keep_alive": keep_alive}))
            .send()
            .await?
            .error_for_status()?;
        let direct = text(format!("{}/api/ps", a.url)).await?;
        let after = expiry(&direct);
        assert_ne!(after, before, "the emulator moved the expiry");
        if minute(&after) != minute(&before) {
            continue;
        }
        let mut through = String::new();
        for _ in 0..400 {
            through = text(format!("{}/api/ps", envoy.url)).await?;
            if expiry(&through) == after {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(
            through, direct,
            "Envoy's /api/ps is the instance's, byte for byte"
        );
        assert_eq!(map_id().await?, id_before, "the map id did not move");
        moved_within_minute = true;
        break;
    }
    assert!(moved_within_minute, "no expiry move stayed inside a minute");

    // Routing is as before: the loaded instance serves the model.
    let resp = e2e::http()
        .post(format!("{}/api/generate", envoy.url))
        .body(r#"{"model":"llama3","prompt":"hi","stream":false}"#)
        .send()
        .await?;
    assert_eq!(resp.headers()["x-emu-instance"], "a");
    Ok(())
}
