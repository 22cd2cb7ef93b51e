//! Headless Chromium (the Debian `chromium` package) driven over the
//! DevTools protocol: open a page, evaluate script in it, wait for a
//! condition, take a screenshot. The test command installs Chromium;
//! `CHROMIUM_BIN` overrides which binary runs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::rig::Rig;

/// One page of a headless Chromium that the rig owns.
pub struct Browser {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium with a `width`×`height` window and attaches to its
    /// first page.
    pub async fn start(rig: &mut Rig, width: u32, height: u32) -> anyhow::Result<Browser> {
        let bin = std::env::var_os("CHROMIUM_BIN").unwrap_or_else(|| "chromium".into());
        let profile = rig.dir.join("chromium-profile");
        let mut cmd = Command::new(bin);
        cmd.args(["--headless", "--disable-gpu", "--no-first-run"])
            // CI runs as root, where Chromium's sandbox cannot start.
            .arg("--no-sandbox")
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank");
        let proc = rig.add("chromium", cmd)?;
        let port = rig
            .proc(proc)
            .wait_for_log(Duration::from_secs(60), |log| {
                log.lines().find_map(|l| {
                    let rest = l.split_once("DevTools listening on ws://127.0.0.1:")?.1;
                    rest.split('/').next()?.parse::<u16>().ok()
                })
            })
            .await?;
        let targets: Value = crate::http()
            .get(format!("http://127.0.0.1:{port}/json/list"))
            .send()
            .await?
            .json()
            .await?;
        let page = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .ok_or_else(|| anyhow::anyhow!("Chromium lists no page: {targets}"))?;
        let (ws, _) = tokio_tungstenite::connect_async(page).await?;
        Ok(Browser { ws, next_id: 1 })
    }

    /// Calls a DevTools method and returns its `result`.
    pub async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::Text(msg.to_string().into())).await?;
        while let Some(frame) = self.ws.next().await {
            let Message::Text(text) = frame? else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text)?;
            // Events (no id) and other replies are not ours.
            if reply["id"] != id {
                continue;
            }
            if let Some(err) = reply.get("error") {
                anyhow::bail!("{method} failed: {err}");
            }
            return Ok(reply["result"].clone());
        }
        anyhow::bail!("Chromium closed the DevTools connection during {method}")
    }

    /// Opens `url` in the page.
    pub async fn navigate(&mut self, url: &str) -> anyhow::Result<()> {
        let r = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(err) = r.get("errorText") {
            anyhow::bail!("cannot open {url}: {err}");
        }
        Ok(())
    }

    /// The value of a script expression in the page (JSON-serialisable).
    pub async fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let r = self.call("Runtime.evaluate", params).await?;
        if let Some(e) = r.get("exceptionDetails") {
            anyhow::bail!("script failed: {e}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// Evaluates `expression` until `done` accepts its value; returns the
    /// value and how long it took. Fails after `deadline`, with the last
    /// value seen.
    pub async fn wait_for(
        &mut self,
        expression: &str,
        deadline: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<(Value, Duration)> {
        let start = Instant::now();
        loop {
            let value = self.eval(expression).await?;
            if done(&value) {
                return Ok((value, start.elapsed()));
            }
            if start.elapsed() > deadline {
                anyhow::bail!(
                    "page never satisfied the condition in {deadline:?}; last value: {value}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resizes the viewport (`mobile` also narrows it as a phone would).
    pub async fn viewport(&mut self, width: u32, height: u32, mobile: bool) -> anyhow::Result<()> {
        let params =
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile});
        self.call("Emulation.setDeviceMetricsOverride", params)
            .await
            .map(|_| ())
    }

    /// Saves a PNG of the whole page (not just the viewport) to `path`.
    pub async fn screenshot(&mut self, path: &Path) -> anyhow::Result<()> {
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await?;
        let size = &metrics["cssContentSize"];
        let clip =
            json!({"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1});
        let params = json!({"format": "png", "captureBeyondViewport": true, "clip": clip});
        let r = self.call("Page.captureScreenshot", params).await?;
        let data = r["data"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no screenshot data in {r}"))?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        std::fs::write(path, png)?;
        Ok(())
    }
}
