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
    let mut planner = Planner {
        healthy: &healthy,
        held,
        loaded,
        out: Plan::default(),
    };
    for (key, (name, entry)) in &work {
        let rule = placement.and_then(|p| p.rule(key));
        let target = match (rule, placement.map(|p| p.default)) {
            (Some(r), _) => target_of(r),
            (None, None | Some(DefaultRule::All)) => Target::All { only: None },
            (None, Some(DefaultRule::Keep)) => continue,
        };
        let warm = rule.map_or(0, |r| r.warm as usize);
        let model = ModelJob {
            name,
            entry: *entry,
            canonical: entry.map(|e| e.canonical_digest.clone()),
        };
        planner.plan_model(&model, target, warm);
    }
    planner.out
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

/// One model being planned: its name, its map entry (none when only the
/// placement names it) and the digest every holder should have.
struct ModelJob<'a> {
    name: &'a str,
    entry: Option<&'a ModelEntry>,
    canonical: Option<String>,
}

impl ModelJob<'_> {
    /// Its replica on `instance`, if that holds it.
    fn replica(&self, instance: &str) -> Option<&model_map::Replica> {
        self.entry
            .and_then(|e| e.replicas.iter().find(|r| r.instance == instance))
    }
}

/// The planner's running state: the healthy instances, how many models
/// each holds and has loaded (holdings grow as pulls are planned, so
/// replicas spread), and the plan so far.
struct Planner<'h, 'm> {
    healthy: &'h [&'m str],
    held: BTreeMap<&'m str, usize>,
    loaded: BTreeMap<&'m str, usize>,
    out: Plan,
}

impl<'m> Planner<'_, 'm> {
    /// Plans one model: chooses its instances, then pulls and loads.
    fn plan_model(&mut self, model: &ModelJob<'_>, target: Target<'_>, warm: usize) {
        let chosen = match target {
            Target::All { only } => self.every_instance(model.name, only),
            Target::Replicas(n) => self.best_instances(model, n),
        };
        self.push_actions(model, &chosen, warm);
    }

    /// Every healthy instance, of `only` when given; notes those of `only`
    /// that are not healthy.
    fn every_instance(&mut self, name: &str, only: Option<&[String]>) -> Vec<&'m str> {
        if let Some(only) = only {
            for missing in only.iter().filter(|n| !self.healthy.contains(&n.as_str())) {
                self.out.notes.push(format!(
                    "{name}: instance {missing} is not healthy; skipped"
                ));
            }
        }
        self.healthy
            .iter()
            .copied()
            .filter(|n| only.is_none_or(|o| o.iter().any(|x| x == n)))
            .collect()
    }

    /// The `n` healthy instances best placed to hold the model: those with
    /// the right digest, then loaded, then holding the fewest models.
    fn best_instances(&mut self, model: &ModelJob<'_>, n: usize) -> Vec<&'m str> {
        let mut ranked: Vec<(u8, u8, usize, &'m str)> = self
            .healthy
            .iter()
            .map(|inst| {
                let r = model.replica(inst);
                let holds = match r {
                    Some(r) if Some(&r.digest) == model.canonical.as_ref() => 0,
                    Some(_) => 1,
                    None => 2,
                };
                let is_loaded = u8::from(r.is_none_or(|r| r.loaded.is_none()));
                let held = self.held.get(inst).copied().unwrap_or(0);
                (holds, is_loaded, held, *inst)
            })
            .collect();
        ranked.sort();
        if ranked.len() < n {
            self.out.notes.push(format!(
                "{}: wants {n} replicas, only {} healthy instances",
                model.name,
                ranked.len()
            ));
        }
        ranked.into_iter().take(n).map(|r| r.3).collect()
    }

    /// A pull on each chosen instance that lacks the model or holds another
    /// digest; then loads until `warm` of them have it loaded.
    fn push_actions(&mut self, model: &ModelJob<'_>, chosen: &[&'m str], warm: usize) {
        let mut warm_now = 0;
        let mut warm_candidates = Vec::new();
        for inst in chosen {
            let r = model.replica(inst);
            let pulled = self.push_pull(model, inst, r);
            if r.is_some_and(|r| r.loaded.is_some()) {
                warm_now += 1;
            } else {
                let load = self.loaded.get(inst).copied().unwrap_or(0);
                warm_candidates.push((u8::from(pulled), load, *inst));
            }
        }
        warm_candidates.sort();
        for (_, _, inst) in warm_candidates
            .into_iter()
            .take(warm.saturating_sub(warm_now))
        {
            self.out.actions.push(Action {
                kind: ActionKind::Warm,
                instance: inst.to_string(),
                model: model.name.to_string(),
                reason: None,
                current: None,
                want: None,
            });
        }
    }

    /// Plans a pull of the model on `inst` if it needs one; whether it did.
    fn push_pull(
        &mut self,
        model: &ModelJob<'_>,
        inst: &'m str,
        replica: Option<&model_map::Replica>,
    ) -> bool {
        let (reason, current) = match replica {
            None => (Reason::Missing, None),
            Some(r) if Some(&r.digest) != model.canonical.as_ref() => {
                (Reason::DigestMismatch, Some(r.digest.clone()))
            }
            Some(_) => return false,
        };
        if reason == Reason::Missing {
            *self.held.entry(inst).or_default() += 1;
        }
        self.out.actions.push(Action {
            kind: ActionKind::Pull,
            instance: inst.to_string(),
            model: model.name.to_string(),
            reason: Some(reason),
            current,
            want: model.canonical.clone(),
        });
        true
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
