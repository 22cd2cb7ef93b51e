//! The `syncd sync` command. Without `--url` it polls every configured
//! instance once, plans and pulls from here; with `--url` it asks that
//! daemon to sync (`POST /v1/sync`) and shows the streamed progress the
//! same way. Exit code: 0 when every action succeeded (or there was
//! nothing to do), 1 when one failed, 64 for a bad configuration or
//! placement.

use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;

use super::executor::{Event, Executor, Summary};
use super::placement::{Placement, PlacementError};
use super::plan::{plan, render_table};
use super::progress::{render, ProgressMode, Renderer};
use crate::config::{Config, ConfigError};

/// Where the sync runs: from here over the configured instances, or on a
/// running daemon (`--url`).
#[derive(Debug, Clone)]
pub enum SyncSource {
    /// Poll every instance of this configuration once, plan and pull from
    /// here.
    Local(Box<Config>),
    /// Ask the daemon at `url` (`POST /v1/sync`), with its bearer token.
    Remote { url: String, token: Option<String> },
}

/// How `syncd sync` was asked to sync, wherever it runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub placement: Option<PathBuf>,
    pub dry_run: bool,
    /// `None`: 1 (with `--url`, the daemon's own setting applies).
    pub concurrency: Option<NonZeroUsize>,
    pub progress: ProgressMode,
}

/// Why `syncd sync` could not run at all.
#[derive(Debug, Error)]
pub enum CommandError {
    #[error("bad configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("bad placement: {0}")]
    Placement(#[from] PlacementError),
    /// The daemon refused the request as invalid (HTTP 400).
    #[error("the daemon refused the sync: {0}")]
    Refused(String),
    #[error("{0}")]
    Daemon(String),
}

impl CommandError {
    /// 64 for what the user must fix in the configuration, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Config(_) | CommandError::Placement(_) | CommandError::Refused(_) => {
                crate::EXIT_CONFIG
            }
            CommandError::Daemon(_) => 1,
        }
    }
}

/// Runs the command; returns the exit code.
pub async fn sync_command(source: &SyncSource, opts: &SyncOptions) -> Result<u8, CommandError> {
    match source {
        SyncSource::Remote { url, token } => remote(url, token.as_deref(), opts).await,
        SyncSource::Local(config) => local(config, opts).await,
    }
}

fn renderer(mode: ProgressMode) -> Renderer {
    let bars = match mode {
        ProgressMode::Auto => std::io::stdout().is_terminal(),
        ProgressMode::Bars => true,
        ProgressMode::Plain => false,
    };
    if bars {
        Renderer::bars()
    } else {
        Renderer::plain(Box::new(std::io::stdout()))
    }
}

fn exit_code(summary: Option<&Summary>) -> u8 {
    u8::from(!summary.is_some_and(Summary::ok))
}

async fn local(config: &Config, opts: &SyncOptions) -> Result<u8, CommandError> {
    let names: Vec<String> = config.instances.iter().map(|i| i.name.clone()).collect();
    let placement = match &opts.placement {
        Some(path) => Some(Placement::from_file(path, Some(&names))?),
        None => None,
    };
    let (map, unreachable) = super::poll_once(config).await;
    for (name, error) in &unreachable {
        eprintln!("syncd sync: instance {name} is unreachable ({error}); it is skipped");
    }
    let the_plan = plan(&map, placement.as_ref());
    if opts.dry_run || the_plan.actions.is_empty() {
        print!("{}", render_table(&the_plan));
        return Ok(0);
    }
    let exec = Executor::new(&config.poll, opts.concurrency.unwrap_or(NonZeroUsize::MIN));
    let (tx, rx) = mpsc::unbounded_channel();
    let shown = tokio::spawn(render(rx, renderer(opts.progress)));
    exec.execute(&map, &the_plan, &tx).await;
    drop(tx);
    let summary = shown.await.ok().flatten();
    Ok(exit_code(summary.as_ref()))
}

async fn remote(url: &str, token: Option<&str>, opts: &SyncOptions) -> Result<u8, CommandError> {
    let placement = match &opts.placement {
        Some(path) => Some(Placement::from_file(path, None)?),
        None => None,
    };
    if opts.concurrency.is_some() {
        eprintln!(
            "syncd sync: --concurrency (SYNCD_SYNC_CONCURRENCY) is ignored with --url: \
             the daemon's own --concurrency applies"
        );
    }
    let endpoint = format!("{}/v1/sync", url.trim_end_matches('/'));
    let body = serde_json::json!({
        "dry_run": opts.dry_run,
        "placement": placement,
    });
    let resp = post_sync(&endpoint, token, &body).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let shown = if opts.dry_run {
        tokio::spawn(print_plan(rx))
    } else {
        tokio::spawn(render(rx, renderer(opts.progress)))
    };
    read_events(resp, &endpoint, &tx).await?;
    drop(tx);
    let summary = shown.await.ok().flatten();
    if summary.is_none() {
        eprintln!("syncd sync: the daemon's stream ended before the summary");
    }
    Ok(exit_code(summary.as_ref()))
}

/// `POST {endpoint}` with `body`; the streaming answer once it is 2xx.
async fn post_sync(
    endpoint: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> Result<reqwest::Response, CommandError> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| CommandError::Daemon(e.to_string()))?;
    let mut request = http.post(endpoint).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let resp = request
        .send()
        .await
        .map_err(|e| daemon_error(endpoint, &e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    let message = crate::text::error_message(&text).unwrap_or(text);
    Err(if status == reqwest::StatusCode::BAD_REQUEST {
        CommandError::Refused(message)
    } else {
        CommandError::Daemon(format!("POST {endpoint}: HTTP {status}: {message}"))
    })
}

fn daemon_error(endpoint: &str, e: &reqwest::Error) -> CommandError {
    CommandError::Daemon(format!(
        "POST {endpoint}: {}",
        crate::ollama::error_chain(e)
    ))
}

/// Sends every event of the NDJSON answer on `tx`; an unreadable line is
/// reported and skipped.
async fn read_events(
    mut resp: reqwest::Response,
    endpoint: &str,
    tx: &mpsc::UnboundedSender<Event>,
) -> Result<(), CommandError> {
    let mut lines = crate::text::NdjsonLines::default();
    while let Some(chunk) = resp.chunk().await.map_err(|e| daemon_error(endpoint, &e))? {
        lines.push(&chunk);
        while let Some(line) = lines.next_line() {
            match serde_json::from_slice::<Event>(&line) {
                Ok(event) => {
                    let _ = tx.send(event);
                }
                Err(e) => eprintln!("syncd sync: skipping an unreadable event: {e}"),
            }
        }
    }
    Ok(())
}

/// `--dry-run --url`: prints the plan the daemon sent, as a table.
async fn print_plan(mut rx: mpsc::UnboundedReceiver<Event>) -> Option<Summary> {
    while let Some(event) = rx.recv().await {
        if let Event::Plan(p) = event {
            print!("{}", render_table(&p));
            return Some(Summary::default());
        }
    }
    None
}
