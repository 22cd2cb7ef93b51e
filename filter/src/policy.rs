//! Choosing one instance among the candidates for a request: the balancing
//! policies, cool-down, and conversation affinity.

use model_map::InstanceState;
use serde::{Deserialize, Deserializer};

/// How requests are spread over candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Prefer instances where the model is loaded (per the map), then
    /// those it was sent to recently (loading, or loaded since the map was
    /// made); for a cold load, those with the fewest sole loaded copies of
    /// other models (what the load may evict); then fewest requests for
    /// the model in flight (Ollama queues per model), then fewest in all.
    LoadedLeastRequest,
    /// Fewest requests in flight.
    LeastRequest,
    /// Each candidate in turn (per Envoy worker).
    RoundRobin,
    /// Uniformly at random.
    Random,
}

impl Policy {
    /// The configuration spelling.
    pub fn from_name(s: &str) -> Option<Policy> {
        Some(match s {
            "loaded_least_request" => Policy::LoadedLeastRequest,
            "least_request" => Policy::LeastRequest,
            "round_robin" => Policy::RoundRobin,
            "random" => Policy::Random,
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Policy::from_name(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown policy {s:?}: expected loaded_least_request, least_request, round_robin or random"
            ))
        })
    }
}

/// One instance that could serve a request, with what the policy needs.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub instance: &'a InstanceState,
    /// The model is loaded there, per the map.
    pub loaded: bool,
    /// A request for the model was sent there within the plugin's
    /// `warm_ms`: it is loading or loaded there even if the map (one poll
    /// behind) does not say so. Weaker than `loaded`: the map also knows
    /// about evictions since.
    pub recent: bool,
    /// Models loaded there and on no other healthy instance, counted only
    /// when no candidate has the model loaded or recent (else 0).
    pub sole_copies: u32,
    /// Requests in flight there, across all Envoy workers.
    pub inflight: u64,
    /// Requests for this request's model in flight there (Ollama queues
    /// per model: a model's requests wait for its own parallel slots).
    pub model_inflight: u64,
    /// Recently answered 503 or failed to connect.
    pub cooling: bool,
}

/// xorshift64*: tie-breaks only, so a time-seeded generator is enough (no
/// `getrandom` in the wasm VM).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Per-worker picking state.
#[derive(Debug, Clone)]
pub struct Picker {
    rng: Rng,
    turn: u64,
}

impl Picker {
    pub fn new(seed: u64) -> Self {
        Picker {
            rng: Rng::new(seed),
            turn: 0,
        }
    }

    /// Picks one candidate. Those cooling down are skipped unless all are.
    /// With an affinity value, rendezvous hashing keeps the choice stable
    /// for as long as that instance stays a candidate.
    pub fn pick<'c, 'a>(
        &mut self,
        policy: Policy,
        all: &'c [Candidate<'a>],
        affinity: Option<&str>,
    ) -> Option<&'c Candidate<'a>> {
        let warm: Vec<&Candidate<'a>> = all.iter().filter(|c| !c.cooling).collect();
        let pool: Vec<&Candidate<'a>> = if warm.is_empty() {
            all.iter().collect()
        } else {
            warm
        };
        if pool.is_empty() {
            return None;
        }
        if let Some(key) = affinity {
            return pool
                .into_iter()
                .max_by_key(|c| rendezvous_weight(key, &c.instance.name));
        }
        match policy {
            Policy::LoadedLeastRequest => self.least(&pool, |c| {
                (
                    !c.loaded,
                    !c.recent,
                    c.sole_copies,
                    c.model_inflight,
                    c.inflight,
                )
            }),
            Policy::LeastRequest => self.least(&pool, |c| (false, false, 0, 0, c.inflight)),
            Policy::RoundRobin => {
                let i = (self.turn % pool.len() as u64) as usize;
                self.turn = self.turn.wrapping_add(1);
                pool.get(i).copied()
            }
            Policy::Random => pool.get(self.rng.below(pool.len())).copied(),
        }
    }

    /// Keeps `k` of `items`, chosen uniformly at random (a partial
    /// Fisher–Yates shuffle; the kept ones end up in random order).
    pub fn keep_random<T>(&mut self, items: &mut Vec<T>, k: usize) {
        if items.len() <= k {
            return;
        }
        for i in 0..k {
            let j = i + self.rng.below(items.len() - i);
            items.swap(i, j);
        }
        items.truncate(k);
    }

    fn least<'c, 'a>(
        &mut self,
        pool: &[&'c Candidate<'a>],
        key: impl Fn(&Candidate<'a>) -> (bool, bool, u32, u64, u64),
    ) -> Option<&'c Candidate<'a>> {
        let best = pool.iter().map(|c| key(c)).min()?;
        let ties: Vec<&'c Candidate<'a>> =
            pool.iter().copied().filter(|c| key(c) == best).collect();
        ties.get(self.rng.below(ties.len())).copied()
    }
}

/// A conversation the default policy keeps on one instance while that
/// instance is not much busier than the others (see [`keeps_conversation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversation {
    /// The body's conversation key ([`crate::conversation`]).
    pub key: u64,
    /// How many more requests for the model the conversation's instance
    /// may have in flight than the least busy candidate.
    pub slack: u64,
}

impl Conversation {
    /// The candidate whose rendezvous weight for this conversation is
    /// highest: the same instance turn after turn, on every gateway, for
    /// as long as it stays a candidate.
    pub fn home<'c, 'a>(&self, candidates: &'c [Candidate<'a>]) -> Option<&'c Candidate<'a>> {
        let key = self.key.to_le_bytes();
        candidates
            .iter()
            .max_by_key(|c| rendezvous_bytes(&key, &c.instance.name))
    }
}

/// Bounded load: the conversation stays on `home` unless it has more than
/// `slack` requests for the model in flight beyond the least busy of
/// `compared` (which holds `home`).
pub fn keeps_conversation(home: &Candidate<'_>, compared: &[Candidate<'_>], slack: u64) -> bool {
    let least = compared
        .iter()
        .map(|c| c.model_inflight)
        .min()
        .unwrap_or(home.model_inflight);
    home.model_inflight <= least.saturating_add(slack)
}

/// Highest-random-weight score of `instance` for `key` (FNV-1a, then a
/// splitmix64 finaliser so similar names spread well).
pub fn rendezvous_weight(key: &str, instance: &str) -> u64 {
    rendezvous_bytes(key.as_bytes(), instance)
}

fn rendezvous_bytes(key: &[u8], instance: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.iter().chain(&[0xff]).chain(instance.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(name: &str) -> InstanceState {
        InstanceState {
            name: name.into(),
            url: String::new(),
            cluster: format!("c_{name}"),
            authority: String::new(),
            address: String::new(),
            healthy: true,
            version: None,
        }
    }

    fn names(
        p: &mut Picker,
        policy: Policy,
        c: &[Candidate],
        aff: Option<&str>,
        n: usize,
    ) -> Vec<String> {
        (0..n)
            .map(|_| p.pick(policy, c, aff).unwrap().instance.name.clone())
            .collect()
    }

    #[test]
    fn loaded_least_request_prefers_loaded_then_idle() {
        let (a, b, c) = (inst("a"), inst("b"), inst("c"));
        let cands = [
            Candidate {
                instance: &a,
                loaded: false,
                inflight: 0,
                model_inflight: 0,
                cooling: false,
                recent: false,
                sole_copies: 0,
            },
            Candidate {
                instance: &b,
                loaded: true,
                inflight: 5,
                model_inflight: 0,
                cooling: false,
                recent: false,
                sole_copies: 0,
            },
            Candidate {
                instance: &c,
                loaded: true,
                inflight: 2,
                model_inflight: 0,
                cooling: false,
                recent: false,
                sole_copies: 0,
            },
        ];
        let mut p = Picker::new(7);
        assert!(names(&mut p, Policy::LoadedLeastRequest, &cands, None, 20)
            .iter()
            .all(|n| n == "c"));
        assert!(names(&mut p, Policy::LeastRequest, &cands, None, 20)
            .iter()
            .all(|n| n == "a"));
    }

    #[test]
    fn loaded_outranks_recent_which_outranks_cold() {
        let (a, b, c) = (inst("a"), inst("b"), inst("c"));
        let cand = |i, loaded, recent, inflight| Candidate {
            instance: i,
            loaded,
            recent,
            sole_copies: 0,
            inflight,
            model_inflight: 0,
            cooling: false,
        };
        let all = [
            cand(&a, false, false, 0),
            cand(&b, false, true, 2),
            cand(&c, true, false, 5),
        ];
        let mut p = Picker::new(11);
        let pick =
            |p: &mut Picker, cs: &[Candidate]| names(p, Policy::LoadedLeastRequest, cs, None, 10);
        assert!(pick(&mut p, &all).iter().all(|n| n == "c"));
        assert!(
            pick(&mut p, &all[..2]).iter().all(|n| n == "b"),
            "loading beats a second cold load"
        );
        assert!(names(&mut p, Policy::LeastRequest, &all, None, 10)
            .iter()
            .all(|n| n == "a"));
        // Both cold: the one whose load evicts no sole copy, though busier.
        let mut spare = cand(&b, false, false, 3);
        spare.sole_copies = 0;
        let mut only = cand(&a, false, false, 0);
        only.sole_copies = 1;
        assert!(pick(&mut p, &[only, spare]).iter().all(|n| n == "b"));
    }

    #[test]
    fn ties_are_spread_at_random() {
        let (a, b) = (inst("a"), inst("b"));
        let cands = [
            Candidate {
                instance: &a,
                loaded: true,
                inflight: 1,
                model_inflight: 0,
                cooling: false,
                recent: false,
                sole_copies: 0,
            },
            Candidate {
                instance: &b,
                loaded: true,
                inflight: 1,
                model_inflight: 0,
                cooling: false,
                recent: false,
                sole_copies: 0,
            },
        ];
        let got = names(
            &mut Picker::new(42),
            Policy::LoadedLeastRequest,
            &cands,
            None,
            200,
        );
        let a_count = got.iter().filter(|n| *n == "a").count();
        assert!((50..150).contains(&a_count), "{a_count}");
        let got = names(&mut Picker::new(1), Policy::Random, &cands, None, 200);
        assert!(got.iter().any(|n| n == "a") && got.iter().any(|n| n == "b"));
    }

    #[test]
    fn keep_random_keeps_k_distinct_and_spreads() {
        let mut p = Picker::new(3);
        let mut seen = [0u32; 20];
        for _ in 0..2000 {
            let mut v: Vec<usize> = (0..20).collect();
            p.keep_random(&mut v, 8);
            assert_eq!(v.len(), 8);
            let mut d = v.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), 8, "no repeats: {v:?}");
            for i in v {
                seen[i] += 1;
            }
        }
        // Each is kept 800 times on average.
        assert!(seen.iter().all(|&n| (650..950).contains(&n)), "{seen:?}");
        let mut few = vec![1, 2];
        p.keep_random(&mut few, 8);
        assert_eq!(few, [1, 2], "fewer than k: untouched");
    }

    #[test]
    fn round_robin_cycles() {
        let (a, b, c) = (inst("a"), inst("b"), inst("c"));
        let cands: Vec<Candidate> = [&a, &b, &c]
            .into_iter()
            .map(|i| Candidate {
                instance: i,
                loaded: false,
                inflight: 9,
                model_inflight: 0,
                cooling: false,
                recent: false,
                sole_copies: 0,
            })
            .collect();
        assert_eq!(
            names(&mut Picker::new(3), Policy::RoundRobin, &cands, None, 4),
            ["a", "b", "c", "a"]
        );
    }

    #[test]
    fn cooling_instances_are_avoided_unless_all_are() {
        let (a, b) = (inst("a"), inst("b"));
        let mut cands = vec![
            Candidate {
                instance: &a,
                loaded: true,
                inflight: 0,
                model_inflight: 0,
                cooling: true,
                recent: false,
                sole_copies: 0,
            },
            Candidate {
                instance: &b,
                loaded: false,
                inflight: 9,
                model_inflight: 0,
                cooling: false,
                recent: false,
                sole_copies: 0,
            },
        ];
        let mut p = Picker::new(5);
        assert!(names(&mut p, Policy::LoadedLeastRequest, &cands, None, 10)
            .iter()
            .all(|n| n == "b"));
        cands[1].cooling = true;
        assert!(names(&mut p, Policy::LoadedLeastRequest, &cands, None, 10)
            .iter()
            .all(|n| n == "a"));
        assert!(p.pick(Policy::Random, &[], None).is_none());
    }

    #[test]
    fn a_conversation_stays_home_until_home_is_slack_busier() {
        let insts: Vec<InstanceState> = ["a", "b", "c"].into_iter().map(inst).collect();
        let mut cands: Vec<Candidate> = insts
            .iter()
            .map(|i| Candidate {
                instance: i,
                loaded: true,
                inflight: 0,
                model_inflight: 0,
                cooling: false,
                recent: false,
                sole_copies: 0,
            })
            .collect();
        let homes: std::collections::HashSet<String> = (0..60u64)
            .map(|key| {
                let conv = Conversation { key, slack: 1 };
                conv.home(&cands)
                    .map(|c| c.instance.name.clone())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(homes.len(), 3, "conversations spread over the instances");
        let conv = Conversation { key: 7, slack: 1 };
        let home = conv.home(&cands).map(|c| c.instance.name.clone());
        let at = cands
            .iter()
            .position(|c| Some(&c.instance.name) == home.as_ref());
        let at = at.unwrap();
        assert!(keeps_conversation(&cands[at], &cands, 1));
        cands[at].model_inflight = 1;
        assert!(
            keeps_conversation(&cands[at], &cands, 1),
            "one ahead: stays"
        );
        cands[at].model_inflight = 2;
        assert!(
            !keeps_conversation(&cands[at], &cands, 1),
            "two ahead: moves"
        );
        let rest: Vec<Candidate> = cands
            .iter()
            .filter(|c| Some(&c.instance.name) != home.as_ref())
            .cloned()
            .collect();
        let second = conv.home(&rest).map(|c| c.instance.name.clone());
        assert_ne!(second, home, "without its home, a stable second choice");
        assert_eq!(second, conv.home(&rest).map(|c| c.instance.name.clone()));
    }

    #[test]
    fn affinity_is_stable_and_moves_only_when_its_instance_leaves() {
        let insts: Vec<InstanceState> = ["a", "b", "c", "d"].into_iter().map(inst).collect();
        let cands: Vec<Candidate> = insts
            .iter()
            .map(|i| Candidate {
                instance: i,
                loaded: false,
                inflight: 0,
                model_inflight: 0,
                cooling: false,
                recent: false,
                sole_copies: 0,
            })
            .collect();
        let mut p = Picker::new(9);
        let mut spread = std::collections::HashSet::new();
        for chat in 0..40 {
            let key = format!("chat-{chat}");
            let first = p
                .pick(Policy::Random, &cands, Some(&key))
                .unwrap()
                .instance
                .name
                .clone();
            assert!(names(&mut p, Policy::Random, &cands, Some(&key), 5)
                .iter()
                .all(|n| *n == first));
            let others: Vec<Candidate> = cands
                .iter()
                .filter(|c| c.instance.name != "a" || first == "a")
                .cloned()
                .collect();
            if first != "a" {
                assert_eq!(
                    p.pick(Policy::Random, &others, Some(&key))
                        .unwrap()
                        .instance
                        .name,
                    first
                );
            }
            spread.insert(first);
        }
        assert_eq!(spread.len(), 4, "keys spread over all instances");
    }
}
