//! The address Envoy's fleet cluster knows an instance by.
//!
//! The filter names its choice as `IP:port` (Envoy's override-host policy
//! matches hosts by address, not by name), so syncd resolves each
//! instance's host on every poll, as Envoy's `STRICT_DNS` cluster does,
//! and puts the result in the map. IPv4 is preferred, matching the
//! cluster's `dns_lookup_family: V4_PREFERRED`.

use std::net::SocketAddr;

/// `IP:port` (`[v6]:port` for IPv6) of `authority` (`host:port`), or
/// `None` when the host does not resolve.
pub async fn envoy_address(authority: &str) -> Option<String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(authority).await.ok()?.collect();
    preferred(&addrs).map(|a| a.to_string())
}

/// The first IPv4 address, else the first one.
fn preferred(addrs: &[SocketAddr]) -> Option<SocketAddr> {
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_and_names_resolve_as_envoy_writes_them() {
        assert_eq!(
            envoy_address("127.0.0.1:11434").await.as_deref(),
            Some("127.0.0.1:11434")
        );
        assert_eq!(
            envoy_address("[::1]:11434").await.as_deref(),
            Some("[::1]:11434")
        );
        assert_eq!(
            envoy_address("localhost:80").await.as_deref(),
            Some("127.0.0.1:80"),
            "IPv4 preferred"
        );
        assert_eq!(envoy_address("no-such-host.invalid:1").await, None);
    }

    #[test]
    fn ipv4_is_preferred() {
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        let v4: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert_eq!(preferred(&[v6, v4]), Some(v4));
        assert_eq!(preferred(&[v6]), Some(v6));
        assert_eq!(preferred(&[]), None);
    }
}
