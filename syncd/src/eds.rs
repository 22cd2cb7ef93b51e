//! The fleet cluster's endpoints for Envoy, over xDS REST-JSON:
//! `POST /v3/discovery:endpoints` (Envoy's EDS, `api_type: REST`).
//!
//! REST rather than gRPC: it needs no gRPC stack in syncd and no HTTP/2
//! cluster in Envoy, and Envoy polls it every `refresh_delay` (half a
//! second as rendered), which is well inside the time a new instance takes
//! to pass its first poll anyway. Envoy keeps the last endpoints it
//! accepted while syncd is unreachable. The answer depends only on the
//! members' addresses, sorted, and its version is their hash, so several
//! syncd replicas give Envoy the same endpoints under the same version.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::envoy_config::FLEET_CLUSTER;
use crate::fleet::Slot;

/// The resource type Envoy asks for.
pub const TYPE_URL: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// Every member's address as Envoy should know it (members whose host has
/// not resolved yet are left out), sorted and without repeats.
pub fn fleet_endpoints(slots: &[Slot]) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = slots
        .iter()
        .filter_map(|s| s.address.parse().ok())
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

/// The version of an endpoint list: the first 16 hex digits of its hash.
pub fn version(endpoints: &[SocketAddr]) -> String {
    let text: Vec<String> = endpoints.iter().map(|a| a.to_string()).collect();
    let digest = Sha256::digest(text.join(",").as_bytes());
    hex::encode(digest.get(..8).unwrap_or_default())
}

/// The `DiscoveryResponse` for `cluster` with `endpoints`.
pub fn response(cluster: &str, endpoints: &[SocketAddr]) -> Value {
    let lb_endpoints: Vec<Value> = endpoints
        .iter()
        .map(|a| {
            json!({"endpoint": {"address": {"socket_address": {
                "address": a.ip().to_string(), "port_value": a.port(),
            }}}})
        })
        .collect();
    json!({
        "version_info": version(endpoints),
        "type_url": TYPE_URL,
        "resources": [{
            "@type": TYPE_URL,
            "cluster_name": cluster,
            "endpoints": [{"lb_endpoints": lb_endpoints}],
        }],
    })
}

/// What a `DiscoveryRequest` says.
#[derive(Debug, PartialEq, Eq)]
pub struct Poll {
    /// The cluster asked for (the fleet's unless named).
    pub cluster: String,
    /// The version the gateway has (empty at first).
    pub version: String,
    /// The gateway's node id.
    pub node: String,
}

/// Reads a `DiscoveryRequest` (anything unreadable is a first poll for
/// the fleet cluster).
pub fn read_request(body: &[u8]) -> Poll {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    Poll {
        cluster: request
            .pointer("/resource_names/0")
            .and_then(Value::as_str)
            .unwrap_or(FLEET_CLUSTER)
            .to_string(),
        version: text(request.get("version_info")),
        node: text(request.pointer("/node/id")),
    }
}

/// How long a gateway that stopped polling still counts.
const GATEWAY_TTL: Duration = Duration::from_secs(10);
/// How many served endpoint lists are remembered by version.
const VERSIONS_KEPT: usize = 64;

/// What each gateway (Envoy) has accepted, from the `version_info` of its
/// polls. The map leaves out a new instance until every gateway that
/// polled lately has its address: a filter listing an instance its own
/// Envoy does not know yet would find no host when that is the only
/// holder left.
#[derive(Debug, Default)]
pub struct EndpointAcks {
    /// Endpoint lists served, by version, oldest first.
    versions: VecDeque<(String, Vec<SocketAddr>)>,
    /// Per gateway: the version it has and when it said so.
    gateways: HashMap<String, (String, Instant)>,
}

impl EndpointAcks {
    /// Records a poll: `gateway` has `acked`, and is served `endpoints`
    /// under `version`. True if what that gateway has changed.
    pub fn poll(
        &mut self,
        gateway: &str,
        acked: &str,
        version: &str,
        endpoints: &[SocketAddr],
        now: Instant,
    ) -> bool {
        if !self.versions.iter().any(|(v, _)| v == version) {
            if self.versions.len() == VERSIONS_KEPT {
                self.versions.pop_front();
            }
            self.versions
                .push_back((version.to_string(), endpoints.to_vec()));
        }
        let previous = self
            .gateways
            .insert(gateway.to_string(), (acked.to_string(), now));
        self.gateways
            .retain(|_, (_, at)| now.duration_since(*at) < GATEWAY_TTL);
        previous.is_none_or(|(v, _)| v != acked)
    }

    /// Whether every gateway heard from lately has `addr` (true when none
    /// has polled lately: nothing to wait for).
    pub fn known_everywhere(&self, addr: &str, now: Instant) -> bool {
        let Ok(addr) = addr.parse::<SocketAddr>() else {
            return false;
        };
        self.gateways
            .values()
            .filter(|(_, at)| now.duration_since(*at) < GATEWAY_TTL)
            .all(|(acked, _)| {
                self.versions
                    .iter()
                    .any(|(v, eps)| v == acked && eps.contains(&addr))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_depends_only_on_the_sorted_addresses() {
        let a: SocketAddr = "10.0.0.6:11434".parse().unwrap();
        let b: SocketAddr = "10.0.0.5:11434".parse().unwrap();
        let one = response(FLEET_CLUSTER, &[b, a]);
        assert_eq!(one, response(FLEET_CLUSTER, &[b, a]));
        assert_ne!(version(&[b, a]), version(&[b]));
        let eps = &one["resources"][0]["endpoints"][0]["lb_endpoints"];
        assert_eq!(
            eps[0]["endpoint"]["address"]["socket_address"]["address"],
            "10.0.0.5"
        );
        assert_eq!(
            eps[1]["endpoint"]["address"]["socket_address"]["port_value"],
            11434
        );
        assert_eq!(one["resources"][0]["@type"], TYPE_URL);
    }

    #[test]
    fn requests_name_the_cluster_and_version_or_fall_back() {
        let p = read_request(
            br#"{"version_info":"abc","resource_names":["ollama_fleet"],"node":{"id":"x"}}"#,
        );
        assert_eq!(
            (p.cluster.as_str(), p.version.as_str(), p.node.as_str()),
            ("ollama_fleet", "abc", "x")
        );
        let p = read_request(b"not json");
        assert_eq!(
            (p.cluster.as_str(), p.version.as_str()),
            (FLEET_CLUSTER, "")
        );
    }

    #[test]
    fn an_address_counts_once_every_recent_gateway_has_it() {
        let (a, b): (SocketAddr, SocketAddr) =
            ("10.0.0.5:1".parse().unwrap(), "10.0.0.6:1".parse().unwrap());
        let t = Instant::now();
        let mut acks = EndpointAcks::default();
        assert!(acks.known_everywhere("10.0.0.6:1", t), "no gateway yet");
        let (v1, v2) = (version(&[a]), version(&[a, b]));
        assert!(acks.poll("g1", "", &v1, &[a], t));
        assert!(acks.poll("g1", &v1, &v2, &[a, b], t));
        assert!(!acks.known_everywhere("10.0.0.6:1", t), "g1 has only v1");
        assert!(acks.poll("g1", &v2, &v2, &[a, b], t));
        assert!(!acks.poll("g1", &v2, &v2, &[a, b], t), "nothing new");
        assert!(acks.known_everywhere("10.0.0.6:1", t));
        acks.poll("g2", &v1, &v2, &[a, b], t);
        assert!(!acks.known_everywhere("10.0.0.6:1", t), "g2 is behind");
        let later = t + GATEWAY_TTL + Duration::from_secs(1);
        acks.poll("g1", &v2, &v2, &[a, b], later);
        assert!(acks.known_everywhere("10.0.0.6:1", later), "g2 went away");
        assert!(!acks.known_everywhere("not an address", later));
    }
}
