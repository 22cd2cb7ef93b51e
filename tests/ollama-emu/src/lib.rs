//! An emulated Ollama server for tests and the local demo: Ollama's HTTP
//! API (native and OpenAI-compatible) with believable timing (model load
//! time, token rate, parallel slots, a bounded queue, LRU eviction,
//! keep-alive), plus a `/_emu` control surface for shaping instances and
//! injecting faults. Where Ollama versions differ it follows HEAD
//! (v0.12+), as described in `/work/shared/ollama-api.md`.
//!
//! # Layout
//! - [`cli`]: the binary's flags and how they overlay the file.
//! - [`config`]: the configuration (TOML file or flags) and its checks.
//! - [`duration`]: Go duration parsing and `keep_alive` rules.
//! - [`models`]: models on disk, the emulated registry, blobs.
//! - [`scheduler`]: loaded models, slots, queue, eviction, keep-alive.
//! - [`generation`]: one reply in progress, its pace and metrics.
//! - [`stream`]: NDJSON/SSE bodies, reply tokens, embeddings.
//! - [`gojson`]: request decoding as Go's `json.Decoder` does it (its own
//!   reader: syntax texts, depth limit, U+FFFD, number literals), with Go's
//!   type-error texts.
//! - [`hosts`]: Ollama's Host-header check (403 for non-local names).
//! - [`errors`]: native and OpenAI error bodies.
//! - [`routes`]: the HTTP routes and the fault/instance middleware;
//!   `routes::gin` has gin's path rules (decoded paths, trailing-slash
//!   redirects) and Ollama's CORS.
//! - [`control`]: the `/_emu/*` control surface.
//! - [`faults`]: injectable faults.
//! - [`state`]: what handlers share.
//! - [`server`]: [`serve`], [`spawn`] and [`EmuHandle`].
//!
//! # Versions
//! Where Ollama changed, the emulator answers as HEAD does: chat's missing
//! model is `model 'x' not found` (v0.12+); bad names are `invalid model
//! name` (v0.17.6+); requests for a loaded model skip the queue (v0.11.5+);
//! `/api/ps` has `context_length` (v0.9.7+); OpenAI streams send a separate
//! finish chunk. `/api/embed` and `/api/embeddings` report a missing model
//! as `model "x" not found, try pulling it first`.
//!
//! # Control surface (`/_emu/*`, never faulted, not counted)
//! `model` {name, digest?, size?, embedding?, family?, parameter_size?,
//! quantization_level?, loaded?, modified_at?}; `remove` {name}; `wipe`;
//! `digest` {name, digest}; `load` {name, keep_alive?} (instant, evicts
//! idle models if full); `unload` {name}; `registry` {name, digest|null}
//! (null: a pull of the name fails as unknown); `config` {load_time_ms?,
//! tokens_per_second?, prompt_rate?, num_parallel?, max_queue?, max_loaded_models?,
//! response_tokens?, pull_time_ms?, keep_alive?}; `fault` (see [`faults`];
//! `refuse` also drops requests on connections opened before it); `GET
//! stats`; `reset_stats`.
//!
//! # Stats
//! `in_flight` counts requests holding a slot (generating), `queued` those
//! waiting for a load or a slot, `max_in_flight_seen` the peak of
//! `in_flight`; `requests_by_model` uses the display name of the model on
//! disk (or of the parsed name when missing).
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod control;
pub mod duration;
pub mod errors;
pub mod faults;
pub mod generation;
pub mod gojson;
pub mod hosts;
pub mod models;
pub mod origins;
pub mod prompt;
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
