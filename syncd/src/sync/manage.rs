//! The fleet's management API: Ollama's own requests, carried out on every
//! instance that should see them. Envoy sends these here (the filter marks
//! them with [`model_map::FLEET_HEADER`]; the route rewrites `/api/…` to
//! `/v1/fleet/api/…`) unless the client pinned one instance with
//! `x-ollama-instance`. Each answers in Ollama's format:
//!
//! - `POST pull`: every [`targets::pull_targets`], one merged progress
//!   stream ([`super::fleet_pull`]).
//! - `DELETE delete`, `POST copy`: every healthy holder of the model (of
//!   `source`); 404 with Ollama's text when none holds it.
//! - `POST create`: every holder of `from`, or for a model made from
//!   uploaded files, the pull targets of the new name.
//! - `HEAD`/`POST blobs/:digest`: every healthy instance (a blob has no
//!   model name yet); uploads are streamed to each that lacks the blob.
//! - `POST generate`/`chat` (the unload idiom only): every instance where
//!   the model is loaded.
//!
//! A partial failure is an `{"error"}` naming the instances; the others
//! keep what was done. No healthy target: 503.
//!
//! Like Ollama's API, these take no credentials: keep syncd's port as
//! private as the instances' ports.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use model_map::{InstanceState, ModelName};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::executor::Executor;
use super::fleet_pull::{FleetPulls, Renderer};
use super::placement::Placement;
use super::targets;
use crate::fleet::{Fleet, Published};

/// Largest JSON body accepted (create bodies carry Modelfile fields).
const MAX_BODY: usize = 16 << 20;
/// Chunks buffered per upload target before the upload waits for it.
const UPLOAD_QUEUE: usize = 8;
/// Longest wait for one instance to answer a delete, copy, create or unload.
const CALL_LIMIT: Duration = Duration::from_secs(600);

#[derive(Clone)]
struct Manage {
    fleet: Arc<Fleet>,
    exec: Executor,
    placement: Option<Arc<Placement>>,
    pulls: Arc<FleetPulls>,
}

/// The `/v1/fleet/api/…` routes.
pub fn router(fleet: Arc<Fleet>, exec: Executor, placement: Option<Placement>) -> Router {
    Router::new()
        .route("/v1/fleet/api/pull", post(pull))
        .route("/v1/fleet/api/delete", delete(remove))
        .route("/v1/fleet/api/copy", post(copy))
        .route("/v1/fleet/api/create", post(create))
        .route("/v1/fleet/api/generate", post(unload))
        .route("/v1/fleet/api/chat", post(unload))
        .route("/v1/fleet/pulls", axum::routing::get(pulls))
        .route(
            "/v1/fleet/api/blobs/{digest}",
            axum::routing::head(blob_head).post(blob_upload),
        )
        .with_state(Manage {
            fleet,
            exec,
            placement: placement.map(Arc::new),
            pulls: Arc::default(),
        })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    Refusal(status, message.into()).into_response()
}

/// An answer in Ollama's error format: status and `{"error"}` text.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        // Go's c.JSON content type, as Ollama answers.
        (
            self.0,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            Json(json!({ "error": self.1 })),
        )
            .into_response()
    }
}

/// The request's JSON object, or why it is refused.
type Parsed = Result<Map<String, Value>, Refusal>;

async fn read_json(req: Request) -> Parsed {
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, e.to_string()))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        let missing = "missing request body".to_string();
        return Err(Refusal(StatusCode::BAD_REQUEST, missing));
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Refusal(
            StatusCode::BAD_REQUEST,
            "json: cannot unmarshal into Go value of type struct".into(),
        )),
        Err(e) => Err(Refusal(StatusCode::BAD_REQUEST, e.to_string())),
    }
}

fn text<'a>(body: &'a Map<String, Value>, field: &str) -> &'a str {
    body.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// `cmp.Or(req.Model, req.Name)`.
fn model_or_name(body: &Map<String, Value>) -> &str {
    let m = text(body, "model");
    if m.is_empty() {
        text(body, "name")
    } else {
        m
    }
}

fn current(state: &Manage) -> Result<Arc<Published>, Refusal> {
    state.fleet.current().ok_or_else(|| {
        Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "ollama-lb: model map not ready: first poll round not finished".into(),
        )
    })
}

fn no_instance() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "ollama-lb: no healthy Ollama instance",
    )
}

/// `GET /v1/fleet/pulls`: the recent fleet pulls, newest first.
async fn pulls(State(state): State<Manage>) -> Response {
    Json(json!({ "pulls": state.pulls.report() })).into_response()
}

/// `POST /api/pull`.
async fn pull(State(state): State<Manage>, req: Request) -> Response {
    let body = match read_json(req).await {
        Ok(b) => b,
        Err(refused) => return refused.into_response(),
    };
    let Ok(name) = ModelName::parse(model_or_name(&body)) else {
        return error(StatusCode::BAD_REQUEST, "invalid model name");
    };
    let current = match current(&state) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let targets: Vec<String> =
        targets::pull_targets(&current.map, state.placement.as_deref(), &name.key())
            .into_iter()
            .map(|i| i.name.clone())
            .collect();
    if targets.is_empty() {
        return no_instance();
    }
    let mut view = state
        .pulls
        .join_or_start(&state.exec, current, &name, targets);
    if body.get("stream").and_then(Value::as_bool) == Some(false) {
        let done = view
            .wait_for(|v| v.finished)
            .await
            .map(|v| v.failure_text());
        return match done {
            Ok(None) => Json(json!({"status": "success"})).into_response(),
            Ok(Some(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
            Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "fleet pull lost"),
        };
    }
    let lines = futures_util::stream::unfold(
        (view, Renderer::default(), true),
        |(mut view, mut renderer, first)| async move {
            if renderer.done() {
                return None;
            }
            if !first && view.changed().await.is_err() {
                // The pull's task ended without finishing: say so once.
                let mut lost = view.borrow().clone();
                lost.finished = true;
                let lines = renderer.lines(&lost);
                return Some((
                    Ok::<_, std::io::Error>(ndjson(&lines)),
                    (view, renderer, false),
                ));
            }
            let lines = renderer.lines(&view.borrow_and_update());
            Some((Ok(ndjson(&lines)), (view, renderer, false)))
        },
    );
    ndjson_response(Body::from_stream(lines))
}

fn ndjson(lines: &[Value]) -> Bytes {
    let mut out = Vec::new();
    for l in lines {
        out.extend(serde_json::to_vec(l).unwrap_or_default());
        out.push(b'\n');
    }
    Bytes::from(out)
}

fn ndjson_response(body: Body) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        body,
    )
        .into_response()
}

/// What one instance answered: status and body, or why it could not.
type Reply = Result<(u16, Bytes), String>;

/// Sends `body` to `path` on each target at once.
async fn fan_out(
    http: &reqwest::Client,
    targets: &[&InstanceState],
    method: Method,
    path: &str,
    body: &Value,
) -> Vec<(String, Reply)> {
    let calls = targets.iter().map(|t| {
        let req = http
            .request(method.clone(), format!("{}{path}", t.url))
            .json(body);
        async move {
            let reply = tokio::time::timeout(CALL_LIMIT, async {
                let resp = req.send().await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
                Ok((status, bytes))
            })
            .await
            .unwrap_or_else(|_| Err(format!("no answer in {CALL_LIMIT:?}")));
            (t.name.clone(), reply)
        }
    });
    futures_util::future::join_all(calls).await
}

/// Ollama's `{"error"}` text of a reply, or its body.
fn reply_error(reply: &Reply) -> Option<String> {
    match reply {
        Ok((status, _)) if (200..300).contains(status) => None,
        Ok((status, body)) => {
            Some(crate::text::error_message(body).unwrap_or_else(|| format!("HTTP {status}")))
        }
        Err(e) => Some(e.clone()),
    }
}

/// All succeeded: `None`. Else the status to answer (the instances' own
/// when they all agree, else 500) and a message naming each failure.
fn combine(what: &str, replies: &[(String, Reply)]) -> Option<(StatusCode, String)> {
    let failed: Vec<(&str, String, u16)> = replies
        .iter()
        .filter_map(|(name, r)| {
            let status = r.as_ref().map_or(502, |(s, _)| *s);
            reply_error(r).map(|e| (name.as_str(), e, status))
        })
        .collect();
    if failed.is_empty() {
        return None;
    }
    let first = failed.first()?;
    let everywhere = failed.len() == replies.len();
    let status = if everywhere && failed.iter().all(|f| f.2 == first.2) {
        StatusCode::from_u16(first.2).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    if everywhere && failed.iter().all(|f| f.1 == first.1) {
        let on: Vec<&str> = failed.iter().map(|f| f.0).collect();
        return Some((status, format!("{} (on {})", first.1, on.join(", "))));
    }
    let parts: Vec<String> = failed.iter().map(|(n, e, _)| format!("{n}: {e}")).collect();
    let done: Vec<&str> = replies
        .iter()
        .filter(|(_, r)| reply_error(r).is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let mut message = format!("{what} failed on {}", parts.join("; "));
    if !done.is_empty() {
        message.push_str(&format!(" (done on {})", done.join(", ")));
    }
    Some((status, message))
}

/// 200 with an empty body, as Ollama answers delete and copy.
fn empty_ok_or(what: &str, replies: &[(String, Reply)]) -> Response {
    match combine(what, replies) {
        None => StatusCode::OK.into_response(),
        Some((status, message)) => error(status, message),
    }
}

/// `DELETE /api/delete`.
async fn remove(State(state): State<Manage>, req: Request) -> Response {
    let body = match read_json(req).await {
        Ok(b) => b,
        Err(refused) => return refused.into_response(),
    };
    let raw = model_or_name(&body).to_string();
    let Ok(name) = ModelName::parse(&raw) else {
        return error(StatusCode::BAD_REQUEST, format!("name {raw:?} is invalid"));
    };
    let current = match current(&state) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let holders = targets::holders(&current.map, &name.key());
    if holders.is_empty() {
        return error(StatusCode::NOT_FOUND, format!("model '{raw}' not found"));
    }
    tracing::info!(model = %name.key(), on = ?names(&holders), "fleet delete");
    on_holders(
        &state,
        &holders,
        (Method::DELETE, "/api/delete"),
        body,
        "delete",
    )
    .await
}

/// Sends `body` to every holder, waits until the map shows the change,
/// and answers 200 or the combined failure of `what`.
async fn on_holders(
    state: &Manage,
    holders: &[&InstanceState],
    (method, path): (Method, &str),
    body: serde_json::Map<String, Value>,
    what: &str,
) -> Response {
    let replies = fan_out(
        &state.exec.http,
        holders,
        method,
        path,
        &Value::Object(body),
    )
    .await;
    state.fleet.repoll_and_settle().await;
    empty_ok_or(what, &replies)
}

fn names<'a>(instances: &[&'a InstanceState]) -> Vec<&'a str> {
    instances.iter().map(|i| i.name.as_str()).collect()
}

/// `POST /api/copy`.
async fn copy(State(state): State<Manage>, req: Request) -> Response {
    let body = match read_json(req).await {
        Ok(b) => b,
        Err(refused) => return refused.into_response(),
    };
    let (source, destination) = (text(&body, "source"), text(&body, "destination"));
    let Ok(src) = ModelName::parse(source) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("source {source:?} is invalid"),
        );
    };
    if ModelName::parse(destination).is_err() {
        let message = format!("destination {destination:?} is invalid");
        return error(StatusCode::BAD_REQUEST, message);
    }
    let current = match current(&state) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let holders = targets::holders(&current.map, &src.key());
    if holders.is_empty() {
        return error(StatusCode::NOT_FOUND, format!("model {source:?} not found"));
    }
    tracing::info!(source = %src.key(), %destination, on = ?names(&holders), "fleet copy");
    on_holders(&state, &holders, (Method::POST, "/api/copy"), body, "copy").await
}

/// `POST /api/create`: each target is asked with `stream: false`; the
/// client gets `success` (streamed or not) once all are done.
async fn create(State(state): State<Manage>, req: Request) -> Response {
    let mut body = match read_json(req).await {
        Ok(b) => b,
        Err(refused) => return refused.into_response(),
    };
    let Ok(name) = ModelName::parse(model_or_name(&body)) else {
        return error(StatusCode::BAD_REQUEST, "invalid model name");
    };
    let from = text(&body, "from").to_string();
    let current = match current(&state) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let targets = if from.is_empty() {
        targets::pull_targets(&current.map, state.placement.as_deref(), &name.key())
    } else {
        let Ok(base) = ModelName::parse(&from) else {
            return error(StatusCode::BAD_REQUEST, "invalid model name");
        };
        // Nobody holds the base: each target pulls it, as Ollama does.
        let held = targets::holders(&current.map, &base.key());
        if held.is_empty() {
            targets::pull_targets(&current.map, state.placement.as_deref(), &base.key())
        } else {
            held
        }
    };
    if targets.is_empty() {
        return no_instance();
    }
    let streamed = body.get("stream").and_then(Value::as_bool) != Some(false);
    body.insert("stream".into(), Value::Bool(false));
    tracing::info!(model = %name.key(), from = %from, on = ?names(&targets), "fleet create");
    let replies = fan_out(
        &state.exec.http,
        &targets,
        Method::POST,
        "/api/create",
        &Value::Object(body),
    )
    .await;
    state.fleet.repoll_and_settle().await;
    let outcome = combine("create", &replies);
    match (streamed, outcome) {
        (false, None) => Json(json!({"status": "success"})).into_response(),
        (false, Some((status, message))) => error(status, message),
        (true, outcome) => {
            let last = match outcome {
                None => json!({"status": "success"}),
                Some((_, message)) => json!({ "error": message }),
            };
            let lines = vec![json!({"status": "writing manifest"}), last];
            ndjson_response(Body::from(ndjson(&lines)))
        }
    }
}

/// `POST /api/generate` or `/api/chat` with `keep_alive: 0` and nothing
/// to answer: unloads the model everywhere it is loaded.
async fn unload(State(state): State<Manage>, req: Request) -> Response {
    let chat = req.uri().path().ends_with("/chat");
    let body = match read_json(req).await {
        Ok(b) => b,
        Err(refused) => return refused.into_response(),
    };
    let raw = text(&body, "model").to_string();
    let Ok(name) = ModelName::parse(&raw) else {
        return error(StatusCode::BAD_REQUEST, "invalid model name");
    };
    let current = match current(&state) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    if targets::holders(&current.map, &name.key()).is_empty() {
        return error(StatusCode::NOT_FOUND, format!("model '{raw}' not found"));
    }
    let loaded = targets::loaded_on(&current.map, &name.key());
    let path = if chat { "/api/chat" } else { "/api/generate" };
    let replies = fan_out(
        &state.exec.http,
        &loaded,
        Method::POST,
        path,
        &Value::Object(body),
    )
    .await;
    state.fleet.repoll_and_settle().await;
    tracing::info!(model = %name.key(), on = ?names(&loaded), "fleet unload");
    if let Some((status, message)) = combine("unload", &replies) {
        return error(status, message);
    }
    let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let answer = if chat {
        json!({"model": raw, "created_at": created_at,
            "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "unload"})
    } else {
        json!({"model": raw, "created_at": created_at,
            "response": "", "done": true, "done_reason": "unload"})
    };
    Json(answer).into_response()
}

/// Ollama's check of a blob digest (`sha256:<64 hex>`).
fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Healthy instances, and the instances among them without blob `digest`.
async fn lacking_blob<'m>(
    http: &reqwest::Client,
    map: &'m model_map::ModelMap,
    digest: &str,
) -> (Vec<&'m InstanceState>, Vec<(&'m InstanceState, Reply)>) {
    let healthy: Vec<&InstanceState> = map.instances.iter().filter(|i| i.healthy).collect();
    let checks = healthy.iter().map(|i| async move {
        let url = format!("{}/api/blobs/{digest}", i.url);
        let reply = match tokio::time::timeout(CALL_LIMIT, http.head(url).send()).await {
            Ok(Ok(resp)) => Ok((resp.status().as_u16(), Bytes::new())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer in {CALL_LIMIT:?}")),
        };
        (*i, reply)
    });
    let replies = futures_util::future::join_all(checks).await;
    let lacking = replies
        .into_iter()
        .filter(|(_, r)| !matches!(r, Ok((200, _))))
        .collect();
    (healthy, lacking)
}

/// The map a blob request is carried out by, or why it is refused (a
/// digest Ollama would not accept, no map yet).
fn blob_map(state: &Manage, digest: &str) -> Result<Arc<Published>, Refusal> {
    if !valid_digest(digest) {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "invalid digest format".into(),
        ));
    }
    current(state)
}

/// `HEAD /api/blobs/:digest`: 200 only when every healthy instance has it,
/// so that a client uploads it (to all that lack it).
async fn blob_head(
    State(state): State<Manage>,
    digest: Result<Path<String>, PathRejection>,
) -> Response {
    let digest = match digest {
        Ok(Path(d)) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let current = match blob_map(&state, &digest) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let (healthy, lacking) = lacking_blob(&state.exec.http, &current.map, &digest).await;
    if healthy.is_empty() {
        return no_instance();
    }
    if lacking.is_empty() {
        StatusCode::OK.into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("blob {digest:?} not found"))
    }
}

/// `POST /api/blobs/:digest`: the body is streamed to every healthy
/// instance that lacks the blob, a few chunks at a time (never held
/// whole); 201 when it was created somewhere, 200 when all had it.
async fn blob_upload(
    State(state): State<Manage>,
    digest: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let digest = match digest {
        Ok(Path(d)) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let current = match blob_map(&state, &digest) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let (healthy, lacking) = lacking_blob(&state.exec.http, &current.map, &digest).await;
    if healthy.is_empty() {
        return no_instance();
    }
    if lacking.is_empty() {
        return StatusCode::OK.into_response();
    }
    let mut senders = Vec::new();
    let mut uploads = Vec::new();
    for (target, _) in &lacking {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(UPLOAD_QUEUE);
        let chunks =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|c| (c, rx)) },
            );
        let req = state
            .exec
            .http
            .post(format!("{}/api/blobs/{digest}", target.url))
            .body(reqwest::Body::wrap_stream(chunks));
        let name = target.name.clone();
        uploads.push(tokio::spawn(async move {
            let reply: Reply = async {
                let resp = req.send().await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                Ok((status, resp.bytes().await.map_err(|e| e.to_string())?))
            }
            .await;
            (name, reply)
        }));
        senders.push(Some(tx));
    }
    let mut body = req.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                for tx in senders.iter().flatten() {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                }
                break;
            }
        };
        for slot in &mut senders {
            // An instance that stopped reading (it answered early) is
            // dropped from the copy; its answer says why.
            if let Some(tx) = slot {
                if tx.send(Ok(chunk.clone())).await.is_err() {
                    *slot = None;
                }
            }
        }
    }
    drop(senders);
    let mut replies = Vec::new();
    for upload in uploads {
        if let Ok(reply) = upload.await {
            replies.push(reply);
        }
    }
    tracing::info!(%digest, on = ?replies.iter().map(|r| &r.0).collect::<Vec<_>>(), "fleet blob upload");
    match combine("blob upload", &replies) {
        None if replies.iter().any(|(_, r)| matches!(r, Ok((201, _)))) => {
            StatusCode::CREATED.into_response()
        }
        None => StatusCode::OK.into_response(),
        Some((status, message)) => error(status, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(name: &str) -> (String, Reply) {
        (name.into(), Ok((200, Bytes::new())))
    }

    fn failed(name: &str, status: u16, msg: &str) -> (String, Reply) {
        let body = serde_json::to_vec(&json!({ "error": msg })).unwrap();
        (name.into(), Ok((status, Bytes::from(body))))
    }

    #[test]
    fn combined_answers_name_each_failure() {
        assert_eq!(combine("delete", &[ok("a"), ok("b")]), None);
        let (status, msg) = combine("delete", &[ok("a"), failed("b", 500, "disk full")]).unwrap();
        assert_eq!(status, 500);
        assert_eq!(msg, "delete failed on b: disk full (done on a)");
        let same = [
            failed("a", 404, "model 'x' not found"),
            failed("b", 404, "model 'x' not found"),
        ];
        let (status, msg) = combine("delete", &same).unwrap();
        assert_eq!(
            (status.as_u16(), msg.as_str()),
            (404, "model 'x' not found (on a, b)")
        );
        let unreachable = [
            (String::from("a"), Err("connect: refused".to_string())),
            ok("b"),
        ];
        let (_, msg) = combine("copy", &unreachable).unwrap();
        assert_eq!(msg, "copy failed on a: connect: refused (done on b)");
    }

    #[test]
    fn digests_are_checked_as_ollama_does() {
        let hex = "ab".repeat(32);
        assert!(valid_digest(&format!("sha256:{hex}")));
        assert!(!valid_digest(&format!("sha256-{hex}")));
        assert!(!valid_digest("sha256:abc"));
    }
}
