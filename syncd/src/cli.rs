//! The command line: `syncd run`, `syncd status`, `syncd check-config`,
//! `syncd envoy-config`, `syncd sync`. Every flag has a `--help` text, an
//! environment variable and a typed value.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, Discovery, Instance, PollSettings, Sources};
use crate::envoy_config::{EnvoyConfig, Failover, FleetEndpoints, RouteBy, Upstream, UpstreamTls};
use crate::text;

pub use crate::EXIT_CONFIG;

/// ollama-lb's sync daemon: polls Ollama instances and publishes the model
/// map that the Envoy filter routes by.
#[derive(Debug, Parser)]
#[command(name = "syncd", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: poll every instance and serve the map.
    Run(RunArgs),
    /// Print the fleet as a running daemon sees it.
    Status(StatusArgs),
    /// Validate the configuration and print the resolved instances.
    CheckConfig(ConfigArgs),
    /// Print the Envoy bootstrap (YAML) for the configured instances: a
    /// listener with the ollama-lb filter, a cluster per instance, syncd.
    EnvoyConfig(EnvoyConfigArgs),
    /// Pull models so every healthy instance holds what it should (every
    /// model of the fleet, or what --placement says), with live progress.
    Sync(SyncArgs),
}

/// Flags of `syncd run`: the configuration plus sync settings.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Bearer token that POST /v1/sync requires; without one, only
    /// loopback clients may sync.
    #[arg(long, env = "SYNCD_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Placement file (TOML): the default of POST /v1/sync and what
    /// --reconcile holds.
    #[arg(long, env = "SYNCD_PLACEMENT", value_name = "FILE")]
    pub placement: Option<PathBuf>,
    /// Keep the fleet synced: re-plan after every map change (and every
    /// --reconcile-every) and pull what is missing.
    #[arg(long, env = "SYNCD_RECONCILE")]
    pub reconcile: bool,
    /// Longest time between two reconcile plans; also the wait before a
    /// failed pull is retried.
    #[arg(long, env = "SYNCD_RECONCILE_EVERY", default_value = "30s", value_parser = parse_duration)]
    pub reconcile_every: Duration,
    /// Pulls and loads at a time on one instance.
    #[arg(long, env = "SYNCD_SYNC_CONCURRENCY", default_value = "1")]
    pub concurrency: NonZeroUsize,
    /// Admin URL of an Envoy running the filter (e.g.
    /// http://127.0.0.1:9901); repeat or comma-separate for several. The
    /// status page then shows requests in flight as those gateways count
    /// them; without one it leaves them out.
    #[arg(
        long,
        env = "SYNCD_ENVOY_ADMIN",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub envoy_admin: Vec<String>,
}

impl RunArgs {
    /// The configuration and the daemon's sync settings, validated.
    pub fn resolve(&self) -> Result<(Config, crate::SyncSettings), ResolveError> {
        let config = self.config.resolve()?;
        let names: Vec<String> = config.instances.iter().map(|i| i.name.clone()).collect();
        let placement = match &self.placement {
            Some(path) => Some(crate::sync::Placement::from_file(path, Some(&names))?),
            None => None,
        };
        if self.reconcile_every.is_zero() {
            return Err(ConfigError::Zero {
                flag: "reconcile-every",
            }
            .into());
        }
        let sync = crate::SyncSettings {
            api_token: self.api_token.clone().filter(|t| !t.is_empty()),
            placement,
            per_instance: self.concurrency,
            reconcile: self.reconcile.then_some(self.reconcile_every),
            envoy_admins: envoy_admins(&self.envoy_admin)?,
        };
        Ok((config, sync))
    }
}

/// The `--envoy-admin` URLs, checked: `http` or `https` with a host.
fn envoy_admins(given: &[String]) -> Result<Vec<String>, ConfigError> {
    given
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            let rest = s
                .strip_prefix("http://")
                .or_else(|| s.strip_prefix("https://"));
            match rest {
                Some(host) if !host.trim_end_matches('/').is_empty() => Ok(s.to_string()),
                _ => Err(ConfigError::Value {
                    what: "--envoy-admin".into(),
                    value: s.into(),
                    fix: "give Envoy's admin base URL, e.g. http://127.0.0.1:9901".into(),
                }),
            }
        })
        .collect()
}

/// A bad configuration or placement file (both exit 64).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Placement(#[from] crate::sync::PlacementError),
}

/// Flags of `syncd sync`.
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// The instances, as for `syncd run` (not needed with --url).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Ask the daemon at this URL to sync (POST /v1/sync) instead of
    /// polling the instances from here.
    #[arg(long, env = "SYNCD_SYNC_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Bearer token for --url.
    #[arg(long, env = "SYNCD_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Placement file (TOML); without one every model goes everywhere.
    #[arg(long, env = "SYNCD_PLACEMENT", value_name = "FILE")]
    pub placement: Option<PathBuf>,
    /// Print the plan as a table and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Pulls and loads at a time on one instance [default: 1]; ignored
    /// with --url, where the daemon's own setting applies.
    #[arg(long, env = "SYNCD_SYNC_CONCURRENCY")]
    pub concurrency: Option<NonZeroUsize>,
    /// Progress display: bars on a terminal, plain lines otherwise.
    #[arg(long, env = "SYNCD_PROGRESS", value_enum, default_value = "auto")]
    pub progress: crate::sync::progress::ProgressMode,
}

impl SyncArgs {
    /// Where the sync runs: the daemon at `--url`, or here over the
    /// configured instances (resolved and validated now).
    pub fn source(&self) -> Result<crate::sync::command::SyncSource, ConfigError> {
        use crate::sync::command::SyncSource;
        Ok(match &self.url {
            Some(url) => SyncSource::Remote {
                url: url.clone(),
                token: self.api_token.clone().filter(|t| !t.is_empty()),
            },
            None => SyncSource::Local(Box::new(self.config.resolve()?)),
        })
    }

    /// The options of the sync itself.
    pub fn options(&self) -> crate::sync::command::SyncOptions {
        crate::sync::command::SyncOptions {
            placement: self.placement.clone(),
            dry_run: self.dry_run,
            concurrency: self.concurrency,
            progress: self.progress,
        }
    }
}

/// Flags of `syncd envoy-config`; the instances come from the same flags,
/// variables and file as `syncd run`.
#[derive(Debug, Clone, Args)]
pub struct EnvoyConfigArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address Envoy listens on for Ollama clients.
    #[arg(long, env = "ENVOY_LISTEN", default_value = "127.0.0.1:11434")]
    pub envoy_listen: SocketAddr,
    /// Envoy's admin interface (keep it on loopback).
    #[arg(long, env = "ENVOY_ADMIN", default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// HOST:PORT where Envoy reaches syncd; repeat (or comma-separate) for
    /// several replicas [default: the --listen address].
    #[arg(
        long,
        env = "ENVOY_SYNCD",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub syncd: Vec<String>,
    /// How the filter routes: `endpoints` (one fleet cluster; the filter
    /// lists the instances to try, best first, and Envoy retries on the
    /// next) or `host` (rewrites :authority; a virtual host per instance,
    /// as a service mesh has; no failover between instances).
    #[arg(long, env = "ENVOY_ROUTE_BY", value_enum, default_value = "endpoints")]
    pub route_by: RouteBy,
    /// Most retries of one request, each on the next-best instance holding
    /// the model (endpoints layout; 0 to 10).
    #[arg(long, env = "ENVOY_RETRIES", default_value = "2", value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: u32,
    /// Where Envoy learns the fleet's instances: `eds` (from syncd while
    /// Envoy runs; instances can come and go) or `static` (fixed in the
    /// bootstrap).
    #[arg(long, env = "ENVOY_FLEET_ENDPOINTS", value_enum, default_value = "eds")]
    pub fleet_endpoints: FleetEndpoints,
    /// Longest wait for an instance to start answering (e.g. 30s) before
    /// the attempt is abandoned and retried on the next one; bounds a hung
    /// instance. Off by default: a cold model load can take minutes before
    /// the first byte.
    #[arg(long, env = "ENVOY_PER_TRY_TIMEOUT", value_parser = parse_duration)]
    pub per_try_timeout: Option<Duration>,
    /// Path of filter.wasm as Envoy will see it.
    #[arg(
        long,
        env = "ENVOY_FILTER_WASM",
        default_value = "target/wasm32-wasip1/wasm/filter.wasm"
    )]
    pub wasm: String,
    /// The filter's plugin configuration as a JSON object (see the README).
    #[arg(long, env = "ENVOY_PLUGIN_CONFIG", default_value = "{}", value_parser = parse_json_object)]
    pub plugin_config: serde_json::Value,
    /// Largest request body accepted (e.g. 256MiB; Ollama has no limit);
    /// 413 in Ollama's shape above it. Envoy may hold this much per request.
    #[arg(long, env = "ENVOY_MAX_BODY_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub max_body_bytes: u64,
    /// Ollama's DNS-rebinding guard (403 to a non-local `Host`): `auto`
    /// turns it on when --envoy-listen is a loopback address, as Ollama does.
    #[arg(long, env = "ENVOY_HOST_CHECK", value_enum, default_value = "auto")]
    pub host_check: HostCheck,
    /// Host names the Host check allows besides local ones (comma-separated;
    /// `*.example.com` for a domain, `*` for any), e.g. the name clients
    /// use for a balancer behind a reverse proxy.
    #[arg(
        long,
        env = "ENVOY_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub allowed_hosts: Vec<String>,
    /// CORS origins allowed besides Ollama's defaults, as OLLAMA_ORIGINS
    /// (comma-separated, one `*` wildcard each; `*` allows every origin),
    /// e.g. https://webui.example.com.
    #[arg(
        long,
        env = "ENVOY_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub origins: Vec<String>,
}

/// Whether the filter applies Ollama's Host check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HostCheck {
    /// On when Envoy listens on loopback (as Ollama decides).
    Auto,
    On,
    Off,
}

impl EnvoyConfigArgs {
    /// The bootstrap for the resolved configuration.
    pub fn render(&self) -> Result<String, ConfigError> {
        let config = self.config.resolve()?;
        let instances = config
            .instances
            .iter()
            .map(instance_upstream)
            .collect::<Result<Vec<_>, _>>()?;
        if let (RouteBy::Endpoints, Some(u)) = (
            self.route_by,
            instances.iter().find(|u| u.needs_own_cluster()),
        ) {
            return Err(ConfigError::Value {
                what: "instance".into(),
                value: u.cluster.clone(),
                fix: "https:// instances and instances with a bearer_token_env need \
                      --route-by host (a cluster of their own with TLS and the header); \
                      the endpoints layout's one fleet cluster speaks plain HTTP"
                    .into(),
            });
        }
        let mut syncd = match self.syncd.as_slice() {
            [] => vec![upstream("syncd", &config.listen.to_string())?],
            given => given
                .iter()
                .map(|s| upstream("syncd", s))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let replicas = syncd.split_off(1).into_iter().map(|u| (u.host, u.port));
        let envoy = EnvoyConfig {
            listen: self.envoy_listen,
            admin: self.admin,
            instances,
            syncd: syncd.remove(0),
            syncd_replicas: replicas.collect(),
            route_by: self.route_by,
            wasm_path: Some(self.wasm.clone()),
            plugin_config: self.plugin_config_with_guards(),
            max_body_bytes: self.max_body_bytes,
            failover: Failover {
                retries: self.retries,
                per_try_timeout: self.per_try_timeout,
            },
            fleet_endpoints: self.fleet_endpoints,
        };
        Ok(envoy.to_yaml())
    }
}

impl EnvoyConfigArgs {
    /// `--plugin-config` with the guard flags added (the JSON's own
    /// fields win: they are the more specific setting).
    fn plugin_config_with_guards(&self) -> serde_json::Value {
        let mut plugin = self.plugin_config.clone();
        if let Some(obj) = plugin.as_object_mut() {
            match self.host_check {
                HostCheck::Auto => {}
                HostCheck::On => {
                    obj.entry("host_check").or_insert(true.into());
                }
                HostCheck::Off => {
                    obj.entry("host_check").or_insert(false.into());
                }
            }
            let list = |v: &[String]| v.iter().map(|s| s.trim().to_string()).collect::<Vec<_>>();
            if !self.allowed_hosts.is_empty() {
                obj.entry("allowed_hosts")
                    .or_insert(list(&self.allowed_hosts).into());
            }
            if !self.origins.is_empty() {
                obj.entry("origins").or_insert(list(&self.origins).into());
            }
        }
        plugin
    }
}

/// An instance's Envoy upstream: its address, TLS for `https`, the
/// variable holding its token.
fn instance_upstream(i: &Instance) -> Result<Upstream, ConfigError> {
    let mut u = upstream(&i.cluster, &i.authority)?;
    if i.url.starts_with("https://") {
        let ca_file = i.access.ca_file.as_ref().map(|p| p.display().to_string());
        u.tls = Some(UpstreamTls { ca_file });
    }
    u.bearer_token_env = i.access.bearer_token_env.clone();
    Ok(u)
}

/// An Envoy upstream from `host:port` (`[v6]:port` too).
fn upstream(cluster: &str, authority: &str) -> Result<Upstream, ConfigError> {
    let bad = || ConfigError::Value {
        what: "--syncd".into(),
        value: authority.into(),
        fix: "give HOST:PORT, e.g. 127.0.0.1:11435 or syncd:11435".into(),
    };
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Upstream::plain(cluster, host, port))
}

/// Parses `--discover dns:NAME:PORT`.
fn parse_discovery(s: &str) -> Result<Discovery, String> {
    Discovery::parse(s).map_err(|e| e.to_string())
}

/// Parses a JSON object for `--plugin-config`.
pub fn parse_json_object(s: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err("expected a JSON object, e.g. {\"policy\":\"random\"}".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// Flags that make up the daemon's configuration.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// `;`-separated Ollama base URLs, read as Open WebUI reads them
    /// (entries trimmed, empty ones ignored, trailing `/` stripped); names
    /// are derived as `host_port`.
    #[arg(long = "base-urls", env = "OLLAMA_BASE_URLS", value_name = "URLS")]
    pub base_urls: Option<String>,
    /// An instance as NAME=URL (or a bare URL); repeatable.
    #[arg(
        long = "instance",
        env = "SYNCD_INSTANCES",
        value_name = "NAME=URL",
        value_delimiter = ','
    )]
    pub instances: Vec<String>,
    /// TOML file with `[[instance]]` tables (`name`, `url`, optional
    /// `cluster`); `syncd run` reads it again on SIGHUP and when it changes.
    #[arg(long, env = "SYNCD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A DNS name whose every address is an instance, as dns:NAME:PORT (a
    /// Kubernetes headless Service, a compose service with replicas);
    /// resolved again at every poll interval; repeatable.
    #[arg(long, env = "SYNCD_DISCOVER", value_name = "dns:NAME:PORT", value_delimiter = ',', value_parser = parse_discovery)]
    pub discover: Vec<Discovery>,
    /// Ask this DNS server (IP:PORT) for --discover names instead of the
    /// system's resolver.
    #[arg(long, env = "SYNCD_DNS_SERVER", value_name = "IP:PORT")]
    pub dns_server: Option<SocketAddr>,
    /// Address of the HTTP API that publishes the map.
    #[arg(long, env = "SYNCD_LISTEN", default_value = "127.0.0.1:11435")]
    pub listen: SocketAddr,
    /// Time between polls of a healthy instance (e.g. 2s, 500ms).
    #[arg(long, env = "SYNCD_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Limit for each request to an instance, body included; must be below
    /// --interval [default: 1.5s, or 3/4 of --interval if that is shorter]
    #[arg(long, env = "SYNCD_TIMEOUT", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Consecutive failed polls that mark a healthy instance down.
    #[arg(long, env = "SYNCD_DOWN_AFTER", default_value = "3")]
    pub down_after: NonZeroU32,
    /// Consecutive successful polls that bring a down instance back up.
    #[arg(long, env = "SYNCD_UP_AFTER", default_value = "1")]
    pub up_after: NonZeroU32,
    /// Longest wait between polls of a down instance (the wait doubles from
    /// --interval up to it, and may be shorter than --interval): how soon a
    /// restarted instance is seen again.
    #[arg(long, env = "SYNCD_MAX_BACKOFF", default_value = "1s", value_parser = parse_duration)]
    pub max_backoff: Duration,
    /// Ask /api/version every this many polls.
    #[arg(long, env = "SYNCD_VERSION_EVERY", default_value = "15")]
    pub version_every: NonZeroU32,
    /// Largest /api/tags or /api/ps body accepted (e.g. 4MiB); bigger fails the poll.
    #[arg(long, env = "SYNCD_MAX_RESPONSE_BYTES", default_value = "4MiB", value_parser = parse_bytes)]
    pub max_response_bytes: u64,
}

impl ConfigArgs {
    /// Resolves and validates the configuration; nothing is bound.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let sources = Sources {
            file: self.config.clone(),
            instance_flags: self.instances.clone(),
            base_urls: self.base_urls.clone(),
            discover: self.discover.clone(),
            dns_server: self.dns_server,
        };
        let poll = PollSettings {
            interval: self.interval,
            timeout: self
                .timeout
                .unwrap_or_else(|| default_timeout(self.interval)),
            down_after: self.down_after,
            up_after: self.up_after,
            max_backoff: self.max_backoff,
            version_every: self.version_every,
            max_response_bytes: self.max_response_bytes,
        };
        Config::resolve(self.listen, &sources, poll)
    }
}

/// Flags of `syncd status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Base URL of the running daemon's API.
    #[arg(long, env = "SYNCD_URL", default_value = "http://127.0.0.1:11435")]
    pub url: String,
    /// How long to wait for the daemon.
    #[arg(long, env = "SYNCD_STATUS_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// 1.5 s, or 3/4 of `interval` when that is shorter, so that a short
/// `--interval` alone is a valid configuration.
pub fn default_timeout(interval: Duration) -> Duration {
    Duration::from_millis(1500).min(interval * 3 / 4)
}

/// The resolved configuration as `check-config` prints it.
pub fn describe(config: &Config) -> String {
    let p = &config.poll;
    let mut out = format!(
        "configuration ok\nlisten {}\npoll every {:?} (timeout {:?}), down after {} failures, \
         up after {} successes, backoff up to {:?}, version every {} polls, \
         max response {} bytes\n\n",
        config.listen,
        p.interval,
        p.timeout,
        p.down_after,
        p.up_after,
        p.max_backoff,
        p.version_every,
        p.max_response_bytes
    );
    for d in &config.sources.discover {
        let server = config
            .sources
            .dns_server
            .map_or("the system's resolver".to_string(), |s| s.to_string());
        out.push_str(&format!(
            "discover every address of {} (port {}) via {server}, again every {:?}\n",
            d.name,
            d.port,
            crate::membership::tick(p.interval)
        ));
    }
    if !config.sources.discover.is_empty() {
        out.push('\n');
    }
    let mut rows = vec![text::row(&["INSTANCE", "URL", "CLUSTER"])];
    for i in &config.instances {
        rows.push(text::row(&[&i.name, &i.url, &i.cluster]));
    }
    out.push_str(&text::table(&rows));
    out
}

/// Parses a duration as `humantime` reads it (`1.5s`, `200ms`, `2m`,
/// `1h`, `1m30s`), or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(seconds) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); write e.g. 2s, 500ms or 1m30s"))
}

/// Parses a byte count as `bytesize` reads it: plain, or with a KiB/MiB/GiB
/// (binary) or KB/MB/GB (decimal) suffix, e.g. `4MiB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|e| format!("{s:?} is not a size ({e}); write e.g. 4MiB or 4194304"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("1e300").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("2x").is_err());
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_bytes("32MiB"), Ok(32 << 20));
        assert_eq!(parse_bytes("2 KB"), Ok(2000));
        assert!(parse_bytes("4 parsecs").is_err());
        assert_eq!(
            default_timeout(Duration::from_secs(2)),
            Duration::from_millis(1500)
        );
        assert_eq!(
            default_timeout(Duration::from_millis(200)),
            Duration::from_millis(150)
        );
    }

    #[test]
    fn defaults_resolve() {
        let cli = Cli::try_parse_from([
            "syncd",
            "check-config",
            "--base-urls",
            "http://a:11434",
            "--instance",
            "b=http://b:1",
        ])
        .unwrap();
        let Command::CheckConfig(args) = cli.command else {
            panic!("check-config");
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.poll, PollSettings::default());
        assert_eq!(c.listen.port(), 11435);
        let names: Vec<_> = c.instances.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["b", "a_11434"]);
    }

    #[test]
    fn guard_flags_reach_the_plugin_configuration() {
        let cli = Cli::try_parse_from([
            "syncd",
            "envoy-config",
            "--base-urls",
            "http://a:11434",
            "--envoy-listen",
            "0.0.0.0:11434",
            "--host-check",
            "on",
            "--allowed-hosts",
            "ollama.example.com, *.corp.example",
            "--origins",
            "https://webui.example.com",
            "--plugin-config",
            r#"{"origins":["*"]}"#,
        ])
        .unwrap();
        let Command::EnvoyConfig(args) = cli.command else {
            panic!("envoy-config");
        };
        let plugin = args.plugin_config_with_guards();
        assert_eq!(plugin["host_check"], true);
        assert_eq!(
            plugin["allowed_hosts"],
            serde_json::json!(["ollama.example.com", "*.corp.example"])
        );
        assert_eq!(plugin["origins"], serde_json::json!(["*"]), "the JSON wins");
        assert!(args.render().unwrap().contains("host_check"));
    }

    #[test]
    fn https_instances_render_tls_in_the_host_layout_and_are_refused_in_the_fleet_cluster() {
        let render = |layout: &str| {
            let cli = Cli::try_parse_from([
                "syncd",
                "envoy-config",
                "--base-urls",
                "https://gpu-a;http://b:11434",
                "--route-by",
                layout,
            ])
            .unwrap();
            let Command::EnvoyConfig(args) = cli.command else {
                panic!("envoy-config");
            };
            args.render()
        };
        let yaml = render("host").unwrap();
        assert!(
            yaml.contains("UpstreamTlsContext") && yaml.contains("\"gpu-a\""),
            "{yaml}"
        );
        let err = render("endpoints").unwrap_err().to_string();
        assert!(
            err.contains("gpu-a_443") && err.contains("--route-by host"),
            "{err}"
        );
    }
}
