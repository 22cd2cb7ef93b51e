//! The fleet's shared state: one slot per instance, written only by that
//! instance's poller, and the published map. Every poll result rebuilds the
//! map right away, so a slow or hung instance never delays the others; a
//! new id is sent on a `watch` channel that long-poll clients wait on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use model_map::limits::{shortened, MAX_MAP_VERBATIM_BYTES};
use model_map::ModelMap;
use serde::Serialize;
use tokio::sync::watch;

use crate::build::{build_map, holdings, Held, InstanceView};
use crate::config::{Config, Instance, PollSettings};
use crate::eds::EndpointAcks;
use crate::health::{Health, Transition};
use crate::histogram::latency_histogram;
use crate::ollama::{Observation, PollError};
use prometheus_client::metrics::histogram::Histogram;

/// A published map and its JSON, serialised once per change.
#[derive(Debug)]
pub struct Published {
    /// The map without the instances' raw entries (`details`, `listed`,
    /// the `/api/ps` `entry`; see [`crate::build::without_raw_entries`]):
    /// only `json` has them.
    pub map: ModelMap,
    pub json: Bytes,
    /// When this daemon first published this content (ms since the Unix
    /// epoch). Sent beside the map so a client can say how new its map is:
    /// a daemon that restarted has only newer maps than a client's, and
    /// answers at once (see `server::get_map`).
    pub published_ms: u64,
    /// When this daemon last changed what the map carries beside its id
    /// (the exact `/api/ps` and `/api/tags` entries, e.g. `expires_at`),
    /// ms; equals `published_ms` for a new id. A client that sends its
    /// own (`fresh=`) gets a same-id map only when this one is newer, so
    /// two replicas whose exact entries differ do not trade maps.
    pub fresh_ms: u64,
}

/// The latest map, `None` until the first full round.
pub type MapReceiver = watch::Receiver<Option<Arc<Published>>>;

/// Everything known about one instance.
#[derive(Debug, Clone)]
pub struct Slot {
    pub instance: Instance,
    /// `IP:port` from the last resolution of the instance's host.
    pub address: String,
    pub health: Health,
    /// Last known models; kept while the instance is down.
    pub held: Vec<Held>,
    pub version: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    /// Error of the current failure streak; after a success, what that
    /// poll left out (entries over a limit, invalid names), if anything.
    pub last_error: Option<String>,
    /// Bytes of the verbatim entries of `held` (see
    /// [`model_map::limits::MAX_MAP_VERBATIM_BYTES`]).
    pub bytes: usize,
    /// Entries the last successful poll left out (over a limit, or an
    /// invalid name).
    pub left_out: usize,
    pub latency: Option<Duration>,
    pub latency_histogram: Histogram,
    pub failures_total: u64,
}

/// Status of one instance as `/v1/instances` reports it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct InstanceReport {
    pub name: String,
    pub url: String,
    pub cluster: String,
    pub healthy: bool,
    /// False until the first poll of this instance has finished.
    pub polled: bool,
    pub version: Option<String>,
    /// RFC 3339, UTC.
    pub last_seen: Option<String>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// Number of models it holds (last known).
    pub models: usize,
    /// Number of those loaded in memory.
    pub loaded: usize,
    pub poll_latency_ms: Option<f64>,
}

/// What [`Fleet::set_members`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemberChange {
    /// Instances to start polling.
    pub added: Vec<Instance>,
    /// Names of instances no longer in the fleet (their pollers stop).
    pub removed: Vec<String>,
}

impl Slot {
    fn new(instance: Instance) -> Slot {
        Slot {
            instance,
            address: String::new(),
            health: Health::default(),
            held: Vec::new(),
            version: None,
            last_seen: None,
            last_error: None,
            bytes: 0,
            left_out: 0,
            latency: None,
            latency_histogram: latency_histogram(),
            failures_total: 0,
        }
    }
}

/// Shared by the pollers, the HTTP API and the metrics.
#[derive(Debug)]
pub struct Fleet {
    settings: PollSettings,
    slots: Mutex<Vec<Slot>>,
    published: watch::Sender<Option<Arc<Published>>>,
    map_changes: AtomicU64,
    /// Ids published so far, newest last, at most [`PAST_IDS`].
    past_ids: Mutex<VecDeque<String>>,
    /// What each Envoy has of the fleet cluster's endpoints.
    acks: Mutex<EndpointAcks>,
    /// Bumped to make every poller poll now (see [`Fleet::repoll`]).
    repoll: watch::Sender<u64>,
}

/// How many published ids [`Fleet::published_before`] remembers.
const PAST_IDS: usize = 1024;

impl Fleet {
    /// One empty slot per configured instance; nothing published yet.
    pub fn new(config: &Config) -> Arc<Fleet> {
        let slots = config.instances.iter().cloned().map(Slot::new).collect();
        Arc::new(Fleet {
            settings: config.poll.clone(),
            slots: Mutex::new(slots),
            published: watch::Sender::new(None),
            map_changes: AtomicU64::new(0),
            past_ids: Mutex::new(VecDeque::new()),
            acks: Mutex::new(EndpointAcks::default()),
            repoll: watch::Sender::new(0),
        })
    }

    /// Makes every poller poll at once, not at its next interval: after
    /// syncd changed the instances itself (a fleet delete, copy, create or
    /// unload), so the map shows it before the next request needs it.
    pub fn repoll(&self) {
        self.repoll.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// [`Fleet::repoll`], then waits (at most one poll timeout) until the
    /// map has changed, so an answer sent after it is already in the map
    /// the filters long-poll.
    pub async fn repoll_and_settle(&self) {
        let mut rx = self.subscribe();
        let before = rx.borrow_and_update().as_ref().map(|p| p.map.id.clone());
        self.repoll();
        let changed = rx.wait_for(|p| p.as_ref().map(|p| &p.map.id) != before.as_ref());
        let _ = tokio::time::timeout(self.settings.timeout, changed).await;
    }

    /// What a poller waits on besides its interval.
    pub fn repolls(&self) -> watch::Receiver<u64> {
        self.repoll.subscribe()
    }

    /// A receiver that sees every newly published map.
    pub fn subscribe(&self) -> MapReceiver {
        self.published.subscribe()
    }

    /// How many receivers watch the map now: held long polls, the status
    /// page's feeds, reconcile.
    pub fn map_watchers(&self) -> usize {
        self.published.receiver_count()
    }

    /// The current map, if the first round has finished.
    pub fn current(&self) -> Option<Arc<Published>> {
        self.published.borrow().clone()
    }

    /// Whether this daemon published a map with `id` (among its last
    /// [`PAST_IDS`]): a client holding it is behind, not ahead.
    pub fn published_before(&self, id: &str) -> bool {
        self.past_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|past| past == id)
    }

    /// How many times a map with a new id was published.
    pub fn map_changes(&self) -> u64 {
        self.map_changes.load(Ordering::Relaxed)
    }

    /// Copies of all slots, in configuration order.
    pub fn slots(&self) -> Vec<Slot> {
        self.lock().clone()
    }

    /// Whether the next poll of `instance` should ask `/api/version`
    /// anyway: while it is unknown, and after failures (the instance may
    /// have been upgraded while unreachable).
    pub fn wants_version(&self, instance: &str) -> bool {
        self.lock()
            .iter()
            .find(|s| s.instance.name == instance)
            .is_some_and(|s| s.version.is_none() || s.health.consecutive_failures > 0)
    }

    /// Makes the fleet `instances`: instances that stay keep their slot
    /// (health, models, metrics), new ones get an empty slot (left out of
    /// the map until their first poll), gone ones are dropped from the map
    /// at once. An instance whose URL changed counts as gone and new.
    pub fn set_members(&self, instances: &[Instance]) -> MemberChange {
        let mut slots = self.lock();
        let mut old: Vec<Slot> = std::mem::take(&mut *slots);
        let mut change = MemberChange::default();
        for instance in instances {
            match old.iter().position(|s| s.instance == *instance) {
                Some(at) => slots.push(old.swap_remove(at)),
                None => {
                    change.added.push(instance.clone());
                    slots.push(Slot::new(instance.clone()));
                }
            }
        }
        change.removed = old.into_iter().map(|s| s.instance.name).collect();
        if !change.removed.is_empty() {
            self.republish(&slots);
        }
        change
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Slot>> {
        // A poisoned lock only means a panic elsewhere mid-update; the data
        // is still the best we have.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one poll of `instance`, republishes the map if its content
    /// changed, and returns the wait before this instance's next poll, or
    /// `None` if it is no longer a member (its poller stops). `address` is
    /// the instance's host as resolved for this poll (kept from the last
    /// poll that resolved it when `None`).
    pub fn record(
        &self,
        instance: &str,
        outcome: Result<Observation, PollError>,
        latency: Duration,
        address: Option<String>,
    ) -> Option<Duration> {
        let mut slots = self.lock();
        let others: usize = slots
            .iter()
            .filter(|s| s.instance.name != instance)
            .map(|s| s.bytes)
            .sum();
        let slot = slots.iter_mut().find(|s| s.instance.name == instance)?;
        let first_poll = !slot.health.polled;
        let moved = match address {
            Some(a) if a != slot.address => {
                slot.address = a;
                true
            }
            _ => false,
        };
        slot.latency = Some(latency);
        crate::histogram::observe(&slot.latency_histogram, latency);
        let outcome = outcome.and_then(|obs| within_map_budget(others, obs));
        let (transition, content_changed) = match outcome {
            Ok(obs) => self.record_success(slot, obs),
            Err(e) => (self.record_failure(slot, e), false),
        };
        let inst = &slot.instance;
        match transition {
            Some(Transition::Up) => {
                tracing::info!(instance = %inst.name, url = %inst.url, "instance up")
            }
            Some(Transition::Down) => tracing::warn!(
                instance = %inst.name,
                url = %inst.url,
                error = slot.last_error.as_deref().unwrap_or(""),
                failures = slot.health.consecutive_failures,
                "instance down"
            ),
            None => {}
        }
        let delay = slot.health.next_delay(&self.settings);
        // Rebuilding is skipped when nothing the map shows has changed, so
        // a large quiet fleet costs no hashing per poll.
        if transition.is_some()
            || content_changed
            || moved
            || first_poll
            || self.published.borrow().is_none()
        {
            self.republish(&slots);
        }
        Some(delay)
    }

    /// Returns the transition and whether the models or version changed.
    fn record_success(&self, slot: &mut Slot, obs: Observation) -> (Option<Transition>, bool) {
        let (held, invalid) = holdings(&obs.tags, &obs.ps);
        let mut changed = held != slot.held;
        let left_out = left_out(&obs, &invalid);
        if changed && left_out.is_some() {
            tracing::warn!(instance = %slot.instance.name, left_out = left_out.as_deref().unwrap_or(""), "skipping models");
        }
        slot.held = held;
        slot.bytes = obs.bytes;
        slot.left_out = obs.tags.refused.len() + obs.ps.refused.len() + invalid.len();
        if obs.version.is_some() && obs.version != slot.version {
            slot.version = obs.version;
            changed = true;
        }
        slot.last_seen = Some(Utc::now());
        slot.last_error = left_out;
        (slot.health.record_success(&self.settings), changed)
    }

    fn record_failure(&self, slot: &mut Slot, error: PollError) -> Option<Transition> {
        let message = error.to_string();
        let inst = &slot.instance;
        if slot.health.healthy || slot.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!(instance = %inst.name, url = %inst.url, error = %message, "poll failed");
        } else {
            tracing::debug!(instance = %inst.name, url = %inst.url, error = %message, "poll failed");
        }
        slot.failures_total += 1;
        slot.last_error = Some(message);
        slot.health.record_failure(&self.settings)
    }

    /// An EDS poll from `gateway`, which has version `acked`: the fleet
    /// cluster's endpoints for it as a `DiscoveryResponse` for `cluster`.
    /// When what the gateway has changed, instances it now knows may
    /// enter the map.
    pub fn eds_poll(&self, gateway: &str, acked: &str, cluster: &str) -> serde_json::Value {
        let slots = self.lock();
        let endpoints = crate::eds::fleet_endpoints(&slots);
        let version = crate::eds::version(&endpoints);
        let changed = self.acks.lock().unwrap_or_else(|p| p.into_inner()).poll(
            gateway,
            acked,
            &version,
            &endpoints,
            std::time::Instant::now(),
        );
        if changed {
            self.republish(&slots);
        }
        crate::eds::response(cluster, &endpoints)
    }

    /// Whether slot `s` may be in the next map: polled, and either in the
    /// current map already or known to every Envoy that polls endpoints
    /// (see [`EndpointAcks`]).
    fn admitted(&self, s: &Slot, acks: &EndpointAcks, now: std::time::Instant) -> bool {
        if !s.health.polled {
            return false;
        }
        let mapped = self
            .published
            .borrow()
            .as_ref()
            .is_some_and(|p| p.map.instance(&s.instance.name).is_some());
        mapped || acks.known_everywhere(&s.address, now)
    }

    /// Builds and publishes the map if its id changed. The first map waits
    /// for every instance's first poll; later ones leave out instances
    /// added since that have not been polled yet, or that an Envoy does
    /// not know yet.
    fn republish(&self, slots: &[Slot]) {
        let first = self.published.borrow().is_none();
        if first && !slots.iter().all(|s| s.health.polled) {
            return;
        }
        let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let views: Vec<_> = slots
            .iter()
            .filter(|s| first || self.admitted(s, &acks, now))
            .map(|s| InstanceView {
                instance: &s.instance,
                address: &s.address,
                healthy: s.health.healthy,
                version: s.version.as_deref(),
                held: &s.held,
            })
            .collect();
        let map = build_map(&views);
        let current = self.published.borrow().clone();
        let now_ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        match current {
            Some(p) if p.map.id == map.id => self.refresh(&p, map, now_ms),
            _ => self.publish_new(map, now_ms),
        }
    }

    /// The same id with other exact entries: republished under that id,
    /// with a later `fresh_ms`, so the merged reads show what instances
    /// sent while routing (and the map time) stay as they were.
    fn refresh(&self, current: &Published, map: ModelMap, now_ms: u64) {
        let (map, json) = decodable(map);
        let json = Bytes::from(json);
        if json == current.json {
            return;
        }
        tracing::debug!(id = %map.id, "model map entries refreshed");
        self.published.send_replace(Some(Arc::new(Published {
            map: crate::build::without_raw_entries(map),
            json,
            published_ms: current.published_ms,
            fresh_ms: now_ms.max(current.fresh_ms + 1),
        })));
    }

    fn publish_new(&self, map: ModelMap, now_ms: u64) {
        let (map, json) = decodable(map);
        tracing::info!(
            id = %map.id,
            instances = map.instances.len(),
            healthy = map.instances.iter().filter(|i| i.healthy).count(),
            models = map.models.len(),
            digest_mismatches = map.models.iter().filter(|m| m.digest_mismatch).count(),
            "model map changed"
        );
        let json = Bytes::from(json);
        // Only the JSON carries the instances' raw entries: the kept map
        // would otherwise hold a second copy of every one beside the
        // slots' (most of syncd's memory at 1,000 instances).
        let map = crate::build::without_raw_entries(map);
        self.map_changes.fetch_add(1, Ordering::Relaxed);
        {
            let mut past = self.past_ids.lock().unwrap_or_else(|p| p.into_inner());
            if past.len() == PAST_IDS {
                past.pop_front();
            }
            past.push_back(map.id.clone());
        }
        self.published.send_replace(Some(Arc::new(Published {
            map,
            json,
            published_ms: now_ms,
            fresh_ms: now_ms,
        })));
    }

    /// Per-instance status for `/v1/instances` and `syncd status`.
    pub fn reports(&self) -> Vec<InstanceReport> {
        self.lock().iter().map(report).collect()
    }
}

/// `map` without the model entries the filter's decoder would leave out
/// (checked with its own limits, [`model_map::decode`]). Instances'
/// entries are checked before they are kept, so this finds nothing unless
/// those checks and the decoder disagree; then the map still goes out.
fn decodable(mut map: ModelMap) -> (ModelMap, Vec<u8>) {
    let json = serde_json::to_vec(&map).unwrap_or_default();
    let bad = match model_map::decode::undecodable_entries(&json) {
        Ok(bad) if bad.is_empty() => return (map, json),
        Ok(bad) => bad,
        Err(e) => {
            tracing::error!(error = %e, "the map does not decode as a map; publishing it anyway");
            return (map, json);
        }
    };
    let keys: Vec<String> = bad
        .iter()
        .filter_map(|&at| map.models.get(at).map(|m| m.key.clone()))
        .collect();
    tracing::error!(models = ?keys, "leaving out model entries the filter could not decode");
    map.models.retain(|m| !keys.contains(&m.key));
    let map = map.sealed();
    let json = serde_json::to_vec(&map).unwrap_or_default();
    (map, json)
}

/// The poll as a failure when its entries would take the map's verbatim
/// entries (`others` from the other instances) over the fleet's cap.
fn within_map_budget(others: usize, obs: Observation) -> Result<Observation, PollError> {
    let total = others.saturating_add(obs.bytes);
    if total > MAX_MAP_VERBATIM_BYTES {
        return Err(PollError::OverLimit {
            path: "/api/tags",
            message: format!(
                "its models would take the map to {total} bytes of entries, over the \
                 limit of {MAX_MAP_VERBATIM_BYTES} for the fleet"
            ),
        });
    }
    Ok(obs)
}

/// What a successful poll left out, in one line for `last_error`: the
/// entries over a limit, then the invalid names (shortened).
fn left_out(obs: &Observation, invalid: &[String]) -> Option<String> {
    let mut parts: Vec<String> = obs
        .tags
        .refused
        .iter()
        .chain(&obs.ps.refused)
        .cloned()
        .collect();
    if !invalid.is_empty() {
        let names: Vec<String> = invalid
            .iter()
            .take(5)
            .map(|n| format!("{:?}", shortened(n, 100)))
            .collect();
        let more = invalid.len().saturating_sub(names.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        parts.push(format!("invalid model names {}{more}", names.join(", ")));
    }
    if parts.is_empty() {
        return None;
    }
    let count = parts.len();
    let shown: Vec<String> = parts.into_iter().take(3).collect();
    let more = count.saturating_sub(shown.len());
    let more = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    Some(format!("left out: {}{more}", shown.join("; ")))
}

fn report(s: &Slot) -> InstanceReport {
    InstanceReport {
        name: s.instance.name.clone(),
        url: s.instance.url.clone(),
        cluster: s.instance.cluster.clone(),
        healthy: s.health.healthy,
        polled: s.health.polled,
        version: s.version.clone(),
        last_seen: s
            .last_seen
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        last_error: s.last_error.clone(),
        consecutive_failures: s.health.consecutive_failures,
        consecutive_successes: s.health.consecutive_successes,
        models: s.held.len(),
        loaded: s.held.iter().filter(|h| h.replica.loaded.is_some()).count(),
        poll_latency_ms: s.latency.map(|d| d.as_secs_f64() * 1000.0),
    }
}
