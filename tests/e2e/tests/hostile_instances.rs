//! Hostile instances beside a good fleet, through the real Envoy: garbage,
//! an over-size body, over-deep `details`, 10⁵ names, a 3.5 MiB string in
//! `details`, a trickled body, a never-ending body and connection resets.
//! Each is marked (failing, or with the entry left out) with a clear
//! `last_error`; the good instances stay routed with maps installed (a
//! model added on one becomes routable, a killed one leaves the healthy
//! set); syncd's and Envoy's memory stay bounded over many polls. The
//! memory and map sizes measured are printed.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use e2e::hostile::{spawn, Hostile};
use e2e::{Emu, Envoy, Rig, Syncd};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// Each hostile instance, whether it stays healthy, and what its
/// `last_error` must say.
const HOSTILE: &[(&str, Hostile, bool, &str)] = &[
    ("garbage", Hostile::Garbage, false, "invalid JSON"),
    (
        "oversize",
        Hostile::OverSize,
        false,
        "larger than the 4194304-byte cap",
    ),
    (
        "deep",
        Hostile::OverDeep,
        true,
        "nested 125 deep, over the limit of 32",
    ),
    (
        "many",
        Hostile::ManyNames,
        false,
        "lists 100000 models, over the limit of 2048",
    ),
    (
        "fat",
        Hostile::FatDetails,
        true,
        "bytes, over the limit of 16384",
    ),
    ("trickle", Hostile::Trickle, false, "no answer within"),
    (
        "endless",
        Hostile::Endless,
        false,
        "larger than the 4194304-byte cap",
    ),
    ("reset", Hostile::Reset, false, "GET /api/tags"),
];

/// Resident memory of a process, in MiB, from /proc.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn instances(syncd: &Syncd) -> Vec<Value> {
    let body: Value = match e2e::http()
        .get(format!("{}/v1/instances", syncd.url))
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    body["instances"].as_array().cloned().unwrap_or_default()
}

/// Waits until every hostile instance shows the expected state and error.
async fn all_marked(syncd: &Syncd) -> anyhow::Result<Vec<Value>> {
    let marked = e2e::until("every hostile instance marked", WAIT, || async {
        let all = instances(syncd).await;
        let marked = HOSTILE.iter().all(|(name, _, healthy, error)| {
            all.iter().any(|i| {
                i["name"] == *name
                    && i["healthy"] == *healthy
                    && i["last_error"].as_str().is_some_and(|e| e.contains(error))
            })
        });
        marked.then_some(all)
    })
    .await;
    if marked.is_err() {
        eprintln!("instances: {:#?}", instances(syncd).await);
    }
    marked
}

/// Chats with `model` through Envoy; the instance that answered.
async fn chat(envoy: &Envoy, model: &str) -> Option<String> {
    let body =
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": false});
    let resp = e2e::http()
        .post(format!("{}/api/chat", envoy.url))
        .json(&body)
        .send()
        .await
        .ok()?;
    let served_by = resp
        .headers()
        .get("x-emu-instance")?
        .to_str()
        .ok()?
        .to_string();
    resp.status().is_success().then_some(served_by)
}

/// The current map's id from syncd.
async fn map_id(syncd: &Syncd) -> String {
    let map: Value = match e2e::http()
        .get(format!("{}/v1/map", syncd.url))
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    map["id"].as_str().unwrap_or_default().to_string()
}

/// Waits until syncd's map satisfies `pred` and Envoy's workers installed it.
async fn installed_where(
    rig: &Rig,
    syncd: &Syncd,
    envoy: &Envoy,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let map = e2e::until(what, WAIT, || async {
        let resp = e2e::http()
            .get(format!("{}/v1/map", syncd.url))
            .send()
            .await
            .ok()?;
        let map: Value = resp.json().await.ok()?;
        pred(&map).then_some(map)
    })
    .await?;
    envoy
        .installed(rig, map["id"].as_str().unwrap_or_default(), 2)
        .await?;
    Ok(map)
}

fn healthy(map: &Value, instance: &str) -> bool {
    map["instances"].as_array().is_some_and(|all| {
        all.iter()
            .any(|i| i["name"] == instance && i["healthy"] == true)
    })
}

/// Whether the map lists `model` (a name without a tag: `:latest`).
fn has_model(map: &Value, model: &str) -> bool {
    let name = format!("{model}:latest");
    map["models"]
        .as_array()
        .is_some_and(|all| all.iter().any(|m| m["name"] == name.as_str()))
}

/// Failed polls of `instance` so far, from syncd's metrics.
async fn failures(syncd: &Syncd, instance: &str) -> u64 {
    let text = match e2e::http()
        .get(format!("{}/metrics", syncd.url))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let prefix = format!("ollama_lb_poll_failures_total{{instance=\"{instance}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

// The hostile servers run in this process: worker threads of their own,
// so serving megabytes never delays the test's own requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_instances_are_marked_and_the_fleet_routes_on() -> anyhow::Result<()> {
    let mut rig = Rig::new("hostile_instances");
    let e0 = rig
        .emulator("e0", &e2e::load::fast_model_args("m0"))
        .await?;
    let e1 = rig
        .emulator("e1", &e2e::load::fast_model_args("m1"))
        .await?;
    let mut hostile: Vec<Emu> = Vec::new();
    for (name, mode, _, _) in HOSTILE {
        hostile.push(spawn(name, *mode).await?);
    }
    let mut all: Vec<&Emu> = vec![&e0, &e1];
    all.extend(hostile.iter());
    let syncd = rig
        .syncd(&all, &["--down-after", "1", "--max-backoff", "200ms"])
        .await?;
    let envoy = rig.envoy(&rig.envoy_config(&all, syncd.addr), 2).await?;
    let (syncd_pid, envoy_pid) = (rig.proc(syncd.proc).pid(), rig.proc(envoy.proc).pid());

    let reports = all_marked(&syncd).await?;
    for r in &reports {
        eprintln!(
            "{}: healthy {} last_error {}",
            r["name"], r["healthy"], r["last_error"]
        );
    }
    let map = installed_where(
        &rig,
        &syncd,
        &envoy,
        "a map with both good instances",
        |m| healthy(m, "e0") && healthy(m, "e1") && has_model(m, "good"),
    )
    .await?;
    assert!(!has_model(&map, "deep") && !has_model(&map, "fat") && !has_model(&map, "m99999"));
    assert_eq!(chat(&envoy, "m0").await.as_deref(), Some("e0"));
    assert_eq!(chat(&envoy, "m1").await.as_deref(), Some("e1"));

    // Many polls of every hostile instance later, memory has not grown
    // with them.
    let (syncd_before, envoy_before) = (rss_mib(syncd_pid), rss_mib(envoy_pid));
    let polled = failures(&syncd, "many").await;
    e2e::until("20 more polls of the 10^5-name instance", WAIT, || async {
        (failures(&syncd, "many").await >= polled + 20).then_some(())
    })
    .await?;
    let (syncd_after, envoy_after) = (rss_mib(syncd_pid), rss_mib(envoy_pid));
    let map_bytes = e2e::http()
        .get(format!("{}/v1/map", syncd.url))
        .send()
        .await?
        .bytes()
        .await?
        .len();
    eprintln!(
        "memory over 20 polls of the hostile instances: syncd {syncd_before:.1} -> {syncd_after:.1} MiB, \
         envoy {envoy_before:.1} -> {envoy_after:.1} MiB; map {map_bytes} bytes"
    );
    assert!(
        syncd_after < syncd_before + 64.0,
        "syncd grew: {syncd_before} -> {syncd_after} MiB"
    );
    assert!(syncd_after < 256.0, "syncd holds {syncd_after} MiB");
    assert!(
        envoy_after < envoy_before + 64.0,
        "envoy grew: {envoy_before} -> {envoy_after} MiB"
    );
    assert!(map_bytes < 64 << 10, "the map is {map_bytes} bytes");

    // A model added on a good instance becomes routable.
    e2e::http()
        .post(format!("{}/_emu/model", e1.url))
        .json(&json!({"name": "added"}))
        .send()
        .await?
        .error_for_status()?;
    installed_where(&rig, &syncd, &envoy, "the added model in the map", |m| {
        has_model(m, "added")
    })
    .await?;
    assert_eq!(chat(&envoy, "added").await.as_deref(), Some("e1"));

    // A killed good instance leaves the healthy set.
    let before = map_id(&syncd).await;
    rig.kill(e0.proc);
    installed_where(&rig, &syncd, &envoy, "e0 down in the map", |m| {
        !healthy(m, "e0") && healthy(m, "e1") && m["id"] != before.as_str()
    })
    .await?;
    assert_eq!(chat(&envoy, "m1").await.as_deref(), Some("e1"));
    Ok(())
}
