//! ollama-lb's benchmark program: measures the filter's overhead, the
//! routing policies' quality on an emulated fleet, and behaviour at 1,000
//! instances, and writes `docs/benchmarks.md` with SVG figures. It prints
//! numbers and ratios; it is never a test and never gates CI.
//!
//! # Layout
//! - [`overhead`], [`routing`] (with [`conversations`]: long
//!   conversations and several gateways), [`scale`]: the sections.
//! - [`procs`]: the real Envoy and the release syncd as pinned child
//!   processes (through the e2e rig's `Proc`), and the Envoy
//!   configurations the renderer does not make.
//! - [`wrk`]: the load generator and its summary.
//! - [`workload`]: the seeded Poisson/Zipf multi-turn chat schedule.
//! - [`stats`], [`svg`], [`machine`]: pure helpers.

// A measurement program run by hand, never deployed: a failed step ends the run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![forbid(unsafe_code)]

use std::time::Duration;

pub mod conversations;
pub mod machine;
pub mod overhead;
pub mod procs;
pub mod routing;
pub mod scale;
pub mod stats;
pub mod svg;
pub mod workload;
pub mod wrk;

/// One section of the report: Markdown and the figures it links to
/// (file name under `docs/bench/`, SVG text).
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub markdown: String,
    pub figures: Vec<(String, String)>,
}

/// How long and how hard each section runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Interleaved rounds of every wrk comparison.
    pub rounds: usize,
    pub wrk_duration: Duration,
    /// wrk connections of the loaded runs.
    pub connections: u32,
    /// Streaming requests per target for time to first byte.
    pub ttfb_requests: usize,
    pub seed: u64,
    /// Arrival window of the routing workload, per policy.
    pub routing_duration: Duration,
    /// How long unfinished requests may run after the window.
    pub routing_drain: Duration,
    /// Start of the window not counted (each policy's warm-up).
    pub routing_warmup: Duration,
    pub scale_instances: usize,
    pub scale_models: usize,
    pub scale_map_changes: usize,
    /// Quiet window over which syncd's CPU and memory are measured.
    pub scale_window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rounds: 3,
            wrk_duration: Duration::from_millis(2000),
            connections: 8,
            ttfb_requests: 300,
            seed: 6,
            routing_duration: Duration::from_secs(32),
            routing_drain: Duration::from_secs(15),
            routing_warmup: Duration::from_secs(8),
            scale_instances: 1000,
            scale_models: 200,
            scale_map_changes: 3,
            scale_window: Duration::from_secs(9),
        }
    }
}
