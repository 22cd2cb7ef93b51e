//! One reply in progress: the slot it holds, its pace and its metrics.

use std::sync::Arc;
use std::time::Duration;

use model_map::name::{ModelName, NameError};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::duration::KeepAlive;
use crate::errors::ApiError;
use crate::models::Model;
use crate::prompt::Prompt;
use crate::scheduler::Slot;
use crate::state::EmuState;
use crate::stream::{token, token_interval};

/// How a route reports an empty model name.
#[derive(Clone, Copy)]
pub enum EmptyName {
    /// `404 model '' not found` (generate, embed).
    NotFound,
    /// `400 model is required` (chat, embeddings, show).
    Required,
}

/// How a route reports a model that is not on disk.
#[derive(Clone, Copy)]
pub enum Missing {
    /// `model 'x' not found` (generate, chat).
    Quoted,
    /// `model "x" not found, try pulling it first` (scheduler path: embed).
    TryPulling,
}

/// Resolves the client's model string to a model on disk, with the
/// route's error texts. Also counts the request for the model.
pub fn resolve(
    state: &EmuState,
    raw: &str,
    empty: EmptyName,
    missing: Missing,
) -> Result<Model, ApiError> {
    if !raw.trim().is_empty() {
        state.count_model(raw);
    }
    let name = match ModelName::parse_ref(raw) {
        Ok((n, _)) => n,
        Err(e @ NameError::ConflictingSource(_)) => {
            return Err(ApiError::bad_request(e.to_string()))
        }
        Err(NameError::Empty) => {
            return Err(match empty {
                EmptyName::NotFound => ApiError::not_found(format!("model '{raw}' not found")),
                EmptyName::Required => ApiError::bad_request("model is required"),
            })
        }
        Err(NameError::Invalid) => return Err(ApiError::bad_request("invalid model name")),
    };
    state.find(&name).ok_or_else(|| {
        ApiError::not_found(match missing {
            Missing::Quoted => format!("model '{raw}' not found"),
            Missing::TryPulling => format!("model {raw:?} not found, try pulling it first"),
        })
    })
}

/// The `keep_alive` field of a request, with Go's error text.
pub fn keep_alive_field(map: &Map<String, Value>) -> Result<Option<KeepAlive>, ApiError> {
    match map.get("keep_alive") {
        None => Ok(None),
        Some(v) => KeepAlive::from_json(v).map_err(ApiError::bad_request),
    }
}

/// A reply holding a slot on its model until dropped.
pub struct Generation {
    _slot: Slot,
    start: Instant,
    load_duration: Duration,
    eval_start: Instant,
    produced: usize,
    planned: usize,
    interval: Duration,
    length_capped: bool,
    /// Tokens of the whole prompt, cached or not (Ollama's
    /// `prompt_eval_count` counts both).
    pub prompt_tokens: u64,
    /// Time spent evaluating the uncached part of the prompt.
    prompt_eval: Duration,
}

impl Generation {
    /// Waits for a slot (loading the model if needed), then evaluates the
    /// part of `prompt` its slot does not hold at the prompt rate. `cap`
    /// is the client's token limit (`num_predict`, `max_tokens`).
    pub async fn start(
        state: &Arc<EmuState>,
        model: &Model,
        keep_alive: Option<KeepAlive>,
        cap: Option<u64>,
        prompt: Prompt,
        start: Instant,
    ) -> Result<Self, ApiError> {
        let slot = state
            .sched
            .acquire(model, &prompt, keep_alive, || state.settings())
            .await?;
        let config = state.config();
        let prompt_eval = prompt_eval_time(slot.prompt.evaluated, config.prompt_rate);
        tokio::time::sleep(prompt_eval).await;
        let response_tokens = config.response_tokens as usize;
        let planned = cap.map_or(response_tokens, |c| response_tokens.min(c as usize));
        Ok(Generation {
            load_duration: slot.load_duration.max(Duration::from_micros(500)),
            prompt_tokens: slot.prompt.total,
            _slot: slot,
            start,
            eval_start: Instant::now(),
            produced: 0,
            planned,
            interval: token_interval(config.tokens_per_second),
            length_capped: planned < response_tokens,
            prompt_eval,
        })
    }

    /// Waits one token interval and returns the next token, or `None` when
    /// the reply is complete.
    pub async fn next_token(&mut self) -> Option<String> {
        if self.produced >= self.planned {
            return None;
        }
        tokio::time::sleep(self.interval).await;
        let t = token(self.produced);
        self.produced += 1;
        Some(t)
    }

    /// Produces every remaining token and returns them joined.
    pub async fn run_to_end(&mut self) -> String {
        let mut out = String::new();
        while let Some(t) = self.next_token().await {
            out.push_str(&t);
        }
        out
    }

    /// Tokens produced so far.
    pub fn eval_count(&self) -> u64 {
        self.produced as u64
    }

    /// `stop`, or `length` when the client's cap cut the reply short.
    pub fn done_reason(&self) -> &'static str {
        if self.length_capped {
            "length"
        } else {
            "stop"
        }
    }

    /// Ollama's `Metrics` (nanoseconds).
    pub fn metrics(&self) -> Map<String, Value> {
        let ns = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
        let eval = self.eval_start.elapsed().max(Duration::from_micros(1));
        let prompt_eval = self.prompt_eval.max(Duration::from_micros(1));
        let mut m = Map::new();
        m.insert("total_duration".into(), json!(ns(self.start.elapsed())));
        m.insert("load_duration".into(), json!(ns(self.load_duration)));
        m.insert("prompt_eval_count".into(), json!(self.prompt_tokens));
        m.insert("prompt_eval_duration".into(), json!(ns(prompt_eval)));
        m.insert("eval_count".into(), json!(self.eval_count().max(1)));
        m.insert("eval_duration".into(), json!(ns(eval)));
        m
    }

    /// Load duration (for embed responses).
    pub fn load_duration(&self) -> Duration {
        self.load_duration
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Time to evaluate `tokens` prompt tokens at `rate` per second (zero for
/// a rate that is not a positive number).
pub fn prompt_eval_time(tokens: u64, rate: f64) -> Duration {
    Duration::try_from_secs_f64(tokens as f64 / rate).unwrap_or(Duration::ZERO)
}
