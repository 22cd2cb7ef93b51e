//! [`Daemon`]: the one entry point of `syncd run`. It starts the instance
//! pollers (through [`crate::membership`]) and, with `--reconcile`, the
//! reconcile loop, serves the HTTP API until the shutdown future completes,
//! then stops the loops and drains the syncs still running (API syncs,
//! fleet pulls, reconcile batches, all tracked by the
//! [`Executor`](crate::sync::Executor)).

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::fleet::Fleet;
use crate::sync::Executor;
use crate::{gateways, membership, ollama, page, server, sync};

/// How long shutdown waits for running syncs before it gives up on them
/// (a pull can take minutes; Kubernetes' default grace is 30 s).
pub const DRAIN_GRACE: Duration = Duration::from_secs(20);

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

/// A configured daemon, ready to [`serve`](Daemon::serve).
pub struct Daemon {
    config: Config,
    fleet: Arc<Fleet>,
    sync: SyncSettings,
    reload: Arc<Notify>,
}

impl Daemon {
    /// A daemon over `config` with the default sync settings.
    pub fn new(config: Config) -> Daemon {
        Daemon {
            fleet: Fleet::new(&config),
            config,
            sync: SyncSettings::default(),
            reload: Arc::new(Notify::new()),
        }
    }

    /// The same daemon with these sync settings.
    pub fn with_sync(self, sync: SyncSettings) -> Daemon {
        Daemon { sync, ..self }
    }

    /// The fleet it publishes, to watch without going through HTTP
    /// ([`Fleet::subscribe`]).
    pub fn fleet(&self) -> Arc<Fleet> {
        self.fleet.clone()
    }

    /// Each notification reads the instance file again (the binary
    /// notifies it on SIGHUP).
    pub fn reload_trigger(&self) -> Arc<Notify> {
        self.reload.clone()
    }

    /// Runs until `shutdown` completes: polls every instance and serves the
    /// API on `listener`; then stops the loops, ends held long polls and
    /// waits (up to [`DRAIN_GRACE`]) for the syncs still running.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let exec = Executor::new(&self.config.poll, self.sync.per_instance);
        let mut loops = self.start_loops(&exec);
        let (stop_tx, stop_rx) = watch::channel(false);
        let app = self.router(exec.clone(), stop_rx);
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(listen = %addr, instances = self.config.instances.len(), "syncd serving");
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
        loops.shutdown().await;
        drain(&exec).await;
        result.map_err(RunError::Serve)
    }

    /// The membership loop (which runs the pollers) and, with
    /// `--reconcile`, the reconcile loop.
    fn start_loops(&self, exec: &Executor) -> JoinSet<()> {
        let config = &self.config;
        let http = ollama::OllamaClient::http_client(&config.poll);
        let mut loops = JoinSet::new();
        loops.spawn(membership::run_membership(
            self.fleet.clone(),
            config.sources.clone(),
            config.poll.clone(),
            http,
            config.instances.clone(),
            self.reload.clone(),
        ));
        if let Some(every) = self.sync.reconcile {
            tracing::info!(every = ?every, placement = self.sync.placement.is_some(), "reconcile on");
            loops.spawn(sync::reconcile::run_reconcile(
                self.fleet.clone(),
                self.sync.placement.clone(),
                exec.clone(),
                every,
            ));
        }
        loops
    }

    /// Every route: the map API, fleet management, sync, the status page.
    fn router(&self, exec: Executor, stopping: watch::Receiver<bool>) -> axum::Router {
        let fleet = &self.fleet;
        let sync = &self.sync;
        let gateways = Arc::new(gateways::Gateways::new(sync.envoy_admins.clone()));
        let page = page::router(
            fleet.clone(),
            exec.board.clone(),
            gateways,
            stopping.clone(),
        );
        server::router(fleet.clone(), stopping)
            .merge(sync::manage::router(
                fleet.clone(),
                exec.clone(),
                sync.placement.clone(),
            ))
            .merge(sync::api::router(
                fleet.clone(),
                exec,
                sync.api_token.clone(),
                sync.placement.clone(),
            ))
            .merge(page)
    }
}

/// Waits for the syncs still running, up to [`DRAIN_GRACE`].
async fn drain(exec: &Executor) {
    exec.tasks.close();
    if exec.tasks.is_empty() {
        return;
    }
    tracing::info!(
        running = exec.tasks.len(),
        "waiting for running syncs to finish"
    );
    if tokio::time::timeout(DRAIN_GRACE, exec.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            running = exec.tasks.len(),
            "syncs still running after {DRAIN_GRACE:?}; stopping without them"
        );
    }
}
