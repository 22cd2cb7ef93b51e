//! The OpenAI-compatible routes: `/v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings` and `/v1/models`.
//!
//! Follows HEAD: a separate finish chunk with an empty `delta`, and a
//! usage chunk when `stream_options.include_usage` is set.

use std::sync::Arc;

use axum::extract::State;

use crate::routes::gin::LossyParam;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use model_map::name::ModelName;
use rand::Rng;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::errors::{openai_writer_response, ApiError, OpenAiError};
use crate::generation::{resolve, EmptyName, Generation, Missing};
use crate::gojson::{decode, str_field, Kind};
use crate::models::Model;
use crate::prompt::Prompt;
use crate::routes::manage::find_for_show;
use crate::routes::native::{compute_embeddings, embed_inputs};
use crate::routes::tools;
use crate::state::EmuState;
use crate::stream::{streamed, SSE_CT};

type Shared = State<Arc<EmuState>>;

/// `openai.StreamOptions`.
const STREAM_OPTIONS: Kind = Kind::Struct("openai.StreamOptions", &[("include_usage", Kind::Bool)]);

/// `openai.Message` (no `UnmarshalJSON` of its own, unlike `api.Message`).
const MESSAGE: Kind = Kind::Struct(
    "openai.Message",
    &[
        ("role", Kind::Str),
        ("content", Kind::Any),
        ("reasoning", Kind::Str),
        ("tool_calls", tools::OPENAI_TOOL_CALLS),
        ("name", Kind::Str),
        ("tool_call_id", Kind::Str),
    ],
);

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// `max_completion_tokens`, else `max_tokens`.
fn max_tokens(req: &Map<String, Value>) -> Option<u64> {
    req.get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| req.get("max_tokens").and_then(Value::as_u64))
}

fn include_usage(req: &Map<String, Value>) -> bool {
    req.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

struct Common {
    raw_model: String,
    stream: bool,
    gen: Generation,
    id: String,
    with_usage: bool,
}

async fn begin(
    state: &Arc<EmuState>,
    req: &Map<String, Value>,
    prompt: Prompt,
    what: &str,
    prefix: &str,
    start: Instant,
) -> Result<Common, ApiError> {
    let raw_model = str_field(req, "model").to_string();
    let model = resolve(state, &raw_model, EmptyName::Required, Missing::Quoted)?;
    if model.embedding {
        return Err(ApiError::bad_request(format!(
            "{raw_model:?} does not support {what}"
        )));
    }
    let gen = Generation::start(state, &model, None, max_tokens(req), prompt, start).await?;
    Ok(Common {
        raw_model,
        stream: req.get("stream").and_then(Value::as_bool).unwrap_or(false),
        gen,
        id: format!("{prefix}-{}", rand::rng().random_range(0..999)),
        with_usage: include_usage(req),
    })
}

/// The OpenAI middleware binds without the native handlers' EOF check,
/// so an empty body reports Go's bare `EOF`.
fn decode_v1(
    body: &[u8],
    type_name: &str,
    fields: &[(&str, Kind)],
) -> Result<Map<String, Value>, OpenAiError> {
    if body
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        return Err(ApiError::bad_request("EOF").openai_middleware());
    }
    decode(body, type_name, fields).map_err(ApiError::openai_middleware)
}

/// The content checks of `openai.FromChatRequest`: a string, or an array
/// of typed parts; anything else only beside tool calls.
fn check_message_contents(messages: &[Value]) -> Result<(), ApiError> {
    let bad = || ApiError::bad_request("invalid message format");
    for msg in messages {
        match msg.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => {
                for part in parts {
                    let Some(part) = part.as_object() else {
                        return Err(bad());
                    };
                    let ok = match part.get("type").and_then(Value::as_str) {
                        Some("text") => part.get("text").is_some_and(Value::is_string),
                        Some("image_url") => match part.get("image_url") {
                            Some(Value::Object(u)) => u.get("url").is_some_and(Value::is_string),
                            Some(Value::String(_)) => true,
                            _ => false,
                        },
                        Some("input_audio") => {
                            part.get("input_audio").is_some_and(Value::is_object)
                        }
                        _ => false,
                    };
                    if !ok {
                        return Err(bad());
                    }
                }
            }
            _ if msg.get("tool_calls").is_some_and(|t| !t.is_null()) => {}
            other => {
                // Go's `%T` of what `content` decoded to.
                let go_type = match other {
                    None | Some(Value::Null) => "<nil>",
                    Some(Value::Bool(_)) => "bool",
                    Some(Value::Number(_)) => "float64",
                    _ => "map[string]interface {}",
                };
                return Err(ApiError::bad_request(format!(
                    "invalid message content type: {go_type}"
                )));
            }
        }
    }
    Ok(())
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(State(state): Shared, body: Bytes) -> Result<Response, OpenAiError> {
    let start = Instant::now();
    let req = decode_v1(
        &body,
        "openai.ChatCompletionRequest",
        &[
            ("model", Kind::Str),
            ("messages", Kind::List("[]openai.Message", &MESSAGE)),
            ("stream", Kind::Bool),
            ("stream_options", STREAM_OPTIONS),
            ("max_tokens", Kind::Int),
            ("seed", Kind::Int),
            ("stop", Kind::Any),
            ("temperature", Kind::Float),
            ("frequency_penalty", Kind::Float),
            ("presence_penalty", Kind::Float),
            ("top_p", Kind::Float),
            ("response_format", tools::RESPONSE_FORMAT),
            ("tools", tools::OPENAI_TOOLS),
            ("reasoning", tools::REASONING),
            ("reasoning_effort", Kind::Str),
            ("logprobs", Kind::Bool),
            ("top_logprobs", Kind::Int),
        ],
    )?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if messages.is_empty() {
        return Err(ApiError::bad_request("[] is too short - 'messages'").openai_middleware());
    }
    check_message_contents(&messages).map_err(ApiError::openai_middleware)?;
    let prompt = Prompt::chat(&messages);
    let mut c = begin(&state, &req, prompt, "chat", "chatcmpl", start).await?;
    let created = unix_now();
    if !c.stream {
        let text = c.gen.run_to_end().await;
        let body = json!({
            "id": c.id, "object": "chat.completion", "created": created, "model": c.raw_model,
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": c.gen.done_reason()}],
            "usage": usage(c.gen.prompt_tokens, c.gen.eval_count()),
        });
        return Ok(openai_writer_response(StatusCode::OK, &body));
    }
    let (mut tx, resp) = streamed(SSE_CT, state.faults().cut_stream);
    tokio::spawn(async move {
        let chunk = |choices: Value| {
            json!({"id": c.id, "object": "chat.completion.chunk", "created": created, "model": c.raw_model,
                   "system_fingerprint": "fp_ollama", "choices": choices})
        };
        let mut first = true;
        while let Some(t) = c.gen.next_token().await {
            let delta = if first {
                json!({"role": "assistant", "content": t})
            } else {
                json!({"content": t})
            };
            first = false;
            if !tx
                .event(&chunk(
                    json!([{"index": 0, "delta": delta, "finish_reason": null}]),
                ))
                .await
            {
                return;
            }
        }
        let finish =
            chunk(json!([{"index": 0, "delta": {}, "finish_reason": c.gen.done_reason()}]));
        if !tx.event(&finish).await {
            return;
        }
        if c.with_usage {
            let mut u = chunk(json!([]));
            if let Some(obj) = u.as_object_mut() {
                obj.insert(
                    "usage".into(),
                    usage(c.gen.prompt_tokens, c.gen.eval_count()),
                );
            }
            if !tx.event(&u).await {
                return;
            }
        }
        tx.send("data: [DONE]\n\n").await;
    });
    Ok(resp)
}

/// `POST /v1/completions`.
pub async fn completions(State(state): Shared, body: Bytes) -> Result<Response, OpenAiError> {
    let start = Instant::now();
    let req = decode_v1(
        &body,
        "openai.CompletionRequest",
        &[
            ("model", Kind::Str),
            ("prompt", Kind::Str),
            ("frequency_penalty", Kind::Float32),
            ("max_tokens", Kind::Int),
            ("presence_penalty", Kind::Float32),
            ("seed", Kind::Int),
            ("stop", Kind::Any),
            ("stream", Kind::Bool),
            ("stream_options", STREAM_OPTIONS),
            ("temperature", Kind::Float32),
            ("top_p", Kind::Float32),
            ("suffix", Kind::Str),
            ("logprobs", Kind::Int),
        ],
    )?;
    let prompt = match req.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    let mut c = begin(
        &state,
        &req,
        Prompt::generate("", &prompt),
        "generate",
        "cmpl",
        start,
    )
    .await?;
    let created = unix_now();
    if !c.stream {
        let text = c.gen.run_to_end().await;
        let body = json!({
            "id": c.id, "object": "text_completion", "created": created, "model": c.raw_model,
            "system_fingerprint": "fp_ollama",
            "choices": [{"text": text, "index": 0, "finish_reason": c.gen.done_reason()}],
            "usage": usage(c.gen.prompt_tokens, c.gen.eval_count()),
        });
        return Ok(openai_writer_response(StatusCode::OK, &body));
    }
    let (mut tx, resp) = streamed(SSE_CT, state.faults().cut_stream);
    tokio::spawn(async move {
        let chunk = |choices: Value| {
            json!({"id": c.id, "object": "text_completion", "created": created, "model": c.raw_model,
                   "system_fingerprint": "fp_ollama", "choices": choices})
        };
        while let Some(t) = c.gen.next_token().await {
            if !tx
                .event(&chunk(
                    json!([{"text": t, "index": 0, "finish_reason": null}]),
                ))
                .await
            {
                return;
            }
        }
        let finish = chunk(json!([{"text": "", "index": 0, "finish_reason": c.gen.done_reason()}]));
        if !tx.event(&finish).await {
            return;
        }
        if c.with_usage {
            let mut u = chunk(json!([]));
            if let Some(obj) = u.as_object_mut() {
                obj.insert(
                    "usage".into(),
                    usage(c.gen.prompt_tokens, c.gen.eval_count()),
                );
            }
            if !tx.event(&u).await {
                return;
            }
        }
        tx.send("data: [DONE]\n\n").await;
    });
    Ok(resp)
}

/// `POST /v1/embeddings`.
pub async fn embeddings(State(state): Shared, body: Bytes) -> Result<Response, OpenAiError> {
    let start = Instant::now();
    let req = decode_v1(
        &body,
        "openai.EmbedRequest",
        &[
            ("input", Kind::Any),
            ("model", Kind::Str),
            ("dimensions", Kind::Int),
            ("encoding_format", Kind::Str),
        ],
    )?;
    let format = str_field(&req, "encoding_format");
    if !format.is_empty()
        && !format.eq_ignore_ascii_case("float")
        && !format.eq_ignore_ascii_case("base64")
    {
        return Err(ApiError::bad_request(format!(
            "Invalid value for 'encoding_format' = {format}. Supported values: ['float', 'base64']."
        ))
        .openai_middleware());
    }
    let inputs = match req.get("input") {
        Some(Value::String(s)) if s.is_empty() => vec![String::new()],
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request("invalid input").openai_middleware())
        }
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(ApiError::bad_request("invalid input").openai_middleware())
        }
        other => embed_inputs(other)?,
    };
    let raw_model = str_field(&req, "model");
    let model = resolve(&state, raw_model, EmptyName::Required, Missing::TryPulling)?;
    let dims = req
        .get("dimensions")
        .and_then(Value::as_u64)
        .filter(|d| *d > 0)
        .unwrap_or(8) as usize;
    let (vectors, gen) = compute_embeddings(&state, &model, None, &inputs, dims, start).await?;
    let base64 = str_field(&req, "encoding_format").eq_ignore_ascii_case("base64");
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                json!(f32s_base64(&v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "embedding": embedding, "index": i})
        })
        .collect();
    let body = json!({
        "object": "list", "data": data, "model": raw_model,
        "usage": {"prompt_tokens": gen.prompt_tokens, "total_tokens": gen.prompt_tokens},
    });
    Ok(openai_writer_response(StatusCode::OK, &body))
}

/// Little-endian `f32`s in standard base64, as OpenAI's
/// `encoding_format: "base64"` (the Python client's default) expects.
fn f32s_base64(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            *chunk.first().unwrap_or(&0),
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(
                    *ALPHABET
                        .get((n >> (18 - 6 * i)) as usize & 63)
                        .unwrap_or(&b'='),
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn model_object(m: &Model) -> Value {
    let name = m.display();
    json!({"id": name, "object": "model", "created": m.modified_at.timestamp(), "owned_by": m.name.namespace})
}

/// `GET /v1/models`: `data` is null with no models, as in Ollama.
pub async fn list_models(State(state): Shared) -> Response {
    let data: Vec<Value> = state
        .models()
        .newest_first()
        .into_iter()
        .map(model_object)
        .collect();
    let data = if data.is_empty() {
        Value::Null
    } else {
        Value::Array(data)
    };
    openai_writer_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

/// `GET /v1/models/:model`.
pub async fn get_model(
    State(state): Shared,
    LossyParam(model): LossyParam,
) -> Result<Response, OpenAiError> {
    let m = find_for_show(&state, &model)?;
    let owned_by = ModelName::parse(&model)
        .map(|n| n.namespace)
        .unwrap_or_default();
    let body = json!({"id": model, "object": "model", "created": m.modified_at.timestamp(), "owned_by": owned_by});
    Ok(openai_writer_response(StatusCode::OK, &body))
}
