//! A stand-in for syncd that serves a model map the test sets directly,
//! speaking syncd's map protocol (`GET /v1/map`, `etag`, `since` + `wait`
//! long poll, 304, 503 until a map is set). Filter tests use it when they
//! need exact control over health and load flags.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use model_map::ModelMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;

/// A running map server; dropping it stops it.
pub struct MapServer {
    pub addr: SocketAddr,
    /// The map's id and its JSON, serialised once when it is set, as
    /// syncd does before it publishes.
    tx: watch::Sender<Option<(String, bytes::Bytes)>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(serde::Deserialize)]
struct MapQuery {
    since: Option<String>,
    wait: Option<u64>,
}

impl MapServer {
    /// Starts on an ephemeral loopback port with no map (503).
    pub async fn start() -> anyhow::Result<MapServer> {
        let (tx, rx) = watch::channel(None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/v1/map", get(serve_map))
            .with_state(rx);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(MapServer { addr, tx, task })
    }

    /// Publishes `map` (sealed here), waking long polls.
    pub fn set(&self, map: ModelMap) -> String {
        let map = map.sealed();
        let id = map.id.clone();
        let json = bytes::Bytes::from(serde_json::to_vec(&map).unwrap_or_default());
        self.tx.send_replace(Some((id.clone(), json)));
        id
    }
}

impl Drop for MapServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_map(
    State(mut rx): State<watch::Receiver<Option<(String, bytes::Bytes)>>>,
    Query(q): Query<MapQuery>,
    headers: HeaderMap,
) -> Response {
    let since = q.since.or_else(|| {
        headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim_matches('"').to_string())
    });
    let current = |rx: &watch::Receiver<Option<(String, bytes::Bytes)>>| {
        rx.borrow().as_ref().map(|(id, _)| id.clone())
    };
    if let (Some(since), Some(wait)) = (&since, q.wait) {
        let deadline = tokio::time::sleep(Duration::from_secs(wait.min(60)));
        tokio::pin!(deadline);
        while current(&rx).as_deref() == Some(since.as_str()) {
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { break },
                _ = &mut deadline => break,
            }
        }
    }
    let map = rx.borrow().clone();
    let Some((id, json)) = map else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": "model map not ready"})),
        )
            .into_response();
    };
    let etag = format!("\"{id}\"");
    if since.as_deref() == Some(id.as_str()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::ETAG, etag),
            (header::CONTENT_TYPE, "application/json".to_string()),
        ],
        json,
    )
        .into_response()
}
