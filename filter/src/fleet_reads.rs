//! Reads about the whole fleet, answered from the model map in Ollama's
//! shapes: `/`, `/api/version`, `/api/tags`, `/api/ps`, `/v1/models` and
//! `/v1/models/{model}`. Only healthy instances count: a model listed here
//! is one a request can reach.

use model_map::{InstanceState, ModelEntry, ModelMap, ModelName, RawJson, Replica};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::endpoint::LocalRead;
use crate::errors::{error_body, go_json, Api, LbError};

/// Content type of Ollama's JSON answers (gin's `c.JSON`).
pub const JSON: &str = "application/json; charset=utf-8";
/// Content type the OpenAI middleware's writers set (`/v1/models*` and
/// errors from the handler), whose `json.Encoder` ends with a newline.
pub const OPENAI_WRITER_JSON: &str = "application/json";
/// Content type of `GET /`.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// A complete local answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAnswer {
    pub status: u32,
    pub content_type: &'static str,
    pub body: String,
}

impl LocalAnswer {
    fn json(body: String) -> Self {
        LocalAnswer {
            status: 200,
            content_type: JSON,
            body,
        }
    }

    /// An OpenAI-layer answer as its writer sends it.
    fn openai_writer(status: u32, body: String) -> Self {
        LocalAnswer {
            status,
            content_type: OPENAI_WRITER_JSON,
            body: body + "\n",
        }
    }

    /// An error in the shape of `api`, with Ollama's bytes for it.
    pub fn error(e: &LbError, api: Api) -> Self {
        if api == Api::OpenAi && !e.from_openai_middleware() {
            return Self::openai_writer(e.status(), e.body(api));
        }
        LocalAnswer {
            status: e.status(),
            content_type: JSON,
            body: e.body(api),
        }
    }
}

/// The fleet reads of one map, rendered when the map arrives (by the
/// worker that fetched it, shared with the others in the
/// [`crate::routing_map::RoutingMap`]): a read then costs no walk of the
/// map, and no worker needs the map's raw entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetReads {
    /// `/api/version`'s body.
    version: String,
    /// `/api/tags`' body.
    tags: String,
    /// `/api/ps`' body.
    ps: String,
    /// `/v1/models`' body (without the writer's newline).
    openai_models: String,
    /// Each listed model's routing key and `created`, sorted by key.
    created: Vec<(String, i64)>,
}

impl FleetReads {
    /// Renders every fleet read of `map`.
    pub fn render(map: &ModelMap) -> Self {
        let listed = listed(map);
        let mut created: Vec<(String, i64)> = listed
            .iter()
            .map(|(m, r)| (m.key.clone(), r.modified_unix))
            .collect();
        created.sort();
        FleetReads {
            version: go_json(&serde_json::json!({ "version": fleet_version(map) })),
            tags: tags_of(&listed),
            ps: ps(map),
            openai_models: openai_models_of(&listed),
            created,
        }
    }

    /// `created` of the listed model with routing key `key`.
    fn created(&self, key: &str) -> Option<i64> {
        self.created
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .and_then(|i| self.created.get(i))
            .map(|(_, c)| *c)
    }
}

/// Answers `read`; every read but `/` needs the map's rendered reads.
pub fn answer(read: &LocalRead, reads: Option<&FleetReads>) -> LocalAnswer {
    let api = match read {
        LocalRead::OpenAiModels | LocalRead::OpenAiModel(_) => Api::OpenAi,
        _ => Api::Native,
    };
    if *read == LocalRead::Root {
        return LocalAnswer {
            status: 200,
            content_type: TEXT,
            body: "Ollama is running".into(),
        };
    }
    let Some(reads) = reads else {
        return LocalAnswer::error(&LbError::NoMap, api);
    };
    match read {
        LocalRead::Root => LocalAnswer {
            status: 200,
            content_type: TEXT,
            body: "Ollama is running".into(),
        },
        LocalRead::Version => LocalAnswer::json(reads.version.clone()),
        LocalRead::Tags => LocalAnswer::json(reads.tags.clone()),
        LocalRead::Ps => LocalAnswer::json(reads.ps.clone()),
        LocalRead::OpenAiModels => LocalAnswer::openai_writer(200, reads.openai_models.clone()),
        LocalRead::OpenAiModel(m) => openai_model(reads, m),
    }
}

#[derive(Serialize)]
struct TagEntry<'a> {
    name: &'a str,
    model: &'a str,
    modified_at: &'a str,
    size: u64,
    digest: &'a str,
    details: &'a RawJson,
}

#[derive(Serialize)]
struct PsEntry<'a> {
    name: &'a str,
    model: &'a str,
    size: u64,
    digest: &'a str,
    details: &'a RawJson,
    expires_at: &'a str,
    size_vram: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_length: Option<u64>,
}

fn healthy<'m>(map: &'m ModelMap, replica: &Replica) -> Option<&'m InstanceState> {
    map.instance(&replica.instance).filter(|i| i.healthy)
}

/// Each reachable model with the canonical replica it is listed from (the
/// most recently modified one on a healthy instance), newest first.
fn listed(map: &ModelMap) -> Vec<(&ModelEntry, &Replica)> {
    let mut out: Vec<(&ModelEntry, &Replica)> = map
        .models
        .iter()
        .filter_map(|m| {
            let best = m
                .canonical_replicas()
                .filter(|r| healthy(map, r).is_some())
                .max_by_key(|r| r.modified_unix)?;
            Some((m, best))
        })
        .collect();
    out.sort_by(|(ma, ra), (mb, rb)| {
        rb.modified_unix
            .cmp(&ra.modified_unix)
            .then(ma.name.cmp(&mb.name))
    });
    out
}

/// Merged `/api/tags`: each entry exactly as its instance sent it (maps
/// from a syncd that did not keep it get the fields the map has).
pub fn tags(map: &ModelMap) -> String {
    tags_of(&listed(map))
}

fn tags_of(listed: &[(&ModelEntry, &Replica)]) -> String {
    let models = listed
        .iter()
        .map(|(m, r)| match &r.listed {
            Some(entry) => entry.to_value(),
            None => to_value(&TagEntry {
                name: &m.name,
                model: &m.name,
                modified_at: &r.modified_at,
                size: r.size,
                digest: &r.digest,
                details: &r.details,
            }),
        })
        .collect();
    models_json(models)
}

fn to_value(v: &impl Serialize) -> Value {
    // Plain structs of strings, numbers and JSON values always serialise.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `{"models":[...]}` in Go's bytes.
fn models_json(models: Vec<Value>) -> String {
    let mut top = serde_json::Map::new();
    top.insert("models".into(), Value::Array(models));
    go_json(&Value::Object(top))
}

/// Merged `/api/ps`: per model, the replica that stays loaded longest.
pub fn ps(map: &ModelMap) -> String {
    let mut loaded: Vec<(&ModelEntry, &Replica, &model_map::Loaded)> = map
        .models
        .iter()
        .filter_map(|m| {
            m.replicas
                .iter()
                .filter(|r| healthy(map, r).is_some())
                .filter_map(|r| r.loaded.as_ref().map(|l| (m, r, l)))
                .max_by_key(|(_, _, l)| l.expires_unix)
        })
        .collect();
    loaded.sort_by(|a, b| {
        b.2.expires_unix
            .cmp(&a.2.expires_unix)
            .then(a.0.name.cmp(&b.0.name))
    });
    let models = loaded
        .into_iter()
        .map(|(m, r, l)| match &l.entry {
            // Exactly as sent: its own `details`, `expires_at` to the
            // nanosecond, and any field this project does not know.
            Some(entry) => entry.to_value(),
            None => to_value(&PsEntry {
                name: &m.name,
                model: &m.name,
                size: l.size,
                digest: &r.digest,
                details: &r.details,
                expires_at: &l.expires_at,
                size_vram: l.size_vram,
                context_length: l.context_length,
            }),
        })
        .collect();
    models_json(models)
}

/// The lowest version among healthy instances, `0.0.0` if none is known:
/// the fleet supports what every member supports.
pub fn fleet_version(map: &ModelMap) -> String {
    map.instances
        .iter()
        .filter(|i| i.healthy)
        .filter_map(|i| i.version.as_deref())
        .min_by(|a, b| version_order(a).cmp(&version_order(b)))
        .unwrap_or("0.0.0")
        .to_string()
}

/// Sort key for `x.y.z[-pre]`: numeric parts, then releases after
/// pre-releases.
fn version_order(v: &str) -> (Vec<u64>, bool, String) {
    let v = v.trim_start_matches('v');
    let (core, pre) = match v.split_once(['-', '+']) {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let nums = core.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    (nums, pre.is_none(), pre.unwrap_or_default().to_string())
}

fn namespace(name: &str) -> String {
    ModelName::parse(name)
        .map(|n| n.namespace)
        .unwrap_or_default()
}

/// `/v1/models`: `data` is `null` when empty, as in Ollama.
pub fn openai_models(map: &ModelMap) -> String {
    openai_models_of(&listed(map))
}

fn openai_models_of(listed: &[(&ModelEntry, &Replica)]) -> String {
    let data: Vec<Value> = listed
        .iter()
        .map(|(m, r)| {
            serde_json::json!({"id": m.name, "object": "model", "created": r.modified_unix, "owned_by": namespace(&m.name)})
        })
        .collect();
    let data = if data.is_empty() {
        Value::Null
    } else {
        Value::Array(data)
    };
    go_json(&serde_json::json!({"object": "list", "data": data}))
}

/// `/v1/models/{model}`: the id echoes the request.
pub fn openai_model(reads: &FleetReads, requested: &str) -> LocalAnswer {
    // ShowHandler behind the OpenAI writer: a name it cannot read is 400.
    let parsed = match ModelName::parse_ref(requested) {
        Ok((name, _)) => Some(name),
        Err(e) => {
            let e = match e {
                model_map::NameError::ConflictingSource(_) => LbError::NameConflict(e.to_string()),
                _ => LbError::InvalidModelName,
            };
            return LocalAnswer::error(&e, Api::OpenAi);
        }
    };
    let found = parsed.as_ref().and_then(|n| reads.created(&n.key()));
    match (found, parsed) {
        (Some(created), Some(n)) => LocalAnswer::openai_writer(
            200,
            go_json(
                &serde_json::json!({"id": requested, "object": "model", "created": created, "owned_by": n.namespace}),
            ),
        ),
        (_, parsed) => {
            let shown = parsed.map_or(requested.to_string(), |n| n.display_shortest());
            let e = LbError::ModelNotFound(shown);
            LocalAnswer::openai_writer(404, error_body(404, &e.message(Api::OpenAi), Api::OpenAi))
        }
    }
}

#[cfg(test)]
#[path = "fleet_reads_tests.rs"]
mod tests;
