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
//! - [`daemon`]: [`Daemon`], the one entry point that starts the pollers,
//!   serves the API and drains its tasks on shutdown.
//! - [`fleet`]: per-instance slots and the published map (a `watch`
//!   channel); every poll result republishes at once.
//! - [`poller`]: one task per instance.
//! - [`server`]: the HTTP API (`/v1/map` with long poll, `/v1/instances`,
//!   `/healthz`, `/readyz`, `/metrics`); [`metrics`] renders the last,
//!   with each instance's poll-latency [`histogram`].
//! - [`page`]: the status page (`GET /`), its live feed and
//!   `/v1/status`; [`gateways`] reads the in-flight counts it shows from
//!   Envoy admins (`--envoy-admin`).
//! - [`envoy_config`]: renders the Envoy bootstrap (`envoy-config`).
//! - [`sync`]: fleet model sync: placement, planner, executor, progress,
//!   `POST /v1/sync` and the reconcile loop.
//! - [`cli`]: the command line (`run`, `status`, `check-config`,
//!   `envoy-config`, `sync`);
//!   [`status`] is the `status` client; [`text`] has the table, digest,
//!   `{"error"}` and NDJSON helpers they share.
//!
//! [`Daemon`] is the daemon: [`Daemon::serve`] takes its listener and a
//! shutdown future, so tests bind `127.0.0.1:0` and stop it when they
//! like; it owns every task it starts and drains them before it returns.
#![forbid(unsafe_code)]

pub mod build;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod eds;
pub mod envoy_config;
pub mod fleet;
pub mod gateways;
pub mod health;
pub mod histogram;
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
pub mod text;

pub use config::Config;
pub use daemon::{Daemon, RunError, SyncSettings};
pub use fleet::Fleet;

/// Exit code for a configuration or usage error (`EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;
