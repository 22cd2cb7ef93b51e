//! Conversation affinity through the real Envoy: the turns of a chat stay
//! on the instance whose slot holds its prompt (each later turn a cache
//! hit there), other conversations spread over the fleet, and a
//! conversation moves when its instance is busier than the slack allows
//! or refuses connections, without any affinity header.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use e2e::{Emu, Envoy, Rig, Syncd};
use serde_json::{json, Value};

const STAT_MODEL: &str = "registry.ollama.ai/library/m:latest";

struct Fleet {
    rig: Rig,
    emus: Vec<Emu>,
    _syncd: Syncd,
    envoy: Envoy,
}

/// Three instances with `m` loaded and one slot each; the filter's
/// defaults but `conversation_slack: 0`, so one request ahead moves a turn.
async fn fleet(test: &str) -> anyhow::Result<Fleet> {
    let mut rig = Rig::new(test);
    let mut emus = Vec::new();
    for name in ["a", "b", "c"] {
        let args = [
            "--model",
            "m",
            "--loaded",
            "m",
            "--tokens-per-second",
            "400",
            "--response-tokens",
            "4",
            "--num-parallel",
            "1",
        ];
        emus.push(rig.emulator(name, &args).await?);
    }
    let refs: Vec<&Emu> = emus.iter().collect();
    let syncd = rig.syncd(&refs, &[]).await?;
    let mut config = rig.envoy_config(&refs, syncd.addr);
    if let Some(plugin) = config.plugin_config.as_object_mut() {
        plugin.insert("conversation_slack".into(), json!(0));
    }
    let envoy = rig.envoy(&config, 2).await?;
    let url = envoy.url.clone();
    let ready = e2e::until("m routable", Duration::from_secs(30), || {
        let url = url.clone();
        async move {
            let tags = e2e::http()
                .get(format!("{url}/api/tags"))
                .send()
                .await
                .ok()?;
            tags.text().await.ok()?.contains("m:latest").then_some(())
        }
    })
    .await;
    if let Err(e) = ready {
        anyhow::bail!("{e}\n{}", rig.logs());
    }
    Ok(Fleet {
        rig,
        emus,
        _syncd: syncd,
        envoy,
    })
}

/// A conversation's body after `turns` user turns (and the replies
/// between them).
fn chat_body(conversation: &str, turns: usize) -> Value {
    let mut messages = vec![json!({"role": "system", "content": "You answer briefly."})];
    for t in 0..turns {
        messages.push(json!({"role": "user", "content": format!("{conversation}: question {t}")}));
        if t + 1 < turns {
            messages.push(json!({"role": "assistant", "content": format!("answer {t}")}));
        }
    }
    json!({"model": "m", "messages": messages, "stream": false})
}

impl Fleet {
    fn emu(&self, name: &str) -> anyhow::Result<&Emu> {
        self.emus
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| anyhow::anyhow!("no instance {name}"))
    }

    /// Sends one turn; returns the instance that answered.
    async fn turn(&self, conversation: &str, turns: usize) -> anyhow::Result<String> {
        let resp = e2e::http()
            .post(format!("{}/api/chat", self.envoy.url))
            .json(&chat_body(conversation, turns))
            .send()
            .await?;
        let status = resp.status();
        let instance = resp
            .headers()
            .get("x-emu-instance")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = resp.text().await?;
        anyhow::ensure!(
            status == 200,
            "{conversation} turn {turns}: {status} {body}\n{}",
            self.rig.logs()
        );
        Ok(instance)
    }

    async fn emu_stats(&self, name: &str) -> anyhow::Result<Value> {
        let url = format!("{}/_emu/stats", self.emu(name)?.url);
        Ok(e2e::http().get(url).send().await?.json().await?)
    }

    async fn post_emu(&self, name: &str, path: &str, body: Value) -> anyhow::Result<()> {
        let url = format!("{}/_emu/{path}", self.emu(name)?.url);
        let resp = e2e::http().post(url).json(&body).send().await?;
        anyhow::ensure!(resp.status() == 200, "{path}: {}", resp.status());
        Ok(())
    }

    async fn model_inflight(&self, instance: &str) -> i64 {
        let name = format!("wasmcustom.ollama_lb.model_inflight.{instance}.{STAT_MODEL}");
        self.envoy.stat(&name).await.unwrap_or(0)
    }
}

#[tokio::test]
async fn a_conversation_stays_where_its_prompt_is_cached_and_moves_when_it_must(
) -> anyhow::Result<()> {
    let f = fleet("conversation_affinity").await?;

    // Every turn of one conversation on one instance, each a cache hit.
    let home = f.turn("alice", 1).await?;
    let hits_before = f.emu_stats(&home).await?["prompt_cache_hits"]
        .as_u64()
        .unwrap_or(0);
    for turns in 2..=5 {
        assert_eq!(f.turn("alice", turns).await?, home, "turn {turns}");
    }
    let hits = f.emu_stats(&home).await?["prompt_cache_hits"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(hits - hits_before, 4, "turns 2-5 reused the cached prompt");

    // Other conversations: each keeps its own instance, and they spread.
    let mut homes = std::collections::BTreeSet::new();
    for c in 0..12 {
        let name = format!("user{c}");
        let first = f.turn(&name, 1).await?;
        assert_eq!(f.turn(&name, 2).await?, first, "{name}");
        homes.insert(first);
    }
    assert!(homes.len() >= 2, "conversations spread: {homes:?}");

    // Home busy (a slow reply of another request in flight there): the
    // next turn goes elsewhere; once it is idle again, the turn comes back.
    f.post_emu(&home, "config", json!({"tokens_per_second": 2.0}))
        .await?;
    let slow = {
        let url = format!("{}/api/chat", f.envoy.url);
        let body = chat_body("alice", 5);
        tokio::spawn(async move { e2e::http().post(url).json(&body).send().await })
    };
    let busy = e2e::until(
        "the slow reply in flight",
        Duration::from_secs(30),
        || async { (f.model_inflight(&home).await == 1).then_some(()) },
    )
    .await;
    busy.map_err(|e| anyhow::anyhow!("{e}\n{}", f.rig.logs()))?;
    let elsewhere = f.turn("alice", 6).await?;
    assert_ne!(elsewhere, home, "home has one ahead, slack 0");
    slow.await??;
    let idle = e2e::until(
        "the slow reply counted out",
        Duration::from_secs(30),
        || async { (f.model_inflight(&home).await == 0).then_some(()) },
    )
    .await;
    idle.map_err(|e| anyhow::anyhow!("{e}\n{}", f.rig.logs()))?;
    f.post_emu(&home, "config", json!({"tokens_per_second": 400.0}))
        .await?;
    assert_eq!(f.turn("alice", 7).await?, home, "back home once idle");

    // Home refusing connections: Envoy's retry serves the turn elsewhere.
    f.post_emu(&home, "fault", json!({"kind": "refuse", "ms": 60_000}))
        .await?;
    let moved = f.turn("alice", 8).await?;
    assert_ne!(moved, home);
    Ok(())
}
