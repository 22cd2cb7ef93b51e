//! The HTTP surface: Ollama's routes, the `/_emu` control routes, gin's
//! 404/405 bodies, and the middleware that applies faults and adds
//! `x-emu-instance` to every response.

pub mod gin;
pub mod manage;
pub mod native;
pub mod openai;
pub mod tools;
pub mod transfer;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, head, post};
use axum::Router;

use crate::errors::{json_response, openai_error_body, ApiError};
use crate::hosts::HostCheck;
use crate::scheduler::SchedError;
use crate::state::EmuState;

/// gin's 405 body; also what `HEAD` gets on a GET-only route (gin does
/// not answer HEAD with GET's handler, axum would).
async fn method_not_allowed() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed").into_response()
}

/// The full router over shared state, behind gin's path rules.
pub fn router(state: Arc<EmuState>) -> Router {
    Router::new()
        .fallback_service(routes(state))
        .layer(middleware::from_fn(gin::path_rules))
}

fn routes(state: Arc<EmuState>) -> Router {
    Router::new()
        .route("/", get(native::root))
        .route("/api/version", get(manage::version))
        .route("/api/tags", get(manage::tags))
        .route("/api/ps", get(manage::ps).head(method_not_allowed))
        .route("/api/generate", post(native::generate))
        .route("/api/chat", post(native::chat))
        .route("/api/embed", post(native::embed))
        .route("/api/embeddings", post(native::embeddings))
        .route("/api/show", post(manage::show))
        .route("/api/pull", post(transfer::pull))
        .route("/api/push", post(transfer::push))
        .route("/api/create", post(transfer::create))
        .route("/api/copy", post(manage::copy))
        .route("/api/delete", delete(manage::delete))
        .route(
            "/api/blobs/{digest}",
            head(manage::blob_head).post(manage::blob_post),
        )
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route(
            "/v1/models",
            get(openai::list_models).head(method_not_allowed),
        )
        .route(
            "/v1/models/{model}",
            get(openai::get_model).head(method_not_allowed),
        )
        .merge(crate::control::routes())
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found") })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), emulate))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Drops connections during `refuse`, applies the Host check, counts
/// requests, applies the `status`, `hang` and `slow` faults to non-control
/// routes, and names the instance on every response.
async fn emulate(State(state): State<Arc<EmuState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if state.refusing() {
        return dropped_connection();
    }
    let mut resp = if path.starts_with("/_emu/") {
        next.run(req).await
    } else {
        ollama_middleware(&state, &path, req, next).await
    };
    if let Ok(v) = HeaderValue::from_str(&state.config().name) {
        resp.headers_mut().insert("x-emu-instance", v);
    }
    resp
}

/// Ollama's middleware in its order: CORS, then the Host check, then the
/// handler (with the emulator's faults).
async fn ollama_middleware(
    state: &Arc<EmuState>,
    path: &str,
    req: Request,
    next: Next,
) -> Response {
    let config = state.config();
    let origins = crate::origins::AllowedOrigins::from_ollama_origins(config.origins.as_deref())
        .unwrap_or_else(|_| crate::origins::AllowedOrigins::defaults());
    let extra = match gin::cors(&req, &origins) {
        gin::Cors::Forbidden => return StatusCode::FORBIDDEN.into_response(),
        gin::Cors::Preflight(headers) => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            resp.headers_mut().extend(headers);
            return resp;
        }
        gin::Cors::Normal(headers) => Some(headers),
        gin::Cors::None => None,
    };
    let mut resp = match host_check(state, &config, &req) {
        HostCheck::Forbidden => StatusCode::FORBIDDEN.into_response(),
        HostCheck::Preflight => StatusCode::NO_CONTENT.into_response(),
        HostCheck::Pass => {
            state.count_request(path);
            faulted(state, path, req, next).await
        }
    };
    if let Some(headers) = extra {
        resp.headers_mut().extend(headers);
    }
    resp
}

fn host_check(state: &EmuState, config: &crate::Config, req: &Request) -> HostCheck {
    if !config.host_check || !state.loopback.load(std::sync::atomic::Ordering::Relaxed) {
        return HostCheck::Pass;
    }
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    crate::hosts::check_host(host, req.method() == axum::http::Method::OPTIONS)
}

async fn faulted(state: &Arc<EmuState>, path: &str, req: Request, next: Next) -> Response {
    let faults = state.faults();
    if let Some(code) = faults.status_for(path) {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = if code == 503 {
            SchedError::QueueFull.to_string()
        } else {
            format!("emulated fault: HTTP {code}")
        };
        return if path.starts_with("/v1/") {
            json_response(status, &openai_error_body(status, &message))
        } else {
            ApiError::new(status, message).into_response()
        };
    }
    if faults.hang {
        let mut rx = state.faults.subscribe();
        // Held until the fault is cleared; then answered normally.
        let _ = rx.wait_for(|f| !f.hang).await;
    }
    if let Some(ms) = faults.slow_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    next.run(req).await
}

/// A response whose body fails at once: hyper drops the connection before
/// anything reaches the client.
fn dropped_connection() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<bytes::Bytes, _>(std::io::Error::other("refuse fault"))
    });
    axum::body::Body::from_stream(failing).into_response()
}
