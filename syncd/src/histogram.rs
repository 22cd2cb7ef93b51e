//! The poll-latency histogram of one instance: cumulative bucket counts,
//! the count and the sum, as Prometheus histograms have them.

use std::time::Duration;

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

    /// Observations at or below each of [`LATENCY_BUCKETS`].
    pub fn counts(&self) -> [u64; LATENCY_BUCKETS.len()] {
        self.counts
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the observations, in seconds.
    pub fn sum(&self) -> f64 {
        self.sum
    }
}
