//! Helpers shared by the emulator's integration tests.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(dead_code)]

use std::time::Duration;

use ollama_emu::{spawn, Config, EmuHandle, ModelSpec};
use serde_json::Value;

/// A quick configuration: short load time, fast tokens, the given models.
pub fn config(models: &[&str]) -> Config {
    Config {
        name: "test-emu".into(),
        load_time: Duration::from_millis(200),
        tokens_per_second: 200.0,
        response_tokens: 5,
        pull_time: Duration::from_millis(50),
        models: models.iter().map(|m| ModelSpec::from_flag(m)).collect(),
        ..Config::default()
    }
}

pub async fn start(config: Config) -> Emu {
    let handle = spawn("127.0.0.1:0".parse().expect("literal address"), config)
        .await
        .expect("emulator starts");
    Emu {
        url: handle.url(),
        handle,
        http: reqwest::Client::new(),
    }
}

pub struct Emu {
    pub handle: EmuHandle,
    pub url: String,
    pub http: reqwest::Client,
}

impl Emu {
    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.expect("json body")
    }

    /// Posts and returns (status, JSON body).
    pub async fn call(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.post(path, body).await;
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn control(&self, path: &str, body: Value) {
        let (status, resp) = self.call(path, body).await;
        assert_eq!(status, 200, "{path}: {resp}");
    }

    pub async fn stats(&self) -> Value {
        self.get_json("/_emu/stats").await
    }

    /// Names in `/api/ps`.
    pub async fn loaded(&self) -> Vec<String> {
        let ps = self.get_json("/api/ps").await;
        ps["models"]
            .as_array()
            .expect("models array")
            .iter()
            .map(|m| m["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits until `f(stats)` holds (up to 2 s).
    pub async fn wait_stats(&self, f: impl Fn(&Value) -> bool) {
        for _ in 0..200 {
            if f(&self.stats().await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("stats never matched: {}", self.stats().await);
    }
}

/// A non-streamed generate body.
pub fn gen(model: &str) -> Value {
    serde_json::json!({"model": model, "prompt": "hello", "stream": false})
}
