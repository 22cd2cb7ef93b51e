//! The poll-latency histogram of one instance: `prometheus-client`'s
//! histogram with syncd's buckets. Its own module so that the fleet (which
//! observes) and the metrics (which render) do not import each other.

use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;

/// Upper bounds of the poll-latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// An empty poll-latency histogram. Clones share their counts.
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Adds one poll's duration.
pub fn observe(histogram: &Histogram, latency: Duration) {
    histogram.observe(latency.as_secs_f64());
}
