//! Section 2, continued: long conversations (what conversation affinity
//! saves in prompt evaluation) and several gateways (the same schedule
//! through 1, 2 and 4 Envoy processes, each with its own filter, fed by
//! one syncd).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ollama_emu::{Config, EmuHandle, ModelSpec};
use serde_json::{json, Value};

use crate::procs::{filter_config, start_envoy, start_syncd, upstream, RunningEnvoy};
use crate::stats::{percentile, ratio};
use crate::svg::{bar_chart, Series};
use crate::workload::{Turn, Workload};
use crate::{routing, Section, Settings};

const INSTANCES: usize = 4;
const ENVOY_CPU: &str = "0";
const LOAD_CPU: &str = "1";
/// Prompt tokens per second: a consumer GPU's ~1,000 with time scaled
/// down 20×, so a missed 16k-token history costs 0.8 s, not 16 s.
const PROMPT_RATE: f64 = 20_000.0;
/// Each chat's own system prompt (~8k tokens) and each question (~1.5k).
const SYSTEM_BYTES: usize = 32 * 1024;
const QUESTION_BYTES: usize = 6 * 1024;
const MAX_TURNS: usize = 10;

/// The conversation policies compared: Open WebUI's behaviour (a random
/// holder each turn), the default without affinity, and the default.
const POLICIES: [(&str, &str); 3] = [
    ("random (Open WebUI)", r#"{"policy":"random"}"#),
    (
        "default without conversation affinity",
        r#"{"conversation_affinity":false}"#,
    ),
    ("default", "{}"),
];

fn conversation_emu(i: usize) -> Config {
    Config {
        name: format!("gpu{i}"),
        load_time: Duration::from_millis(1500),
        tokens_per_second: 40.0,
        response_tokens: 12,
        prompt_rate: PROMPT_RATE,
        // Ollama's default when memory allows; fewer slots than the
        // conversations an instance serves evict each other's prompts.
        num_parallel: 4,
        models: vec![ModelSpec {
            name: "m".into(),
            loaded: true,
            ..ModelSpec::default()
        }],
        ..Config::default()
    }
}

fn conversation_workload(s: &Settings) -> Workload {
    Workload {
        seed: s.seed,
        duration: s.routing_duration,
        chats_per_second: 0.5,
        mean_turns: 6.0,
        mean_think: Duration::from_secs(4),
        models: 1,
        zipf_s: 1.0,
    }
}

/// Which requests a run sends.
#[derive(Debug, Clone, Copy)]
enum Traffic {
    /// The routing section's chats over its eight-model fleet.
    Routing,
    /// Long conversations over one model.
    Conversations,
}

/// What one request saw.
#[derive(Debug, Clone, Default)]
struct Outcome {
    ok: bool,
    ttft: f64,
    total: f64,
}

/// One run's results.
#[derive(Debug, Clone, Default)]
struct RunResult {
    label: String,
    ttfts: Vec<f64>,
    totals: Vec<f64>,
    /// (turn number, TTFT) of each successful request.
    by_turn: Vec<(usize, f64)>,
    errors: usize,
    cold_loads: u64,
    prompt_tokens: u64,
    prompt_evaluated: u64,
    cache_hits: u64,
}

pub async fn run_conversations(dir: &Path, s: &Settings, label: &str) -> anyhow::Result<Section> {
    let schedule: Vec<Turn> = conversation_workload(s)
        .schedule()
        .into_iter()
        .filter(|t| t.turn < MAX_TURNS)
        .collect();
    eprintln!("conversations: {} requests", schedule.len());
    let mut results = Vec::new();
    for (name, plugin) in POLICIES {
        let configs: Vec<Config> = (0..INSTANCES).map(conversation_emu).collect();
        let r = run(
            dir,
            s,
            name,
            configs,
            plugin,
            1,
            &schedule,
            Traffic::Conversations,
        )
        .await?;
        eprintln!(
            "conversations: {name}: TTFT p50 {:.2}s p99 {:.2}s, evaluated {} of {} prompt tokens",
            percentile(&r.ttfts, 50.0),
            percentile(&r.ttfts, 99.0),
            r.prompt_evaluated,
            r.prompt_tokens
        );
        results.push(r);
    }
    Ok(conversation_report(&results, &schedule, s, label))
}

pub async fn run_gateways(dir: &Path, s: &Settings, label: &str) -> anyhow::Result<Section> {
    let schedule = routing::workload(s).schedule();
    let mut results = Vec::new();
    for gateways in [1, 2, 4] {
        let name = format!("{gateways} gateway{}", if gateways > 1 { "s" } else { "" });
        let configs: Vec<Config> = (0..INSTANCES).map(routing::emu_config).collect();
        let r = run(
            dir,
            s,
            &name,
            configs,
            "{}",
            gateways,
            &schedule,
            Traffic::Routing,
        )
        .await?;
        eprintln!(
            "gateways: {name}: p50 {:.2}s p99 {:.2}s cold loads {}",
            percentile(&r.totals, 50.0),
            percentile(&r.totals, 99.0),
            r.cold_loads
        );
        results.push(r);
    }
    Ok(gateway_report(&results, s, label))
}

/// Fresh emulators, one syncd and `gateways` Envoys with the filter
/// (`plugin`); chat `c` goes through gateway `c mod gateways`.
#[allow(clippy::too_many_arguments)]
async fn run(
    dir: &Path,
    s: &Settings,
    name: &str,
    configs: Vec<Config>,
    plugin: &str,
    gateways: usize,
    schedule: &[Turn],
    traffic: Traffic,
) -> anyhow::Result<RunResult> {
    let mut emus: Vec<EmuHandle> = Vec::new();
    for c in configs {
        emus.push(ollama_emu::spawn("127.0.0.1:0".parse()?, c).await?);
    }
    let tag: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let instances: Vec<(String, String)> = emus
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("gpu{i}"), e.url()))
        .collect();
    let syncd = start_syncd(dir, &format!("conv-syncd-{tag}"), &instances, &[], LOAD_CPU).await?;
    let ups: Vec<_> = emus
        .iter()
        .enumerate()
        .map(|(i, e)| upstream(&format!("gpu{i}"), e.addr()))
        .collect();
    let cfg = filter_config(ups, syncd.addr, serde_json::from_str(plugin)?);
    let mut envoys: Vec<RunningEnvoy> = Vec::new();
    for g in 0..gateways {
        let label = format!("conv-envoy-{tag}-{g}");
        envoys.push(start_envoy(dir, &label, &cfg, 1, ENVOY_CPU).await?);
    }
    let client = e2e::http();
    for envoy in &envoys {
        wait_for_map(&client, &envoy.url).await;
    }
    let urls: Vec<Arc<String>> = envoys.iter().map(|e| Arc::new(e.url.clone())).collect();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for turn in schedule {
        let url = urls.get(turn.chat % gateways).cloned().unwrap_or_default();
        let (client, turn) = (client.clone(), turn.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until((start + turn.at).into()).await;
            send(&client, &url, &turn, traffic).await
        }));
    }
    let states: Vec<_> = emus.iter().map(|e| e.state()).collect();
    let warmup = s.routing_warmup;
    tokio::spawn(async move {
        tokio::time::sleep_until((start + warmup).into()).await;
        for st in states {
            st.reset_stats();
        }
    });
    let deadline = tokio::time::Instant::from(start + s.routing_duration + s.routing_drain);
    let mut out = RunResult {
        label: name.to_string(),
        ..RunResult::default()
    };
    for (task, turn) in tasks.into_iter().zip(schedule) {
        let outcome = match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(o)) => o,
            _ => Outcome::default(),
        };
        if turn.at < warmup {
            continue;
        }
        if outcome.ok {
            out.ttfts.push(outcome.ttft);
            out.totals.push(outcome.total);
            out.by_turn.push((turn.turn, outcome.ttft));
        } else {
            out.errors += 1;
        }
    }
    for e in &emus {
        let st = e.state().stats();
        let n = |k: &str| st[k].as_u64().unwrap_or(0);
        out.cold_loads += n("cold_loads");
        out.prompt_tokens += n("prompt_tokens");
        out.prompt_evaluated += n("prompt_tokens_evaluated");
        out.cache_hits += n("prompt_cache_hits");
    }
    drop(envoys);
    drop(syncd);
    for e in emus {
        e.shutdown().await;
    }
    Ok(out)
}

/// The filter answers 503 until its first map.
async fn wait_for_map(client: &reqwest::Client, url: &str) {
    for _ in 0..300 {
        let tags = client.get(format!("{url}/api/tags")).send().await;
        if tags.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A long conversation's body at `turn`: the chat's own system prompt,
/// then its questions and the replies between them.
fn conversation_body(turn: &Turn) -> Value {
    let filler = |what: &str, bytes: usize| {
        let mut text = format!("chat {} {what}: ", turn.chat);
        while text.len() < bytes {
            text.push_str("lorem ipsum dolor sit amet ");
        }
        text
    };
    let mut messages = vec![json!({"role": "system", "content": filler("rules", SYSTEM_BYTES)})];
    for k in 0..=turn.turn {
        let question = filler(&format!("question {k}"), QUESTION_BYTES);
        messages.push(json!({"role": "user", "content": question}));
        if k < turn.turn {
            messages.push(
                json!({"role": "assistant", "content": "an earlier answer of twelve tokens or so"}),
            );
        }
    }
    json!({"model": "m", "messages": messages, "stream": true})
}

async fn send(client: &reqwest::Client, url: &str, turn: &Turn, traffic: Traffic) -> Outcome {
    let body = match traffic {
        Traffic::Routing => routing::chat_body(turn),
        Traffic::Conversations => conversation_body(turn),
    };
    let start = Instant::now();
    let Ok(mut resp) = client
        .post(format!("{url}/api/chat"))
        .timeout(Duration::from_secs(120))
        .json(&body)
        .send()
        .await
    else {
        return Outcome::default();
    };
    let ok = resp.status() == 200;
    let mut ttft = None;
    loop {
        match resp.chunk().await {
            Ok(Some(_)) => {
                ttft.get_or_insert(start.elapsed().as_secs_f64());
            }
            Ok(None) => break,
            Err(_) => return Outcome::default(),
        }
    }
    let total = start.elapsed().as_secs_f64();
    Outcome {
        ok,
        ttft: ttft.unwrap_or(total),
        total,
    }
}

fn conversation_report(
    results: &[RunResult],
    schedule: &[Turn],
    s: &Settings,
    label: &str,
) -> Section {
    let mut md = String::new();
    let chats = schedule.iter().map(|t| t.chat).max().map_or(0, |c| c + 1);
    let _ = writeln!(
        md,
        "Fleet: {INSTANCES} emulated instances with one model `m` loaded on each, `NUM_PARALLEL` 4, prompt evaluation at \
         {PROMPT_RATE:.0} tokens/s (a consumer GPU's ~1,000 with time scaled down 20×), 40 tokens/s replies of 12 tokens. \
         Workload (seed {}): {chats} chats over {:.0} s (Poisson, 0.5/s), geometric turns (mean 6, at most {MAX_TURNS}), \
         think times of 4 s (mean); each chat has its own ~8k-token system prompt and each question is ~1.5k tokens, so a \
         history grows to 10-23k tokens; {} streamed `/api/chat` requests, the same schedule for each policy. The emulator's \
         per-slot prompt cache reuses the longest common prefix, as Ollama does; \"evaluated\" is the share of prompt tokens not \
         from a cache. Requests sent in the first {:.0} s are not counted.\n",
        s.seed,
        s.routing_duration.as_secs_f64(),
        schedule.len(),
        s.routing_warmup.as_secs_f64(),
    );
    md.push_str("| policy | ok | TTFT p50 s | TTFT p99 s | total p50 s | total p99 s | prompt tokens evaluated | cache hits | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in results {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} % of {:.1} M | {} | {} |",
            r.label,
            r.ttfts.len(),
            percentile(&r.ttfts, 50.0),
            percentile(&r.ttfts, 99.0),
            percentile(&r.totals, 50.0),
            percentile(&r.totals, 99.0),
            100.0 * ratio(r.prompt_evaluated as f64, r.prompt_tokens as f64),
            r.prompt_tokens as f64 / 1e6,
            r.cache_hits,
            r.errors
        );
    }
    if let [random, without, default] = results {
        let ttft = ratio(
            percentile(&default.ttfts, 50.0),
            percentile(&without.ttfts, 50.0),
        );
        let p99 = ratio(
            percentile(&default.totals, 99.0),
            percentile(&without.totals, 99.0),
        );
        let vs_random = ratio(
            percentile(&default.ttfts, 50.0),
            percentile(&random.ttfts, 50.0),
        );
        let _ = writeln!(
            md,
            "\nDefault vs the default without conversation affinity (same run): median TTFT **{ttft:.2}×** (target ≤ 0.3×: {}), \
             p99 end-to-end **{p99:.2}×** (target ≤ 1.05×: {}); median TTFT vs random **{vs_random:.2}×**.\n",
            if ttft <= 0.3 { "met" } else { "missed" },
            if p99 <= 1.05 { "met" } else { "missed" },
        );
    }
    let turns: Vec<String> = (0..MAX_TURNS).map(|t| (t + 1).to_string()).collect();
    let series: Vec<Series> = results
        .iter()
        .map(|r| Series {
            name: r.label.clone(),
            values: (0..MAX_TURNS)
                .map(|t| {
                    let at: Vec<f64> = r
                        .by_turn
                        .iter()
                        .filter(|(k, _)| *k == t)
                        .map(|(_, v)| *v)
                        .collect();
                    percentile(&at, 50.0)
                })
                .collect(),
        })
        .collect();
    let chart = bar_chart(
        "Median time to first token by turn number",
        label,
        "seconds",
        &turns,
        &series,
    );
    md.push_str("![TTFT by turn](bench/conversation-ttft.svg)\n");
    Section {
        markdown: md,
        figures: vec![("conversation-ttft.svg".into(), chart)],
    }
}

fn gateway_report(results: &[RunResult], s: &Settings, label: &str) -> Section {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "The routing section's fleet and workload (seed {}), the default policy, through 1, 2 and 4 Envoy processes (each \
         `--concurrency 1`, its own filter, all pinned to one core, all long-polling the one syncd); chat `c` goes through \
         gateway `c mod N`, so each gateway sees only its share of the requests in flight and of the \"recently sent\" memory.\n",
        s.seed
    );
    md.push_str("| gateways | ok | p50 s | p99 s | TTFT p99 s | cold loads | cache hits | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in results {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            r.label,
            r.totals.len(),
            percentile(&r.totals, 50.0),
            percentile(&r.totals, 99.0),
            percentile(&r.ttfts, 99.0),
            r.cold_loads,
            r.cache_hits,
            r.errors
        );
    }
    if let Some(one) = results.first() {
        for r in results.iter().skip(1) {
            let _ = writeln!(
                md,
                "\n{} vs 1: p99 **{:.2}×**, cold loads **{:.2}×** (target ≤ 1.1× each).",
                r.label,
                ratio(percentile(&r.totals, 99.0), percentile(&one.totals, 99.0)),
                ratio(r.cold_loads as f64, one.cold_loads as f64)
            );
        }
    }
    let groups: Vec<String> = results.iter().map(|r| r.label.clone()).collect();
    let chart = bar_chart(
        "Several gateways: p99 latency (s) and cold loads / 10",
        label,
        "value",
        &groups,
        &[
            Series {
                name: "p99 s".into(),
                values: results
                    .iter()
                    .map(|r| percentile(&r.totals, 99.0))
                    .collect(),
            },
            Series {
                name: "cold loads / 10".into(),
                values: results.iter().map(|r| r.cold_loads as f64 / 10.0).collect(),
            },
        ],
    );
    md.push_str("\n![gateways](bench/gateways.svg)\n");
    Section {
        markdown: md,
        figures: vec![("gateways.svg".into(), chart)],
    }
}
