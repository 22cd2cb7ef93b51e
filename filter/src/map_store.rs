//! The map as syncd sends it (decoded and checked here, by the worker that
//! fetched it), the fetch lease that lets one worker at a time poll syncd,
//! and what a new map changes for the cool-downs.

use model_map::{ModelMap, MAP_FORMAT};

use crate::routing_map::RoutingMap;
use thiserror::Error;

/// Why a map from syncd (or from shared data) is not used.
#[derive(Debug, Error)]
pub enum MapError {
    #[error("map is not valid JSON for this filter: {0}")]
    Json(#[from] serde_json::Error),
    #[error("map format {found}, but this filter reads format {MAP_FORMAT}; upgrade the filter or syncd so they match")]
    Format { found: u32 },
}

/// Decodes a map and checks its format; fills in a missing id. A model
/// entry that does not decode is left out (and logged), not the map.
pub fn decode_map(bytes: &[u8]) -> Result<ModelMap, MapError> {
    let decoded = model_map::decode::decode_map(bytes)?;
    for why in decoded.rejected.iter().take(10) {
        log::warn!("ollama-lb: map {} leaves out {why}", decoded.map.id);
    }
    let mut map = decoded.map;
    if map.format != MAP_FORMAT {
        return Err(MapError::Format { found: map.format });
    }
    if map.id.is_empty() {
        map.id = map.content_id();
    }
    Ok(map)
}

/// What syncd said about the map the filter holds, sent back on the next
/// poll (each ignored unless it is a number).
#[derive(Debug, Clone, Copy, Default)]
pub struct MapTimes<'a> {
    /// When the map's id was published (`x-ollama-lb-map-time`), so a
    /// restarted syncd answers at once.
    pub at: Option<&'a str>,
    /// How fresh its exact entries are (`x-ollama-lb-map-fresh`), so a
    /// syncd with newer entries under the same id answers at once, and one
    /// with older entries keeps waiting.
    pub fresh: Option<&'a str>,
}

fn numeric_param(name: &str, value: Option<&str>) -> String {
    value
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .map(|v| format!("&{name}={v}"))
        .unwrap_or_default()
}

/// The path of the next map poll: the plain map path at first, then a
/// long poll from `since` with the map's times.
pub fn poll_path(map_path: &str, since: &str, times: MapTimes<'_>, wait_s: u32) -> String {
    if since.is_empty() {
        return map_path.to_string();
    }
    let at = numeric_param("at", times.at);
    let fresh = numeric_param("fresh", times.fresh);
    format!("{map_path}?since={since}{at}{fresh}&wait={wait_s}")
}

/// Instances that are down in `old` and healthy in `new`: syncd has just
/// seen them answer again, which outweighs a cool-down from the failures
/// that happened while they were down.
pub fn revived<'m>(old: &RoutingMap, new: &'m RoutingMap) -> Vec<&'m str> {
    new.instances
        .iter()
        .filter(|i| i.healthy && old.instance(&i.name).is_some_and(|o| !o.healthy))
        .map(|i| i.name.as_str())
        .collect()
}

/// The lease as stored: `<owner> <expires_ms>`.
pub fn lease_value(owner: &str, expires_ms: u64) -> String {
    format!("{owner} {expires_ms}")
}

/// Whether `owner` may write a new lease over `current` at `now`: the
/// lease is free, expired, or already its own.
pub fn may_claim(current: &str, owner: &str, now_ms: u64) -> bool {
    let (holder, expires) = current.split_once(' ').unwrap_or(("", "0"));
    let expires: u64 = expires.parse().unwrap_or(0);
    holder == owner || expires <= now_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::fleet;

    #[test]
    fn maps_round_trip_and_wrong_formats_are_refused() {
        let map = fleet();
        let bytes = serde_json::to_vec(&map).unwrap();
        assert_eq!(decode_map(&bytes).unwrap(), map);
        let mut unsealed = map.clone();
        unsealed.id.clear();
        let decoded = decode_map(&serde_json::to_vec(&unsealed).unwrap()).unwrap();
        assert_eq!(decoded.id, map.id, "a missing id is the content id");
        let mut future = map;
        future.format = MAP_FORMAT + 1;
        let err = decode_map(&serde_json::to_vec(&future).unwrap()).unwrap_err();
        assert!(err.to_string().contains("format 2"), "{err}");
        assert!(decode_map(b"{").is_err());
        assert!(decode_map(b"").is_err());
    }

    #[test]
    fn lease_rules() {
        let held = lease_value("w1", 1_000);
        assert!(may_claim(&held, "w1", 500), "renewal by the holder");
        assert!(!may_claim(&held, "w2", 500), "held by another");
        assert!(may_claim(&held, "w2", 1_000), "expired");
        assert!(may_claim("- 0", "w2", 1), "placeholder");
        assert!(may_claim("garbage", "w2", 1), "unreadable counts as free");
    }

    #[test]
    fn poll_path_carries_since_and_numeric_times() {
        let at = |a| MapTimes { at: a, fresh: None };
        assert_eq!(poll_path("/v1/map", "", at(Some("5")), 25), "/v1/map");
        assert_eq!(
            poll_path("/v1/map", "abc", at(Some("1700000000000")), 25),
            "/v1/map?since=abc&at=1700000000000&wait=25"
        );
        assert_eq!(
            poll_path("/v1/map", "abc", at(Some("1&x=y")), 25),
            "/v1/map?since=abc&wait=25"
        );
        assert_eq!(
            poll_path("/v1/map", "abc", at(None), 3),
            "/v1/map?since=abc&wait=3"
        );
        let both = MapTimes {
            at: Some("10"),
            fresh: Some("12"),
        };
        assert_eq!(
            poll_path("/v1/map", "abc", both, 3),
            "/v1/map?since=abc&at=10&fresh=12&wait=3"
        );
    }

    #[test]
    fn revived_are_the_instances_back_up() {
        let old = crate::test_fixtures::fleet();
        let mut new = old.clone();
        for i in &mut new.instances {
            i.healthy = i.name != "a";
        }
        let (old, new) = (RoutingMap::new(old), RoutingMap::new(new));
        assert_eq!(revived(&old, &new), ["c"], "c was down; a went down");
        assert!(revived(&new, &new).is_empty());
    }
}
