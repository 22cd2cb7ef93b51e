//! Section 1, overhead: the same `wrk` load against (a) one emulator
//! directly, (b) Envoy with a plain route to it, (c) Envoy with the filter
//! and a map, interleaved round by round, reported as medians of per-round
//! ratios.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use ollama_emu::{Config, ModelSpec};

use crate::procs::{cpu_seconds, filter_config, plain_config, start_envoy, start_syncd, upstream};
use crate::stats::{median, percentile};
use crate::svg::{bar_chart, Series};
use crate::wrk::{self, WrkResult};
use crate::{Section, Settings};

const MODEL: &str = "bench";
const TARGETS: [&str; 3] = ["a direct", "b envoy plain", "c envoy+filter"];
const BODIES: [&str; 3] = ["1 KB", "1 MB model first", "1 MB model last"];
/// Envoy runs alone on CPU 0; wrk, the emulator and syncd share CPU 1.
const ENVOY_CPU: &str = "0";
const LOAD_CPU: &str = "1";

fn body(kind: usize) -> Vec<u8> {
    let size = if kind == 0 { 1024 } else { 1 << 20 };
    let fixed = r#"{"model":"bench","prompt":"","stream":false}"#.len();
    let words = "lorem ipsum dolor sit amet ".repeat(size / 27 + 1);
    let prompt = &words[..size - fixed];
    let json = if kind == 2 {
        format!(r#"{{"prompt":"{prompt}","stream":false,"model":"{MODEL}"}}"#)
    } else {
        format!(r#"{{"model":"{MODEL}","prompt":"{prompt}","stream":false}}"#)
    };
    json.into_bytes()
}

/// Results of one grid at one concurrency: `[body][target]` → per round.
type Grid = Vec<Vec<Vec<WrkResult>>>;

pub async fn run(dir: &Path, s: &Settings, label: &str) -> anyhow::Result<Section> {
    let emu = ollama_emu::spawn(
        "127.0.0.1:0".parse()?,
        Config {
            name: "emu".into(),
            load_time: Duration::ZERO,
            tokens_per_second: 1000.0,
            // No reply tokens: the emulator answers at once, so Envoy and
            // the filter are what is measured.
            response_tokens: 0,
            num_parallel: 256,
            models: vec![ModelSpec {
                name: MODEL.into(),
                loaded: true,
                ..ModelSpec::default()
            }],
            ..Config::default()
        },
    )
    .await?;
    let syncd = start_syncd(
        dir,
        "overhead-syncd",
        &[("emu".into(), emu.url())],
        &["--interval", "1s"],
        LOAD_CPU,
    )
    .await?;
    let ups = || vec![upstream("emu", emu.addr())];
    let plain = start_envoy(
        dir,
        "overhead-envoy-b",
        &plain_config(ups(), "emu"),
        1,
        ENVOY_CPU,
    )
    .await?;
    let filter_cfg = filter_config(ups(), syncd.addr, serde_json::json!({}));
    let filtered = start_envoy(dir, "overhead-envoy-c", &filter_cfg, 1, ENVOY_CPU).await?;
    wait_routable(&filtered.url).await?;
    let urls = [emu.url(), plain.url.clone(), filtered.url.clone()];
    let pids = [None, Some(plain.proc.pid()), Some(filtered.proc.pid())];

    let mut scripts = Vec::new();
    for (k, name) in BODIES.iter().enumerate() {
        let path = dir.join(format!("body-{k}.json"));
        std::fs::write(&path, body(k))?;
        scripts.push(wrk::script(
            dir,
            &format!("body-{k}"),
            &path,
            "/api/generate",
        )?);
        eprintln!("overhead: body {name}: {} bytes", body(k).len());
    }
    let mut grids: Vec<(u32, Grid)> = Vec::new();
    for conns in [1, s.connections] {
        let mut grid: Grid = vec![vec![Vec::new(); 3]; 3];
        for round in 0..s.rounds {
            for (k, script) in scripts.iter().enumerate() {
                for (t, url) in urls.iter().enumerate() {
                    let before = pids[t].and_then(cpu_seconds);
                    let mut r = wrk::run(script, url, conns, s.wrk_duration, LOAD_CPU)?;
                    if let (Some(b), Some(a)) = (before, pids[t].and_then(cpu_seconds)) {
                        r.cpu_us = (a - b) * 1e6 / r.requests.max(1) as f64;
                    }
                    eprintln!(
                        "overhead: c={conns} round {round} {} {}: {:.0} req/s p50 {:.0} µs p99 {:.0} µs errors {}",
                        BODIES[k], TARGETS[t], r.rps, r.p50_us, r.p99_us, r.errors
                    );
                    grid[k][t].push(r);
                }
            }
        }
        grids.push((conns, grid));
    }
    let ttfb = first_byte(&urls, s).await?;
    let host_scan = host_scan_mb_s(&body(2));
    drop((plain, filtered, syncd));
    emu.shutdown().await;
    Ok(report(&grids, &ttfb, host_scan, s, label))
}

/// Waits until the filter routes (its map arrived).
async fn wait_routable(url: &str) -> anyhow::Result<()> {
    let client = e2e::http();
    for _ in 0..500 {
        let r = client
            .post(format!("{url}/api/generate"))
            .body(format!(r#"{{"model":"{MODEL}","stream":false}}"#))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the filter at {url} never routed a request")
}

/// Time to the first streamed byte of a streaming generate, in µs, per
/// target, interleaved request by request.
async fn first_byte(urls: &[String; 3], s: &Settings) -> anyhow::Result<Vec<Vec<f64>>> {
    let client = e2e::http();
    let body = format!(r#"{{"model":"{MODEL}","prompt":"hello there","stream":true}}"#);
    let mut out = vec![Vec::new(); 3];
    for i in 0..s.ttfb_requests + 20 {
        for (t, url) in urls.iter().enumerate() {
            let start = Instant::now();
            let mut resp = client
                .post(format!("{url}/api/generate"))
                .body(body.clone())
                .send()
                .await?;
            let first = resp.chunk().await?;
            let elapsed = start.elapsed();
            while resp.chunk().await?.is_some() {}
            anyhow::ensure!(first.is_some(), "empty stream from {url}");
            if i >= 20 {
                out[t].push(elapsed.as_secs_f64() * 1e6);
            }
        }
    }
    Ok(out)
}

fn med(rs: &[WrkResult], f: impl Fn(&WrkResult) -> f64) -> f64 {
    median(&rs.iter().map(f).collect::<Vec<_>>())
}

/// Median over rounds of a per-round comparison of (c) with (b).
fn med_pair(grid: &Grid, k: usize, f: impl Fn(&WrkResult, &WrkResult) -> f64) -> f64 {
    let v: Vec<f64> = grid[k][2]
        .iter()
        .zip(&grid[k][1])
        .map(|(c, b)| f(c, b))
        .collect();
    median(&v)
}

/// The filter's body scanner run natively on the host over `body` in the
/// filter's 64 KiB windows: MB/s, median of 21 runs.
pub fn host_scan_mb_s(body: &[u8]) -> f64 {
    let filter::endpoint::Endpoint::Body(route) =
        filter::endpoint::classify("POST", "/api/generate")
    else {
        return 0.0;
    };
    let rates: Vec<f64> = (0..21)
        .map(|_| {
            let start = Instant::now();
            let mut scanner = filter::body_scan::BodyScanner::new(route.fields);
            for chunk in body.chunks(64 * 1024) {
                if scanner.feed(chunk) {
                    break;
                }
            }
            scanner.finish();
            let ok = scanner.result().is_some_and(|r| r.is_ok());
            let secs = start.elapsed().as_secs_f64();
            if ok && secs > 0.0 {
                body.len() as f64 / 1e6 / secs
            } else {
                0.0
            }
        })
        .collect();
    median(&rates)
}

fn report(
    grids: &[(u32, Grid)],
    ttfb: &[Vec<f64>],
    host_scan: f64,
    s: &Settings,
    label: &str,
) -> Section {
    let mut md = String::new();
    let mut figures = Vec::new();
    let _ = writeln!(
        md,
        "Load: `wrk -t1` POSTing `/api/generate` (`stream: false`) with a fixed body, {} interleaved rounds of {:.1} s per cell \
         (order a, b, c for each body, each round). Envoy `--concurrency 1` pinned to CPU 0; wrk, the emulator and syncd pinned to CPU 1. \
         The emulator (in the bench process) has the model loaded, load time 0 and replies with no tokens, so it answers at once. \
         Figures are medians over rounds; ratios are medians of per-round ratios.\n",
        s.rounds,
        s.wrk_duration.as_secs_f64()
    );
    let mut scan = None;
    let mut targets = (f64::NAN, f64::NAN);
    for (conns, grid) in grids {
        let _ = writeln!(md, "#### {conns} connection(s)\n");
        md.push_str(
            "| body | target | req/s | p50 µs | p99 µs | errors |\n|---|---|---:|---:|---:|---:|\n",
        );
        for (k, b) in BODIES.iter().enumerate() {
            for (t, name) in TARGETS.iter().enumerate() {
                let rs = &grid[k][t];
                let _ = writeln!(
                    md,
                    "| {b} | {name} | {:.0} | {:.0} | {:.0} | {} |",
                    med(rs, |r| r.rps),
                    med(rs, |r| r.p50_us),
                    med(rs, |r| r.p99_us),
                    rs.iter().map(|r| r.errors).sum::<u64>()
                );
            }
        }
        md.push_str("\n| body | throughput c/b | p50 added by the filter (c−b) | p99 c/b | Envoy CPU per request b → c |\n|---|---:|---:|---:|---:|\n");
        for (k, b) in BODIES.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {b} | **{:.2}** | **{:.0} µs** | {:.2} | {:.0} → {:.0} µs |",
                med_pair(grid, k, |c, b| c.rps / b.rps),
                med_pair(grid, k, |c, b| c.p50_us - b.p50_us),
                med_pair(grid, k, |c, b| c.p99_us / b.p99_us),
                med(&grid[k][1], |r| r.cpu_us),
                med(&grid[k][2], |r| r.cpu_us),
            );
        }
        md.push('\n');
        if *conns != 1 {
            let cpu = |k| med_pair(grid, k, |c, b| c.cpu_us - b.cpu_us);
            scan = Some((cpu(0), cpu(1), cpu(2), *conns));
            targets.0 = med_pair(grid, 0, |c, b| c.rps / b.rps);
        } else {
            targets.1 = med_pair(grid, 0, |c, b| c.p50_us - b.p50_us);
        }
        let groups: Vec<String> = BODIES.iter().map(|b| b.to_string()).collect();
        let series: Vec<Series> = TARGETS
            .iter()
            .enumerate()
            .map(|(t, name)| Series {
                name: name.to_string(),
                values: (0..3).map(|k| med(&grid[k][t], |r| r.rps)).collect(),
            })
            .collect();
        let name = format!("overhead-rps-c{conns}.svg");
        figures.push((
            name.clone(),
            bar_chart(
                &format!("Throughput, {conns} connection(s), Envoy --concurrency 1"),
                label,
                "requests per second",
                &groups,
                &series,
            ),
        ));
        let series: Vec<Series> = TARGETS
            .iter()
            .enumerate()
            .map(|(t, name)| Series {
                name: name.to_string(),
                values: (0..3).map(|k| med(&grid[k][t], |r| r.p50_us)).collect(),
            })
            .collect();
        let lat = format!("overhead-p50-c{conns}.svg");
        figures.push((
            lat.clone(),
            bar_chart(
                &format!("p50 latency, {conns} connection(s)"),
                label,
                "microseconds",
                &groups,
                &series,
            ),
        ));
        let _ = writeln!(md, "![throughput](bench/{name}) ![p50](bench/{lat})\n");
    }
    md.push_str("#### Time to the first streamed byte\n\n");
    let _ = writeln!(
        md,
        "One client, `stream: true`, 1 KB-class body, {} requests per target interleaved request by request (after 20 warm-up rounds).\n",
        s.ttfb_requests
    );
    md.push_str("| target | p50 µs | p99 µs |\n|---|---:|---:|\n");
    for (t, name) in TARGETS.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {name} | {:.0} | {:.0} |",
            percentile(&ttfb[t], 50.0),
            percentile(&ttfb[t], 99.0)
        );
    }
    let _ = writeln!(
        md,
        "\nFirst byte: c/b at p50 **{:.2}**, c−b at p50 **{:.0} µs**.\n",
        percentile(&ttfb[2], 50.0) / percentile(&ttfb[1], 50.0),
        percentile(&ttfb[2], 50.0) - percentile(&ttfb[1], 50.0)
    );
    if let Some((cpu_1k, cpu_first, cpu_last, conns)) = scan {
        let extra = cpu_last - cpu_1k;
        let rate = if extra > 0.0 {
            format!("**≥ {:.0} MB/s**", 1_048_576.0 / extra)
        } else {
            "not measurable (below noise)".into()
        };
        let _ = writeln!(
            md,
            "#### Scan speed inside the VM (derived)\n\n\
             Envoy's own CPU time (utime + stime from `/proc`, over each {conns}-connection wrk run, per request): the filter adds \
             {cpu_1k:.0} µs per 1 KB request, {cpu_first:.0} µs per 1 MB request with the model first (it stops scanning at the model) and \
             {cpu_last:.0} µs per 1 MB request with the model last, which it must copy into the VM in 64 KiB windows and scan to the end. \
             The difference between the last two cases of 1 MiB and 1 KB, {extra:.0} µs for 1 MiB, is the copy plus the scan, so the scan runs at \
             {rate} inside v8 (a lower bound). For comparison, the same scanner compiled natively and run on the host over the same body: \
             {host_scan:.0} MB/s.\n"
        );
    }
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    let _ = writeln!(
        md,
        "#### Targets\n\n\
         - c/b throughput for 1 KB bodies ≥ 0.9 (at {} connections): **{:.2}**, {}.\n\
         - ≤ 100 µs added at p50 (1 KB, 1 connection, so no queueing): **{:.0} µs**, {}.\n\
         - Scan of 1 MB bodies ≥ 500 MB/s inside the VM: see the derivation above.\n\n\
         Where the filter's time goes: the Envoy CPU column is the honest measure on a 2-core machine shared with wrk and the \
         emulator (latencies there include scheduling delays). For a small request the filter's added CPU is tens of µs when \
         8 connections let Envoy batch its work, and a few hundred µs at 1 connection, where every request pays its own wake-ups: \
         the request is held until its body is read, then resumed, the route is recomputed (`clear_route_cache`), and about twenty \
         host calls read headers, shared data and gauges. For 1 MB bodies the model-first case costs nearly as much as the \
         model-last case, so most of that cost is Envoy holding and re-handing the body (the filter stops iteration on headers), \
         not the scan. Not changed in #6; the next step is a CPU profile of Envoy with the filter (perf) to see whether the v8 \
         host-call path or the stop-and-resume dominates.\n",
        s.connections,
        targets.0,
        verdict(targets.0 >= 0.9),
        targets.1,
        verdict(targets.1 <= 100.0),
    );
    Section {
        markdown: md,
        figures,
    }
}
