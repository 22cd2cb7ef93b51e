//! `POST /v1/sync` on the daemon's API: plans from the published map and
//! runs the plan, streaming [`Event`]s as NDJSON (`plan`, `progress`,
//! `result`, `summary`; a dry run sends only `plan`).
//!
//! Body (all optional): `{"dry_run": bool, "placement": {"default":
//! "keep"|"all", "model": [{name, replicas?, instances?, warm?}]}}`;
//! without `placement` the daemon's `--placement` is used, without that a
//! union sync. The per-instance limit is the daemon's `--concurrency`,
//! shared with every other sync it runs. With `--api-token` the request needs
//! `Authorization: Bearer <token>` (else 401); without one, only loopback
//! clients may sync (else 403). The sync runs to its end even if the
//! client goes away.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::executor::{Event, Executor};
use super::placement::Placement;
use super::plan::plan;
use crate::fleet::Fleet;

/// Largest accepted request body.
const MAX_BODY: usize = 1 << 20;

#[derive(Clone)]
struct SyncState {
    fleet: Arc<Fleet>,
    exec: Executor,
    token: Option<Arc<str>>,
    placement: Option<Arc<Placement>>,
    instances: Arc<[String]>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncRequest {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    placement: Option<Placement>,
}

/// The `/v1/sync` route.
pub fn router(
    fleet: Arc<Fleet>,
    exec: Executor,
    token: Option<String>,
    placement: Option<Placement>,
) -> Router {
    let instances = fleet
        .slots()
        .iter()
        .map(|s| s.instance.name.clone())
        .collect();
    Router::new()
        .route("/v1/sync", post(sync))
        .with_state(SyncState {
            fleet,
            exec,
            token: token.map(Arc::from),
            placement: placement.map(Arc::new),
            instances,
        })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    (status, Json(body)).into_response()
}

/// Who may sync: with a token, whoever presents it; without, loopback
/// peers only. `Err` is the status and the message to answer with.
pub fn authorize(
    token: Option<&str>,
    authorization: Option<&str>,
    peer: Option<SocketAddr>,
) -> Result<(), (StatusCode, &'static str)> {
    match token {
        Some(token) => {
            let given = authorization
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(str::trim);
            match given {
                Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
                Some(_) => Err((StatusCode::UNAUTHORIZED, "invalid bearer token")),
                None => Err((
                    StatusCode::UNAUTHORIZED,
                    "missing bearer token: send Authorization: Bearer <--api-token>",
                )),
            }
        }
        None if peer.is_some_and(|p| p.ip().is_loopback()) => Ok(()),
        None => Err((
            StatusCode::FORBIDDEN,
            "sync is refused to non-loopback clients while no --api-token (SYNCD_API_TOKEN) is set",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn sync(State(state): State<SyncState>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err((status, message)) = authorize(state.token.as_deref(), authorization, peer) {
        let mut resp = error(status, message);
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        return resp;
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    let request: SyncRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SyncRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid sync request: {e}"),
                )
            }
        }
    };
    let placement = match request.placement {
        Some(p) => match p.validate(Some(&state.instances)) {
            Ok(()) => Some(Arc::new(p)),
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        },
        None => state.placement.clone(),
    };
    let Some(current) = state.fleet.current() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "model map not ready: first poll round not finished",
        );
    };
    let the_plan = plan(&current.map, placement.as_deref());
    let (tx, rx) = mpsc::unbounded_channel();
    if request.dry_run {
        let _ = tx.send(Event::Plan(the_plan));
    } else {
        let exec = state.exec.clone();
        tracing::info!(
            actions = the_plan.actions.len(),
            "sync requested over the API"
        );
        let runner = exec.clone();
        runner.spawn(async move {
            exec.execute(&current.map, &the_plan, &tx).await;
        });
    }
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, Infallible>(Bytes::from(line)), rx))
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        Body::from_stream(lines),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_sync() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let local6: SocketAddr = "[::1]:5000".parse().unwrap();
        let remote: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<SocketAddr>,
            Option<u16>,
        );
        let cases: [Case; 8] = [
            (None, None, Some(local), None),
            (None, None, Some(local6), None),
            (None, None, Some(remote), Some(403)),
            (None, None, None, Some(403)),
            (Some("s3cret"), Some("Bearer s3cret"), Some(remote), None),
            (Some("s3cret"), Some("Bearer wrong"), Some(local), Some(401)),
            (Some("s3cret"), None, Some(local), Some(401)),
            (
                Some("s3cret"),
                Some("Basic s3cret"),
                Some(remote),
                Some(401),
            ),
        ];
        for (token, header, peer, want) in cases {
            let got = authorize(token, header, peer)
                .err()
                .map(|(s, _)| s.as_u16());
            assert_eq!(got, want, "{token:?} {header:?} {peer:?}");
        }
    }
}
