//! The publishing HTTP API of a running syncd.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_has_an_etag_and_answers_304_to_the_current_id() {
    let a = emu("a", &["llama3"]).await;
    let d = Daemon::start(&[&a], fast()).await;
    let map = d.ready().await;

    let resp = d.get("/v1/map").await;
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", map.id));
    let body: model_map::ModelMap = resp.json().await.unwrap();
    assert_eq!(
        syncd::build::without_raw_entries(body.clone()),
        map,
        "the JSON is the kept map with the instances' raw entries"
    );
    assert_eq!(body.content_id(), body.id, "the filter can check the id");

    let client = reqwest::Client::new();
    let cached = client
        .get(format!("{}/v1/map", d.url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    let stale = client
        .get(format!("{}/v1/map", d.url))
        .header("if-none-match", "\"0000000000000000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(
        d.get(&format!("/v1/map?since={}", map.id)).await.status(),
        304
    );
    assert_eq!(d.get("/v1/map?since=other").await.status(), 200);

    let (resp, took) = timed(d.get(&format!("/v1/map?since={}&wait=0.3", map.id))).await;
    assert_eq!(resp.status(), 304, "nothing changed during the wait");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_from_another_replicas_map_waits_for_a_change_here() {
    let a = emu("a", &["llama3"]).await;
    let d = Daemon::start(&[&a], fast()).await;
    let first = d.ready().await;

    // An id this daemon never published (another replica's, perhaps
    // newer) is held for the wait, then answered with this daemon's map.
    let (resp, took) = timed(d.get("/v1/map?since=0123456789abcdef&wait=0.3")).await;
    assert_eq!(resp.status(), 200);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    let body: model_map::ModelMap = resp.json().await.unwrap();
    assert_eq!(body.id, first.id);

    // An id it published before means the client is behind: 200 at once.
    add_model(&a, "mistral").await;
    let now = d.wait_until("mistral", |m| has_model(m, "mistral")).await;
    // Held, it would be answered only when its 60 s wait ran out.
    let behind = format!("/v1/map?since={}&wait=60", first.id);
    let resp = tokio::time::timeout(Duration::from_secs(30), d.get(&behind))
        .await
        .expect("answered without holding");
    assert_eq!(resp.status(), 200);
    let body: model_map::ModelMap = resp.json().await.unwrap();
    assert_eq!(body.id, now.id);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_older_than_this_daemons_is_answered_at_once_even_if_foreign() {
    let a = emu("a", &["llama3"]).await;
    let d = Daemon::start(&[&a], fast()).await;
    let map = d.ready().await;
    let resp = d.get("/v1/map").await;
    let at: u64 = resp.headers()["x-ollama-lb-map-time"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // A filter kept a map from this daemon's previous life (an id it never
    // published, from before it started): answered now, not after a change.
    let older = format!("/v1/map?since=0123456789abcdef&at={}&wait=60", at - 1);
    let resp = tokio::time::timeout(Duration::from_secs(30), d.get(&older))
        .await
        .expect("answered without waiting for a change");
    assert_eq!(resp.status(), 200);
    let body: model_map::ModelMap = resp.json().await.unwrap();
    assert_eq!(body.id, map.id);
    // A newer foreign map (another replica ahead of this one) is still held.
    let newer = format!("/v1/map?since=0123456789abcdef&at={}&wait=0.3", at + 60_000);
    let (resp, took) = timed(d.get(&newer)).await;
    assert_eq!(resp.status(), 200);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // Any wait, however large or odd, is clamped before it is used.
    for wait in ["1e300", "-1e300", "inf", "NaN", "0", "-0.5"] {
        let resp = d.get(&format!("/v1/map?wait={wait}")).await;
        assert_eq!(resp.status(), 200, "wait={wait}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_envoy_the_same_endpoints() {
    let a = emu("a", &["llama3"]).await;
    let b = emu("b", &["llama3"]).await;
    let one = Daemon::start(&[&a, &b], fast()).await;
    let two = Daemon::start(&[&a, &b], fast()).await;
    one.ready().await;
    two.ready().await;
    let ask = |url: String| async move {
        let resp = reqwest::Client::new()
            .post(format!("{url}/v3/discovery:endpoints"))
            .body(r#"{"node":{"id":"t"},"resource_names":["ollama_fleet"]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()
    };
    let (x, y) = (ask(one.url.clone()).await, ask(two.url.clone()).await);
    assert_eq!(x, y, "identical endpoints and version");
    let eps = &x["resources"][0]["endpoints"][0]["lb_endpoints"];
    assert_eq!(eps.as_array().map(Vec::len), Some(2), "{x}");
    assert_eq!(x["resources"][0]["cluster_name"], "ollama_fleet");
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_long_poll_is_answered_by_the_change_not_by_its_wait() {
    let a = emu("a", &["llama3"]).await;
    let d = Daemon::start(&[&a], fast()).await;
    let map = d.ready().await;

    // The wait is far longer than the test: only the change can answer it.
    let url = format!("{}/v1/map?since={}&wait=600", d.url, map.id);
    let watchers = d.fleet.map_watchers();
    let long_poll = tokio::spawn(async move {
        let resp = reqwest::get(url).await.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        (status, body)
    });
    d.wait_map_watchers(watchers + 1).await;
    assert!(!long_poll.is_finished());

    add_model(&a, "mistral").await;
    let new = d.wait_until("mistral", |m| has_model(m, "mistral")).await;
    let (status, body) = long_poll.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["id"], new.id.as_str());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_every_instance_answered_or_failed_once() {
    let (a, hung) = (emu("a", &["llama3"]).await, emu("hung", &[]).await);
    fault(&hung, json!({"kind": "hang"})).await;
    let slow = syncd::config::PollSettings {
        interval: Duration::from_millis(2000),
        timeout: Duration::from_millis(1500),
        ..fast()
    };
    // The first round cannot finish before the hung poll times out.
    let d = Daemon::start(&[&a, &hung], slow).await;
    let resp = d.get("/v1/map").await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "model map not ready: first poll round not finished"})
    );
    assert_eq!(d.get("/readyz").await.status(), 503);
    assert_eq!(d.get("/healthz").await.status(), 200);
    let instances: Value = d.get("/v1/instances").await.json().await.unwrap();
    assert_eq!(instances["ready"], false);

    // A long poll is held until the first map instead of failing at once.
    let (resp, took) = timed(d.get("/v1/map?wait=5")).await;
    assert_eq!(resp.status(), 200);
    assert!(
        took >= Duration::from_millis(300),
        "answered after {took:?}"
    );
    let map = d.ready().await;
    let body: model_map::ModelMap = resp.json().await.unwrap();
    assert_eq!(body.id, map.id);
    assert!(healthy(&map, "e0") && !healthy(&map, "e1"));
    assert_eq!(d.get("/readyz").await.status(), 200);
    fault(&hung, json!({"kind": "none"})).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_metrics_and_status_describe_the_fleet() {
    let (a, b) = (
        emu("a", &["llama3", "mistral"]).await,
        emu("b", &["llama3"]).await,
    );
    let d = Daemon::start(&[&a, &b], fast()).await;
    let map = d.ready().await;

    let body: Value = d.get("/v1/instances").await.json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["map_id"], map.id.as_str());
    let e0 = &body["instances"][0];
    assert_eq!(e0["name"], "e0");
    assert_eq!(e0["url"], a.url().as_str());
    assert_eq!(e0["cluster"], "e0");
    assert_eq!(e0["healthy"], true);
    assert_eq!(e0["models"], 2);
    assert_eq!(e0["consecutive_failures"], 0);
    assert!(e0["last_seen"].as_str().unwrap().ends_with('Z'));
    assert!(e0["poll_latency_ms"].as_f64().unwrap() > 0.0);

    let metrics = d.get("/metrics").await.text().await.unwrap();
    for line in [
        "ollama_lb_instance_up{instance=\"e0\"} 1",
        "ollama_lb_instance_models{instance=\"e0\"} 2",
        "ollama_lb_poll_latency_seconds_count{instance=\"e1\"}",
        "ollama_lb_digest_mismatches 0",
        "ollama_lb_map_changes_total 1",
        &format!("ollama_lb_map_info{{id=\"{}\"}} 1", map.id),
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }

    let (instances, fetched) = syncd::status::fetch(&d.url, PATIENCE).await.unwrap();
    let text = syncd::status::render(&instances, fetched.as_ref());
    assert!(text.contains("2 models, 2/2 instances up"), "{text}");
    assert!(
        text.contains("llama3:latest") && text.contains("e0, e1"),
        "{text}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_held_long_polls_promptly() {
    let a = emu("a", &["llama3"]).await;
    let d = Daemon::start(&[&a], fast()).await;
    let map = d.ready().await;
    let url = format!("{}/v1/map?since={}&wait=60", d.url, map.id);
    let watchers = d.fleet.map_watchers();
    let long_poll = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status()) });
    d.wait_map_watchers(watchers + 1).await;
    // Held, the poll would end only after its 60 s wait.
    tokio::time::timeout(Duration::from_secs(30), d.stop())
        .await
        .expect("stopped without waiting out the long poll");
    let status = long_poll.await.unwrap().unwrap();
    assert_eq!(status, 304);
}
