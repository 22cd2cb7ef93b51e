//! Rig for the sync tests: emulators with 100 ms pulls, the config that
//! reaches them, and what each one holds.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use ollama_emu::{Config as EmuConfig, EmuHandle, ModelSpec};
use serde_json::Value;
use syncd::config::Instance;
use syncd::sync::{plan, poll_once, Event, Executor, Placement, Summary};
use syncd::Config;
use tokio::sync::mpsc;

use crate::common::fast;

pub const PULL_TIME: Duration = Duration::from_millis(100);

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

/// `POST /_emu/{what}`; panics unless 200.
pub async fn control(emu: &EmuHandle, what: &str, body: Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/_emu/{what}", emu.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "/_emu/{what} {body}");
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

pub fn digest(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// A syncd daemon with sync settings, on an ephemeral port.
pub struct SyncDaemon {
    pub url: String,
    pub fleet: std::sync::Arc<syncd::Fleet>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), syncd::RunError>>,
}

impl SyncDaemon {
    /// Starts it and waits for the first map.
    pub async fn start(emus: &[&EmuHandle], sync: syncd::SyncSettings) -> SyncDaemon {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = config(emus);
        config.listen = listener.local_addr().unwrap();
        let url = format!("http://{}", config.listen);
        let fleet = syncd::Fleet::new(&config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let f = fleet.clone();
        let task = tokio::spawn(async move {
            syncd::run_with_sync(listener, &config, f, sync, async {
                let _ = stopped.await;
            })
            .await
        });
        let d = SyncDaemon {
            url,
            fleet,
            stop: Some(stop),
            task,
        };
        d.wait_for("first map", |_| true).await;
        d
    }

    /// Waits (5 s at most) for a map that satisfies `pred`.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&model_map::ModelMap) -> bool) {
        let mut rx = self.fleet.subscribe();
        let found = tokio::time::timeout(
            Duration::from_secs(5),
            rx.wait_for(|p| p.as_ref().is_some_and(|p| pred(&p.map))),
        )
        .await;
        assert!(
            matches!(found, Ok(Ok(_))),
            "{what}: not seen; last map: {:#?}",
            self.fleet.current().map(|p| p.map.clone())
        );
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

/// The models `instance` holds in `map`, by name.
pub fn held_by(map: &model_map::ModelMap, instance: &str) -> Vec<String> {
    map.models
        .iter()
        .filter(|m| m.replicas.iter().any(|r| r.instance == instance))
        .map(|m| m.name.clone())
        .collect()
}
