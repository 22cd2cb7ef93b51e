//! A bounded concurrent load through Envoy that counts every outcome:
//! streamed and non-streamed native and OpenAI requests, each recorded with
//! the instance that answered and whether its response had begun.
//!
//! Each client sends one request after another until [`Load::stop`] (or
//! until [`MAX_PER_CLIENT`] requests or [`MAX_RUN`] have passed), so a
//! test can never flood anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

/// The most requests one client sends.
pub const MAX_PER_CLIENT: usize = 5_000;
/// The longest a load runs.
pub const MAX_RUN: Duration = Duration::from_secs(120);

/// Emulator flags for `model`, loaded and quick to answer (8 tokens at
/// 200/s, 8 parallel slots): the instances a load runs against.
pub fn fast_model_args(model: &'static str) -> Vec<&'static str> {
    vec![
        "--model",
        model,
        "--loaded",
        model,
        "--tokens-per-second",
        "200",
        "--response-tokens",
        "8",
        "--num-parallel",
        "8",
    ]
}

/// The request kinds, taken in turn by each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NativeChatStream,
    NativeGenerate,
    OpenAiChatStream,
    OpenAiChat,
}

const KINDS: [Kind; 4] = [
    Kind::NativeChatStream,
    Kind::NativeGenerate,
    Kind::OpenAiChatStream,
    Kind::OpenAiChat,
];

/// What happened to one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: Kind,
    /// When it was sent, since the load started.
    pub sent: Duration,
    /// When it ended, since the load started.
    pub ended: Duration,
    /// The HTTP status (0 if none arrived).
    pub status: u16,
    /// The instance that answered (`x-emu-instance`), if one did.
    pub instance: Option<String>,
    /// The response had begun (a 200 with its headers) before it failed:
    /// Envoy cannot retry it any more.
    pub began: bool,
    /// `None` when the request succeeded completely.
    pub error: Option<String>,
}

impl Outcome {
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }
}

/// A running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<Vec<Outcome>>,
    pub started: Instant,
}

impl Load {
    /// `clients` concurrent clients asking `url` (Envoy) for `model`.
    pub fn start(url: &str, model: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for client in 0..clients {
            let (url, model, stop) = (url.to_string(), model.to_string(), stop.clone());
            tasks.spawn(async move {
                let http = crate::http();
                let mut outcomes = Vec::new();
                for n in 0..MAX_PER_CLIENT {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > MAX_RUN {
                        break;
                    }
                    let kind = KINDS[(client + n) % KINDS.len()];
                    outcomes.push(send(&http, &url, &model, kind, started).await);
                }
                outcomes
            });
        }
        Load {
            stop,
            tasks,
            started,
        }
    }

    /// Time since the load started.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the clients after their current request; every outcome.
    pub async fn stop(mut self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        while let Some(done) = self.tasks.join_next().await {
            all.extend(done.unwrap_or_default());
        }
        all.sort_by_key(|o| o.sent);
        all
    }
}

/// A short summary of outcomes, for test messages.
pub fn summary(outcomes: &[Outcome]) -> String {
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed()).collect();
    let mut text = format!("{} requests, {} failed", outcomes.len(), failed.len());
    for o in failed.iter().take(10) {
        text.push_str(&format!(
            "\n  {:?} sent {:?} ended {:?}: {} from {:?} (began: {}): {}",
            o.kind,
            o.sent,
            o.ended,
            o.status,
            o.instance,
            o.began,
            o.error.as_deref().unwrap_or("")
        ));
    }
    text
}

fn request(kind: Kind, model: &str) -> (&'static str, serde_json::Value) {
    let messages = serde_json::json!([{"role": "user", "content": "hi"}]);
    match kind {
        Kind::NativeChatStream => (
            "/api/chat",
            serde_json::json!({"model": model, "messages": messages}),
        ),
        Kind::NativeGenerate => (
            "/api/generate",
            serde_json::json!({"model": model, "prompt": "hi", "stream": false}),
        ),
        Kind::OpenAiChatStream => (
            "/v1/chat/completions",
            serde_json::json!({"model": model, "messages": messages, "stream": true}),
        ),
        Kind::OpenAiChat => (
            "/v1/chat/completions",
            serde_json::json!({"model": model, "messages": messages}),
        ),
    }
}

async fn send(
    http: &reqwest::Client,
    url: &str,
    model: &str,
    kind: Kind,
    started: Instant,
) -> Outcome {
    let (path, body) = request(kind, model);
    let sent = started.elapsed();
    let mut outcome = Outcome {
        kind,
        sent,
        ended: sent,
        status: 0,
        instance: None,
        began: false,
        error: None,
    };
    let result = http
        .post(format!("{url}{path}"))
        .json(&body)
        .timeout(Duration::from_secs(60))
        .send()
        .await;
    let error = match result {
        Err(e) => Some(format!("no response: {e}")),
        Ok(resp) => {
            outcome.status = resp.status().as_u16();
            outcome.instance = resp
                .headers()
                .get("x-emu-instance")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            outcome.began = outcome.status == 200;
            match resp.text().await {
                Err(e) => Some(format!("body broke: {e}")),
                Ok(text) if outcome.status != 200 => Some(text),
                Ok(text) => complete(kind, &text).err(),
            }
        }
    };
    outcome.error = error;
    outcome.ended = started.elapsed();
    outcome
}

/// Whether a 200 body is a whole answer of its kind.
fn complete(kind: Kind, text: &str) -> Result<(), String> {
    let whole = match kind {
        Kind::NativeChatStream => text
            .lines()
            .last()
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .is_some_and(|v| v["done"] == true && v.get("error").is_none()),
        Kind::NativeGenerate => {
            serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v["done"] == true)
        }
        Kind::OpenAiChatStream => text.trim_end().ends_with("data: [DONE]"),
        Kind::OpenAiChat => {
            serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v["choices"].is_array())
        }
    };
    if whole {
        Ok(())
    } else {
        let tail: String = text
            .chars()
            .rev()
            .take(120)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(format!("incomplete body, ending {tail:?}"))
    }
}
