//! The `/_emu/*` control surface that tests use to shape an instance:
//! models, registry, live settings, faults and counters.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use model_map::name::ModelName;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{normalize_digest, ModelSpec};
use crate::duration::KeepAlive;
use crate::errors::{json_response, ApiError};
use crate::faults::{Applied, FaultRequest};
use crate::models::Model;
use crate::state::EmuState;

type Shared = State<Arc<EmuState>>;

/// The control routes.
pub fn routes() -> Router<Arc<EmuState>> {
    Router::new()
        .route("/_emu/model", post(add_model))
        .route("/_emu/remove", post(remove))
        .route("/_emu/wipe", post(wipe))
        .route("/_emu/digest", post(set_digest))
        .route("/_emu/load", post(load))
        .route("/_emu/unload", post(unload))
        .route("/_emu/registry", post(registry))
        .route("/_emu/config", post(config))
        .route("/_emu/fault", post(fault))
        .route("/_emu/stats", get(stats))
        .route("/_emu/reset_stats", post(reset_stats))
}

fn ok() -> Response {
    json_response(StatusCode::OK, &json!({}))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn name_of(raw: &str) -> Result<ModelName, ApiError> {
    ModelName::parse(raw).map_err(|e| ApiError::bad_request(format!("{e}: {raw:?}")))
}

fn digest_of(raw: &str) -> Result<String, ApiError> {
    normalize_digest(raw).ok_or_else(|| {
        ApiError::bad_request(format!("invalid digest {raw:?}: want 64 hex characters"))
    })
}

async fn add_model(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let spec: ModelSpec = parse(&body)?;
    name_of(&spec.name)?;
    if let Some(d) = &spec.digest {
        digest_of(d)?;
    }
    let model = Model::from_spec(&spec, state.now())
        .ok_or_else(|| ApiError::bad_request("invalid model"))?;
    state.models().insert(model.clone());
    if spec.loaded {
        state.sched.force_load(&model, None, state.settings());
    }
    Ok(ok())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
    #[serde(default)]
    keep_alive: Option<Value>,
}

async fn remove(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let b: NameBody = parse(&body)?;
    let key = name_of(&b.name)?.key();
    if state.models().remove(&key).is_none() {
        return Err(ApiError::not_found(format!("model {:?} not found", b.name)));
    }
    state.sched.unload(&key);
    Ok(ok())
}

async fn wipe(State(state): Shared) -> Response {
    state.models().clear();
    state.sched.unload_all();
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DigestBody {
    name: String,
    #[serde(default)]
    digest: Option<String>,
}

async fn set_digest(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let b: DigestBody = parse(&body)?;
    let key = name_of(&b.name)?.key();
    let digest = digest_of(b.digest.as_deref().unwrap_or(""))?;
    match state.models().get_mut(&key) {
        Some(m) => m.digest = digest,
        None => return Err(ApiError::not_found(format!("model {:?} not found", b.name))),
    }
    Ok(ok())
}

async fn load(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let b: NameBody = parse(&body)?;
    let name = name_of(&b.name)?;
    let keep_alive = match &b.keep_alive {
        Some(v) => KeepAlive::from_json(v).map_err(ApiError::bad_request)?,
        None => None,
    };
    let model = state
        .find(&name)
        .ok_or_else(|| ApiError::not_found(format!("model {:?} not found", b.name)))?;
    if !state.sched.force_load(&model, keep_alive, state.settings()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no room: every loaded model is busy",
        ));
    }
    Ok(ok())
}

async fn unload(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let b: NameBody = parse(&body)?;
    state.sched.unload(&name_of(&b.name)?.key());
    Ok(ok())
}

/// `digest: null` (or absent) makes a pull of the name fail as unknown.
async fn registry(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let b: DigestBody = parse(&body)?;
    let key = name_of(&b.name)?.key();
    let digest = b.digest.as_deref().map(digest_of).transpose()?;
    state.models().set_registry(key, digest);
    Ok(ok())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    load_time_ms: Option<u64>,
    tokens_per_second: Option<f64>,
    prompt_rate: Option<f64>,
    num_parallel: Option<u32>,
    max_queue: Option<u32>,
    max_loaded_models: Option<u32>,
    response_tokens: Option<u32>,
    pull_time_ms: Option<u64>,
    keep_alive: Option<Value>,
}

async fn config(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let b: ConfigBody = parse(&body)?;
    let bad_rate = |r: Option<f64>| r.is_some_and(|r| !(r.is_finite() && r > 0.0));
    if bad_rate(b.tokens_per_second) || bad_rate(b.prompt_rate) {
        return Err(ApiError::bad_request(
            "tokens_per_second and prompt_rate must be positive numbers",
        ));
    }
    if b.num_parallel == Some(0) || b.max_loaded_models == Some(0) {
        return Err(ApiError::bad_request(
            "num_parallel and max_loaded_models must be at least 1",
        ));
    }
    let keep_alive = match &b.keep_alive {
        Some(v) => KeepAlive::from_json(v).map_err(ApiError::bad_request)?,
        None => None,
    };
    state.update_config(|c| {
        if let Some(v) = b.load_time_ms {
            c.load_time = Duration::from_millis(v);
        }
        if let Some(v) = b.tokens_per_second {
            c.tokens_per_second = v;
        }
        if let Some(v) = b.prompt_rate {
            c.prompt_rate = v;
        }
        if let Some(v) = b.num_parallel {
            c.num_parallel = v;
        }
        if let Some(v) = b.max_queue {
            c.max_queue = v;
        }
        if let Some(v) = b.max_loaded_models {
            c.max_loaded_models = v;
        }
        if let Some(v) = b.response_tokens {
            c.response_tokens = v;
        }
        if let Some(v) = b.pull_time_ms {
            c.pull_time = Duration::from_millis(v);
        }
        if let Some(v) = keep_alive {
            c.keep_alive = v;
        }
    });
    Ok(ok())
}

async fn fault(State(state): Shared, body: Bytes) -> Result<Response, ApiError> {
    let req: FaultRequest = parse(&body)?;
    let mut result = Ok(Applied::Done);
    state.faults.send_modify(|f| result = f.apply(req));
    match result.map_err(ApiError::bad_request)? {
        Applied::Done => {}
        Applied::Refuse(d) => state.refuse_for(d).await,
    }
    Ok(ok())
}

async fn stats(State(state): Shared) -> Response {
    json_response(StatusCode::OK, &state.stats())
}

async fn reset_stats(State(state): Shared) -> Response {
    state.reset_stats();
    ok()
}
