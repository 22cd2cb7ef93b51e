//! Section 2, routing quality: an emulated fleet that must evict, the same
//! seeded open-loop chat workload for every policy, and what clients saw.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ollama_emu::{Config, EmuHandle, ModelSpec};

use crate::procs::{filter_config, plain_config, start_envoy, start_syncd, upstream};
use crate::stats::{mean, percentile, ratio};
use crate::svg::{bar_chart, cdf_chart, Series};
use crate::workload::{Turn, Workload};
use crate::{Section, Settings};

const INSTANCES: usize = 4;
const MODELS: usize = 8;
const ENVOY_CPU: &str = "0";
const LOAD_CPU: &str = "1";

/// The policies compared, in report order: label and plugin configuration
/// (`None`: a plain Envoy ROUND_ROBIN cluster over every instance). The
/// first is the baseline and the last the default, compared in the report.
pub const POLICIES: [(&str, Option<&str>); 5] = [
    ("random among holders", Some(r#"{"policy":"random"}"#)),
    ("round robin, all instances", None),
    ("least_request", Some(r#"{"policy":"least_request"}"#)),
    (
        "loaded_least_request, map only (before #6)",
        Some(r#"{"policy":"loaded_least_request","warm_ms":0}"#),
    ),
    ("loaded_least_request (default)", Some("{}")),
];

fn model_name(rank: usize) -> String {
    format!("m{rank}")
}

/// Model `k` lives on instances `k mod 4` and `(k+1) mod 4`: every model
/// has two holders, every instance four models and room to load two.
fn holders(model: usize) -> [usize; 2] {
    [model % INSTANCES, (model + 1) % INSTANCES]
}

pub(crate) fn emu_config(i: usize) -> Config {
    Config {
        name: format!("gpu{i}"),
        load_time: Duration::from_millis(1500),
        tokens_per_second: 40.0,
        response_tokens: 12,
        num_parallel: if i < 2 { 1 } else { 2 },
        max_loaded_models: 2,
        // A fleet that has been running: the first two of each instance's
        // models loaded (m0–m3 twice, m4–m7 nowhere), not a tuned placement.
        models: (0..MODELS)
            .filter(|m| holders(*m).contains(&i))
            .enumerate()
            .map(|(k, m)| ModelSpec {
                name: model_name(m),
                loaded: k < 2,
                ..ModelSpec::default()
            })
            .collect(),
        ..Config::default()
    }
}

/// The workload every policy gets.
pub fn workload(s: &Settings) -> Workload {
    Workload {
        seed: s.seed,
        duration: s.routing_duration,
        chats_per_second: 2.0,
        mean_turns: 3.0,
        mean_think: Duration::from_secs(3),
        models: MODELS,
        zipf_s: 1.0,
    }
}

/// What one request saw.
#[derive(Debug, Clone, Default)]
struct Outcome {
    status: u16,
    /// Seconds to the first NDJSON chunk, and to the end.
    ttft: f64,
    total: f64,
    failed: bool,
}

/// One policy's run.
#[derive(Debug, Clone, Default)]
pub struct PolicyResult {
    pub label: String,
    pub requests: usize,
    pub latencies: Vec<f64>,
    pub ttfts: Vec<f64>,
    pub not_found: usize,
    pub errors: usize,
    pub cold_loads: u64,
    pub evictions: u64,
    /// (latency, model rank) of every successful request.
    pub by_model: Vec<(f64, usize)>,
}

pub async fn run(dir: &Path, s: &Settings, label: &str) -> anyhow::Result<Section> {
    let schedule = workload(s).schedule();
    eprintln!(
        "routing: {} requests in {:?}",
        schedule.len(),
        s.routing_duration
    );
    let mut results = Vec::new();
    for (name, policy) in POLICIES {
        let r = run_policy(dir, s, name, policy, &schedule).await?;
        eprintln!(
            "routing: {name}: p50 {:.2}s p99 {:.2}s cold loads {} errors {} 404 {}",
            percentile(&r.latencies, 50.0),
            percentile(&r.latencies, 99.0),
            r.cold_loads,
            r.errors,
            r.not_found
        );
        results.push(r);
    }
    Ok(report(&results, &schedule, s, label))
}

async fn run_policy(
    dir: &Path,
    s: &Settings,
    name: &str,
    policy: Option<&str>,
    schedule: &[Turn],
) -> anyhow::Result<PolicyResult> {
    let mut emus: Vec<EmuHandle> = Vec::new();
    for i in 0..INSTANCES {
        emus.push(ollama_emu::spawn("127.0.0.1:0".parse()?, emu_config(i)).await?);
    }
    let ups = || {
        emus.iter()
            .enumerate()
            .map(|(i, e)| upstream(&format!("gpu{i}"), e.addr()))
            .collect::<Vec<_>>()
    };
    let tag = name
        .split([' ', ',', '(', ')'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let (envoy, _syncd) = match policy {
        Some(p) => {
            let instances: Vec<(String, String)> = emus
                .iter()
                .enumerate()
                .map(|(i, e)| (format!("gpu{i}"), e.url()))
                .collect();
            let syncd = start_syncd(
                dir,
                &format!("routing-syncd-{tag}"),
                &instances,
                &[],
                LOAD_CPU,
            )
            .await?;
            let cfg = filter_config(ups(), syncd.addr, serde_json::from_str(p)?);
            let envoy =
                start_envoy(dir, &format!("routing-envoy-{tag}"), &cfg, 1, ENVOY_CPU).await?;
            (envoy, Some(syncd))
        }
        None => {
            let cfg = plain_config(ups(), "fleet");
            (
                start_envoy(dir, "routing-envoy-rr", &cfg, 1, ENVOY_CPU).await?,
                None,
            )
        }
    };
    // The filter answers 503 until its first map: wait for it.
    let client = e2e::http();
    for _ in 0..300 {
        let tags = client.get(format!("{}/api/tags", envoy.url)).send().await;
        if tags.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = Arc::new(envoy.url.clone());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for turn in schedule {
        let (url, client, turn) = (url.clone(), client.clone(), turn.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until((start + turn.at).into()).await;
            chat(&client, &url, &turn).await
        }));
    }
    // The first seconds bring each policy to its own steady state: their
    // requests and cold loads are not counted.
    let states: Vec<_> = emus.iter().map(|e| e.state()).collect();
    let warmup = s.routing_warmup;
    tokio::spawn(async move {
        tokio::time::sleep_until((start + warmup).into()).await;
        for st in states {
            st.reset_stats();
        }
    });
    let deadline = tokio::time::Instant::from(start + s.routing_duration + s.routing_drain);
    let mut out = PolicyResult {
        label: name.to_string(),
        ..PolicyResult::default()
    };
    for (task, turn) in tasks.into_iter().zip(schedule) {
        let counted = turn.at >= warmup;
        let outcome = match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(o)) => o,
            _ => Outcome {
                failed: true,
                ..Outcome::default()
            },
        };
        if !counted {
            continue;
        }
        out.requests += 1;
        if outcome.status == 404 {
            out.not_found += 1;
        } else if outcome.failed || outcome.status != 200 {
            out.errors += 1;
        } else {
            out.latencies.push(outcome.total);
            out.ttfts.push(outcome.ttft);
            out.by_model.push((outcome.total, turn.model));
        }
    }
    for e in &emus {
        let st = e.state().stats();
        out.cold_loads += st["cold_loads"].as_u64().unwrap_or(0);
        out.evictions += st["evictions"].as_u64().unwrap_or(0);
    }
    drop(envoy);
    for e in emus {
        e.shutdown().await;
    }
    Ok(out)
}

/// The streamed `/api/chat` body of a turn, with the chat's history so far.
pub(crate) fn chat_body(turn: &Turn) -> serde_json::Value {
    let mut messages = Vec::new();
    for k in 0..=turn.turn {
        messages.push(serde_json::json!({"role": "user", "content": format!("chat {} question {k}: tell me more", turn.chat)}));
        if k < turn.turn {
            messages.push(serde_json::json!({"role": "assistant", "content": "an earlier answer of twelve tokens or so"}));
        }
    }
    serde_json::json!({"model": model_name(turn.model), "messages": messages, "stream": true})
}

/// One streamed `/api/chat` turn with the chat's history so far.
async fn chat(client: &reqwest::Client, url: &str, turn: &Turn) -> Outcome {
    let body = chat_body(turn);
    let start = Instant::now();
    let failed = Outcome {
        failed: true,
        ..Outcome::default()
    };
    let Ok(mut resp) = client
        .post(format!("{url}/api/chat"))
        .timeout(Duration::from_secs(120))
        .json(&body)
        .send()
        .await
    else {
        return failed;
    };
    let status = resp.status().as_u16();
    let mut ttft = None;
    loop {
        match resp.chunk().await {
            Ok(Some(_)) => {
                ttft.get_or_insert(start.elapsed().as_secs_f64());
            }
            Ok(None) => break,
            Err(_) => return failed,
        }
    }
    let total = start.elapsed().as_secs_f64();
    Outcome {
        status,
        ttft: ttft.unwrap_or(total),
        total,
        failed: false,
    }
}

fn report(results: &[PolicyResult], schedule: &[Turn], s: &Settings, label: &str) -> Section {
    let mut md = String::new();
    let chats = schedule.iter().map(|t| t.chat).max().map_or(0, |c| c + 1);
    let _ = writeln!(
        md,
        "Fleet: {INSTANCES} emulated instances, {MODELS} models, each model on 2 instances (model k on instances k mod 4 and k+1 mod 4), \
         so every instance holds 4 models and may load 2 (`MAX_LOADED_MODELS=2`): loading a third evicts. Load time 1.5 s, \
         40 tokens/s, 12-token replies (~0.3 s), `NUM_PARALLEL` 1 on gpu0–1 and 2 on gpu2–3. At start each instance has the first two of its models loaded \
         (a fleet that has been running, not a tuned placement: m0–m3 are loaded twice, m4–m7 nowhere). \
         syncd polls every 2 s (its default); Envoy `--concurrency 1`.\n\n\
         Workload (seed {}): {} chats over {:.0} s (Poisson, 2 chats/s), Zipf(s=1) model popularity, \
         geometric turns (mean 3) with exponential think times (mean 3 s), {} streamed `/api/chat` requests sent open-loop at \
         precomputed times: the same schedule for every policy. Latency is to the last byte, TTFT to the first NDJSON chunk, \
         over successful requests; a request unfinished {:.0} s after the window counts as an error. Fresh emulators, syncd and Envoy per policy. \
         The first {:.0} s are a warm-up that brings each policy to its own steady state: requests sent then, and cold loads before its end, \
         are not counted ({} requests counted).\n",
        s.seed,
        chats,
        s.routing_duration.as_secs_f64(),
        schedule.len(),
        s.routing_drain.as_secs_f64(),
        s.routing_warmup.as_secs_f64(),
        schedule.iter().filter(|t| t.at >= s.routing_warmup).count()
    );
    md.push_str("| policy | ok | mean s | p50 s | p99 s | TTFT p50 s | TTFT p99 s | cold loads | evictions | 404 | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in results {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |",
            r.label,
            r.latencies.len(),
            mean(&r.latencies),
            percentile(&r.latencies, 50.0),
            percentile(&r.latencies, 99.0),
            percentile(&r.ttfts, 50.0),
            percentile(&r.ttfts, 99.0),
            r.cold_loads,
            r.evictions,
            r.not_found,
            r.errors
        );
    }
    if let (Some(random), Some(default)) = (results.first(), results.last()) {
        let p99 = ratio(
            percentile(&default.latencies, 99.0),
            percentile(&random.latencies, 99.0),
        );
        let cold = ratio(default.cold_loads as f64, random.cold_loads as f64);
        let _ = writeln!(
            md,
            "\nDefault vs random: p99 **{p99:.2}×** (target ≤ 0.5×: {}), cold loads **{cold:.2}×** (target ≤ 0.25×: {}).\n",
            if p99 <= 0.5 { "met" } else { "missed" },
            if cold <= 0.25 { "met" } else { "missed" },
        );
    }
    if let [.., before, after] = results {
        let _ = writeln!(
            md,
            "Before and after the policy change of issue #6 (same run, same schedule): `loaded_least_request` used to trust only the map, \
             which is one syncd poll (2 s) behind, so while a model loaded on one holder the next request for it saw \"not loaded anywhere\" \
             and went to the idlest holder, loading it a second time and evicting something else there. Now the filter remembers, in \
             Envoy's shared data (all workers), where it sent each model in the last `warm_ms` (5 s) to a holder the map did not show it loaded on, and ranks holders: loaded per the \
             map, then recently sent (loading, or loaded since the map was made), then cold; the map still outranks the memory, since it \
             also knows about evictions. And a cold load now goes to the holder where it would evict the fewest sole copies (models \
             loaded there and on no other healthy instance, per the map), so spare copies are evicted before the only copy of a model. \
             Within a rank the fewest requests for the model in flight decide (Ollama queues per model), then the fewest in all. \
             Before: p99 {:.2} s, {} cold loads; after: p99 {:.2} s, {} cold loads.\n",
            percentile(&before.latencies, 99.0),
            before.cold_loads,
            percentile(&after.latencies, 99.0),
            after.cold_loads
        );
    }
    let series: Vec<Series> = results
        .iter()
        .map(|r| Series {
            name: short(&r.label),
            values: r.latencies.clone(),
        })
        .collect();
    let x_max = results
        .iter()
        .map(|r| percentile(&r.latencies, 100.0))
        .fold(0.0, f64::max);
    let cdf = cdf_chart(
        "Chat latency CDF (same workload)",
        label,
        "seconds to last byte",
        x_max,
        &series,
    );
    let groups: Vec<String> = results.iter().map(|r| short(&r.label)).collect();
    let bars = bar_chart(
        "p99 latency (s) and cold loads / 10",
        label,
        "value",
        &groups,
        &[
            Series {
                name: "p99 latency s".into(),
                values: results
                    .iter()
                    .map(|r| percentile(&r.latencies, 99.0))
                    .collect(),
            },
            Series {
                name: "TTFT p99 s".into(),
                values: results.iter().map(|r| percentile(&r.ttfts, 99.0)).collect(),
            },
            Series {
                name: "cold loads / 10".into(),
                values: results.iter().map(|r| r.cold_loads as f64 / 10.0).collect(),
            },
        ],
    );
    md.push_str(
        "Reading the tail: p99 over about 190 requests is the second-slowest request, and any request that meets a cold load \
         takes at least 1.8 s (1.5 s load + reply), so p99 moves by tens of percent between runs with other seeds or machines; \
         read it together with the cold-load count and the CDF. Round robin over all instances looks fast only because half its \
         requests fail at once with 404 (the model is not on the instance it picked) and are left out of its latencies.\n\n",
    );
    let counted = schedule.iter().filter(|t| t.at >= s.routing_warmup);
    let (all, top) = counted.fold((0, 0), |(a, m), t| (a + 1, m + usize::from(t.model == 0)));
    let slowest = |r: &PolicyResult| {
        let mut slow = r.by_model.clone();
        slow.sort_by(|a, b| b.0.total_cmp(&a.0));
        slow.truncate(5);
        slow
    };
    md.push_str(
        "What the tail is made of: the five slowest requests of each policy, by model.\n\n\
         | policy | five slowest requests (model, s) |\n|---|---|\n",
    );
    for r in results {
        let list: Vec<String> = slowest(r)
            .iter()
            .map(|(t, m)| format!("{} {t:.2}", model_name(*m)))
            .collect();
        let _ = writeln!(md, "| {} | {} |", r.label, list.join(", "));
    }
    let default_m0 = results
        .last()
        .map_or(0, |r| slowest(r).iter().filter(|(_, m)| *m == 0).count());
    let _ = writeln!(
        md,
        "\nm0, the most popular model, gets {top} of the {all} counted requests ({:.0} %), and its only holders are gpu0 and \
         gpu1, with one slot each. {default_m0} of the default's five slowest requests are for m0: when m0's chats bunch up, \
         its requests wait for those two slots, and no routing choice adds a third (only placing m0 on more instances would, \
         which is `syncd sync`'s placement, not routing). So the default's p99 is held up by m0's capacity as much as by its \
         choices, while random's p99 is that same queue plus whatever its cold loads evict, which varies from run to run.",
        100.0 * top as f64 / all.max(1) as f64
    );
    md.push('\n');
    md.push_str(
        "![latency CDF](bench/routing-cdf.svg) ![p99 and cold loads](bench/routing-bars.svg)\n",
    );
    Section {
        markdown: md,
        figures: vec![
            ("routing-cdf.svg".into(), cdf),
            ("routing-bars.svg".into(), bars),
        ],
    }
}

fn short(label: &str) -> String {
    match label.split([' ', ',']).next().unwrap_or(label) {
        "round" => "envoy round robin".into(),
        "loaded_least_request" if label.contains("before") => "before #6".into(),
        "loaded_least_request" => "default".into(),
        other => other.into(),
    }
}
