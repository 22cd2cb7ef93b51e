//! Transfers: `/api/pull` (progress over the configured pull time, then
//! the model exists), `/api/push` and `/api/create`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use model_map::name::ModelName;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::errors::{json_response, ApiError};
use crate::generation::{resolve, EmptyName, Missing};
use crate::gojson::{decode, str_field, Kind};
use crate::models::Model;
use crate::routes::manage::model_or_name;
use crate::state::EmuState;
use crate::stream::{streamed, ChunkSender, NDJSON_CT};

type Shared = State<Arc<EmuState>>;

/// What a pull or push stream ended with.
enum Outcome {
    Failed(String),
    /// The client went away or the stream was cut.
    Gone,
}

/// Sends progress lines and applies the `fail_pull` fault.
struct Progress {
    tx: Option<ChunkSender>,
    lines: usize,
    fail_after: Option<usize>,
}

impl Progress {
    /// Emits one line; `Err` with the outcome when the pull must stop.
    async fn line(&mut self, v: Value) -> Result<(), Outcome> {
        if self.fail_after.is_some_and(|n| self.lines >= n) {
            return Err(Outcome::Failed(
                "pull model: emulated fault: connection reset by peer".into(),
            ));
        }
        self.lines += 1;
        if let Some(tx) = &mut self.tx {
            if !tx.line(&v).await {
                return Err(Outcome::Gone);
            }
        }
        Ok(())
    }
}

async fn run_pull(
    state: &Arc<EmuState>,
    name: &ModelName,
    p: &mut Progress,
) -> Result<(), Outcome> {
    let key = name.key();
    p.line(json!({"status": "pulling manifest"})).await?;
    let Some(digest) = state.models().registry_digest(&key) else {
        return Err(Outcome::Failed(
            "pull model manifest: file does not exist".into(),
        ));
    };
    let existing = state.models().get(&key).cloned();
    let mut model = match existing.clone() {
        Some(m) => m,
        None => Model::from_spec(
            &crate::config::ModelSpec {
                name: name.display_shortest(),
                digest: Some(digest.clone()),
                ..Default::default()
            },
            state.now(),
        )
        .ok_or_else(|| Outcome::Failed("invalid model name".into()))?,
    };
    model.digest = digest;
    let layer = model.layer_digest();
    let total = model.size;
    let status = format!("pulling {}", &layer[..12]);
    let layer_digest = format!("sha256:{layer}");
    let have = existing.is_some_and(|m| m.digest == model.digest);
    if have {
        p.line(
            json!({"status": status, "digest": layer_digest, "total": total, "completed": total}),
        )
        .await?;
    } else {
        const STEPS: u64 = 5;
        let step = state.config().pull_time / STEPS as u32;
        for i in 1..=STEPS {
            tokio::time::sleep(step).await;
            let completed = total * i / STEPS;
            p.line(json!({"status": status, "digest": layer_digest, "total": total, "completed": completed}))
                .await?;
        }
    }
    // The small layers after the weights (template, params, license):
    // one here, fetched at once.
    let params = hex::encode(Sha256::digest(
        format!("params:{}", model.digest).as_bytes(),
    ));
    let params_total = 96 + (model.size % 400);
    p.line(json!({"status": format!("pulling {}", &params[..12]), "digest": format!("sha256:{params}"), "total": params_total, "completed": params_total}))
        .await?;
    p.line(json!({"status": "verifying sha256 digest"})).await?;
    p.line(json!({"status": "writing manifest"})).await?;
    model.modified_at = state.now();
    state.models().insert(model);
    p.line(json!({"status": "success"})).await
}

/// `POST /api/pull`.
pub async fn pull(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let req = decode(
        &body,
        "PullRequest",
        &[
            ("model", Kind::Str),
            ("name", Kind::Str),
            ("insecure", Kind::Bool),
            ("stream", Kind::Bool),
        ],
    )?;
    let raw = model_or_name(&req);
    if !raw.trim().is_empty() {
        state.count_model(&raw);
    }
    let name = ModelName::parse(&raw).map_err(|_| ApiError::bad_request("invalid model name"))?;
    let fail_after = state.faults().fail_pull;
    if !req.get("stream").and_then(Value::as_bool).unwrap_or(true) {
        let mut p = Progress {
            tx: None,
            lines: 0,
            fail_after,
        };
        return match run_pull(&state, &name, &mut p).await {
            Ok(()) => Ok(json_response(StatusCode::OK, &json!({"status": "success"}))),
            Err(Outcome::Failed(msg)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg)),
            Err(_) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "request canceled",
            )),
        };
    }
    let (tx, resp) = streamed(NDJSON_CT, state.faults().cut_stream);
    tokio::spawn(async move {
        let mut p = Progress {
            tx: Some(tx),
            lines: 0,
            fail_after,
        };
        if let Err(Outcome::Failed(msg)) = run_pull(&state, &name, &mut p).await {
            if let Some(tx) = &mut p.tx {
                tx.line(&json!({ "error": msg })).await;
            }
        }
    });
    Ok(resp)
}

/// `POST /api/push`: progress lines for a model on disk.
pub async fn push(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let req = decode(
        &body,
        "PushRequest",
        &[
            ("model", Kind::Str),
            ("name", Kind::Str),
            ("insecure", Kind::Bool),
            ("stream", Kind::Bool),
        ],
    )?;
    let raw = model_or_name(&req);
    let model = resolve(&state, &raw, EmptyName::Required, Missing::TryPulling)?;
    let layer = model.layer_digest();
    let lines = vec![
        json!({"status": "retrieving manifest"}),
        json!({"status": format!("pushing {}", &layer[..12]), "digest": format!("sha256:{layer}"), "total": model.size, "completed": model.size}),
        json!({"status": "pushing manifest"}),
        json!({"status": "success"}),
    ];
    respond_lines(&state, &req, lines).await
}

/// Streams fixed progress lines, or answers only the last with `stream:false`.
async fn respond_lines(
    state: &EmuState,
    req: &serde_json::Map<String, Value>,
    lines: Vec<Value>,
) -> Result<Response, ApiError> {
    if !req.get("stream").and_then(Value::as_bool).unwrap_or(true) {
        let last = lines
            .last()
            .cloned()
            .unwrap_or_else(|| json!({"status": "success"}));
        return Ok(json_response(StatusCode::OK, &last));
    }
    let (mut tx, resp) = streamed(NDJSON_CT, state.faults().cut_stream);
    tokio::spawn(async move {
        for l in &lines {
            if !tx.line(l).await {
                return;
            }
        }
    });
    Ok(resp)
}

/// The blob digests of a create's `files` (`{"model.gguf": "sha256:…"}`),
/// each of which must have been uploaded (`POST /api/blobs/…`) first, as
/// Ollama opens each blob; sorted, for a digest that does not depend on
/// JSON key order.
fn uploaded_files(
    state: &EmuState,
    req: &serde_json::Map<String, Value>,
) -> Result<Vec<String>, ApiError> {
    let Some(Value::Object(files)) = req.get("files") else {
        return Ok(Vec::new());
    };
    let mut digests = Vec::new();
    for (file, digest) in files {
        let digest = digest.as_str().unwrap_or_default().to_ascii_lowercase();
        if file.starts_with('/') || file.contains("..") {
            return Err(ApiError::bad_request("file path must be relative"));
        }
        let Some(hex) = digest.strip_prefix("sha256:") else {
            return Err(ApiError::bad_request("invalid digest format"));
        };
        if !state.models().has_blob(&digest) {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("open /root/.ollama/models/blobs/sha256-{hex}: no such file or directory"),
            ));
        }
        digests.push(digest);
    }
    digests.sort();
    Ok(digests)
}

/// `POST /api/create`: copies `from` (or makes a fresh model, from
/// uploaded `files` when given) under a new name.
pub async fn create(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let req = decode(
        &body,
        "CreateRequest",
        &[
            ("model", Kind::Str),
            ("name", Kind::Str),
            ("from", Kind::Str),
            ("files", Kind::Object("map[string]string")),
            ("stream", Kind::Bool),
        ],
    )?;
    let raw = model_or_name(&req);
    if raw.trim().is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    let name = ModelName::parse(&raw).map_err(|_| ApiError::bad_request("invalid model name"))?;
    let from = str_field(&req, "from");
    let files = uploaded_files(&state, &req)?;
    let mut model = if from.is_empty() {
        Model::from_spec(
            &crate::config::ModelSpec {
                name: raw.clone(),
                ..Default::default()
            },
            state.now(),
        )
        .ok_or_else(|| ApiError::bad_request("invalid model name"))?
    } else {
        resolve(&state, from, EmptyName::Required, Missing::TryPulling)?
    };
    model.key = name.key();
    model.name = name;
    model.digest = hex::encode(Sha256::digest(
        format!("create:{}:{}:{}", model.key, model.digest, files.join(",")).as_bytes(),
    ));
    model.modified_at = state.now();
    let layer = model.layer_digest();
    state.models().insert(model);
    let lines = vec![
        json!({"status": format!("using existing layer sha256:{layer}")}),
        json!({"status": "writing manifest"}),
        json!({"status": "success"}),
    ];
    respond_lines(&state, &req, lines).await
}
