//! Streamed bodies (NDJSON and SSE), reply tokens, and deterministic
//! embeddings.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// NDJSON content type of native streams.
pub const NDJSON_CT: &str = "application/x-ndjson";
/// SSE content type of OpenAI streams.
pub const SSE_CT: &str = "text/event-stream";

type Chunk = Result<Bytes, std::io::Error>;

/// The producing side of a streamed body. Counts chunks so the
/// `cut_stream` fault can break the connection after N of them.
pub struct ChunkSender {
    tx: mpsc::Sender<Chunk>,
    sent: usize,
    cut_after: Option<usize>,
}

impl ChunkSender {
    /// Sends one chunk. `false` when the client is gone or the stream was
    /// cut: stop producing.
    pub async fn send(&mut self, data: impl Into<Bytes>) -> bool {
        if self.cut_after.is_some_and(|n| self.sent >= n) {
            return false;
        }
        if self.tx.send(Ok(data.into())).await.is_err() {
            return false;
        }
        self.sent += 1;
        if self.cut_after.is_some_and(|n| self.sent >= n) {
            // An error from the body stream makes hyper drop the connection
            // without finishing the chunked body; the pause lets the last
            // chunk reach the socket first.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let _ = self
                .tx
                .send(Err(std::io::Error::other("cut_stream fault")))
                .await;
            return false;
        }
        true
    }

    /// Sends one value as an NDJSON line.
    pub async fn line(&mut self, v: &serde_json::Value) -> bool {
        self.send(format!("{v}\n")).await
    }

    /// Sends one value as an SSE `data:` event.
    pub async fn event(&mut self, v: &serde_json::Value) -> bool {
        self.send(format!("data: {v}\n\n")).await
    }
}

/// A streamed 200 response of `content_type`, fed by the returned sender.
pub fn streamed(content_type: &'static str, cut_after: Option<usize>) -> (ChunkSender, Response) {
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let mut resp = (StatusCode::OK, Body::from_stream(body)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    (
        ChunkSender {
            tx,
            sent: 0,
            cut_after,
        },
        resp,
    )
}

const WORDS: &[&str] = &[
    "The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "the",
    "emulator", "counts", "tokens", "at", "a", "steady", "pace.",
];

/// The `i`-th reply token (a word, with a leading space after the first).
pub fn token(i: usize) -> String {
    let word = WORDS.get(i % WORDS.len()).copied().unwrap_or_default();
    if i == 0 {
        word.to_string()
    } else {
        format!(" {word}")
    }
}

/// The whole reply of `n` tokens.
pub fn reply(n: usize) -> String {
    (0..n).map(token).collect()
}

/// Time between tokens at `tokens_per_second`.
pub fn token_interval(tokens_per_second: f64) -> Duration {
    if tokens_per_second > 0.0 && tokens_per_second.is_finite() {
        Duration::try_from_secs_f64(1.0 / tokens_per_second).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    }
}

/// A deterministic unit vector of `dims` numbers derived from `text`.
pub fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(dims);
    let mut block = 0u32;
    while out.len() < dims {
        let digest = Sha256::digest(format!("{block}:{text}").as_bytes());
        for pair in digest.chunks(2) {
            if out.len() == dims {
                break;
            }
            let (&hi, &lo) = (pair.first().unwrap_or(&0), pair.get(1).unwrap_or(&0));
            let raw = u16::from_be_bytes([hi, lo]);
            out.push(f32::from(raw) / 32767.5 - 1.0);
        }
        block += 1;
    }
    let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        out.iter_mut().for_each(|x| *x /= norm);
    }
    out
}
