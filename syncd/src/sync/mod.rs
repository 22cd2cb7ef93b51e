//! Fleet model sync: make every instance hold the models it should.
//!
//! - [`placement`]: the placement file (TOML, or JSON on the API).
//! - [`plan`]: the pure planner, map + placement → actions.
//! - [`executor`]: the executor (parallel pulls and loads, progress events).
//! - [`progress`]: bars on a terminal, plain lines elsewhere.
//! - [`reconcile`]: the daemon's loop that keeps the placement held.
//! - [`api`]: `POST /v1/sync` on the daemon, progress as NDJSON.
//! - [`board`]: the running and recent sync jobs, for the status page.
//! - [`command`]: the `syncd sync` command.
//! - [`manage`]: Ollama's management requests through the balancer (pull,
//!   delete, copy, create, blobs, unload) carried out on the fleet;
//!   [`fleet_pull`] merges a pull's progress, [`targets`] picks instances.
//!
//! `syncd sync` gets the map by polling every instance once through the
//! same client and map builder as the daemon ([`poll_once`]), or asks a
//! running daemon to sync (`--url`, `POST /v1/sync`).

pub mod api;
pub mod board;
pub mod command;
pub mod executor;
pub mod fleet_pull;
pub mod manage;
pub mod placement;
pub mod plan;
pub mod progress;
pub mod reconcile;
pub mod targets;

use model_map::ModelMap;

use crate::build::{build_map, holdings, Held, InstanceView};
use crate::config::Config;
use crate::ollama::{OllamaClient, Probe};

pub use executor::{Event, Executor, KeyLocks, Summary};
pub use placement::{Placement, PlacementError};
pub use plan::{plan, Plan};

/// The map from one poll of every instance, concurrently: an instance that
/// does not answer is unhealthy (so it is never a target). Also returns
/// the errors of those that failed, by instance name.
pub async fn poll_once(config: &Config) -> (ModelMap, Vec<(String, String)>) {
    let http = OllamaClient::http_client(&config.poll);
    let polls = config.instances.iter().map(|i| {
        let client = OllamaClient::new(http.clone(), i, &config.poll);
        async move { client.poll(true).await }
    });
    let results = futures_util::future::join_all(polls).await;
    let mut errors = Vec::new();
    let mut held: Vec<(Vec<Held>, bool, Option<String>)> = Vec::new();
    for (instance, result) in config.instances.iter().zip(results) {
        match result {
            Ok(obs) => held.push((holdings(&obs.tags, &obs.ps).0, true, obs.version)),
            Err(e) => {
                errors.push((instance.name.clone(), e.to_string()));
                held.push((Vec::new(), false, None));
            }
        }
    }
    let views: Vec<InstanceView<'_>> = config
        .instances
        .iter()
        .zip(&held)
        .map(|(instance, (held, healthy, version))| InstanceView {
            instance,
            address: "",
            healthy: *healthy,
            version: version.as_deref(),
            held,
        })
        .collect();
    (build_map(&views), errors)
}
