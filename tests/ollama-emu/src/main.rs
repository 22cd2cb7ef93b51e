//! `ollama-emu`: serves the emulated Ollama API until SIGINT/SIGTERM.
//! Prints one line, `ollama-emu NAME listening on http://ADDR`, once bound.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ollama_emu::cli::{build_config, Cli, EX_USAGE};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
