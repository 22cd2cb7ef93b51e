//! [`Rig`]: the processes of one test, their logs, and how to reach them.

use crate::envoy::Envoy;
use crate::envoy_config::{EnvoyConfig, RouteBy, Upstream, DEFAULT_MAX_BODY_BYTES};
use crate::paths;
use crate::process::Proc;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static NEXT_RIG: AtomicUsize = AtomicUsize::new(0);

/// How long a process may take to start: a deadline for a failing test,
/// not a measured bound.
pub const STARTUP: Duration = Duration::from_secs(60);

/// Owns every process a test started. Dropping it stops them; if the test
/// is failing (panicking), it first prints each process's log. Unless the
/// test said [`Rig::expect_errors`], dropping it also fails the test when
/// an Envoy it started logged an `[error]` or `[critical]` line.
pub struct Rig {
    /// Folder for this test's logs and rendered configs.
    pub dir: PathBuf,
    /// Environment variables given to every process started after they
    /// are set (e.g. an instance's token for syncd and Envoy).
    pub env: Vec<(String, String)>,
    procs: Vec<Proc>,
    /// Indexes of the Envoy processes, whose logs are checked on drop.
    envoys: Vec<usize>,
    errors_expected: bool,
}

/// An emulated Ollama server started by the rig.
#[derive(Debug, Clone)]
pub struct Emu {
    pub name: String,
    pub addr: SocketAddr,
    pub url: String,
    /// Index of its process in the rig (for [`Rig::kill`]).
    pub proc: usize,
}

/// A syncd daemon started by the rig.
#[derive(Debug, Clone)]
pub struct Syncd {
    pub addr: SocketAddr,
    pub url: String,
    pub proc: usize,
}

impl Rig {
    /// A rig whose files go under `target/e2e/<test>-<pid>-<n>/`.
    pub fn new(test: &str) -> Rig {
        let n = NEXT_RIG.fetch_add(1, Ordering::SeqCst);
        let dir = paths::target_dir()
            .join("e2e")
            .join(format!("{test}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::create_dir_all(&dir);
        Rig {
            dir,
            env: Vec::new(),
            procs: Vec::new(),
            envoys: Vec::new(),
            errors_expected: false,
        }
    }

    /// This test provokes Envoy errors on purpose: do not fail it for them.
    pub fn expect_errors(&mut self) {
        self.errors_expected = true;
    }

    /// Lines any Envoy of this rig logged at error or critical level.
    pub fn envoy_errors(&self) -> Vec<String> {
        self.envoys
            .iter()
            .filter_map(|&i| self.procs.get(i))
            .flat_map(|p| {
                p.output()
                    .lines()
                    .filter(|l| l.contains("[error]") || l.contains("[critical]"))
                    .map(|l| format!("{}: {l}", p.label))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub(crate) fn add_envoy(&mut self, label: &str, cmd: Command) -> anyhow::Result<usize> {
        let index = self.add(label, cmd)?;
        self.envoys.push(index);
        Ok(index)
    }

    pub(crate) fn add(&mut self, label: &str, mut cmd: Command) -> anyhow::Result<usize> {
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let log = self.dir.join(format!("{}.log", label.replace(' ', "-")));
        self.procs.push(Proc::spawn(label, cmd, &log)?);
        Ok(self.procs.len() - 1)
    }

    /// The process at `index`.
    pub fn proc(&mut self, index: usize) -> &mut Proc {
        &mut self.procs[index]
    }

    /// The log of the process at `index` so far.
    pub fn output_of(&self, index: usize) -> String {
        self.procs[index].output()
    }

    /// Stops one process (the others keep running).
    pub fn kill(&mut self, index: usize) {
        self.procs[index].kill();
    }

    /// Freezes (`STOP`) or resumes (`CONT`) a process, as a hung server.
    pub fn signal(&mut self, index: usize, signal: &str) -> anyhow::Result<()> {
        let pid = self.procs[index].pid().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// Starts `ollama-emu --name NAME --listen 127.0.0.1:0 ARGS…` and waits
    /// for the line that tells its port.
    pub async fn emulator(&mut self, name: &str, args: &[&str]) -> anyhow::Result<Emu> {
        self.emulator_on(name, "127.0.0.1:0", args).await
    }

    /// Like [`Rig::emulator`] on a given address (e.g. to restart an
    /// instance on the port it had).
    pub async fn emulator_on(
        &mut self,
        name: &str,
        listen: &str,
        args: &[&str],
    ) -> anyhow::Result<Emu> {
        let mut cmd = Command::new(paths::bin("ollama-emu"));
        cmd.args(["--name", name, "--listen", listen]).args(args);
        let label = format!("emu {name}");
        let index = self.add(&label, cmd)?;
        let url = self.procs[index]
            .wait_for_log(STARTUP, |log| {
                log.lines().find_map(|l| {
                    l.split_once(" listening on ")
                        .map(|(_, u)| u.trim().to_string())
                })
            })
            .await?;
        let addr = url
            .trim_start_matches("http://")
            .parse()
            .map_err(|e| anyhow::anyhow!("emulator printed a bad address {url:?}: {e}"))?;
        Ok(Emu {
            name: name.to_string(),
            addr,
            url,
            proc: index,
        })
    }

    /// Starts `syncd run --listen 127.0.0.1:0` for these instances
    /// (polling every 200 ms), reads the address it bound from its log and
    /// waits until it is ready (first full poll round).
    pub async fn syncd(&mut self, instances: &[&Emu], args: &[&str]) -> anyhow::Result<Syncd> {
        self.syncd_on("127.0.0.1:0", instances, args).await
    }

    /// Like [`Rig::syncd`] on a given address (e.g. to restart syncd where
    /// Envoy already reaches it).
    pub async fn syncd_on(
        &mut self,
        listen: &str,
        instances: &[&Emu],
        args: &[&str],
    ) -> anyhow::Result<Syncd> {
        let mut cmd = Command::new(paths::bin("syncd"));
        cmd.arg("run")
            .args(["--listen", listen, "--interval", "200ms"])
            .env_remove("OLLAMA_BASE_URLS")
            .env("RUST_LOG", "info");
        for emu in instances {
            cmd.args(["--instance", &format!("{}={}", emu.name, emu.url)]);
        }
        cmd.args(args);
        // Replicas each get their own log (`syncd.log`, `syncd-2.log`, …).
        let replicas = self
            .procs
            .iter()
            .filter(|p| p.label.starts_with("syncd"))
            .count();
        let label = match replicas {
            0 => "syncd".to_string(),
            n => format!("syncd {}", n + 1),
        };
        let index = self.add(&label, cmd)?;
        let addr = self.procs[index]
            .wait_for_log(STARTUP, |log| log.lines().find_map(serving_address))
            .await?;
        let url = format!("http://{addr}");
        self.wait_http(index, &format!("{url}/readyz")).await?;
        Ok(Syncd {
            addr,
            url,
            proc: index,
        })
    }

    /// Polls `url` until it answers 200, while the process lives.
    pub async fn wait_http(&mut self, index: usize, url: &str) -> anyhow::Result<()> {
        let client = crate::http();
        let start = std::time::Instant::now();
        loop {
            if let Ok(resp) = client.get(url).send().await {
                if resp.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(status) = self.procs[index].exited() {
                anyhow::bail!(
                    "{} exited with {status}:\n{}",
                    self.procs[index].label,
                    self.procs[index].output()
                );
            }
            anyhow::ensure!(
                start.elapsed() < STARTUP,
                "{url} never answered 200 in {STARTUP:?}"
            );
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    /// An Envoy configuration for these instances with the filter, to be
    /// adjusted by the test and passed to [`Rig::envoy`].
    pub fn envoy_config(&self, instances: &[&Emu], syncd: SocketAddr) -> EnvoyConfig {
        EnvoyConfig {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            admin: "127.0.0.1:0".parse().expect("literal address"),
            instances: instances
                .iter()
                .map(|e| upstream(&e.name, e.addr))
                .collect(),
            syncd: upstream("syncd", syncd),
            syncd_replicas: Vec::new(),
            route_by: RouteBy::Endpoints,
            wasm_path: Some(paths::filter_wasm().display().to_string()),
            plugin_config: serde_json::json!({}),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            failover: Default::default(),
            fleet_endpoints: Default::default(),
        }
    }

    /// Starts Envoy with `config` (`--concurrency` workers).
    pub async fn envoy(&mut self, config: &EnvoyConfig, concurrency: u32) -> anyhow::Result<Envoy> {
        Envoy::start(self, config, concurrency).await
    }

    /// Every process's label and log.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for p in &self.procs {
            all.push_str(&format!("===== {} ({}) =====\n", p.label, p.log.display()));
            let out = p.output();
            let lines: Vec<&str> = out.lines().collect();
            let skip = lines.len().saturating_sub(300);
            if skip > 0 {
                all.push_str(&format!("[... {skip} earlier lines ...]\n"));
            }
            for line in &lines[skip..] {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("\n{}", self.logs());
            return;
        }
        if self.errors_expected {
            return;
        }
        let errors = self.envoy_errors();
        if !errors.is_empty() {
            eprintln!("\n{}", self.logs());
            panic!("Envoy logged errors (call rig.expect_errors() if the test wants them):\n{errors:#?}");
        }
    }
}

/// An Envoy upstream for a loopback address.
pub fn upstream(cluster: &str, addr: SocketAddr) -> Upstream {
    Upstream::plain(cluster, &addr.ip().to_string(), addr.port())
}

/// The address in syncd's `syncd serving listen=ADDR …` log line.
pub fn serving_address(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("syncd serving")?;
    let (_, addr) = rest.split_once("listen=")?;
    addr.split_whitespace().next()?.parse().ok()
}

/// A loopback port that was free a moment ago, for a test that must name a
/// port before the process that binds it starts (Envoy's admin, which
/// syncd is told about before Envoy runs). Racy: prefer port 0.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}
