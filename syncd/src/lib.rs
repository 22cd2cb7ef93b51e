//! syncd: polls every Ollama instance of the fleet and publishes the model
//! map that the Envoy filter routes by.
//!
//! # Layout
//! - [`config`]: instances from `OLLAMA_BASE_URLS`, `--instance` and a TOML
//!   file, plus polling settings; all validated before any port is bound.
//! - [`ollama`]: the HTTP client for one instance (`/api/tags`, `/api/ps`,
//!   `/api/version`) with its timeout and response-size cap;
//!   [`sanitise`] checks what an instance answers against
//!   [`model_map::limits`] before anything is built from it.
//! - [`health`]: up/down thresholds and backoff, pure.
//! - [`build`]: turns what instances report into the shared
//!   [`model_map::ModelMap`], pure.
//! - [`fleet`]: per-instance slots and the published map (a `watch`
//!   channel); every poll result republishes at once.
//! - [`poller`]: one task per instance.
//! - [`server`]: the HTTP API (`/v1/map` with long poll, `/v1/instances`,
//!   `/healthz`, `/readyz`, `/metrics`); [`metrics`] renders the last.
//! - [`page`]: the status page (`GET /`), its live feed and
//!   `/v1/status`; [`gateways`] reads the in-flight counts it shows from
//!   Envoy admins (`--envoy-admin`).
//! - [`envoy_config`]: renders the Envoy bootstrap (`envoy-config`).
//! - [`sync`]: fleet model sync: placement, planner, executor, progress,
//!   `POST /v1/sync` and the reconcile loop.
//! - [`cli`]: the command line (`run`, `status`, `check-config`,
//!   `envoy-config`, `sync`);
//!   [`status`] is the `status` client.
//!
//! [`run`] is the daemon: it takes its listener and a shutdown future, so
//! tests bind `127.0.0.1:0` and stop it when they like.
#![forbid(unsafe_code)]

pub mod build;
pub mod cli;
pub mod config;
pub mod dns;
pub mod eds;
pub mod envoy_config;
pub mod fleet;
pub mod gateways;
pub mod health;
pub mod membership;
pub mod metrics;
pub mod ollama;
pub mod page;
pub mod poller;
pub mod resolve;
pub mod sanitise;
pub mod server;
pub mod status;
pub mod sync;

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::Config;
pub use fleet::Fleet;

/// The daemon's settings beyond polling: `POST /v1/sync`, `--reconcile`,
/// and the gateways whose in-flight counts the status page shows.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Bearer token `POST /v1/sync` requires; without one only loopback
    /// clients may sync.
    pub api_token: Option<String>,
    /// `--placement`: the API's default and what reconcile holds.
    pub placement: Option<sync::Placement>,
    /// Pulls and loads at a time on one instance.
    pub per_instance: NonZeroUsize,
    /// `Some(every)`: keep the placement held, re-planning on every map
    /// change and at least this often.
    pub reconcile: Option<Duration>,
    /// `--envoy-admin`: admin base URLs of the Envoys running the filter.
    pub envoy_admins: Vec<String>,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            api_token: None,
            placement: None,
            per_instance: NonZeroUsize::MIN,
            reconcile: None,
            envoy_admins: Vec::new(),
        }
    }
}

/// Why the daemon stopped with an error.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Runs the daemon until `shutdown` completes: polls every instance of
/// `config` and serves the API on `listener`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let fleet = Fleet::new(&config);
    run_with_fleet(listener, &config, fleet, shutdown).await
}

/// [`run`] with a fleet made by the caller, who can then watch it
/// ([`Fleet::subscribe`]) without going through HTTP.
pub async fn run_with_fleet(
    listener: TcpListener,
    config: &Config,
    fleet: Arc<Fleet>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_with_sync(listener, config, fleet, SyncSettings::default(), shutdown).await
}

/// [`run_with_fleet`] with sync settings (API token, placement,
/// reconcile).
pub async fn run_with_sync(
    listener: TcpListener,
    config: &Config,
    fleet: Arc<Fleet>,
    sync: SyncSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let reload = Arc::new(tokio::sync::Notify::new());
    serve(listener, config, fleet, sync, reload, shutdown).await
}

/// [`run_with_sync`] with a reload trigger: each notification reads the
/// instance file again (the binary notifies it on SIGHUP).
pub async fn serve(
    listener: TcpListener,
    config: &Config,
    fleet: Arc<Fleet>,
    sync: SyncSettings,
    reload: Arc<tokio::sync::Notify>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let http = ollama::OllamaClient::http_client(&config.poll);
    let mut pollers = JoinSet::new();
    pollers.spawn(membership::run_membership(
        fleet.clone(),
        config.sources.clone(),
        config.poll.clone(),
        http,
        config.instances.clone(),
        reload,
    ));
    let exec = sync::Executor::new(&config.poll, sync.per_instance);
    if let Some(every) = sync.reconcile {
        tracing::info!(every = ?every, placement = sync.placement.is_some(), "reconcile on");
        pollers.spawn(sync::reconcile::run_reconcile(
            fleet.clone(),
            sync.placement.clone(),
            exec.clone(),
            every,
        ));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let gateways = Arc::new(gateways::Gateways::new(sync.envoy_admins));
    let page = page::router(fleet.clone(), exec.board.clone(), gateways, stop_rx.clone());
    let app = server::router(fleet.clone(), stop_rx)
        .merge(sync::manage::router(
            fleet.clone(),
            exec.clone(),
            sync.placement.clone(),
        ))
        .merge(sync::api::router(
            fleet,
            exec,
            sync.api_token,
            sync.placement,
        ))
        .merge(page);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, instances = config.instances.len(), "syncd serving");
    }
    // The peer address decides who may sync without a token.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        })
        .await;
    pollers.abort_all();
    result.map_err(RunError::Serve)
}
