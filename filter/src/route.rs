//! From a request and the model map to the instance that serves it, or to
//! the error Ollama (or ollama-lb) answers instead.

use model_map::{InstanceState, ModelMap};

use crate::config::RouteBy;
use crate::endpoint::{BodyRoute, RequestedModel};
use crate::errors::LbError;
use crate::policy::{Candidate, Picker, Policy};

/// What the picker needs to know about instances beyond the map: shared,
/// live numbers kept by Envoy.
pub trait Load {
    /// Requests in flight to `instance` across all workers.
    fn inflight(&self, instance: &str) -> u64;
    /// Whether `instance` is in cool-down after a 503 or a failure.
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

/// The request headers to set so Envoy's router sends the request to
/// `instance`: its cluster in `route_header` (cluster mode), or its
/// `host:port` as `:authority` plus [`CHOSEN_INSTANCE_HEADER`] (host mode).
pub fn routing_headers<'a>(
    by: RouteBy,
    route_header: &'a str,
    instance: &'a InstanceState,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    let pairs = match by {
        RouteBy::Cluster => [Some((route_header, instance.cluster.as_str())), None],
        RouteBy::Host => [
            Some((":authority", instance.authority.as_str())),
            Some((CHOSEN_INSTANCE_HEADER, instance.name.as_str())),
        ],
    };
    pairs.into_iter().flatten()
}

/// How to choose among candidates.
pub struct Choice<'p, 'k> {
    pub policy: Policy,
    pub picker: &'p mut Picker,
    /// Value of the affinity header, when configured and present.
    pub affinity: Option<&'k str>,
}

/// The instance named by `x-ollama-instance`, whatever its health.
pub fn pinned<'m>(map: &'m ModelMap, name: &str) -> Result<&'m InstanceState, LbError> {
    map.instance(name).ok_or_else(|| LbError::UnknownInstance {
        name: name.to_string(),
        known: map.instances.iter().map(|i| i.name.clone()).collect(),
    })
}

/// A healthy instance holding `model` at its canonical digest.
pub fn for_model<'m>(
    map: &'m ModelMap,
    route: &BodyRoute,
    model: &RequestedModel,
    load: &impl Load,
    choice: Choice<'_, '_>,
) -> Result<&'m InstanceState, LbError> {
    let Some(entry) = map.model(&model.key) else {
        return Err(route.not_found(model));
    };
    let holders: Vec<(&InstanceState, bool)> = entry
        .canonical_replicas()
        .filter_map(|r| map.instance(&r.instance).map(|i| (i, r.loaded.is_some())))
        .collect();
    if holders.is_empty() {
        return Err(route.not_found(model));
    }
    // Only loaded_least_request looks at warmth: skip the look-ups otherwise.
    let warmth = choice.policy == Policy::LoadedLeastRequest && choice.affinity.is_none();
    let mut candidates: Vec<Candidate> = holders
        .into_iter()
        .filter(|(i, _)| i.healthy)
        .map(|(instance, loaded)| {
            let recent = warmth && !loaded && load.recently_sent(&instance.name, &model.key);
            Candidate {
                recent,
                ..candidate(instance, loaded, load)
            }
        })
        .collect();
    // A cold load evicts something: rather where only spare copies are
    // loaded. Counted only then (it walks the map).
    if warmth && !candidates.iter().any(|c| c.loaded || c.recent) {
        for c in &mut candidates {
            c.sole_copies = sole_loaded_copies(map, &c.instance.name);
        }
    }
    pick(&candidates, choice).ok_or_else(|| LbError::ModelUnavailable(model.verbatim.clone()))
}

/// Any healthy instance (pull, create, routes the filter does not know).
pub fn any<'m>(
    map: &'m ModelMap,
    load: &impl Load,
    choice: Choice<'_, '_>,
) -> Result<&'m InstanceState, LbError> {
    let candidates: Vec<Candidate> = map
        .instances
        .iter()
        .filter(|i| i.healthy)
        .map(|i| candidate(i, false, load))
        .collect();
    pick(&candidates, choice).ok_or(LbError::NoHealthyInstance)
}

/// Models loaded on `instance` and on no other healthy instance, per the
/// map: what a load there may evict with nowhere else to serve it.
pub fn sole_loaded_copies(map: &ModelMap, instance: &str) -> u32 {
    let healthy = |name: &str| map.instance(name).is_some_and(|i| i.healthy);
    let mut sole = 0;
    for entry in &map.models {
        let mut here = false;
        let mut elsewhere = false;
        for r in entry.canonical_replicas().filter(|r| r.loaded.is_some()) {
            if r.instance == instance {
                here = true;
            } else if healthy(&r.instance) {
                elsewhere = true;
            }
        }
        if here && !elsewhere {
            sole += 1;
        }
    }
    sole
}

fn candidate<'m>(instance: &'m InstanceState, loaded: bool, load: &impl Load) -> Candidate<'m> {
    Candidate {
        instance,
        loaded,
        recent: false,
        sole_copies: 0,
        inflight: load.inflight(&instance.name),
        cooling: load.cooling(&instance.name),
    }
}

fn pick<'m>(candidates: &[Candidate<'m>], choice: Choice<'_, '_>) -> Option<&'m InstanceState> {
    choice
        .picker
        .pick(choice.policy, candidates, choice.affinity)
        .map(|c| c.instance)
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
