//! ollama-lb filter: a proxy-wasm HTTP filter for Envoy that sends each
//! Ollama request to an instance holding the requested model.
//!
//! # Layout
//! - [`config`]: the plugin configuration, with defaults and validation.
//! - [`body_scan`] (with [`go_string`]): finds the model in a JSON body
//!   exactly as Ollama's Go decoder would, chunk by chunk.
//! - [`endpoint`]: which route a request is and where its model comes from.
//! - [`policy`]: choosing an instance among the candidates;
//!   [`conversation`]: the key that keeps a conversation on one instance.
//! - [`route`]: from a request and the map to an instance or an error;
//!   [`routing_map`]: the map with what routing precomputes.
//! - [`request_head`]: the request headers the filter reads, in one read.
//! - [`guards`]: Ollama's CORS and Host checks; [`gin_path`]: paths
//!   decoded as Go does and gin's trailing-slash redirect.
//! - [`instance_times`]: the cool-down and recently-sent tables kept in
//!   Envoy shared data; [`cooldown`]: how long a cool-down lasts.
//! - [`fleet_reads`]: `/api/tags`, `/api/ps`, `/api/version`, `/v1/models`
//!   answered from the map.
//! - [`fleet_manage`]: the management requests (pull, delete, copy,
//!   create, blobs, the unload idiom) sent to syncd for the whole fleet.
//! - [`map_store`]: decoding the map from syncd and the fetch-lease format;
//!   [`map_poll`]: when the lease is checked and the long poll sent.
//! - [`errors`]: every answer the filter gives itself, in Ollama's words.
//! - `wasm`: the only code that talks to Envoy (root context: map
//!   fetching and sharing; the worker state both contexts use; HTTP
//!   context: per-request glue).
//!
//! Everything but `wasm` is pure and tested on the host.
#![deny(unsafe_code)]

pub mod body_scan;
pub mod config;
pub mod conversation;
pub mod cooldown;
pub mod endpoint;
pub mod errors;
pub mod fleet_manage;
pub mod fleet_reads;
pub mod gin_path;
pub mod go_string;
pub mod guards;
pub mod instance_times;
pub mod map_poll;
pub mod map_store;
pub mod policy;
pub mod request_head;
pub mod route;
pub mod routing_map;

#[cfg(target_arch = "wasm32")]
mod wasm;

#[cfg(test)]
mod test_fixtures;
