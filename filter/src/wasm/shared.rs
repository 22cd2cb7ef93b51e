//! Host calls with every failure handled: time, Envoy metrics (process-wide,
//! so all workers see the same in-flight counts) and shared data (the map,
//! cool-downs, the fetch lease).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use log::warn;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, MetricType, Status};

use crate::instance_times::InstanceTimes;
use crate::request_head::RequestHead;
use crate::route::Load;

/// Shared-data key of the installed map in its compact form
/// ([`crate::routing_map::RoutingMap::encode`]; the number is its format,
/// [`crate::routing_map::ROUTING_FORMAT`]).
pub const ROUTING_KEY: &str = "ollama_lb.routing.1";
/// Shared-data key of the map id, written after [`ROUTING_KEY`].
pub const MAP_ID_KEY: &str = "ollama_lb.map_id";
/// Shared-data key of the last time syncd confirmed the map (ms).
pub const MAP_TIME_KEY: &str = "ollama_lb.map_time";
/// Shared-data key of when syncd published the shared map (its
/// `x-ollama-lb-map-time`, ms), sent back as `at=` on the next poll so a
/// restarted syncd answers at once.
pub const MAP_AT_KEY: &str = "ollama_lb.map_at";
/// Shared-data key of how fresh the shared map's exact entries are (its
/// `x-ollama-lb-map-fresh`, ms), sent back as `fresh=`; workers reinstall
/// a map whose id is the same when this moves.
pub const MAP_FRESH_KEY: &str = "ollama_lb.map_fresh";
/// Shared-data key of the fetch lease: `<owner> <expires_ms>`.
pub const LEASE_KEY: &str = "ollama_lb.fetch_lease";

/// Milliseconds since the Unix epoch (0 if the host cannot tell).
pub fn now_ms() -> u64 {
    now_nanos() / 1_000_000
}

/// Nanoseconds since the Unix epoch (0 if the host cannot tell).
pub fn now_nanos() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Reads a shared-data value and its CAS token.
pub fn get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

/// Reads a shared-data value as text.
pub fn get_text(key: &str) -> Option<String> {
    get(key).0.and_then(|b| String::from_utf8(b).ok())
}

/// Writes a shared-data value; `cas` makes it conditional.
pub fn set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    hostcalls::set_shared_data(key, Some(value), cas)
}

/// Shared-data key of the cool-down table: until when (ms) each instance
/// is avoided.
pub const COOLDOWNS_KEY: &str = "ollama_lb.cooldowns";
/// Shared-data key of each instance's last cool-down length (ms), for
/// [`crate::cooldown::next`].
pub const COOLDOWN_LENS_KEY: &str = "ollama_lb.cooldown_lens";
/// Counter of cool-downs started; a worker re-reads [`COOLDOWNS_KEY`] only
/// when it moved.
pub const COOLDOWNS_STARTED: &str = "ollama_lb.cooldowns_started";
/// Counter of maps published to shared data; a worker re-reads
/// [`MAP_ID_KEY`] only when it moved.
pub const MAP_UPDATES: &str = "ollama_lb.map_updates";

/// Shared-data key of when (ms) a request for the model with routing key
/// `model` last went to each instance that did not have it loaded.
pub fn sent_key(model: &str) -> String {
    format!("ollama_lb.sent.{model}")
}

/// Reads the table at `key` (empty if absent).
pub fn read_times(key: &str) -> InstanceTimes {
    get(key)
        .0
        .map_or_else(InstanceTimes::default, |b| InstanceTimes::parse(&b))
}

/// Changes the table at `key` with a compare-and-swap, retried a few times
/// when another worker wrote in between.
pub fn update_times(key: &str, change: impl Fn(&mut InstanceTimes)) -> Result<(), Status> {
    let mut last = Status::CasMismatch;
    for _ in 0..4 {
        let (value, cas) = get(key);
        let mut table = value.map_or_else(InstanceTimes::default, |b| InstanceTimes::parse(&b));
        change(&mut table);
        match set(key, &table.encode(), cas) {
            Err(Status::CasMismatch) => last = Status::CasMismatch,
            other => return other,
        }
    }
    Err(last)
}

/// Starts (or, for a fault that lasts, lengthens) a cool-down of
/// `instance` for every worker; `base_ms` is the configured length.
pub fn start_cooldown(metrics: &Metrics, instance: &str, base_ms: u64) {
    let now = now_ms();
    let until = read_times(COOLDOWNS_KEY).get(instance);
    let len = read_times(COOLDOWN_LENS_KEY).get(instance);
    let (next_until, next_len) = crate::cooldown::next(now, until.zip(len), base_ms);
    if Some(next_until) == until {
        return;
    }
    let forget = now.saturating_sub(crate::cooldown::memory(base_ms));
    let stored = update_times(COOLDOWN_LENS_KEY, |t| t.set(instance, next_len)).and_then(|()| {
        update_times(COOLDOWNS_KEY, |t| {
            t.forget_before(forget);
            t.set(instance, next_until);
        })
    });
    match stored {
        Ok(()) => metrics.count(COOLDOWNS_STARTED, 1),
        Err(e) => warn!("ollama-lb: cannot record cool-down of {instance}: {e:?}"),
    }
}

/// Records that a request for `model` was just sent to `instance`, which
/// did not have it loaded per the map; entries older than `warm_ms` go.
pub fn mark_sent(instance: &str, model: &str, warm_ms: u64) {
    let now = now_ms();
    let stored = update_times(&sent_key(model), |t| {
        t.forget_before(now.saturating_sub(warm_ms));
        t.set(instance, now);
    });
    if let Err(e) = stored {
        warn!("ollama-lb: cannot record a request for {model} on {instance}: {e:?}");
    }
}

/// Tries to take or renew the fetch lease for `owner` until `now + ttl`.
/// The key is created first (unconditional, expired) so the claim itself is
/// always a compare-and-swap that only one worker can win.
pub fn claim_lease(owner: &str, now: u64, ttl_ms: u64) -> bool {
    let (mut value, mut cas) = get(LEASE_KEY);
    if value.is_none() {
        // Not empty: the host reads an empty value back as absent.
        let _ = set(LEASE_KEY, b"- 0", None);
        (value, cas) = get(LEASE_KEY);
    }
    let Some(value) = value else { return false };
    if !crate::map_store::may_claim(&String::from_utf8_lossy(&value), owner, now) {
        return false;
    }
    let claim = crate::map_store::lease_value(owner, now.saturating_add(ttl_ms));
    set(LEASE_KEY, claim.as_bytes(), cas).is_ok()
}

/// Envoy metrics defined by the filter, cached by name (defining one twice
/// would allocate a second id).
#[derive(Default)]
pub struct Metrics {
    ids: RefCell<HashMap<String, u32>>,
}

impl Metrics {
    fn id(&self, kind: MetricType, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.borrow().get(name) {
            return Some(*id);
        }
        match hostcalls::define_metric(kind, name) {
            Ok(id) => {
                self.ids.borrow_mut().insert(name.to_string(), id);
                Some(id)
            }
            Err(e) => {
                warn!("ollama-lb: cannot define metric {name}: {e:?}");
                None
            }
        }
    }

    /// Adds `by` to counter `name`.
    pub fn count(&self, name: &str, by: i64) {
        if let Some(id) = self.id(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, by);
        }
    }

    /// Adds `by` (may be negative) to gauge `name`.
    pub fn add_gauge(&self, name: &str, by: i64) {
        if let Some(id) = self.id(MetricType::Gauge, name) {
            let _ = hostcalls::increment_metric(id, by);
        }
    }

    /// Sets gauge `name`.
    pub fn set_gauge(&self, name: &str, value: u64) {
        if let Some(id) = self.id(MetricType::Gauge, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    /// Reads counter `name` (`None` if the host cannot tell).
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.id(MetricType::Counter, name)
            .and_then(|id| hostcalls::get_metric(id).ok())
    }

    /// Reads gauge `name` (0 if unknown).
    pub fn gauge(&self, name: &str) -> u64 {
        self.id(MetricType::Gauge, name)
            .and_then(|id| hostcalls::get_metric(id).ok())
            .unwrap_or(0)
    }
}

/// Name of the in-flight gauge of an instance.
pub fn inflight_gauge(instance: &str) -> String {
    format!("ollama_lb.inflight.{instance}")
}

/// Name of the in-flight gauge of one model (by routing key) on an
/// instance.
pub fn model_inflight_gauge(instance: &str, model: &str) -> String {
    format!("ollama_lb.model_inflight.{instance}.{model}")
}

/// [`Load`] read from Envoy: in-flight gauges, the worker's copy of the
/// cool-down table, and (read on first use) the model's recently-sent
/// table. The clock is read only if a table needs it.
pub struct EnvoyLoad<'a> {
    pub metrics: &'a Metrics,
    pub cooldowns: &'a InstanceTimes,
    /// The plugin's `warm_ms`.
    pub warm_ms: u64,
    now: Cell<Option<u64>>,
    sent: RefCell<Option<InstanceTimes>>,
}

impl<'a> EnvoyLoad<'a> {
    pub fn new(metrics: &'a Metrics, cooldowns: &'a InstanceTimes, warm_ms: u64) -> Self {
        EnvoyLoad {
            metrics,
            cooldowns,
            warm_ms,
            now: Cell::new(None),
            sent: RefCell::new(None),
        }
    }

    fn now(&self) -> u64 {
        *self.now.get().get_or_insert_with(now_ms)
    }
}

impl Load for EnvoyLoad<'_> {
    fn inflight(&self, instance: &str) -> u64 {
        self.metrics.gauge(&inflight_gauge(instance))
    }

    fn model_inflight(&self, instance: &str, model: &str) -> u64 {
        self.metrics.gauge(&model_inflight_gauge(instance, model))
    }

    fn cooling(&self, instance: &str) -> bool {
        self.cooldowns
            .get(instance)
            .is_some_and(|until| until > self.now())
    }

    fn recently_sent(&self, instance: &str, model: &str) -> bool {
        if self.warm_ms == 0 {
            return false;
        }
        let mut sent = self.sent.borrow_mut();
        let table = sent.get_or_insert_with(|| read_times(&sent_key(model)));
        table
            .get(instance)
            .is_some_and(|at| self.now().saturating_sub(at) < self.warm_ms)
    }
}

/// A header value as text; the SDK's string getter panics on bytes that
/// are not UTF-8, which a client controls.
pub fn header(map: MapType, name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(map, name)
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// A stream property (e.g. `upstream.address`) as text, if the host has it.
pub fn property_text(path: &[&str]) -> Option<String> {
    hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Sets (or with `None` removes) a request header.
pub fn set_request_header(name: &str, value: Option<&str>) {
    if let Err(e) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value) {
        warn!("ollama-lb: cannot set request header {name}: {e:?}");
    }
}

/// The request headers the filter needs, in one host call. (The SDK reads
/// header names as UTF-8 without a fallback; Envoy's codecs only accept
/// token characters in names, so that cannot fail here.)
pub fn request_head(endpoints_header: &str, affinity_header: Option<&str>) -> RequestHead {
    let pairs = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
    RequestHead::from_pairs(
        pairs.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        endpoints_header,
        affinity_header,
    )
}
