//! `/api/generate`, `/api/chat`, `/api/embed` and `/api/embeddings`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::duration::KeepAlive;
use crate::errors::{json_response, ApiError};
use crate::generation::{keep_alive_field, resolve, EmptyName, Generation, Missing};
use crate::gojson::{decode, str_field, Kind};
use crate::models::Model;
use crate::prompt::Prompt;
use crate::routes::tools;
use crate::state::EmuState;
use crate::stream::{embedding, streamed, NDJSON_CT};

type Shared = State<Arc<EmuState>>;

/// `api.GenerateRequest`, in declaration order.
const GENERATE_FIELDS: &[(&str, Kind)] = &[
    ("model", Kind::Str),
    ("prompt", Kind::Str),
    ("suffix", Kind::Str),
    ("system", Kind::Str),
    ("template", Kind::Str),
    ("context", Kind::List("[]int", &Kind::Int)),
    ("stream", Kind::Bool),
    ("raw", Kind::Bool),
    ("format", Kind::Raw),
    ("keep_alive", Kind::Duration),
    ("images", Kind::Array("[]api.ImageData")),
    ("options", Kind::Object("map[string]interface {}")),
    ("think", Kind::Think),
    ("truncate", Kind::Bool),
    ("shift", Kind::Bool),
    ("_debug_render_only", Kind::Bool),
    ("logprobs", Kind::Bool),
    ("top_logprobs", Kind::Int),
];

/// `api.Message`, decoded by its own `UnmarshalJSON`.
const MESSAGE_FIELDS: &[(&str, Kind)] = &[
    ("role", Kind::Str),
    ("content", Kind::Str),
    ("thinking", Kind::Str),
    ("images", Kind::Array("[]api.ImageData")),
    ("tool_calls", tools::API_TOOL_CALLS),
    ("tool_name", Kind::Str),
    ("tool_call_id", Kind::Str),
];

/// `api.ChatRequest`, in declaration order.
const CHAT_FIELDS: &[(&str, Kind)] = &[
    ("model", Kind::Str),
    ("messages", Kind::Messages(MESSAGE_FIELDS)),
    ("stream", Kind::Bool),
    ("format", Kind::Raw),
    ("keep_alive", Kind::Duration),
    ("tools", tools::API_TOOLS),
    ("options", Kind::Object("map[string]interface {}")),
    ("think", Kind::Think),
    ("truncate", Kind::Bool),
    ("shift", Kind::Bool),
    ("_debug_render_only", Kind::Bool),
    ("logprobs", Kind::Bool),
    ("top_logprobs", Kind::Int),
];

/// `stream` defaults to true on native routes (`*bool`, nil = true).
fn wants_stream(map: &Map<String, Value>) -> bool {
    map.get("stream").and_then(Value::as_bool).unwrap_or(true)
}

/// `options.num_predict` when positive.
fn num_predict(map: &Map<String, Value>) -> Option<u64> {
    map.get("options")?
        .get("num_predict")?
        .as_i64()
        .and_then(|n| u64::try_from(n).ok())
}

/// The empty-request shortcuts: unload with keep_alive 0, else load.
async fn load_or_unload(
    state: &Arc<EmuState>,
    model: &Model,
    keep_alive: Option<KeepAlive>,
    raw_model: &str,
    chat: bool,
) -> Result<Response, ApiError> {
    let reason = if keep_alive == Some(KeepAlive::For(std::time::Duration::ZERO)) {
        state.sched.unload(&model.key);
        "unload"
    } else {
        let start = Instant::now();
        drop(Generation::start(state, model, keep_alive, Some(0), Prompt::empty(), start).await?);
        "load"
    };
    let now = crate::time::now();
    let body = if chat {
        json!({"model": raw_model, "created_at": now,
            "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": reason})
    } else {
        json!({"model": raw_model, "created_at": now,
            "response": "", "done": true, "done_reason": reason})
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// The capability checks of generate and chat: embedding-only models and
/// `think` (no emulated model thinks).
fn check_capabilities(
    req: &Map<String, Value>,
    model: &Model,
    raw_model: &str,
    what: &str,
) -> Result<(), ApiError> {
    if model.embedding {
        return Err(ApiError::bad_request(format!(
            "{raw_model:?} does not support {what}"
        )));
    }
    let thinks = match req.get("think") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(level)) => !level.is_empty(),
        _ => false,
    };
    if thinks {
        return Err(ApiError::bad_request(format!(
            "{raw_model:?} does not support thinking"
        )));
    }
    Ok(())
}

/// Generate's and chat's first check after decoding, before the model.
fn check_top_logprobs(req: &Map<String, Value>) -> Result<(), ApiError> {
    match req.get("top_logprobs").and_then(Value::as_i64) {
        Some(n) if !(0..=20).contains(&n) => Err(ApiError::bad_request(
            "top_logprobs must be between 0 and 20",
        )),
        _ => Ok(()),
    }
}

/// `POST /api/generate`.
pub async fn generate(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let start = Instant::now();
    let req = decode(&body, "GenerateRequest", GENERATE_FIELDS)?;
    check_top_logprobs(&req)?;
    let keep_alive = keep_alive_field(&req)?;
    let raw_model = str_field(&req, "model").to_string();
    let model = resolve(&state, &raw_model, EmptyName::NotFound, Missing::Quoted)?;
    check_capabilities(&req, &model, &raw_model, "generate")?;
    let prompt = str_field(&req, "prompt");
    let has_images = req
        .get("images")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if prompt.is_empty() && !has_images {
        return load_or_unload(&state, &model, keep_alive, &raw_model, false).await;
    }
    let with_context = !req.get("raw").and_then(Value::as_bool).unwrap_or(false);
    let prompt = Prompt::generate(str_field(&req, "system"), prompt);
    let mut gen =
        Generation::start(&state, &model, keep_alive, num_predict(&req), prompt, start).await?;
    let finish = move |gen: &Generation, response: String| {
        let mut v = json!({
            "model": raw_model, "created_at": crate::time::now(), "response": response,
            "done": true, "done_reason": gen.done_reason(),
        });
        if let (true, Some(obj)) = (with_context, v.as_object_mut()) {
            obj.insert("context".into(), json!([1, 2, 3]));
        }
        if let Some(obj) = v.as_object_mut() {
            obj.extend(gen.metrics());
        }
        v
    };
    if !wants_stream(&req) {
        let text = gen.run_to_end().await;
        return Ok(json_response(StatusCode::OK, &finish(&gen, text)));
    }
    let (mut tx, resp) = streamed(NDJSON_CT, state.faults().cut_stream);
    let model_echo = str_field(&req, "model").to_string();
    tokio::spawn(async move {
        while let Some(t) = gen.next_token().await {
            let chunk = json!({"model": model_echo, "created_at": crate::time::now(), "response": t, "done": false});
            if !tx.line(&chunk).await {
                return;
            }
        }
        let last = finish(&gen, String::new());
        tx.line(&last).await;
    });
    Ok(resp)
}

/// `POST /api/chat`.
pub async fn chat(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let start = Instant::now();
    let req = decode(&body, "ChatRequest", CHAT_FIELDS)?;
    check_top_logprobs(&req)?;
    let keep_alive = keep_alive_field(&req)?;
    let raw_model = str_field(&req, "model").to_string();
    let model = resolve(&state, &raw_model, EmptyName::Required, Missing::Quoted)?;
    check_capabilities(&req, &model, &raw_model, "chat")?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if messages.is_empty() {
        return load_or_unload(&state, &model, keep_alive, &raw_model, true).await;
    }
    let mut gen = Generation::start(
        &state,
        &model,
        keep_alive,
        num_predict(&req),
        Prompt::chat(&messages),
        start,
    )
    .await?;
    let finish = move |gen: &Generation, content: String| {
        let mut v = json!({
            "model": raw_model, "created_at": crate::time::now(),
            "message": {"role": "assistant", "content": content},
            "done": true, "done_reason": gen.done_reason(),
        });
        if let Some(obj) = v.as_object_mut() {
            obj.extend(gen.metrics());
        }
        v
    };
    if !wants_stream(&req) {
        let text = gen.run_to_end().await;
        return Ok(json_response(StatusCode::OK, &finish(&gen, text)));
    }
    let (mut tx, resp) = streamed(NDJSON_CT, state.faults().cut_stream);
    let model_echo = str_field(&req, "model").to_string();
    tokio::spawn(async move {
        while let Some(t) = gen.next_token().await {
            let chunk = json!({
                "model": model_echo, "created_at": crate::time::now(),
                "message": {"role": "assistant", "content": t}, "done": false,
            });
            if !tx.line(&chunk).await {
                return;
            }
        }
        let last = finish(&gen, String::new());
        tx.line(&last).await;
    });
    Ok(resp)
}

/// The texts of an embed `input`: a string or an array of strings.
pub fn embed_inputs(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ApiError::bad_request("invalid input type")),
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request("invalid input type")),
    }
}

/// Loads the model and computes embeddings for `inputs`.
pub async fn compute_embeddings(
    state: &Arc<EmuState>,
    model: &Model,
    keep_alive: Option<KeepAlive>,
    inputs: &[String],
    dims: usize,
    start: Instant,
) -> Result<(Vec<Vec<f32>>, Generation), ApiError> {
    let prompt = Prompt::embed(inputs);
    let gen = Generation::start(state, model, keep_alive, Some(0), prompt, start).await?;
    Ok((inputs.iter().map(|s| embedding(s, dims)).collect(), gen))
}

/// `POST /api/embed`.
pub async fn embed(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let start = Instant::now();
    let req = decode(
        &body,
        "EmbedRequest",
        &[
            ("model", Kind::Str),
            ("input", Kind::Any),
            ("keep_alive", Kind::Duration),
            ("truncate", Kind::Bool),
            ("dimensions", Kind::Int),
            ("options", Kind::Object("map[string]interface {}")),
        ],
    )?;
    let keep_alive = keep_alive_field(&req)?;
    let raw_model = str_field(&req, "model");
    let inputs = embed_inputs(req.get("input"))?;
    let model = resolve(&state, raw_model, EmptyName::NotFound, Missing::TryPulling)?;
    let dims = req
        .get("dimensions")
        .and_then(Value::as_u64)
        .filter(|d| *d > 0)
        .unwrap_or(8) as usize;
    let (vectors, gen) =
        compute_embeddings(&state, &model, keep_alive, &inputs, dims, start).await?;
    if inputs.is_empty() {
        return Ok(json_response(
            StatusCode::OK,
            &json!({"model": raw_model, "embeddings": []}),
        ));
    }
    let body = json!({
        "model": raw_model,
        "embeddings": vectors,
        "total_duration": gen.elapsed().as_nanos() as u64,
        "load_duration": gen.load_duration().as_nanos() as u64,
        "prompt_eval_count": gen.prompt_tokens,
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /api/embeddings` (legacy, one prompt).
pub async fn embeddings(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let start = Instant::now();
    let req = decode(
        &body,
        "EmbeddingRequest",
        &[
            ("model", Kind::Str),
            ("prompt", Kind::Str),
            ("keep_alive", Kind::Duration),
            ("options", Kind::Object("map[string]interface {}")),
        ],
    )?;
    let keep_alive = keep_alive_field(&req)?;
    let raw_model = str_field(&req, "model");
    let model = resolve(&state, raw_model, EmptyName::Required, Missing::TryPulling)?;
    let prompt = str_field(&req, "prompt");
    let inputs: Vec<String> = if prompt.is_empty() {
        Vec::new()
    } else {
        vec![prompt.to_string()]
    };
    let (vectors, _gen) = compute_embeddings(&state, &model, keep_alive, &inputs, 8, start).await?;
    let vector = vectors.into_iter().next().unwrap_or_default();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "embedding": vector }),
    ))
}

/// `GET /` and `HEAD /`.
pub async fn root() -> Response {
    (StatusCode::OK, "Ollama is running").into_response()
}
