//! Run-time membership: which instances the fleet has, read again while
//! the daemon runs, and one poller per instance.
//!
//! The static instances (the `--config` file, `--instance`,
//! `OLLAMA_BASE_URLS`) are read again on SIGHUP and when the file changes;
//! each `--discover dns:NAME:PORT` is resolved again at every tick, and
//! every address it gives is an instance. Instances that stay keep their
//! slot (name, health, metrics); a new one enters the map after its first
//! poll; a removed one leaves the map (and syncd's endpoints for Envoy) at
//! once, so it gets no new requests while its in-flight ones finish. A
//! reload that fails keeps the running set and logs what is wrong; a
//! failed DNS lookup keeps that name's last addresses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};

use crate::config::{
    discovered_instance, static_instances, Discovery, Instance, PollSettings, Sources,
};
use crate::fleet::{Fleet, MemberChange};
use crate::ollama::OllamaClient;

/// The longest wait between two looks at the file and the DNS names.
const MAX_TICK: Duration = Duration::from_secs(1);

/// How often the file and the DNS names are looked at: every second, or
/// every poll `interval` if that is shorter.
pub fn tick(interval: Duration) -> Duration {
    interval.min(MAX_TICK)
}

/// The addresses `d` names now: the system's resolver, or `server`.
pub async fn resolve_discovery(
    d: &Discovery,
    server: Option<SocketAddr>,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, String> {
    let mut addrs: Vec<SocketAddr> = match server {
        Some(server) => crate::dns::lookup(server, &d.name, timeout)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, d.port))
            .collect(),
        None => tokio::time::timeout(timeout, tokio::net::lookup_host((d.name.as_str(), d.port)))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
            .map_err(|e| e.to_string())?
            .collect(),
    };
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// The static instances, then one per discovered address whose URL and
/// name no static instance has.
pub fn merge(mut members: Vec<Instance>, discovered: &[SocketAddr]) -> Vec<Instance> {
    for addr in discovered {
        let instance = discovered_instance(*addr);
        if !members
            .iter()
            .any(|m| m.url == instance.url || m.name == instance.name)
        {
            members.push(instance);
        }
    }
    members
}

/// One poller task per member.
struct Pollers {
    fleet: Arc<Fleet>,
    http: reqwest::Client,
    poll: PollSettings,
    running: HashMap<String, AbortHandle>,
    tasks: JoinSet<()>,
}

impl Pollers {
    fn apply(&mut self, change: &MemberChange) {
        for name in &change.removed {
            if let Some(task) = self.running.remove(name) {
                task.abort();
            }
        }
        for instance in &change.added {
            let client = OllamaClient::new(self.http.clone(), instance, &self.poll);
            let every = self.poll.version_every.get();
            let task = self.tasks.spawn(crate::poller::run_poller(
                self.fleet.clone(),
                instance.clone(),
                client,
                every,
            ));
            self.running.insert(instance.name.clone(), task);
        }
        while self.tasks.try_join_next().is_some() {}
    }
}

/// What the file looked like last time: changed when either differs.
fn stamp(path: &Path) -> Option<(Option<SystemTime>, u64)> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().ok(), m.len()))
}

/// Keeps the fleet's members and pollers up to date until aborted (which
/// also stops every poller). `initial` is what the daemon started with;
/// `reload` is notified on SIGHUP.
pub async fn run_membership(
    fleet: Arc<Fleet>,
    sources: Sources,
    poll: PollSettings,
    http: reqwest::Client,
    initial: Vec<Instance>,
    reload: Arc<Notify>,
) {
    let mut pollers = Pollers {
        fleet: fleet.clone(),
        http,
        poll: poll.clone(),
        running: HashMap::new(),
        tasks: JoinSet::new(),
    };
    // Every initial member needs a poller, including the slots the fleet
    // was made with.
    let removed = fleet.set_members(&initial).removed;
    pollers.apply(&MemberChange {
        added: initial.clone(),
        removed,
    });
    let file = sources.file.clone();
    let mut seen = file.as_deref().and_then(stamp);
    let mut statics = initial;
    let mut discovered: Vec<Vec<SocketAddr>> = vec![Vec::new(); sources.discover.len()];
    let mut applied = statics.clone();
    let every = tick(poll.interval);
    let mut first = true;
    loop {
        let signalled = if first {
            false
        } else {
            tokio::select! {
                _ = reload.notified() => true,
                _ = tokio::time::sleep(every) => false,
            }
        };
        first = false;
        let now = file.as_deref().and_then(stamp);
        if signalled || now != seen {
            seen = now;
            let why = if signalled {
                "SIGHUP"
            } else {
                "the instance file changed"
            };
            match static_instances(&sources) {
                Ok(list) => statics = list,
                Err(e) => {
                    tracing::error!(reason = why, error = %e, "reload failed; keeping the running instances")
                }
            }
        }
        for (d, last) in sources.discover.iter().zip(discovered.iter_mut()) {
            match resolve_discovery(d, sources.dns_server, poll.timeout).await {
                Ok(addrs) => *last = addrs,
                Err(e) => {
                    tracing::warn!(name = %d.name, error = %e, "DNS discovery failed; keeping its last addresses")
                }
            }
        }
        let members = merge(statics.clone(), &discovered.concat());
        if members != applied {
            let change = fleet.set_members(&members);
            tracing::info!(
                added = ?change.added.iter().map(|i| &i.name).collect::<Vec<_>>(),
                removed = ?change.removed,
                instances = members.len(),
                "fleet membership changed"
            );
            pollers.apply(&change);
            applied = members;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: &str, url: &str) -> Instance {
        Instance {
            name: name.into(),
            url: url.into(),
            cluster: name.into(),
            authority: url.trim_start_matches("http://").into(),
            ..Default::default()
        }
    }

    #[test]
    fn discovered_addresses_join_the_static_instances_once() {
        let statics = vec![instance("a", "http://10.0.0.5:11434")];
        let found: Vec<SocketAddr> = ["10.0.0.5:11434", "10.0.0.6:11434", "[::1]:11434"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let names: Vec<String> = merge(statics, &found).into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["a", "10.0.0.6_11434", "1__11434"]);
    }

    #[tokio::test]
    async fn the_system_resolver_gives_every_address() {
        let d = Discovery {
            name: "localhost".into(),
            port: 11434,
        };
        let addrs = resolve_discovery(&d, None, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(
            addrs
                .iter()
                .all(|a| a.port() == 11434 && a.ip().is_loopback()),
            "{addrs:?}"
        );
        let none = Discovery {
            name: "no-such-host.invalid".into(),
            port: 1,
        };
        assert!(resolve_discovery(&none, None, Duration::from_secs(2))
            .await
            .is_err());
    }
}
