//! One request: classify it, read the model from the body as it arrives,
//! pick an instance, set the routing header (or `:authority` in host mode),
//! and keep the in-flight gauge and cool-downs up to date.

use std::cell::RefCell;
use std::rc::Rc;

use log::warn;
use model_map::InstanceState;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use super::root::Worker;
use super::shared::{self, EnvoyLoad};
use crate::body_scan::BodyScanner;
use crate::endpoint::{classify, BodyRoute, Endpoint};
use crate::errors::{Api, LbError};
use crate::fleet_reads::{self, LocalAnswer};
use crate::policy::Policy;
use crate::route::{self, Choice};
use crate::routing_map::RoutingMap;

/// Body bytes read from Envoy per host call.
const WINDOW: usize = 64 * 1024;

pub struct Request {
    worker: Rc<RefCell<Worker>>,
    api: Api,
    affinity: Option<String>,
    body: Option<BodyRead>,
    routed: Option<String>,
    /// The per-model in-flight gauge raised for this request.
    model_gauge: Option<String>,
    /// A cool-down was already started for this request's instance.
    cooled: bool,
}

/// A body being scanned for the model.
struct BodyRead {
    route: &'static BodyRoute,
    /// The map as it was when the headers came: the body is routed by the
    /// same map, without reading shared data a second time.
    map: Rc<RoutingMap>,
    scanner: Box<BodyScanner>,
    scanned: usize,
}

impl Request {
    pub fn new(worker: Rc<RefCell<Worker>>) -> Self {
        Request {
            worker,
            api: Api::Native,
            affinity: None,
            body: None,
            routed: None,
            model_gauge: None,
            cooled: false,
        }
    }

    fn map(&self) -> Option<Rc<RoutingMap>> {
        let mut worker = self.worker.borrow_mut();
        worker.sync_map();
        worker.map.clone()
    }

    fn respond(&self, answer: &LocalAnswer) {
        let headers = vec![("content-type", answer.content_type)];
        if let Err(e) =
            hostcalls::send_http_response(answer.status, headers, Some(answer.body.as_bytes()))
        {
            warn!("ollama-lb: cannot send a local answer: {e:?}");
        }
    }

    fn fail(&self, e: &LbError) -> Action {
        let outcome = match e {
            LbError::NoMap => "no_map",
            LbError::TooLarge(_) => "too_large",
            _ => match e.status() {
                404 => "not_found",
                503 => "unavailable",
                _ => "bad_request",
            },
        };
        self.worker
            .borrow()
            .metrics
            .count(&format!("ollama_lb.outcome.{outcome}"), 1);
        self.respond(&LocalAnswer::error(e, self.api));
        Action::Pause
    }

    /// Sends the request to `instance` (its cluster, or its host in host
    /// mode).
    fn route_to(&mut self, instance: &InstanceState) -> Action {
        let config = self.worker.borrow().config.clone();
        for (name, value) in route::routing_headers(config.route_by, &config.route_header, instance)
        {
            shared::set_request_header(name, Some(value));
        }
        // The route was chosen before this filter ran; without this the new
        // header (or authority) would not be looked at.
        if let Err(e) = hostcalls::call_foreign_function("clear_route_cache", None) {
            warn!("ollama-lb: clear_route_cache failed ({e:?}); the route may ignore the model");
        }
        let worker = self.worker.borrow();
        worker
            .metrics
            .add_gauge(&shared::inflight_gauge(&instance.name), 1);
        worker
            .metrics
            .count(&format!("ollama_lb.routed.{}", instance.name), 1);
        worker.metrics.count("ollama_lb.outcome.routed", 1);
        drop(worker);
        self.routed = Some(instance.name.clone());
        Action::Continue
    }

    fn route_any(&mut self, map: &RoutingMap) -> Action {
        let picked = {
            let worker = &mut *self.worker.borrow_mut();
            worker.sync_cooldowns();
            let load = EnvoyLoad::new(&worker.metrics, &worker.cooldowns, worker.config.warm_ms);
            let choice = Choice {
                policy: worker.config.policy,
                picker: &mut worker.picker,
                affinity: self.affinity.as_deref(),
            };
            route::any(map, &load, choice).cloned()
        };
        match picked {
            Ok(instance) => self.route_to(&instance),
            Err(e) => self.fail(&e),
        }
    }

    /// Routes once the scan has an outcome (or the body ended).
    fn decide(&mut self, read: &BodyRead) -> Action {
        let Some(scanned) = read.scanner.result() else {
            warn!("ollama-lb: body scan ended without an outcome");
            return self.fail(&LbError::Json("unexpected EOF".into()));
        };
        let model = match read.route.model(scanned) {
            Ok(m) => m,
            Err(e) => return self.fail(&e),
        };
        let map = Rc::clone(&read.map);
        let picked = {
            let worker = &mut *self.worker.borrow_mut();
            worker.sync_cooldowns();
            let load = EnvoyLoad::new(&worker.metrics, &worker.cooldowns, worker.config.warm_ms);
            let choice = Choice {
                policy: worker.config.policy,
                picker: &mut worker.picker,
                affinity: self.affinity.as_deref(),
            };
            route::for_model(&map, read.route, &model, &load, choice).cloned()
        };
        match picked {
            Ok(instance) => {
                // Remembered only where the map does not show it loaded
                // yet: a load has started there (or the map is behind).
                let config = self.worker.borrow().config.clone();
                if config.warm_ms > 0
                    && config.policy == Policy::LoadedLeastRequest
                    && !route::loaded_on(&map, &model.key, &instance.name)
                {
                    shared::mark_sent(&instance.name, &model.key, config.warm_ms);
                }
                if config.policy == Policy::LoadedLeastRequest {
                    let gauge = shared::model_inflight_gauge(&instance.name, &model.key);
                    self.worker.borrow().metrics.add_gauge(&gauge, 1);
                    self.model_gauge = Some(gauge);
                }
                self.route_to(&instance)
            }
            Err(e) => self.fail(&e),
        }
    }

    fn max_body(&self) -> u64 {
        self.worker.borrow().config.max_body_bytes
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let config = self.worker.borrow().config.clone();
        let head = shared::request_head(&config.route_header, config.affinity_header.as_deref());
        // A client never chooses the cluster.
        if head.has_route_header {
            shared::set_request_header(&config.route_header, None);
        }
        let endpoint = classify(&head.method, &head.path);
        self.api = endpoint.api(&head.path);
        self.affinity = head.affinity;
        let map = self.map();
        // `x-ollama-instance` sends any request, fleet reads included, to
        // that one instance (an operator asking it directly).
        let pinned = head.pinned;
        if let (Endpoint::Local(read), None) = (&endpoint, &pinned) {
            self.worker
                .borrow()
                .metrics
                .count("ollama_lb.outcome.local_read", 1);
            self.respond(&fleet_reads::answer(read, map.as_deref().map(|m| &**m)));
            return Action::Pause;
        }
        let Some(map) = map else {
            return self.fail(&LbError::NoMap);
        };
        if let Some(name) = pinned {
            shared::set_request_header(crate::errors::INSTANCE_HEADER, None);
            return match route::pinned(&map, &name).cloned() {
                Ok(instance) => self.route_to(&instance),
                Err(e) => self.fail(&e),
            };
        }
        let Endpoint::Body(body_route) = endpoint else {
            return self.route_any(&map);
        };
        if head
            .content_length
            .is_some_and(|n| n > config.max_body_bytes)
        {
            return self.fail(&LbError::TooLarge(config.max_body_bytes));
        }
        let mut read = BodyRead {
            route: body_route,
            map,
            scanner: Box::new(BodyScanner::for_route(body_route)),
            scanned: 0,
        };
        if end_of_stream {
            read.scanner.finish();
            return self.decide(&read);
        }
        self.body = Some(read);
        // Held until the body names the model; needs the plugin's
        // `allow_on_headers_stop_iteration: true`.
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(mut read) = self.body.take() else {
            return Action::Continue;
        };
        let mut done = false;
        while !done && read.scanned < body_size {
            let len = WINDOW.min(body_size - read.scanned);
            let Some(chunk) = self.get_http_request_body(read.scanned, len) else {
                warn!("ollama-lb: body bytes {}..+{len} unreadable", read.scanned);
                break;
            };
            if chunk.is_empty() {
                break;
            }
            done = read.scanner.feed(&chunk);
            read.scanned += chunk.len();
        }
        if done || end_of_stream {
            read.scanner.finish();
            return self.decide(&read);
        }
        let max = self.max_body();
        if body_size as u64 > max {
            return self.fail(&LbError::TooLarge(max));
        }
        self.body = Some(read);
        Action::Pause
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        // Trailers end the body without an end-of-stream body callback.
        let Some(mut read) = self.body.take() else {
            return Action::Continue;
        };
        read.scanner.finish();
        self.decide(&read)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(instance) = &self.routed else {
            return Action::Continue;
        };
        // Ollama's queue-full answer, and Envoy's own answer when the
        // instance cannot be reached, both arrive here as 503.
        if shared::header(MapType::HttpResponseHeaders, ":status").as_deref() == Some("503") {
            let worker = self.worker.borrow();
            shared::start_cooldown(&worker.metrics, instance, worker.config.cooldown_ms);
            self.cooled = true;
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(instance) = self.routed.take() {
            // An instance that dropped the connection mid-stream (crashed,
            // killed) is avoided too; a client hanging up is not its fault.
            let details = hostcalls::get_property(vec!["response", "code_details"])
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if !self.cooled && details.starts_with("upstream_reset") {
                let worker = self.worker.borrow();
                shared::start_cooldown(&worker.metrics, &instance, worker.config.cooldown_ms);
            }
            let worker = self.worker.borrow();
            worker
                .metrics
                .add_gauge(&shared::inflight_gauge(&instance), -1);
            if let Some(gauge) = self.model_gauge.take() {
                worker.metrics.add_gauge(&gauge, -1);
            }
        }
    }
}
