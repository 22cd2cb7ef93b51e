//! The one definition that the daemon (`syncd`) and the Envoy filter share.
//!
//! # Layout
//! - [`name`]: Ollama's model-name grammar and the normalised routing key,
//!   so that `llama3`, `library/llama3` and
//!   `registry.ollama.ai/library/llama3:latest` are one model on both sides.
//! - [`map`]: the model map itself (instances, models, replicas, loaded state)
//!   as syncd publishes it and the filter decodes it, with its content
//!   identifier.
//! - [`limits`]: what one instance may put into the map (nesting, sizes,
//!   model counts), checked by syncd before it builds a map.
//! - [`decode`]: decoding a map entry by entry, so one bad entry costs
//!   that model, not the map.
//! - [`raw_json`]: a JSON value kept as its text, how the instances' own
//!   `/api/tags` and `/api/ps` entries ride in the map.
//! - [`go_duration`]: Go's `time.ParseDuration` (Ollama's `keep_alive`), so
//!   the filter rejects what Ollama rejects, with the same text.
//!
//! This crate is pure and builds for the host and for `wasm32-wasip1`.
#![forbid(unsafe_code)]

pub mod decode;
pub mod go_duration;
pub mod limits;
pub mod map;
pub mod name;
pub mod raw_json;

pub use map::{InstanceState, Loaded, ModelEntry, ModelMap, Replica, MAP_FORMAT};
pub use name::{ModelName, NameError, Source};
pub use raw_json::RawJson;

/// Request header the filter sets on a management request (pull, delete,
/// copy, create, blob upload, the unload idiom) that syncd carries out on
/// the whole fleet: Envoy's route for it sends the request to syncd under
/// [`FLEET_PATH_PREFIX`]. The filter removes any copy a client sends.
pub const FLEET_HEADER: &str = "x-ollama-lb-fleet";

/// Request header the filter sets on a request it answers itself, just
/// before answering: Envoy's `local_reply_config` rewrites only answers
/// of requests without it (Envoy's own plain-text replies) into Ollama's
/// JSON shape, and leaves the filter's own answers as they are. The filter
/// removes any copy a client sends.
pub const ANSWERED_HEADER: &str = "x-ollama-lb-answered";

/// Request header carrying the filter's ranked instances (`IP:port`,
/// best first, comma-separated) to the fleet cluster's `override_host`
/// load-balancing policy, which syncd renders to read it. The filter
/// removes any copy a client sends.
pub const ENDPOINTS_HEADER: &str = "x-ollama-lb-endpoints";

/// The default request-body limit: the filter's `max_body_bytes`, and
/// what syncd sizes Envoy's buffers by. Ollama has none; this holds
/// several large images.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 256 << 20;

/// Where syncd serves the fleet's management API: Envoy rewrites `/api/…`
/// to `/v1/fleet/api/…` on the fleet route.
pub const FLEET_PATH_PREFIX: &str = "/v1/fleet/";
