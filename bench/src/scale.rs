//! Section 3, scale: 1,000 emulated instances × 200 models in this process,
//! the release syncd polling them, and Envoy with the filter taking in the
//! big map; request throughput with the big map against a small one.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use model_map::ModelMap;
use ollama_emu::{Config, EmuHandle, ModelSpec};

use crate::procs::{self, filter_config, start_envoy, start_syncd, upstream};
use crate::stats::{median, percentile};
use crate::svg::{bar_chart, Series};
use crate::wrk::{self, WrkResult};
use crate::{Section, Settings};

const PER_INSTANCE: usize = 20;
const ENVOY_CPU: &str = "0";
const LOAD_CPU: &str = "1";

fn model_name(j: usize) -> String {
    format!("s{j}")
}

/// Rounds of the big/small throughput comparison: three times the
/// overhead section's, each half as long.
fn scale_rounds(s: &Settings) -> usize {
    s.rounds * 3
}

fn scale_run(s: &Settings) -> Duration {
    s.wrk_duration / 2
}

/// Instance `i` holds models `20·i … 20·i+19` (mod the model count), the
/// first two loaded: each model has `instances·20/models` holders.
fn emu_config(i: usize, models: usize) -> Config {
    Config {
        name: format!("n{i}"),
        load_time: Duration::ZERO,
        tokens_per_second: 1000.0,
        response_tokens: 0,
        num_parallel: 64,
        models: (0..PER_INSTANCE)
            .map(|k| ModelSpec {
                name: model_name((i * PER_INSTANCE + k) % models),
                loaded: k < 2,
                ..ModelSpec::default()
            })
            .collect(),
        ..Config::default()
    }
}

/// Parses the time of an Envoy log line (`[2026-01-01 12:00:00.123][…`),
/// in the machine's zone (UTC here).
pub fn envoy_log_time(line: &str) -> Option<chrono::NaiveDateTime> {
    let stamp = line.strip_prefix('[')?.split(']').next()?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.3f").ok()
}

/// Names of the maps in the throughput comparison.
const MAPS: [&str; 3] = ["big", "holders", "one"];

/// The big map cut down to one model and the instances holding it.
fn holders_only(map: &ModelMap, model: &str) -> ModelMap {
    let key = model_map::ModelName::parse(model)
        .map(|n| n.key())
        .unwrap_or_default();
    let mut small = map.clone();
    small.models.retain(|m| m.key == key);
    let holding: std::collections::HashSet<&str> = small
        .models
        .iter()
        .flat_map(|m| m.replicas.iter().map(|r| r.instance.as_str()))
        .collect();
    let instances = map
        .instances
        .iter()
        .filter(|i| holding.contains(i.name.as_str()))
        .cloned()
        .collect();
    small.instances = instances;
    small
}

/// The big map cut down to instance `n0` and the models it holds.
fn one_instance(map: &ModelMap) -> ModelMap {
    let mut small = map.clone();
    small.instances.retain(|i| i.name == "n0");
    for m in &mut small.models {
        m.replicas.retain(|r| r.instance == "n0");
    }
    small.models.retain(|m| !m.replicas.is_empty());
    small
}

pub async fn run(dir: &Path, s: &Settings, label: &str) -> anyhow::Result<Section> {
    let (n, models) = (s.scale_instances, s.scale_models);
    let t = Instant::now();
    let mut emus: Vec<EmuHandle> = Vec::with_capacity(n);
    for i in 0..n {
        emus.push(ollama_emu::spawn("127.0.0.1:0".parse()?, emu_config(i, models)).await?);
    }
    eprintln!("scale: {n} emulators up in {:.1?}", t.elapsed());
    let instances: Vec<(String, String)> = emus
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("n{i}"), e.url()))
        .collect();

    // syncd alone with the fleet: first round, then a quiet window.
    let interval = "3s";
    let syncd = start_syncd(
        dir,
        "scale-syncd",
        &instances,
        &["--interval", interval],
        "0-1",
    )
    .await?;
    let pid = syncd.proc.pid();
    let syncd_ready = syncd.ready_after.as_secs_f64();
    let rss_ready = procs::rss_kib(pid).unwrap_or(0);
    let cpu0 = procs::cpu_seconds(pid).unwrap_or(0.0);
    let window = Instant::now();
    tokio::time::sleep(s.scale_window).await;
    let cpu_share =
        (procs::cpu_seconds(pid).unwrap_or(0.0) - cpu0) / window.elapsed().as_secs_f64();
    let rss_later = procs::rss_kib(pid).unwrap_or(0);
    let client = e2e::http();
    let status: serde_json::Value = client
        .get(format!("{}/v1/instances", syncd.url))
        .send()
        .await?
        .json()
        .await?;
    let poll_ms: Vec<f64> = status["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["poll_latency_ms"].as_f64())
                .collect()
        })
        .unwrap_or_default();
    let healthy = status["instances"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|i| i["healthy"] == true).count());
    let map_bytes = client
        .get(format!("{}/v1/map", syncd.url))
        .send()
        .await?
        .bytes()
        .await?;
    drop(syncd);
    let decode: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let m: Result<ModelMap, _> = serde_json::from_slice(&map_bytes);
            let dt = t.elapsed().as_secs_f64() * 1e3;
            m.map(|_| dt)
        })
        .collect::<Result<_, _>>()?;
    let map: ModelMap = serde_json::from_slice(&map_bytes)?;
    eprintln!(
        "scale: syncd ready after {syncd_ready:.2} s, map {} bytes, {} models, {healthy} healthy",
        map_bytes.len(),
        map.models.len()
    );

    // From here the maps are served by the e2e rig's stand-in for syncd, so
    // the big and small cases differ only in the map (no polling load).
    let big_maps = e2e::MapServer::start().await?;
    big_maps.set(map.clone());
    let ups = || {
        emus.iter()
            .enumerate()
            .map(|(i, e)| upstream(&format!("n{i}"), e.addr()))
            .collect()
    };
    // The install timing and the memory per process: Envoys with 4
    // workers, the big map and the one-instance map.
    let wide = WIDE_CONCURRENCY;
    let t = Instant::now();
    let big_wide = start_envoy(
        dir,
        "scale-envoy-big-c4",
        &filter_config(ups(), big_maps.addr, serde_json::json!({})),
        wide,
        ENVOY_CPU,
    )
    .await?;
    let envoy_start = t.elapsed();
    wait_routable(&big_wide.url).await?;
    let take_in = time_installs(
        &big_maps,
        &map,
        &big_wide,
        wide as usize + 1,
        s.scale_map_changes,
    )
    .await;
    let decode_ms = leader_decode_ms(&big_wide.proc.output());
    // Back to the unchanged map for the throughput runs.
    big_maps.set(map.clone());
    let mut rss_wide = vec![procs::rss_kib(big_wide.proc.pid()).unwrap_or(0)];
    drop(big_wide);
    {
        let maps = e2e::MapServer::start().await?;
        maps.set(one_instance(&map));
        let one_wide = start_envoy(
            dir,
            "scale-envoy-one-c4",
            &filter_config(ups(), maps.addr, serde_json::json!({})),
            wide,
            ENVOY_CPU,
        )
        .await?;
        wait_routable(&one_wide.url).await?;
        rss_wide.push(procs::rss_kib(one_wide.proc.pid()).unwrap_or(0));
    }

    let big = start_envoy(
        dir,
        "scale-envoy-big",
        &filter_config(ups(), big_maps.addr, serde_json::json!({})),
        1,
        ENVOY_CPU,
    )
    .await?;
    wait_routable(&big.url).await?;
    // The same changes as above, so this Envoy's memory has seen as many
    // maps as the wide one's.
    let _ = time_installs(&big_maps, &map, &big, 2, s.scale_map_changes).await;
    big_maps.set(map.clone());
    let envoy_rss_big = procs::rss_kib(big.proc.pid()).unwrap_or(0);

    // The small maps get the same bootstrap (all the clusters, whose
    // upkeep costs Envoy CPU of its own): only the map differs.
    let mut others = Vec::new();
    let mut rss = vec![envoy_rss_big];
    for (label, small) in [
        ("holders", holders_only(&map, &model_name(0))),
        ("one", one_instance(&map)),
    ] {
        let maps = e2e::MapServer::start().await?;
        maps.set(small);
        let envoy = start_envoy(
            dir,
            &format!("scale-envoy-{label}"),
            &filter_config(ups(), maps.addr, serde_json::json!({})),
            1,
            ENVOY_CPU,
        )
        .await?;
        wait_routable(&envoy.url).await?;
        rss.push(procs::rss_kib(envoy.proc.pid()).unwrap_or(0));
        others.push((maps, envoy));
    }
    let envoys = [&big, &others[0].1, &others[1].1];
    let body_path = dir.join("scale-body.json");
    let prompt = "lorem ipsum ".repeat(80);
    std::fs::write(
        &body_path,
        format!(
            r#"{{"model":"{}","prompt":"{prompt}","stream":false}}"#,
            model_name(0)
        ),
    )?;
    let script = wrk::script(dir, "scale", &body_path, "/api/generate")?;
    let mut rounds: [Vec<WrkResult>; 3] = Default::default();
    // Short runs, the order rotated every round, so drifts in the
    // machine's speed hit every map alike.
    for round in 0..scale_rounds(s) {
        for step in 0..3 {
            let k = (round + step) % 3;
            let pid = envoys[k].proc.pid();
            let before = procs::cpu_seconds(pid);
            let mut r = wrk::run(
                &script,
                &envoys[k].url,
                s.connections,
                scale_run(s),
                LOAD_CPU,
            )?;
            if let (Some(b), Some(a)) = (before, procs::cpu_seconds(pid)) {
                r.cpu_us = (a - b) * 1e6 / r.requests.max(1) as f64;
            }
            eprintln!(
                "scale: round {round} {}: {:.0} req/s p50 {:.0} µs errors {} cpu {:.0} µs/req",
                MAPS[k], r.rps, r.p50_us, r.errors, r.cpu_us
            );
            rounds[k].push(r);
        }
    }
    drop((big, big_maps, others));
    for e in emus {
        e.shutdown().await;
    }

    // Median over rounds of big vs map `k`.
    let vs = |k: usize, f: &dyn Fn(&WrkResult, &WrkResult) -> f64| {
        median(
            &rounds[0]
                .iter()
                .zip(&rounds[k])
                .map(|(b, s)| f(b, s))
                .collect::<Vec<_>>(),
        )
    };
    let rps_ratio = |k| vs(k, &|b, s| b.rps / s.rps);
    let p50_ratio = |k| vs(k, &|b, s| b.p50_us / s.p50_us);
    let med_of =
        |k: usize, f: fn(&WrkResult) -> f64| median(&rounds[k].iter().map(f).collect::<Vec<_>>());
    let holders = n * PER_INSTANCE / models.max(1);
    let max_install = take_in.iter().copied().fold(0.0, f64::max);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let extra_1 = mib(rss[0]) - mib(rss[2]);
    let extra_wide = mib(rss_wide[0]) - mib(rss_wide[1]);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Fleet: {n} emulated instances in the bench process (one listener each), {models} models, {PER_INSTANCE} per instance \
         (instance i holds models 20·i … 20·i+19 mod {models}, so each model has {holders} holders), the first 2 of each loaded. \
         syncd (release, both CPUs) polls every {interval}; its figures come from a {:.0} s window with nothing else running. \
         Then syncd is stopped and the e2e rig's stand-in for syncd (`MapServer`) serves its last map to Envoys with one \
         cluster per instance: two with `--concurrency {wide}` (all pinned to one CPU; the big map, whose changes are timed, and \
         the one-instance map, for memory per process), then three with `--concurrency 1` (one per map below, for throughput), \
         so the runs differ only in the map. Each big-map Envoy takes in {} changed maps before its memory is read.\n",
        s.scale_window.as_secs_f64(),
        s.scale_map_changes
    );
    md.push_str("| measure | value |\n|---|---:|\n");
    let rows = [
        (
            format!("syncd start → first full poll round ({n} instances answered)"),
            format!("{syncd_ready:.2} s"),
        ),
        (
            "syncd poll latency per instance, p50 / p99".into(),
            format!("{:.1} / {:.1} ms", percentile(&poll_ms, 50.0), percentile(&poll_ms, 99.0)),
        ),
        ("healthy instances at the end of the window".into(), format!("{healthy} / {n}")),
        (
            "syncd RSS after the first round / after the window".into(),
            format!("{:.1} / {:.1} MiB", rss_ready as f64 / 1024.0, rss_later as f64 / 1024.0),
        ),
        (
            format!("syncd CPU while polling every {interval}"),
            format!("{:.0} % of one core", cpu_share * 100.0),
        ),
        (
            "map JSON (`GET /v1/map`)".into(),
            format!("{:.2} MB, {} models, {} instances", map_bytes.len() as f64 / 1e6, map.models.len(), map.instances.len()),
        ),
        (
            "map decode on the host (serde, native, median of 5)".into(),
            format!("{:.1} ms", median(&decode)),
        ),
        (
            format!("Envoy start with {n} clusters + filter → ready"),
            format!("{:.2} s", envoy_start.as_secs_f64()),
        ),
        (
            format!(
                "map published → installed, per VM (`--concurrency {wide}`: main thread + {wide} workers), {} installs",
                take_in.len()
            ),
            format!(
                "median {:.0} ms, max {:.0} ms",
                median(&take_in),
                max_install
            ),
        ),
        (
            "of which the fetching worker's decode of syncd's JSON + building and sharing the compact map (median)".into(),
            format!("{decode_ms:.0} ms"),
        ),
        (
            "Envoy RSS, `--concurrency 1`: big map / holders' map / one-instance map".into(),
            format!(
                "{:.0} / {:.0} / {:.0} MiB",
                rss[0] as f64 / 1024.0,
                rss[1] as f64 / 1024.0,
                rss[2] as f64 / 1024.0
            ),
        ),
        (
            format!("Envoy RSS, `--concurrency {wide}`: big map / one-instance map"),
            format!(
                "{:.0} / {:.0} MiB",
                rss_wide[0] as f64 / 1024.0,
                rss_wide[1] as f64 / 1024.0
            ),
        ),
        (
            format!("the big map's extra RSS, `--concurrency 1` / `--concurrency {wide}`"),
            format!("{extra_1:.0} / {extra_wide:.0} MiB"),
        ),
        (
            format!(
                "throughput, big map / one-instance map (1 KB generate, {} conns, {} rotated rounds of {:.1} s)",
                s.connections, scale_rounds(s), scale_run(s).as_secs_f64()
            ),
            format!("**{:.2}** (p50 latency ratio {:.2})", rps_ratio(2), p50_ratio(2)),
        ),
        (
            format!("throughput, big map / the holders' map ({holders} holders, 1 model), same runs"),
            format!("**{:.2}** (p50 latency ratio {:.2})", rps_ratio(1), p50_ratio(1)),
        ),
        (
            "Envoy CPU per request: big / holders' / one-instance map".into(),
            format!(
                "{:.0} / {:.0} / {:.0} µs",
                med_of(0, |r| r.cpu_us),
                med_of(1, |r| r.cpu_us),
                med_of(2, |r| r.cpu_us)
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let syncd_rss = mib(rss_ready.max(rss_later));
    let met = |ok: bool| if ok { "met" } else { "**missed**" };
    let targets = [
        (
            "a map change reaches every VM of the gateway within 50 ms (max over all installs)".to_string(),
            format!("{max_install:.0} ms"),
            met(max_install <= 50.0),
        ),
        (
            format!("the big map's memory per process, not per worker: extra RSS at {wide} workers ≤ 1.25 × at 1"),
            format!("{:.2}×", extra_wide / extra_1.max(1.0)),
            met(extra_wide <= 1.25 * extra_1.max(1.0)),
        ),
        (
            format!("syncd RSS polling {n} instances ≤ 64 MiB (the higher of its two readings)"),
            format!("{syncd_rss:.1} MiB"),
            met(syncd_rss <= 64.0),
        ),
        (
            "throughput with the big map ≥ 0.9 × the one-instance map's".into(),
            format!("{:.2}", rps_ratio(2)),
            met(rps_ratio(2) >= 0.9),
        ),
    ];
    md.push_str("\nThe targets of issue #16 for big fleets, from this run:\n\n| target | measured | |\n|---|---:|---|\n");
    for (target, value, verdict) in targets {
        let _ = writeln!(md, "| {target} | {value} | {verdict} |");
    }
    let _ = writeln!(
        md,
        "\nThroughput (medians): big map {:.0} req/s, holders' map {:.0} req/s, one-instance map {:.0} req/s. \
         Publish → installed runs from the stand-in's publish (the map \
         serialised once, as syncd does before it publishes) to each `installed model map <id>` log line (ms stamps): the long \
         poll's answer, its transfer through Envoy, the fetching worker's decode of the JSON, building and sharing the compact \
         map and installing it; every other VM installs the compact map on its next 20 ms tick or request.\n",
        med_of(0, |r| r.rps),
        med_of(1, |r| r.rps),
        med_of(2, |r| r.rps),
    );
    let _ = writeln!(
        md,
        "Three Envoys with the same bootstrap ({n} clusters) and three maps: the big map; the holders' map, cut down to the \
         requested model and its {holders} holders, so a request meets the same candidates as with the big map; and the \
         one-instance map, cut down to `n0` and its models, so a request has one candidate. \
         Big vs holders' map ({:.2}) is what the size of the map costs a request: the filter keeps, per map, each model's \
         holders by position and each instance's count of sole loaded copies, so a request finds its candidates without \
         searching, and it reads Envoy's live numbers (in-flight gauges) for at most {max} of them, drawn at random among \
         the best-ranked (power of d choices); cool-downs are one shared table a worker re-reads only when a cool-down \
         starts. Big vs one-instance map ({:.2}) adds what {holders} holders cost: {max} in-flight reads instead of one, and \
         Envoy spreading requests over {holders} upstream clusters and their connection pools instead of one, which is \
         Envoy's own work. Before issue #6's changes the big map cost 0.41× the one-instance map's throughput (a search of \
         all instances per holder, two host calls per holder); with an index of instances by name 0.63×.\n",
        rps_ratio(1),
        rps_ratio(2),
        max = filter::route::MAX_COMPARED,
    );
    md.push_str("![big vs small map](bench/scale-throughput.svg)\n");
    let svg = bar_chart(
        &format!("Throughput with a {n}-instance map vs smaller maps"),
        label,
        "requests per second",
        &(0..rounds[0].len())
            .map(|r| format!("round {}", r + 1))
            .collect::<Vec<_>>(),
        &[
            Series {
                name: format!("{n} instances × {models} models"),
                values: rounds[0].iter().map(|r| r.rps).collect(),
            },
            Series {
                name: format!("{holders} holders of the model"),
                values: rounds[1].iter().map(|r| r.rps).collect(),
            },
            Series {
                name: "1 instance".into(),
                values: rounds[2].iter().map(|r| r.rps).collect(),
            },
        ],
    );
    Ok(Section {
        markdown: md,
        figures: vec![("scale-throughput.svg".into(), svg)],
    })
}

/// Workers of the Envoy that times installs and measures memory per
/// process.
const WIDE_CONCURRENCY: u32 = 4;

/// Publishes `changes` variants of `map` (one instance's health flipped
/// in each, so the id changes) and returns, per variant and per VM that logs its
/// install (`vms`: the main thread's and each worker's), the milliseconds
/// from publish to its `installed model map <id>` line.
async fn time_installs(
    maps: &e2e::MapServer,
    map: &ModelMap,
    envoy: &procs::RunningEnvoy,
    vms: usize,
    changes: usize,
) -> Vec<f64> {
    let mut take_in = Vec::new();
    for k in 0..changes {
        let mut changed = map.clone();
        if let Some(inst) = changed.instances.get_mut(k) {
            inst.healthy = !inst.healthy;
        }
        let id = maps.set(changed);
        let published = chrono::Utc::now().naive_utc();
        let needle = format!("installed model map {id}");
        let start = Instant::now();
        while envoy.proc.output().matches(&needle).count() < vms
            && start.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for line in envoy.proc.output().lines().filter(|l| l.contains(&needle)) {
            if let Some(at) = envoy_log_time(line) {
                let ms = (at - published).num_microseconds().unwrap_or(0) as f64 / 1e3;
                eprintln!("scale: map {id} installed {ms:.0} ms after publish");
                take_in.push(ms.max(0.0));
            }
        }
    }
    take_in
}

/// The fetching worker's own figure for decoding syncd's map and sharing
/// its compact form, from its `decoded and shared in <ms> ms` lines
/// (median; 0 when none was logged).
fn leader_decode_ms(log: &str) -> f64 {
    let ms: Vec<f64> = log
        .lines()
        .filter_map(|l| l.split("decoded and shared in ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect();
    if ms.is_empty() {
        0.0
    } else {
        median(&ms)
    }
}

async fn wait_routable(url: &str) -> anyhow::Result<()> {
    let client = e2e::http();
    for _ in 0..1500 {
        let r = client.get(format!("{url}/api/tags")).send().await;
        if r.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the filter at {url} never got its map")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_log_stamps_parse() {
        let t = envoy_log_time(
            "[2026-11-26 01:50:00.123][42][info][wasm] ollama-lb: installed model map x",
        )
        .unwrap();
        assert_eq!(t.format("%H:%M:%S%.3f").to_string(), "01:50:00.123");
        assert!(envoy_log_time("no stamp").is_none());
    }

    #[test]
    fn every_model_has_the_same_number_of_holders() {
        let mut holders = vec![0usize; 200];
        for i in 0..1000 {
            for m in emu_config(i, 200).models {
                holders[m.name[1..].parse::<usize>().unwrap()] += 1;
            }
        }
        assert!(holders.iter().all(|h| *h == 100), "{holders:?}");
    }
}
