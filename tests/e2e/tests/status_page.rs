//! The status page in headless Chromium against the real stack (syncd,
//! Envoy with the filter, emulated instances): it shows every instance and
//! model of the map, follows the fleet live (a model loaded, requests in
//! flight through Envoy, a sync, an instance killed), and Envoy's access
//! log names the model and the instance that served each request.
//! Screenshots go to the test's log folder.

use e2e::{Browser, Rig};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Generous: the page follows syncd within a poll or two; the measured
/// times are printed.
const DEADLINE: Duration = Duration::from_secs(20);

/// What the page shows, read from its DOM (the attributes the script sets).
const READ_PAGE: &str = r##"(() => !document.getElementById("footer") ? null : ({
  live: document.getElementById("conn").dataset.state,
  mapId: document.body.dataset.mapId || "",
  instances: Object.fromEntries([...document.querySelectorAll("#instances tbody tr")]
    .map((tr) => [tr.dataset.instance, tr.dataset.state])),
  inflight: Object.fromEntries([...document.querySelectorAll("#instances tbody tr")]
    .map((tr) => [tr.dataset.instance, tr.querySelector("[data-label='in flight']")?.textContent])),
  models: [...document.querySelectorAll("#grid tbody tr")].map((tr) => tr.dataset.model),
  modelInflight: Object.fromEntries([...document.querySelectorAll("#grid tbody tr")]
    .map((tr) => [tr.dataset.model, tr.lastElementChild.textContent])),
  loaded: [...document.querySelectorAll("#grid td[data-loaded='yes']")]
    .map((td) => td.dataset.model + "@" + td.dataset.instance),
  syncs: [...document.querySelectorAll("#syncs tbody tr")].map((tr) => tr.dataset.state),
}))()"##;

const SLOW: &str = "registry.ollama.ai/library/slow:latest";

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_status_page_shows_the_fleet_and_follows_it_live() -> anyhow::Result<()> {
    let mut rig = Rig::new("status_page");
    let common = ["--load-time", "100ms", "--pull-time", "300ms"];
    let a = rig
        .emulator(
            "a",
            &[
                &common[..],
                &["--model", "llama3.2", "--loaded", "llama3.2"],
            ]
            .concat(),
        )
        .await?;
    let b = rig
        .emulator(
            "b",
            &[
                &common[..],
                &["--model", "llama3.2", "--model", "qwen2.5:0.5b"],
            ]
            .concat(),
        )
        .await?;
    let slow = [
        "--model",
        "slow",
        "--tokens-per-second",
        "2",
        "--response-tokens",
        "1000",
    ];
    let c = rig
        .emulator("c", &[&common[..], &slow[..]].concat())
        .await?;
    // Envoy's admin port is chosen first, so syncd can be told where it is.
    let admin = e2e::rig::free_port()?;
    let admin_url = format!("http://{admin}");
    let syncd = rig
        .syncd(&[&a, &b, &c], &["--envoy-admin", &admin_url])
        .await?;
    let mut config = rig.envoy_config(&[&a, &b, &c], syncd.addr);
    config.admin = admin;
    let envoy = rig.envoy(&config, 2).await?;
    let client = e2e::http();
    wait_routable(&client, &envoy.url).await?;

    let mut browser = Browser::start(&mut rig, 1300, 1000).await?;
    browser.navigate(&format!("{}/", syncd.url)).await?;

    // Every instance and model of the map, once the feed is live.
    let map: Value = client
        .get(format!("{}/v1/map", syncd.url))
        .send()
        .await?
        .json()
        .await?;
    let names: Vec<String> = map["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect();
    let keys: Vec<String> = map["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["key"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names.len(), 3);
    assert_eq!(keys.len(), 3);
    let (page, took) = browser
        .wait_for(READ_PAGE, DEADLINE, |p| {
            p["live"] == "live"
                && names.iter().all(|n| p["instances"][n] == "up")
                && strings(&p["models"]) == keys
        })
        .await?;
    println!("first render: {took:?}: {page}");
    // The page shows the map syncd published then or a newer one (a
    // loaded model's expiry may pass a minute in between).
    let now: Value = client
        .get(format!("{}/v1/map", syncd.url))
        .send()
        .await?
        .json()
        .await?;
    assert!(
        page["mapId"] == map["id"] || page["mapId"] == now["id"],
        "page shows {} ; syncd published {} then {}",
        page["mapId"],
        map["id"],
        now["id"]
    );
    assert!(strings(&page["loaded"])
        .contains(&"registry.ollama.ai/library/llama3.2:latest@a".to_string()));

    // A model loaded: a request through Envoy loads `slow` on c, and its
    // stream keeps one request in flight, which the page reads from Envoy.
    let mut stream = client
        .post(format!("{}/api/generate", envoy.url))
        .body(r#"{"model":"slow","prompt":"hi"}"#)
        .send()
        .await?;
    assert_eq!(stream.status(), 200);
    assert!(stream.chunk().await?.is_some(), "the stream started");
    let sent = Instant::now();
    let want = format!("{SLOW}@c");
    let (_, took) = browser
        .wait_for(READ_PAGE, DEADLINE, |p| {
            strings(&p["loaded"]).contains(&want)
                && p["inflight"]["c"] == "1"
                && p["modelInflight"][SLOW] == "1"
        })
        .await?;
    println!("a model loaded and a request in flight: on the page {took:?} after the first token ({:?} since)", sent.elapsed());
    drop(stream);
    browser
        .wait_for(READ_PAGE, DEADLINE, |p| {
            p["inflight"]["c"] == "0" && p["modelInflight"][SLOW] == "0"
        })
        .await?;

    // Envoy's access log names the model and the instance that served it.
    let served = format!("\"upstream_host\":\"{}\"", c.addr);
    let line = rig
        .proc(envoy.proc)
        .wait_for_log(DEADLINE, |log| {
            log.lines()
                .find(|l| l.contains(&format!("\"model\":\"{SLOW}\"")) && l.contains(&served))
                .map(str::to_string)
        })
        .await?;
    let entry: Value = serde_json::from_str(line.trim())?;
    assert_eq!(entry["path"], "/api/generate", "{line}");
    assert_eq!(entry["cluster"], "ollama_fleet", "{line}");
    assert_eq!(entry["listed"], c.addr.to_string(), "{line}");
    assert_eq!(
        entry["attempts"].to_string().trim_matches('"'),
        "1",
        "{line}"
    );

    // A sync: every model everywhere; its jobs show and finish.
    let sync = client
        .post(format!("{}/v1/sync", syncd.url))
        .send()
        .await?
        .text()
        .await?;
    assert!(sync.contains("\"event\":\"summary\""), "{sync}");
    let (page, took) = browser
        .wait_for(READ_PAGE, DEADLINE, |p| {
            let s = strings(&p["syncs"]);
            !s.is_empty() && s.iter().all(|s| s == "done")
        })
        .await?;
    println!(
        "sync jobs done on the page {took:?} after the sync ended: {}",
        page["syncs"]
    );

    // An instance killed: its row leaves "up" at its first failed poll and
    // reads "down" once the thresholds say so.
    rig.kill(b.proc);
    let (_, failing) = browser
        .wait_for(READ_PAGE, DEADLINE, |p| p["instances"]["b"] != "up")
        .await?;
    let (_, down) = browser
        .wait_for(READ_PAGE, DEADLINE, |p| p["instances"]["b"] == "down")
        .await?;
    println!(
        "instance killed: not up on the page after {failing:?}, down after {:?} (poll every 200 ms, down after 3 failures)",
        failing + down
    );

    browser.screenshot(&rig.dir.join("status-page.png")).await?;
    browser.viewport(390, 844, true).await?;
    browser
        .screenshot(&rig.dir.join("status-page-phone.png"))
        .await?;
    println!("screenshots in {}", rig.dir.display());
    Ok(())
}

/// Waits until the filter has a map (fleet reads answer 200).
async fn wait_routable(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Ok(r) = client.get(format!("{url}/api/tags")).send().await {
            if r.status() == 200 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("Envoy at {url} never had a map")
}
