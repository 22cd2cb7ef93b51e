//! `syncd run --reconcile`: keeps the placement held. After every map
//! change, and at least every `every`, the daemon plans and starts the
//! actions that are not already running; an instance that is replaced or
//! wiped gets its models back without a person.
//!
//! A job (instance, model) is never started twice at once. After it
//! finishes it is left alone for a while: on success until the pollers
//! have had time to see the result (else a stale map would plan it
//! again), on failure for `every` (a retry, not a hot loop).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::executor::{Event, Executor};
use super::placement::Placement;
use super::plan::{plan, Plan};
use crate::fleet::Fleet;

type Job = (String, String);

/// Runs until aborted.
pub async fn run_reconcile(
    fleet: Arc<Fleet>,
    placement: Option<Placement>,
    exec: Executor,
    every: Duration,
) {
    let settle = exec.poll.interval * 3 + exec.poll.timeout;
    let mut maps = fleet.subscribe();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Vec<(Job, bool)>>();
    let mut running: HashMap<Job, ()> = HashMap::new();
    let mut quiet_until: HashMap<Job, Instant> = HashMap::new();
    loop {
        tokio::select! {
            changed = maps.changed() => if changed.is_err() { return },
            finished = done_rx.recv() => {
                let now = Instant::now();
                for (job, ok) in finished.unwrap_or_default() {
                    running.remove(&job);
                    quiet_until.insert(job, now + if ok { settle } else { every });
                }
            }
            _ = tokio::time::sleep(every) => {}
        }
        let Some(current) = fleet.current() else {
            continue;
        };
        let now = Instant::now();
        quiet_until.retain(|_, until| *until > now);
        let full = plan(&current.map, placement.as_ref());
        let actions: Vec<_> = full
            .actions
            .into_iter()
            .filter(|a| {
                let job = (a.instance.clone(), a.model.clone());
                !running.contains_key(&job) && !quiet_until.contains_key(&job)
            })
            .collect();
        if actions.is_empty() {
            continue;
        }
        let batch = Plan {
            actions,
            notes: full.notes,
        };
        for a in &batch.actions {
            running.insert((a.instance.clone(), a.model.clone()), ());
        }
        let (runner, done, map) = (exec.clone(), done_tx.clone(), current.map.clone());
        let exec = exec.clone();
        runner.spawn(async move {
            let (tx, rx) = mpsc::unbounded_channel();
            let log = tokio::spawn(log_events(rx));
            exec.execute(&map, &batch, &tx).await;
            drop(tx);
            let outcomes = log.await.unwrap_or_default();
            let jobs = batch
                .actions
                .iter()
                .map(|a| {
                    let job = (a.instance.clone(), a.model.clone());
                    let ok = outcomes.get(&job).copied().unwrap_or(false);
                    (job, ok)
                })
                .collect();
            let _ = done.send(jobs);
        });
    }
}

/// Logs a batch's events; returns whether each job succeeded.
async fn log_events(mut rx: mpsc::UnboundedReceiver<Event>) -> HashMap<Job, bool> {
    let mut outcomes: HashMap<Job, bool> = HashMap::new();
    while let Some(event) = rx.recv().await {
        match event {
            Event::Plan(p) => {
                for a in &p.actions {
                    tracing::info!(instance = %a.instance, model = %a.model, action = a.kind.as_str(), reason = ?a.reason, "reconcile: starting");
                }
                for n in &p.notes {
                    tracing::warn!(note = %n, "reconcile: placement not met");
                }
            }
            Event::Progress {
                instance,
                model,
                status,
                ..
            } => tracing::debug!(%instance, %model, %status, "reconcile: progress"),
            Event::Result {
                instance,
                model,
                kind,
                ok,
                error,
            } => {
                if ok {
                    tracing::info!(%instance, %model, action = kind.as_str(), "reconcile: done");
                } else {
                    tracing::warn!(%instance, %model, action = kind.as_str(), error = error.as_deref().unwrap_or(""), "reconcile: failed");
                }
                let entry = outcomes.entry((instance, model)).or_insert(true);
                *entry &= ok;
            }
            Event::Summary(_) => {}
        }
    }
    outcomes
}
