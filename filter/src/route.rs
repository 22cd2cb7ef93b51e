//! From a request and the model map to the instance that serves it, or to
//! the error Ollama (or ollama-lb) answers instead.

use model_map::InstanceState;

use crate::routing_map::RoutingMap;

use crate::config::RouteBy;
use crate::endpoint::{BodyRoute, RequestedModel};
use crate::errors::LbError;
use crate::policy::{keeps_conversation, Candidate, Conversation, Picker, Policy};

/// What the picker needs to know about instances beyond the map: shared,
/// live numbers kept by Envoy.
pub trait Load {
    /// Requests in flight to `instance` across all workers (asked only
    /// about the few candidates still in the running).
    fn inflight(&self, instance: &str) -> u64;
    /// Requests for the model with routing key `model` in flight to
    /// `instance` across all workers (asked like `inflight`, and only by
    /// `loaded_least_request`).
    fn model_inflight(&self, _instance: &str, _model: &str) -> u64 {
        0
    }
    /// Whether `instance` is in cool-down after a 503 or a failure (asked
    /// about every healthy holder: keep it cheap).
    fn cooling(&self, instance: &str) -> bool;
    /// Whether a request for the model with routing key `model` was sent
    /// to `instance` within the configured `warm_ms`: the model is loaded
    /// or loading there even while the map (one poll behind) does not say
    /// so yet.
    fn recently_sent(&self, _instance: &str, _model: &str) -> bool {
        false
    }
}

/// Request header naming the chosen instance in host mode, for the
/// upstream's logs and traces (the rewritten `:authority` is the route).
pub const CHOSEN_INSTANCE_HEADER: &str = "x-ollama-lb-instance";

/// Envoy's header for the most retries of this request. Set to one less
/// than the instances listed, so a retry never reaches the override-host
/// policy's fallback (which could pick an instance without the model).
pub const MAX_RETRIES_HEADER: &str = "x-envoy-max-retries";

/// The request headers that make Envoy's router carry out `ranked` (best
/// first). Endpoints mode: the `IP:port` list for the fleet cluster's
/// override-host policy in `endpoints_header`, and at most one retry per
/// further entry. Host mode: the first instance's `host:port` as
/// `:authority` plus [`CHOSEN_INSTANCE_HEADER`]; no fallbacks, since a
/// mesh's per-host route reaches only that instance.
pub fn routing_headers<'a>(
    by: RouteBy,
    endpoints_header: &'a str,
    ranked: &[&'a InstanceState],
) -> Vec<(&'a str, String)> {
    let Some(first) = ranked.first() else {
        return Vec::new();
    };
    match by {
        RouteBy::Endpoints => {
            let list: Vec<&str> = ranked.iter().map(|i| i.address.as_str()).collect();
            vec![
                (endpoints_header, list.join(",")),
                (MAX_RETRIES_HEADER, (ranked.len() - 1).to_string()),
            ]
        }
        RouteBy::Host => vec![
            (":authority", first.authority.clone()),
            (CHOSEN_INSTANCE_HEADER, first.name.clone()),
        ],
    }
}

/// How to choose among candidates.
pub struct Choice<'p, 'k> {
    pub policy: Policy,
    pub picker: &'p mut Picker,
    /// Value of the affinity header, when configured and present.
    pub affinity: Option<&'k str>,
    /// The body's conversation, for `loaded_least_request` without an
    /// affinity header.
    pub conversation: Option<Conversation>,
}

/// The instance named by `x-ollama-instance`, whatever its health.
pub fn pinned<'m>(map: &'m RoutingMap, name: &str) -> Result<&'m InstanceState, LbError> {
    map.instance(name).ok_or_else(|| LbError::UnknownInstance {
        name: name.to_string(),
        known: map.instances.iter().map(|i| i.name.clone()).collect(),
    })
}

/// The most candidates whose in-flight counts are read for one request.
/// Each read is a host call, so a model with a hundred holders would
/// otherwise cost a hundred; among more than this many equally good
/// candidates, this many are drawn at random and the least busy of them
/// wins (the "power of d choices", which is nearly as good as looking at
/// all of them).
pub const MAX_COMPARED: usize = 8;

/// Up to `n` healthy instances holding `model` at its canonical digest,
/// best first (see [`rank`]).
pub fn for_model<'m>(
    map: &'m RoutingMap,
    route: &BodyRoute,
    model: &RequestedModel,
    load: &impl Load,
    choice: Choice<'_, '_>,
    n: usize,
) -> Result<Vec<&'m InstanceState>, LbError> {
    let holders = match map.holders(&model.key) {
        Some(h) if !h.is_empty() => h,
        // Every Ollama server forwards a cloud model to ollama.com.
        _ if model.cloud => return any(map, load, choice, n),
        _ => return Err(route.not_found(model)),
    };
    let candidates = holders
        .iter()
        .filter_map(|h| map.instances.get(h.instance).map(|i| (i, h.loaded)))
        .filter(|(i, _)| routable(i))
        .map(|(instance, loaded)| candidate(instance, loaded, load))
        .collect();
    let ranked = rank(map, candidates, load, choice, Some(&model.key), n);
    if ranked.is_empty() {
        return Err(LbError::ModelUnavailable(model.verbatim.clone()));
    }
    Ok(ranked)
}

/// Up to `n` healthy instances, best first (pull, create, routes the
/// filter does not know).
pub fn any<'m>(
    map: &'m RoutingMap,
    load: &impl Load,
    choice: Choice<'_, '_>,
    n: usize,
) -> Result<Vec<&'m InstanceState>, LbError> {
    let candidates = map
        .instances
        .iter()
        .filter(|i| routable(i))
        .map(|i| candidate(i, false, load))
        .collect();
    let ranked = rank(map, candidates, load, choice, None, n);
    if ranked.is_empty() {
        return Err(LbError::NoHealthyInstance);
    }
    Ok(ranked)
}

/// Healthy per syncd, and with an address Envoy can be told.
fn routable(instance: &InstanceState) -> bool {
    instance.healthy && !instance.address.is_empty()
}

/// Up to `n` of `candidates`, best first: the policy's choice, then the
/// best of the rest by the same ranking, and so on, so that a retry goes
/// to the next-best holder. In-flight counts are read once per instance
/// however many places are ranked. Round robin ranks only its first
/// place by turn (the fallbacks are drawn at random, so a request's
/// several places do not advance the turn); affinity ranks by rendezvous
/// weight, so a conversation's fallback is stable too.
pub fn rank<'m>(
    map: &RoutingMap,
    mut candidates: Vec<Candidate<'m>>,
    load: &impl Load,
    choice: Choice<'_, '_>,
    model: Option<&str>,
    n: usize,
) -> Vec<&'m InstanceState> {
    let memo = MemoLoad::new(load);
    let mut policy = choice.policy;
    let mut ranked = Vec::with_capacity(n.min(candidates.len()));
    while ranked.len() < n && !candidates.is_empty() {
        let place = Choice {
            policy,
            picker: &mut *choice.picker,
            affinity: choice.affinity,
            conversation: choice.conversation,
        };
        let Some(best) = choose(map, candidates.clone(), &memo, place, model) else {
            break;
        };
        candidates.retain(|c| !std::ptr::eq(c.instance, best));
        ranked.push(best);
        if policy == Policy::RoundRobin {
            policy = Policy::Random;
        }
    }
    ranked
}

/// A [`Load`] that asks each in-flight count once.
struct MemoLoad<'l, L> {
    inner: &'l L,
    inflight: std::cell::RefCell<Vec<(String, u64)>>,
    model_inflight: std::cell::RefCell<Vec<(String, u64)>>,
}

impl<'l, L: Load> MemoLoad<'l, L> {
    fn new(inner: &'l L) -> Self {
        MemoLoad {
            inner,
            inflight: Default::default(),
            model_inflight: Default::default(),
        }
    }
}

fn memoised(
    cache: &std::cell::RefCell<Vec<(String, u64)>>,
    key: &str,
    ask: impl FnOnce() -> u64,
) -> u64 {
    if let Some((_, v)) = cache.borrow().iter().find(|(k, _)| k == key) {
        return *v;
    }
    let v = ask();
    cache.borrow_mut().push((key.to_string(), v));
    v
}

impl<L: Load> Load for MemoLoad<'_, L> {
    fn inflight(&self, instance: &str) -> u64 {
        memoised(&self.inflight, instance, || self.inner.inflight(instance))
    }
    fn model_inflight(&self, instance: &str, model: &str) -> u64 {
        memoised(&self.model_inflight, instance, || {
            self.inner.model_inflight(instance, model)
        })
    }
    fn cooling(&self, instance: &str) -> bool {
        self.inner.cooling(instance)
    }
    fn recently_sent(&self, instance: &str, model: &str) -> bool {
        self.inner.recently_sent(instance, model)
    }
}

/// Narrows the candidates rank by rank, reading live numbers only where
/// they can still change the outcome: those cooling down are dropped
/// unless all are; affinity, round robin and random need nothing more;
/// `loaded_least_request` keeps the loaded ones, else the recently sent
/// ones, else the ones whose load would evict the fewest sole copies; then
/// the in-flight counts of at most [`MAX_COMPARED`] of them decide.
fn choose<'m>(
    map: &RoutingMap,
    mut candidates: Vec<Candidate<'m>>,
    load: &impl Load,
    choice: Choice<'_, '_>,
    model: Option<&str>,
) -> Option<&'m InstanceState> {
    if candidates.iter().any(|c| !c.cooling) {
        candidates.retain(|c| !c.cooling);
    }
    let needs_load = choice.affinity.is_none()
        && matches!(
            choice.policy,
            Policy::LoadedLeastRequest | Policy::LeastRequest
        );
    let mut home = None;
    if needs_load {
        if let (Policy::LoadedLeastRequest, Some(model)) = (choice.policy, model) {
            narrow_by_warmth(map, &mut candidates, load, model);
        }
        let conversation = choice
            .conversation
            .filter(|_| choice.policy == Policy::LoadedLeastRequest && model.is_some());
        home = conversation.and_then(|c| Some((c.home(&candidates)?.clone(), c.slack)));
        if candidates.len() > MAX_COMPARED {
            choice.picker.keep_random(&mut candidates, MAX_COMPARED);
            if let Some((home, _)) = &home {
                keep_home(&mut candidates, home);
            }
        }
        let per_model = model.filter(|_| choice.policy == Policy::LoadedLeastRequest);
        for c in &mut candidates {
            c.inflight = load.inflight(&c.instance.name);
            if let Some(model) = per_model {
                c.model_inflight = load.model_inflight(&c.instance.name, model);
            }
        }
    }
    if let Some((home, slack)) = home {
        let at_home = candidates
            .iter()
            .find(|c| std::ptr::eq(c.instance, home.instance));
        if at_home.is_some_and(|h| keeps_conversation(h, &candidates, slack)) {
            return Some(home.instance);
        }
    }
    choice
        .picker
        .pick(choice.policy, &candidates, choice.affinity)
        .map(|c| c.instance)
}

/// Puts the conversation's `home` among the compared candidates (in the
/// place of the last one drawn) when the random draw left it out.
fn keep_home<'m>(candidates: &mut [Candidate<'m>], home: &Candidate<'m>) {
    if candidates
        .iter()
        .any(|c| std::ptr::eq(c.instance, home.instance))
    {
        return;
    }
    if let Some(last) = candidates.last_mut() {
        *last = home.clone();
    }
}

/// Keeps the candidates of the best warmth rank: loaded per the map, else
/// sent a request for `model` recently, else (a cold load, which evicts
/// something) those with the fewest sole loaded copies of other models.
fn narrow_by_warmth(
    map: &RoutingMap,
    candidates: &mut Vec<Candidate<'_>>,
    load: &impl Load,
    model: &str,
) {
    if candidates.iter().any(|c| c.loaded) {
        candidates.retain(|c| c.loaded);
        return;
    }
    for c in candidates.iter_mut() {
        c.recent = load.recently_sent(&c.instance.name, model);
    }
    if candidates.iter().any(|c| c.recent) {
        candidates.retain(|c| c.recent);
        return;
    }
    for c in candidates.iter_mut() {
        c.sole_copies = map.sole_copies(&c.instance.name);
    }
    if let Some(fewest) = candidates.iter().map(|c| c.sole_copies).min() {
        candidates.retain(|c| c.sole_copies == fewest);
    }
}

/// Whether the map shows `model` (a routing key) loaded on `instance` at
/// its canonical digest.
pub fn loaded_on(map: &RoutingMap, model: &str, instance: &str) -> bool {
    map.holders(model).is_some_and(|holders| {
        holders.iter().any(|h| {
            h.loaded
                && map
                    .instances
                    .get(h.instance)
                    .is_some_and(|i| i.name == instance)
        })
    })
}

fn candidate<'m>(instance: &'m InstanceState, loaded: bool, load: &impl Load) -> Candidate<'m> {
    Candidate {
        instance,
        loaded,
        recent: false,
        sole_copies: 0,
        inflight: 0,
        model_inflight: 0,
        cooling: load.cooling(&instance.name),
    }
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
