//! `syncd`: thin entry point over the library (see `syncd::cli`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use syncd::cli::{Cli, Command};
use syncd::sync::command::{sync_command, CommandError};
use syncd::EXIT_CONFIG;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("syncd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => {
            let (config, sync) = match args.resolve() {
                Ok(c) => c,
                Err(e) => return Ok(config_error(&e)),
            };
            init_logging();
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("binding --listen {}", config.listen))?;
                let daemon = syncd::Daemon::new(config).with_sync(sync);
                notify_on_sighup(daemon.reload_trigger());
                daemon.serve(listener, shutdown_signal()).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Sync(args) => {
            let synced = args.source().map_err(CommandError::from);
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            let synced = match synced {
                Ok(source) => runtime.block_on(sync_command(&source, &args.options())),
                Err(e) => Err(e),
            };
            match synced {
                Ok(code) => Ok(ExitCode::from(code)),
                Err(e) => {
                    eprintln!("syncd sync: {e}");
                    Ok(ExitCode::from(e.exit_code()))
                }
            }
        }
        Command::CheckConfig(args) => match args.resolve() {
            Ok(config) => {
                print!("{}", syncd::cli::describe(&config));
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(config_error(&e)),
        },
        Command::EnvoyConfig(args) => match args.render() {
            Ok(yaml) => {
                print!("{yaml}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(config_error(&e)),
        },
        Command::Status(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            let (instances, map) =
                runtime.block_on(syncd::status::fetch(&args.url, args.timeout))?;
            print!("{}", syncd::status::render(&instances, map.as_ref()));
            let pulls = runtime.block_on(syncd::status::fetch_pulls(&args.url, args.timeout));
            print!("{}", syncd::status::render_pulls(&pulls));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn config_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("syncd: bad configuration: {e}");
    ExitCode::from(EXIT_CONFIG)
}

/// Logs to stderr; `RUST_LOG` overrides the default `info`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Notifies `reload` on every SIGHUP (the instance file is read again).
fn notify_on_sighup(reload: std::sync::Arc<tokio::sync::Notify>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP: reading the instances again");
                        reload.notify_one();
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload by editing the file")
            }
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
