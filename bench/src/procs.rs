//! Starting the real Envoy and the release syncd as pinned child processes
//! (through the e2e rig's [`Proc`]), and shaping Envoy configurations the
//! renderer does not make: a plain route to one cluster, and a
//! model-unaware round-robin cluster over every instance.

use e2e::envoy_config::{EnvoyConfig, Upstream};
use e2e::process::Proc;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running Envoy.
pub struct RunningEnvoy {
    pub url: String,
    pub admin: String,
    pub proc: Proc,
}

/// A running syncd and how long its first full poll round took.
pub struct RunningSyncd {
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub ready_after: Duration,
    pub proc: Proc,
}

/// The release build of a workspace binary.
pub fn release_bin(name: &str) -> PathBuf {
    e2e::paths::target_dir().join("release").join(name)
}

/// An upstream for a loopback address.
pub fn upstream(cluster: &str, addr: std::net::SocketAddr) -> Upstream {
    e2e::rig::upstream(cluster, addr)
}

/// A bootstrap with the filter for these instances, reaching syncd at
/// `syncd`, with `plugin` as the plugin configuration.
pub fn filter_config(
    instances: Vec<Upstream>,
    syncd: std::net::SocketAddr,
    plugin: Value,
) -> Value {
    EnvoyConfig {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        admin: "127.0.0.1:0".parse().expect("literal address"),
        instances,
        syncd: upstream("syncd", syncd),
        wasm_path: Some(e2e::paths::filter_wasm().display().to_string()),
        plugin_config: plugin,
        max_body_bytes: e2e::envoy_config::DEFAULT_MAX_BODY_BYTES,
        syncd_replicas: Vec::new(),
        route_by: Default::default(),
        failover: Default::default(),
        fleet_endpoints: e2e::envoy_config::FleetEndpoints::Static,
    }
    .to_value()
}

/// A bootstrap without the filter whose single route sends everything to
/// `cluster`; with more than one instance, `cluster` is a ROUND_ROBIN
/// cluster over all of them (a model-unaware balancer).
pub fn plain_config(instances: Vec<Upstream>, cluster: &str) -> Value {
    let fleet: Vec<Value> = instances
        .iter()
        .map(|u| json!({"endpoint": {"address": {"socket_address": {"address": u.host, "port_value": u.port}}}}))
        .collect();
    let mut v = EnvoyConfig {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        admin: "127.0.0.1:0".parse().expect("literal address"),
        instances,
        syncd: Upstream {
            cluster: "syncd".into(),
            host: "127.0.0.1".into(),
            port: 9,
            ..Default::default()
        },
        wasm_path: None,
        plugin_config: json!({}),
        max_body_bytes: e2e::envoy_config::DEFAULT_MAX_BODY_BYTES,
        syncd_replicas: Vec::new(),
        route_by: Default::default(),
        failover: Default::default(),
        fleet_endpoints: e2e::envoy_config::FleetEndpoints::Static,
    }
    .to_value();
    let hcm = &mut v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"] =
        json!({"cluster": cluster, "timeout": "0s", "idle_timeout": "900s"});
    if let Some(clusters) = v["static_resources"]["clusters"].as_array_mut() {
        if !clusters.iter().any(|c| c["name"] == cluster) {
            clusters.push(json!({
                "name": cluster,
                "type": "STATIC",
                "lb_policy": "ROUND_ROBIN",
                "connect_timeout": "2s",
                "per_connection_buffer_limit_bytes": 34603008u64,
                "load_assignment": {"cluster_name": cluster, "endpoints": [{"lb_endpoints": fleet}]},
            }));
        }
    }
    v
}

/// Pins every thread of `pid` to `cpus` (a taskset list such as "0").
pub fn pin(pid: u32, cpus: &str) {
    let _ = Command::new("taskset")
        .args(["-a", "-cp", cpus, &pid.to_string()])
        .output();
}

/// Starts Envoy (`--concurrency N`, pinned to `cpus`) from a JSON bootstrap.
pub async fn start_envoy(
    dir: &Path,
    label: &str,
    config: &Value,
    concurrency: u32,
    cpus: &str,
) -> anyhow::Result<RunningEnvoy> {
    let config_path = dir.join(format!("{label}.json"));
    let admin_path = dir.join(format!("{label}.admin"));
    let _ = std::fs::remove_file(&admin_path);
    std::fs::write(&config_path, serde_json::to_vec_pretty(config)?)?;
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpus])
        .arg(e2e::paths::envoy_bin())
        .arg("-c")
        .arg(&config_path)
        .arg("--admin-address-path")
        .arg(&admin_path)
        .args(["--disable-hot-restart", "-l", "info"])
        .args(["--concurrency", &concurrency.to_string()]);
    let mut proc = Proc::spawn(label, cmd, &dir.join(format!("{label}.log")))?;
    let admin = proc
        .wait_for_log(Duration::from_secs(60), |_| {
            std::fs::read_to_string(&admin_path)
                .ok()
                .filter(|s| s.contains(':'))
                .map(|s| format!("http://{}", s.trim()))
        })
        .await?;
    wait_ok(
        &mut proc,
        &format!("{admin}/ready"),
        Duration::from_secs(60),
    )
    .await?;
    let listeners: Value = e2e::http()
        .get(format!("{admin}/listeners?format=json"))
        .send()
        .await?
        .json()
        .await?;
    let port = listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no listener port in {listeners}"))?;
    Ok(RunningEnvoy {
        url: format!("http://127.0.0.1:{port}"),
        admin,
        proc,
    })
}

/// Starts the release `syncd run` for `instances` (name, url), pinned to
/// `cpus`, and waits for its first full poll round.
pub async fn start_syncd(
    dir: &Path,
    label: &str,
    instances: &[(String, String)],
    extra: &[&str],
    cpus: &str,
) -> anyhow::Result<RunningSyncd> {
    let addr = e2e::rig::free_port()?;
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpus])
        .arg(release_bin("syncd"))
        .arg("run")
        .args(["--listen", &addr.to_string()])
        .args(extra)
        .env_remove("OLLAMA_BASE_URLS")
        .env("RUST_LOG", "warn");
    for (name, url) in instances {
        cmd.args(["--instance", &format!("{name}={url}")]);
    }
    let start = Instant::now();
    let mut proc = Proc::spawn(label, cmd, &dir.join(format!("{label}.log")))?;
    let url = format!("http://{addr}");
    wait_ok(
        &mut proc,
        &format!("{url}/readyz"),
        Duration::from_secs(120),
    )
    .await?;
    Ok(RunningSyncd {
        url,
        addr,
        ready_after: start.elapsed(),
        proc,
    })
}

async fn wait_ok(proc: &mut Proc, url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = e2e::http();
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if let Some(status) = proc.exited() {
            anyhow::bail!("{} exited with {status}:\n{}", proc.label, proc.output());
        }
        if start.elapsed() > timeout {
            anyhow::bail!("{url} never answered 200:\n{}", proc.output());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    crate::machine::kib_field(&status, "VmRSS")
}

/// User + system CPU time of a process so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
