//! Two syncd replicas behind one Envoy `syncd` cluster: the filter's long
//! polls alternate between them, and it must not swing between their maps.
//! Both poll the same emulated fleet, so they publish the same id; when
//! the fleet changes, one replica sees it a poll before the other, and the
//! filter still installs the new map once. The property checked is that no
//! worker installs a map it had already left: a legitimate change (say the
//! loaded model's expiry passing a minute) may come at any time, so the
//! test does not care which maps came between, only that none came back.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use e2e::envoy::PATIENCE;
use e2e::{Envoy, Rig, Syncd};
use serde_json::json;
use std::collections::BTreeMap;

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

/// The map a replica publishes now.
async fn map_of(syncd: &Syncd) -> Option<model_map::ModelMap> {
    let resp = e2e::http()
        .get(format!("{}/v1/map", syncd.url))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

/// Waits until both replicas publish the same map and it satisfies `pred`;
/// returns its id.
async fn agreed(
    one: &Syncd,
    two: &Syncd,
    what: &str,
    pred: impl Fn(&model_map::ModelMap) -> bool,
) -> anyhow::Result<String> {
    e2e::until(what, PATIENCE, || async {
        let (x, y) = (map_of(one).await?, map_of(two).await?);
        (x.id == y.id && pred(&x)).then_some(x.id)
    })
    .await
}

/// Waits until every syncd endpoint answered `more` map polls beyond
/// `since` (from [`polls_per_replica`]).
async fn more_polls(envoy: &Envoy, since: &[u64], more: u64) -> anyhow::Result<Vec<u64>> {
    e2e::until("both replicas answer map polls", PATIENCE, || async {
        let polls = polls_per_replica(envoy).await.ok()?;
        let each = polls.len() == 2
            && polls
                .iter()
                .enumerate()
                .all(|(i, n)| *n >= since.get(i).copied().unwrap_or(0) + more);
        each.then_some(polls)
    })
    .await
}

/// Fails if a worker installed a map twice (it swung back to one it had
/// left) or did not end on `last`.
fn assert_no_flap(log: &str, last: &str) {
    for (thread, ids) in installs(log) {
        let mut seen = std::collections::BTreeSet::new();
        for id in &ids {
            assert!(
                seen.insert(id),
                "thread {thread} installed {id} twice: {ids:?}"
            );
        }
        assert_eq!(
            ids.last().map(String::as_str),
            Some(last),
            "thread {thread}: {ids:?}"
        );
    }
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
                "24",
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
    envoy.wait_for_map().await?;

    // One-second long polls, alternating, while a three-second stream runs
    // on a.
    let streamed = e2e::http()
        .post(format!("{}/api/generate", envoy.url))
        .body(r#"{"model":"llama3","prompt":"hi"}"#)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    assert!(streamed.contains("\"done\":true"), "the stream finished");
    more_polls(&envoy, &[], 2).await?;
    let id_one = agreed(&one, &two, "both replicas publish the same map", |_| true).await?;
    envoy.installed(&rig, &id_one, 2).await?;
    assert_no_flap(&rig.output_of(envoy.proc), &id_one);

    // A change on one instance: each replica sees it on its own next poll.
    e2e::http()
        .post(format!("{}/_emu/model", a.url))
        .json(&json!({"name": "x"}))
        .send()
        .await?
        .error_for_status()?;
    let with_x = |m: &model_map::ModelMap| m.models.iter().any(|e| e.name == "x:latest");
    let new_id = agreed(&one, &two, "both replicas publish the map with x", with_x).await?;
    assert_ne!(new_id, id_one);
    envoy.installed(&rig, &new_id, 2).await?;
    // Two more polls of each replica: a swing back would show by then.
    let polls = polls_per_replica(&envoy).await?;
    more_polls(&envoy, &polls, 2).await?;
    assert_no_flap(&rig.output_of(envoy.proc), &new_id);
    Ok(())
}
