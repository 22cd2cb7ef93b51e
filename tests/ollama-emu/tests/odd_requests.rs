//! Every route of the emulator survives any query string and body: each
//! odd request gets an answer (a normal one, an Ollama-style JSON error,
//! or gin's own plain 404/405 texts, as Ollama gives them), never a
//! dropped connection or a panic.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{config, start};
use reqwest::Method;
use serde_json::Value;

const QUERIES: &[&str] = &[
    "wait=1e300",
    "wait=-1&wait=nan",
    "since=%ff",
    "%c3%28=%ff%fe",
    "at=99999999999999999999999999",
    "&&&==&",
    "stream=%00",
];

fn bodies() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        b"{".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\xff\xfe\x00".to_vec(),
        b"{\"model\":\"\xff\"}".to_vec(),
        format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        format!("{{\"model\":\"{}\"}}", "a".repeat(1 << 20)).into_bytes(),
        br#"{"model":"m","prompt":3,"messages":{},"keep_alive":1e300,"options":[]}"#.to_vec(),
        br#"{"model":"m","keep_alive":"-1e300h","stream":false}"#.to_vec(),
        br#"{"model":"m","options":{"num_predict":1e300},"stream":false}"#.to_vec(),
    ]
}

const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/api/version"),
    ("GET", "/api/tags"),
    ("GET", "/api/ps"),
    ("POST", "/api/generate"),
    ("POST", "/api/chat"),
    ("POST", "/api/embed"),
    ("POST", "/api/embeddings"),
    ("POST", "/api/show"),
    ("POST", "/api/pull"),
    ("POST", "/api/push"),
    ("POST", "/api/create"),
    ("POST", "/api/copy"),
    ("DELETE", "/api/delete"),
    ("HEAD", "/api/blobs/sha256:00"),
    ("POST", "/api/blobs/%ff%fe"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/%ff"),
    ("POST", "/_emu/model"),
    ("POST", "/_emu/remove"),
    ("POST", "/_emu/digest"),
    ("POST", "/_emu/load"),
    ("POST", "/_emu/unload"),
    ("POST", "/_emu/registry"),
    ("POST", "/_emu/config"),
    ("POST", "/_emu/fault"),
    ("GET", "/_emu/stats"),
];

/// What is wrong with an answer, if anything.
async fn misanswered(
    method: &str,
    url: &str,
    resp: reqwest::Result<reqwest::Response>,
) -> Option<String> {
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return Some(format!("{method} {url}: no answer: {e}")),
    };
    let status = resp.status();
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return Some(format!("{method} {url}: body cut: {e}")),
    };
    let gin_text = matches!(&body[..], b"404 page not found" | b"405 method not allowed");
    if status.as_u16() < 400 || method == "HEAD" || gin_text {
        return None;
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(json) if json["error"].is_string() || json["error"]["message"].is_string() => None,
        _ => Some(format!(
            "{method} {url}: {status} {:?}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        )),
    }
}

#[tokio::test]
async fn every_route_answers_odd_queries_and_bodies() {
    let emu = start(config(&["m:latest"])).await;
    let mut wrong = Vec::new();
    for (method, path) in ROUTES {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        for query in QUERIES {
            let url = format!("{}{path}?{query}", emu.url);
            let sent = emu.http.request(m.clone(), &url).send().await;
            wrong.extend(misanswered(method, &url, sent).await);
        }
        for body in bodies() {
            let url = format!("{}{path}?wait=1e300", emu.url);
            let sent = emu.http.request(m.clone(), &url).body(body).send().await;
            wrong.extend(misanswered(method, &url, sent).await);
        }
    }
    assert!(
        wrong.is_empty(),
        "{} odd requests misanswered:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let version = emu.get("/api/version").await;
    assert_eq!(version.status(), 200, "the emulator still serves");
}
