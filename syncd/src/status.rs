//! `syncd status`: asks a running daemon for its map and instance status
//! and prints them as two tables, models first.

use std::fmt::Write;
use std::time::Duration;

use model_map::ModelMap;
use thiserror::Error;

use crate::ollama::error_chain;
use crate::server::InstancesBody;
use crate::sync::fleet_pull::PullReport;
use crate::text::{row, short_digest, table};

/// Why the status could not be fetched.
#[derive(Debug, Error)]
pub enum StatusError {
    #[error("cannot reach syncd at {url}: {message}; is `syncd run` listening there (--url)?")]
    Unreachable { url: String, message: String },
    #[error("syncd at {url} answered {what}: {message}")]
    BadAnswer {
        url: String,
        what: &'static str,
        message: String,
    },
}

/// Fetches `/v1/instances` and `/v1/map` (absent before the first round)
/// from the daemon at `base`.
pub async fn fetch(
    base: &str,
    timeout: Duration,
) -> Result<(InstancesBody, Option<ModelMap>), StatusError> {
    let base = base.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(|e| unreachable(base, &e))?;
    let instances: InstancesBody = get_json(&client, base, "/v1/instances").await?;
    let map = if instances.ready {
        Some(get_json(&client, base, "/v1/map").await?)
    } else {
        None
    };
    Ok((instances, map))
}

fn unreachable(url: &str, e: &reqwest::Error) -> StatusError {
    StatusError::Unreachable {
        url: url.to_string(),
        message: error_chain(e),
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    base: &str,
    path: &'static str,
) -> Result<T, StatusError> {
    let resp = client
        .get(format!("{base}{path}"))
        .send()
        .await
        .map_err(|e| unreachable(base, &e))?;
    let bad = |message: String| StatusError::BadAnswer {
        url: base.to_string(),
        what: path,
        message,
    };
    if !resp.status().is_success() {
        return Err(bad(format!("HTTP {}", resp.status())));
    }
    resp.json().await.map_err(|e| bad(error_chain(&e)))
}

/// The daemon's recent fleet pulls (`GET /v1/fleet/pulls`); none when it
/// cannot say (an older daemon without the route).
pub async fn fetch_pulls(base: &str, timeout: Duration) -> Vec<PullReport> {
    #[derive(serde::Deserialize)]
    struct Body {
        pulls: Vec<PullReport>,
    }
    let base = base.trim_end_matches('/');
    let Ok(client) = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
    else {
        return Vec::new();
    };
    match get_json::<Body>(&client, base, "/v1/fleet/pulls").await {
        Ok(b) => b.pulls,
        Err(_) => Vec::new(),
    }
}

/// The fleet pulls table (empty when there were none).
pub fn render_pulls(pulls: &[PullReport]) -> String {
    if pulls.is_empty() {
        return String::new();
    }
    let mut rows = vec![row(&["PULL", "STARTED", "STATE", "PROGRESS", "TARGETS"])];
    for p in pulls {
        let progress = match (p.total, &p.error) {
            (_, Some(e)) => e.clone(),
            (0, None) => "-".into(),
            (t, None) => format!("{}%", p.completed * 100 / t),
        };
        rows.push(row(&[
            &p.model,
            &p.started,
            &p.state,
            &progress,
            &p.targets.join(","),
        ]));
    }
    format!("\n{}", table(&rows))
}

/// Renders the two tables.
pub fn render(instances: &InstancesBody, map: Option<&ModelMap>) -> String {
    let mut out = String::new();
    let healthy = instances.instances.iter().filter(|i| i.healthy).count();
    let total = instances.instances.len();
    match map {
        Some(map) => {
            let _ = writeln!(
                out,
                "map {}: {} models, {healthy}/{total} instances up\n",
                map.id,
                map.models.len()
            );
            out.push_str(&models_table(map));
        }
        None => {
            let _ = writeln!(
                out,
                "map not ready: first poll round not finished ({healthy}/{total} instances up)"
            );
        }
    }
    out.push('\n');
    let mut rows = vec![row(&[
        "INSTANCE",
        "URL",
        "STATE",
        "VERSION",
        "MODELS",
        "LOADED",
        "LAST ERROR",
    ])];
    for i in &instances.instances {
        let state = match (i.polled, i.healthy) {
            (false, _) => "pending",
            (true, true) => "up",
            (true, false) => "DOWN",
        };
        rows.push(row(&[
            &i.name,
            &i.url,
            state,
            i.version.as_deref().unwrap_or("-"),
            &i.models.to_string(),
            &i.loaded.to_string(),
            i.last_error.as_deref().unwrap_or("-"),
        ]));
    }
    out.push_str(&table(&rows));
    out
}

fn models_table(map: &ModelMap) -> String {
    let healthy = |name: &str| map.instance(name).is_some_and(|i| i.healthy);
    let mut rows = vec![row(&["MODEL", "INSTANCES", "LOADED ON", "DIGEST"])];
    for m in &map.models {
        let holders: Vec<String> = m
            .replicas
            .iter()
            .map(|r| {
                let down = if healthy(&r.instance) { "" } else { " (down)" };
                format!("{}{down}", r.instance)
            })
            .collect();
        let loaded: Vec<&str> = m
            .replicas
            .iter()
            .filter(|r| r.loaded.is_some())
            .map(|r| r.instance.as_str())
            .collect();
        let digest = if m.digest_mismatch {
            let odd: Vec<String> = m
                .replicas
                .iter()
                .filter(|r| r.digest != m.canonical_digest)
                .map(|r| format!("{} has {}", r.instance, short_digest(&r.digest)))
                .collect();
            format!(
                "MISMATCH canonical {}; {}",
                short_digest(&m.canonical_digest),
                odd.join(", ")
            )
        } else {
            format!("ok {}", short_digest(&m.canonical_digest))
        };
        let loaded = if loaded.is_empty() {
            "-".to_string()
        } else {
            loaded.join(", ")
        };
        rows.push(vec![m.name.clone(), holders.join(", "), loaded, digest]);
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::InstanceReport;
    use model_map::{InstanceState, ModelEntry, Replica};

    fn replica(instance: &str, digest: &str, loaded: bool) -> Replica {
        Replica {
            instance: instance.into(),
            digest: digest.into(),
            size: 1,
            modified_at: String::new(),
            modified_unix: 0,
            details: model_map::RawJson::null(),
            loaded: loaded.then(|| model_map::Loaded {
                size: 1,
                size_vram: 1,
                expires_at: String::new(),
                expires_unix: 0,
                context_length: None,
                entry: None,
            }),
            listed: None,
        }
    }

    fn instance(name: &str, healthy: bool) -> InstanceState {
        InstanceState {
            name: name.into(),
            url: format!("http://{name}:11434"),
            cluster: name.into(),
            authority: format!("{name}:11434"),
            address: String::new(),
            healthy,
            version: None,
        }
    }

    #[test]
    fn tables_show_holders_loaded_mismatch_and_health() {
        let mut map = ModelMap::new(
            vec![instance("a", true), instance("b", false)],
            vec![
                ModelEntry {
                    key: "k1".into(),
                    name: "llama3:latest".into(),
                    canonical_digest: "aaaaaaaaaaaaaaaa".into(),
                    digest_mismatch: true,
                    replicas: vec![
                        replica("a", "aaaaaaaaaaaaaaaa", true),
                        replica("b", "bbbbbbbbbbbbbbbb", false),
                    ],
                },
                ModelEntry {
                    key: "k2".into(),
                    name: "qwen:1".into(),
                    canonical_digest: "cccccccccccccccc".into(),
                    digest_mismatch: false,
                    replicas: vec![replica("a", "cccccccccccccccc", false)],
                },
            ],
        );
        map.id = "0123456789abcdef".into();
        let report = |name: &str, healthy: bool, err: Option<&str>| InstanceReport {
            name: name.into(),
            url: format!("http://{name}:11434"),
            cluster: name.into(),
            healthy,
            polled: true,
            version: Some("0.9.7".into()),
            last_seen: None,
            last_error: err.map(str::to_string),
            consecutive_failures: 0,
            consecutive_successes: 0,
            models: 2,
            loaded: 1,
            poll_latency_ms: None,
        };
        let body = InstancesBody {
            ready: true,
            map_id: Some(map.id.clone()),
            instances: vec![
                report("a", true, None),
                report("b", false, Some("GET /api/tags: refused")),
            ],
        };
        let text = render(&body, Some(&map));
        assert!(text.contains("2 models, 1/2 instances up"), "{text}");
        assert!(text.contains("a, b (down)"), "{text}");
        assert!(
            text.contains("MISMATCH canonical aaaaaaaaaaaa; b has bbbbbbbbbbbb"),
            "{text}"
        );
        assert!(text.contains("ok cccccccccccc"), "{text}");
        let b_line = text.lines().find(|l| l.starts_with("b ")).unwrap();
        assert!(
            b_line.contains("DOWN") && b_line.ends_with("GET /api/tags: refused"),
            "{text}"
        );
    }

    #[test]
    fn fleet_pulls_table() {
        assert_eq!(render_pulls(&[]), "");
        let pull = |model: &str, state: &str, error: Option<&str>| PullReport {
            model: model.into(),
            targets: vec!["gpu-a".into(), "gpu-b".into()],
            started: "2026-12-01T21:00:00Z".into(),
            state: state.into(),
            completed: 50,
            total: 200,
            error: error.map(str::to_string),
        };
        let text = render_pulls(&[
            pull("llama3.2:latest", "running", None),
            pull("phi3:latest", "failed", Some("boom (on gpu-b)")),
        ]);
        assert!(text.contains("llama3.2:latest"), "{text}");
        assert!(
            text.contains("25%") && text.contains("gpu-a,gpu-b"),
            "{text}"
        );
        assert!(text.contains("boom (on gpu-b)"), "{text}");
    }
}
