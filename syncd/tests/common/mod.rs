//! The one test-support module of syncd's integration tests: emulated
//! Ollama servers (pulls taking [`PULL_TIME`]), the config that reaches
//! them, a syncd on an ephemeral port, and what each instance holds.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use model_map::ModelMap;
use ollama_emu::{Config as EmuConfig, EmuHandle, ModelSpec};
use serde_json::{json, Value};
use syncd::config::{Instance, PollSettings};
use syncd::sync::{plan, poll_once, Event, Executor, Placement, Summary};
use syncd::{Config, Fleet};
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub const INTERVAL: Duration = Duration::from_millis(100);

/// How long an emulated pull takes.
pub const PULL_TIME: Duration = Duration::from_millis(100);

/// A generous deadline for waits: what is waited for normally comes within
/// a few intervals; this only bounds a test that is going to fail.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Fast settings: 100 ms interval, down after 2, up after 2.
pub fn fast() -> PollSettings {
    PollSettings {
        interval: INTERVAL,
        timeout: Duration::from_millis(80),
        down_after: NonZeroU32::new(2).unwrap(),
        up_after: NonZeroU32::new(2).unwrap(),
        max_backoff: Duration::from_millis(200),
        version_every: NonZeroU32::new(5).unwrap(),
        max_response_bytes: 1 << 20,
    }
}

pub fn digest(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// An emulator holding `models` (`NAME`, `NAME@DIGEST`, or `NAME+embed`
/// for an embedding-only model), pulls taking [`PULL_TIME`].
pub async fn emu(name: &str, models: &[&str]) -> EmuHandle {
    let config = EmuConfig {
        name: name.into(),
        models: models
            .iter()
            .map(|m| match m.strip_suffix("+embed") {
                Some(n) => ModelSpec {
                    embedding: true,
                    ..ModelSpec::from_flag(n)
                },
                None => ModelSpec::from_flag(m),
            })
            .collect(),
        pull_time: PULL_TIME,
        ..EmuConfig::default()
    };
    let localhost: SocketAddr = "127.0.0.1:0".parse().unwrap();
    ollama_emu::spawn(localhost, config).await.unwrap()
}

/// `POST {url}/_emu/{what}` with `body`; panics unless 200.
pub async fn control(emu: &EmuHandle, what: &str, body: Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/_emu/{what}", emu.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert!(
        status.is_success(),
        "/_emu/{what} {body}: {status} {}",
        resp.text().await.unwrap_or_default()
    );
}

pub async fn fault(emu: &EmuHandle, body: Value) {
    control(emu, "fault", body).await;
}

pub async fn add_model(emu: &EmuHandle, name: &str) {
    control(emu, "model", json!({ "name": name })).await;
}

/// A running syncd.
pub struct Daemon {
    pub url: String,
    pub fleet: Arc<Fleet>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), syncd::RunError>>,
}

impl Daemon {
    /// Starts syncd over `emus` (named `e0`, `e1`, …) with `poll`.
    pub async fn start(emus: &[&EmuHandle], poll: PollSettings) -> Daemon {
        let mut config = config(emus);
        config.poll = poll;
        Daemon::spawn(config, syncd::SyncSettings::default()).await
    }

    /// Starts syncd over `emus` with fast polling and `sync` settings,
    /// and waits for the first map.
    pub async fn syncing(emus: &[&EmuHandle], sync: syncd::SyncSettings) -> Daemon {
        let d = Daemon::spawn(config(emus), sync).await;
        d.ready().await;
        d
    }

    async fn spawn(mut config: Config, sync: syncd::SyncSettings) -> Daemon {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        config.listen = listener.local_addr().unwrap();
        let url = format!("http://{}", config.listen);
        let daemon = syncd::Daemon::new(config).with_sync(sync);
        let fleet = daemon.fleet();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(daemon.serve(listener, async {
            let _ = stopped.await;
        }));
        Daemon {
            url,
            fleet,
            stop: Some(stop),
            task,
        }
    }

    /// The map once published.
    pub async fn ready(&self) -> ModelMap {
        self.wait_for("first map", PATIENCE, |_| true).await.0
    }

    /// Waits until a published map satisfies `pred`; returns it and when
    /// it was seen (right after publication).
    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&ModelMap) -> bool,
    ) -> (ModelMap, Instant) {
        let mut rx = self.fleet.subscribe();
        let found = tokio::time::timeout(
            limit,
            rx.wait_for(|p| p.as_ref().is_some_and(|p| pred(&p.map))),
        )
        .await;
        let now = Instant::now();
        match found {
            Ok(Ok(p)) => (p.as_ref().unwrap().map.clone(), now),
            _ => panic!(
                "{what}: not seen within {limit:?}; last map: {:#?}\ninstances: {:#?}",
                self.fleet.current().map(|p| p.map.clone()),
                self.fleet.reports()
            ),
        }
    }

    /// Waits (up to [`PATIENCE`]) for a map that satisfies `pred`.
    pub async fn wait_until(&self, what: &str, pred: impl Fn(&ModelMap) -> bool) -> ModelMap {
        self.wait_for(what, PATIENCE, pred).await.0
    }

    /// Waits until `n` receivers watch the map (a held long poll is one).
    pub async fn wait_map_watchers(&self, n: usize) {
        poll_until(&format!("{n} map watchers"), || {
            self.fleet.map_watchers() >= n
        })
        .await;
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", self.url)).await.unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("syncd stops promptly")
            .unwrap()
            .unwrap();
    }
}

pub fn has_model(map: &ModelMap, name: &str) -> bool {
    let key = model_map::name::routing_key(name).unwrap();
    map.model(&key).is_some()
}

pub fn healthy(map: &ModelMap, instance: &str) -> bool {
    map.instance(instance).unwrap().healthy
}

/// Runs `f` and returns how long it took.
pub async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}

/// Instances `e0`, `e1`, … reaching `emus`, fast polling.
pub fn config(emus: &[&EmuHandle]) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        instances: emus
            .iter()
            .enumerate()
            .map(|(i, e)| Instance {
                name: format!("e{i}"),
                url: e.url(),
                cluster: format!("e{i}"),
                authority: e.addr().to_string(),
                ..Default::default()
            })
            .collect(),
        poll: fast(),
        sources: Default::default(),
    }
}

/// `--instance` flags for the binary.
pub fn instance_flags(emus: &[&EmuHandle]) -> Vec<String> {
    emus.iter()
        .enumerate()
        .flat_map(|(i, e)| ["--instance".to_string(), format!("e{i}={}", e.url())])
        .collect()
}

/// `name digest` of every model on `emu`, sorted.
pub async fn holdings(emu: &EmuHandle) -> Vec<String> {
    let tags: Value = reqwest::get(format!("{}/api/tags", emu.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out: Vec<String> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m["name"].as_str().unwrap(),
                &m["digest"].as_str().unwrap()[..4]
            )
        })
        .collect();
    out.sort();
    out
}

/// Names of the models `emu` has loaded.
pub async fn loaded(emu: &EmuHandle) -> Vec<String> {
    let ps: Value = reqwest::get(format!("{}/api/ps", emu.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out: Vec<String> = ps["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// One library-level sync: poll, plan, execute; returns the summary and
/// every event.
pub async fn sync_once(config: &Config, placement: Option<&Placement>) -> (Summary, Vec<Event>) {
    let (map, _) = poll_once(config).await;
    let the_plan = plan(&map, placement);
    let exec = Executor::new(&config.poll, NonZeroUsize::new(2).unwrap());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let summary = exec.execute(&map, &the_plan, &tx).await;
    drop(tx);
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    (summary, events)
}

/// The plan a fresh poll gives now.
pub async fn plan_now(config: &Config, placement: Option<&Placement>) -> syncd::sync::Plan {
    plan(&poll_once(config).await.0, placement)
}

pub fn placement(toml: &str) -> Placement {
    let names: Vec<String> = (0..4).map(|i| format!("e{i}")).collect();
    Placement::from_toml(toml, "test", Some(&names)).unwrap()
}

/// The models `instance` holds in `map`, by name.
pub fn held_by(map: &model_map::ModelMap, instance: &str) -> Vec<String> {
    map.models
        .iter()
        .filter(|m| m.replicas.iter().any(|r| r.instance == instance))
        .map(|m| m.name.clone())
        .collect()
}

/// Checks `cond` every 10 ms until it holds; panics naming `what` after
/// [`PATIENCE`].
pub async fn poll_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "{what}: not after {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Awaits `cond` every 10 ms until it holds; panics naming `what` after
/// [`PATIENCE`].
pub async fn poll_until_async<F, Fut>(what: &str, cond: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < PATIENCE, "{what}: not after {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The address in syncd's `syncd serving listen=ADDR` log line.
pub fn serving_address(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("syncd serving")?;
    let (_, addr) = rest.split_once("listen=")?;
    addr.split_whitespace().next()?.parse().ok()
}
