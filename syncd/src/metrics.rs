//! Prometheus text exposition for `/metrics`, written by hand: a handful of
//! gauges, counters and one latency histogram per instance.

use std::fmt::Write;
use std::time::Duration;

use crate::fleet::Fleet;

/// Upper bounds of the poll-latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// A cumulative latency histogram.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Adds one observation.
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&mut self.counts) {
            if secs <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// Label values escaped as the text format requires.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric of `fleet`.
pub fn render(fleet: &Fleet) -> String {
    let slots = fleet.slots();
    let mut out = String::new();
    let put = |out: &mut String, header: (&str, &str, &str), lines: Vec<String>| {
        let (name, kind, help) = header;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    };
    let per = |f: &dyn Fn(&crate::fleet::Slot) -> String, name: &str| -> Vec<String> {
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
            "ollama_lb_instance_left_out_models",
            "gauge",
            "Entries the instance's last poll listed that were left out of the map \
             (over a limit or an invalid name; its last_error says which).",
        ),
        per(
            &|s| s.left_out.to_string(),
            "ollama_lb_instance_left_out_models",
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
    for s in &slots {
        let inst = esc(&s.instance.name);
        let h = &s.latency_histogram;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(h.counts) {
            hist.push(format!(
                "ollama_lb_poll_latency_seconds_bucket{{instance=\"{inst}\",le=\"{bound}\"}} {count}"
            ));
        }
        hist.push(format!(
            "ollama_lb_poll_latency_seconds_bucket{{instance=\"{inst}\",le=\"+Inf\"}} {}",
            h.count
        ));
        hist.push(format!(
            "ollama_lb_poll_latency_seconds_sum{{instance=\"{inst}\"}} {}",
            h.sum
        ));
        hist.push(format!(
            "ollama_lb_poll_latency_seconds_count{{instance=\"{inst}\"}} {}",
            h.count
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
        vec![format!(
            "ollama_lb_map_changes_total {}",
            fleet.map_changes()
        )],
    );
    let current = fleet.current();
    let (mismatches, models, info) = match &current {
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
