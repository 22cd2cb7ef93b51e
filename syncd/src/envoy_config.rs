//! Renders the Envoy bootstrap that fronts a fleet: one listener with the
//! ollama-lb wasm filter, the instances, a cluster for syncd (one endpoint
//! per replica), and admin on loopback.
//!
//! Two layouts match the filter's `route_by`:
//! - `endpoints` (the default): one fleet cluster holding every instance
//!   (served by syncd over EDS, so instances come and go while Envoy
//!   runs; or fixed in the bootstrap with `--fleet-endpoints static`),
//!   whose `override_host` policy takes the filter's ranked `IP:port` list
//!   from a header, and one route whose retry policy moves a request that
//!   has not started its response to the next listed instance. The
//!   policy's fallback finds no host, so a request never reaches an
//!   instance the filter did not list (one without the model).
//! - `host`: a cluster per instance and a virtual host per instance whose
//!   `domains` are its `host:port`, as a mesh such as Istio generates per
//!   service, so the filter's `:authority` rewrite picks it.
//!
//! The demo, the end-to-end tests and `syncd envoy-config` all render from
//! here, so there is one Envoy configuration and not several drifting
//! copies. The output is YAML (built as JSON values, emitted as block YAML).

use serde_json::{json, Value};
use std::fmt::Write as _;
use std::net::SocketAddr;

/// The header the filter sets and the fleet cluster's override-host
/// policy reads: the ranked instances as `IP:port,IP:port,…` (defined
/// once, in model-map, for both).
pub use model_map::ENDPOINTS_HEADER;

/// Name of the cluster holding every instance (endpoints layout).
pub const FLEET_CLUSTER: &str = "ollama_fleet";

/// Default most retries of one request (each on the next listed instance).
pub const DEFAULT_RETRIES: u32 = 2;

/// Where Envoy learns the fleet cluster's endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FleetEndpoints {
    /// From syncd over EDS (REST-JSON): membership changes need no restart.
    #[default]
    Eds,
    /// The instances' hosts in the bootstrap (`STRICT_DNS`): a change of
    /// members means rendering again and restarting Envoy.
    Static,
}

/// Default request-body limit, shared by the filter and Envoy's buffers.
/// Ollama (Go) has none; 256 MiB holds a multimodal request with several
/// large images. Envoy holds at most this much per request while the
/// filter reads the model (and for a retry), so it bounds memory per
/// request, not per process. Defined once, in model-map, for both.
pub use model_map::DEFAULT_MAX_BODY_BYTES;

/// Envoy's request-header limit in KiB: Go's `http.DefaultMaxHeaderBytes`
/// (1 MiB) and the 4 KiB its server reads beyond it.
pub const MAX_REQUEST_HEADERS_KB: u32 = 1028;

/// Envoy's limit on the number of request headers. Go counts only bytes;
/// this lets the 1 MiB be spent on many small headers too.
pub const MAX_HEADERS_COUNT: u32 = 65_536;

/// An upstream Envoy cluster: one Ollama instance, or syncd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstream {
    /// Envoy cluster name.
    pub cluster: String,
    /// Host name or IP address.
    pub host: String,
    pub port: u16,
    /// TLS to the instance (`https://`), or plain HTTP.
    pub tls: Option<UpstreamTls>,
    /// The environment variable *of the Envoy process* holding the bearer
    /// token sent to this instance. The bootstrap names the variable
    /// (`%ENVIRONMENT(…)%`), never the token.
    pub bearer_token_env: Option<String>,
}

/// Envoy's upstream TLS to one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// PEM file of the CA(s) trusted for it; `None`: the system bundle
    /// (`/etc/ssl/certs/ca-certificates.crt`).
    pub ca_file: Option<String>,
}

/// The system CA bundle (Debian/Ubuntu/Alpine) Envoy trusts when an
/// instance names no CA file.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl Upstream {
    /// An instance (or syncd) reached over plain HTTP.
    pub fn plain(cluster: &str, host: &str, port: u16) -> Upstream {
        Upstream {
            cluster: cluster.to_string(),
            host: host.to_string(),
            port,
            ..Default::default()
        }
    }

    /// Whether this instance needs what only the host layout renders
    /// per instance (TLS or a credential).
    pub fn needs_own_cluster(&self) -> bool {
        self.tls.is_some() || self.bearer_token_env.is_some()
    }
}

/// How the filter hands its choice to Envoy's router (the filter's
/// `route_by`), and so which routes the bootstrap has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RouteBy {
    /// One fleet cluster; the filter lists the instances to try in order.
    #[default]
    Endpoints,
    /// A virtual host per instance authority, as in a service mesh.
    Host,
}

impl RouteBy {
    fn as_str(self) -> &'static str {
        match self {
            RouteBy::Endpoints => "endpoints",
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
    /// Failover of the endpoints layout.
    pub failover: Failover,
    /// Where the fleet cluster's endpoints come from (endpoints layout).
    pub fleet_endpoints: FleetEndpoints,
}

/// How Envoy retries a request on the next instance the filter listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// The most retries of one request (the filter lists one instance more).
    pub retries: u32,
    /// Longest wait for an attempt's response to start (its headers); the
    /// attempt is then abandoned and retried. `None`: no limit, since a
    /// cold model load can take minutes before the first byte.
    pub per_try_timeout: Option<std::time::Duration>,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            retries: DEFAULT_RETRIES,
            per_try_timeout: None,
        }
    }
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
                // Ollama's DNS-rebinding guard is on when it listens on
                // loopback; so is the filter's.
                obj.entry("host_check")
                    .or_insert(json!(self.listen.ip().is_loopback()));
                match self.route_by {
                    RouteBy::Endpoints => {
                        obj.entry("retries").or_insert(json!(self.failover.retries));
                    }
                    RouteBy::Host => {
                        obj.entry("route_by")
                            .or_insert(json!(self.route_by.as_str()));
                    }
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
            // No x-envoy-* headers on answers (x-envoy-upstream-service-time)
            // or on requests to instances: clients see what Ollama sends.
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                "suppress_envoy_headers": true,
            },
        }));
        let mut clusters: Vec<Value> = match self.route_by {
            RouteBy::Endpoints => vec![self.fleet_cluster(buffer_limit)],
            RouteBy::Host => self
                .instances
                .iter()
                .map(|u| instance_cluster(u, buffer_limit))
                .collect(),
        };
        let mut syncd = vec![(self.syncd.host.clone(), self.syncd.port)];
        syncd.extend(self.syncd_replicas.iter().cloned());
        clusters.push(cluster(&self.syncd.cluster, &syncd, 1 << 20));
        json!({
            // xDS needs a node; it names this gateway to syncd.
            "node": {"id": "ollama-lb", "cluster": "ollama-lb"},
            "admin": {"address": socket(self.admin)},
            "stats_config": stats_config(),
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
                            // Paths as Ollama (Go) reads them: unreserved
                            // escapes decoded, `%2F` a slash (Go's
                            // `URL.Path`); the filter decodes the rest.
                            // Slashes are not merged: gin does not either.
                            "normalize_path": true,
                            "path_with_escaped_slashes_action": "UNESCAPE_AND_FORWARD",
                            // Go's header limits, and HTTP/1.0 as Go serves it.
                            "max_request_headers_kb": MAX_REQUEST_HEADERS_KB,
                            "common_http_protocol_options": {"max_headers_count": MAX_HEADERS_COUNT},
                            "http_protocol_options": {
                                "accept_http_10": true,
                                "default_host_for_http_10": self.listen.to_string(),
                            },
                            "local_reply_config": local_reply_config(self.max_body_bytes),
                            "route_config": {
                                "name": "ollama",
                                "virtual_hosts": self.virtual_hosts(),
                            },
                            "http_filters": http_filters,
                            "access_log": access_log(),
                        },
                    }]}],
                }],
                "clusters": clusters,
            },
        })
    }

    /// Every instance as an endpoint, with the override-host policy.
    fn fleet_cluster(&self, buffer_limit: u64) -> Value {
        let mut fleet = match self.fleet_endpoints {
            FleetEndpoints::Static => {
                let all: Vec<_> = self
                    .instances
                    .iter()
                    .map(|u| (u.host.clone(), u.port))
                    .collect();
                cluster(FLEET_CLUSTER, &all, buffer_limit)
            }
            FleetEndpoints::Eds => json!({
                "name": FLEET_CLUSTER,
                "type": "EDS",
                "connect_timeout": "2s",
                "per_connection_buffer_limit_bytes": buffer_limit,
                "eds_cluster_config": {"eds_config": {
                    "resource_api_version": "V3",
                    "api_config_source": {
                        "api_type": "REST",
                        "transport_api_version": "V3",
                        "cluster_names": [self.syncd.cluster],
                        "refresh_delay": "0.5s",
                        "request_timeout": "1s",
                    },
                }},
            }),
        };
        if let Some(fleet) = fleet.as_object_mut() {
            fleet.insert("load_balancing_policy".into(), override_host_policy());
        }
        fleet
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
            RouteBy::Endpoints => {
                let mut routes = to(("cluster", FLEET_CLUSTER));
                let route = routes
                    .pointer_mut("/0/route")
                    .and_then(Value::as_object_mut);
                if let Some(route) = route {
                    route.insert("retry_policy".into(), self.failover.retry_policy());
                }
                let fleet_route = routes.get(0).cloned().unwrap_or(Value::Null);
                let routes = json!([self.fleet_manage_route(), fleet_route]);
                json!([{"name": "ollama", "domains": ["*"], "routes": routes}])
            }
            RouteBy::Host => {
                let mut hosts: Vec<Value> = self
                    .instances
                    .iter()
                    .map(|u| {
                        let mut host = json!({
                            "name": u.cluster,
                            "domains": [u.authority()],
                            "routes": to(("cluster", &u.cluster)),
                        });
                        if let Some(var) = &u.bearer_token_env {
                            set_key(&mut host, "request_headers_to_add", bearer_header(var));
                        }
                        host
                    })
                    .collect();
                // Requests arrive with the balancer's own host name and are
                // re-routed once the filter rewrites `:authority`; one it did
                // not route (the filter failed open) gets a clear answer.
                hosts.push(json!({
                    "name": "ollama",
                    "domains": ["*"],
                    "routes": [self.fleet_manage_route(), {
                        "match": {"prefix": "/"},
                        "direct_response": {
                            "status": 503,
                            // Put in Ollama's JSON shape by local_reply_config.
                            "body": {"inline_string": "ollama-lb: no instance was chosen for this request"},
                        },
                    }],
                }));
                Value::Array(hosts)
            }
        }
    }

    /// The route of management requests the filter marked for the whole
    /// fleet (pull, delete, copy, create, blobs, unload): to syncd, which
    /// serves Ollama's paths under `/v1/fleet/`. Pulls stream for as long
    /// as the slowest instance takes: no timeout, no retry (a pull is
    /// joined, never repeated).
    fn fleet_manage_route(&self) -> Value {
        json!({
            "match": {
                "prefix": "/",
                "headers": [{"name": model_map::FLEET_HEADER, "present_match": true}],
            },
            "route": {
                "cluster": self.syncd.cluster,
                "prefix_rewrite": model_map::FLEET_PATH_PREFIX,
                "timeout": "0s",
                "idle_timeout": "900s",
            },
        })
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

impl Failover {
    /// The route's retry policy. The filter's `x-envoy-max-retries` per
    /// request (one less than it listed) takes precedence over
    /// `num_retries`. Only what happens before the response starts is
    /// retried (Envoy never replays a response it began to send): a
    /// refused or failed connection, a reset before the response, and
    /// Ollama's 503 (queue full).
    fn retry_policy(&self) -> Value {
        let mut policy = json!({
            "retry_on": "connect-failure,reset,retriable-status-codes",
            "retriable_status_codes": [503],
            "num_retries": self.retries,
        });
        if let (Some(t), Some(policy)) = (self.per_try_timeout, policy.as_object_mut()) {
            policy.insert(
                "per_try_timeout".into(),
                json!(format!("{:.3}s", t.as_secs_f64())),
            );
        }
        policy
    }
}

/// `override_host` reading the filter's list, with a fallback that finds
/// no host (a subset policy whose subsets nothing matches, and
/// `NO_FALLBACK`): when the list is used up, the request fails with 503
/// instead of going to an instance the filter did not choose.
fn override_host_policy() -> Value {
    let typed = |name: &str, ty: &str, config: Value| {
        let mut typed_config = json!({"@type": format!("type.googleapis.com/{ty}")});
        if let (Some(t), Some(c)) = (typed_config.as_object_mut(), config.as_object()) {
            t.extend(c.clone());
        }
        json!({"policies": [{"typed_extension_config": {"name": name, "typed_config": typed_config}}]})
    };
    let round_robin = typed(
        "envoy.load_balancing_policies.round_robin",
        "envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin",
        json!({}),
    );
    let nowhere = typed(
        "envoy.load_balancing_policies.subset",
        "envoy.extensions.load_balancing_policies.subset.v3.Subset",
        json!({
            "fallback_policy": "NO_FALLBACK",
            "subset_selectors": [{"keys": ["ollama_lb_never"]}],
            "subset_lb_policy": round_robin,
        }),
    );
    typed(
        "envoy.load_balancing_policies.override_host",
        "envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost",
        json!({
            "override_host_sources": [{"header": ENDPOINTS_HEADER}],
            "fallback_policy": nowhere,
        }),
    )
}

/// Envoy's own answers (no healthy upstream, upstream reset, a body or
/// headers over the limits, a malformed request) in Ollama's JSON shape:
/// `{"error":"…"}`, or OpenAI's error object under `/v1/` (with Envoy's
/// sorted keys: `code`, `message`, `param`, `type`). The filter's
/// answers carry [`model_map::ANSWERED_HEADER`] and are left alone; a
/// request Envoy refused before its headers were read has none either.
fn local_reply_config(max_body_bytes: u64) -> Value {
    let not_answered = json!({"header_filter": {"header": {
        "name": model_map::ANSWERED_HEADER, "present_match": true, "invert_match": true,
    }}});
    // `/v1/…` but not the fleet route's rewrite of `/api/…` to syncd.
    let openai = json!({"and_filter": {"filters": [
        {"header_filter": {"header": {"name": ":path", "string_match": {"prefix": "/v1/"}}}},
        {"header_filter": {"header": {
            "name": ":path",
            "string_match": {"prefix": model_map::FLEET_PATH_PREFIX},
            "invert_match": true,
        }}},
    ]}});
    let too_large = json!({"status_code_filter": {"comparison": {
        "op": "EQ", "value": {"default_value": 413, "runtime_key": "ollama_lb.too_large"},
    }}});
    let all = |filters: Vec<Value>| json!({"and_filter": {"filters": filters}});
    let native = json!({
        "json_format": {"error": "%LOCAL_REPLY_BODY%"},
        "content_type": "application/json; charset=utf-8",
    });
    let openai_shape = json!({
        "json_format": {"error": {
            "message": "%LOCAL_REPLY_BODY%", "type": "api_error", "param": null, "code": null,
        }},
        "content_type": "application/json",
    });
    let too_large_text = json!({"inline_string": format!(
        "request body too large: ollama-lb reads at most {max_body_bytes} bytes to find the model"
    )});
    json!({"mappers": [
        {
            "filter": all(vec![not_answered.clone(), too_large.clone(), openai.clone()]),
            "body": too_large_text,
            "body_format_override": openai_shape,
        },
        {
            "filter": all(vec![not_answered.clone(), too_large]),
            "body": too_large_text,
            "body_format_override": native,
        },
        {"filter": all(vec![not_answered.clone(), openai]), "body_format_override": openai_shape},
        {"filter": not_answered, "body_format_override": native},
    ]})
}

/// Turns the instance in the filter's per-instance stat names
/// (`wasmcustom.ollama_lb.inflight.<instance>`, `….routed.<instance>`)
/// into an `instance` tag, so Prometheus gets `ollama_lb_inflight{instance}`
/// rather than one metric name per instance. The per-model gauges stay
/// untagged: instance names and model keys both may contain dots, so no
/// pattern can split them (syncd's status page splits them with the map).
fn stats_config() -> Value {
    json!({"stats_tags": [{
        "tag_name": "instance",
        "regex": r"^wasmcustom\.ollama_lb\.(?:inflight|routed)(\.(.+))$",
    }]})
}

/// One JSON line per request on Envoy's stdout: the model (set by the
/// filter as the `ollama_lb_model` property, so Envoy keeps it in filter
/// state), the cluster and host that served it, and how many attempts that
/// took (above 1: retried). Fleet reads the filter answers itself have no
/// upstream (`-`/`null`). Field meanings are in docs/operations.md.
fn access_log() -> Value {
    json!([{
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": {"json_format": {
                "time": "%START_TIME%",
                "method": "%REQ(:METHOD)%",
                "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                "status": "%RESPONSE_CODE%",
                "model": "%FILTER_STATE(wasm.ollama_lb_model:PLAIN)%",
                "cluster": "%UPSTREAM_CLUSTER%",
                "upstream_host": "%UPSTREAM_HOST%",
                "listed": "%REQ(X-OLLAMA-LB-ENDPOINTS)%",
                "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
                "response_flags": "%RESPONSE_FLAGS%",
                "details": "%RESPONSE_CODE_DETAILS%",
                "duration_ms": "%DURATION%",
                "bytes_received": "%BYTES_RECEIVED%",
                "bytes_sent": "%BYTES_SENT%",
                "request_id": "%REQ(X-REQUEST-ID)%",
            }},
        },
    }])
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

/// `Authorization: Bearer <token>` with the token read by Envoy from its
/// own environment when it loads the bootstrap; it replaces any
/// `Authorization` the client sent.
fn bearer_header(var: &str) -> Value {
    json!([{
        "header": {"key": "authorization", "value": format!("Bearer %ENVIRONMENT({var})%")},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }])
}

/// Sets `key` of the JSON object `v` (a no-op on anything else, which the
/// literals here never are).
fn set_key(v: &mut Value, key: &str, value: Value) {
    if let Some(obj) = v.as_object_mut() {
        obj.insert(key.to_string(), value);
    }
}

/// An instance's own cluster (host layout), with TLS when it has some.
fn instance_cluster(u: &Upstream, buffer_limit: u64) -> Value {
    let mut c = cluster(&u.cluster, &[(u.host.clone(), u.port)], buffer_limit);
    if let Some(tls) = &u.tls {
        set_key(&mut c, "transport_socket", tls_socket(&u.host, tls));
    }
    c
}

/// Upstream TLS: SNI and the certificate's name are the instance's host
/// (an IP address is matched as an IP SAN and sent no SNI), checked
/// against the instance's CA or the system bundle.
fn tls_socket(host: &str, tls: &UpstreamTls) -> Value {
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let san_type = if is_ip { "IP_ADDRESS" } else { "DNS" };
    let ca = tls.ca_file.as_deref().unwrap_or(SYSTEM_CA_BUNDLE);
    let mut context = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {"validation_context": {
            "trusted_ca": {"filename": ca},
            "match_typed_subject_alt_names": [{"san_type": san_type, "matcher": {"exact": host}}],
        }},
    });
    if !is_ip {
        set_key(&mut context, "sni", json!(host));
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": context})
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
                ..Default::default()
            }],
            syncd: Upstream {
                cluster: "syncd".into(),
                host: "127.0.0.1".into(),
                port: 11435,
                ..Default::default()
            },
            syncd_replicas: vec![],
            route_by: RouteBy::Endpoints,
            wasm_path: Some("/x/filter.wasm".into()),
            plugin_config: json!({"policy": "random"}),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            failover: Failover::default(),
            fleet_endpoints: FleetEndpoints::Static,
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
        assert!(yaml.contains("cluster: \"ollama_fleet\""));
    }

    #[test]
    fn requests_are_logged_with_model_upstream_and_attempts() {
        let v = sample().to_value();
        let hcm = &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        let fields = &hcm["access_log"][0]["typed_config"]["log_format"]["json_format"];
        assert_eq!(
            fields["model"],
            "%FILTER_STATE(wasm.ollama_lb_model:PLAIN)%"
        );
        assert_eq!(fields["upstream_host"], "%UPSTREAM_HOST%");
        assert_eq!(fields["attempts"], "%UPSTREAM_REQUEST_ATTEMPT_COUNT%");
        assert_eq!(v["stats_config"]["stats_tags"][0]["tag_name"], "instance");
    }

    #[test]
    fn plugin_config_gets_the_body_limit_and_syncd_cluster() {
        let v = sample().to_value();
        let text = v.to_string();
        assert!(text.contains(r#"\"max_body_bytes\":268435456"#), "{text}");
        assert!(
            text.contains(r#"\"host_check\":true"#),
            "loopback listener: {text}"
        );
        assert!(text.contains(r#"\"syncd_cluster\":\"syncd\""#), "{text}");
    }

    #[test]
    fn endpoints_layout_is_one_fleet_cluster_with_retries_and_no_fallback() {
        let mut config = sample();
        config.instances.push(Upstream {
            cluster: "b".into(),
            host: "10.0.0.2".into(),
            port: 11434,
            ..Default::default()
        });
        config.failover.per_try_timeout = Some(std::time::Duration::from_millis(1500));
        let v = config.to_value();
        let clusters = v["static_resources"]["clusters"].as_array().unwrap();
        assert_eq!(clusters.len(), 2, "the fleet and syncd");
        let fleet = &clusters[0];
        assert_eq!(fleet["name"], FLEET_CLUSTER);
        let endpoints = fleet["load_assignment"]["endpoints"][0]["lb_endpoints"]
            .as_array()
            .unwrap();
        assert_eq!(endpoints.len(), 2);
        let policy = &fleet["load_balancing_policy"]["policies"][0]["typed_extension_config"];
        assert_eq!(
            policy["name"],
            "envoy.load_balancing_policies.override_host"
        );
        let config_ = &policy["typed_config"];
        assert_eq!(
            config_["override_host_sources"][0]["header"],
            ENDPOINTS_HEADER
        );
        let fallback = &config_["fallback_policy"]["policies"][0]["typed_extension_config"];
        assert_eq!(fallback["typed_config"]["fallback_policy"], "NO_FALLBACK");
        let hcm = &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        let routes = &hcm["route_config"]["virtual_hosts"][0]["routes"];
        let manage = &routes[0];
        assert_eq!(manage["match"]["headers"][0]["name"], "x-ollama-lb-fleet");
        assert_eq!(manage["route"]["cluster"], "syncd");
        assert_eq!(manage["route"]["prefix_rewrite"], "/v1/fleet/");
        let route = &routes[1]["route"];
        assert_eq!(route["cluster"], FLEET_CLUSTER);
        assert_eq!(route["retry_policy"]["num_retries"], 2);
        assert_eq!(
            route["retry_policy"]["retriable_status_codes"],
            json!([503])
        );
        assert_eq!(route["retry_policy"]["per_try_timeout"], "1.500s");
        let plugin = hcm["http_filters"][0]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap();
        assert!(plugin.contains(r#""retries":2"#), "{plugin}");
        assert!(!plugin.contains("route_by"), "{plugin}");
    }

    #[test]
    fn listener_reads_paths_and_limits_as_ollama_and_answers_in_its_shape() {
        let v = sample().to_value();
        let hcm = &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        assert_eq!(hcm["normalize_path"], true);
        assert_eq!(
            hcm["path_with_escaped_slashes_action"],
            "UNESCAPE_AND_FORWARD"
        );
        assert!(hcm.get("merge_slashes").is_none(), "gin does not merge");
        assert_eq!(hcm["max_request_headers_kb"], MAX_REQUEST_HEADERS_KB);
        assert_eq!(hcm["http_protocol_options"]["accept_http_10"], true);
        let mappers = hcm["local_reply_config"]["mappers"].as_array().unwrap();
        assert_eq!(mappers.len(), 4);
        let last = &mappers[3];
        assert_eq!(
            last["filter"]["header_filter"]["header"]["name"],
            model_map::ANSWERED_HEADER
        );
        assert_eq!(
            last["body_format_override"]["json_format"]["error"],
            "%LOCAL_REPLY_BODY%"
        );
        let mut open = sample();
        open.listen = "0.0.0.0:11434".parse().unwrap();
        let text = open.to_value().to_string();
        assert!(text.contains(r#"\"host_check\":false"#), "{text}");
    }

    #[test]
    fn eds_endpoints_come_from_syncd() {
        let mut config = sample();
        config.fleet_endpoints = FleetEndpoints::Eds;
        let v = config.to_value();
        let fleet = &v["static_resources"]["clusters"][0];
        assert_eq!(fleet["type"], "EDS");
        let source = &fleet["eds_cluster_config"]["eds_config"]["api_config_source"];
        assert_eq!(source["api_type"], "REST");
        assert_eq!(source["cluster_names"], json!(["syncd"]));
        assert!(fleet.get("load_assignment").is_none());
        assert_eq!(
            fleet["load_balancing_policy"]["policies"][0]["typed_extension_config"]["name"],
            "envoy.load_balancing_policies.override_host"
        );
        assert_eq!(v["node"]["id"], "ollama-lb");
    }

    #[test]
    fn host_layout_gives_https_instances_tls_with_sni_and_the_token_by_variable() {
        let mut config = sample();
        config.route_by = RouteBy::Host;
        config.instances[0].tls = Some(UpstreamTls {
            ca_file: Some("/etc/fleet-ca.pem".into()),
        });
        config.instances[0].bearer_token_env = Some("GPU_A_KEY".into());
        config.instances.push(Upstream {
            tls: Some(UpstreamTls::default()),
            ..Upstream::plain("b", "10.0.0.2", 443)
        });
        config
            .instances
            .push(Upstream::plain("c", "10.0.0.3", 11434));
        let v = config.to_value();
        let clusters = &v["static_resources"]["clusters"];
        let tls = &clusters[0]["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], "gpu-a");
        let validation = &tls["common_tls_context"]["validation_context"];
        assert_eq!(validation["trusted_ca"]["filename"], "/etc/fleet-ca.pem");
        assert_eq!(
            validation["match_typed_subject_alt_names"],
            json!([{"san_type": "DNS", "matcher": {"exact": "gpu-a"}}])
        );
        // An IP address: no SNI, an IP SAN, the system's roots.
        let tls = &clusters[1]["transport_socket"]["typed_config"];
        assert!(tls.get("sni").is_none(), "{tls}");
        let validation = &tls["common_tls_context"]["validation_context"];
        assert_eq!(validation["trusted_ca"]["filename"], SYSTEM_CA_BUNDLE);
        assert_eq!(
            validation["match_typed_subject_alt_names"][0]["san_type"],
            "IP_ADDRESS"
        );
        assert!(clusters[2].get("transport_socket").is_none());
        let hosts = &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["route_config"]["virtual_hosts"];
        assert_eq!(
            hosts[0]["request_headers_to_add"],
            json!([{
                "header": {"key": "authorization", "value": "Bearer %ENVIRONMENT(GPU_A_KEY)%"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }])
        );
        assert!(hosts[1].get("request_headers_to_add").is_none());
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
        assert_eq!(hosts[1]["routes"][0]["route"]["cluster"], "syncd");
        let plugin = hcm["http_filters"][0]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap();
        assert!(plugin.contains(r#""route_by":"host""#), "{plugin}");
        let syncd = &v["static_resources"]["clusters"][1]["load_assignment"]["endpoints"][0]
            ["lb_endpoints"];
        assert_eq!(syncd.as_array().unwrap().len(), 2);
    }
}
