//! The end-to-end rig: starts the real Envoy, syncd and emulated Ollama
//! servers as separate processes on ephemeral ports, waits until each is
//! ready, stops them when dropped, and prints every process's log when a
//! test fails.
//!
//! # Layout
//! - [`paths`]: where the binaries, the wasm filter and Envoy are.
//! - [`process`]: one child process with its log file.
//! - [`rig`]: [`Rig`], which owns the processes of one test; syncd and the
//!   emulators bind port 0 and the rig reads their address from their
//!   logs. Dropping a rig fails the test if an Envoy it started logged an
//!   `[error]` or `[critical]` line, unless the test called
//!   [`Rig::expect_errors`].
//! - [`envoy`]: starting Envoy from a rendered bootstrap;
//!   [`Envoy::send`], [`Envoy::wait_for_map`] and
//!   [`Envoy::wait_for_map_where`] (a map syncd published, installed by
//!   every worker) are the waits and requests the tests share.
//! - [`browser`]: headless Chromium over the DevTools protocol, for the
//!   status page.
//! - [`map_server`]: an in-process stand-in for syncd that serves a fixed,
//!   test-controlled model map, for filter cases that need exact health.
//! - [`load`]: a bounded concurrent load that counts every outcome.
//! - [`dns_server`]: a DNS server whose answers the test sets.
//!
//! Binaries are not built here: the test command builds them first
//! (`scripts/test.sh`), so tests never race cargo for the build lock.

// A test rig: a failed unwrap here is a failed test, with the logs printed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![forbid(unsafe_code)]

pub mod browser;
pub mod dns_server;
pub mod envoy;
pub mod hostile;
pub mod load;
pub use syncd::envoy_config;
pub mod map_server;
pub mod paths;
pub mod process;
pub mod rig;

pub use browser::Browser;
pub use envoy::Envoy;
pub use map_server::MapServer;
pub use rig::{Emu, Rig, Syncd};

/// A reqwest client with no proxy settings from the environment.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Polls `check` every 25 ms until it gives a value; an error naming
/// `what` after `limit` (a generous deadline, not a measured bound).
pub async fn until<T, F, Fut>(what: &str, limit: std::time::Duration, check: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() > limit {
            anyhow::bail!("{what}: not after {limit:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
