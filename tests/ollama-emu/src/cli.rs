//! The `ollama-emu` command line: every flag has an `OLLAMA_EMU_*`
//! environment variable and overrides the `--config` file.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::duration::{parse_config_duration, parse_keep_alive_setting};
use crate::{Config, KeepAlive, ModelSpec};

/// An emulated Ollama server for tests and demos.
#[derive(Debug, Parser)]
#[command(name = "ollama-emu", version)]
pub struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "OLLAMA_EMU_LISTEN", default_value = "127.0.0.1:11434")]
    pub listen: SocketAddr,
    /// TOML configuration file; flags override it.
    #[arg(long, env = "OLLAMA_EMU_CONFIG")]
    pub config: Option<String>,
    /// Instance name, sent as `x-emu-instance` on every response.
    #[arg(long, env = "OLLAMA_EMU_NAME")]
    pub name: Option<String>,
    /// A model on disk at start: NAME or NAME@DIGEST (repeatable).
    #[arg(
        long = "model",
        value_name = "NAME[@DIGEST]",
        env = "OLLAMA_EMU_MODELS",
        value_delimiter = ','
    )]
    pub models: Vec<String>,
    /// An embedding-only model on disk at start (repeatable): chat and
    /// generate answer 400 for it.
    #[arg(
        long = "embedding",
        env = "OLLAMA_EMU_EMBEDDING_MODELS",
        value_delimiter = ','
    )]
    pub embedding: Vec<String>,
    /// A model loaded at start (repeatable; added to disk if missing).
    #[arg(
        long = "loaded",
        value_name = "NAME",
        env = "OLLAMA_EMU_LOADED",
        value_delimiter = ','
    )]
    pub loaded: Vec<String>,
    /// Version reported by /api/version.
    #[arg(long, env = "OLLAMA_EMU_OLLAMA_VERSION")]
    pub ollama_version: Option<String>,
    /// Model load time, e.g. 2s or 500ms.
    #[arg(long, env = "OLLAMA_EMU_LOAD_TIME", value_parser = duration_arg)]
    pub load_time: Option<Duration>,
    /// Reply tokens per second.
    #[arg(long, env = "OLLAMA_EMU_TOKENS_PER_SECOND")]
    pub tokens_per_second: Option<f64>,
    /// Prompt tokens evaluated per second (uncached part, before the first
    /// reply token).
    #[arg(long, env = "OLLAMA_EMU_PROMPT_RATE")]
    pub prompt_rate: Option<f64>,
    /// Tokens in each reply.
    #[arg(long, env = "OLLAMA_EMU_RESPONSE_TOKENS")]
    pub response_tokens: Option<u32>,
    /// Parallel requests per loaded model (OLLAMA_NUM_PARALLEL).
    #[arg(long, env = "OLLAMA_EMU_NUM_PARALLEL")]
    pub num_parallel: Option<u32>,
    /// Requests that may wait for a load before 503 (OLLAMA_MAX_QUEUE).
    #[arg(long, env = "OLLAMA_EMU_MAX_QUEUE")]
    pub max_queue: Option<u32>,
    /// Models loaded at once (OLLAMA_MAX_LOADED_MODELS).
    #[arg(long, env = "OLLAMA_EMU_MAX_LOADED_MODELS")]
    pub max_loaded_models: Option<u32>,
    /// Default keep-alive, e.g. 5m, 0, or -1m for forever.
    #[arg(long, env = "OLLAMA_EMU_KEEP_ALIVE", value_parser = keep_alive_arg, allow_hyphen_values = true)]
    pub keep_alive: Option<KeepAlive>,
    /// Serve any `Host` header (Ollama answers 403 to non-local names
    /// while listening on loopback).
    #[arg(long, env = "OLLAMA_EMU_NO_HOST_CHECK")]
    pub no_host_check: bool,
    /// Extra CORS origins, as Ollama reads them: comma separated, one `*`
    /// wildcard each (e.g. `https://*.example.com,chrome-extension://*`).
    /// Ollama's own variable, so a script written for Ollama works here.
    #[arg(long, env = "OLLAMA_ORIGINS")]
    pub origins: Option<String>,
    /// Duration of a pull's download phase, e.g. 500ms.
    #[arg(long, env = "OLLAMA_EMU_PULL_TIME", value_parser = duration_arg)]
    pub pull_time: Option<Duration>,
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_config_duration(&toml::Value::String(s.to_string()))
}

fn keep_alive_arg(s: &str) -> Result<KeepAlive, String> {
    parse_keep_alive_setting(&toml::Value::String(s.to_string()))
}

/// Exit code for a bad configuration or flag (`EX_USAGE`).
pub const EX_USAGE: u8 = 64;

/// The configuration: the `--config` file (if any) overlaid with flags,
/// validated.
pub fn build_config(cli: Cli) -> anyhow::Result<Config> {
    let mut c = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    macro_rules! overlay {
        ($($field:ident => $target:ident),* $(,)?) => {
            $(if let Some(v) = cli.$field { c.$target = v; })*
        };
    }
    overlay!(
        name => name, ollama_version => version, load_time => load_time,
        tokens_per_second => tokens_per_second, prompt_rate => prompt_rate,
        response_tokens => response_tokens,
        num_parallel => num_parallel, max_queue => max_queue,
        max_loaded_models => max_loaded_models, keep_alive => keep_alive, pull_time => pull_time,
    );
    if cli.no_host_check {
        c.host_check = false;
    }
    if cli.origins.is_some() {
        c.origins = cli.origins.clone();
    }
    c.models
        .extend(cli.models.iter().map(|m| ModelSpec::from_flag(m)));
    c.models.extend(cli.embedding.iter().map(|m| ModelSpec {
        embedding: true,
        ..ModelSpec::from_flag(m)
    }));
    for name in &cli.loaded {
        let spec = ModelSpec::from_flag(name);
        let key = model_map::name::routing_key(&spec.name)
            .map_err(|_| anyhow::anyhow!("invalid model name {name:?} in --loaded"))?;
        let existing = c
            .models
            .iter_mut()
            .find(|m| model_map::name::routing_key(&m.name).ok().as_deref() == Some(key.as_str()));
        match existing {
            Some(m) => m.loaded = true,
            None => c.models.push(ModelSpec {
                loaded: true,
                ..spec
            }),
        }
    }
    c.validate()?;
    Ok(c)
}
