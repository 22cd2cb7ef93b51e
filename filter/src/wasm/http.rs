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

use super::shared::{self, EnvoyLoad};
use super::worker::Worker;
use crate::body_scan::BodyScanner;
use crate::config::{Config, RouteBy};
use crate::conversation::{ConversationKey, Source};
use crate::endpoint::{classify, BodyRoute, Endpoint, Op};
use crate::errors::{Api, LbError};
use crate::fleet_manage::{self, UNLOAD_BODY_MAX};
use crate::fleet_reads::{self, LocalAnswer};
use crate::gin_path;
use crate::guards::{self, Verdict};
use crate::policy::{Conversation, Policy};
use crate::request_head::RequestHead;
use crate::route::{self, Choice};
use crate::routing_map::RoutingMap;

/// Body bytes read from Envoy per host call.
const WINDOW: usize = 64 * 1024;

pub struct Request {
    worker: Rc<RefCell<Worker>>,
    api: Api,
    affinity: Option<String>,
    /// The body's conversation key, once read.
    conversation: Option<u64>,
    body: Option<BodyRead>,
    routed: Option<Routed>,
    /// A cool-down was already started for the serving instance.
    cooled: bool,
    /// CORS headers for the answer (an allowed cross-origin request).
    cors: Vec<(&'static str, String)>,
}

/// A body being scanned for the model.
struct BodyRead {
    route: &'static BodyRoute,
    /// The map as it was when the headers came: the body is routed by the
    /// same map, without reading shared data a second time.
    map: Rc<RoutingMap>,
    scanner: Box<BodyScanner>,
    /// The conversation key's walker (chat and generate, when enabled).
    conversation: Option<Box<ConversationKey>>,
    scanned: usize,
    /// The scan has its outcome.
    found: bool,
    /// A small native generate or chat body: read it whole before
    /// routing, since it may be the unload idiom (see [`fleet_manage`]).
    wait_end: bool,
    /// A delete or copy: checked here, carried out by the fleet.
    fleet: bool,
}

/// Where a routed request went, for the gauges and cool-downs.
struct Routed {
    /// The instance the request is counted on: the first listed until the
    /// response shows that Envoy's retries ended elsewhere.
    instance: String,
    /// The instances listed to Envoy, best first: `(name, address)`.
    listed: Vec<(String, String)>,
    /// The request's model, with the map it was routed by.
    model: Option<(String, Rc<RoutingMap>)>,
    /// The per-model in-flight gauge raised for this request.
    model_gauge: Option<String>,
}

impl Request {
    pub fn new(worker: Rc<RefCell<Worker>>) -> Self {
        Request {
            worker,
            api: Api::Native,
            affinity: None,
            conversation: None,
            body: None,
            routed: None,
            cooled: false,
            cors: Vec::new(),
        }
    }

    fn map(&self) -> Option<Rc<RoutingMap>> {
        let mut worker = self.worker.borrow_mut();
        worker.sync_map();
        worker.map.clone()
    }

    fn respond(&self, answer: &LocalAnswer) {
        let headers = [("content-type", answer.content_type)];
        send_answer(answer.status, &headers, &self.cors, answer.body.as_bytes());
    }

    /// gin's trailing-slash redirect, then Ollama's CORS and Host checks,
    /// on the path decoded as Go does (which `head.path` becomes). `Some`
    /// when the filter answered. An allowed `Origin` is answered here (its
    /// headers go on the response) and not passed on: an instance would
    /// judge it by its own `OLLAMA_ORIGINS` and the rewritten `Host`.
    fn guard(&mut self, head: &mut RequestHead) -> Option<Action> {
        let raw = std::mem::take(&mut head.path);
        head.path = gin_path::go_path(&raw);
        let query = gin_path::raw_query(&raw);
        if let Some(r) = gin_path::trailing_slash_redirect(&head.method, &head.path, query) {
            let mut headers = vec![("location", r.location.as_str())];
            headers.extend(r.content_type.map(|c| ("content-type", c)));
            send_answer(r.status, &headers, &[], r.body.as_bytes());
            return Some(Action::Pause);
        }
        let config = self.worker.borrow().config.clone();
        let asked = guards::Asked {
            method: &head.method,
            host: &head.authority,
            origin: head.origin.as_deref(),
        };
        let rules = guards::Rules {
            host_check: config.host_check,
            allowed_hosts: &config.allowed_hosts,
            origins: &config.origins,
        };
        match guards::check(&asked, &rules) {
            Verdict::Answer(status, headers) => {
                let outcome = if status == 403 {
                    "forbidden"
                } else {
                    "preflight"
                };
                self.worker
                    .borrow()
                    .metrics
                    .count(&format!("ollama_lb.outcome.{outcome}"), 1);
                send_answer(status, &[], &headers, b"");
                Some(Action::Pause)
            }
            Verdict::Pass(cors) => {
                if head.origin.is_some() {
                    shared::set_request_header("origin", None);
                }
                self.cors = cors;
                None
            }
        }
    }

    fn fail(&self, e: &LbError) -> Action {
        self.worker
            .borrow()
            .metrics
            .count(&format!("ollama_lb.outcome.{}", e.outcome()), 1);
        self.respond(&LocalAnswer::error(e, self.api));
        Action::Pause
    }

    /// How many instances a request may list: the first choice and one
    /// per retry (endpoints mode), or just the first (host mode).
    fn places(&self) -> usize {
        let config = &self.worker.borrow().config;
        match config.route_by {
            RouteBy::Endpoints => 1 + config.retries as usize,
            RouteBy::Host => 1,
        }
    }

    /// Sends the request to `ranked` (best first) and counts it on the
    /// first; `model` is its routing key and the map it was ranked by.
    fn route_to(
        &mut self,
        ranked: &[&InstanceState],
        model: Option<(String, Rc<RoutingMap>)>,
    ) -> Action {
        let Some(first) = ranked.first() else {
            return self.fail(&LbError::NoHealthyInstance);
        };
        let config = self.worker.borrow().config.clone();
        for (name, value) in
            route::routing_headers(config.route_by, &config.endpoints_header, ranked)
        {
            shared::set_request_header(name, Some(&value));
        }
        if config.route_by == RouteBy::Host {
            // The route was chosen before this filter ran; without this the
            // new authority would not be looked at. (Endpoints mode has one
            // route for model requests: the header is read when the fleet
            // cluster picks its host.)
            clear_route_cache();
        }
        let mut routed = Routed {
            instance: first.name.clone(),
            listed: ranked
                .iter()
                .map(|i| (i.name.clone(), i.address.clone()))
                .collect(),
            model,
            model_gauge: None,
        };
        {
            let worker = self.worker.borrow();
            worker
                .metrics
                .count(&format!("ollama_lb.routed.{}", first.name), 1);
            worker.metrics.count("ollama_lb.outcome.routed", 1);
        }
        self.count_on(&mut routed, 0);
        self.routed = Some(routed);
        Action::Continue
    }

    /// Counts the request on `routed.listed[at]`: its in-flight gauge (and,
    /// for `loaded_least_request`, its per-model gauge), and remembers a
    /// request sent where the map does not show the model loaded (a load
    /// has started there, or the map is behind).
    fn count_on(&self, routed: &mut Routed, at: usize) {
        let Some((name, _)) = routed.listed.get(at) else {
            return;
        };
        let worker = self.worker.borrow();
        let config = &worker.config;
        worker.metrics.add_gauge(&shared::inflight_gauge(name), 1);
        let Some((key, map)) = &routed.model else {
            return;
        };
        if config.policy != Policy::LoadedLeastRequest {
            return;
        }
        let gauge = shared::model_inflight_gauge(name, key);
        worker.metrics.add_gauge(&gauge, 1);
        routed.model_gauge = Some(gauge);
        if config.warm_ms > 0 && !route::loaded_on(map, key, name) {
            shared::mark_sent(name, key, config.warm_ms);
        }
    }

    /// The response came from the instance at `upstream.address`. Those
    /// listed before it were tried and failed, or were not yet known to
    /// Envoy (which takes the list in order), so they cool down; if it is
    /// not the one counted, the request's gauges move to it.
    fn account_served(&mut self) {
        let Some(mut routed) = self.routed.take() else {
            return;
        };
        let served = shared::property_text(&["upstream", "address"]).unwrap_or_default();
        let position = routed.listed.iter().position(|(_, a)| *a == served);
        let served_by = position.and_then(|at| Some((at, routed.listed.get(at)?.0.clone())));
        if let Some((at, served_by)) = served_by {
            let worker = self.worker.borrow();
            for (name, _) in routed.listed.iter().take(at) {
                shared::start_cooldown(&worker.metrics, name, worker.config.cooldown_ms);
            }
            drop(worker);
            if served_by != routed.instance {
                self.uncount(&routed);
                self.worker
                    .borrow()
                    .metrics
                    .count("ollama_lb.outcome.retried", 1);
                self.count_on(&mut routed, at);
                routed.instance = served_by;
            }
        }
        self.routed = Some(routed);
    }

    /// Takes the request off the gauges it is counted on.
    fn uncount(&self, routed: &Routed) {
        let worker = self.worker.borrow();
        worker
            .metrics
            .add_gauge(&shared::inflight_gauge(&routed.instance), -1);
        if let Some(gauge) = &routed.model_gauge {
            worker.metrics.add_gauge(gauge, -1);
        }
    }

    fn load_choice<T>(&self, f: impl FnOnce(&EnvoyLoad<'_>, Choice<'_, '_>) -> T) -> T {
        let worker = &mut *self.worker.borrow_mut();
        worker.sync_cooldowns();
        let load = EnvoyLoad::new(&worker.metrics, &worker.cooldowns, worker.config.warm_ms);
        let slack = u64::from(worker.config.conversation_slack);
        let choice = Choice {
            policy: worker.config.policy,
            picker: &mut worker.picker,
            affinity: self.affinity.as_deref(),
            conversation: self.conversation.map(|key| Conversation { key, slack }),
        };
        f(&load, choice)
    }

    fn route_any(&mut self, map: &RoutingMap) -> Action {
        let n = self.places();
        let ranked = self.load_choice(|load, choice| {
            route::any(map, load, choice, n).map(|r| r.into_iter().cloned().collect::<Vec<_>>())
        });
        match ranked {
            Ok(ranked) => self.route_to(&ranked.iter().collect::<Vec<_>>(), None),
            Err(e) => self.fail(&e),
        }
    }

    /// Routes once the scan has an outcome (or the body ended); `whole` is
    /// the size of a body that was read to its end while waiting for it.
    fn decide(&mut self, read: &BodyRead, whole: Option<usize>) -> Action {
        let Some(scanned) = read.scanner.result() else {
            warn!("ollama-lb: body scan ended without an outcome");
            return self.fail(&LbError::Json("unexpected EOF".into()));
        };
        let model = match read.route.model(scanned) {
            Ok(m) => m,
            Err(e) => return self.fail(&e),
        };
        // For the access log (`%FILTER_STATE(wasm.ollama_lb_model:PLAIN)%`).
        let _ = hostcalls::set_property(vec!["ollama_lb_model"], Some(model.key.as_bytes()));
        if let Some(size) = whole.filter(|_| read.wait_end) {
            let chat = read.route.op == Op::Chat;
            if self
                .get_http_request_body(0, size)
                .is_some_and(|body| fleet_manage::is_unload(&body, chat))
            {
                return self.send_to_fleet();
            }
        }
        if read.fleet {
            let held = read.map.holders(&model.key).is_some_and(|h| !h.is_empty());
            if !held {
                return self.fail(&read.route.not_found(&model));
            }
            return self.send_to_fleet();
        }
        let map = Rc::clone(&read.map);
        let n = self.places();
        self.conversation = read.conversation.as_ref().and_then(|w| w.key());
        let ranked = self.load_choice(|load, choice| {
            route::for_model(&map, read.route, &model, load, choice, n)
                .map(|r| r.into_iter().cloned().collect::<Vec<_>>())
        });
        match ranked {
            Ok(ranked) => {
                let refs: Vec<&InstanceState> = ranked.iter().collect();
                self.route_to(&refs, Some((model.key, map)))
            }
            Err(e) => self.fail(&e),
        }
    }

    /// Sends the request to syncd's fleet API (the route matching
    /// [`model_map::FLEET_HEADER`]), which carries it out on every
    /// instance that should see it.
    fn send_to_fleet(&self) -> Action {
        shared::set_request_header(model_map::FLEET_HEADER, Some("1"));
        clear_route_cache();
        self.worker
            .borrow()
            .metrics
            .count("ollama_lb.outcome.fleet", 1);
        Action::Continue
    }

    fn max_body(&self) -> u64 {
        self.worker.borrow().config.max_body_bytes
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let config = self.worker.borrow().config.clone();
        let mut head =
            shared::request_head(&config.endpoints_header, config.affinity_header.as_deref());
        if head.has_answered_header {
            shared::set_request_header(model_map::ANSWERED_HEADER, None);
        }
        if let Some(answered) = self.guard(&mut head) {
            return answered;
        }
        // A client never chooses the instances.
        if head.has_endpoints_header {
            shared::set_request_header(&config.endpoints_header, None);
        }
        if head.has_fleet_header {
            shared::set_request_header(model_map::FLEET_HEADER, None);
            clear_route_cache();
        }
        if head.has_retry_headers {
            for name in crate::request_head::RETRY_HEADERS {
                shared::set_request_header(name, None);
            }
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
            self.respond(&fleet_reads::answer(
                read,
                map.as_deref().map(RoutingMap::reads),
            ));
            return Action::Pause;
        }
        let Some(map) = map else {
            return self.fail(&LbError::NoMap);
        };
        if let Some(name) = pinned {
            shared::set_request_header(crate::errors::INSTANCE_HEADER, None);
            return match route::pinned(&map, &name).cloned() {
                Ok(instance) => self.route_to(&[&instance], None),
                Err(e) => self.fail(&e),
            };
        }
        // Delete and copy name a model in the body: read it first, so a bad
        // body or name gets Ollama's answer here (decide() then hands them
        // to the fleet); the others go to the fleet as they are.
        let fleet = fleet_manage::is_fleet_request(&head.method, &head.path);
        if fleet && !matches!(endpoint, Endpoint::Body(_)) {
            return self.send_to_fleet();
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
            conversation: conversation_walker(&config, body_route),
            scanned: 0,
            found: false,
            fleet,
            wait_end: matches!(body_route.op, Op::Generate | Op::Chat)
                && body_route.api == Api::Native
                && head.content_length.is_none_or(|n| n <= UNLOAD_BODY_MAX),
        };
        if end_of_stream {
            read.scanner.finish();
            return self.decide(&read, None);
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
        let mut done = read.found;
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
            if let Some(walker) = read.conversation.as_mut() {
                walker.feed(&chunk);
            }
            read.scanned += chunk.len();
        }
        read.found = done;
        let waiting = read.wait_end && (body_size as u64) <= UNLOAD_BODY_MAX;
        if (done && !waiting) || end_of_stream {
            read.scanner.finish();
            return self.decide(&read, end_of_stream.then_some(body_size));
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
        self.decide(&read, None)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let cors = std::mem::take(&mut self.cors);
        if !cors.is_empty()
            && shared::header(MapType::HttpResponseHeaders, "access-control-allow-origin").is_none()
        {
            for (name, value) in &cors {
                if let Err(e) = hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value)
                {
                    warn!("ollama-lb: cannot add response header {name}: {e:?}");
                }
            }
        }
        if self.routed.is_none() {
            return Action::Continue;
        }
        self.account_served();
        // Ollama's queue-full answer, and Envoy's own answer when no listed
        // instance could be reached, both arrive here as 503.
        if shared::header(MapType::HttpResponseHeaders, ":status").as_deref() == Some("503") {
            if let Some(routed) = &self.routed {
                let worker = self.worker.borrow();
                shared::start_cooldown(
                    &worker.metrics,
                    &routed.instance,
                    worker.config.cooldown_ms,
                );
                self.cooled = true;
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(routed) = self.routed.take() else {
            return;
        };
        // An instance that dropped the connection mid-stream (crashed,
        // killed) is avoided too; a client hanging up is not its fault.
        let details = shared::property_text(&["response", "code_details"]).unwrap_or_default();
        if !self.cooled && details.starts_with("upstream_reset") {
            let worker = self.worker.borrow();
            shared::start_cooldown(&worker.metrics, &routed.instance, worker.config.cooldown_ms);
        }
        self.uncount(&routed);
    }
}

/// Answers the request (marked, so Envoy's `local_reply_config` leaves
/// the answer as it is) with `headers` and then `extra`.
fn send_answer(
    status: u32,
    headers: &[(&str, &str)],
    extra: &[(&'static str, String)],
    body: &[u8],
) {
    shared::set_request_header(model_map::ANSWERED_HEADER, Some("1"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.extend(extra.iter().map(|(n, v)| (*n, v.as_str())));
    if let Err(e) = hostcalls::send_http_response(status, all, Some(body)) {
        warn!("ollama-lb: cannot send a local answer: {e:?}");
    }
}

/// Makes Envoy choose the route again after the filter changed a header
/// the routes match on (`:authority` in host mode, the fleet header).
/// The walker for a body's conversation key: chat and generate bodies,
/// when the policy uses it and no affinity header is configured.
fn conversation_walker(config: &Config, route: &BodyRoute) -> Option<Box<ConversationKey>> {
    let used = config.conversation_affinity
        && config.policy == Policy::LoadedLeastRequest
        && config.affinity_header.is_none();
    let source = match route.op {
        Op::Chat => Source::Messages,
        Op::Generate => Source::Prompt,
        _ => return None,
    };
    used.then(|| Box::new(ConversationKey::new(source)))
}

fn clear_route_cache() {
    if let Err(e) = hostcalls::call_foreign_function("clear_route_cache", None) {
        warn!("ollama-lb: clear_route_cache failed ({e:?}); the route may ignore the change");
    }
}
