//! The status page's data, built from the fleet's slots, the published
//! map, the gateways' in-flight counts and the sync board. Pure: the page
//! (`GET /`), its live feed and `GET /v1/status` all serialise this.

use std::collections::HashMap;

use model_map::ModelMap;
use serde::Serialize;

use crate::fleet::InstanceReport;
use crate::gateways::InFlight;
use crate::sync::board::SyncJob;

/// Everything the page shows, as `GET /v1/status` returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusSnapshot {
    /// True once every instance has been polled once.
    pub ready: bool,
    pub map_id: Option<String>,
    pub instances: Vec<InstanceRow>,
    /// Sorted by key; empty before the first map.
    pub models: Vec<ModelRow>,
    /// Digest disagreements among holders.
    pub digest_mismatches: usize,
    /// As the gateways see it (`--envoy-admin`).
    pub inflight: InFlight,
    /// Running and recent sync jobs, oldest first.
    pub syncs: Vec<SyncJob>,
}

/// One instance: its poll status and what the map says it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceRow {
    #[serde(flatten)]
    pub report: InstanceReport,
    /// `up`, `failing` (up, but the last poll failed), `down`, or
    /// `unknown` before its first poll.
    pub state: &'static str,
    /// Display names of the models it holds, in key order.
    pub model_names: Vec<String>,
    /// The loaded ones, with `expires_at` as reported.
    pub loaded_models: Vec<LoadedModel>,
}

/// A model loaded on an instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadedModel {
    pub name: String,
    pub expires_at: String,
}

/// One model across the fleet: a row of the model × instance grid.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRow {
    pub key: String,
    pub name: String,
    /// First 12 hex digits.
    pub canonical_digest: String,
    pub digest_mismatch: bool,
    /// One cell per holder, in instance order.
    pub replicas: Vec<Cell>,
}

/// A model as one instance holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub instance: String,
    /// First 12 hex digits.
    pub digest: String,
    /// Whether it is the digest requests are routed to.
    pub canonical: bool,
    pub loaded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `up`, `failing`, `down` or `unknown` for one report.
pub fn state(r: &InstanceReport) -> &'static str {
    match (r.polled, r.healthy, r.consecutive_failures) {
        (false, _, _) => "unknown",
        (true, false, _) => "down",
        (true, true, 0) => "up",
        (true, true, _) => "failing",
    }
}

/// The snapshot of these parts.
pub fn build(
    reports: Vec<InstanceReport>,
    map: Option<&ModelMap>,
    inflight: InFlight,
    syncs: Vec<SyncJob>,
) -> StatusSnapshot {
    let models: Vec<ModelRow> = map.map_or_else(Vec::new, |m| m.models.iter().map(row).collect());
    let mut held = holdings(map);
    let instances = reports
        .into_iter()
        .map(|report| instance_row(report, &mut held))
        .collect();
    StatusSnapshot {
        ready: map.is_some(),
        map_id: map.map(|m| m.id.clone()),
        instances,
        digest_mismatches: models.iter().filter(|m| m.digest_mismatch).count(),
        models,
        inflight,
        syncs,
    }
}

fn row(m: &model_map::ModelEntry) -> ModelRow {
    ModelRow {
        key: m.key.clone(),
        name: m.name.clone(),
        canonical_digest: crate::text::short_digest(&m.canonical_digest).to_string(),
        digest_mismatch: m.digest_mismatch,
        replicas: m
            .replicas
            .iter()
            .map(|r| Cell {
                instance: r.instance.clone(),
                digest: crate::text::short_digest(&r.digest).to_string(),
                canonical: r.digest == m.canonical_digest,
                loaded: r.loaded.is_some(),
                expires_at: r.loaded.as_ref().map(|l| l.expires_at.clone()),
            })
            .collect(),
    }
}

/// Each instance's models and loaded models, from one pass over the map.
type Holdings = HashMap<String, (Vec<String>, Vec<LoadedModel>)>;

fn holdings(map: Option<&ModelMap>) -> Holdings {
    let mut by_instance = Holdings::new();
    for m in map.map_or(&[][..], |m| &m.models[..]) {
        for r in &m.replicas {
            let (names, loaded) = by_instance.entry(r.instance.clone()).or_default();
            names.push(m.name.clone());
            if let Some(l) = &r.loaded {
                loaded.push(LoadedModel {
                    name: m.name.clone(),
                    expires_at: l.expires_at.clone(),
                });
            }
        }
    }
    by_instance
}

fn instance_row(report: InstanceReport, held: &mut Holdings) -> InstanceRow {
    let (model_names, loaded_models) = held.remove(&report.name).unwrap_or_default();
    InstanceRow {
        state: state(&report),
        report,
        model_names,
        loaded_models,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model_map::{InstanceState, Loaded, ModelEntry, Replica};

    fn report(name: &str, healthy: bool, failures: u32) -> InstanceReport {
        InstanceReport {
            name: name.into(),
            url: format!("http://{name}:11434"),
            cluster: name.into(),
            healthy,
            polled: true,
            version: None,
            last_seen: None,
            last_error: None,
            consecutive_failures: failures,
            consecutive_successes: 0,
            models: 0,
            loaded: 0,
            poll_latency_ms: None,
        }
    }

    fn replica(instance: &str, digest: &str, loaded: bool) -> Replica {
        Replica {
            instance: instance.into(),
            digest: digest.into(),
            size: 1,
            modified_at: String::new(),
            modified_unix: 0,
            details: model_map::RawJson::null(),
            loaded: loaded.then(|| Loaded {
                size: 1,
                size_vram: 1,
                expires_at: "2030-01-01T00:00:00Z".into(),
                expires_unix: 1_893_456_000,
                context_length: None,
                entry: None,
            }),
            listed: None,
        }
    }

    fn map() -> ModelMap {
        let state = |name: &str| InstanceState {
            name: name.into(),
            url: String::new(),
            cluster: name.into(),
            authority: String::new(),
            address: String::new(),
            healthy: true,
            version: None,
        };
        let canonical = "a".repeat(64);
        ModelMap::new(
            vec![state("a"), state("b")],
            vec![ModelEntry {
                key: "registry.ollama.ai/library/m:latest".into(),
                name: "m:latest".into(),
                canonical_digest: canonical.clone(),
                digest_mismatch: true,
                replicas: vec![replica("a", &canonical, true), replica("b", "bbbb", false)],
            }],
        )
        .sealed()
    }

    #[test]
    fn states_follow_health_and_the_failure_streak() {
        assert_eq!(state(&report("a", true, 0)), "up");
        assert_eq!(state(&report("a", true, 1)), "failing");
        assert_eq!(state(&report("a", false, 3)), "down");
        let mut fresh = report("a", false, 0);
        fresh.polled = false;
        assert_eq!(state(&fresh), "unknown");
    }

    #[test]
    fn the_grid_marks_canonical_copies_and_loads_per_instance() {
        let map = map();
        let reports = vec![report("a", true, 0), report("b", false, 3)];
        let s = build(reports, Some(&map), InFlight::default(), Vec::new());
        assert!(s.ready);
        assert_eq!(s.digest_mismatches, 1);
        let cells = &s.models[0].replicas;
        assert_eq!(s.models[0].canonical_digest, "aaaaaaaaaaaa");
        assert!(cells[0].canonical && cells[0].loaded);
        assert!(!cells[1].canonical && !cells[1].loaded);
        assert_eq!(s.instances[0].loaded_models[0].name, "m:latest");
        assert_eq!(s.instances[1].model_names, ["m:latest"]);
        assert!(s.instances[1].loaded_models.is_empty());
        assert_eq!(s.instances[1].state, "down");
    }

    #[test]
    fn before_the_first_map_only_instances_show() {
        let s = build(
            vec![report("a", true, 0)],
            None,
            InFlight::default(),
            vec![],
        );
        assert!(!s.ready && s.models.is_empty() && s.map_id.is_none());
        assert!(s.instances[0].model_names.is_empty());
    }
}
