//! Health of one instance: consecutive successes and failures against the
//! `--up-after` / `--down-after` thresholds, and the wait before the next
//! poll (doubling while down, capped at `--max-backoff`, which may be
//! shorter than the interval so that a restarted instance is seen soon:
//! polling a dead address costs a refused connection, nothing more).
//!
//! The first poll result decides directly: at start-up a reachable instance
//! is routable at once and an unreachable one is down at once, instead of
//! making every instance wait for the thresholds.

use std::time::Duration;

use crate::config::PollSettings;

/// A change of health, for logging and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
}

/// Counters and the current verdict for one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Whether at least one poll has finished.
    pub polled: bool,
    /// Whether the thresholds count the instance as up.
    pub healthy: bool,
    /// Failures in a row (0 after a success).
    pub consecutive_failures: u32,
    /// Successes in a row (0 after a failure).
    pub consecutive_successes: u32,
}

impl Health {
    /// Counts a successful poll; returns the transition it caused, if any.
    pub fn record_success(&mut self, settings: &PollSettings) -> Option<Transition> {
        self.consecutive_failures = 0;
        self.consecutive_successes = self.consecutive_successes.saturating_add(1);
        let first = !std::mem::replace(&mut self.polled, true);
        if !self.healthy && (first || self.consecutive_successes >= settings.up_after.get()) {
            self.healthy = true;
            return Some(Transition::Up);
        }
        None
    }

    /// Counts a failed poll; returns the transition it caused, if any.
    pub fn record_failure(&mut self, settings: &PollSettings) -> Option<Transition> {
        self.consecutive_successes = 0;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let first = !std::mem::replace(&mut self.polled, true);
        if first {
            return Some(Transition::Down);
        }
        if self.healthy && self.consecutive_failures >= settings.down_after.get() {
            self.healthy = false;
            return Some(Transition::Down);
        }
        None
    }

    /// Wait between the start of the last poll and the next one: the
    /// interval, or while down `interval × 2^k` (k = failures beyond the
    /// threshold, counting the one that crossed it), capped at
    /// `max_backoff`.
    pub fn next_delay(&self, settings: &PollSettings) -> Duration {
        if self.healthy || self.consecutive_failures == 0 {
            return settings.interval;
        }
        let beyond = (self.consecutive_failures + 1).saturating_sub(settings.down_after.get());
        let factor = 1u32 << beyond.min(16);
        settings
            .interval
            .saturating_mul(factor)
            .min(settings.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn settings() -> PollSettings {
        PollSettings {
            interval: Duration::from_secs(2),
            down_after: NonZeroU32::new(3).unwrap(),
            up_after: NonZeroU32::new(2).unwrap(),
            max_backoff: Duration::from_secs(30),
            ..PollSettings::default()
        }
    }

    #[test]
    fn first_result_decides() {
        let s = settings();
        let mut up = Health::default();
        assert_eq!(up.record_success(&s), Some(Transition::Up));
        let mut down = Health::default();
        assert_eq!(down.record_failure(&s), Some(Transition::Down));
        assert!(down.polled && !down.healthy);
    }

    #[test]
    fn down_after_n_failures_up_after_m_successes() {
        let s = settings();
        let mut h = Health::default();
        h.record_success(&s);
        assert_eq!(h.record_failure(&s), None);
        assert_eq!(h.record_failure(&s), None);
        assert!(h.healthy, "two failures are below --down-after 3");
        assert_eq!(h.record_failure(&s), Some(Transition::Down));
        assert_eq!(h.record_failure(&s), None, "already down");
        assert_eq!(h.record_success(&s), None);
        assert_eq!(h.record_failure(&s), None, "a failure resets the successes");
        assert_eq!(h.record_success(&s), None);
        assert_eq!(h.record_success(&s), Some(Transition::Up));
        assert_eq!(h.consecutive_failures, 0);
    }

    #[test]
    fn backoff_doubles_while_down_and_is_capped() {
        let s = settings();
        let mut h = Health::default();
        h.record_success(&s);
        let mut delays = Vec::new();
        for _ in 0..8 {
            h.record_failure(&s);
            delays.push(h.next_delay(&s).as_secs());
        }
        assert_eq!(delays, [2, 2, 4, 8, 16, 30, 30, 30]);
        h.record_success(&s);
        assert_eq!(
            h.next_delay(&s),
            s.interval,
            "recovering polls at the interval"
        );
        for _ in 0..100 {
            h.record_failure(&s);
        }
        assert_eq!(h.next_delay(&s).as_secs(), 30, "no overflow");
    }

    #[test]
    fn a_short_backoff_polls_a_down_instance_more_often_than_the_interval() {
        let s = PollSettings {
            max_backoff: Duration::from_secs(1),
            ..settings()
        };
        let mut h = Health::default();
        h.record_success(&s);
        h.record_failure(&s);
        assert_eq!(h.next_delay(&s), s.interval, "still up: the interval");
        h.record_failure(&s);
        h.record_failure(&s);
        assert!(!h.healthy);
        assert_eq!(h.next_delay(&s), Duration::from_secs(1));
    }

    #[test]
    fn unreachable_from_the_start_backs_off_too() {
        let s = settings();
        let mut h = Health::default();
        let delays: Vec<_> = (0..4)
            .map(|_| {
                h.record_failure(&s);
                h.next_delay(&s).as_secs()
            })
            .collect();
        assert_eq!(delays, [2, 2, 4, 8]);
    }
}
