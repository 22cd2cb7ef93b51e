//! Shared rig: emulated Ollama servers and a syncd on ephemeral ports.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use model_map::ModelMap;
use ollama_emu::{Config as EmuConfig, EmuHandle, ModelSpec};
use serde_json::{json, Value};
use syncd::config::{Instance, PollSettings};
use syncd::{Config, Fleet};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub const INTERVAL: Duration = Duration::from_millis(100);

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

/// An emulator named `name` holding `models` (`NAME` or `NAME@DIGEST`).
pub async fn emu(name: &str, models: &[&str]) -> EmuHandle {
    let config = EmuConfig {
        name: name.into(),
        models: models.iter().map(|m| ModelSpec::from_flag(m)).collect(),
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
        let instances = emus
            .iter()
            .enumerate()
            .map(|(i, e)| Instance {
                name: format!("e{i}"),
                url: e.url(),
                cluster: format!("e{i}"),
                authority: e.addr().to_string(),
                ..Default::default()
            })
            .collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = Config {
            listen: listener.local_addr().unwrap(),
            instances,
            poll,
            sources: Default::default(),
        };
        let url = format!("http://{}", config.listen);
        let fleet = Fleet::new(&config);
        let (stop, stopped) = oneshot::channel::<()>();
        let f = fleet.clone();
        let task = tokio::spawn(async move {
            syncd::run_with_fleet(listener, &config, f, async {
                let _ = stopped.await;
            })
            .await
        });
        Daemon {
            url,
            fleet,
            stop: Some(stop),
            task,
        }
    }

    /// The map once published.
    pub async fn ready(&self) -> ModelMap {
        self.wait_for("first map", Duration::from_secs(5), |_| true)
            .await
            .0
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

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", self.url)).await.unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
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
