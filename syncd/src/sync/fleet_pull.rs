//! One `POST /api/pull` through the balancer, carried out on every target
//! instance by the sync [`Executor`] (its locks and per-instance limit) and
//! answered as one Ollama pull: `pulling manifest`, a `pulling <12hex>`
//! line per layer with `total` and `completed` summed over the instances,
//! then `verifying sha256 digest`, `writing manifest`, `success`, or an
//! `{"error"}` line naming each instance that failed.
//!
//! The progress of a running pull is a [`PullView`] in a `watch` channel:
//! a second request for the same model joins it (it sees the sums so far,
//! then the rest) instead of starting another, and a client that hangs up
//! only stops watching; the pulls run to their end.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use model_map::ModelName;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::executor::{Event, Executor};
use super::plan::{Action, ActionKind, Plan};
use crate::fleet::Published;

/// One layer as the fleet sees it: sums over the instances pulling it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub digest: String,
    pub total: u64,
    pub completed: u64,
}

/// A fleet pull so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullView {
    /// Layers in the order first reported.
    pub layers: Vec<Layer>,
    /// Latest `(total, completed)` per (instance, layer digest).
    per_instance: HashMap<(String, String), (u64, u64)>,
    /// `(instance, error)` of each failed target, once finished.
    pub failures: Vec<(String, String)>,
    pub finished: bool,
}

impl PullView {
    /// Folds one executor event in.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Progress {
                instance,
                digest: Some(digest),
                total: Some(total),
                completed,
                ..
            } => {
                let now = (*total, completed.unwrap_or(0));
                self.per_instance
                    .insert((instance.clone(), digest.clone()), now);
                let (total, completed) = self
                    .per_instance
                    .iter()
                    .filter(|((_, d), _)| d == digest)
                    .fold((0, 0), |(t, c), (_, (ti, ci))| (t + ti, c + ci));
                match self.layers.iter_mut().find(|l| &l.digest == digest) {
                    Some(l) => (l.total, l.completed) = (total, completed),
                    None => self.layers.push(Layer {
                        digest: digest.clone(),
                        total,
                        completed,
                    }),
                }
            }
            Event::Result {
                instance,
                ok: false,
                error,
                ..
            } => self.failures.push((
                instance.clone(),
                error.clone().unwrap_or_else(|| "failed".into()),
            )),
            Event::Summary(_) => self.finished = true,
            _ => {}
        }
    }

    /// The error line's text: each distinct error once, with the instances
    /// it happened on, e.g. `pull model manifest: file does not exist (on
    /// gpu-a, gpu-b)`.
    pub fn failure_text(&self) -> Option<String> {
        let mut grouped: Vec<(&str, Vec<&str>)> = Vec::new();
        for (instance, error) in &self.failures {
            match grouped.iter_mut().find(|(e, _)| e == error) {
                Some((_, on)) => on.push(instance),
                None => grouped.push((error, vec![instance])),
            }
        }
        for (_, on) in &mut grouped {
            on.sort();
        }
        let parts: Vec<String> = grouped
            .iter()
            .map(|(e, on)| format!("{e} (on {})", on.join(", ")))
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Turns successive views into Ollama's progress lines, sending a layer's
/// line only when its sums changed.
#[derive(Debug, Default)]
pub struct Renderer {
    started: bool,
    sent: HashMap<String, (u64, u64)>,
    done: bool,
}

impl Renderer {
    /// The lines that `view` adds to what was sent; the last batch ends
    /// with `success` or the error line.
    pub fn lines(&mut self, view: &PullView) -> Vec<Value> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        if !self.started {
            self.started = true;
            out.push(json!({"status": "pulling manifest"}));
        }
        for l in &view.layers {
            let now = (l.total, l.completed);
            if self.sent.get(&l.digest) != Some(&now) {
                self.sent.insert(l.digest.clone(), now);
                let short = l.digest.trim_start_matches("sha256:");
                out.push(json!({
                    "status": format!("pulling {}", crate::text::short_digest(short)),
                    "digest": l.digest, "total": l.total, "completed": l.completed,
                }));
            }
        }
        if view.finished {
            self.done = true;
            out.extend(final_lines(view));
        }
        out
    }

    /// True once the last line was produced.
    pub fn done(&self) -> bool {
        self.done
    }
}

fn final_lines(view: &PullView) -> Vec<Value> {
    match view.failure_text() {
        Some(error) => vec![json!({ "error": error })],
        None => vec![
            json!({"status": "verifying sha256 digest"}),
            json!({"status": "writing manifest"}),
            json!({"status": "success"}),
        ],
    }
}

/// The fleet pulls running in this daemon, by routing key, and the most
/// recent ones (running or finished) for `GET /v1/fleet/pulls`.
#[derive(Debug, Default)]
pub struct FleetPulls {
    running: Mutex<HashMap<String, watch::Receiver<PullView>>>,
    recent: Mutex<VecDeque<Record>>,
}

/// Pulls kept for the report.
const RECENT: usize = 16;

#[derive(Debug)]
struct Record {
    model: String,
    targets: Vec<String>,
    started: String,
    view: watch::Receiver<PullView>,
}

/// One fleet pull as `GET /v1/fleet/pulls` and `syncd status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullReport {
    pub model: String,
    pub targets: Vec<String>,
    /// RFC 3339.
    pub started: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// Bytes over every layer and instance reported so far.
    pub completed: u64,
    pub total: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FleetPulls {
    /// The recent pulls, newest first.
    pub fn report(&self) -> Vec<PullReport> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .iter()
            .rev()
            .map(|r| {
                let view = r.view.borrow();
                let error = view.failure_text();
                let state = match (view.finished, &error) {
                    (false, _) => "running",
                    (true, None) => "done",
                    (true, Some(_)) => "failed",
                };
                PullReport {
                    model: r.model.clone(),
                    targets: r.targets.clone(),
                    started: r.started.clone(),
                    state: state.into(),
                    completed: view.layers.iter().map(|l| l.completed).sum(),
                    total: view.layers.iter().map(|l| l.total).sum(),
                    error,
                }
            })
            .collect()
    }

    fn remember(&self, model: &ModelName, targets: &[String], view: watch::Receiver<PullView>) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(Record {
            model: model.display_shortest(),
            targets: targets.to_vec(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            view,
        });
    }

    /// Joins the running pull of `name`, or starts one on `targets` (names
    /// of instances of the `current` map). The pull runs in its own task.
    pub fn join_or_start(
        self: &Arc<Self>,
        exec: &Executor,
        current: Arc<Published>,
        name: &ModelName,
        targets: Vec<String>,
    ) -> watch::Receiver<PullView> {
        let key = name.key();
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = running.get(&key).filter(|rx| !rx.borrow().finished) {
            tracing::info!(model = %key, "fleet pull: joining the running one");
            return rx.clone();
        }
        let (tx, rx) = watch::channel(PullView::default());
        running.insert(key.clone(), rx.clone());
        drop(running);
        self.remember(name, &targets, rx.clone());
        let plan = Plan {
            actions: targets
                .iter()
                .map(|instance| Action {
                    kind: ActionKind::Pull,
                    instance: instance.clone(),
                    model: name.display_shortest(),
                    reason: None,
                    current: None,
                    // Whatever the registry serves now: an update may move
                    // the fleet to a new digest.
                    want: None,
                })
                .collect(),
            notes: Vec::new(),
        };
        tracing::info!(model = %key, targets = ?targets, "fleet pull: starting");
        let (pulls, runner) = (Arc::clone(self), exec.clone());
        let exec = exec.clone();
        runner.spawn(async move {
            let (events_tx, mut events) = mpsc::unbounded_channel();
            let run =
                tokio::spawn(async move { exec.execute(&current.map, &plan, &events_tx).await });
            while let Some(event) = events.recv().await {
                tx.send_modify(|v| v.apply(&event));
            }
            let summary = run.await.unwrap_or_default();
            tx.send_modify(|v| v.finished = true);
            match tx.borrow().failure_text() {
                None => {
                    tracing::info!(model = %key, pulled = summary.succeeded, "fleet pull: done")
                }
                Some(e) => tracing::warn!(model = %key, error = %e, "fleet pull: failed"),
            }
            let mut running = pulls.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.get(&key).is_some_and(|rx| rx.borrow().finished) {
                running.remove(&key);
            }
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(instance: &str, digest: &str, total: u64, completed: u64) -> Event {
        Event::Progress {
            instance: instance.into(),
            model: "m:latest".into(),
            status: format!("pulling {}", &digest[7..19]),
            digest: Some(digest.into()),
            completed: Some(completed),
            total: Some(total),
        }
    }

    fn failed(instance: &str, error: &str) -> Event {
        Event::Result {
            instance: instance.into(),
            model: "m:latest".into(),
            kind: ActionKind::Pull,
            ok: false,
            error: Some(error.into()),
        }
    }

    const L1: &str = "sha256:aaaaaaaaaaaa0000000000000000000000000000000000000000000000000000";
    const L2: &str = "sha256:bbbbbbbbbbbb0000000000000000000000000000000000000000000000000000";

    #[test]
    fn layers_sum_over_instances_and_lines_only_on_change() {
        let mut view = PullView::default();
        let mut r = Renderer::default();
        view.apply(&progress("gpu-a", L1, 100, 10));
        view.apply(&progress("gpu-b", L1, 100, 30));
        let lines = r.lines(&view);
        assert_eq!(lines[0]["status"], "pulling manifest");
        assert_eq!(lines[1]["status"], "pulling aaaaaaaaaaaa");
        assert_eq!(
            (lines[1]["total"].as_u64(), lines[1]["completed"].as_u64()),
            (Some(200), Some(40))
        );
        assert!(r.lines(&view).is_empty(), "nothing changed");
        view.apply(&progress("gpu-a", L1, 100, 100));
        view.apply(&progress("gpu-b", L1, 100, 100));
        view.apply(&progress("gpu-a", L2, 5, 5));
        view.apply(&Event::Summary(Default::default()));
        let lines = r.lines(&view);
        let statuses: Vec<&str> = lines.iter().filter_map(|l| l["status"].as_str()).collect();
        assert_eq!(
            statuses,
            [
                "pulling aaaaaaaaaaaa",
                "pulling bbbbbbbbbbbb",
                "verifying sha256 digest",
                "writing manifest",
                "success"
            ]
        );
        assert_eq!(lines[0]["completed"], 200);
        assert!(r.done() && r.lines(&view).is_empty());
    }

    #[test]
    fn failures_end_with_one_error_naming_each_instance() {
        let mut view = PullView::default();
        view.apply(&failed("gpu-b", "pull model manifest: file does not exist"));
        view.apply(&failed("gpu-a", "pull model manifest: file does not exist"));
        view.apply(&failed("gpu-c", "connect: refused"));
        view.apply(&Event::Summary(Default::default()));
        let lines = Renderer::default().lines(&view);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            lines[1]["error"],
            "pull model manifest: file does not exist (on gpu-a, gpu-b); connect: refused (on gpu-c)"
        );
    }
}
