//! Plugin configuration: the JSON in the Envoy `PluginConfig`, with explicit
//! defaults, unknown fields rejected, and every value checked before use.

use serde::Deserialize;
use thiserror::Error;

use crate::policy::Policy;

/// Why a plugin configuration was rejected. Each message names the field.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("plugin configuration is not valid JSON: {0}")]
    Json(String),
    #[error("plugin configuration field `{field}`: {message}")]
    Bad { field: String, message: String },
    #[error("plugin configuration field `{field}` {problem}")]
    Field {
        field: &'static str,
        problem: &'static str,
    },
}

/// The filter's settings (see the crate README for each field's meaning).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Envoy cluster that reaches syncd.
    pub syncd_cluster: String,
    /// `:authority` sent to syncd.
    pub syncd_authority: String,
    /// Path of the map on syncd.
    pub map_path: String,
    /// How long syncd may hold a long poll, in seconds.
    pub long_poll_seconds: u32,
    /// How requests are spread over the instances holding a model.
    pub policy: Policy,
    /// Request header whose value pins a conversation to one instance.
    pub affinity_header: Option<String>,
    /// `loaded_least_request` keeps a conversation (the start of its
    /// `messages`, or `system` and `prompt`) on one instance.
    pub conversation_affinity: bool,
    /// How many more requests for the model a conversation's instance may
    /// have in flight than the least busy candidate before the
    /// conversation moves.
    pub conversation_slack: u32,
    /// Largest request body the filter will hold while reading the model.
    pub max_body_bytes: u64,
    /// How long an instance that answered 503 or failed is ranked last.
    pub cooldown_ms: u64,
    /// How long a request for a model keeps its instance warm for
    /// `loaded_least_request` before the map shows the model loaded
    /// (0: only the map counts).
    pub warm_ms: u64,
    /// Header carrying the ranked `IP:port` list to the fleet cluster's
    /// override-host policy (endpoints mode).
    pub endpoints_header: String,
    /// The most retries of one request, each on the next instance of the
    /// ranking (endpoints mode): a request lists at most `retries + 1`.
    pub retries: u32,
    /// How the chosen instance is handed to Envoy's router.
    pub route_by: RouteBy,
    /// Refuse a non-local `Host` with 403, as Ollama does on a loopback
    /// listener (`syncd envoy-config` turns it on when Envoy listens on
    /// loopback).
    pub host_check: bool,
    /// Host names allowed by the Host check besides the local ones: exact
    /// names, `*.domain`, or `*` for all.
    pub allowed_hosts: Vec<String>,
    /// CORS origins allowed besides Ollama's defaults, as `OLLAMA_ORIGINS`
    /// (one `*` wildcard each; `*` alone allows every origin).
    pub origins: Vec<String>,
}

/// How a request is sent to the instance the filter chose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteBy {
    /// List the ranked instances' `IP:port` in `endpoints_header`, read
    /// by the override-host policy of one fleet cluster holding every
    /// instance; Envoy retries on the next one listed.
    #[default]
    Endpoints,
    /// Rewrite `:authority` to the instance's `host:port`, so the route the
    /// proxy already has for that host takes it (Istio and other meshes,
    /// which have no cluster per instance named by syncd).
    Host,
}

/// The override-host header the rendered fleet cluster reads, and the
/// default body limit: one definition, shared with syncd's renderer.
pub use model_map::{DEFAULT_MAX_BODY_BYTES, ENDPOINTS_HEADER};

/// The most retries a plugin configuration may ask for.
pub const MAX_RETRIES: u32 = 10;

impl Default for Config {
    fn default() -> Self {
        Config {
            syncd_cluster: "syncd".into(),
            syncd_authority: "syncd".into(),
            map_path: "/v1/map".into(),
            long_poll_seconds: 25,
            policy: Policy::LoadedLeastRequest,
            affinity_header: None,
            conversation_affinity: true,
            conversation_slack: 2,
            // Ollama has no body limit; this holds several large images.
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            cooldown_ms: 5000,
            // Until syncd's next poll shows it (Ollama lists a model in
            // /api/ps while it loads): 2.5 of syncd's default 2 s intervals.
            warm_ms: 5_000,
            endpoints_header: ENDPOINTS_HEADER.into(),
            retries: 2,
            route_by: RouteBy::Endpoints,
            host_check: false,
            allowed_hosts: Vec::new(),
            origins: Vec::new(),
        }
    }
}

impl Config {
    /// Parses and validates; an empty configuration means all defaults.
    pub fn try_from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: Config = if bytes.iter().all(u8::is_ascii_whitespace) {
            Config::default()
        } else {
            let value: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(e.to_string()))?;
            if !value.is_object() {
                return Err(ConfigError::Json("expected a JSON object".into()));
            }
            serde_json::from_value(value.clone()).map_err(|e| blame(&value, e))?
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem| Err(ConfigError::Field { field, problem });
        if self.syncd_cluster.is_empty() {
            return bad("syncd_cluster", "must name the Envoy cluster of syncd");
        }
        if self.syncd_authority.is_empty() {
            return bad("syncd_authority", "must not be empty");
        }
        if !self.map_path.starts_with('/') || self.map_path.contains('?') {
            return bad(
                "map_path",
                "must be a path starting with '/' and without a query",
            );
        }
        if !(1..=300).contains(&self.long_poll_seconds) {
            return bad("long_poll_seconds", "must be between 1 and 300");
        }
        if let Some(h) = &self.affinity_header {
            if !is_header_name(h) {
                return bad("affinity_header", "must be a lowercase HTTP header name");
            }
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > 1 << 32 {
            return bad("max_body_bytes", "must be between 1 and 4294967296");
        }
        if self.cooldown_ms > 3_600_000 {
            return bad("cooldown_ms", "must be at most 3600000 (one hour)");
        }
        if self.warm_ms > 3_600_000 {
            return bad("warm_ms", "must be at most 3600000 (one hour)");
        }
        if !is_header_name(&self.endpoints_header) || self.endpoints_header.starts_with("x-envoy-")
        {
            return bad(
                "endpoints_header",
                "must be a lowercase HTTP header name not starting with x-envoy-",
            );
        }
        if self.conversation_slack > 1000 {
            return bad("conversation_slack", "must be at most 1000");
        }
        if self.retries > MAX_RETRIES {
            return bad("retries", "must be at most 10");
        }
        if self.allowed_hosts.iter().any(|h| !is_host_rule(h)) {
            return bad(
                "allowed_hosts",
                "entries must be host names without port, `*.domain` or `*`",
            );
        }
        if self
            .origins
            .iter()
            .any(|o| o.is_empty() || o.matches('*').count() > 1)
        {
            return bad(
                "origins",
                "entries must be origins such as https://webui.example.com, with at most one `*`",
            );
        }
        Ok(())
    }
}

/// serde's messages do not always name the field; find the one key that
/// fails on its own.
fn blame(value: &serde_json::Value, e: serde_json::Error) -> ConfigError {
    let culprit = value.as_object().and_then(|fields| {
        fields.iter().find_map(|(k, v)| {
            let alone = serde_json::Value::Object([(k.clone(), v.clone())].into_iter().collect());
            serde_json::from_value::<Config>(alone)
                .is_err()
                .then(|| k.clone())
        })
    });
    match culprit {
        Some(field) => ConfigError::Bad {
            field,
            message: e.to_string(),
        },
        None => ConfigError::Json(e.to_string()),
    }
}

fn is_host_rule(h: &str) -> bool {
    let name = h.strip_prefix("*.").unwrap_or(h);
    h == "*"
        || (!name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'))
}

fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_all_defaults() {
        assert_eq!(Config::try_from_json(b""), Ok(Config::default()));
        assert_eq!(Config::try_from_json(b"{}"), Ok(Config::default()));
        assert_eq!(Config::default().route_by, RouteBy::Endpoints);
    }

    #[test]
    fn every_field_is_read() {
        let c = Config::try_from_json(
            br#"{"syncd_cluster":"s","syncd_authority":"a","map_path":"/m","long_poll_seconds":3,
                "policy":"round_robin","affinity_header":"x-openwebui-chat-id","max_body_bytes":10,
                "cooldown_ms":1,"endpoints_header":"x-r","retries":4,"route_by":"host",
                "host_check":true,"allowed_hosts":["lb"],"origins":["https://w.example"]}"#,
        )
        .unwrap();
        assert_eq!(c.route_by, RouteBy::Host);
        assert!(c.host_check);
        assert_eq!((c.allowed_hosts.len(), c.origins.len()), (1, 1));
        assert_eq!(c.policy, Policy::RoundRobin);
        assert_eq!(c.affinity_header.as_deref(), Some("x-openwebui-chat-id"));
        assert_eq!(
            (
                c.long_poll_seconds,
                c.max_body_bytes,
                c.cooldown_ms,
                c.retries
            ),
            (3, 10, 1, 4)
        );
    }

    #[test]
    fn bad_fields_are_named() {
        for (json, field) in [
            (r#"{"polcy":"random"}"#, "polcy"),
            (r#"{"policy":"fastest"}"#, "`policy`"),
            (r#"{"cooldown_ms":"5s"}"#, "`cooldown_ms`"),
            ("1", "JSON"),
            ("[]", "object"),
            (r#"{"long_poll_seconds":0}"#, "long_poll_seconds"),
            (r#"{"map_path":"v1/map"}"#, "map_path"),
            (r#"{"endpoints_header":"X-Up"}"#, "endpoints_header"),
            (r#"{"endpoints_header":"x-envoy-x"}"#, "endpoints_header"),
            (r#"{"retries":11}"#, "retries"),
            (r#"{"route_by":"cluster"}"#, "`route_by`"),
            (r#"{"route_header":"x-ollama-lb-cluster"}"#, "route_header"),
            (r#"{"affinity_header":""}"#, "affinity_header"),
            (r#"{"max_body_bytes":0}"#, "max_body_bytes"),
            (r#"{"syncd_cluster":""}"#, "syncd_cluster"),
            (r#"{"allowed_hosts":["lb:80"]}"#, "allowed_hosts"),
            (r#"{"allowed_hosts":[""]}"#, "allowed_hosts"),
            (r#"{"origins":["https://*.*.x"]}"#, "origins"),
            (r#"{"host_check":"yes"}"#, "`host_check`"),
        ] {
            let err = Config::try_from_json(json.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{json}: {err}");
        }
    }
}
