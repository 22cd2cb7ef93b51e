//! One poller task per instance: poll, record the result in the instance's
//! slot (which republishes the map at once), wait, repeat. Pollers never
//! wait for each other's schedule, only for a place among the
//! [`MAX_POLLS_IN_FLIGHT`].

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::Instance;
use crate::fleet::Fleet;
use crate::ollama::Probe;

/// Polls `instance` through `probe` until the task is aborted or the
/// instance leaves the fleet.
///
/// Polls start `interval` apart (or the backoff while down); a poll that
/// overruns is followed by the next one at once, never by two at a time.
/// `/api/version` is asked on polls 0, K, 2K… (`--version-every K`) and on
/// every poll while it is unknown or the last poll failed.
/// Most polls running at once, over every poller of the process. Each
/// poll holds its connections' buffers and the decoded answers until it
/// is recorded; with a thousand instances all polled at start, unbounded,
/// that peak stayed in syncd's memory. A poll takes milliseconds, so
/// this many keep a thousand instances polled well within an interval; a
/// hung instance holds its place at most the request timeout.
pub const MAX_POLLS_IN_FLIGHT: usize = 64;

static POLLS_IN_FLIGHT: Semaphore = Semaphore::const_new(MAX_POLLS_IN_FLIGHT);

pub async fn run_poller<P: Probe>(
    fleet: Arc<Fleet>,
    instance: Instance,
    probe: P,
    version_every: u32,
) {
    let mut round: u64 = 0;
    let mut repoll = fleet.repolls();
    loop {
        let started = Instant::now();
        let with_version =
            round % u64::from(version_every.max(1)) == 0 || fleet.wants_version(&instance.name);
        // Never closed, so the permit always comes; without one the poll
        // would still run.
        let permit = POLLS_IN_FLIGHT.acquire().await.ok();
        let polled = Instant::now();
        let address = crate::resolve::envoy_address(&instance.authority).await;
        let outcome = probe.poll(with_version).await;
        let recorded = fleet.record(&instance.name, outcome, polled.elapsed(), address);
        drop(permit);
        let Some(delay) = recorded else {
            return;
        };
        round += 1;
        tokio::select! {
            _ = tokio::time::sleep_until(started + delay) => {}
            _ = repoll.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Instance, PollSettings};
    use crate::ollama::{Observation, PollError, Ps, Tags};
    use std::num::NonZeroU32;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Answers from a shared switch and logs the (paused) time of each poll.
    #[derive(Clone, Default)]
    struct Scripted {
        up: Arc<Mutex<bool>>,
        polls: Arc<Mutex<Vec<Duration>>>,
        start: Option<Instant>,
    }

    impl Probe for Scripted {
        async fn poll(&self, _with_version: bool) -> Result<Observation, PollError> {
            let now = self.start.map_or(Duration::ZERO, |s| s.elapsed());
            self.polls.lock().unwrap().push(now);
            if *self.up.lock().unwrap() {
                Ok(Observation {
                    tags: Tags::default(),
                    ps: Ps::default(),
                    version: Some("0.9.7".into()),
                    bytes: 0,
                })
            } else {
                Err(PollError::Request {
                    path: "/api/tags",
                    message: "connection refused".into(),
                })
            }
        }
    }

    fn fleet() -> Arc<Fleet> {
        Fleet::new(&Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            instances: vec![Instance {
                name: "a".into(),
                url: "http://a:11434".into(),
                cluster: "a".into(),
                authority: "a:11434".into(),
                ..Default::default()
            }],
            poll: PollSettings {
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                down_after: NonZeroU32::new(3).unwrap(),
                up_after: NonZeroU32::new(2).unwrap(),
                max_backoff: Duration::from_secs(10),
                ..PollSettings::default()
            },
            sources: Default::default(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn goes_down_backs_off_and_comes_back() {
        let fleet = fleet();
        let probe = Scripted {
            up: Arc::new(Mutex::new(true)),
            start: Some(Instant::now()),
            ..Scripted::default()
        };
        let instance = fleet.slots()[0].instance.clone();
        let task = tokio::spawn(run_poller(fleet.clone(), instance, probe.clone(), 15));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let map = fleet.current().expect("published after the first poll");
        assert!(map.map.instances[0].healthy);

        *probe.up.lock().unwrap() = false;
        // Failures at 2, 4, 6 s: down after the third.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            fleet.current().unwrap().map.instances[0].healthy,
            "2 failures"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !fleet.current().unwrap().map.instances[0].healthy,
            "3 failures"
        );
        // Then the waits double: 4 s, 8 s, then the 10 s cap.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let times: Vec<u64> = probe
            .polls
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(times, [0, 2, 4, 6, 10, 18, 28]);

        *probe.up.lock().unwrap() = true;
        // Polls at 38 s (success 1 of 2) and 40 s (success 2: up).
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            !fleet.current().unwrap().map.instances[0].healthy,
            "1 success"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            fleet.current().unwrap().map.instances[0].healthy,
            "2 successes"
        );
        assert_eq!(fleet.map_changes(), 3, "up, down, up");
        task.abort();
    }
}
