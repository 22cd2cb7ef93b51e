//! Loaded models ("runners"): loading, parallel slots, the pending queue,
//! LRU eviction and keep-alive expiry, after Ollama's `server/sched.go`.
//!
//! Queue rule (HEAD, since v0.11.5): a request for a model that is already
//! loaded waits for a slot without counting against `max_queue`; a request
//! that needs a load (or waits for room to load) counts, and beyond
//! `max_queue` such requests get the 503.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::duration::KeepAlive;
use crate::models::Model;
use crate::prompt::{Prompt, PromptCache, PromptUse};

/// The scheduling knobs, read from the live configuration per request.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub load_time: Duration,
    pub num_parallel: u32,
    pub max_queue: u32,
    pub max_loaded_models: u32,
    pub default_keep_alive: KeepAlive,
}

/// Why a request could not be scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    #[error("server busy, please try again.  maximum pending requests exceeded")]
    QueueFull,
}

struct Runner {
    model: Model,
    generation: u64,
    ready: bool,
    in_use: usize,
    keep_alive: KeepAlive,
    last_used: Instant,
    /// Wall-clock expiry once idle; `None` while busy or when forever.
    idle_expires: Option<DateTime<Utc>>,
    expiry_seq: u64,
    /// Each parallel slot's last prompt.
    cache: PromptCache,
}

#[derive(Default)]
struct Inner {
    runners: HashMap<String, Runner>,
    /// Requests waiting per model key.
    /// Tickets of requests waiting per model key, served in order.
    waiting_by_key: HashMap<String, BTreeSet<u64>>,
    next_ticket: u64,
    next_generation: u64,
    queued_counted: usize,
    queued: usize,
    in_flight: usize,
    max_in_flight_seen: usize,
    cold_loads: u64,
    cold_loads_by_model: BTreeMap<String, u64>,
    evictions: u64,
    rejected_503: u64,
    prompt_tokens: u64,
    prompt_tokens_evaluated: u64,
    prompt_cache_hits: u64,
}

/// Shared scheduler; cheap to clone through `Arc`.
#[derive(Default)]
pub struct Scheduler {
    inner: Mutex<Inner>,
    changed: Notify,
}

/// A held slot on a loaded model; released on drop.
pub struct Slot {
    sched: Arc<Scheduler>,
    key: String,
    generation: u64,
    /// Time spent waiting for load and scheduling.
    pub load_duration: Duration,
    /// The prompt's cache slot and what is left to evaluate.
    pub prompt: PromptUse,
}

/// Unregisters a waiting request when it gives up (client gone).
struct Waiting<'a> {
    sched: &'a Arc<Scheduler>,
    key: &'a str,
    /// Place in the model's line once waiting.
    ticket: Option<u64>,
    counted: bool,
}

fn far_future(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_add_signed(chrono::Duration::nanoseconds(i64::MAX))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn expires_after(now: DateTime<Utc>, ka: KeepAlive) -> DateTime<Utc> {
    match ka {
        KeepAlive::Forever => far_future(now),
        KeepAlive::For(d) => chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or_else(|| far_future(now)),
    }
}

impl Scheduler {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves counters usable; go on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot on `model`, loading it (and evicting an idle model)
    /// if needed, and takes the cache slot that best matches `prompt`. `keep_alive` of `None` keeps a loaded runner's setting.
    /// `settings` is read again on every wake-up, so live changes apply to
    /// waiting requests.
    pub async fn acquire(
        self: &Arc<Self>,
        model: &Model,
        prompt: &Prompt,
        keep_alive: Option<KeepAlive>,
        settings: impl Fn() -> Settings,
    ) -> Result<Slot, SchedError> {
        let start = Instant::now();
        let key = model.key.as_str();
        let mut waiting = Waiting {
            sched: self,
            key,
            ticket: None,
            counted: false,
        };
        let mut first = true;
        loop {
            let settings = settings();
            let notified = {
                let mut g = self.lock();
                let inner = &mut *g;
                // A new digest (a pull, `/_emu/digest`) makes Ollama reload
                // the runner once it is idle.
                let needs_reload = inner
                    .runners
                    .get(key)
                    .is_some_and(|r| r.model.digest != model.digest);
                if needs_reload
                    && inner
                        .runners
                        .get(key)
                        .is_some_and(|r| r.ready && r.in_use == 0)
                {
                    inner.runners.remove(key);
                    inner.evictions += 1;
                }
                let warm = inner.runners.get(key).is_some_and(|r| r.ready) && !needs_reload;
                if first && !warm {
                    if inner.queued_counted >= settings.max_queue as usize {
                        inner.rejected_503 += 1;
                        return Err(SchedError::QueueFull);
                    }
                    inner.queued_counted += 1;
                    waiting.counted = true;
                }
                first = false;
                if warm {
                    let parallel = settings.num_parallel as usize;
                    if let Some((generation, prompt_use)) =
                        self.take_slot(inner, &mut waiting, keep_alive, prompt, parallel)
                    {
                        return Ok(Slot {
                            sched: Arc::clone(self),
                            key: key.to_string(),
                            generation,
                            load_duration: start.elapsed(),
                            prompt: prompt_use,
                        });
                    }
                } else if !inner.runners.contains_key(key) && self.make_room(inner, settings) {
                    self.start_load(
                        inner,
                        model,
                        keep_alive.unwrap_or(settings.default_keep_alive),
                        settings.load_time,
                    );
                }
                enqueue(inner, &mut waiting);
                let mut notified = Box::pin(self.changed.notified());
                notified.as_mut().enable();
                notified
            };
            notified.await;
        }
    }

    /// Takes a slot of the warm runner of `waiting.key` if one is free and
    /// it is this request's turn (first in the model's line, or no line):
    /// leaves the line and returns the runner's generation.
    fn take_slot(
        &self,
        inner: &mut Inner,
        waiting: &mut Waiting<'_>,
        keep_alive: Option<KeepAlive>,
        prompt: &Prompt,
        num_parallel: usize,
    ) -> Option<(u64, PromptUse)> {
        let key = waiting.key;
        let my_turn = match waiting.ticket {
            Some(t) => inner.waiting_by_key.get(key).and_then(|s| s.first()) == Some(&t),
            None => !inner.waiting_by_key.contains_key(key),
        };
        let r = inner
            .runners
            .get_mut(key)
            .filter(|r| my_turn && r.in_use < num_parallel)?;
        let prompt_use = r.cache.take(prompt, num_parallel)?;
        r.in_use += 1;
        r.idle_expires = None;
        r.expiry_seq += 1;
        if let Some(ka) = keep_alive {
            r.keep_alive = ka;
        }
        let generation = r.generation;
        if let Some(t) = waiting.ticket.take() {
            inner.queued -= 1;
            unwait(&mut inner.waiting_by_key, key, t);
            // The next in line may fit in another free slot.
            self.changed.notify_waiters();
        }
        if waiting.counted {
            inner.queued_counted -= 1;
        }
        waiting.counted = false;
        inner.count_prompt(prompt_use);
        inner.in_flight += 1;
        inner.max_in_flight_seen = inner.max_in_flight_seen.max(inner.in_flight);
        Some((generation, prompt_use))
    }

    /// Ensures there is room for one more runner, evicting the least
    /// recently used idle one if needed. False if every runner is busy.
    fn make_room(&self, inner: &mut Inner, settings: Settings) -> bool {
        while inner.runners.len() >= settings.max_loaded_models as usize {
            let waiting = &inner.waiting_by_key;
            let victim = inner
                .runners
                .iter()
                .filter(|(k, r)| r.ready && r.in_use == 0 && !waiting.contains_key(*k))
                .min_by_key(|(_, r)| r.last_used)
                .map(|(k, _)| k.clone());
            let Some(k) = victim else {
                return false;
            };
            inner.runners.remove(&k);
            inner.evictions += 1;
        }
        true
    }

    fn start_load(
        self: &Arc<Self>,
        inner: &mut Inner,
        model: &Model,
        keep_alive: KeepAlive,
        load_time: Duration,
    ) {
        inner.next_generation += 1;
        let generation = inner.next_generation;
        inner.cold_loads += 1;
        *inner
            .cold_loads_by_model
            .entry(model.display())
            .or_default() += 1;
        inner.runners.insert(
            model.key.clone(),
            Runner {
                model: model.clone(),
                generation,
                ready: false,
                in_use: 0,
                keep_alive,
                last_used: Instant::now(),
                idle_expires: None,
                expiry_seq: 0,
                cache: PromptCache::default(),
            },
        );
        let sched = Arc::clone(self);
        let key = model.key.clone();
        tokio::spawn(async move {
            tokio::time::sleep(load_time).await;
            {
                let mut g = sched.lock();
                if let Some(r) = g
                    .runners
                    .get_mut(&key)
                    .filter(|r| r.generation == generation)
                {
                    r.ready = true;
                    r.last_used = Instant::now();
                    sched.idle(&mut g, &key);
                }
            }
            sched.changed.notify_waiters();
        });
    }

    /// A runner just became idle: start its keep-alive clock.
    fn idle(self: &Arc<Self>, inner: &mut Inner, key: &str) {
        let waiting = inner.waiting_by_key.contains_key(key);
        let Some(r) = inner.runners.get_mut(key) else {
            return;
        };
        if r.in_use > 0 || waiting || !r.ready {
            return;
        }
        r.expiry_seq += 1;
        let now = Utc::now();
        match r.keep_alive {
            KeepAlive::Forever => r.idle_expires = Some(far_future(now)),
            KeepAlive::For(d) if d.is_zero() => {
                inner.runners.remove(key);
            }
            KeepAlive::For(d) => {
                r.idle_expires = Some(expires_after(now, r.keep_alive));
                let (seq, generation) = (r.expiry_seq, r.generation);
                let sched = Arc::clone(self);
                let key = key.to_string();
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        tokio::time::sleep(d).await;
                        let removed = {
                            let mut g = sched.lock();
                            let waiting = g.waiting_by_key.contains_key(&key);
                            let expired = g.runners.get(&key).is_some_and(|r| {
                                r.generation == generation
                                    && r.expiry_seq == seq
                                    && r.in_use == 0
                                    && !waiting
                            });
                            expired && g.runners.remove(&key).is_some()
                        };
                        if removed {
                            sched.changed.notify_waiters();
                        }
                    });
                }
            }
        }
    }

    /// Loads a model at once (control surface), evicting idle models if
    /// needed. False if no room could be made.
    pub fn force_load(
        self: &Arc<Self>,
        model: &Model,
        keep_alive: Option<KeepAlive>,
        settings: Settings,
    ) -> bool {
        let loaded = {
            let mut g = self.lock();
            let inner = &mut *g;
            if let Some(r) = inner.runners.get_mut(&model.key) {
                r.ready = true;
                r.model = model.clone();
                if let Some(ka) = keep_alive {
                    r.keep_alive = ka;
                }
                self.idle(inner, &model.key);
                true
            } else if self.make_room(inner, settings) {
                inner.next_generation += 1;
                let generation = inner.next_generation;
                inner.runners.insert(
                    model.key.clone(),
                    Runner {
                        model: model.clone(),
                        generation,
                        ready: true,
                        in_use: 0,
                        keep_alive: keep_alive.unwrap_or(settings.default_keep_alive),
                        last_used: Instant::now(),
                        idle_expires: None,
                        expiry_seq: 0,
                        cache: PromptCache::default(),
                    },
                );
                self.idle(inner, &model.key);
                true
            } else {
                false
            }
        };
        self.changed.notify_waiters();
        loaded
    }

    /// Expires a runner: unload now if idle, else as soon as it is idle.
    pub fn unload(self: &Arc<Self>, key: &str) {
        {
            let mut g = self.lock();
            let inner = &mut *g;
            let waiting = inner.waiting_by_key.contains_key(key);
            if let Some(r) = inner.runners.get_mut(key) {
                r.keep_alive = KeepAlive::For(Duration::ZERO);
                if r.in_use == 0 && !waiting {
                    inner.runners.remove(key);
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Unloads everything at once (control surface `wipe`).
    pub fn unload_all(&self) {
        self.lock().runners.clear();
        self.changed.notify_waiters();
    }

    /// True if the model is loaded and ready.
    pub fn is_loaded(&self, key: &str) -> bool {
        self.lock().runners.get(key).is_some_and(|r| r.ready)
    }

    /// `/api/ps` entries, latest expiry first.
    pub fn ps(&self) -> Vec<Value> {
        let now = Utc::now();
        let g = self.lock();
        let mut rows: Vec<(DateTime<Utc>, Value)> = g
            .runners
            .values()
            .map(|r| {
                let expires = r
                    .idle_expires
                    .unwrap_or_else(|| expires_after(now, r.keep_alive));
                let m = &r.model;
                let row = json!({
                    "name": m.display(),
                    "model": m.display(),
                    "size": m.size,
                    "digest": m.digest,
                    "details": m.details(),
                    "expires_at": crate::time::rfc3339(expires),
                    "size_vram": m.size,
                    "context_length": 4096,
                });
                (expires, row)
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        rows.into_iter().map(|(_, v)| v).collect()
    }

    /// The scheduling part of `/_emu/stats`.
    pub fn stats(&self) -> Value {
        let g = self.lock();
        json!({
            "cold_loads": g.cold_loads,
            "cold_loads_by_model": g.cold_loads_by_model,
            "evictions": g.evictions,
            "in_flight": g.in_flight,
            "queued": g.queued,
            "rejected_503": g.rejected_503,
            "max_in_flight_seen": g.max_in_flight_seen,
            "prompt_tokens": g.prompt_tokens,
            "prompt_tokens_evaluated": g.prompt_tokens_evaluated,
            "prompt_cache_hits": g.prompt_cache_hits,
        })
    }

    /// Zeroes the counters (not the live gauges).
    pub fn reset_stats(&self) {
        let mut g = self.lock();
        g.cold_loads = 0;
        g.cold_loads_by_model.clear();
        g.evictions = 0;
        g.rejected_503 = 0;
        g.prompt_tokens = 0;
        g.prompt_tokens_evaluated = 0;
        g.prompt_cache_hits = 0;
        g.max_in_flight_seen = g.in_flight;
    }

    /// Wakes waiters after a live configuration change (more slots, etc.).
    pub fn poke(&self) {
        self.changed.notify_waiters();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut g = self.sched.lock();
            let inner = &mut *g;
            inner.in_flight = inner.in_flight.saturating_sub(1);
            if let Some(r) = inner
                .runners
                .get_mut(&self.key)
                .filter(|r| r.generation == self.generation)
            {
                r.in_use = r.in_use.saturating_sub(1);
                r.cache.release(self.prompt.slot);
                r.last_used = Instant::now();
                self.sched.idle(inner, &self.key);
            }
        }
        self.sched.changed.notify_waiters();
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.ticket.is_none() && !self.counted {
            return;
        }
        {
            let mut g = self.sched.lock();
            let inner = &mut *g;
            if self.counted {
                inner.queued_counted = inner.queued_counted.saturating_sub(1);
            }
            if let Some(t) = self.ticket {
                inner.queued = inner.queued.saturating_sub(1);
                unwait(&mut inner.waiting_by_key, self.key, t);
                self.sched.idle(inner, self.key);
            }
        }
        self.sched.changed.notify_waiters();
    }
}

/// Puts `waiting` in its model's line, once.
fn enqueue(inner: &mut Inner, waiting: &mut Waiting<'_>) {
    if waiting.ticket.is_none() {
        inner.next_ticket += 1;
        waiting.ticket = Some(inner.next_ticket);
        inner.queued += 1;
        inner
            .waiting_by_key
            .entry(waiting.key.to_string())
            .or_default()
            .insert(inner.next_ticket);
    }
}

impl Inner {
    fn count_prompt(&mut self, used: PromptUse) {
        self.prompt_tokens += used.total;
        self.prompt_tokens_evaluated += used.evaluated;
        if used.evaluated < used.total {
            self.prompt_cache_hits += 1;
        }
    }
}

fn unwait(waiting: &mut HashMap<String, BTreeSet<u64>>, key: &str, ticket: u64) {
    if let Some(line) = waiting.get_mut(key) {
        line.remove(&ticket);
        if line.is_empty() {
            waiting.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelSpec;

    fn model(name: &str) -> Model {
        let spec = ModelSpec {
            name: name.into(),
            ..ModelSpec::default()
        };
        Model::from_spec(&spec, Utc::now()).expect("valid name")
    }

    fn settings() -> Settings {
        Settings {
            load_time: Duration::from_secs(2),
            num_parallel: 1,
            max_queue: 512,
            max_loaded_models: 1,
            default_keep_alive: KeepAlive::For(Duration::from_secs(300)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cold_slot_waits_the_load_time_and_a_warm_one_does_not() {
        let sched = Arc::new(Scheduler::default());
        let m = model("llama3");
        let cold = sched
            .acquire(&m, &Prompt::empty(), None, settings)
            .await
            .expect("slot");
        assert_eq!(cold.load_duration, Duration::from_secs(2));
        drop(cold);
        let warm = sched
            .acquire(&m, &Prompt::empty(), None, settings)
            .await
            .expect("slot");
        assert_eq!(warm.load_duration, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_expiry_and_eviction() {
        let sched = Arc::new(Scheduler::default());
        let (a, b) = (model("a"), model("b"));
        let ka = Some(KeepAlive::For(Duration::from_secs(10)));
        drop(
            sched
                .acquire(&a, &Prompt::empty(), ka, settings)
                .await
                .expect("slot"),
        );
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(sched.is_loaded(&a.key));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!sched.is_loaded(&a.key), "expired after 10 s idle");

        drop(
            sched
                .acquire(&a, &Prompt::empty(), None, settings)
                .await
                .expect("slot"),
        );
        drop(
            sched
                .acquire(&b, &Prompt::empty(), None, settings)
                .await
                .expect("slot"),
        );
        assert!(!sched.is_loaded(&a.key) && sched.is_loaded(&b.key));
        assert_eq!(sched.stats()["evictions"], 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_requests_get_slots_in_arrival_order() {
        let sched = Arc::new(Scheduler::default());
        let m = model("llama3");
        let first = sched
            .acquire(&m, &Prompt::empty(), None, settings)
            .await
            .expect("slot");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..4 {
            let (sched, m, tx) = (Arc::clone(&sched), m.clone(), tx.clone());
            tokio::spawn(async move {
                let slot = sched
                    .acquire(&m, &Prompt::empty(), None, settings)
                    .await
                    .expect("slot");
                tx.send(i).expect("receiver alive");
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(slot);
            });
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(first);
        let mut order = Vec::new();
        for _ in 0..4 {
            order.push(rx.recv().await.expect("sender alive"));
        }
        assert_eq!(order, [0, 1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_prompt_cache_lives_with_the_runner() {
        let sched = Arc::new(Scheduler::default());
        let m = model("llama3");
        let first = Prompt::generate("be brief", &"word ".repeat(100));
        let used = sched
            .acquire(&m, &first, None, settings)
            .await
            .expect("slot");
        assert_eq!(used.prompt.evaluated, used.prompt.total);
        drop(used);
        let again = sched
            .acquire(&m, &first, None, settings)
            .await
            .expect("slot");
        assert_eq!(again.prompt.evaluated, 1, "cached but the last token");
        drop(again);
        assert_eq!(sched.stats()["prompt_cache_hits"], 1);
        sched.unload(&m.key);
        let reloaded = sched
            .acquire(&m, &first, None, settings)
            .await
            .expect("slot");
        assert_eq!(
            reloaded.prompt.evaluated, reloaded.prompt.total,
            "a new runner starts empty"
        );
    }
}
