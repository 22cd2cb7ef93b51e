//! `ollama-lb-bench`: runs the benchmarks and writes the report. Run it
//! through `scripts/bench.sh`, which builds what it needs first.

// A measurement program run by hand, never deployed: a failed step ends the run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bench::machine::Machine;
use bench::{conversations, overhead, routing, scale, Section, Settings};
use clap::Parser;

/// Benchmarks ollama-lb and writes docs/benchmarks.md plus docs/bench/*.svg.
#[derive(Debug, Parser)]
#[command(name = "ollama-lb-bench")]
struct Cli {
    /// Folder for benchmarks.md; figures go to its bench/ subfolder.
    #[arg(long, env = "BENCH_OUT", default_value = "docs")]
    out: PathBuf,
    /// Sections to run (overhead, routing, conversations, gateways, scale).
    #[arg(
        long,
        env = "BENCH_SECTIONS",
        value_delimiter = ',',
        default_value = "overhead,routing,conversations,gateways,scale"
    )]
    sections: Vec<String>,
    /// Seed of the routing workload.
    #[arg(long, env = "BENCH_SEED", default_value_t = 6)]
    seed: u64,
    /// Shorter runs (for trying the program, not for the report).
    #[arg(long)]
    quick: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The bench process (emulators, clients) stays on CPU 1 with wrk and
    // syncd; each Envoy is pinned to CPU 0.
    bench::procs::pin(std::process::id(), "1");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut s = Settings {
        seed: cli.seed,
        ..Settings::default()
    };
    if cli.quick {
        s.rounds = 1;
        s.wrk_duration = Duration::from_secs(1);
        s.ttfb_requests = 50;
        s.routing_duration = Duration::from_secs(10);
        s.routing_drain = Duration::from_secs(10);
        s.routing_warmup = Duration::from_secs(3);
        s.scale_instances = 100;
        s.scale_models = 20;
        s.scale_map_changes = 1;
        s.scale_window = Duration::from_secs(3);
    }
    let machine = Machine::detect();
    let label = format!("machine: {}", machine.label());
    let dir = e2e::paths::target_dir().join("bench-run");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let mut sections: Vec<(&str, Section)> = Vec::new();
    for name in &cli.sections {
        let t = Instant::now();
        let (title, section) = match name.as_str() {
            "overhead" => ("1. Overhead", overhead::run(&dir, &s, &label).await?),
            "routing" => ("2. Routing quality", routing::run(&dir, &s, &label).await?),
            "conversations" => (
                "2.1 Long conversations",
                conversations::run_conversations(&dir, &s, &label).await?,
            ),
            "gateways" => (
                "2.2 Several gateways",
                conversations::run_gateways(&dir, &s, &label).await?,
            ),
            "scale" => ("3. Scale", scale::run(&dir, &s, &label).await?),
            other => anyhow::bail!(
                "unknown section {other:?}: expected overhead, routing, conversations, gateways or scale"
            ),
        };
        eprintln!("bench: {name} took {:.0?}", t.elapsed());
        sections.push((title, section));
    }
    let figures = cli.out.join("bench");
    std::fs::create_dir_all(&figures)?;
    let mut md = String::from("# Benchmarks\n\n");
    let _ = writeln!(
        md,
        "Written by `scripts/bench.sh` (the `ollama-lb-bench` program in `bench/`) in one run of {:.0} s{}. \
         Numbers are from one machine and one run: compare the ratios, not the absolute figures. \
         This is not a test and gates nothing.\n\n\
         - Machine: **{}**\n- Commit: `{}`; Envoy `{}`; load generator `{}`\n",
        started.elapsed().as_secs_f64(),
        if cli.quick { " (--quick: short runs, not for comparison)" } else { "" },
        machine.label(),
        command_line("git", &["rev-parse", "--short", "HEAD"]),
        envoy_version(),
        command_line("wrk", &["-v"]).lines().next().unwrap_or("wrk").split(" Copyright").next().unwrap_or("wrk"),
    );
    for (title, section) in &sections {
        let _ = writeln!(md, "## {title}\n\n{}", section.markdown);
        for (file, svg) in &section.figures {
            std::fs::write(figures.join(file), svg)?;
        }
    }
    let path = cli.out.join("benchmarks.md");
    std::fs::write(&path, md)?;
    eprintln!(
        "bench: wrote {} in {:.0?}",
        path.display(),
        started.elapsed()
    );
    Ok(())
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.trim().to_string()
        })
        .unwrap_or_default()
}

/// `1.40.0` from `envoy --version` (`… version: <sha>/1.40.0/Clean/…`).
fn envoy_version() -> String {
    let out = command_line(
        &e2e::paths::envoy_bin().display().to_string(),
        &["--version"],
    );
    out.split("version: ")
        .nth(1)
        .and_then(|v| v.split('/').nth(1))
        .unwrap_or("?")
        .to_string()
}
