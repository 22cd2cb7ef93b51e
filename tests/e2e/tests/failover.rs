//! Failover through the real Envoy under a bounded concurrent load of
//! streamed and non-streamed native and OpenAI requests: an instance killed,
//! busy (503) on generation only, cutting streams, hung, restarted; syncd
//! restarted while an instance dies. Every outcome is counted; the only
//! failures allowed are responses that had already begun on the instance
//! that failed (Envoy never replays a response it started to send). The
//! times measured are printed (`--nocapture`), not asserted: they depend on
//! the machine.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use e2e::envoy_config::EnvoyConfig;
use e2e::load::{fast_model_args, summary, Load, Outcome};
use e2e::{Emu, Envoy, Rig, Syncd};

const MODEL: &str = "m";
const CLIENTS: usize = 6;

struct Fleet {
    rig: Rig,
    emus: Vec<Emu>,
    syncd: Syncd,
    envoy: Envoy,
}

/// Three instances all holding `m` (loaded), syncd, and Envoy (two
/// workers) configured by `tune`, ready to route.
async fn fleet(test: &str, tune: impl FnOnce(&mut EnvoyConfig)) -> anyhow::Result<Fleet> {
    let mut rig = Rig::new(test);
    let mut emus = Vec::new();
    for name in ["a", "b", "c"] {
        emus.push(rig.emulator(name, &fast_model_args("m")).await?);
    }
    let refs: Vec<&Emu> = emus.iter().collect();
    let syncd = rig.syncd(&refs, &[]).await?;
    let mut config = rig.envoy_config(&refs, syncd.addr);
    tune(&mut config);
    let envoy = rig.envoy(&config, 2).await?;
    let fleet = Fleet {
        rig,
        emus,
        syncd,
        envoy,
    };
    fleet
        .until(
            "every instance routable",
            Duration::from_secs(30),
            || async {
                let tags = e2e::http()
                    .get(format!("{}/api/tags", fleet.envoy.url))
                    .send()
                    .await
                    .ok()?;
                tags.text().await.ok()?.contains("m:latest").then_some(())
            },
        )
        .await?;
    // What the instance answers, without Envoy's own x-envoy-* headers.
    let answer = e2e::http()
        .post(format!("{}/api/generate", fleet.envoy.url))
        .body(r#"{"model":"m","prompt":"hi","stream":false}"#)
        .send()
        .await?;
    let added: Vec<_> = answer
        .headers()
        .keys()
        .filter(|k| k.as_str().starts_with("x-envoy"))
        .collect();
    anyhow::ensure!(added.is_empty(), "Envoy's headers on an answer: {added:?}");
    Ok(fleet)
}

impl Fleet {
    fn emu(&self, name: &str) -> &Emu {
        self.emus
            .iter()
            .find(|e| e.name == name)
            .expect("an instance of the fleet")
    }

    /// Polls `check` until it gives a value; the rig's logs on failure.
    async fn until<T, F, Fut>(&self, what: &str, limit: Duration, check: F) -> anyhow::Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        e2e::until(what, limit, check)
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n{}", self.rig.logs()))
    }

    async fn stat(&self, name: &str) -> i64 {
        self.envoy.stat(name).await.unwrap_or(0)
    }

    /// Requests the filter routed to `instance` first.
    async fn routed(&self, instance: &str) -> i64 {
        self.envoy.routed(instance).await
    }

    async fn routed_total(&self) -> i64 {
        let mut total = 0;
        for e in &self.emus {
            total += self.routed(&e.name).await;
        }
        total
    }

    /// Waits until `n` more requests were routed (the load is running).
    async fn more_requests(&self, n: i64) -> anyhow::Result<()> {
        let target = self.routed_total().await + n;
        self.until("the load moves on", Duration::from_secs(60), || async {
            (self.routed_total().await >= target).then_some(())
        })
        .await
    }

    async fn fault(&self, instance: &str, fault: serde_json::Value) -> anyhow::Result<()> {
        let resp = e2e::http()
            .post(format!("{}/_emu/fault", self.emu(instance).url))
            .json(&fault)
            .send()
            .await?;
        anyhow::ensure!(resp.status() == 200, "fault not applied: {}", resp.status());
        Ok(())
    }

    /// Waits until syncd has `instance` down and Envoy's workers installed
    /// that map; returns when the last of them did.
    async fn installed_down(&self, instance: &str) -> anyhow::Result<Instant> {
        let id = self
            .until("syncd marks it down", Duration::from_secs(30), || async {
                let map: model_map::ModelMap = e2e::http()
                    .get(format!("{}/v1/map", self.syncd.url))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let down = map
                    .instances
                    .iter()
                    .any(|i| i.name == instance && !i.healthy);
                down.then_some(map.id)
            })
            .await?;
        self.installed(&id).await
    }

    /// Waits until both Envoy workers installed map `id`.
    async fn installed(&self, id: &str) -> anyhow::Result<Instant> {
        self.envoy
            .installed(&self.rig, id, 2)
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n{}", self.rig.logs()))?;
        Ok(Instant::now())
    }

    /// Waits until no request is counted in flight anywhere.
    async fn gauges_at_zero(&self) -> anyhow::Result<()> {
        self.until(
            "in-flight gauges back at 0",
            Duration::from_secs(30),
            || async {
                for e in &self.emus {
                    let name = format!("wasmcustom.ollama_lb.inflight.{}", e.name);
                    let model = format!(
                    "wasmcustom.ollama_lb.model_inflight.{}.registry.ollama.ai/library/m:latest",
                    e.name
                );
                    if self.stat(&name).await != 0 || self.stat(&model).await != 0 {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await
    }
}

/// Failures other than responses that had begun on `culprit`.
fn unexplained<'o>(outcomes: &'o [Outcome], culprit: &str) -> Vec<&'o Outcome> {
    outcomes
        .iter()
        .filter(|o| o.failed() && !(o.began && o.instance.as_deref() == Some(culprit)))
        .collect()
}

#[tokio::test]
async fn a_killed_instance_fails_only_the_responses_it_had_begun() -> anyhow::Result<()> {
    let mut f = fleet("failover_kill", |_| {}).await?;
    let load = Load::start(&f.envoy.url, MODEL, CLIENTS);
    f.more_requests(40).await?;
    let b = f.emu("b").proc;
    f.rig.kill(b);
    let killed_at = load.now();
    f.more_requests(120).await?;
    let outcomes = load.stop().await;
    let cut = outcomes.iter().filter(|o| o.failed()).count();
    println!(
        "kill: {} requests, {cut} failed (responses already begun on b), {} retried by Envoy",
        outcomes.len(),
        f.stat("cluster.ollama_fleet.upstream_rq_retry_success")
            .await
    );
    assert!(
        unexplained(&outcomes, "b").is_empty(),
        "{}",
        summary(&outcomes)
    );
    assert!(
        outcomes
            .iter()
            .filter(|o| o.sent > killed_at + Duration::from_millis(100))
            .all(|o| !o.failed()),
        "nothing sent after the kill failed: {}",
        summary(&outcomes)
    );
    f.gauges_at_zero().await?;
    Ok(())
}

#[tokio::test]
async fn an_instance_busy_on_generation_only_fails_no_request() -> anyhow::Result<()> {
    let f = fleet("failover_busy", |_| {}).await?;
    let load = Load::start(&f.envoy.url, MODEL, CLIENTS);
    f.more_requests(20).await?;
    let generation = ["/api/chat", "/api/generate", "/v1/"];
    f.fault(
        "b",
        serde_json::json!({"kind": "status", "code": 503, "paths": generation}),
    )
    .await?;
    let before = f.routed("b").await;
    f.more_requests(150).await?;
    let outcomes = load.stop().await;
    println!(
        "busy: {} requests, {} failed; b was tried first {} times while busy, {} retries succeeded",
        outcomes.len(),
        outcomes.iter().filter(|o| o.failed()).count(),
        f.routed("b").await - before,
        f.stat("cluster.ollama_fleet.upstream_rq_retry_success")
            .await
    );
    assert!(
        outcomes.iter().all(|o| !o.failed()),
        "{}",
        summary(&outcomes)
    );
    let from_b = outcomes
        .iter()
        .filter(|o| o.instance.as_deref() == Some("b") && o.status == 503)
        .count();
    assert_eq!(from_b, 0, "no client saw b's 503");
    f.gauges_at_zero().await?;
    Ok(())
}

#[tokio::test]
async fn an_instance_cutting_streams_is_ejected_after_a_bounded_number_of_failures(
) -> anyhow::Result<()> {
    // The default cool-down: once b has cut a stream it is ranked last
    // for 5 s, then 10 s, 20 s… while it keeps failing, so only streams
    // already running on it can still be cut (at most one per client),
    // plus one per cool-down that ends during the run (none here).
    let f = fleet("failover_cut", |_| {}).await?;
    let load = Load::start(&f.envoy.url, MODEL, CLIENTS);
    f.more_requests(20).await?;
    f.fault(
        "b",
        serde_json::json!({"kind": "cut_stream", "after_chunks": 2}),
    )
    .await?;
    f.more_requests(200).await?;
    let outcomes = load.stop().await;
    let cut = outcomes.iter().filter(|o| o.failed()).count();
    println!(
        "cut streams: {} requests, {cut} cut by b (bound: {CLIENTS})",
        outcomes.len()
    );
    assert!(
        unexplained(&outcomes, "b").is_empty(),
        "{}",
        summary(&outcomes)
    );
    assert!(cut <= CLIENTS, "{}", summary(&outcomes));
    f.gauges_at_zero().await?;
    Ok(())
}

#[tokio::test]
async fn a_hung_instance_is_avoided_and_stuck_requests_are_retried() -> anyhow::Result<()> {
    let per_try = Duration::from_secs(1);
    let mut f = fleet("failover_hang", |c| {
        c.failover.per_try_timeout = Some(per_try);
        c.plugin_config = serde_json::json!({"affinity_header": "x-chat"});
    })
    .await?;
    let load = Load::start(&f.envoy.url, MODEL, CLIENTS);
    f.more_requests(20).await?;
    let b = f.emu("b").proc;
    f.rig.signal(b, "STOP")?;
    let frozen = Instant::now();
    // A conversation whose first place is b (rendezvous hashing) is stuck
    // there for the per-try timeout, then served by its next place.
    let (url, key) = (f.envoy.url.clone(), conversation_on("b"));
    let probe = tokio::spawn(async move { timed_chat(&url, &key).await });
    let installed = f.installed_down("b").await?;
    let avoided_after = installed - frozen;
    let routed_b = f.routed("b").await;
    f.more_requests(100).await?;
    let after = f.routed("b").await;
    // Streams that had begun on b before it froze cannot move (Envoy sent
    // their headers on); they resume with b.
    f.rig.signal(b, "CONT")?;
    let outcomes = load.stop().await;
    let stuck: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.ended - o.sent >= per_try)
        .collect();
    println!(
        "hang: new requests avoid b {avoided_after:?} after SIGSTOP; {} requests, {} failed, \
         {} stuck on b and retried after the {per_try:?} per-try timeout (slowest {:?})",
        outcomes.len(),
        outcomes.iter().filter(|o| o.failed()).count(),
        stuck.len(),
        stuck
            .iter()
            .map(|o| o.ended - o.sent)
            .max()
            .unwrap_or_default()
    );
    assert_eq!(
        after, routed_b,
        "no request routed to b once the map says it is down"
    );
    assert!(
        outcomes.iter().all(|o| !o.failed()),
        "{}",
        summary(&outcomes)
    );
    let (served_by, took) = probe.await??;
    println!("hang: a conversation on b was served by {served_by:?} after {took:?}");
    assert_ne!(served_by.as_deref(), Some("b"), "served after the retry");
    assert!(
        took >= per_try,
        "it waited for the per-try timeout: {took:?}"
    );
    assert!(
        f.stat("cluster.ollama_fleet.upstream_rq_per_try_timeout")
            .await
            >= 1
    );
    f.gauges_at_zero().await?;
    Ok(())
}

/// An affinity key whose rendezvous weight puts `instance` first among
/// the fleet's three.
fn conversation_on(instance: &str) -> String {
    (0..)
        .map(|i| format!("chat-{i}"))
        .find(|key| {
            let w = |name: &str| filter::policy::rendezvous_weight(key, name);
            ["a", "b", "c"]
                .iter()
                .all(|other| *other == instance || w(instance) > w(other))
        })
        .unwrap_or_default()
}

/// A non-streamed generate in conversation `chat`: who served it, and how
/// long it took.
async fn timed_chat(url: &str, chat: &str) -> anyhow::Result<(Option<String>, Duration)> {
    let start = Instant::now();
    let resp = e2e::http()
        .post(format!("{url}/api/generate"))
        .header("x-chat", chat)
        .body(r#"{"model":"m","prompt":"hi","stream":false}"#)
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
    let instance = resp
        .headers()
        .get("x-emu-instance")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((instance, start.elapsed()))
}

#[tokio::test]
async fn a_restarted_instance_is_served_again() -> anyhow::Result<()> {
    let mut f = fleet("failover_restart", |_| {}).await?;
    let load = Load::start(&f.envoy.url, MODEL, CLIENTS);
    f.more_requests(20).await?;
    let b = f.emu("b").clone();
    f.rig.kill(b.proc);
    f.installed_down("b").await?;
    f.more_requests(30).await?;
    let args = fast_model_args("m");
    let restarted = f.rig.emulator_on("b", &b.addr.to_string(), &args).await?;
    let listening = Instant::now();
    f.emus.retain(|e| e.name != "b");
    f.emus.push(restarted);
    let before = f.routed("b").await;
    f.until("b serves again", Duration::from_secs(30), || async {
        (f.routed("b").await > before).then_some(())
    })
    .await?;
    let served_after = listening.elapsed();
    let outcomes = load.stop().await;
    println!(
        "restart: b routable again {served_after:?} after it listens; {} requests, {} failed",
        outcomes.len(),
        outcomes.iter().filter(|o| o.failed()).count()
    );
    assert!(
        unexplained(&outcomes, "b").is_empty(),
        "{}",
        summary(&outcomes)
    );
    f.gauges_at_zero().await?;
    Ok(())
}

#[tokio::test]
async fn a_restarted_syncd_is_followed_at_once_while_an_instance_dies() -> anyhow::Result<()> {
    let mut f = fleet("failover_syncd_restart", |_| {}).await?;
    let load = Load::start(&f.envoy.url, MODEL, CLIENTS);
    f.more_requests(20).await?;
    f.rig.kill(f.syncd.proc);
    let c = f.emu("c").proc;
    f.rig.kill(c);
    f.more_requests(30).await?;
    let refs: Vec<Emu> = f.emus.clone();
    let refs: Vec<&Emu> = refs.iter().collect();
    let addr = f.syncd.addr.to_string();
    f.syncd = f.rig.syncd_on(&addr, &refs, &[]).await?;
    let ready = Instant::now();
    let installed = f.installed_down("c").await?;
    let routed_c = f.routed("c").await;
    f.more_requests(100).await?;
    let after = f.routed("c").await;
    let outcomes = load.stop().await;
    println!(
        "syncd restart: its map (c down) installed {:?} after it was ready; {} requests, {} failed",
        installed - ready,
        outcomes.len(),
        outcomes.iter().filter(|o| o.failed()).count()
    );
    assert_eq!(
        after, routed_c,
        "nothing routed to c once the new map is in"
    );
    assert!(
        unexplained(&outcomes, "c").is_empty(),
        "{}",
        summary(&outcomes)
    );
    f.gauges_at_zero().await?;
    Ok(())
}
