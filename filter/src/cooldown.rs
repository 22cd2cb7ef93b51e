//! How long an instance that failed is ranked last. Like Envoy's outlier
//! ejection, the time grows when the instance fails again soon after its
//! last cool-down ended (a fault that lasts, such as an instance cutting
//! every stream, stays avoided), up to a cap, and starts over after a
//! quiet spell as long as the last cool-down.

/// The longest cool-down, as a multiple of the configured one.
pub const MAX_FACTOR: u64 = 64;

/// The cool-down after a failure at `now` (ms), as `(until, length)`,
/// given the instance's last one (`until`, `length`) if any and the
/// configured `base` length:
/// - none, or it ended more than its length ago: `base`;
/// - still running: unchanged (failures of requests that were already on
///   the instance when it cooled down do not count again);
/// - it ended less than its length ago: twice as long, at most
///   [`MAX_FACTOR`] × `base`.
pub fn next(now: u64, last: Option<(u64, u64)>, base: u64) -> (u64, u64) {
    match last {
        Some((until, len)) if now < until => (until, len),
        Some((until, len)) if now < until.saturating_add(len) => {
            let len = len
                .saturating_mul(2)
                .clamp(base, base.saturating_mul(MAX_FACTOR));
            (now.saturating_add(len), len)
        }
        _ => (now.saturating_add(base), base),
    }
}

/// How long an ended cool-down is remembered (for [`next`] to see a
/// failure soon after it).
pub fn memory(base: u64) -> u64 {
    base.saturating_mul(MAX_FACTOR).saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_that_lasts_cools_longer_each_time_and_a_quiet_spell_resets() {
        let base = 5_000;
        let first = next(100_000, None, base);
        assert_eq!(first, (105_000, 5_000));
        assert_eq!(next(101_000, Some(first), base), first, "still cooling");
        let second = next(106_000, Some(first), base);
        assert_eq!(second, (116_000, 10_000), "failed again right after");
        let third = next(117_000, Some(second), base);
        assert_eq!(third, (137_000, 20_000));
        assert_eq!(
            next(200_000, Some(third), base),
            (205_000, 5_000),
            "quiet for longer than its length"
        );
        let mut last = first;
        for _ in 0..20 {
            last = next(last.0, Some(last), base);
        }
        assert_eq!(last.1, base * MAX_FACTOR, "capped");
        assert_eq!(next(7, None, 0), (7, 0), "cool-downs off");
    }
}
