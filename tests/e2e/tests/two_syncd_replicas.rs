//! Two syncd replicas behind one Envoy `syncd` cluster: the filter's long
//! polls alternate between them, and it must not swing between their maps.
//! Both poll the same emulated fleet, so they publish the same id; when
//! the fleet changes, one replica sees it a poll before the other, and the
//! filter still installs the new map once.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use e2e::{Envoy, Rig, Syncd};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// Per Envoy thread, the ids of the maps the filter installed, in order.
fn installs(log: &str) -> BTreeMap<String, Vec<String>> {
    let mut by_thread: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once("installed model map ") else {
            continue;
        };
        let id = rest.split_whitespace().next().unwrap_or_default();
        // `[date time][thread][level]...`
        let thread = line.split(['[', ']']).nth(3).unwrap_or_default();
        by_thread
            .entry(thread.to_string())
            .or_default()
            .push(id.to_string());
    }
    by_thread
}

async fn map_id(syncd: &Syncd) -> anyhow::Result<String> {
    let map: serde_json::Value = e2e::http()
        .get(format!("{}/v1/map", syncd.url))
        .send()
        .await?
        .json()
        .await?;
    Ok(map["id"].as_str().unwrap_or_default().to_string())
}

/// Map polls each syncd endpoint answered, from Envoy's `/clusters`.
async fn polls_per_replica(envoy: &Envoy) -> anyhow::Result<Vec<u64>> {
    let text = e2e::http()
        .get(format!("{}/clusters", envoy.admin))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("syncd::") && l.contains("::rq_total::"))
        .filter_map(|l| l.rsplit("::").next()?.parse().ok())
        .collect())
}

#[tokio::test]
async fn two_syncd_replicas_publish_one_map_and_the_filter_does_not_flap() -> anyhow::Result<()> {
    // That expiry is published to the minute, so the map legitimately
    // changes when the clock passes a minute boundary; keep the test (about
    // 15 s) inside one minute.
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64()
        % 60.0;
    if second > 35.0 {
        tokio::time::sleep(Duration::try_from_secs_f64(60.5 - second).unwrap_or_default()).await;
    }
    let mut rig = Rig::new("two_syncd");
    // A loaded model streaming a reply: while a request runs, Ollama
    // reports its expiry as "now + keep-alive", the volatile field that made
    // every poll, and each replica, publish a different map.
    let a = rig
        .emulator(
            "a",
            &[
                "--loaded",
                "llama3",
                "--tokens-per-second",
                "8",
                "--response-tokens",
                "40",
            ],
        )
        .await?;
    let b = rig.emulator("b", &["--model", "mistral"]).await?;
    let one = rig.syncd(&[&a, &b], &[]).await?;
    let two = rig.syncd(&[&a, &b], &[]).await?;
    let mut config = rig.envoy_config(&[&a, &b], one.addr);
    config.syncd_replicas = vec![(two.addr.ip().to_string(), two.addr.port())];
    config.plugin_config = json!({"long_poll_seconds": 1});
    let envoy = rig.envoy(&config, 2).await?;
    let mut ready = false;
    for _ in 0..200 {
        if e2e::http()
            .get(format!("{}/api/tags", envoy.url))
            .send()
            .await?
            .status()
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "the filter never installed a map");

    // Several seconds of one-second long polls, alternating, while a
    // five-second stream runs on a.
    let stream = e2e::http()
        .post(format!("{}/api/generate", envoy.url))
        .body(r#"{"model":"llama3","prompt":"hi"}"#)
        .send();
    let (streamed, ()) = tokio::join!(
        async { stream.await?.error_for_status()?.text().await },
        tokio::time::sleep(Duration::from_secs(6))
    );
    assert!(streamed?.contains("\"done\":true"), "the stream finished");
    let polls = polls_per_replica(&envoy).await?;
    assert!(
        polls.len() == 2 && polls.iter().all(|n| *n >= 2),
        "both replicas answer map polls: {polls:?}"
    );
    let (id_one, id_two) = (map_id(&one).await?, map_id(&two).await?);
    assert_eq!(id_one, id_two, "both replicas publish the same map");
    let before = installs(&rig.proc(envoy.proc).output());
    for (thread, ids) in &before {
        assert_eq!(
            ids,
            std::slice::from_ref(&id_one),
            "thread {thread} installed {ids:?}"
        );
    }

    // A change on one instance: each replica sees it on its own next poll.
    e2e::http()
        .post(format!("{}/_emu/model", a.url))
        .json(&json!({"name": "x"}))
        .send()
        .await?
        .error_for_status()?;
    let mut seen = false;
    for _ in 0..100 {
        let tags = e2e::http()
            .get(format!("{}/api/tags", envoy.url))
            .send()
            .await?
            .text()
            .await?;
        if tags.contains("x:latest") {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the filter never installed the map with x");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (new_one, new_two) = (map_id(&one).await?, map_id(&two).await?);
    assert_eq!(new_one, new_two, "both replicas agree again");
    assert_ne!(new_one, id_one);
    let after = installs(&rig.proc(envoy.proc).output());
    for (thread, ids) in &after {
        assert_eq!(
            ids,
            &[id_one.clone(), new_one.clone()],
            "thread {thread}: the new map is installed once, the old one never again"
        );
    }
    assert!(
        envoy.errors(&mut rig).is_empty(),
        "{:?}",
        envoy.errors(&mut rig)
    );
    Ok(())
}
