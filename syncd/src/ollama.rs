//! Talking to one Ollama instance: `GET /api/tags`, `/api/ps` and
//! `/api/version`, each bounded by the request timeout and by the response
//! size cap, which is enforced while the body streams in (a huge body is
//! never buffered whole); and, for `sync`, `POST /api/pull` with its
//! progress stream and loading a model to keep it warm.

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use thiserror::Error;

use crate::config::{Instance, PollSettings, Secret};

/// Why one request to an instance failed; each one fails that poll.
#[derive(Debug, Error)]
pub enum PollError {
    #[error("GET {path}: no answer within {timeout:?}")]
    Timeout {
        path: &'static str,
        timeout: Duration,
    },
    #[error("GET {path}: {message}")]
    Request { path: &'static str, message: String },
    #[error("GET {path}: HTTP {status}: {body}")]
    Status {
        path: &'static str,
        status: u16,
        body: String,
    },
    #[error("GET {path}: response larger than the {limit}-byte cap (--max-response-bytes)")]
    TooLarge { path: &'static str, limit: u64 },
    #[error("GET {path}: invalid JSON: {message}")]
    InvalidJson { path: &'static str, message: String },
    /// Over one of [`model_map::limits`] (see [`crate::sanitise`]).
    #[error("GET {path}: {message}")]
    OverLimit { path: &'static str, message: String },
}

/// `/api/tags`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Tags {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub models: Vec<TagModel>,
    /// Entries refused alone for being over a limit, one line each.
    #[serde(skip)]
    pub refused: Vec<String>,
}

/// One `/api/tags` entry: the fields the map reads, and the entry as sent.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(try_from = "serde_json::Value")]
pub struct TagModel {
    pub fields: TagFields,
    /// The entry exactly as the instance sent it (every field, in order).
    pub raw: serde_json::Value,
}

impl TryFrom<serde_json::Value> for TagModel {
    type Error = serde_json::Error;
    fn try_from(raw: serde_json::Value) -> Result<Self, Self::Error> {
        let fields = TagFields::deserialize(&raw)?;
        Ok(TagModel { fields, raw })
    }
}

impl std::ops::Deref for TagModel {
    type Target = TagFields;
    fn deref(&self) -> &TagFields {
        &self.fields
    }
}

/// The fields of an `/api/tags` entry the map reads.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TagFields {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub modified_at: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub details: serde_json::Value,
}

/// `/api/ps`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Ps {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub models: Vec<PsModel>,
    /// Entries refused alone for being over a limit, one line each.
    #[serde(skip)]
    pub refused: Vec<String>,
}

/// One `/api/ps` entry: the fields the map reads, and the entry as sent.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(try_from = "serde_json::Value")]
pub struct PsModel {
    pub fields: PsFields,
    /// The entry exactly as the instance sent it (every field, in order).
    pub raw: serde_json::Value,
}

impl TryFrom<serde_json::Value> for PsModel {
    type Error = serde_json::Error;
    fn try_from(raw: serde_json::Value) -> Result<Self, Self::Error> {
        let fields = PsFields::deserialize(&raw)?;
        Ok(PsModel { fields, raw })
    }
}

impl std::ops::Deref for PsModel {
    type Target = PsFields;
    fn deref(&self) -> &PsFields {
        &self.fields
    }
}

/// The fields of an `/api/ps` entry the map reads.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PsFields {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub size_vram: u64,
    #[serde(default)]
    pub expires_at: String,
    /// Absent before Ollama 0.9.7.
    #[serde(default)]
    pub context_length: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Version {
    version: String,
}

impl Tags {
    /// The entries that passed [`crate::sanitise::check_answer`].
    pub fn from_checked(
        path: &'static str,
        checked: crate::sanitise::Checked,
    ) -> Result<Tags, PollError> {
        let models = decode_entries(path, checked.entries)?;
        Ok(Tags {
            models,
            refused: checked.refused,
        })
    }
}

impl Ps {
    /// The entries that passed [`crate::sanitise::check_answer`].
    pub fn from_checked(
        path: &'static str,
        checked: crate::sanitise::Checked,
    ) -> Result<Ps, PollError> {
        let models = decode_entries(path, checked.entries)?;
        Ok(Ps {
            models,
            refused: checked.refused,
        })
    }
}

/// Entries of the wrong shape (a string for a size) fail the poll, as they
/// always did: that instance does not answer like Ollama.
fn decode_entries<T: TryFrom<serde_json::Value, Error = serde_json::Error>>(
    path: &'static str,
    entries: Vec<serde_json::Value>,
) -> Result<Vec<T>, PollError> {
    entries
        .into_iter()
        .map(|v| {
            T::try_from(v).map_err(|e| PollError::InvalidJson {
                path,
                message: e.to_string(),
            })
        })
        .collect()
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// What one successful poll learned.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub tags: Tags,
    pub ps: Ps,
    /// Present when this poll asked `/api/version` and got an answer.
    pub version: Option<String>,
    /// Bytes of the verbatim entries this poll keeps (toward
    /// [`model_map::limits::MAX_MAP_VERBATIM_BYTES`]).
    pub bytes: usize,
}

/// Something that can be polled: the real [`OllamaClient`], or a script in
/// tests.
pub trait Probe: Send + Sync + 'static {
    /// Polls once; `with_version` also asks `/api/version`.
    fn poll(
        &self,
        with_version: bool,
    ) -> impl Future<Output = Result<Observation, PollError>> + Send;
}

/// HTTP client for one instance.
#[derive(Debug, Clone)]
pub struct OllamaClient {
    http: reqwest::Client,
    base: String,
    /// Sent as `Authorization: Bearer …` (marked sensitive) when set.
    bearer_token: Option<Secret>,
    timeout: Duration,
    max_bytes: u64,
}

impl OllamaClient {
    /// A client for `instance` sharing the connection pool of `http`.
    /// An instance with its own CA gets a client of its own that trusts
    /// only that CA.
    pub fn new(http: reqwest::Client, instance: &Instance, settings: &PollSettings) -> Self {
        let http = match &instance.access.ca_pem {
            Some(pem) => Self::client_trusting(settings, pem).unwrap_or(http),
            None => http,
        };
        OllamaClient {
            http,
            base: instance.url.clone(),
            bearer_token: instance.access.bearer_token.clone(),
            timeout: settings.timeout,
            max_bytes: settings.max_response_bytes,
        }
    }

    /// The shared HTTP client. Proxies from the environment are ignored:
    /// the daemon reaches instances directly, as Envoy does. Connections
    /// are not kept idle for reuse: each poll opens new ones, so an
    /// instance that stopped accepting connections (while old ones linger)
    /// fails its poll, as it would fail Envoy's new connections. At a few
    /// connections per instance per interval this costs nothing.
    /// `https` instances are checked against the system's trusted roots.
    pub fn http_client(settings: &PollSettings) -> reqwest::Client {
        Self::builder(settings)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new())
    }

    fn builder(settings: &PollSettings) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .connect_timeout(settings.timeout)
    }

    /// A client that trusts only the CAs in `pem` (checked at startup).
    fn client_trusting(settings: &PollSettings, pem: &[u8]) -> Option<reqwest::Client> {
        let certs = reqwest::Certificate::from_pem_bundle(pem).ok()?;
        Self::builder(settings).tls_certs_only(certs).build().ok()
    }

    /// A request to `path` on the instance, with its credential.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.bearer_token {
            // `bearer_auth` marks the header sensitive: never in Debug output.
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    /// GETs `path` and decodes it, within the timeout and the size cap.
    pub async fn get<T: DeserializeOwned>(&self, path: &'static str) -> Result<T, PollError> {
        let body = self.get_body(path).await?;
        serde_json::from_slice(&body).map_err(|e| PollError::InvalidJson {
            path,
            message: e.to_string(),
        })
    }

    async fn get_body(&self, path: &'static str) -> Result<Vec<u8>, PollError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.fetch(path))
            .await
            .map_err(|_| PollError::Timeout { path, timeout })?
    }

    /// `GET /api/tags`, checked against the limits ([`crate::sanitise`]).
    pub async fn tags(&self) -> Result<(Tags, usize), PollError> {
        let path = "/api/tags";
        let checked = crate::sanitise::check_answer(path, &self.get_body(path).await?)?;
        let bytes = checked.bytes;
        Ok((Tags::from_checked(path, checked)?, bytes))
    }

    /// `GET /api/ps`, checked against the limits ([`crate::sanitise`]).
    pub async fn ps(&self) -> Result<(Ps, usize), PollError> {
        let path = "/api/ps";
        let checked = crate::sanitise::check_answer(path, &self.get_body(path).await?)?;
        let bytes = checked.bytes;
        Ok((Ps::from_checked(path, checked)?, bytes))
    }

    async fn fetch(&self, path: &'static str) -> Result<Vec<u8>, PollError> {
        let request_error = |e: reqwest::Error| PollError::Request {
            path,
            message: request_error_text(&e),
        };
        let mut resp = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .map_err(request_error)?;
        let too_large = PollError::TooLarge {
            path,
            limit: self.max_bytes,
        };
        if resp.content_length().is_some_and(|n| n > self.max_bytes) {
            return Err(too_large);
        }
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(request_error)? {
            if (body.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(PollError::Status {
                path,
                status: status.as_u16(),
                body: text.chars().take(200).collect(),
            });
        }
        Ok(body)
    }
}

/// Why a pull or a load failed.
#[derive(Debug, Error)]
pub enum ActionError {
    #[error("{0}")]
    Request(String),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// An `{"error": …}` line or body from Ollama.
    #[error("{0}")]
    Ollama(String),
    #[error("no progress for {0:?}")]
    Stalled(Duration),
    #[error("the stream ended before \"success\"")]
    Truncated,
}

/// One line of `/api/pull` progress.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct PullProgress {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub total: Option<u64>,
    #[serde(default)]
    pub completed: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// Longest progress line accepted (Ollama's client allows 8 MB).
const MAX_LINE: usize = 8 << 20;

impl OllamaClient {
    /// The instance's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /api/pull` with streamed progress: `on_progress` sees every
    /// line; an `{"error"}` line, a stream that ends before `success`, or
    /// no line for `stall` fails the pull.
    pub async fn pull(
        &self,
        model: &str,
        stall: Duration,
        mut on_progress: impl FnMut(&PullProgress),
    ) -> Result<(), ActionError> {
        let body = serde_json::json!({ "model": model, "stream": true });
        let send = self
            .request(reqwest::Method::POST, "/api/pull")
            .json(&body)
            .send();
        let mut resp = tokio::time::timeout(stall, send)
            .await
            .map_err(|_| ActionError::Stalled(stall))?
            .map_err(|e| ActionError::Request(request_error_text(&e)))?;
        if !resp.status().is_success() {
            return Err(status_error(resp).await);
        }
        let mut lines = crate::text::NdjsonLines::default();
        loop {
            let chunk = tokio::time::timeout(stall, resp.chunk())
                .await
                .map_err(|_| ActionError::Stalled(stall))?
                .map_err(|e| ActionError::Request(request_error_text(&e)))?;
            let Some(chunk) = chunk else {
                return Err(ActionError::Truncated);
            };
            lines.push(&chunk);
            while let Some(line) = lines.next_line() {
                let p: PullProgress = serde_json::from_slice(&line)
                    .map_err(|e| ActionError::Request(format!("invalid progress line: {e}")))?;
                if let Some(error) = p.error {
                    return Err(ActionError::Ollama(error));
                }
                on_progress(&p);
                if p.status == "success" {
                    return Ok(());
                }
            }
            if lines.pending() > MAX_LINE {
                return Err(ActionError::Request("progress line over 8 MB".into()));
            }
        }
    }

    /// Loads `model` and keeps it loaded: `/api/generate` with an empty
    /// prompt and `keep_alive: -1`; an embedding-only model (which refuses
    /// generate) is loaded through `/api/embed` with an empty input.
    pub async fn warm(&self, model: &str, limit: Duration) -> Result<(), ActionError> {
        let generate =
            serde_json::json!({ "model": model, "prompt": "", "keep_alive": -1, "stream": false });
        match self.post_json("/api/generate", &generate, limit).await {
            Err(ActionError::Status { status: 400, body }) if body.contains("does not support") => {
                let embed = serde_json::json!({ "model": model, "input": [], "keep_alive": -1 });
                self.post_json("/api/embed", &embed, limit).await
            }
            other => other,
        }
    }

    async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        limit: Duration,
    ) -> Result<(), ActionError> {
        let send = async {
            let resp = self
                .request(reqwest::Method::POST, path)
                .json(body)
                .send()
                .await
                .map_err(|e| ActionError::Request(request_error_text(&e)))?;
            if !resp.status().is_success() {
                return Err(status_error(resp).await);
            }
            resp.bytes()
                .await
                .map_err(|e| ActionError::Request(request_error_text(&e)))?;
            Ok(())
        };
        tokio::time::timeout(limit, send)
            .await
            .map_err(|_| ActionError::Stalled(limit))?
    }
}

/// A non-2xx answer: Ollama's `{"error"}` text when there is one.
async fn status_error(resp: reqwest::Response) -> ActionError {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let body =
        crate::text::error_message(&text).unwrap_or_else(|| text.chars().take(200).collect());
    ActionError::Status { status, body }
}

impl Probe for OllamaClient {
    async fn poll(&self, with_version: bool) -> Result<Observation, PollError> {
        let version = async {
            if !with_version {
                return None;
            }
            match self.get::<Version>("/api/version").await {
                Ok(v) => Some(v.version),
                // The version is informative only: it never fails a poll.
                Err(e) => {
                    tracing::debug!(url = %self.base, error = %e, "version unknown");
                    None
                }
            }
        };
        let (tags, ps, version) = tokio::join!(self.tags(), self.ps(), version);
        let ((tags, tags_bytes), (ps, ps_bytes)) = (tags?, ps?);
        crate::sanitise::check_instance_bytes("/api/tags and /api/ps", tags_bytes + ps_bytes)?;
        Ok(Observation {
            tags,
            ps,
            version,
            bytes: tags_bytes + ps_bytes,
        })
    }
}

/// What went wrong, without reqwest's "error sending request for url
/// (…)" wrapper (the log already names the URL): the stage and the root
/// cause, e.g. `connect: Connection refused (os error 111)`.
fn request_error_text(e: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(source) = root.source() {
        root = source;
    }
    let stage = if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "reading body"
    } else {
        "request"
    };
    format!("{stage}: {root}")
}

/// The error and its sources, so "connection refused" is not hidden behind
/// "error sending request".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_ollama_shapes_including_empty_and_null() {
        let t: Tags = serde_json::from_str(r#"{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","modified_at":"2025-05-04T17:37:44.706015396-07:00","size":2019393189,"digest":"a80c","details":{"format":"gguf"}}]}"#).unwrap();
        assert_eq!(t.models[0].size, 2019393189);
        let t: Tags = serde_json::from_str(r#"{"models":null}"#).unwrap();
        assert!(t.models.is_empty());
        let p: Ps = serde_json::from_str(r#"{"models":[{"name":"m:latest","model":"m:latest","size":5,"digest":"d","expires_at":"2024-06-04T14:38:31.83753-07:00","size_vram":5}]}"#).unwrap();
        assert_eq!(p.models[0].context_length, None);
    }
}
