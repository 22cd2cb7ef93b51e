//! Carrying out a [`Plan`]: pulls and loads in parallel across instances,
//! at most `per_instance` at a time on each, progress sent as [`Event`]s
//! on a channel. After a pull, a fresh `/api/tags` of the instance checks
//! that it now holds the model at the canonical digest.
//!
//! One instance failing never stops the others; the [`Summary`] says what
//! succeeded. Clones of one [`Executor`] share their locks: two actions on
//! the same (instance, model) never run at once, and the per-instance
//! limit holds across syncs (the API and the reconcile loop).

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model_map::name::ModelName;
use model_map::ModelMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;

use super::board::SyncBoard;
use super::plan::{Action, ActionKind, Plan};
use crate::config::{Instance, PollSettings};
use crate::ollama::OllamaClient;
use crate::text::short_digest;

/// What a sync reports, in order: the plan, progress, one result per
/// action, the summary. Serialised as NDJSON by `POST /v1/sync`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Plan(Plan),
    Progress {
        instance: String,
        model: String,
        status: String,
        /// The layer a `pulling <12hex>` line is about.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        completed: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
    },
    Result {
        instance: String,
        model: String,
        kind: ActionKind,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    Summary(Summary),
}

/// How a sync ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub actions: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// `instance model: error` for each failure.
    pub failures: Vec<String>,
}

impl Summary {
    /// True when every action succeeded.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// One line, plus one per failure.
    pub fn render(&self) -> String {
        let mut out = format!(
            "sync: {} actions, {} succeeded, {} failed\n",
            self.actions, self.succeeded, self.failed
        );
        for f in &self.failures {
            out.push_str(&format!("  FAILED {f}\n"));
        }
        out
    }
}

/// Per-(instance, model key) locks and per-instance limits, shared by
/// every sync of one process.
#[derive(Debug, Default)]
pub struct KeyLocks {
    jobs: Mutex<HashMap<(String, String), JobLock>>,
    instances: Mutex<HashMap<String, Arc<Semaphore>>>,
}

type JobLock = Arc<tokio::sync::Mutex<()>>;

impl KeyLocks {
    fn job(&self, instance: &str, key: &str) -> JobLock {
        let mut map = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((instance.to_string(), key.to_string()))
            .or_default()
            .clone()
    }

    fn instance(&self, instance: &str, limit: NonZeroUsize) -> Arc<Semaphore> {
        let mut map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(instance.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(limit.get())))
            .clone()
    }
}

/// How actions are carried out.
#[derive(Debug, Clone)]
pub struct Executor {
    pub http: reqwest::Client,
    pub poll: PollSettings,
    /// Actions at a time on one instance.
    pub per_instance: NonZeroUsize,
    /// A pull with no progress line for this long fails; also the limit
    /// of one load.
    pub stall: Duration,
    pub locks: Arc<KeyLocks>,
    /// Every event also lands here, for the status page.
    pub board: Arc<SyncBoard>,
    /// Syncs running in the background (API syncs, fleet pulls, reconcile
    /// batches), which the daemon drains on shutdown.
    pub tasks: TaskTracker,
}

impl Executor {
    /// An executor with the daemon's HTTP client settings.
    pub fn new(poll: &PollSettings, per_instance: NonZeroUsize) -> Executor {
        Executor {
            http: OllamaClient::http_client(poll),
            poll: poll.clone(),
            per_instance,
            stall: Duration::from_secs(300),
            locks: Arc::default(),
            board: Arc::default(),
            tasks: TaskTracker::new(),
        }
    }

    /// Runs `task` in the background, tracked in [`Executor::tasks`].
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Runs `plan` against the instances of `map`; sends the plan, progress
    /// and results on `events` and returns the summary (also sent).
    pub async fn execute(
        &self,
        map: &ModelMap,
        plan: &Plan,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Summary {
        self.emit(events, Event::Plan(plan.clone()));
        // One job per (instance, model): its pull, then its load.
        let mut jobs: BTreeMap<(String, String), Vec<Action>> = BTreeMap::new();
        for a in &plan.actions {
            jobs.entry((a.instance.clone(), a.model.clone()))
                .or_default()
                .push(a.clone());
        }
        let mut tasks = JoinSet::new();
        let mut summary = Summary {
            actions: plan.actions.len(),
            ..Summary::default()
        };
        for ((instance, model), actions) in jobs {
            let Some(state) = map.instance(&instance) else {
                summary.failed += actions.len();
                summary
                    .failures
                    .push(format!("{instance} {model}: no such instance in the map"));
                continue;
            };
            let target = Instance {
                name: state.name.clone(),
                url: state.url.clone(),
                cluster: state.cluster.clone(),
                authority: state.authority.clone(),
                // The map carries no CA or credentials: sync reaches
                // instances as the map lists them (not yet with their
                // `ca_file` or token; see syncd/README.md).
                access: Default::default(),
            };
            let client = OllamaClient::new(self.http.clone(), &target, &self.poll);
            let limit = self.locks.instance(&instance, self.per_instance);
            let (exec, events) = (self.clone(), events.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                exec.run_job(&client, actions, &events).await
            });
        }
        // A job whose task died (a panic) counts its actions as failed.
        let mut done = summary.failed;
        while let Some(joined) = tasks.join_next().await {
            for (action, outcome) in joined.unwrap_or_default() {
                done += 1;
                match outcome {
                    Ok(()) => summary.succeeded += 1,
                    Err(e) => {
                        summary.failed += 1;
                        summary.failures.push(format!(
                            "{} {} ({}): {e}",
                            action.instance,
                            action.model,
                            action.kind.as_str()
                        ));
                    }
                }
            }
        }
        summary.failed += summary.actions - done;
        summary.failures.sort();
        self.emit(events, Event::Summary(summary.clone()));
        summary
    }

    /// The actions of one (instance, model), in order; a failed pull
    /// skips the load after it.
    async fn run_job(
        &self,
        client: &OllamaClient,
        actions: Vec<Action>,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Vec<(Action, Result<(), String>)> {
        let Some(first) = actions.first() else {
            return Vec::new();
        };
        let key = ModelName::parse(&first.model).map_or_else(|_| first.model.clone(), |n| n.key());
        let lock = self.locks.job(&first.instance, &key);
        let _held = lock.lock().await;
        let mut out = Vec::new();
        let mut failed = false;
        for action in actions {
            let outcome = if failed {
                Err("skipped: the pull before it failed".to_string())
            } else {
                match action.kind {
                    ActionKind::Pull => self.pull(client, &action, &key, events).await,
                    ActionKind::Warm => {
                        self.progress(events, &action, "loading", None, None);
                        client
                            .warm(&action.model, self.stall)
                            .await
                            .map_err(|e| e.to_string())
                    }
                }
            };
            failed |= outcome.is_err();
            let result = Event::Result {
                instance: action.instance.clone(),
                model: action.model.clone(),
                kind: action.kind,
                ok: outcome.is_ok(),
                error: outcome.as_ref().err().cloned(),
            };
            self.emit(events, result);
            out.push((action, outcome));
        }
        out
    }

    async fn pull(
        &self,
        client: &OllamaClient,
        action: &Action,
        key: &str,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Result<(), String> {
        client
            .pull(&action.model, self.stall, |p| {
                let event = Event::Progress {
                    instance: action.instance.clone(),
                    model: action.model.clone(),
                    status: p.status.clone(),
                    digest: p.digest.clone(),
                    completed: p.completed,
                    total: p.total,
                };
                self.emit(events, event);
            })
            .await
            .map_err(|e| e.to_string())?;
        self.progress(events, action, "verifying", None, None);
        let (tags, _) = client.tags().await.map_err(|e| e.to_string())?;
        let digest = tags.models.iter().find_map(|m| {
            let name = if m.name.is_empty() { &m.model } else { &m.name };
            ModelName::parse(name)
                .is_ok_and(|n| n.key() == key)
                .then(|| m.digest.trim_start_matches("sha256:").to_string())
        });
        match (digest, &action.want) {
            (None, _) => Err("pulled, but /api/tags does not list it".into()),
            (Some(got), Some(want)) if &got != want => Err(format!(
                "pulled, but it is at digest {} and the fleet's canonical digest is {}: \
                 the registry serves another version of this tag",
                short_digest(&got),
                short_digest(want)
            )),
            _ => Ok(()),
        }
    }
}

impl Executor {
    /// Sends `event` to the sync's caller and records it on the board.
    fn emit(&self, events: &mpsc::UnboundedSender<Event>, event: Event) {
        self.board.record(&event);
        let _ = events.send(event);
    }

    fn progress(
        &self,
        events: &mpsc::UnboundedSender<Event>,
        action: &Action,
        status: &str,
        completed: Option<u64>,
        total: Option<u64>,
    ) {
        let event = Event::Progress {
            instance: action.instance.clone(),
            model: action.model.clone(),
            status: status.to_string(),
            digest: None,
            completed,
            total,
        };
        self.emit(events, event);
    }
}
