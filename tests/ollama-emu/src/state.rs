//! The state every handler shares: live configuration, models, the
//! scheduler, faults and request counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use model_map::name::ModelName;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::config::Config;
use crate::duration::KeepAlive;
use crate::faults::Faults;
use crate::models::{Model, ModelStore};
use crate::scheduler::{Scheduler, Settings};

/// A `refuse` fault for the listener: close for `duration`, and say so
/// on `closed` once the socket is closed.
pub struct RefuseRequest {
    pub duration: Duration,
    pub closed: oneshot::Sender<()>,
}

/// Request counters for `/_emu/stats`.
#[derive(Debug, Default)]
struct RequestStats {
    total: u64,
    by_model: BTreeMap<String, u64>,
    by_path: BTreeMap<String, u64>,
}

/// Shared emulator state (behind an `Arc`).
pub struct EmuState {
    config: Mutex<Config>,
    models: Mutex<ModelStore>,
    pub sched: Arc<Scheduler>,
    pub faults: watch::Sender<Faults>,
    refuse: mpsc::UnboundedSender<RefuseRequest>,
    requests: Mutex<RequestStats>,
    /// Listening on loopback (the Host check applies).
    pub(crate) loopback: std::sync::atomic::AtomicBool,
    /// End of the current `refuse` window, if any.
    refusing_until: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EmuState {
    /// Builds the state from a validated configuration; returns the
    /// receiving end of `refuse` requests for the listener.
    pub fn new(mut config: Config) -> (Arc<Self>, mpsc::UnboundedReceiver<RefuseRequest>) {
        let now = Utc::now();
        let mut store = ModelStore::default();
        let specs = std::mem::take(&mut config.models);
        let (refuse, refuse_rx) = mpsc::unbounded_channel();
        let state = Arc::new(EmuState {
            config: Mutex::new(config),
            models: Mutex::new(ModelStore::default()),
            sched: Arc::new(Scheduler::default()),
            faults: watch::Sender::new(Faults::default()),
            refuse,
            requests: Mutex::new(RequestStats::default()),
            refusing_until: Mutex::new(None),
            loopback: std::sync::atomic::AtomicBool::new(true),
        });
        let mut to_load = Vec::new();
        for spec in &specs {
            if let Some(m) = Model::from_spec(spec, now) {
                if spec.loaded {
                    to_load.push(m.clone());
                }
                store.insert(m);
            }
        }
        *lock(&state.models) = store;
        let settings = state.settings();
        for m in to_load {
            state.sched.force_load(&m, None, settings);
        }
        (state, refuse_rx)
    }

    /// The live configuration (a copy).
    pub fn config(&self) -> Config {
        lock(&self.config).clone()
    }

    /// Changes the live configuration.
    pub fn update_config(&self, f: impl FnOnce(&mut Config)) {
        f(&mut lock(&self.config));
        self.sched.poke();
    }

    /// Scheduler settings from the live configuration.
    pub fn settings(&self) -> Settings {
        let c = lock(&self.config);
        Settings {
            load_time: c.load_time,
            num_parallel: c.num_parallel.max(1),
            max_queue: c.max_queue,
            max_loaded_models: c.max_loaded_models.max(1),
            default_keep_alive: c.keep_alive,
        }
    }

    pub fn default_keep_alive(&self) -> KeepAlive {
        lock(&self.config).keep_alive
    }

    /// The model store, locked.
    pub fn models(&self) -> MutexGuard<'_, ModelStore> {
        lock(&self.models)
    }

    /// A model by any spelling of its name.
    pub fn find(&self, name: &ModelName) -> Option<Model> {
        self.models().get(&name.key()).cloned()
    }

    pub fn faults(&self) -> Faults {
        self.faults.borrow().clone()
    }

    /// Asks the listener to refuse connections for `d`; resolves once the
    /// listening socket is closed.
    pub async fn refuse_for(&self, d: Duration) {
        *lock(&self.refusing_until) = Some(Instant::now() + d);
        let (closed, wait) = oneshot::channel();
        // The listener may be gone during shutdown; nothing to refuse then.
        if self
            .refuse
            .send(RefuseRequest {
                duration: d,
                closed,
            })
            .is_ok()
        {
            let _ = wait.await;
        }
    }

    /// True during a `refuse` window: requests on connections opened
    /// before it get the connection dropped, as a dead server would.
    pub fn refusing(&self) -> bool {
        lock(&self.refusing_until).is_some_and(|until| Instant::now() < until)
    }

    /// Counts a non-control request by path.
    pub fn count_request(&self, path: &str) {
        let mut r = lock(&self.requests);
        r.total += 1;
        *r.by_path.entry(path.to_string()).or_default() += 1;
    }

    /// Counts a request for a model, by display name when the name parses.
    pub fn count_model(&self, raw: &str) {
        let name = match ModelName::parse(raw) {
            Ok(n) => self
                .models()
                .get(&n.key())
                .map_or_else(|| n.display_shortest(), |m| m.display()),
            Err(_) => raw.to_string(),
        };
        *lock(&self.requests).by_model.entry(name).or_default() += 1;
    }

    /// `/_emu/stats`.
    pub fn stats(&self) -> Value {
        let mut v = self.sched.stats();
        let r = lock(&self.requests);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("requests_total".into(), json!(r.total));
            obj.insert("requests_by_model".into(), json!(r.by_model));
            obj.insert("requests_by_path".into(), json!(r.by_path));
        }
        v
    }

    pub fn reset_stats(&self) {
        *lock(&self.requests) = RequestStats::default();
        self.sched.reset_stats();
    }

    /// Start time for new models.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
