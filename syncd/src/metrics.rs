//! Prometheus text exposition for `/metrics`, written by hand: a handful of
//! gauges, counters and one latency histogram per instance.

use std::fmt::Write;

use crate::fleet::{Published, Slot};
use crate::histogram::LATENCY_BUCKETS;

/// Label values escaped as the text format requires.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric: per instance from `slots`, the map's from
/// `current` and the count of map changes.
pub fn render(slots: &[Slot], current: Option<&Published>, map_changes: u64) -> String {
    let mut out = String::new();
    let put = |out: &mut String, header: (&str, &str, &str), lines: Vec<String>| {
        let (name, kind, help) = header;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    };
    let per = |f: &dyn Fn(&Slot) -> String, name: &str| -> Vec<String> {
        slots
            .iter()
            .map(|s| format!("{name}{{instance=\"{}\"}} {}", esc(&s.instance.name), f(s)))
            .collect()
    };
    put(
        &mut out,
        (
            "ollama_lb_instance_up",
            "gauge",
            "1 when the instance counts as healthy.",
        ),
        per(
            &|s| u8::from(s.health.healthy).to_string(),
            "ollama_lb_instance_up",
        ),
    );
    put(
        &mut out,
        (
            "ollama_lb_instance_models",
            "gauge",
            "Models the instance holds (last known).",
        ),
        per(&|s| s.held.len().to_string(), "ollama_lb_instance_models"),
    );
    put(
        &mut out,
        (
            "ollama_lb_instance_loaded_models",
            "gauge",
            "Models loaded in memory on the instance.",
        ),
        per(
            &|s| {
                s.held
                    .iter()
                    .filter(|h| h.replica.loaded.is_some())
                    .count()
                    .to_string()
            },
            "ollama_lb_instance_loaded_models",
        ),
    );
    put(
        &mut out,
        (
            "ollama_lb_poll_failures_total",
            "counter",
            "Failed polls of the instance.",
        ),
        per(
            &|s| s.failures_total.to_string(),
            "ollama_lb_poll_failures_total",
        ),
    );
    let mut hist = Vec::new();
    for s in slots {
        let inst = esc(&s.instance.name);
        let h = &s.latency_histogram;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(h.counts()) {
            hist.push(format!(
                "ollama_lb_poll_latency_seconds_bucket{{instance=\"{inst}\",le=\"{bound}\"}} {count}"
            ));
        }
        hist.push(format!(
            "ollama_lb_poll_latency_seconds_bucket{{instance=\"{inst}\",le=\"+Inf\"}} {}",
            h.count()
        ));
        hist.push(format!(
            "ollama_lb_poll_latency_seconds_sum{{instance=\"{inst}\"}} {}",
            h.sum()
        ));
        hist.push(format!(
            "ollama_lb_poll_latency_seconds_count{{instance=\"{inst}\"}} {}",
            h.count()
        ));
    }
    put(
        &mut out,
        (
            "ollama_lb_poll_latency_seconds",
            "histogram",
            "Duration of one poll of an instance.",
        ),
        hist,
    );
    put(
        &mut out,
        (
            "ollama_lb_map_changes_total",
            "counter",
            "Maps published with a new id.",
        ),
        vec![format!("ollama_lb_map_changes_total {map_changes}")],
    );
    let (mismatches, models, info) = match current {
        Some(p) => (
            p.map.models.iter().filter(|m| m.digest_mismatch).count(),
            p.map.models.len(),
            vec![format!("ollama_lb_map_info{{id=\"{}\"}} 1", esc(&p.map.id))],
        ),
        None => (0, 0, Vec::new()),
    };
    put(
        &mut out,
        (
            "ollama_lb_digest_mismatches",
            "gauge",
            "Models whose holders disagree on the digest.",
        ),
        vec![format!("ollama_lb_digest_mismatches {mismatches}")],
    );
    put(
        &mut out,
        (
            "ollama_lb_map_models",
            "gauge",
            "Models in the published map.",
        ),
        vec![format!("ollama_lb_map_models {models}")],
    );
    put(
        &mut out,
        (
            "ollama_lb_map_info",
            "gauge",
            "The published map; its id is the label.",
        ),
        info,
    );
    out
}
