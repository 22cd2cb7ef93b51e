//! `/metrics`: the Prometheus text exposition (format 0.0.4) of syncd's
//! gauges, counters and per-instance poll-latency histograms, encoded by
//! `prometheus-client` from a snapshot of the fleet taken at each scrape.
//! The metric names and labels are the ones the dashboard
//! (`deploy/grafana/ollama-lb.json`) and `docs/operations.md` use.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::fleet::{Published, Slot};

/// What one scrape shows.
#[derive(Debug)]
struct Snapshot {
    slots: Vec<Slot>,
    current: Option<Arc<Published>>,
    map_changes: u64,
}

/// Renders every metric: per instance from `slots`, the map's from
/// `current`, and the count of map changes.
pub fn render(slots: Vec<Slot>, current: Option<Arc<Published>>, map_changes: u64) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot {
        slots,
        current,
        map_changes,
    }));
    let mut out = String::new();
    // Writing to a String does not fail, and the collector does not either.
    let _ = prometheus_text::encode(&mut out, &registry);
    out
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.instances(&mut encoder)?;
        counter(
            &mut encoder,
            "ollama_lb_map_changes",
            "Maps published with a new id.",
            self.map_changes,
        )?;
        self.map(&mut encoder)
    }
}

impl Snapshot {
    /// Health, holdings, failures and poll latency of each instance.
    fn instances(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let slots = &self.slots;
        per_instance(
            encoder,
            (
                "ollama_lb_instance_up",
                "1 when the instance counts as healthy.",
                MetricType::Gauge,
            ),
            slots,
            |s, mut m| m.encode_gauge(&i64::from(s.health.healthy)),
        )?;
        per_instance(
            encoder,
            (
                "ollama_lb_instance_models",
                "Models the instance holds (last known).",
                MetricType::Gauge,
            ),
            slots,
            |s, mut m| m.encode_gauge(&s.held.len()),
        )?;
        per_instance(
            encoder,
            (
                "ollama_lb_instance_loaded_models",
                "Models loaded in memory on the instance.",
                MetricType::Gauge,
            ),
            slots,
            |s, mut m| {
                m.encode_gauge(&s.held.iter().filter(|h| h.replica.loaded.is_some()).count())
            },
        )?;
        per_instance(
            encoder,
            (
                "ollama_lb_instance_left_out_models",
                "Entries the instance's last poll listed that were left out of the map \
                 (over a limit or an invalid name; its last_error says which).",
                MetricType::Gauge,
            ),
            slots,
            |s, mut m| m.encode_gauge(&s.left_out),
        )?;
        per_instance(
            encoder,
            (
                "ollama_lb_poll_failures",
                "Failed polls of the instance.",
                MetricType::Counter,
            ),
            slots,
            |s, mut m| m.encode_counter(&s.failures_total, None::<&Exemplar<NoLabelSet, u64>>),
        )?;
        per_instance(
            encoder,
            (
                "ollama_lb_poll_latency_seconds",
                "Duration of one poll of an instance.",
                MetricType::Histogram,
            ),
            slots,
            |s, m| s.latency_histogram.encode(m),
        )
    }

    /// The published map: digest mismatches, models, and its id.
    fn map(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let map = self.current.as_ref().map(|p| &p.map);
        let mismatches = map.map_or(0, |m| m.models.iter().filter(|e| e.digest_mismatch).count());
        gauge(
            encoder,
            "ollama_lb_digest_mismatches",
            "Models whose holders disagree on the digest.",
            mismatches,
        )?;
        gauge(
            encoder,
            "ollama_lb_map_models",
            "Models in the published map.",
            map.map_or(0, |m| m.models.len()),
        )?;
        let mut info = encoder.encode_descriptor(
            "ollama_lb_map_info",
            "The published map; its id is the label.",
            None,
            MetricType::Gauge,
        )?;
        if let Some(map) = map {
            let labels = [("id", map.id.as_str())];
            info.encode_family(&labels)?.encode_gauge(&1u32)?;
        }
        Ok(())
    }
}

/// One metric with an `instance` label per slot; `value` encodes it.
fn per_instance(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    slots: &[Slot],
    value: impl Fn(&Slot, MetricEncoder) -> fmt::Result,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for slot in slots {
        let labels = [("instance", slot.instance.name.as_str())];
        value(slot, metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: usize) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter(&value, None::<&Exemplar<NoLabelSet, u64>>)
}
