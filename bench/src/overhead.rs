//! Section 1, overhead: the same `wrk` load against (a) one emulator
//! directly, (b) Envoy with a plain route to it, (c) Envoy with the filter
//! and a map, and (d) Envoy with the floor filter (`bench/floor-filter`:
//! only what any body-routing wasm filter must do), interleaved round by
//! round, reported as medians of per-round ratios.

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
const TARGETS: [&str; 5] = [
    "a direct",
    "b envoy plain",
    "c envoy+filter",
    "d envoy+floor filter",
    "e floor + clear_route_cache",
];
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
    let floor = start_envoy(
        dir,
        "overhead-envoy-d",
        &floor_config(ups(), false),
        1,
        ENVOY_CPU,
    )
    .await?;
    wait_routable(&floor.url).await?;
    let clearing = start_envoy(
        dir,
        "overhead-envoy-e",
        &floor_config(ups(), true),
        1,
        ENVOY_CPU,
    )
    .await?;
    wait_routable(&clearing.url).await?;
    let urls = [
        emu.url(),
        plain.url.clone(),
        filtered.url.clone(),
        floor.url.clone(),
        clearing.url.clone(),
    ];
    let pids = [
        None,
        Some(plain.proc.pid()),
        Some(filtered.proc.pid()),
        Some(floor.proc.pid()),
        Some(clearing.proc.pid()),
    ];

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
        let mut grid: Grid = vec![vec![Vec::new(); TARGETS.len()]; BODIES.len()];
        for round in 0..s.rounds {
            for (k, script) in scripts.iter().enumerate() {
                // The Envoys' order rotates every round, so a drift in
                // the machine's speed does not always favour one.
                let envoys = [1, 2, 3, 4];
                for t in std::iter::once(0).chain((0..4).map(|i| envoys[(i + round) % 4])) {
                    let url = &urls[t];
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
    drop((plain, filtered, floor, syncd));
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
async fn first_byte(urls: &[String], s: &Settings) -> anyhow::Result<Vec<Vec<f64>>> {
    let client = e2e::http();
    let body = format!(r#"{{"model":"{MODEL}","prompt":"hello there","stream":true}}"#);
    let mut out = vec![Vec::new(); urls.len()];
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
    med_vs(grid, k, 2, 1, f)
}

/// Median over rounds of a per-round comparison of target `x` with `y`.
fn med_vs(
    grid: &Grid,
    k: usize,
    x: usize,
    y: usize,
    f: impl Fn(&WrkResult, &WrkResult) -> f64,
) -> f64 {
    let v: Vec<f64> = grid[k][x]
        .iter()
        .zip(&grid[k][y])
        .map(|(c, b)| f(c, b))
        .collect();
    median(&v)
}

/// A bootstrap like the filter's whose wasm filter is the floor filter,
/// listing the first instance's address for every request; `clear` also
/// clears the route cache after setting it (what the per-instance-cluster
/// layout before the fleet cluster needed), to measure that call's cost.
fn floor_config(instances: Vec<e2e::envoy_config::Upstream>, clear: bool) -> serde_json::Value {
    let endpoint = instances.first().map(|u| u.authority()).unwrap_or_default();
    let endpoint = if clear {
        format!("{endpoint} clear_route_cache")
    } else {
        endpoint
    };
    e2e::envoy_config::EnvoyConfig {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        admin: "127.0.0.1:0".parse().expect("literal address"),
        instances,
        syncd: e2e::envoy_config::Upstream {
            cluster: "syncd".into(),
            host: "127.0.0.1".into(),
            port: 9,
            ..Default::default()
        },
        wasm_path: Some(e2e::paths::floor_filter_wasm().display().to_string()),
        plugin_config: serde_json::json!(endpoint),
        max_body_bytes: e2e::envoy_config::DEFAULT_MAX_BODY_BYTES,
        syncd_replicas: Vec::new(),
        route_by: Default::default(),
        failover: Default::default(),
        fleet_endpoints: e2e::envoy_config::FleetEndpoints::Static,
    }
    .to_value()
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
            let mut scanner = filter::body_scan::BodyScanner::for_route(route);
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
         (for each body, each round: a, then the four Envoys in an order that rotates every round). \
         Target d is the floor: Envoy with `bench/floor-filter`, a wasm filter that does only what any filter routing by \
         the body must (hold the headers, read the first 64 KiB body window, set the fleet cluster's override-host header), \
         with no map, policy or metrics: c−d is what ollama-lb's own logic costs. Target e is the same floor filter also calling \
         `clear_route_cache` after setting the header, as routing by a per-instance cluster needed before the fleet cluster: \
         e−d is what that call cost per request. Envoy `--concurrency 1` pinned to CPU 0; wrk, the emulator and syncd pinned to CPU 1. \
         The emulator (in the bench process) has the model loaded, load time 0 and replies with no tokens, so it answers at once. \
         Figures are medians over rounds; ratios are medians of per-round ratios.\n",
        s.rounds,
        s.wrk_duration.as_secs_f64()
    );
    let mut scan = None;
    let mut targets = (f64::NAN, f64::NAN);
    // The floor's 1 KB figures: throughput d/b and CPU d−b at many
    // connections, p50 d−b at one; and the CPU c−d.
    let mut floor = (f64::NAN, f64::NAN, f64::NAN, f64::NAN);
    let mut med_b_cpu = f64::NAN;
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
        md.push_str("\n| body | throughput c/b | floor d/b | c/d | p50 added by the filter (c−b) | by the floor (d−b) | p99 c/b | Envoy CPU per request b / d / c | clearing the route cache: e/d throughput, e−d CPU |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (k, b) in BODIES.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {b} | **{:.2}** | {:.2} | {:.2} | **{:.0} µs** | {:.0} µs | {:.2} | {:.0} / {:.0} / {:.0} µs | {:.2}, {:+.0} µs |",
                med_pair(grid, k, |c, b| c.rps / b.rps),
                med_vs(grid, k, 3, 1, |d, b| d.rps / b.rps),
                med_vs(grid, k, 2, 3, |c, d| c.rps / d.rps),
                med_pair(grid, k, |c, b| c.p50_us - b.p50_us),
                med_vs(grid, k, 3, 1, |d, b| d.p50_us - b.p50_us),
                med_pair(grid, k, |c, b| c.p99_us / b.p99_us),
                med(&grid[k][1], |r| r.cpu_us),
                med(&grid[k][3], |r| r.cpu_us),
                med(&grid[k][2], |r| r.cpu_us),
                med_vs(grid, k, 4, 3, |e, d| e.rps / d.rps),
                med_vs(grid, k, 4, 3, |e, d| e.cpu_us - d.cpu_us),
            );
        }
        md.push('\n');
        if *conns != 1 {
            let cpu = |k| med_pair(grid, k, |c, b| c.cpu_us - b.cpu_us);
            scan = Some((cpu(0), cpu(1), cpu(2), *conns));
            targets.0 = med_pair(grid, 0, |c, b| c.rps / b.rps);
            floor.0 = med_vs(grid, 0, 3, 1, |d, b| d.rps / b.rps);
            floor.2 = med_vs(grid, 0, 3, 1, |d, b| d.cpu_us - b.cpu_us);
            floor.3 = med_vs(grid, 0, 2, 3, |c, d| c.cpu_us - d.cpu_us);
            med_b_cpu = med(&grid[0][1], |r| r.cpu_us);
        } else {
            targets.1 = med_pair(grid, 0, |c, b| c.p50_us - b.p50_us);
            floor.1 = med_vs(grid, 0, 3, 1, |d, b| d.p50_us - b.p50_us);
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
        "\nFirst byte: c/b at p50 **{:.2}**, c−b at p50 **{:.0} µs** (the floor: d−b {:.0} µs).\n",
        percentile(&ttfb[2], 50.0) / percentile(&ttfb[1], 50.0),
        percentile(&ttfb[2], 50.0) - percentile(&ttfb[1], 50.0),
        percentile(&ttfb[3], 50.0) - percentile(&ttfb[1], 50.0)
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
             {cpu_1k:.0} µs per 1 KB request, {cpu_first:.0} µs per 1 MB request with the model first and \
             {cpu_last:.0} µs with the model last. The two cost alike because the filter reads the whole body either way, as Ollama's Go \
             decoder does: a later duplicate `model` key wins and a syntax error anywhere fails the request, so it copies the body into \
             the VM in 64 KiB windows and scans it to the end. \
             The difference between the last two cases of 1 MiB and 1 KB, {extra:.0} µs for 1 MiB, is the copy plus the scan, so the scan runs at \
             {rate} inside v8 (a lower bound). For comparison, the same scanner compiled natively and run on the host over the same body: \
             {host_scan:.0} MB/s.\n"
        );
    }
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    let _ = writeln!(
        md,
        "#### Targets\n\n\
         - c/b throughput for 1 KB bodies ≥ 0.9 (at {} connections): **{:.2}**, {}. The floor filter gets {:.2}.\n\
         - ≤ 100 µs added at p50 (1 KB, 1 connection, so no queueing): **{:.0} µs**, {}. The floor adds {:.0} µs.\n\
         - Scan of 1 MB bodies ≥ 500 MB/s inside the VM: see the derivation above.\n\n\
         Where the filter's time goes: Envoy's CPU per request is the honest measure on a 2-core machine shared with wrk and \
         the emulator (latencies there include scheduling delays). At {} connections a 1 KB request costs plain Envoy {:.0} µs; \
         the floor filter adds {:.0} µs of it and ollama-lb's own logic {:.0} µs more. The floor is what Envoy and v8 charge \
         any wasm filter that routes by the body: the request is held at the headers and resumed from the body callback, \
         the route is computed again (`clear_route_cache`), and every callback (request headers and body, response headers \
         and body, log, done, delete) is a call into the VM; so with v8 on this machine a 1 KB c/b of 0.9 is out of reach \
         of any such filter, ours included. ollama-lb's own part was cut in #6 by counting host calls: every host call that \
         returns data (a header, a shared-data value, a property) makes Envoy call back into the VM to allocate the answer, \
         which costs about as much as a short callback. A request now reads its headers in one call (it used to read five), \
         checks for a new map and for new cool-downs with two counter reads (it used to read the map id from shared data), \
         and reads in-flight gauges only for the candidates still in the running; what is left is the body window, the \
         routing header, the in-flight gauge and counters, and on the response its status and, at the end, its \
         `code_details` (for the cool-down after a reset).\n",
        s.connections,
        targets.0,
        verdict(targets.0 >= 0.9),
        floor.0,
        targets.1,
        verdict(targets.1 <= 100.0),
        floor.1,
        s.connections,
        med_b_cpu,
        floor.2,
        floor.3,
    );
    Section {
        markdown: md,
        figures,
    }
}
