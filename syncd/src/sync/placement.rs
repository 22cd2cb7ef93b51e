//! The placement file: which models go where, and how many stay loaded.
//!
//! ```toml
//! default = "keep"          # unlisted models: "keep" (leave alone) or "all"
//!
//! [[model]]
//! name = "llama3.2"
//! replicas = 2              # on 2 healthy instances, chosen by the planner
//! warm = 1                  # kept loaded (keep_alive -1) on 1 of them
//!
//! [[model]]
//! name = "nomic-embed-text"
//! instances = ["gpu-a", "gpu-b"]
//! ```
//!
//! A model with neither `replicas` nor `instances` goes on every healthy
//! instance. The same rules arrive as JSON on `POST /v1/sync`; both are
//! checked by [`Placement::validate`], the file's errors giving its line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use model_map::name::ModelName;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use toml::Spanned;

/// What happens to models the placement does not list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultRule {
    /// Every healthy instance gets it (union sync), mismatches repaired.
    All,
    /// Left alone: no pulls, no repairs.
    #[default]
    Keep,
}

/// Where one model goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRule {
    /// Model name as given (`llama3.2`, `ns/m:tag`).
    pub name: String,
    /// How many healthy instances hold it; `None` with no `instances`: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Exactly these instances (those that are healthy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<String>>,
    /// On how many of its instances it is kept loaded.
    #[serde(default)]
    pub warm: u32,
}

/// A validated placement: rules by routing key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    #[serde(default)]
    pub default: DefaultRule,
    #[serde(default, rename = "model")]
    pub models: Vec<ModelRule>,
}

/// A placement that cannot be used.
#[derive(Debug, Error)]
pub enum PlacementError {
    #[error("cannot read placement file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlacement {
    #[serde(default)]
    default: DefaultRule,
    #[serde(default)]
    model: Vec<Spanned<ModelRule>>,
}

impl Placement {
    /// Reads and validates a TOML placement file; `instances` are the
    /// configured instance names (a rule naming another is an error), or
    /// `None` when the daemon will check them (`sync --url`).
    pub fn from_file(
        path: &Path,
        instances: Option<&[String]>,
    ) -> Result<Placement, PlacementError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlacementError::Read {
            path: path.to_owned(),
            source,
        })?;
        Placement::from_toml(&text, &path.display().to_string(), instances)
    }

    /// Parses TOML text; `source` names it in errors.
    pub fn from_toml(
        text: &str,
        source: &str,
        instances: Option<&[String]>,
    ) -> Result<Placement, PlacementError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let invalid = |line: usize, message: String| PlacementError::Invalid {
            origin: format!("placement file {source}, line {line}"),
            message,
        };
        let file: FilePlacement = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(s.start));
            invalid(line, e.message().trim().to_string())
        })?;
        let lines: Vec<usize> = file.model.iter().map(|m| line_of(m.span().start)).collect();
        let placement = Placement {
            default: file.default,
            models: file.model.into_iter().map(Spanned::into_inner).collect(),
        };
        placement
            .check(instances)
            .map_err(|(i, message)| invalid(lines.get(i).copied().unwrap_or(0), message))?;
        Ok(placement)
    }

    /// Checks a placement that arrived as JSON (`POST /v1/sync`); errors
    /// name the entry as `model[i]`.
    pub fn validate(&self, instances: Option<&[String]>) -> Result<(), PlacementError> {
        self.check(instances)
            .map_err(|(i, message)| PlacementError::Invalid {
                origin: format!("placement model[{i}]"),
                message,
            })
    }

    /// The index of the first bad rule and what is wrong with it.
    fn check(&self, instances: Option<&[String]>) -> Result<(), (usize, String)> {
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for (i, rule) in self.models.iter().enumerate() {
            let name = ModelName::parse(&rule.name)
                .map_err(|e| (i, format!("model name {:?} is not valid: {e}", rule.name)))?;
            if let Some(first) = seen.insert(name.key(), &rule.name) {
                return Err((
                    i,
                    format!(
                        "model {:?} is listed twice (also as {first:?}): merge the entries",
                        rule.name
                    ),
                ));
            }
            if rule.replicas.is_some() && rule.instances.is_some() {
                return Err((
                    i,
                    format!("{:?}: give replicas or instances, not both", rule.name),
                ));
            }
            if rule.replicas == Some(0) {
                return Err((
                    i,
                    format!(
                        "{:?}: replicas must be at least 1 (sync never deletes; drop the entry)",
                        rule.name
                    ),
                ));
            }
            if let Some(list) = &rule.instances {
                if list.is_empty() {
                    return Err((i, format!("{:?}: instances is empty", rule.name)));
                }
                let unknown = instances.and_then(|known| list.iter().find(|n| !known.contains(n)));
                if let Some(unknown) = unknown {
                    return Err((
                        i,
                        format!(
                            "{:?}: unknown instance {unknown:?}; configured: {}",
                            rule.name,
                            instances.unwrap_or_default().join(", ")
                        ),
                    ));
                }
            }
            let room = rule
                .replicas
                .map(|r| r as usize)
                .or(rule.instances.as_ref().map(Vec::len));
            if room.is_some_and(|n| rule.warm as usize > n) {
                return Err((
                    i,
                    format!(
                        "{:?}: warm = {} is more than the instances it goes on",
                        rule.name, rule.warm
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The rule for a routing key, if listed.
    pub fn rule(&self, key: &str) -> Option<&ModelRule> {
        self.models
            .iter()
            .find(|r| ModelName::parse(&r.name).is_ok_and(|n| n.key() == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["gpu-a".into(), "gpu-b".into()]
    }

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
default = "all"

[[model]]
name = "llama3.2"
replicas = 2
warm = 1

[[model]]
name = "nomic-embed-text"
instances = ["gpu-a", "gpu-b"]
"#;
        let p = Placement::from_toml(text, "p.toml", Some(&names())).unwrap();
        assert_eq!(p.default, DefaultRule::All);
        assert_eq!(p.models[0].replicas, Some(2));
        assert_eq!(p.models[0].warm, 1);
        assert!(p
            .rule("registry.ollama.ai/library/llama3.2:latest")
            .is_some());
        assert!(Placement::from_toml("", "p", None)
            .unwrap()
            .models
            .is_empty());
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                "[[model]]\nname = \"m\"\nreplica = 2\n",
                "line 3",
                "unknown field",
            ),
            ("default = \"some\"\n", "line 1", "unknown variant"),
            ("\n[[model]]\nname = \"bad name!\"\n", "line 2", "not valid"),
            (
                "[[model]]\nname = \"m\"\n[[model]]\nname = \"M:latest\"\n",
                "line 3",
                "listed twice",
            ),
            (
                "[[model]]\nname = \"m\"\nreplicas = 1\ninstances = [\"gpu-a\"]\n",
                "line 1",
                "not both",
            ),
            (
                "[[model]]\nname = \"m\"\nreplicas = 0\n",
                "line 1",
                "at least 1",
            ),
            (
                "[[model]]\nname = \"m\"\ninstances = [\"gpu-z\"]\n",
                "line 1",
                "unknown instance \"gpu-z\"",
            ),
            (
                "[[model]]\nname = \"m\"\nreplicas = 1\nwarm = 2\n",
                "line 1",
                "warm = 2",
            ),
        ];
        for (text, line, message) in cases {
            let e = Placement::from_toml(text, "p.toml", Some(&names()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(line) && e.contains(message), "{text:?}: {e}");
        }
    }

    #[test]
    fn json_placements_are_checked_too() {
        let p: Placement =
            serde_json::from_str(r#"{"model":[{"name":"m","instances":["x"]}]}"#).unwrap();
        let e = p.validate(Some(&names())).unwrap_err().to_string();
        assert!(
            e.contains("model[0]") && e.contains("unknown instance"),
            "{e}"
        );
    }
}
