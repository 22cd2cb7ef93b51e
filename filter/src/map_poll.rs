//! When a worker checks the fetch lease and when the lease holder sends
//! its long poll to syncd: the state machine behind the root context's
//! tick, pure, with time passed in (milliseconds), so it is tested here
//! with fake time.
//!
//! One poll is outstanding at most. After an answer with a map (or 304)
//! the next poll goes out at once; after a failure (syncd unreachable, a
//! status other than 200/304, a map that does not decode or cannot be
//! shared) it waits a backoff that doubles from [`FIRST_BACKOFF_MS`] up
//! to [`MAX_BACKOFF_MS`].

/// The lease outlives a dead holder by at most this long.
pub const LEASE_TTL_MS: u64 = 5_000;
/// How often the holder renews and the others look for an expired lease.
pub const LEASE_RENEW_MS: u64 = 1_000;
/// The first wait after a failed poll.
pub const FIRST_BACKOFF_MS: u64 = 100;
/// The longest wait after failed polls.
pub const MAX_BACKOFF_MS: u64 = 1_000;
/// How much longer than the long poll's own `wait` a poll may take
/// before the host gives up on it.
pub const POLL_GRACE_SECONDS: u64 = 5;

/// What syncd's answer to a map poll means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200: a map to decode and share.
    Map,
    /// 304: the map is still current.
    Unchanged,
    /// 503 (no map yet): back off quietly.
    NotReady,
    /// Anything else: back off and say so.
    Unexpected,
}

impl Answer {
    /// The answer for an HTTP status.
    pub fn of_status(status: &str) -> Answer {
        match status {
            "200" => Answer::Map,
            "304" => Answer::Unchanged,
            "503" => Answer::NotReady,
            _ => Answer::Unexpected,
        }
    }
}

/// The poll and lease schedule of one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapPoll {
    leader: bool,
    lease_checked_ms: Option<u64>,
    in_flight: bool,
    next_poll_ms: u64,
    backoff_ms: u64,
}

impl Default for MapPoll {
    fn default() -> Self {
        MapPoll {
            leader: false,
            lease_checked_ms: None,
            in_flight: false,
            next_poll_ms: 0,
            backoff_ms: FIRST_BACKOFF_MS,
        }
    }
}

impl MapPoll {
    /// Whether the lease should be claimed or renewed at `now`.
    pub fn lease_due(&self, now: u64) -> bool {
        self.lease_checked_ms
            .is_none_or(|t| now.saturating_sub(t) >= LEASE_RENEW_MS)
    }

    /// Records the outcome of a lease check at `now`.
    pub fn lease_checked(&mut self, now: u64, leader: bool) {
        self.leader = leader;
        self.lease_checked_ms = Some(now);
    }

    /// Whether this worker should send a map poll at `now`: it holds the
    /// lease, none is outstanding, and no backoff is running.
    pub fn poll_due(&self, now: u64) -> bool {
        self.leader && !self.in_flight && now >= self.next_poll_ms
    }

    /// A poll was sent.
    pub fn sent(&mut self) {
        self.in_flight = true;
    }

    /// The outstanding poll ended at `now`; `ok` when it brought a map
    /// that was shared, or a 304.
    pub fn ended(&mut self, now: u64, ok: bool) {
        self.in_flight = false;
        if ok {
            self.backoff_ms = FIRST_BACKOFF_MS;
            self.next_poll_ms = now;
        } else {
            self.next_poll_ms = now.saturating_add(self.backoff_ms);
            self.backoff_ms = self.backoff_ms.saturating_mul(2).min(MAX_BACKOFF_MS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader_at(now: u64) -> MapPoll {
        let mut p = MapPoll::default();
        assert!(p.lease_due(now));
        p.lease_checked(now, true);
        p
    }

    #[test]
    fn the_lease_is_checked_first_then_every_renew_period() {
        let mut p = MapPoll::default();
        assert!(p.lease_due(0), "never checked");
        p.lease_checked(1_000, false);
        assert!(!p.lease_due(1_999));
        assert!(p.lease_due(2_000));
        assert!(!p.poll_due(2_000), "not the holder: no poll");
    }

    #[test]
    fn one_poll_at_a_time_and_the_next_at_once_after_an_answer() {
        let mut p = leader_at(0);
        assert!(p.poll_due(0));
        p.sent();
        assert!(!p.poll_due(10), "one outstanding");
        p.ended(30_000, true);
        assert!(p.poll_due(30_000));
    }

    #[test]
    fn failures_back_off_doubling_to_the_cap_and_an_answer_resets() {
        let mut p = leader_at(0);
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            p.sent();
            p.ended(now, false);
            let next = (now..).find(|&t| p.poll_due(t)).unwrap_or(now);
            waits.push(next - now);
            now = next;
        }
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000]);
        p.sent();
        p.ended(now, true);
        p.sent();
        p.ended(now, false);
        assert!(!p.poll_due(now + 99));
        assert!(p.poll_due(now + 100), "the backoff starts over");
    }

    #[test]
    fn statuses() {
        assert_eq!(Answer::of_status("200"), Answer::Map);
        assert_eq!(Answer::of_status("304"), Answer::Unchanged);
        assert_eq!(Answer::of_status("503"), Answer::NotReady);
        assert_eq!(Answer::of_status("404"), Answer::Unexpected);
        assert_eq!(Answer::of_status(""), Answer::Unexpected);
    }
}
