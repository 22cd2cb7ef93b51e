//! Ollama's `allowedHostsMiddleware`: when it listens on a loopback
//! address, a request whose `Host` is not local gets `403` with an empty
//! body (DNS-rebinding protection). Matters when a proxy rewrites `Host`.
//! The `Host` is split as Go's `net.SplitHostPort` splits it (so `[::1]`
//! without a port is refused, as Ollama refuses it).

use std::net::IpAddr;

/// What Ollama's Host check does with a request on a loopback listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCheck {
    /// On to the handler.
    Pass,
    /// A local host name on an `OPTIONS` request: `204`, no handler.
    Preflight,
    /// `403` with an empty body.
    Forbidden,
}

/// `allowedHostsMiddleware` for a loopback listener: an IP host passes if
/// it is loopback, private, unspecified or one of this machine's; a name
/// passes if it is empty, `localhost`, the machine's hostname or under
/// `.localhost`, `.local`, `.internal` (and an `OPTIONS` for it ends
/// there with `204`).
pub fn check_host(host_header: &str, is_options: bool) -> HostCheck {
    let host = split_host_port(host_header).unwrap_or(host_header);
    if let Ok(ip) = host.parse::<IpAddr>() {
        if ip.is_loopback() || ip.is_unspecified() || is_private(ip) || is_local_ip(ip) {
            return HostCheck::Pass;
        }
    }
    match (host_name_allowed(host), is_options) {
        (true, true) => HostCheck::Preflight,
        (true, false) => HostCheck::Pass,
        (false, _) => HostCheck::Forbidden,
    }
}

/// True if Ollama would serve a (non-`OPTIONS`) request with this `Host`
/// header while listening on loopback.
pub fn host_allowed(host_header: &str) -> bool {
    check_host(host_header, false) == HostCheck::Pass
}

/// Ollama's `allowedHost`.
fn host_name_allowed(host: &str) -> bool {
    let host = host.to_lowercase();
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

/// Go's `net.SplitHostPort`: the host, or `None` where Go returns an
/// error (no port, too many colons, stray brackets). The port is not
/// checked.
fn split_host_port(h: &str) -> Option<&str> {
    let colon = h.rfind(':')?;
    let (host, j, k) = if h.starts_with('[') {
        let end = h.find(']')?;
        if end + 1 != colon {
            return None;
        }
        (h.get(1..end)?, 1, end + 1)
    } else {
        let host = h.get(..colon)?;
        if host.contains(':') {
            return None;
        }
        (host, 0, 0)
    };
    let stray = h.get(j..)?.contains('[') || h.get(k..)?.contains(']');
    (!stray).then_some(host)
}

/// Go's `isLocalIP`: an address of one of this machine's interfaces (from
/// the kernel's local routing table and IPv6 address list).
fn is_local_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => std::fs::read_to_string("/proc/net/fib_trie").is_ok_and(|t| {
            let want = v4.to_string();
            let lines: Vec<&str> = t.lines().collect();
            lines.windows(2).any(|w| match w {
                [addr, kind] => {
                    addr.trim().strip_prefix("|-- ") == Some(want.as_str())
                        && kind.contains("/32 host LOCAL")
                }
                _ => false,
            })
        }),
        IpAddr::V6(v6) => std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|t| {
            let want: String = v6.octets().iter().map(|b| format!("{b:02x}")).collect();
            t.lines()
                .any(|l| l.split_whitespace().next() == Some(want.as_str()))
        }),
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
            "::1",
            "example.com.local:notaport",
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
            "[::1]",
        ] {
            assert!(!host_allowed(bad), "{bad}");
        }
        assert_eq!(check_host("localhost:11434", true), HostCheck::Preflight);
        assert_eq!(check_host("127.0.0.1:11434", true), HostCheck::Pass);
        assert_eq!(check_host("evil.example", true), HostCheck::Forbidden);
        let own = std::fs::read_to_string("/proc/net/fib_trie").ok();
        if own.is_some_and(|t| t.contains("127.0.0.1")) {
            assert!(is_local_ip("127.0.0.1".parse().expect("ip")));
        }
        assert!(!is_local_ip("8.8.8.8".parse().expect("ip")));
    }
}
