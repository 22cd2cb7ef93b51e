//! The status page's routes on the daemon: the page and its assets come
//! from syncd itself, `/v1/status` has the fleet, the live feed sends a
//! snapshot on connect and again when a sync changes it, and an Envoy
//! admin that does not answer is reported rather than counted as zero.
//! (The page in a real browser: `tests/e2e/tests/status_page.rs`.)

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use serde_json::Value;
use syncd::SyncSettings;

async fn get(url: &str) -> (String, String) {
    let resp = reqwest::get(url).await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    (kind, resp.text().await.unwrap())
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_by_syncd_alone() {
    let a = emu("a", &["m"]).await;
    let d = Daemon::syncing(&[&a], SyncSettings::default()).await;
    let (kind, html) = get(&format!("{}/", d.url)).await;
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(html.contains(r#"<script src="/status.js">"#), "{html}");
    let (js_kind, js) = get(&format!("{}/status.js", d.url)).await;
    let (css_kind, css) = get(&format!("{}/status.css", d.url)).await;
    assert_eq!(
        (js_kind.as_str(), css_kind.as_str()),
        ("text/javascript", "text/css")
    );
    assert!(js.contains("/v1/status/events"));
    // Nothing is fetched from elsewhere: no absolute URL in any asset.
    for (name, text) in [
        ("index.html", &html),
        ("status.js", &js),
        ("status.css", &css),
    ] {
        for attr in ["src=\"http", "href=\"http", "url(http", "import "] {
            assert!(
                !text.contains(attr),
                "{name} loads something from elsewhere ({attr})"
            );
        }
    }
    d.stop().await;
}

#[tokio::test]
async fn status_json_and_the_live_feed_follow_a_sync() {
    let (a, b) = (emu("a", &["m"]).await, emu("b", &[]).await);
    let d = Daemon::syncing(&[&a, &b], SyncSettings::default()).await;
    let (_, body) = get(&format!("{}/v1/status", d.url)).await;
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["ready"], true);
    assert_eq!(status["instances"][0]["state"], "up");
    assert_eq!(status["instances"][0]["model_names"][0], "m:latest");
    assert_eq!(status["models"][0]["replicas"][0]["canonical"], true);
    assert_eq!(status["inflight"]["configured"], false);
    assert_eq!(status["syncs"], serde_json::json!([]));

    let mut feed = reqwest::get(format!("{}/v1/status/events", d.url))
        .await
        .unwrap();
    assert_eq!(feed.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    let first = next_event(&mut feed, &mut buf).await;
    assert_eq!(first["map_id"], status["map_id"]);

    let sync = reqwest::Client::new()
        .post(format!("{}/v1/sync", d.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sync.contains("\"summary\""), "{sync}");
    // The feed shows the job, and later the map with m on both.
    loop {
        let s = next_event(&mut feed, &mut buf).await;
        let jobs = s["syncs"].as_array().unwrap();
        let done = jobs
            .iter()
            .any(|j| j["instance"] == "e1" && j["ok"] == true);
        if done && s["models"][0]["replicas"].as_array().unwrap().len() == 2 {
            break;
        }
    }
    d.stop().await;
}

#[tokio::test]
async fn an_envoy_admin_that_does_not_answer_is_named_not_counted() {
    let a = emu("a", &["m"]).await;
    // A port nothing listens on (bound, then released).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let settings = SyncSettings {
        envoy_admins: vec![format!("http://{dead}")],
        ..SyncSettings::default()
    };
    let d = Daemon::syncing(&[&a], settings).await;
    let (_, body) = get(&format!("{}/v1/status", d.url)).await;
    let status: Value = serde_json::from_str(&body).unwrap();
    let inflight = &status["inflight"];
    assert_eq!(inflight["configured"], true);
    let error = inflight["gateways"][0]["error"].as_str().unwrap();
    assert!(error.contains("cannot reach Envoy admin"), "{error}");
    assert_eq!(inflight["instances"], serde_json::json!({}));
    d.stop().await;
}

/// The data of the next `status` event (10 s at most); `text` holds
/// what was read past the previous one.
async fn next_event(feed: &mut reqwest::Response, text: &mut String) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                return serde_json::from_str(data).unwrap();
            }
            continue;
        }
        let chunk = tokio::time::timeout_at(deadline, feed.chunk())
            .await
            .expect("a status event within 10 s")
            .unwrap()
            .expect("the feed stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}
