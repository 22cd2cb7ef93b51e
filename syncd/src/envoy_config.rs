//! Renders the Envoy bootstrap that fronts a fleet: one listener with the
//! ollama-lb wasm filter, one cluster per Ollama instance, a cluster for
//! syncd (one endpoint per replica), and admin on loopback.
//!
//! Two route layouts match the filter's `route_by`: `cluster` (one route
//! whose `cluster_header` the filter sets) and `host` (a virtual host per
//! instance whose `domains` are its `host:port`, as a mesh such as Istio
//! generates per service, so the filter's `:authority` rewrite picks it).
//!
//! The demo, the end-to-end tests and `syncd envoy-config` all render from
//! here, so there is one Envoy configuration and not several drifting
//! copies. The output is YAML (built as JSON values, emitted as block YAML).

use serde_json::{json, Value};
use std::fmt::Write as _;
use std::net::SocketAddr;

/// The header the filter sets and the route reads to pick the cluster.
pub const ROUTE_HEADER: &str = "x-ollama-lb-cluster";

/// Default request-body limit, shared by the filter and Envoy's buffers.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 << 20;

/// An upstream Envoy cluster: one Ollama instance, or syncd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Envoy cluster name.
    pub cluster: String,
    /// Host name or IP address.
    pub host: String,
    pub port: u16,
}

/// How the filter hands its choice to Envoy's router (the filter's
/// `route_by`), and so which routes the bootstrap has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RouteBy {
    /// One route reading the cluster from the filter's header.
    #[default]
    Cluster,
    /// A virtual host per instance authority, as in a service mesh.
    Host,
}

impl RouteBy {
    fn as_str(self) -> &'static str {
        match self {
            RouteBy::Cluster => "cluster",
            RouteBy::Host => "host",
        }
    }
}

/// Everything that varies between deployments.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    /// Where clients connect (the Ollama port, 11434, by default).
    pub listen: SocketAddr,
    /// Envoy's admin interface; keep it on loopback.
    pub admin: SocketAddr,
    /// One cluster per Ollama instance.
    pub instances: Vec<Upstream>,
    /// syncd, which the filter long-polls for the model map.
    pub syncd: Upstream,
    /// Further syncd replicas as (host, port): more endpoints of the syncd
    /// cluster, taken in turn. Replicas of one fleet publish the same map.
    pub syncd_replicas: Vec<(String, u16)>,
    /// Route layout, and the filter's `route_by`.
    pub route_by: RouteBy,
    /// The filter's wasm file, or `None` for a plain header-routed proxy
    /// (used only by tests of the rig itself).
    pub wasm_path: Option<String>,
    /// The filter's plugin configuration (JSON object).
    pub plugin_config: Value,
    /// Largest request body accepted; Envoy's buffers get a little more so
    /// the filter's own 413 answers first.
    pub max_body_bytes: u64,
}

impl EnvoyConfig {
    /// The bootstrap as a JSON value.
    pub fn to_value(&self) -> Value {
        let buffer_limit = self.max_body_bytes + (1 << 20);
        let mut http_filters = Vec::new();
        if let Some(wasm) = &self.wasm_path {
            let mut plugin = self.plugin_config.clone();
            if let Some(obj) = plugin.as_object_mut() {
                obj.entry("max_body_bytes")
                    .or_insert(json!(self.max_body_bytes));
                obj.entry("syncd_cluster")
                    .or_insert(json!(self.syncd.cluster));
                if self.route_by != RouteBy::Cluster {
                    obj.entry("route_by")
                        .or_insert(json!(self.route_by.as_str()));
                }
                // Sorted, as before the workspace kept insertion order.
                obj.sort_keys();
            }
            http_filters.push(json!({
                "name": "envoy.filters.http.wasm",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": {
                        "name": "ollama_lb",
                        "root_id": "ollama_lb",
                        // Without this, Envoy 1.40 turns the filter's pause on
                        // headers into stop-all and the body never arrives.
                        "allow_on_headers_stop_iteration": true,
                        "configuration": {
                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                            "value": plugin.to_string(),
                        },
                        "vm_config": {
                            "vm_id": "ollama_lb",
                            "runtime": "envoy.wasm.runtime.v8",
                            "code": {"local": {"filename": wasm}},
                        },
                    },
                },
            }));
        }
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }));
        let mut clusters: Vec<Value> = self
            .instances
            .iter()
            .map(|u| cluster(&u.cluster, &[(u.host.clone(), u.port)], buffer_limit))
            .collect();
        let mut syncd = vec![(self.syncd.host.clone(), self.syncd.port)];
        syncd.extend(self.syncd_replicas.iter().cloned());
        clusters.push(cluster(&self.syncd.cluster, &syncd, 1 << 20));
        json!({
            "admin": {"address": socket(self.admin)},
            "static_resources": {
                "listeners": [{
                    "name": "ollama",
                    "address": socket(self.listen),
                    "per_connection_buffer_limit_bytes": buffer_limit,
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "ollama",
                            // Model loads can take minutes before the first
                            // byte, and streams run long: no request timeout,
                            // a generous idle timeout.
                            "request_timeout": "0s",
                            "stream_idle_timeout": "900s",
                            // Ollama sends no `Server` header: neither do
                            // the filter's own answers, nor Envoy over
                            // the instances' (issue #15).
                            "server_header_transformation": "PASS_THROUGH",
                            "route_config": {
                                "name": "ollama",
                                "virtual_hosts": self.virtual_hosts(),
                            },
                            "http_filters": http_filters,
                        },
                    }]}],
                }],
                "clusters": clusters,
            },
        })
    }

    fn virtual_hosts(&self) -> Value {
        // Model loads can take minutes before the first byte, and streams
        // run long: no route timeout, a generous idle timeout.
        let to = |target: (&str, &str)| {
            json!([{
                "match": {"prefix": "/"},
                "route": {(target.0): target.1, "timeout": "0s", "idle_timeout": "900s"},
            }])
        };
        match self.route_by {
            RouteBy::Cluster => json!([{
                "name": "ollama",
                "domains": ["*"],
                "routes": to(("cluster_header", ROUTE_HEADER)),
            }]),
            RouteBy::Host => {
                let mut hosts: Vec<Value> = self
                    .instances
                    .iter()
                    .map(|u| {
                        json!({
                            "name": u.cluster,
                            "domains": [u.authority()],
                            "routes": to(("cluster", &u.cluster)),
                        })
                    })
                    .collect();
                // Requests arrive with the balancer's own host name and are
                // re-routed once the filter rewrites `:authority`; one it did
                // not route (the filter failed open) gets a clear answer.
                hosts.push(json!({
                    "name": "ollama",
                    "domains": ["*"],
                    "routes": [{
                        "match": {"prefix": "/"},
                        "direct_response": {
                            "status": 503,
                            "body": {"inline_string": "{\"error\":\"ollama-lb: no instance was chosen for this request\"}"},
                        },
                    }],
                }));
                Value::Array(hosts)
            }
        }
    }

    /// The bootstrap as YAML, with a header saying where it came from.
    pub fn to_yaml(&self) -> String {
        let mut out = String::from(
            "# Envoy bootstrap for ollama-lb, rendered by `syncd envoy-config`.\n\
             # Edit the flags and render again rather than editing by hand.\n",
        );
        emit_yaml(&mut out, &self.to_value(), 0);
        out
    }
}

fn socket(addr: SocketAddr) -> Value {
    json!({"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}})
}

impl Upstream {
    /// `host:port` as the map's `InstanceState.authority` spells it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn cluster(name: &str, endpoints: &[(String, u16)], buffer_limit: u64) -> Value {
    let lb_endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(host, port)| {
            json!({"endpoint": {"address": {
                "socket_address": {"address": host, "port_value": port}
            }}})
        })
        .collect();
    json!({
        "name": name,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "2s",
        "per_connection_buffer_limit_bytes": buffer_limit,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": lb_endpoints}],
        },
    })
}

/// Block-style YAML for a JSON value. Strings are written as JSON strings,
/// which YAML reads as double-quoted scalars.
fn emit_yaml(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            // Sorted, so the output does not depend on serde_json's map
            // order (the workspace keeps insertion order, issue #15).
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (key, v) in entries {
                let key = yaml_key(key);
                if is_block(v) {
                    let _ = writeln!(out, "{pad}{key}:");
                    emit_yaml(out, v, indent + 2);
                } else {
                    let _ = writeln!(out, "{pad}{key}: {}", scalar(v));
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if is_block(item) {
                    // The first line of the item goes after "- ".
                    let mut nested = String::new();
                    emit_yaml(&mut nested, item, indent + 2);
                    let trimmed = nested.trim_start_matches(' ');
                    let _ = write!(out, "{pad}- {trimmed}");
                } else {
                    let _ = writeln!(out, "{pad}- {}", scalar(item));
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", scalar(other));
        }
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

fn yaml_key(key: &str) -> String {
    if key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EnvoyConfig {
        EnvoyConfig {
            listen: "127.0.0.1:11434".parse().unwrap(),
            admin: "127.0.0.1:9901".parse().unwrap(),
            instances: vec![Upstream {
                cluster: "a".into(),
                host: "gpu-a".into(),
                port: 11434,
            }],
            syncd: Upstream {
                cluster: "syncd".into(),
                host: "127.0.0.1".into(),
                port: 11435,
            },
            syncd_replicas: vec![],
            route_by: RouteBy::Cluster,
            wasm_path: Some("/x/filter.wasm".into()),
            plugin_config: json!({"policy": "random"}),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    #[test]
    fn yaml_is_block_style_and_keeps_every_value() {
        let yaml = sample().to_yaml();
        assert!(yaml.contains("\n      name: \"ollama\"\n"), "{yaml}");
        assert!(yaml.contains(
            "\"@type\": \"type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\""
        ));
        assert!(yaml.contains("allow_on_headers_stop_iteration: true"));
        assert!(yaml.contains("cluster_header: \"x-ollama-lb-cluster\""));
    }

    #[test]
    fn plugin_config_gets_the_body_limit_and_syncd_cluster() {
        let v = sample().to_value();
        let text = v.to_string();
        assert!(text.contains(r#"\"max_body_bytes\":33554432"#), "{text}");
        assert!(text.contains(r#"\"syncd_cluster\":\"syncd\""#), "{text}");
    }

    #[test]
    fn host_layout_has_a_virtual_host_per_instance_authority() {
        let mut config = sample();
        config.route_by = RouteBy::Host;
        config.syncd_replicas = vec![("10.0.0.2".into(), 11435)];
        let v = config.to_value();
        let hcm = &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        let hosts = hcm["route_config"]["virtual_hosts"].as_array().unwrap();
        assert_eq!(hosts[0]["domains"], json!(["gpu-a:11434"]));
        assert_eq!(hosts[0]["routes"][0]["route"]["cluster"], "a");
        assert_eq!(hosts[1]["domains"], json!(["*"]));
        let plugin = hcm["http_filters"][0]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap();
        assert!(plugin.contains(r#""route_by":"host""#), "{plugin}");
        let syncd = &v["static_resources"]["clusters"][1]["load_assignment"]["endpoints"][0]
            ["lb_endpoints"];
        assert_eq!(syncd.as_array().unwrap().len(), 2);
    }
}
