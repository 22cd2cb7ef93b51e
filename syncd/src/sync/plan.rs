//! The sync planner: from the current [`ModelMap`] and an optional
//! [`Placement`] to the list of pulls and loads that make the fleet hold
//! what it should. Pure, so every rule is tested as a table.
//!
//! - Only healthy instances are targets; a down instance's models still
//!   count as models of the fleet.
//! - Without a placement every model goes on every healthy instance.
//! - A target holding the model at another digest than the canonical one
//!   is re-pulled ([`Reason::DigestMismatch`]).
//! - With `replicas = N` the planner keeps the instances that already hold
//!   the model (canonical digest first, loaded first), then picks those
//!   holding the fewest models (counting pulls planned so far), then by
//!   name; models are planned in key order, so the plan is deterministic.
//! - `warm = N`: loaded replicas on the targets count; more are loaded on
//!   targets that hold (or will hold) the model, fewest loaded models first.
//! - Nothing is ever deleted or unloaded: extra replicas and extra loaded
//!   copies stay.

use std::collections::BTreeMap;

use model_map::name::ModelName;
use model_map::{ModelEntry, ModelMap};
use serde::{Deserialize, Serialize};

use super::placement::{DefaultRule, ModelRule, Placement};
use crate::text::{row, short_digest, table};

/// Why an instance pulls a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The instance does not hold it.
    Missing,
    /// It holds another digest than the fleet's canonical one.
    DigestMismatch,
}

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// `POST /api/pull`.
    Pull,
    /// Load with an empty request and `keep_alive: -1`.
    Warm,
}

impl ActionKind {
    /// `pull` or `warm`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Pull => "pull",
            ActionKind::Warm => "warm",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    pub instance: String,
    /// Name as the fleet lists it (`llama3.2:latest`).
    pub model: String,
    /// Set for pulls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The digest the instance holds now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// The canonical digest the pull should end at; `None` when no instance
    /// holds the model yet (whatever the registry serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub want: Option<String>,
}

/// The actions, plus notes on what cannot be satisfied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// E.g. more replicas asked than healthy instances.
    pub notes: Vec<String>,
}

/// Where one model should be, resolved from the placement.
enum Target<'a> {
    /// Every healthy instance (of `only`, when given).
    All { only: Option<&'a [String]> },
    /// `n` healthy instances.
    Replicas(usize),
}

/// Plans the fleet: see the module docs for the rules.
pub fn plan(map: &ModelMap, placement: Option<&Placement>) -> Plan {
    let healthy: Vec<&str> = map
        .instances
        .iter()
        .filter(|i| i.healthy)
        .map(|i| i.name.as_str())
        .collect();
    let mut held: BTreeMap<&str, usize> = healthy.iter().map(|n| (*n, 0)).collect();
    let mut loaded: BTreeMap<&str, usize> = held.clone();
    for m in &map.models {
        for r in &m.replicas {
            if let Some(n) = held.get_mut(r.instance.as_str()) {
                *n += 1;
            }
            if r.loaded.is_some() {
                if let Some(n) = loaded.get_mut(r.instance.as_str()) {
                    *n += 1;
                }
            }
        }
    }
    // Every model of the map, plus placement entries nobody holds yet.
    let mut work: BTreeMap<String, (String, Option<&ModelEntry>)> = map
        .models
        .iter()
        .map(|m| (m.key.clone(), (m.name.clone(), Some(m))))
        .collect();
    for rule in placement.map(|p| p.models.as_slice()).unwrap_or_default() {
        if let Ok(name) = ModelName::parse(&rule.name) {
            work.entry(name.key())
                .or_insert((name.display_shortest(), None));
        }
    }
    let mut out = Plan::default();
    for (key, (name, entry)) in &work {
        let rule = placement.and_then(|p| p.rule(key));
        let target = match (rule, placement.map(|p| p.default)) {
            (Some(r), _) => target_of(r),
            (None, None | Some(DefaultRule::All)) => Target::All { only: None },
            (None, Some(DefaultRule::Keep)) => continue,
        };
        let warm = rule.map_or(0, |r| r.warm as usize);
        plan_model(
            name, *entry, target, warm, &healthy, &mut held, &loaded, &mut out,
        );
    }
    out
}

fn target_of(rule: &ModelRule) -> Target<'_> {
    match (&rule.instances, rule.replicas) {
        (Some(list), _) => Target::All {
            only: Some(list.as_slice()),
        },
        (None, Some(n)) => Target::Replicas(n as usize),
        (None, None) => Target::All { only: None },
    }
}

#[allow(clippy::too_many_arguments)]
fn plan_model<'m>(
    name: &str,
    entry: Option<&ModelEntry>,
    target: Target<'_>,
    warm: usize,
    healthy: &[&'m str],
    held: &mut BTreeMap<&'m str, usize>,
    loaded: &BTreeMap<&'m str, usize>,
    out: &mut Plan,
) {
    let canonical = entry.map(|e| e.canonical_digest.clone());
    let replica = |inst: &str| entry.and_then(|e| e.replicas.iter().find(|r| r.instance == inst));
    let chosen: Vec<&str> = match target {
        Target::All { only } => {
            if let Some(only) = only {
                for missing in only.iter().filter(|n| !healthy.contains(&n.as_str())) {
                    out.notes.push(format!(
                        "{name}: instance {missing} is not healthy; skipped"
                    ));
                }
            }
            healthy
                .iter()
                .copied()
                .filter(|n| only.is_none_or(|o| o.iter().any(|x| x == n)))
                .collect()
        }
        Target::Replicas(n) => {
            let mut ranked: Vec<(u8, u8, usize, &str)> = healthy
                .iter()
                .map(|inst| {
                    let r = replica(inst);
                    let holds = match r {
                        Some(r) if Some(&r.digest) == canonical.as_ref() => 0,
                        Some(_) => 1,
                        None => 2,
                    };
                    let is_loaded = u8::from(r.is_none_or(|r| r.loaded.is_none()));
                    (
                        holds,
                        is_loaded,
                        held.get(inst).copied().unwrap_or(0),
                        *inst,
                    )
                })
                .collect();
            ranked.sort();
            if ranked.len() < n {
                out.notes.push(format!(
                    "{name}: wants {n} replicas, only {} healthy instances",
                    ranked.len()
                ));
            }
            ranked.into_iter().take(n).map(|r| r.3).collect()
        }
    };
    let mut warm_now = 0;
    let mut warm_candidates = Vec::new();
    for inst in &chosen {
        let r = replica(inst);
        let (reason, current) = match r {
            None => (Some(Reason::Missing), None),
            Some(r) if Some(&r.digest) != canonical.as_ref() => {
                (Some(Reason::DigestMismatch), Some(r.digest.clone()))
            }
            Some(_) => (None, None),
        };
        if let Some(reason) = reason {
            if reason == Reason::Missing {
                *held.entry(inst).or_default() += 1;
            }
            out.actions.push(Action {
                kind: ActionKind::Pull,
                instance: inst.to_string(),
                model: name.to_string(),
                reason: Some(reason),
                current,
                want: canonical.clone(),
            });
        }
        if r.is_some_and(|r| r.loaded.is_some()) {
            warm_now += 1;
        } else {
            let ready = u8::from(reason.is_some());
            warm_candidates.push((ready, loaded.get(inst).copied().unwrap_or(0), *inst));
        }
    }
    warm_candidates.sort();
    for (_, _, inst) in warm_candidates
        .into_iter()
        .take(warm.saturating_sub(warm_now))
    {
        out.actions.push(Action {
            kind: ActionKind::Warm,
            instance: inst.to_string(),
            model: name.to_string(),
            reason: None,
            current: None,
            want: None,
        });
    }
}

/// The plan as a table for `--dry-run`.
pub fn render_table(plan: &Plan) -> String {
    if plan.actions.is_empty() {
        let mut out = String::from("nothing to do: every instance holds what it should\n");
        for n in &plan.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        return out;
    }
    let mut rows = vec![row(&["INSTANCE", "MODEL", "ACTION", "REASON", "DIGEST"])];
    for a in &plan.actions {
        let reason = match a.reason {
            Some(Reason::Missing) => "missing",
            Some(Reason::DigestMismatch) => "digest mismatch",
            None => "",
        };
        let short = |d: &Option<String>| d.as_deref().map_or("?", short_digest).to_string();
        let digest = match (a.kind, &a.current) {
            (ActionKind::Warm, _) => String::new(),
            (_, Some(_)) => format!("{} -> {}", short(&a.current), short(&a.want)),
            (_, None) => short(&a.want),
        };
        rows.push(row(&[
            &a.instance,
            &a.model,
            a.kind.as_str(),
            reason,
            &digest,
        ]));
    }
    let mut out = table(&rows);
    let pulls = plan
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::Pull)
        .count();
    out.push_str(&format!(
        "\n{pulls} pulls, {} loads\n",
        plan.actions.len() - pulls
    ));
    for n in &plan.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
