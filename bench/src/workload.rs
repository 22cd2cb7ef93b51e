//! The seeded open-loop workload of the routing benchmark: chats arrive as
//! a Poisson process, each picks a model by Zipf popularity and sends a few
//! turns separated by exponential think times. Every request's send time is
//! fixed in advance, so every policy sees exactly the same schedule.

use std::time::Duration;

/// splitmix64: small, seedable and the same on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Exponentially distributed with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * self.unit().ln()
    }
}

/// Zipf popularity over `n` ranks: rank `k` (0-based) has weight
/// `1 / (k+1)^s`.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Zipf { cdf }
    }

    /// A rank drawn from the distribution.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf
            .iter()
            .position(|&c| u <= c)
            .unwrap_or(self.cdf.len().saturating_sub(1))
    }
}

/// One request of the schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// Send time from the start of the run.
    pub at: Duration,
    pub chat: usize,
    /// 0 for a chat's first message; the history grows with it.
    pub turn: usize,
    /// Model rank (0 = most popular).
    pub model: usize,
}

/// The shape of the workload.
#[derive(Debug, Clone)]
pub struct Workload {
    pub seed: u64,
    /// Length of the arrival window.
    pub duration: Duration,
    /// New chats per second (Poisson).
    pub chats_per_second: f64,
    /// Mean turns per chat (geometric, at least 1).
    pub mean_turns: f64,
    /// Mean think time between a chat's turns.
    pub mean_think: Duration,
    pub models: usize,
    pub zipf_s: f64,
}

impl Workload {
    /// Every request, sorted by send time; the same for the same seed.
    pub fn schedule(&self) -> Vec<Turn> {
        let mut rng = Rng::new(self.seed);
        let zipf = Zipf::new(self.models, self.zipf_s);
        let end = self.duration.as_secs_f64();
        let continue_p = 1.0 - 1.0 / self.mean_turns.max(1.0);
        let mut turns = Vec::new();
        let mut t = rng.exp(1.0 / self.chats_per_second);
        let mut chat = 0;
        while t < end {
            let model = zipf.sample(&mut rng);
            let mut at = t;
            let mut turn = 0;
            loop {
                turns.push(Turn {
                    at: Duration::try_from_secs_f64(at).unwrap_or(Duration::MAX),
                    chat,
                    turn,
                    model,
                });
                turn += 1;
                at += rng.exp(self.mean_think.as_secs_f64());
                if rng.unit() > continue_p || at >= end {
                    break;
                }
            }
            chat += 1;
            t += rng.exp(1.0 / self.chats_per_second);
        }
        turns.sort_by_key(|t| t.at);
        turns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(seed: u64) -> Workload {
        Workload {
            seed,
            duration: Duration::from_secs(60),
            chats_per_second: 2.0,
            mean_turns: 3.0,
            mean_think: Duration::from_secs(2),
            models: 8,
            zipf_s: 1.0,
        }
    }

    #[test]
    fn same_seed_same_schedule() {
        assert_eq!(workload(7).schedule(), workload(7).schedule());
        assert_ne!(workload(7).schedule(), workload(8).schedule());
    }

    #[test]
    fn rates_and_turns_are_as_asked() {
        let s = workload(1).schedule();
        let chats = s.iter().map(|t| t.chat).max().unwrap() + 1;
        assert!((80..160).contains(&chats), "{chats} chats in 60 s at 2/s");
        let per_chat = s.len() as f64 / chats as f64;
        assert!((2.0..4.0).contains(&per_chat), "{per_chat} turns per chat");
        assert!(s.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(s.iter().all(|t| t.at < Duration::from_secs(60)));
    }

    #[test]
    fn zipf_favours_low_ranks() {
        let z = Zipf::new(8, 1.0);
        let mut rng = Rng::new(3);
        let mut counts = [0usize; 8];
        for _ in 0..20_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        // Rank 0 has weight 1/H(8) ≈ 0.368, rank 7 ≈ 0.046.
        assert!((6_800..7_900).contains(&counts[0]), "{counts:?}");
        assert!((700..1_200).contains(&counts[7]), "{counts:?}");
        assert!(counts.windows(2).all(|w| w[0] > w[1]), "{counts:?}");
    }
}
