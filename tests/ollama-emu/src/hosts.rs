//! Ollama's `allowedHostsMiddleware`: when it listens on a loopback
//! address, a request whose `Host` is not local gets `403` with an empty
//! body (DNS-rebinding protection). Matters when a proxy rewrites `Host`.

use std::net::IpAddr;

/// True if Ollama would serve a request with this `Host` header while
/// listening on loopback.
pub fn host_allowed(host_header: &str) -> bool {
    let host = split_port(host_header);
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return ip.is_loopback() || ip.is_unspecified() || is_private(ip);
    }
    let host = host.to_ascii_lowercase();
    if host.is_empty() || host == "localhost" {
        return true;
    }
    if own_hostname().is_some_and(|h| h == host) {
        return true;
    }
    ["localhost", "local", "internal"]
        .iter()
        .any(|tld| host.ends_with(&format!(".{tld}")))
}

/// `net.SplitHostPort`, falling back to the whole value.
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
        IpAddr::V4(v4) => v4.is_private(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn own_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts_pass_public_names_do_not() {
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
            assert!(host_allowed(ok), "{ok}");
        }
        for bad in [
            "example.com",
            "ollama.example.com:11434",
            "8.8.8.8",
            "ollama-lb",
        ] {
            assert!(!host_allowed(bad), "{bad}");
        }
    }
}
