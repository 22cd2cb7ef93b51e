//! Every route of syncd survives any query string and body: each odd
//! request gets an answer (a normal one, or an Ollama-style JSON error),
//! never a dropped connection or a panic.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{emu, fast, Daemon};
use reqwest::Method;
use serde_json::Value;

/// Query strings no client should send.
const QUERIES: &[&str] = &[
    "wait=1e300",
    "wait=-1",
    "wait=nan",
    "wait=inf",
    "wait=1e999999",
    "wait=abc",
    "wait=1&wait=2",
    "since=%ff",
    "since=%c3%28&at=0&wait=1e300",
    "since=%&at=0&wait=5",
    "at=-1",
    "at=99999999999999999999999999",
    "at=1.5&since=x&wait=0",
    "since=x&since=y",
    "%ff=%fe",
    "&&&==&",
];

/// Bodies no client should send.
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
        br#"{"model":"x","models":3,"wait":1e300,"stream":"yes"}"#.to_vec(),
    ]
}

/// Every route syncd serves, with the method it answers.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/map"),
    ("GET", "/v1/instances"),
    ("POST", "/v3/discovery:endpoints"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/status.css"),
    ("GET", "/v1/status"),
    ("POST", "/v1/sync"),
    ("POST", "/v1/fleet/api/pull"),
    ("DELETE", "/v1/fleet/api/delete"),
    ("POST", "/v1/fleet/api/copy"),
    ("POST", "/v1/fleet/api/create"),
    ("POST", "/v1/fleet/api/generate"),
    ("POST", "/v1/fleet/api/chat"),
    ("GET", "/v1/fleet/pulls"),
    ("HEAD", "/v1/fleet/api/blobs/sha256:00"),
    ("POST", "/v1/fleet/api/blobs/%ff%fe"),
    ("HEAD", "/v1/fleet/api/blobs/%c3%28"),
];

/// What is wrong with an answer: nothing when it is a success or
/// redirect, or an error whose body is JSON with an `error` text (HEAD
/// answers have no body).
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
    if status.as_u16() < 400 || method == "HEAD" {
        return None;
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(json) if json["error"].is_string() => None,
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
    let e0 = emu("e0", &["m:latest"]).await;
    let daemon = Daemon::start(&[&e0], fast()).await;
    daemon.ready().await;
    let http = reqwest::Client::new();
    let mut wrong = Vec::new();
    for (method, path) in ROUTES {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        for query in QUERIES {
            let url = format!("{}{path}?{query}", daemon.url);
            let sent = http.request(m.clone(), &url).send().await;
            wrong.extend(misanswered(method, &url, sent).await);
        }
        for body in bodies() {
            let url = format!("{}{path}?wait=1e300", daemon.url);
            let sent = http.request(m.clone(), &url).body(body).send().await;
            wrong.extend(misanswered(method, &url, sent).await);
        }
    }
    // The live feed streams: its head must come, with odd queries too.
    for query in QUERIES {
        let url = format!("{}/v1/status/events?{query}", daemon.url);
        let resp = http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
    }
    assert!(
        wrong.is_empty(),
        "{} odd requests misanswered:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    daemon.stop().await;
}
