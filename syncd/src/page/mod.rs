//! The status page: the fleet at a glance in a browser, and the same data
//! as JSON.
//!
//! - `GET /`: the page (HTML, its script and style compiled into the
//!   binary, nothing fetched from elsewhere).
//! - `GET /v1/status`: the [`StatusSnapshot`] as JSON, for scripts.
//! - `GET /v1/status/events`: server-sent events, one `status` event with
//!   the snapshot on connect and again whenever it changes. Changes are
//!   noticed at once for a new map or sync progress, and within
//!   [`CHECK_EVERY`] for the rest (poll errors, latency, in-flight counts).
//!
//! It shows the fleet's layout, so it is served on syncd's own listener
//! (loopback by default), with no login of its own.

pub mod snapshot;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use tokio::sync::watch;

use crate::fleet::Fleet;
use crate::gateways::Gateways;
use crate::sync::board::SyncBoard;
pub use snapshot::StatusSnapshot;

/// Longest time before a change that does not wake the feed (a poll
/// error, a latency, a gateway count) reaches an open page.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/status.js");
const STYLE: &str = include_str!("assets/status.css");

#[derive(Clone)]
struct PageState {
    fleet: Arc<Fleet>,
    board: Arc<SyncBoard>,
    gateways: Arc<Gateways>,
    /// Becomes true on shutdown, ending open feeds.
    stopping: watch::Receiver<bool>,
}

/// The page's routes.
pub fn router(
    fleet: Arc<Fleet>,
    board: Arc<SyncBoard>,
    gateways: Arc<Gateways>,
    stopping: watch::Receiver<bool>,
) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/status.js",
            get(|| async { asset(SCRIPT, "text/javascript") }),
        )
        .route("/status.css", get(|| async { asset(STYLE, "text/css") }))
        .route("/v1/status", get(status))
        .route("/v1/status/events", get(events))
        .with_state(PageState {
            fleet,
            board,
            gateways,
            stopping,
        })
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let kind = HeaderValue::from_static(kind);
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn snapshot(state: &PageState) -> StatusSnapshot {
    let current = state.fleet.current();
    let map = current.as_ref().map(|p| &p.map);
    let instances: Vec<&str> = map.map_or_else(Vec::new, |m| {
        m.instances.iter().map(|i| i.name.as_str()).collect()
    });
    let models: Vec<&str> = map.map_or_else(Vec::new, |m| {
        m.models.iter().map(|m| m.key.as_str()).collect()
    });
    let inflight = state.gateways.read(&instances, &models).await;
    snapshot::build(state.fleet.reports(), map, inflight, state.board.jobs())
}

async fn status(State(state): State<PageState>) -> Json<StatusSnapshot> {
    Json(snapshot(&state).await)
}

/// What the feed waits on between two snapshots.
struct Feed {
    state: PageState,
    maps: crate::fleet::MapReceiver,
    syncs: watch::Receiver<u64>,
    /// The JSON last sent, so an unchanged snapshot is not sent again.
    last: Option<String>,
    first: bool,
}

async fn events(
    State(state): State<PageState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let feed = Feed {
        maps: state.fleet.subscribe(),
        syncs: state.board.subscribe(),
        state,
        last: None,
        first: true,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let json = feed.next().await?;
        Some((Ok(Event::default().event("status").data(json)), feed))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

impl Feed {
    /// The next snapshot that differs from the last one sent, or `None`
    /// once the daemon stops.
    async fn next(&mut self) -> Option<String> {
        loop {
            if !self.first {
                let mut stopping = self.state.stopping.clone();
                tokio::select! {
                    // A closed channel means the daemon is going away.
                    r = self.maps.changed() => if r.is_err() { return None },
                    r = self.syncs.changed() => if r.is_err() { return None },
                    _ = tokio::time::sleep(CHECK_EVERY) => {}
                    _ = stopping.wait_for(|s| *s) => return None,
                }
            }
            self.first = false;
            if *self.state.stopping.borrow() {
                return None;
            }
            let json = serde_json::to_string(&snapshot(&self.state).await).ok()?;
            if self.last.as_ref() != Some(&json) {
                self.last = Some(json.clone());
                return Some(json);
            }
        }
    }
}
