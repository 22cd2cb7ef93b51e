//! The emulator's configuration: instance identity, timing, capacity and
//! the models on disk at start.
//!
//! TOML durations are Go duration strings (`"2s"`, `"500ms"`, `"5m"`;
//! `keep_alive` may be negative, e.g. `"-1m"`, meaning forever) or integer
//! milliseconds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use thiserror::Error;

use crate::duration::{de_duration, de_keep_alive, KeepAlive};

/// Why a configuration cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid model name {0:?} in config")]
    ModelName(String),
    #[error("invalid digest {0:?}: want 64 hex characters, optionally after \"sha256:\"")]
    Digest(String),
    #[error("{field} must be a positive number, got {value}")]
    Rate { field: &'static str, value: f64 },
    #[error("{field} must be at least 1, got {value}")]
    Zero { field: &'static str, value: u64 },
    #[error(transparent)]
    Origins(#[from] crate::origins::OriginsError),
}

/// Everything the emulator needs to start. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Instance name, sent in `x-emu-instance` on every response.
    pub name: String,
    /// Version reported by `/api/version`.
    pub version: String,
    /// Time to load a model that is not loaded.
    #[serde(deserialize_with = "de_duration")]
    pub load_time: Duration,
    /// Rate at which reply tokens are produced.
    pub tokens_per_second: f64,
    /// Prompt tokens evaluated per second (the part not in the slot's
    /// prompt cache, see [`crate::prompt`]), before the first reply token.
    pub prompt_rate: f64,
    /// Tokens in each reply (before `num_predict` / `max_tokens` caps).
    pub response_tokens: u32,
    /// Concurrent requests per loaded model (`OLLAMA_NUM_PARALLEL`).
    pub num_parallel: u32,
    /// Requests that may wait for scheduling before 503 (`OLLAMA_MAX_QUEUE`).
    pub max_queue: u32,
    /// Models loaded at once (`OLLAMA_MAX_LOADED_MODELS`).
    pub max_loaded_models: u32,
    /// Default keep-alive (`OLLAMA_KEEP_ALIVE`).
    #[serde(deserialize_with = "de_keep_alive")]
    pub keep_alive: KeepAlive,
    /// Duration of the layer download phase of `/api/pull`.
    #[serde(deserialize_with = "de_duration")]
    pub pull_time: Duration,
    /// Answer 403 to a non-local `Host` while listening on loopback, as
    /// Ollama does (see [`crate::hosts`]).
    pub host_check: bool,
    /// Extra CORS origins, written as Ollama's `OLLAMA_ORIGINS` (comma
    /// separated, `*` wildcards); the defaults are always allowed (see
    /// [`crate::origins`]).
    pub origins: Option<String>,
    /// Models on disk at start.
    pub models: Vec<ModelSpec>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "ollama".into(),
            version: "0.9.7".into(),
            load_time: Duration::from_secs(2),
            tokens_per_second: 50.0,
            // Effectively instant (a 20 MB test prompt: 0.5 s); benchmarks
            // set a GPU-like rate.
            prompt_rate: 10_000_000.0,
            response_tokens: 12,
            num_parallel: 1,
            max_queue: 512,
            max_loaded_models: 3,
            keep_alive: KeepAlive::For(Duration::from_secs(300)),
            pull_time: Duration::from_millis(500),
            host_check: true,
            origins: None,
            models: Vec::new(),
        }
    }
}

/// A model on disk at start.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    /// Manifest digest (hex, `sha256:` prefix allowed); default: hex sha256
    /// of the routing key, the same on every emulator.
    pub digest: Option<String>,
    /// Size in bytes; default derived from `parameter_size`.
    pub size: Option<u64>,
    pub family: Option<String>,
    pub parameter_size: Option<String>,
    pub quantization_level: Option<String>,
    /// An embedding-only model: chat and generate answer 400.
    pub embedding: bool,
    /// Loaded at start.
    pub loaded: bool,
    pub modified_at: Option<DateTime<Utc>>,
}

impl ModelSpec {
    /// A spec with only a name (and optionally `NAME@DIGEST`).
    pub fn from_flag(s: &str) -> Self {
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (s, None),
        };
        ModelSpec {
            name: name.to_string(),
            digest,
            ..ModelSpec::default()
        }
    }
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// Checks what serde cannot: names, digests, non-zero capacities.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("num_parallel", self.num_parallel),
            ("max_loaded_models", self.max_loaded_models),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero {
                    field,
                    value: value.into(),
                });
            }
        }
        crate::origins::AllowedOrigins::from_ollama_origins(self.origins.as_deref())?;
        for (field, value) in [
            ("tokens_per_second", self.tokens_per_second),
            ("prompt_rate", self.prompt_rate),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(ConfigError::Rate { field, value });
            }
        }
        for m in &self.models {
            model_map::name::ModelName::parse(&m.name)
                .map_err(|_| ConfigError::ModelName(m.name.clone()))?;
            if let Some(d) = &m.digest {
                normalize_digest(d).ok_or_else(|| ConfigError::Digest(d.clone()))?;
            }
        }
        Ok(())
    }
}

/// `sha256:ABC…` or `abc…` (64 hex) to lowercase hex without prefix.
pub fn normalize_digest(d: &str) -> Option<String> {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_humane_durations_and_models() {
        let c: Config = toml::from_str(
            r#"
            name = "gpu-a"
            load_time = "1.5s"
            pull_time = 250
            keep_alive = "-1m"
            num_parallel = 2
            [[models]]
            name = "llama3.2"
            loaded = true
            modified_at = "2025-01-01T00:00:00Z"
            [[models]]
            name = "nomic-embed-text"
            embedding = true
            digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            "#,
        )
        .expect("valid config");
        c.validate().expect("valid");
        assert_eq!(c.load_time, Duration::from_millis(1500));
        assert_eq!(c.pull_time, Duration::from_millis(250));
        assert_eq!(c.keep_alive, KeepAlive::Forever);
        assert_eq!(c.tokens_per_second, 50.0);
        assert_eq!(c.models.len(), 2);
        assert!(c.models[1].embedding && c.models[0].loaded);
    }

    #[test]
    fn bad_values_are_named() {
        let err = toml::from_str::<Config>("load_time = \"2 parsecs\"").unwrap_err();
        assert!(err.to_string().contains("2 parsecs"), "{err}");
        let err = toml::from_str::<Config>("colour = 1").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let c = Config {
            models: vec![ModelSpec::from_flag("bad name")],
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("bad name"));
    }
}
