//! Configuration: which Ollama instances to poll and how often, resolved
//! from `OLLAMA_BASE_URLS`, `--instance` flags and an optional TOML file,
//! and validated completely before any port is bound.
//!
//! Sources are combined in this order: the TOML file's `[[instance]]`
//! tables, then each `--instance`, then each `OLLAMA_BASE_URLS` entry.
//! Names, clusters and URLs must be unique across all of them.
//!
//! A URL without a port means Ollama's default port 11434 (as
//! `OLLAMA_HOST` does); the resolved URL always spells the port out, so the
//! daemon, the map and Envoy all reach the same server (`https` without a
//! port means 443). Path prefixes are refused: Envoy sends each request's
//! own path, so the data path could not honour them.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Ollama's port when a `http` URL gives none.
pub const DEFAULT_OLLAMA_PORT: u16 = 11434;
/// Longest name or cluster accepted (Envoy allows more; stats names suffer).
pub const MAX_NAME_LEN: usize = 60;

/// One Ollama server, resolved and validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// Unique name, valid as an Envoy cluster name.
    pub name: String,
    /// Base URL without trailing `/`, port always explicit.
    pub url: String,
    /// The Envoy cluster that reaches it (defaults to `name`).
    pub cluster: String,
    /// `host:port` of `url`.
    pub authority: String,
    /// TLS trust and the credential sent to it (instances file only).
    #[serde(skip_serializing_if = "Access::is_plain")]
    pub access: Access,
}

/// How an instance is reached beyond its URL: the CA its certificate is
/// checked against and the bearer token sent with every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Access {
    /// PEM file of the CA(s) trusted for this `https` instance, instead of
    /// the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The CA file's PEM text, read and checked at startup.
    #[serde(skip)]
    pub ca_pem: Option<Vec<u8>>,
    /// The environment variable holding the bearer token (its name is
    /// shown; its value never is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_env: Option<String>,
    /// The token, read from `bearer_token_env` at startup.
    #[serde(skip)]
    pub bearer_token: Option<Secret>,
}

impl Access {
    /// Neither a CA nor a credential.
    pub fn is_plain(&self) -> bool {
        self.ca_file.is_none() && self.bearer_token_env.is_none()
    }
}

/// A credential: printed as `<redacted>` by `Debug`, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How instances are polled and judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollSettings {
    /// Time between the starts of two polls of one healthy instance.
    pub interval: Duration,
    /// Limit for each request, body included.
    pub timeout: Duration,
    /// Consecutive failures that mark a healthy instance down.
    pub down_after: NonZeroU32,
    /// Consecutive successes that bring a down instance back up.
    pub up_after: NonZeroU32,
    /// Longest wait between polls of a down instance.
    pub max_backoff: Duration,
    /// `/api/version` is asked every this many polls.
    pub version_every: NonZeroU32,
    /// Largest accepted response body; a bigger one fails the poll.
    pub max_response_bytes: u64,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            interval: Duration::from_secs(2),
            timeout: Duration::from_millis(1500),
            down_after: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
            up_after: NonZeroU32::MIN,
            max_backoff: Duration::from_secs(1),
            version_every: NonZeroU32::new(15).unwrap_or(NonZeroU32::MIN),
            max_response_bytes: 4 << 20,
        }
    }
}

/// Everything the daemon needs, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address of the publishing HTTP API.
    pub listen: SocketAddr,
    /// Instances in configuration order (the map keeps this order), as
    /// resolved at start; the file and DNS names in `sources` may change
    /// them at run time (see [`crate::membership`]).
    pub instances: Vec<Instance>,
    /// Polling and health settings.
    pub poll: PollSettings,
    /// Where `instances` came from, read again on reload.
    pub sources: Sources,
}

/// Where instances come from, as the user gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// Each `--instance NAME=URL` (or a bare URL, whose name is derived).
    pub instance_flags: Vec<String>,
    /// `OLLAMA_BASE_URLS`, `;`-separated.
    pub base_urls: Option<String>,
    /// `--discover dns:NAME:PORT`: every address of NAME is an instance.
    pub discover: Vec<Discovery>,
    /// `--dns-server IP:PORT`: ask this DNS server for `discover` names
    /// instead of the system's resolver.
    pub dns_server: Option<SocketAddr>,
}

/// A DNS name whose every A/AAAA record is an Ollama instance on `port`
/// (a Kubernetes headless Service, a scaled compose service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub name: String,
    pub port: u16,
}

impl Discovery {
    /// Parses `dns:NAME:PORT` (`dns:NAME` means Ollama's port 11434).
    pub fn parse(spec: &str) -> Result<Discovery, ConfigError> {
        let bad = |fix: &str| ConfigError::Value {
            what: "--discover".into(),
            value: spec.into(),
            fix: fix.into(),
        };
        let rest = spec.strip_prefix("dns:").ok_or_else(|| {
            bad("give dns:NAME:PORT, e.g. dns:ollama.default.svc.cluster.local:11434")
        })?;
        let (name, port) = match rest.rsplit_once(':') {
            Some((name, port)) => (
                name,
                port.parse()
                    .map_err(|_| bad("the port must be a number from 1 to 65535"))?,
            ),
            None => (rest, DEFAULT_OLLAMA_PORT),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let name = name.trim_end_matches('.');
        if port == 0 || name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(bad(
                "give a DNS name of letters, digits, '-' and '.', and a port from 1 to 65535",
            ));
        }
        Ok(Discovery {
            name: name.to_string(),
            port,
        })
    }
}

/// A configuration that cannot be used, naming the value and the fix.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(
        "no Ollama instances configured: set OLLAMA_BASE_URLS \
         (e.g. \"http://10.0.0.5:11434;http://10.0.0.6:11434\"), \
         pass --instance NAME=URL, or --config FILE with [[instance]] tables"
    )]
    NoInstances,
    #[error("{origin}: invalid URL {url:?}: {reason}")]
    BadUrl {
        origin: String,
        url: String,
        reason: String,
    },
    #[error(
        "{origin}: invalid {what} {value:?}: {reason}; use 1 to {MAX_NAME_LEN} characters \
         from [A-Za-z0-9_.-], starting with a letter or digit"
    )]
    BadName {
        origin: String,
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{what} {value:?} is used twice ({first}; {second}): make them unique")]
    Duplicate {
        what: &'static str,
        value: String,
        first: String,
        second: String,
    },
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}, line {line}: {message}")]
    Toml {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "--timeout ({timeout:?}) must be shorter than --interval ({interval:?}), \
         or each poll could still be waiting when the next is due: \
         lower --timeout or raise --interval"
    )]
    TimeoutNotBelowInterval {
        timeout: Duration,
        interval: Duration,
    },
    #[error("--{flag} must be greater than zero")]
    Zero { flag: &'static str },
    #[error("invalid {what} {value:?}: {fix}")]
    Value {
        what: String,
        value: String,
        fix: String,
    },
}

impl Config {
    /// Resolves and validates the instances from `sources` and checks
    /// `poll`. Nothing is bound or contacted.
    pub fn resolve(
        listen: SocketAddr,
        sources: &Sources,
        poll: PollSettings,
    ) -> Result<Config, ConfigError> {
        check_poll(&poll)?;
        let instances = static_instances(sources)?;
        if instances.is_empty() && sources.discover.is_empty() {
            return Err(ConfigError::NoInstances);
        }
        Ok(Config {
            listen,
            instances,
            poll,
            sources: sources.clone(),
        })
    }
}

/// The instances the file, the flags and `OLLAMA_BASE_URLS` name (read
/// again on every reload), validated and unique.
pub fn static_instances(sources: &Sources) -> Result<Vec<Instance>, ConfigError> {
    let mut found = Vec::new();
    if let Some(path) = &sources.file {
        found.extend(instances_from_file(path)?);
    }
    for flag in &sources.instance_flags {
        found.push(instance_from_flag(flag)?);
    }
    if let Some(urls) = &sources.base_urls {
        found.extend(instances_from_base_urls(urls)?);
    }
    check_unique(&found)?;
    Ok(found.into_iter().map(|(i, _)| i).collect())
}

/// The instance at a discovered address: `http://IP:PORT`, named from it
/// (`10.0.0.5_11434`), so an instance that stays keeps its name.
pub fn discovered_instance(addr: SocketAddr) -> Instance {
    let authority = addr.to_string();
    let name = derive_name(&authority);
    Instance {
        cluster: name.clone(),
        name,
        url: format!("http://{authority}"),
        authority,
        access: Access::default(),
    }
}

fn check_poll(poll: &PollSettings) -> Result<(), ConfigError> {
    if poll.interval.is_zero() {
        return Err(ConfigError::Zero { flag: "interval" });
    }
    if poll.timeout.is_zero() {
        return Err(ConfigError::Zero { flag: "timeout" });
    }
    if poll.max_response_bytes == 0 {
        return Err(ConfigError::Zero {
            flag: "max-response-bytes",
        });
    }
    if poll.timeout >= poll.interval {
        return Err(ConfigError::TimeoutNotBelowInterval {
            timeout: poll.timeout,
            interval: poll.interval,
        });
    }
    Ok(())
}

/// An instance and a description of where it was configured.
type Found = (Instance, String);

/// Splits `OLLAMA_BASE_URLS` as Open WebUI does: on `;`, entries trimmed,
/// empty ones ignored, a trailing `/` stripped.
pub fn instances_from_base_urls(value: &str) -> Result<Vec<Found>, ConfigError> {
    value
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, url)| {
            let origin = format!("OLLAMA_BASE_URLS entry {} ({url})", i + 1);
            build_instance(None, url, None, &origin).map(|inst| (inst, origin))
        })
        .collect()
}

/// Parses one `--instance NAME=URL`; a value without `=` is a bare URL.
pub fn instance_from_flag(value: &str) -> Result<Found, ConfigError> {
    let origin = format!("--instance {value}");
    let (name, url) = match value.split_once('=') {
        Some((name, url)) => (Some(name.trim()), url),
        None => (None, value),
    };
    build_instance(name, url, None, &origin).map(|inst| (inst, origin))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default, rename = "instance", alias = "instances")]
    instances: Vec<FileInstance>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileInstance {
    name: Option<toml::Spanned<String>>,
    url: toml::Spanned<String>,
    cluster: Option<toml::Spanned<String>>,
    ca_file: Option<PathBuf>,
    bearer_token_env: Option<String>,
}

fn instances_from_file(path: &Path) -> Result<Vec<Found>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    parse_file(path, &text)
}

/// Parses the TOML text of `path`; errors carry the line of the bad value.
pub fn parse_file(path: &Path, text: &str) -> Result<Vec<Found>, ConfigError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Toml {
        path: path.to_owned(),
        line: e.span().map_or(1, |s| line_of(s.start)),
        message: e.message().trim().to_string(),
    })?;
    file.instances
        .into_iter()
        .map(|fi| {
            let origin = format!(
                "config file {}, line {}",
                path.display(),
                line_of(fi.url.span().start)
            );
            let mut inst = build_instance(
                fi.name.as_ref().map(|n| n.get_ref().as_str()),
                fi.url.get_ref(),
                fi.cluster.as_ref().map(|c| c.get_ref().as_str()),
                &origin,
            )?;
            inst.access = read_access(&inst, fi.ca_file, fi.bearer_token_env, &origin)?;
            Ok((inst, origin))
        })
        .collect()
}

fn build_instance(
    name: Option<&str>,
    url: &str,
    cluster: Option<&str>,
    origin: &str,
) -> Result<Instance, ConfigError> {
    let parsed = parse_url(url).map_err(|reason| ConfigError::BadUrl {
        origin: origin.to_string(),
        url: url.to_string(),
        reason,
    })?;
    let name = match name {
        Some(n) => n.to_string(),
        None => derive_name(&parsed.authority),
    };
    check_cluster_name(&name).map_err(|reason| ConfigError::BadName {
        origin: origin.to_string(),
        what: "instance name",
        value: name.clone(),
        reason,
    })?;
    let cluster = cluster.map_or_else(|| name.clone(), str::to_string);
    check_cluster_name(&cluster).map_err(|reason| ConfigError::BadName {
        origin: origin.to_string(),
        what: "cluster",
        value: cluster.clone(),
        reason,
    })?;
    Ok(Instance {
        name,
        url: parsed.url,
        cluster,
        authority: parsed.authority,
        access: Access::default(),
    })
}

/// Reads and checks an instance's CA file and bearer token variable.
fn read_access(
    inst: &Instance,
    ca_file: Option<PathBuf>,
    bearer_token_env: Option<String>,
    origin: &str,
) -> Result<Access, ConfigError> {
    let bad = |what: &str, value: String, fix: String| ConfigError::Value {
        what: format!("{what} of {origin}"),
        value,
        fix,
    };
    let ca_pem = match &ca_file {
        None => None,
        Some(_) if !inst.url.starts_with("https://") => {
            return Err(bad(
                "ca_file",
                inst.url.clone(),
                "ca_file applies to https:// instances only".into(),
            ))
        }
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                bad(
                    "ca_file",
                    path.display().to_string(),
                    format!("it cannot be read: {e}"),
                )
            })?;
            match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(certs) if !certs.is_empty() => Some(pem),
                _ => {
                    return Err(bad(
                        "ca_file",
                        path.display().to_string(),
                        "give a PEM file with at least one CERTIFICATE".into(),
                    ))
                }
            }
        }
    };
    let bearer_token = match &bearer_token_env {
        None => None,
        Some(var) => match std::env::var(var) {
            Ok(token) if !token.trim().is_empty() => Some(Secret(token.trim().to_string())),
            _ => {
                return Err(bad(
                    "bearer_token_env",
                    var.clone(),
                    format!("set the environment variable {var} to the instance's token"),
                ))
            }
        },
    };
    Ok(Access {
        ca_file,
        ca_pem,
        bearer_token_env,
        bearer_token,
    })
}

struct ParsedUrl {
    url: String,
    authority: String,
}

fn parse_url(raw: &str) -> Result<ParsedUrl, String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let url = Url::parse(trimmed)
        .map_err(|e| format!("{e}; write it as http://HOST:PORT, e.g. http://10.0.0.5:11434"))?;
    let default_port = match url.scheme() {
        "http" => DEFAULT_OLLAMA_PORT,
        "https" => 443,
        other => {
            return Err(format!(
                "scheme {other:?} is not supported; use http:// or https://"
            ))
        }
    };
    let Some(host) = url.host_str().filter(|h| !h.is_empty()).map(str::to_string) else {
        return Err("it has no host; write it as http://HOST:PORT".into());
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a base URL takes no ?query or #fragment; remove it".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not supported; remove USER:PASS@".into());
    }
    // `Url` hides a port equal to the scheme's default (`http://h:80`), so
    // whether one was written is read from the text itself.
    let port = if has_explicit_port(trimmed) {
        url.port_or_known_default().unwrap_or(default_port)
    } else {
        default_port
    };
    let authority = format!("{host}:{port}");
    if !url.path().trim_end_matches('/').is_empty() {
        // Envoy sends client paths (`/api/chat`) to the instance as they
        // are, so a prefix would reach syncd's polls but not the requests.
        return Err(format!(
            "a path prefix ({}) is not supported: requests through Envoy would not carry it; \
             give the server's base URL without a path, e.g. http://{authority}",
            url.path().trim_end_matches('/')
        ));
    }
    Ok(ParsedUrl {
        url: format!("{}://{authority}", url.scheme()),
        authority,
    })
}

/// Whether the authority of `url` (`scheme://authority/...`) ends in `:PORT`.
fn has_explicit_port(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let after_host = match host_port.rfind(']') {
        Some(end) => &host_port[end + 1..],
        None => host_port,
    };
    after_host
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty())
}

/// `host_port` with every character outside `[A-Za-z0-9_.-]` replaced by
/// `_` and leading non-alphanumerics dropped (`[::1]:11434` → `1__11434`).
pub fn derive_name(authority: &str) -> String {
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, ""));
    let raw = format!("{host}_{port}");
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    cleaned
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// Checks Envoy's cluster-name rules as this project applies them.
pub fn check_cluster_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("it is too long");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("it must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err("it has a character outside [A-Za-z0-9_.-]");
    }
    Ok(())
}

fn check_unique(found: &[Found]) -> Result<(), ConfigError> {
    type Key = fn(&Instance) -> &str;
    let keys: [(&'static str, Key); 3] = [
        ("instance name", |i| &i.name),
        ("cluster", |i| &i.cluster),
        ("URL", |i| &i.url),
    ];
    for (what, key) in keys {
        for (n, (inst, origin)) in found.iter().enumerate() {
            if let Some((_, first)) = found.iter().take(n).find(|(o, _)| key(o) == key(inst)) {
                return Err(ConfigError::Duplicate {
                    what,
                    value: key(inst).to_string(),
                    first: first.clone(),
                    second: origin.clone(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
