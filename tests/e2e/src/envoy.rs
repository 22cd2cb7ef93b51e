//! The real Envoy, started from a rendered bootstrap on ephemeral ports.

use crate::envoy_config::EnvoyConfig;
use crate::paths;
use crate::rig::{Rig, Syncd};

/// A generous deadline for waits on Envoy: a bound for a failing test only.
pub const PATIENCE: Duration = Duration::from_secs(60);
use std::process::Command;
use std::time::Duration;

/// A running Envoy.
#[derive(Debug, Clone)]
pub struct Envoy {
    /// `http://127.0.0.1:PORT` of the Ollama listener.
    pub url: String,
    /// `http://127.0.0.1:PORT` of the admin interface.
    pub admin: String,
    pub proc: usize,
}

impl Envoy {
    pub(crate) async fn start(
        rig: &mut Rig,
        config: &EnvoyConfig,
        concurrency: u32,
    ) -> anyhow::Result<Envoy> {
        Self::start_yaml(rig, &config.to_yaml(), concurrency).await
    }

    /// Starts Envoy from a bootstrap written by the test (e.g. a TLS
    /// server in front of an emulator); its first listener is `url`.
    pub async fn start_yaml(rig: &mut Rig, yaml: &str, concurrency: u32) -> anyhow::Result<Envoy> {
        let n = std::fs::read_dir(&rig.dir).map(|d| d.count()).unwrap_or(0);
        let config_path = rig.dir.join(format!("envoy-{n}.yaml"));
        let admin_path = rig.dir.join(format!("envoy-{n}.admin"));
        std::fs::write(&config_path, yaml)?;
        let mut cmd = Command::new(paths::envoy_bin());
        cmd.arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["--disable-hot-restart", "-l", "info"])
            .args(["--concurrency", &concurrency.to_string()]);
        let proc = rig.add_envoy(&format!("envoy-{n}"), cmd)?;
        let admin = rig
            .proc(proc)
            .wait_for_log(crate::rig::STARTUP, |_| {
                std::fs::read_to_string(&admin_path)
                    .ok()
                    .filter(|s| s.contains(':'))
                    .map(|s| format!("http://{}", s.trim()))
            })
            .await?;
        rig.wait_http(proc, &format!("{admin}/ready")).await?;
        let listeners: serde_json::Value = crate::http()
            .get(format!("{admin}/listeners?format=json"))
            .send()
            .await?
            .json()
            .await?;
        let port = listeners["listener_statuses"][0]["local_address"]["socket_address"]
            ["port_value"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("no listener port in {listeners}"))?;
        Ok(Envoy {
            url: format!("http://127.0.0.1:{port}"),
            admin,
            proc,
        })
    }

    /// Sends one request to the listener; returns the status, the
    /// answering instance (the emulator's `x-emu-instance`) and the body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> anyhow::Result<(u16, Option<String>, String)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = crate::http().request(method, format!("{}{path}", self.url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let instance = resp
            .headers()
            .get("x-emu-instance")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((status, instance, resp.text().await?))
    }

    /// Waits until the filter has a map (`GET /api/tags` answers 200).
    pub async fn wait_for_map(&self) -> anyhow::Result<()> {
        let tags = format!("{}/api/tags", self.url);
        crate::until("the filter installed a map", PATIENCE, || async {
            let resp = crate::http().get(&tags).send().await.ok()?;
            (resp.status() == 200).then_some(())
        })
        .await
    }

    /// Waits until `syncd` publishes a map that satisfies `pred`, then until
    /// `workers` filter workers installed it; returns that map.
    pub async fn wait_for_map_where(
        &self,
        rig: &Rig,
        syncd: &Syncd,
        workers: usize,
        what: &str,
        pred: impl Fn(&model_map::ModelMap) -> bool,
    ) -> anyhow::Result<model_map::ModelMap> {
        let url = format!("{}/v1/map", syncd.url);
        let map = crate::until(what, PATIENCE, || async {
            let resp = crate::http().get(&url).send().await.ok()?;
            let map: model_map::ModelMap = resp.json().await.ok()?;
            pred(&map).then_some(map)
        })
        .await?;
        self.installed(rig, &map.id, workers).await?;
        Ok(map)
    }

    /// Waits until `workers` filter workers logged installing map `id`.
    pub async fn installed(&self, rig: &Rig, id: &str, workers: usize) -> anyhow::Result<()> {
        let line = format!("installed model map {id}");
        crate::until(&format!("map {id} installed"), PATIENCE, || async {
            (rig.output_of(self.proc).matches(&line).count() >= workers).then_some(())
        })
        .await
    }

    /// Requests the filter routed to `instance` first (0 before any).
    pub async fn routed(&self, instance: &str) -> i64 {
        self.stat(&format!("wasmcustom.ollama_lb.routed.{instance}"))
            .await
            .unwrap_or(0)
    }

    /// One stat from the admin interface (`/stats?filter=^NAME$`), if set.
    pub async fn stat(&self, name: &str) -> Option<i64> {
        let text = crate::http()
            .get(format!(
                "{}/stats?filter=^{}$",
                self.admin,
                name.replace('.', "\\.")
            ))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
    }
}
