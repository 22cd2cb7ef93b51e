//! Requests in flight as the gateways see them, for the status page.
//!
//! syncd never sees client traffic: the filter inside each Envoy counts
//! it, in the gauges `wasmcustom.ollama_lb.inflight.<instance>` and
//! `wasmcustom.ollama_lb.model_inflight.<instance>.<model key>` (summed
//! over that Envoy's workers). With `--envoy-admin URL` (repeatable) syncd
//! reads them from each Envoy's admin `/stats?format=json` when the page
//! asks, at most once a second, and adds them up across gateways. Without
//! it the page says where the numbers would come from instead of showing
//! zeros that mean nothing.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Gauge prefixes the filter writes (Envoy adds `wasmcustom.`).
const INFLIGHT: &str = "wasmcustom.ollama_lb.inflight.";
const MODEL_INFLIGHT: &str = "wasmcustom.ollama_lb.model_inflight.";
/// How long one reading of the gateways is reused.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// Limit of one admin request; a gateway slower than this is reported.
const ADMIN_TIMEOUT: Duration = Duration::from_millis(800);

/// What one gateway said.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GatewayReading {
    /// The admin URL as configured.
    pub admin: String,
    /// Why it could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// In-flight requests summed over the gateways that answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InFlight {
    /// False without `--envoy-admin`: the counts below are unknown, not 0.
    pub configured: bool,
    pub gateways: Vec<GatewayReading>,
    /// Per instance name.
    pub instances: BTreeMap<String, u64>,
    /// Per model key, then instance name.
    pub models: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The configured gateways and the last reading of them.
#[derive(Debug)]
pub struct Gateways {
    admins: Vec<String>,
    http: reqwest::Client,
    last: tokio::sync::Mutex<Option<(Instant, InFlight)>>,
    /// Set once a failure of each gateway was logged, so a dead admin does
    /// not fill the log once a second.
    warned: Mutex<Vec<bool>>,
}

impl Gateways {
    /// Gateways at these admin base URLs (`http://127.0.0.1:9901`).
    pub fn new(admins: Vec<String>) -> Gateways {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(ADMIN_TIMEOUT)
            .build()
            .unwrap_or_default();
        let warned = Mutex::new(vec![false; admins.len()]);
        Gateways {
            admins: admins
                .into_iter()
                .map(|a| a.trim_end_matches('/').to_string())
                .collect(),
            http,
            last: tokio::sync::Mutex::new(None),
            warned,
        }
    }

    /// The in-flight counts, read again if the last reading is over a
    /// second old. `instances` and `models` (keys) are the map's, used to
    /// split gauge names whose parts may contain dots.
    pub async fn read(&self, instances: &[&str], models: &[&str]) -> InFlight {
        if self.admins.is_empty() {
            return InFlight::default();
        }
        let mut last = self.last.lock().await;
        if let Some((at, reading)) = last.as_ref() {
            if at.elapsed() < FRESH_FOR {
                return reading.clone();
            }
        }
        let mut total = InFlight {
            configured: true,
            ..InFlight::default()
        };
        for (i, admin) in self.admins.iter().enumerate() {
            let error = match self.stats(admin).await {
                Ok(stats) => {
                    add_stats(&mut total, &stats, instances, models);
                    None
                }
                Err(e) => Some(e),
            };
            self.note(i, admin, error.as_deref());
            total.gateways.push(GatewayReading {
                admin: admin.clone(),
                error,
            });
        }
        *last = Some((Instant::now(), total.clone()));
        total
    }

    async fn stats(&self, admin: &str) -> Result<serde_json::Value, String> {
        let url = format!("{admin}/stats?format=json&filter=^wasmcustom\\.ollama_lb\\.");
        let resp =
            self.http.get(&url).send().await.map_err(|e| {
                format!("cannot reach Envoy admin {admin}: {e} (check --envoy-admin)")
            })?;
        if !resp.status().is_success() {
            return Err(format!("Envoy admin {admin} answered {}", resp.status()));
        }
        resp.json()
            .await
            .map_err(|e| format!("Envoy admin {admin}: unreadable /stats JSON: {e}"))
    }

    fn note(&self, i: usize, admin: &str, error: Option<&str>) {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        let Some(flag) = warned.get_mut(i) else {
            return;
        };
        match error {
            Some(e) if !*flag => {
                tracing::warn!(%admin, error = %e, "gateway in-flight counts unavailable");
                *flag = true;
            }
            None if *flag => {
                tracing::info!(%admin, "gateway in-flight counts available again");
                *flag = false;
            }
            _ => {}
        }
    }
}

/// Adds one gateway's `/stats?format=json` gauges to `total`. A gauge name
/// is split at the longest known instance name, then a known model key;
/// gauges of instances or models no longer in the map are skipped.
pub fn add_stats(
    total: &mut InFlight,
    stats: &serde_json::Value,
    instances: &[&str],
    models: &[&str],
) {
    let Some(list) = stats.get("stats").and_then(|s| s.as_array()) else {
        return;
    };
    for stat in list {
        let (Some(name), Some(value)) = (
            stat.get("name").and_then(|n| n.as_str()),
            stat.get("value").and_then(|v| v.as_u64()),
        ) else {
            continue;
        };
        if let Some(rest) = name.strip_prefix(MODEL_INFLIGHT) {
            let Some((instance, model)) = split_known(rest, instances, models) else {
                continue;
            };
            *total
                .models
                .entry(model.to_string())
                .or_default()
                .entry(instance.to_string())
                .or_default() += value;
        } else if let Some(instance) = name.strip_prefix(INFLIGHT) {
            if instances.contains(&instance) {
                *total.instances.entry(instance.to_string()).or_default() += value;
            }
        }
    }
}

/// `<instance>.<model key>` split at a known instance whose remainder is
/// a known model (instance names may contain dots, as model keys do).
fn split_known<'a>(s: &'a str, instances: &[&str], models: &[&str]) -> Option<(&'a str, &'a str)> {
    instances.iter().find_map(|i| {
        let model = s.strip_prefix(*i)?.strip_prefix('.')?;
        models.contains(&model).then(|| (&s[..i.len()], model))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gauges_split_at_known_names_and_add_up_across_gateways() {
        let key = "registry.ollama.ai/library/llama3:latest";
        let stats = json!({"stats": [
            {"name": "wasmcustom.ollama_lb.inflight.gpu.a", "value": 2},
            {"name": "wasmcustom.ollama_lb.inflight.gpu", "value": 1},
            {"name": format!("wasmcustom.ollama_lb.model_inflight.gpu.a.{key}"), "value": 2},
            {"name": format!("wasmcustom.ollama_lb.model_inflight.gone.{key}"), "value": 7},
            {"name": "wasmcustom.ollama_lb.routed.gpu.a", "value": 40},
            {"name": "wasmcustom.ollama_lb.map_age_ms", "value": 5},
        ]});
        let (instances, models) = (["gpu", "gpu.a"], [key]);
        let mut total = InFlight::default();
        add_stats(&mut total, &stats, &instances, &models);
        add_stats(&mut total, &stats, &instances, &models);
        assert_eq!(total.instances["gpu.a"], 4);
        assert_eq!(total.instances["gpu"], 2);
        assert_eq!(total.models[key]["gpu.a"], 4);
        assert_eq!(total.models.len(), 1, "{total:?}");
    }

    #[test]
    fn unexpected_json_adds_nothing() {
        let mut total = InFlight::default();
        add_stats(&mut total, &json!({"nope": 1}), &["a"], &[]);
        add_stats(&mut total, &json!({"stats": [{"name": 3}]}), &["a"], &[]);
        assert_eq!(total, InFlight::default());
    }
}
