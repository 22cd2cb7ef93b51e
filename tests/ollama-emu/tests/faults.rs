//! Every fault kind of `POST /_emu/fault`, and that `none` clears them.

mod common;

use std::time::{Duration, Instant};

use common::{config, gen, start};
use futures_util::StreamExt;
use serde_json::{json, Value};

#[tokio::test]
async fn refuse_closes_the_port_then_listens_again() {
    let emu = start(config(&["llama3"])).await;
    let addr = emu.handle.addr();
    emu.control("/_emu/fault", json!({"kind": "refuse", "ms": 400}))
        .await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "refused while faulted"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let fresh = reqwest::Client::new();
    let r = fresh
        .get(format!("{}/api/version", emu.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn hang_holds_requests_until_cleared_and_spares_control() {
    let emu = start(config(&["llama3"])).await;
    emu.control("/_emu/fault", json!({"kind": "hang"})).await;
    let hung = emu
        .http
        .get(format!("{}/api/tags", emu.url))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());
    assert_eq!(emu.get("/_emu/stats").await.status(), 200);
    emu.control("/_emu/fault", json!({"kind": "none"})).await;
    assert_eq!(emu.get("/api/tags").await.status(), 200);

    // Busy on generation only: what syncd polls stays fine.
    emu.control(
        "/_emu/fault",
        json!({"kind": "status", "code": 503, "paths": ["/api/chat", "/v1/"]}),
    )
    .await;
    let (s, _) = emu.call("/api/chat", json!({"model": "llama3"})).await;
    assert_eq!(s, 503);
    assert_eq!(emu.get("/v1/models").await.status(), 503);
    assert_eq!(emu.get("/api/tags").await.status(), 200);
    assert_eq!(emu.get("/api/ps").await.status(), 200);
}

#[tokio::test]
async fn slow_delays_every_non_control_response() {
    let emu = start(config(&["llama3"])).await;
    emu.control("/_emu/fault", json!({"kind": "slow", "ms": 300}))
        .await;
    let t = Instant::now();
    assert_eq!(emu.get("/api/version").await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = Instant::now();
    emu.get("/_emu/stats").await;
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "control is not slowed"
    );
}

#[tokio::test]
async fn tags_invalid_json_and_tags_huge() {
    let emu = start(config(&["llama3"])).await;
    emu.control("/_emu/fault", json!({"kind": "tags_invalid_json"}))
        .await;
    let r = emu.get("/api/tags").await;
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_str::<Value>(&r.text().await.unwrap()).is_err());

    emu.control("/_emu/fault", json!({"kind": "none"})).await;
    emu.control(
        "/_emu/fault",
        json!({"kind": "tags_huge", "bytes": 2_000_000}),
    )
    .await;
    let text = emu.get("/api/tags").await.text().await.unwrap();
    assert_eq!(text.len(), 2_000_000);
    assert!(serde_json::from_str::<Value>(&text).is_ok());

    emu.control("/_emu/fault", json!({"kind": "none"})).await;
    let tags = emu.get_json("/api/tags").await;
    assert_eq!(tags["models"][0]["name"], "llama3:latest");
}

#[tokio::test]
async fn cut_stream_breaks_the_connection_after_n_chunks() {
    let mut c = config(&["llama3"]);
    c.models[0].loaded = true;
    let emu = start(c).await;
    emu.control(
        "/_emu/fault",
        json!({"kind": "cut_stream", "after_chunks": 2}),
    )
    .await;
    let r = emu
        .post("/api/generate", json!({"model": "llama3", "prompt": "hi"}))
        .await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut data = Vec::new();
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(b) => data.extend_from_slice(&b),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the body must end in an error");
    let text = String::from_utf8(data).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
}

#[tokio::test]
async fn fail_pull_fails_mid_stream_or_with_500() {
    let emu = start(config(&[])).await;
    emu.control(
        "/_emu/fault",
        json!({"kind": "fail_pull", "after_chunks": 2}),
    )
    .await;
    let text = emu
        .post("/api/pull", json!({"model": "tiny"}))
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["status"], "pulling manifest");
    assert!(lines[2]["error"].is_string());

    let (status, body) = emu
        .call("/api/pull", json!({"model": "tiny", "stream": false}))
        .await;
    assert_eq!(status, 500);
    assert!(body["error"].is_string());
    assert!(emu.get_json("/api/tags").await["models"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn status_answers_every_route_with_the_code() {
    let emu = start(config(&["llama3"])).await;
    emu.control("/_emu/fault", json!({"kind": "status", "code": 500}))
        .await;
    let (s, body) = emu.call("/api/generate", gen("llama3")).await;
    assert_eq!(s, 500);
    assert!(body["error"].is_string());
    let r = emu.get("/v1/models").await;
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_error");
    assert_eq!(emu.get("/_emu/stats").await.status(), 200);

    emu.control("/_emu/fault", json!({"kind": "status", "code": 503}))
        .await;
    let (s, body) = emu.call("/api/chat", json!({"model": "llama3"})).await;
    assert_eq!(s, 503);
    assert_eq!(
        body["error"],
        "server busy, please try again.  maximum pending requests exceeded"
    );

    emu.control("/_emu/fault", json!({"kind": "none"})).await;
    assert_eq!(emu.get("/api/tags").await.status(), 200);
}

#[tokio::test]
async fn faults_combine_and_bad_ones_are_rejected() {
    let emu = start(config(&["llama3"])).await;
    emu.control("/_emu/fault", json!({"kind": "slow", "ms": 200}))
        .await;
    emu.control("/_emu/fault", json!({"kind": "tags_invalid_json"}))
        .await;
    let t = Instant::now();
    let text = emu.get("/api/tags").await.text().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert!(serde_json::from_str::<Value>(&text).is_err());

    let (s, _) = emu.call("/_emu/fault", json!({"kind": "explode"})).await;
    assert_eq!(s, 400);
    let (s, _) = emu
        .call("/_emu/fault", json!({"kind": "status", "code": 42}))
        .await;
    assert_eq!(s, 400);
}
