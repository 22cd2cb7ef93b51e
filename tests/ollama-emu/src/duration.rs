//! Go's `time.ParseDuration`, Ollama's `keep_alive` rules, and the humane
//! duration form used in the emulator's TOML configuration.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// How long a model stays loaded once idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Never unload (a negative `keep_alive`).
    Forever,
    /// Unload this long after the last request finished (zero: at once).
    For(Duration),
}

impl KeepAlive {
    /// Ollama's `api.Duration` from a signed number of nanoseconds:
    /// negative means forever.
    fn from_nanos(ns: i128) -> Self {
        if ns < 0 {
            KeepAlive::Forever
        } else {
            KeepAlive::For(Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)))
        }
    }

    /// `api.Duration.UnmarshalJSON`: a number is seconds, a string is a Go
    /// duration, negative values mean forever. Returns `None` for JSON null.
    pub fn from_json(v: &serde_json::Value) -> Result<Option<Self>, String> {
        match v {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Number(n) => {
                let secs = n.as_f64().unwrap_or(0.0);
                Ok(Some(Self::from_nanos((secs * 1e9) as i128)))
            }
            serde_json::Value::String(s) => {
                parse_go_duration(s).map(|ns| Some(Self::from_nanos(ns)))
            }
            serde_json::Value::Bool(_) => Err("Unsupported type: 'bool'".into()),
            serde_json::Value::Array(_) => Err("Unsupported type: '[]interface {}'".into()),
            serde_json::Value::Object(_) => {
                Err("Unsupported type: 'map[string]interface {}'".into())
            }
        }
    }
}

pub use model_map::go_duration::parse_go_duration;

/// A non-negative configuration duration: a Go duration string or an
/// integer number of milliseconds.
pub fn parse_config_duration(v: &toml::Value) -> Result<Duration, String> {
    match v {
        toml::Value::Integer(ms) if *ms >= 0 => Ok(Duration::from_millis(*ms as u64)),
        toml::Value::String(s) => match parse_go_duration(s)? {
            ns if ns >= 0 => Ok(Duration::from_nanos(ns as u64)),
            _ => Err(format!("negative duration {s:?}")),
        },
        other => Err(format!(
            "expected a duration like \"2s\" or milliseconds, got {other}"
        )),
    }
}

/// Serde adapter for [`parse_config_duration`].
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = toml::Value::deserialize(d)?;
    parse_config_duration(&v).map_err(serde::de::Error::custom)
}

/// Serde adapter for a configured keep-alive: a Go duration string
/// (negative: forever) or integer milliseconds.
pub fn de_keep_alive<'de, D: Deserializer<'de>>(d: D) -> Result<KeepAlive, D::Error> {
    let v = toml::Value::deserialize(d)?;
    parse_keep_alive_setting(&v).map_err(serde::de::Error::custom)
}

/// A keep-alive from configuration or a flag: Go duration (negative means
/// forever) or integer milliseconds.
pub fn parse_keep_alive_setting(v: &toml::Value) -> Result<KeepAlive, String> {
    match v {
        toml::Value::Integer(ms) => Ok(KeepAlive::from_nanos(i128::from(*ms) * 1_000_000)),
        toml::Value::String(s) => parse_go_duration(s).map(KeepAlive::from_nanos),
        other => Err(format!("expected a duration like \"5m\", got {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_json() {
        let ka = |v: serde_json::Value| KeepAlive::from_json(&v);
        assert_eq!(ka(serde_json::json!(-1)), Ok(Some(KeepAlive::Forever)));
        assert_eq!(
            ka(serde_json::json!(0)),
            Ok(Some(KeepAlive::For(Duration::ZERO)))
        );
        assert_eq!(
            ka(serde_json::json!("10s")),
            Ok(Some(KeepAlive::For(Duration::from_secs(10))))
        );
        assert_eq!(ka(serde_json::json!(null)), Ok(None));
        assert!(ka(serde_json::json!("-1")).is_err());
    }
}
