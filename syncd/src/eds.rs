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

use std::net::SocketAddr;

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
    hex::encode(&Sha256::digest(text.join(",").as_bytes())[..8])
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

/// What a `DiscoveryRequest` asks: the cluster (the fleet's unless named)
/// and the version Envoy already has.
pub fn read_request(body: &[u8]) -> (String, String) {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let cluster = request["resource_names"][0]
        .as_str()
        .unwrap_or(FLEET_CLUSTER)
        .to_string();
    let version = request["version_info"].as_str().unwrap_or("").to_string();
    (cluster, version)
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
        let (c, v) = read_request(
            br#"{"version_info":"abc","resource_names":["ollama_fleet"],"node":{"id":"x"}}"#,
        );
        assert_eq!((c.as_str(), v.as_str()), ("ollama_fleet", "abc"));
        let (c, v) = read_request(b"not json");
        assert_eq!((c.as_str(), v.as_str()), (FLEET_CLUSTER, ""));
    }
}
