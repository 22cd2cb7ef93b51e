//! What the daemon's syncs are doing, for the status page: one row per
//! (instance, model) job of the running and recent syncs, updated from the
//! same [`Event`]s `POST /v1/sync` streams. Every sync of the daemon (API
//! and reconcile) goes through the executor, so every one shows here.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::executor::Event;

/// Rows kept; the oldest finished ones go first.
pub const KEPT_JOBS: usize = 50;

/// One (instance, model) action of a sync, as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncJob {
    pub instance: String,
    pub model: String,
    /// `pull` or `warm`.
    pub kind: String,
    /// `queued`, then the instance's own progress text (`pulling 6a07…`,
    /// `verifying`, `loading`), then `done` or `failed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// RFC 3339, when the plan listed it.
    pub started: String,
    /// RFC 3339, once it has a result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// `None` while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The jobs of running and recent syncs, newest last.
#[derive(Debug)]
pub struct SyncBoard {
    jobs: Mutex<VecDeque<SyncJob>>,
    /// Bumped on every change, so the page can wait for one.
    changes: watch::Sender<u64>,
}

impl Default for SyncBoard {
    fn default() -> Self {
        SyncBoard {
            jobs: Mutex::new(VecDeque::new()),
            changes: watch::Sender::new(0),
        }
    }
}

impl SyncBoard {
    /// Copies of the rows, oldest first.
    pub fn jobs(&self) -> Vec<SyncJob> {
        self.lock().iter().cloned().collect()
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Applies one event of a sync.
    pub fn record(&self, event: &Event) {
        {
            let mut jobs = self.lock();
            apply(&mut jobs, event, Utc::now());
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<SyncJob>> {
        // A poisoned lock only means a panic mid-update; the rows are still
        // the best we have.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The event's effect on the rows (pure, for tests).
pub fn apply(jobs: &mut VecDeque<SyncJob>, event: &Event, now: DateTime<Utc>) {
    let stamp = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    match event {
        Event::Plan(plan) => {
            for a in &plan.actions {
                jobs.push_back(SyncJob {
                    instance: a.instance.clone(),
                    model: a.model.clone(),
                    kind: a.kind.as_str().to_string(),
                    status: "queued".into(),
                    completed: None,
                    total: None,
                    started: stamp.clone(),
                    finished: None,
                    ok: None,
                    error: None,
                });
            }
            trim(jobs);
        }
        Event::Progress {
            instance,
            model,
            status,
            completed,
            total,
            ..
        } => {
            if let Some(job) = running(jobs, instance, model, None) {
                job.status.clone_from(status);
                job.completed = *completed;
                job.total = *total;
            }
        }
        Event::Result {
            instance,
            model,
            kind,
            ok,
            error,
        } => {
            if let Some(job) = running(jobs, instance, model, Some(kind.as_str())) {
                job.status = if *ok { "done" } else { "failed" }.into();
                job.finished = Some(stamp);
                job.ok = Some(*ok);
                job.error.clone_from(error);
            }
        }
        Event::Summary(_) => {}
    }
}

/// The oldest unfinished row of (instance, model) (of `kind`, if given):
/// a job's pull runs before its load.
fn running<'a>(
    jobs: &'a mut VecDeque<SyncJob>,
    instance: &str,
    model: &str,
    kind: Option<&str>,
) -> Option<&'a mut SyncJob> {
    jobs.iter_mut().find(|j| {
        j.ok.is_none()
            && j.instance == instance
            && j.model == model
            && kind.is_none_or(|k| j.kind == k)
    })
}

/// Drops the oldest finished rows beyond [`KEPT_JOBS`]; running ones stay.
fn trim(jobs: &mut VecDeque<SyncJob>) {
    while jobs.len() > KEPT_JOBS {
        match jobs.iter().position(|j| j.ok.is_some()) {
            Some(i) => {
                jobs.remove(i);
            }
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::plan::{Action, ActionKind, Plan};

    fn action(instance: &str, kind: ActionKind) -> Action {
        serde_json::from_value(serde_json::json!({
            "kind": kind.as_str(), "instance": instance, "model": "m:latest",
            "reason": "missing", "want": null
        }))
        .unwrap()
    }

    #[test]
    fn a_pull_then_a_load_walk_through_their_states() {
        let now = Utc::now();
        let mut jobs = VecDeque::new();
        let plan = Plan {
            actions: vec![action("a", ActionKind::Pull), action("a", ActionKind::Warm)],
            notes: vec![],
        };
        apply(&mut jobs, &Event::Plan(plan), now);
        assert_eq!(jobs.len(), 2);
        assert!(jobs.iter().all(|j| j.status == "queued"));
        let progress = Event::Progress {
            instance: "a".into(),
            model: "m:latest".into(),
            status: "pulling 6a07".into(),
            digest: None,
            completed: Some(5),
            total: Some(10),
        };
        apply(&mut jobs, &progress, now);
        assert_eq!(jobs[0].status, "pulling 6a07");
        assert_eq!(jobs[0].completed, Some(5));
        let result = |kind, ok| Event::Result {
            instance: "a".into(),
            model: "m:latest".into(),
            kind,
            ok,
            error: (!ok).then(|| "boom".to_string()),
        };
        apply(&mut jobs, &result(ActionKind::Pull, true), now);
        assert_eq!((jobs[0].status.as_str(), jobs[0].ok), ("done", Some(true)));
        assert_eq!(jobs[1].status, "queued");
        apply(&mut jobs, &result(ActionKind::Warm, false), now);
        assert_eq!(jobs[1].status, "failed");
        assert_eq!(jobs[1].error.as_deref(), Some("boom"));
    }

    #[test]
    fn old_finished_rows_go_first_and_running_ones_stay() {
        let now = Utc::now();
        let mut jobs = VecDeque::new();
        let one = || Plan {
            actions: vec![action("a", ActionKind::Pull)],
            notes: vec![],
        };
        apply(&mut jobs, &Event::Plan(one()), now);
        for _ in 0..KEPT_JOBS {
            apply(&mut jobs, &Event::Plan(one()), now);
            let done = Event::Result {
                instance: "a".into(),
                model: "m:latest".into(),
                kind: ActionKind::Pull,
                ok: true,
                error: None,
            };
            apply(&mut jobs, &done, now);
        }
        assert_eq!(jobs.len(), KEPT_JOBS);
        // The very first row finished first, so it was trimmed; exactly one
        // row (the newest) still runs.
        assert_eq!(jobs.iter().filter(|j| j.ok.is_none()).count(), 1);
    }
}
