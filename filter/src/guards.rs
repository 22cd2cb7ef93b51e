//! Ollama's own guards, answered by the filter before any routing so they
//! hold on every path (fleet reads, routed requests, management) and in
//! both routing modes (host mode rewrites `Host` later). In Ollama's order
//! (`GenerateRoutes` in server/routes.go): CORS (gin-contrib/cors with
//! `envconfig.AllowedOrigins()`), then `allowedHostsMiddleware`, the
//! DNS-rebinding guard that refuses a non-local `Host` on a loopback
//! listener. Both refuse with 403 and an empty body, as Ollama does.

use std::net::{IpAddr, Ipv4Addr};

/// Request headers allowed in CORS, as gin-contrib/cors writes Ollama's
/// list (`http.CanonicalHeaderKey` of each).
const ALLOW_HEADERS: &str = "Authorization,Content-Type,User-Agent,Accept,X-Requested-With,\
Openai-Beta,X-Stainless-Arch,X-Stainless-Async,X-Stainless-Custom-Poll-Interval,\
X-Stainless-Helper-Method,X-Stainless-Lang,X-Stainless-Os,X-Stainless-Package-Version,\
X-Stainless-Poll-Helper,X-Stainless-Retry-Count,X-Stainless-Runtime,\
X-Stainless-Runtime-Version,X-Stainless-Timeout";

/// Ollama's origins after those of `OLLAMA_ORIGINS` (`AllowedOrigins`).
const DEFAULT_ORIGINS: &[&str] = &[
    "http://localhost",
    "https://localhost",
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://0.0.0.0",
    "https://0.0.0.0",
    "http://0.0.0.0:*",
    "https://0.0.0.0:*",
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
];

/// What the guards need from a request.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub method: &'a str,
    /// `:authority` (HTTP/1 `Host`) as the client sent it.
    pub host: &'a str,
    pub origin: Option<&'a str>,
}

/// The guards' settings (from the plugin configuration).
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Refuse a non-local `Host` (Ollama does when it listens on loopback).
    pub host_check: bool,
    /// Host names allowed besides the local ones: exact, `*.domain` for
    /// any name under it, `*` for every name.
    pub allowed_hosts: &'a [String],
    /// Origins allowed before Ollama's defaults, as `OLLAMA_ORIGINS`
    /// (one `*` as a wildcard; `*` alone allows every origin).
    pub origins: &'a [String],
}

/// What the guards decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on; these CORS headers go on the answer (none when the request
    /// is not cross-origin).
    Pass(Vec<(&'static str, String)>),
    /// Answer now with this status, these headers and an empty body: 403
    /// (origin or host refused) or 204 (a preflight, or `OPTIONS` to a
    /// local name as Ollama's Host check answers it).
    Answer(u32, Vec<(&'static str, String)>),
}

/// Ollama's CORS and Host checks for one request.
pub fn check(asked: &Asked<'_>, rules: &Rules<'_>) -> Verdict {
    let cors = match cors(asked, rules.origins) {
        Cors::Forbidden => return Verdict::Answer(403, Vec::new()),
        Cors::Preflight(headers) => return Verdict::Answer(204, headers),
        Cors::Normal(headers) => headers,
        Cors::None => Vec::new(),
    };
    if !rules.host_check {
        return Verdict::Pass(cors);
    }
    match host_verdict(asked.host, rules.allowed_hosts) {
        HostVerdict::Refused => Verdict::Answer(403, cors),
        HostVerdict::LocalName if asked.method == "OPTIONS" => Verdict::Answer(204, cors),
        _ => Verdict::Pass(cors),
    }
}

enum Cors {
    None,
    Forbidden,
    Preflight(Vec<(&'static str, String)>),
    Normal(Vec<(&'static str, String)>),
}

/// gin-contrib/cors (v1.7) with Ollama's configuration.
fn cors(asked: &Asked<'_>, extra: &[String]) -> Cors {
    let Some(origin) = asked.origin.filter(|o| !o.is_empty()) else {
        return Cors::None;
    };
    if origin == format!("http://{}", asked.host) || origin == format!("https://{}", asked.host) {
        return Cors::None;
    }
    let all = extra.iter().any(|o| o.trim() == "*");
    if !all && !origin_allowed(origin, extra) {
        return Cors::Forbidden;
    }
    let allow_origin = if all { "*" } else { origin }.to_string();
    let mut headers = Vec::new();
    if asked.method == "OPTIONS" {
        headers.push((
            "access-control-allow-methods",
            "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS".to_string(),
        ));
        headers.push(("access-control-allow-headers", ALLOW_HEADERS.to_string()));
        headers.push(("access-control-max-age", "43200".to_string()));
        if !all {
            headers.push(("vary", "Origin".to_string()));
            headers.push(("vary", "Access-Control-Request-Method".to_string()));
            headers.push(("vary", "Access-Control-Request-Headers".to_string()));
        }
        headers.push(("access-control-allow-origin", allow_origin));
        Cors::Preflight(headers)
    } else {
        if !all {
            headers.push(("vary", "Origin".to_string()));
        }
        headers.push(("access-control-allow-origin", allow_origin));
        Cors::Normal(headers)
    }
}

/// Whether `origin` is one of `extra` or Ollama's defaults: exact
/// (without case), or around one `*`.
pub fn origin_allowed(origin: &str, extra: &[String]) -> bool {
    let origin = origin.to_ascii_lowercase();
    let listed = extra.iter().map(|o| o.trim().to_ascii_lowercase());
    let defaults = DEFAULT_ORIGINS.iter().map(|o| o.to_string());
    listed
        .chain(defaults)
        .any(|rule| match rule.split_once('*') {
            None => rule == origin,
            Some((prefix, suffix)) => {
                origin.len() >= prefix.len() + suffix.len()
                    && origin.starts_with(prefix)
                    && origin.ends_with(suffix)
            }
        })
}

#[derive(Debug, PartialEq, Eq)]
enum HostVerdict {
    /// A loopback, private or unspecified address.
    LocalAddress,
    /// A local or allowed name.
    LocalName,
    Refused,
}

/// Ollama's `allowedHostsMiddleware` on a loopback listener, with the
/// operator's `allowed_hosts` added to its local names. (Ollama also
/// allows the machine's own host name and interface addresses; the filter
/// cannot see them: list them in `allowed_hosts`.)
fn host_verdict(host_header: &str, allowed: &[String]) -> HostVerdict {
    let host = split_port(host_header);
    if let Ok(ip) = host.parse::<IpAddr>() {
        if ip.is_loopback() || ip.is_unspecified() || is_private(ip) {
            return HostVerdict::LocalAddress;
        }
    }
    let host = host.to_ascii_lowercase();
    let local = host.is_empty()
        || host == "localhost"
        || [".localhost", ".local", ".internal"]
            .iter()
            .any(|tld| host.ends_with(tld));
    if local || host_listed(&host, allowed) {
        HostVerdict::LocalName
    } else {
        HostVerdict::Refused
    }
}

/// Whether `host` (lowercase, no port) is in the operator's list.
pub fn host_listed(host: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|rule| {
        let rule = rule.trim().to_ascii_lowercase();
        match rule.strip_prefix("*.") {
            _ if rule == "*" => true,
            Some(domain) => host.len() > domain.len() + 1 && host.ends_with(&format!(".{domain}")),
            None => rule == host,
        }
    })
}

/// `net.SplitHostPort`, falling back to the whole value as Ollama does;
/// brackets of an IPv6 literal are removed either way.
fn split_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split_once(']').map_or(h, |(ip, _)| ip);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => h,
    }
}

/// Go's `netip.Addr.IsPrivate`: 10/8, 172.16/12, 192.168/16, fc00::/7.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => Ipv4Addr::is_private(&v4),
        IpAddr::V6(v6) => v6.segments().first().is_some_and(|s| s & 0xfe00 == 0xfc00),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules<'a>(hosts: &'a [String], origins: &'a [String]) -> Rules<'a> {
        Rules {
            host_check: true,
            allowed_hosts: hosts,
            origins,
        }
    }

    fn ask<'a>(method: &'a str, host: &'a str, origin: Option<&'a str>) -> Asked<'a> {
        Asked {
            method,
            host,
            origin,
        }
    }

    #[test]
    fn local_hosts_pass_and_public_names_are_refused() {
        for ok in [
            "127.0.0.1:11434",
            "localhost",
            "LOCALHOST:80",
            "10.1.2.3",
            "[::1]:8080",
            "0.0.0.0",
            "gpu.internal",
            "x.local",
            "",
        ] {
            assert_ne!(host_verdict(ok, &[]), HostVerdict::Refused, "{ok}");
        }
        for bad in [
            "example.com",
            "ollama.example.com:11434",
            "8.8.8.8",
            "ollama-lb",
        ] {
            assert_eq!(host_verdict(bad, &[]), HostVerdict::Refused, "{bad}");
        }
        let allowed = vec!["ollama-lb".to_string(), "*.example.com".to_string()];
        assert_eq!(
            host_verdict("ollama-lb:11434", &allowed),
            HostVerdict::LocalName
        );
        assert_eq!(
            host_verdict("a.example.com", &allowed),
            HostVerdict::LocalName
        );
        assert_eq!(host_verdict("example.com", &allowed), HostVerdict::Refused);
        assert_eq!(
            host_verdict("evil.com", &["*".into()]),
            HostVerdict::LocalName
        );
    }

    #[test]
    fn host_check_answers_as_ollama() {
        let none: Vec<String> = Vec::new();
        let r = rules(&none, &none);
        assert_eq!(
            check(&ask("GET", "evil.com", None), &r),
            Verdict::Answer(403, vec![])
        );
        assert_eq!(
            check(&ask("OPTIONS", "localhost", None), &r),
            Verdict::Answer(204, vec![])
        );
        assert_eq!(
            check(&ask("OPTIONS", "127.0.0.1", None), &r),
            Verdict::Pass(vec![])
        );
        let off = Rules {
            host_check: false,
            ..r
        };
        assert_eq!(
            check(&ask("GET", "evil.com", None), &off),
            Verdict::Pass(vec![])
        );
    }

    #[test]
    fn cors_follows_ollamas_origins() {
        let none: Vec<String> = Vec::new();
        let r = rules(&none, &none);
        let get = |origin| check(&ask("GET", "127.0.0.1:11434", Some(origin)), &r);
        assert_eq!(get("https://evil.example"), Verdict::Answer(403, vec![]));
        assert_eq!(
            get("http://localhost.evil.com"),
            Verdict::Answer(403, vec![])
        );
        assert_eq!(
            get("http://127.0.0.1:11434"),
            Verdict::Pass(vec![]),
            "same origin"
        );
        assert_eq!(
            get("http://localhost:3000"),
            Verdict::Pass(vec![
                ("vary", "Origin".into()),
                (
                    "access-control-allow-origin",
                    "http://localhost:3000".into()
                )
            ])
        );
        assert!(origin_allowed("tauri://app", &none));
        assert!(origin_allowed("vscode-file://x", &none));
        let Verdict::Answer(204, pre) = check(&ask("OPTIONS", "127.0.0.1", Some("app://x")), &r)
        else {
            panic!("a preflight is answered");
        };
        assert_eq!(pre.len(), 7);
        let extra = vec!["https://*.example.com".to_string()];
        assert!(origin_allowed("https://webui.example.com", &extra));
        assert!(!origin_allowed("https://example.org", &extra));
        let all = vec!["*".to_string()];
        let any = Rules { origins: &all, ..r };
        assert_eq!(
            check(&ask("GET", "localhost", Some("https://x.y")), &any),
            Verdict::Pass(vec![("access-control-allow-origin", "*".into())])
        );
    }
}
