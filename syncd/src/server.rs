//! The publishing HTTP API: the map (with `ETag` and long poll), instance
//! status, health probes and metrics.
//!
//! - `GET /v1/map[?since=<id>&wait=<s>]`: 200 with the map and
//!   `etag: "<id>"`; 304 when `since` (or `If-None-Match`) is the current
//!   id, after waiting up to `wait` seconds (at most 60) for a change; 503
//!   before the first full poll round (a request with `wait` is held until
//!   the first map, or 503 at the end of the wait). A `since` this daemon
//!   never published (another replica's map, perhaps newer) is held too,
//!   until this daemon's map changes, so filters polling several replicas
//!   in turn do not swing between their maps while one lags a poll behind.
//!   Unless the client also sends `at=<ms>`, the publish time it got with
//!   its map (`x-ollama-lb-map-time`), and this daemon's map is at least as
//!   new: then it answers at once. So a restarted daemon, whose maps are all
//!   newer than the one a filter kept from its previous life, is installed
//!   without waiting for its next change. With `fresh=<ms>` (the
//!   `x-ollama-lb-map-fresh` the client got), a map of the same id whose
//!   exact instance entries are newer (see `Published::fresh_ms`) is
//!   answered too; older ones never are, so replicas do not trade maps.
//! - `POST /v3/discovery:endpoints`: the fleet cluster's endpoints for
//!   Envoy (EDS over REST-JSON, see [`crate::eds`]).
//! - `GET /v1/instances`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
//!
//! The status page and `/v1/status` are in [`crate::page`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::fleet::{Fleet, InstanceReport, Published};

/// Longest accepted long-poll wait; larger values are clamped.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

const NOT_READY: &str = "model map not ready: first poll round not finished";

#[derive(Clone)]
struct AppState {
    fleet: Arc<Fleet>,
    /// Becomes true on shutdown, ending held long polls.
    stopping: watch::Receiver<bool>,
}

/// The router over `fleet`; long polls end (304) once `stopping` is true.
pub fn router(fleet: Arc<Fleet>, stopping: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/v1/map", get(get_map))
        .route("/v1/instances", get(get_instances))
        .route(
            "/v3/discovery:endpoints",
            axum::routing::post(discover_endpoints),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AppState { fleet, stopping })
}

#[derive(Debug, Deserialize)]
struct MapQuery {
    since: Option<String>,
    /// Seconds to hold the request while the map is still `since`.
    wait: Option<f64>,
    /// When the client's map was published (`x-ollama-lb-map-time`), ms.
    at: Option<u64>,
    /// How fresh the client's entries are (`x-ollama-lb-map-fresh`), ms:
    /// with it, a map of the same id with newer entries is news too.
    fresh: Option<u64>,
}

/// Response header with [`Published::published_ms`].
pub const MAP_TIME_HEADER: &str = "x-ollama-lb-map-time";

/// Response header with [`Published::fresh_ms`].
pub const MAP_FRESH_HEADER: &str = "x-ollama-lb-map-fresh";

/// The long-poll wait asked for, clamped to [`MAX_WAIT`] before it becomes
/// a `Duration` (any finite or infinite, positive or negative number).
fn clamp_wait(wait: Option<f64>) -> Duration {
    wait.filter(|w| *w > 0.0)
        .and_then(|w| Duration::try_from_secs_f64(w.min(MAX_WAIT.as_secs_f64())).ok())
        .unwrap_or(Duration::ZERO)
}

/// An answer in Ollama's error shape.
fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    (status, Json(body)).into_response()
}

fn not_ready() -> Response {
    let body = serde_json::json!({ "error": NOT_READY });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

async fn get_map(
    State(state): State<AppState>,
    query: Result<Query<MapQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let mut rx = state.fleet.subscribe();
    let current = rx.borrow_and_update().clone();
    // `since` is the id the client holds, when it is the current one;
    // `None` here means there is no map yet.
    let wait = clamp_wait(q.wait);
    let since = match &current {
        None => None,
        Some(current) => {
            let since = q.since.or_else(|| if_none_match(&headers, &current.map.id));
            match since {
                Some(since) if since == current.map.id && fresher(current, q.fresh) => {
                    return map_response(current);
                }
                Some(since) if since == current.map.id => Some(since),
                Some(foreign)
                    if !wait.is_zero()
                        && !foreign.is_empty()
                        && !state.fleet.published_before(&foreign)
                        && q.at.is_none_or(|at| at > current.published_ms) =>
                {
                    return hold_foreign(&state, rx, current, foreign, wait).await;
                }
                // The client is behind this daemon: the current map now.
                _ => return map_response(current),
            }
        }
    };
    let unchanged = || match &since {
        Some(since) => not_modified(since),
        None => not_ready(),
    };
    if wait.is_zero() {
        return unchanged();
    }
    let mut stopping = state.stopping.clone();
    let changed = async {
        rx.wait_for(|p| {
            p.as_ref()
                .is_some_and(|p| since.as_deref() != Some(p.map.id.as_str()) || fresher(p, q.fresh))
        })
        .await
        .ok()
        .and_then(|p| p.clone())
    };
    tokio::select! {
        next = tokio::time::timeout(wait, changed) => match next {
            Ok(Some(next)) => map_response(&next),
            _ => unchanged(),
        },
        _ = stopping.wait_for(|s| *s) => unchanged(),
    }
}

/// Whether `p`'s exact entries are newer than a client's of the same id
/// (only a client that says how fresh its entries are cares).
fn fresher(p: &Published, client_fresh: Option<u64>) -> bool {
    client_fresh.is_some_and(|f| p.fresh_ms > f)
}

/// A long poll whose `since` this daemon never published: most likely the
/// map of another replica that polled the fleet a moment earlier. Answering
/// at once with this daemon's map would swap the client back to an older
/// view, and the next poll (to the other replica) forward again. Instead
/// the poll waits until this daemon's map changes to something other than
/// `foreign`. If `wait` ends first, the client gets this daemon's map after
/// all (304 if it has become `foreign`): replicas that keep disagreeing
/// cost one swap per `wait`, and a map from a replica that is gone is
/// replaced within one `wait`.
async fn hold_foreign(
    state: &AppState,
    mut rx: crate::fleet::MapReceiver,
    current: &Arc<Published>,
    foreign: String,
    wait: Duration,
) -> Response {
    let start = current.map.id.clone();
    let mut stopping = state.stopping.clone();
    let changed = async {
        rx.wait_for(|p| {
            p.as_ref()
                .is_some_and(|p| p.map.id != start && p.map.id != foreign)
        })
        .await
        .ok()
        .and_then(|p| p.clone())
    };
    let next = tokio::select! {
        next = tokio::time::timeout(wait, changed) => next.ok().flatten(),
        _ = stopping.wait_for(|s| *s) => None,
    };
    match next.or_else(|| state.fleet.current()) {
        Some(p) if p.map.id == foreign => not_modified(&foreign),
        Some(p) => map_response(&p),
        None => not_ready(),
    }
}

/// The current id when `If-None-Match` lists it (or `*`), else the first
/// listed tag, so a stale tag gets the map at once.
fn if_none_match(headers: &HeaderMap, current: &str) -> Option<String> {
    let value = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    let tags: Vec<&str> = value
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
        .collect();
    if tags.iter().any(|t| *t == current || *t == "*") {
        Some(current.to_string())
    } else {
        tags.first().map(|t| t.to_string())
    }
}

fn etag(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{id}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

fn map_response(p: &Published) -> Response {
    (
        [
            (header::ETAG, etag(&p.map.id)),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static(MAP_TIME_HEADER),
                HeaderValue::from(p.published_ms),
            ),
            (
                header::HeaderName::from_static(MAP_FRESH_HEADER),
                HeaderValue::from(p.fresh_ms),
            ),
        ],
        p.json.clone(),
    )
        .into_response()
}

fn not_modified(id: &str) -> Response {
    (StatusCode::NOT_MODIFIED, [(header::ETAG, etag(id))]).into_response()
}

/// Body of `GET /v1/instances`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstancesBody {
    /// True once every instance has been polled once.
    pub ready: bool,
    /// Id of the published map, once there is one.
    pub map_id: Option<String>,
    pub instances: Vec<InstanceReport>,
}

async fn get_instances(State(state): State<AppState>) -> Json<InstancesBody> {
    let current = state.fleet.current();
    Json(InstancesBody {
        ready: current.is_some(),
        map_id: current.map(|p| p.map.id.clone()),
        instances: state.fleet.reports(),
    })
}

/// Always 200: Envoy's REST subscription logs any other status (304
/// included) as a failed update, and skips a response whose
/// `version_info` it already has.
async fn discover_endpoints(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Response {
    // A gateway is its node id and its address (replicas share a node id).
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let Ok(body) = axum::body::to_bytes(request.into_body(), 1 << 20).await else {
        let message = "a discovery request over 1 MiB";
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, message);
    };
    let poll = crate::eds::read_request(&body);
    let gateway = format!("{} {peer}", poll.node);
    Json(state.fleet.eds_poll(&gateway, &poll.version, &poll.cluster)).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.fleet.current() {
        Some(_) => "ready\n".into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, format!("{NOT_READY}\n")).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        crate::metrics::render(
            state.fleet.slots(),
            state.fleet.current(),
            state.fleet.map_changes(),
        ),
    )
        .into_response()
}
