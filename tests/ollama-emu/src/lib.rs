//! An emulated Ollama server for tests and the local demo: Ollama's HTTP
//! API (native and OpenAI-compatible) with believable timing (model load
//! time, token rate, parallel slots, a bounded queue, LRU eviction,
//! keep-alive), plus a `/_emu` control surface for shaping instances and
//! injecting faults. Where Ollama versions differ it follows HEAD
//! (v0.12+), as described in `/work/shared/ollama-api.md`.
//!
//! # Layout
//! - [`config`]: the configuration (TOML file or flags) and its checks.
//! - [`duration`]: Go duration parsing and `keep_alive` rules.
//! - [`models`]: models on disk, the emulated registry, blobs.
//! - [`scheduler`]: loaded models, slots, queue, eviction, keep-alive.
//! - [`generation`]: one reply in progress, its pace and metrics.
//! - [`stream`]: NDJSON/SSE bodies, reply tokens, embeddings.
//! - [`gojson`]: request decoding with Go's `encoding/json` error texts.
//! - [`errors`]: native and OpenAI error bodies.
//! - [`routes`]: the HTTP routes and the fault/instance middleware.
//! - [`control`]: the `/_emu/*` control surface.
//! - [`faults`]: injectable faults.
//! - [`state`]: what handlers share.
//! - [`server`]: [`serve`], [`spawn`] and [`EmuHandle`].
#![forbid(unsafe_code)]

pub mod config;
pub mod control;
pub mod duration;
pub mod errors;
pub mod faults;
pub mod generation;
pub mod gojson;
pub mod models;
pub mod routes;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod stream;
pub mod time;

pub use config::{Config, ConfigError, ModelSpec};
pub use duration::KeepAlive;
pub use server::{serve, spawn, EmuHandle};
pub use state::EmuState;
