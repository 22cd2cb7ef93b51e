//! Root context: configuration, the per-worker view of the model map, and
//! (for the one worker holding the fetch lease) the long poll to syncd.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, MapType};

use super::http::Request;
use super::shared;
use super::worker::Worker;
use crate::config::Config;
use crate::map_poll::{Answer, MapPoll, LEASE_TTL_MS, POLL_GRACE_SECONDS};
use crate::map_store::decode_map;
use crate::routing_map::RoutingMap;

/// How often a worker looks for a new map (one counter read) when no
/// request comes: short, so a map reaches every worker soon after the
/// fetching worker shared it.
const TICK: Duration = Duration::from_millis(20);

pub struct Root {
    worker: Rc<RefCell<Worker>>,
    owner: String,
    /// The token of the outstanding map poll.
    poll: Option<u32>,
    schedule: MapPoll,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        let seed = shared::now_nanos() ^ (u64::from(context_id) << 32);
        Root {
            worker: Rc::new(RefCell::new(Worker::new(seed))),
            owner: format!("{seed:016x}"),
            poll: None,
            schedule: MapPoll::default(),
        }
    }

    fn config(&self) -> Rc<Config> {
        self.worker.borrow().config.clone()
    }

    fn sync_map(&mut self) {
        self.worker.borrow_mut().sync_map();
    }

    /// The lease holder keeps one long poll to syncd outstanding; the
    /// others check now and then whether the lease has expired.
    fn drive_poll(&mut self, now: u64) {
        if self.schedule.lease_due(now) {
            let leader = shared::claim_lease(&self.owner, now, LEASE_TTL_MS);
            self.schedule.lease_checked(now, leader);
        }
        if !self.schedule.poll_due(now) {
            return;
        }
        let config = self.config();
        let since = shared::get_text(shared::MAP_ID_KEY).unwrap_or_default();
        let at = shared::get_text(shared::MAP_AT_KEY);
        let fresh = shared::get_text(shared::MAP_FRESH_KEY);
        let times = crate::map_store::MapTimes {
            at: at.as_deref(),
            fresh: fresh.as_deref(),
        };
        let path =
            crate::map_store::poll_path(&config.map_path, &since, times, config.long_poll_seconds);
        let headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", config.syncd_authority.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = Duration::from_secs(u64::from(config.long_poll_seconds) + POLL_GRACE_SECONDS);
        match self.dispatch_http_call(&config.syncd_cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                self.poll = Some(token);
                self.schedule.sent();
            }
            Err(e) => {
                warn!(
                    "ollama-lb: cannot call syncd cluster {}: {e:?}",
                    config.syncd_cluster
                );
                self.back_off(now);
            }
        }
    }

    fn back_off(&mut self, now: u64) {
        self.schedule.ended(now, false);
    }

    /// Decodes syncd's map (the only decode of it in this process),
    /// shares its compact form with every worker and installs it here.
    fn publish(&mut self, now: u64, body: &[u8]) {
        let started = shared::now_nanos();
        let map = match decode_map(body) {
            Ok(map) => RoutingMap::new(map),
            Err(e) => {
                warn!("ollama-lb: syncd sent a map that does not decode: {e}");
                return self.back_off(now);
            }
        };
        let id = map.id.clone();
        let at = shared::header(MapType::HttpCallResponseHeaders, "x-ollama-lb-map-time")
            .unwrap_or_default();
        let fresh = shared::header(MapType::HttpCallResponseHeaders, "x-ollama-lb-map-fresh")
            .unwrap_or_default();
        let stored = shared::set(shared::ROUTING_KEY, &map.encode(), None)
            .and_then(|()| shared::set(shared::MAP_AT_KEY, at.as_bytes(), None))
            .and_then(|()| shared::set(shared::MAP_FRESH_KEY, fresh.as_bytes(), None))
            .and_then(|()| shared::set(shared::MAP_ID_KEY, id.as_bytes(), None));
        if let Err(e) = stored {
            warn!("ollama-lb: cannot share map {id}: {e:?}");
            return self.back_off(now);
        }
        let took_ms = shared::now_nanos().saturating_sub(started) as f64 / 1e6;
        if self.worker.borrow().has_map_id(&id) {
            debug!("ollama-lb: map {id} with fresher entries shared in {took_ms:.1} ms");
        } else {
            info!(
                "ollama-lb: map {id} from syncd ({} bytes) decoded and shared in {took_ms:.1} ms",
                body.len()
            );
        }
        let _ = shared::set(shared::MAP_TIME_KEY, now.to_string().as_bytes(), None);
        self.end_cooldowns_of_revived(&map);
        let mut worker = self.worker.borrow_mut();
        worker.install(map, format!("{id}@{fresh}"));
        worker.metrics.count(shared::MAP_UPDATES, 1);
        drop(worker);
        self.schedule.ended(now, true);
    }

    /// Instances the new map shows back up are no longer ranked last for
    /// failures from while they were down (for every worker).
    fn end_cooldowns_of_revived(&self, new: &RoutingMap) {
        let worker = self.worker.borrow();
        let Some(old) = &worker.map else {
            return;
        };
        let revived = crate::map_store::revived(old, new);
        if revived.is_empty() {
            return;
        }
        let ended = shared::update_times(shared::COOLDOWNS_KEY, |t| t.remove(&revived))
            .and_then(|()| shared::update_times(shared::COOLDOWN_LENS_KEY, |t| t.remove(&revived)));
        match ended {
            Ok(()) => worker.metrics.count(shared::COOLDOWNS_STARTED, 1),
            Err(e) => warn!("ollama-lb: cannot end the cool-downs of {revived:?}: {e:?}"),
        }
    }

    fn update_age(&self, now: u64) {
        let Some(t) = shared::get_text(shared::MAP_TIME_KEY).and_then(|t| t.parse::<u64>().ok())
        else {
            return;
        };
        self.worker
            .borrow()
            .metrics
            .set_gauge("ollama_lb.map_age_ms", now.saturating_sub(t));
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if self.poll != Some(token) {
            return;
        }
        self.poll = None;
        let now = shared::now_ms();
        let status =
            shared::header(MapType::HttpCallResponseHeaders, ":status").unwrap_or_default();
        match Answer::of_status(&status) {
            Answer::Map => {
                let body = self
                    .get_http_call_response_body(0, body_size)
                    .unwrap_or_default();
                self.publish(now, &body);
            }
            Answer::Unchanged => {
                let _ = shared::set(shared::MAP_TIME_KEY, now.to_string().as_bytes(), None);
                self.schedule.ended(now, true);
            }
            Answer::NotReady => self.back_off(now),
            Answer::Unexpected => {
                warn!("ollama-lb: syncd answered {status:?} to the map poll; retrying");
                self.back_off(now);
            }
        }
        self.sync_map();
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config = match Config::try_from_json(&bytes) {
            Ok(c) => c,
            Err(e) => {
                error!("ollama-lb: rejected configuration: {e}");
                return false;
            }
        };
        self.worker.borrow_mut().config = Rc::new(config);
        if let Err(e) = hostcalls::set_tick_period(TICK) {
            error!("ollama-lb: cannot start the tick: {e:?}");
            return false;
        }
        self.sync_map();
        true
    }

    fn on_tick(&mut self) {
        let now = shared::now_ms();
        self.sync_map();
        self.drive_poll(now);
        self.update_age(now);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request::new(self.worker.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
