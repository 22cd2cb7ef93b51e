//! The state one Envoy worker shares between its root context and its
//! request contexts: the configuration, the map it routes by (installed
//! from shared data when a newer one was published), its picker, metrics
//! and its copy of the cool-down table. Its own module, so the root and
//! HTTP contexts both use it without importing each other.

use std::rc::Rc;

use log::{info, warn};

use super::shared::{self, Metrics};
use crate::config::Config;
use crate::instance_times::InstanceTimes;
use crate::policy::Picker;
use crate::routing_map::RoutingMap;

/// State one Envoy worker shares between its root and request contexts.
pub struct Worker {
    pub config: Rc<Config>,
    pub map: Option<Rc<RoutingMap>>,
    pub picker: Picker,
    pub metrics: Metrics,
    /// This worker's copy of the shared cool-down table.
    pub cooldowns: InstanceTimes,
    /// Id of the shared map this worker last looked at.
    map_id: String,
    /// [`shared::MAP_UPDATES`] when this worker last looked.
    map_updates_seen: Option<u64>,
    /// [`shared::COOLDOWNS_STARTED`] when this worker last read the table.
    cooldowns_seen: Option<u64>,
}

impl Worker {
    /// A worker with the default configuration and no map yet; `seed`
    /// seeds its picker.
    pub fn new(seed: u64) -> Self {
        Worker {
            config: Rc::new(Config::default()),
            map: None,
            picker: Picker::new(seed),
            metrics: Metrics::default(),
            cooldowns: InstanceTimes::default(),
            map_id: String::new(),
            map_updates_seen: None,
            cooldowns_seen: None,
        }
    }

    /// Whether the map this worker routes by has id `id` (whatever the
    /// freshness of its entries).
    pub fn has_map_id(&self, id: &str) -> bool {
        self.map_id.starts_with(&format!("{id}@"))
    }

    /// Installs the shared map if a new one was published since this
    /// worker looked. Called on every tick and every request, so a worker
    /// never routes with a map older than the one published; a request
    /// pays one counter read for it, the map id and the map itself are
    /// read only when the counter moved. The shared map is the compact
    /// [`RoutingMap`] the fetching worker built, not syncd's JSON.
    pub fn sync_map(&mut self) {
        let updates = self.metrics.counter(shared::MAP_UPDATES);
        if updates.is_some() && updates == self.map_updates_seen {
            return;
        }
        let Some(id) = shared::get_text(shared::MAP_ID_KEY) else {
            return;
        };
        self.map_updates_seen = updates;
        // The id with the freshness of its entries: a same-id map with
        // newer exact entries (merged reads) is installed too.
        let fresh = shared::get_text(shared::MAP_FRESH_KEY).unwrap_or_default();
        let version = format!("{id}@{fresh}");
        if id.is_empty() || version == self.map_id {
            return;
        }
        let Some(bytes) = shared::get(shared::ROUTING_KEY).0 else {
            return;
        };
        match RoutingMap::decode(&bytes) {
            Ok(map) => self.install(map, version),
            Err(e) => {
                warn!("ollama-lb: shared map {id} does not decode: {e}");
                self.map_id = version;
            }
        }
    }

    /// Routes with `map` from now on; `version` is its id and the
    /// freshness of its entries (`ID@FRESH`). A same-id map with fresher
    /// entries is installed quietly.
    pub fn install(&mut self, map: RoutingMap, version: String) {
        if !self.map_id.starts_with(&format!("{}@", map.id)) {
            info!(
                "ollama-lb: installed model map {} ({} models, {} instances)",
                map.id,
                map.model_count(),
                map.instances.len()
            );
        }
        self.metrics
            .set_gauge("ollama_lb.map_models", map.model_count() as u64);
        self.metrics
            .set_gauge("ollama_lb.map_instances", map.instances.len() as u64);
        self.map_id = version;
        self.map = Some(Rc::new(map));
    }

    /// Re-reads the shared cool-down table if a cool-down was started
    /// since this worker last read it (one counter read otherwise).
    pub fn sync_cooldowns(&mut self) {
        let started = self.metrics.counter(shared::COOLDOWNS_STARTED);
        if started.is_some() && started == self.cooldowns_seen {
            return;
        }
        self.cooldowns = shared::read_times(shared::COOLDOWNS_KEY);
        self.cooldowns_seen = started;
    }
}
