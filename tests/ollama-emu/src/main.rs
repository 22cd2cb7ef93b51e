//! `ollama-emu`: serves the emulated Ollama API until SIGINT/SIGTERM.
//! Prints one line, `ollama-emu NAME listening on http://ADDR`, once bound.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ollama_emu::duration::{parse_config_duration, parse_keep_alive_setting};
use ollama_emu::{Config, KeepAlive, ModelSpec};

/// An emulated Ollama server for tests and demos.
#[derive(Debug, Parser)]
#[command(name = "ollama-emu", version)]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "OLLAMA_EMU_LISTEN", default_value = "127.0.0.1:11434")]
    listen: SocketAddr,
    /// TOML configuration file; flags override it.
    #[arg(long, env = "OLLAMA_EMU_CONFIG")]
    config: Option<String>,
    /// Instance name, sent as `x-emu-instance` on every response.
    #[arg(long, env = "OLLAMA_EMU_NAME")]
    name: Option<String>,
    /// A model on disk at start: NAME or NAME@DIGEST (repeatable).
    #[arg(long = "model", env = "OLLAMA_EMU_MODELS", value_delimiter = ',')]
    models: Vec<String>,
    /// A model loaded at start (repeatable; added to disk if missing).
    #[arg(long = "loaded", env = "OLLAMA_EMU_LOADED", value_delimiter = ',')]
    loaded: Vec<String>,
    /// Version reported by /api/version.
    #[arg(long, env = "OLLAMA_EMU_OLLAMA_VERSION")]
    ollama_version: Option<String>,
    /// Model load time, e.g. 2s or 500ms.
    #[arg(long, env = "OLLAMA_EMU_LOAD_TIME", value_parser = duration_arg)]
    load_time: Option<Duration>,
    /// Reply tokens per second.
    #[arg(long, env = "OLLAMA_EMU_TOKENS_PER_SECOND")]
    tokens_per_second: Option<f64>,
    /// Tokens in each reply.
    #[arg(long, env = "OLLAMA_EMU_RESPONSE_TOKENS")]
    response_tokens: Option<u32>,
    /// Parallel requests per loaded model (OLLAMA_NUM_PARALLEL).
    #[arg(long, env = "OLLAMA_EMU_NUM_PARALLEL")]
    num_parallel: Option<u32>,
    /// Requests that may wait for a load before 503 (OLLAMA_MAX_QUEUE).
    #[arg(long, env = "OLLAMA_EMU_MAX_QUEUE")]
    max_queue: Option<u32>,
    /// Models loaded at once (OLLAMA_MAX_LOADED_MODELS).
    #[arg(long, env = "OLLAMA_EMU_MAX_LOADED_MODELS")]
    max_loaded_models: Option<u32>,
    /// Default keep-alive, e.g. 5m, 0, or -1m for forever.
    #[arg(long, env = "OLLAMA_EMU_KEEP_ALIVE", value_parser = keep_alive_arg, allow_hyphen_values = true)]
    keep_alive: Option<KeepAlive>,
    /// Duration of a pull's download phase, e.g. 500ms.
    #[arg(long, env = "OLLAMA_EMU_PULL_TIME", value_parser = duration_arg)]
    pull_time: Option<Duration>,
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_config_duration(&toml::Value::String(s.to_string()))
}

fn keep_alive_arg(s: &str) -> Result<KeepAlive, String> {
    parse_keep_alive_setting(&toml::Value::String(s.to_string()))
}

/// Exit code for a bad configuration or flag (`EX_USAGE`).
const EX_USAGE: u8 = 64;

fn build_config(cli: Cli) -> anyhow::Result<Config> {
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
        tokens_per_second => tokens_per_second, response_tokens => response_tokens,
        num_parallel => num_parallel, max_queue => max_queue,
        max_loaded_models => max_loaded_models, keep_alive => keep_alive, pull_time => pull_time,
    );
    c.models
        .extend(cli.models.iter().map(|m| ModelSpec::from_flag(m)));
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

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OLLAMA_EMU_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EX_USAGE);
        }
    };
    let listen = cli.listen;
    let config = match build_config(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ollama-emu: {e:#}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ollama-emu: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ollama-emu: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ollama-emu {} listening on http://{addr}", config.name);
    let _ = out.flush();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(ollama_emu::serve(listener, config, async {
        let _ = stop_rx.await;
    }));
    tokio::select! {
        res = &mut server => return finish(res),
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(2), &mut server).await {
        Ok(res) => finish(res),
        Err(_) => {
            server.abort();
            ExitCode::SUCCESS
        }
    }
}

fn finish(res: Result<std::io::Result<()>, tokio::task::JoinError>) -> ExitCode {
    match res {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("ollama-emu: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ollama-emu: server task failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
