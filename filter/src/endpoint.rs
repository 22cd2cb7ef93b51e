//! Which Ollama route a request is, where its model comes from, and the
//! per-route wording of Ollama's errors about the model.

use model_map::{ModelName, NameError};

use crate::body_scan::{Fields, ScanError};
use crate::errors::{Api, LbError};

/// Ollama handler whose model errors a route shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Generate,
    Chat,
    Embed,
    Embeddings,
    Show,
    Push,
    Delete,
    Copy,
}

/// A route whose model is in the JSON body.
#[derive(Debug, PartialEq, Eq)]
pub struct BodyRoute {
    pub op: Op,
    pub api: Api,
    /// Go package of the request struct (`api` or `openai`).
    pub pkg: &'static str,
    /// Go request struct, as named in Go's unmarshal errors.
    pub strukt: &'static str,
    /// JSON fields holding the model, first non-empty wins (`cmp.Or`).
    pub fields: &'static [&'static str],
}

/// A read the filter answers from the model map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalRead {
    Root,
    Version,
    Tags,
    Ps,
    OpenAiModels,
    OpenAiModel(String),
}

/// What the filter does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Route to an instance holding the model named in the body.
    Body(&'static BodyRoute),
    /// Route to any healthy instance (pull, create, and routes the filter
    /// does not know, which Ollama answers itself).
    AnyInstance,
    /// Answer from the map.
    Local(LocalRead),
}

impl Endpoint {
    /// The error shape for this request.
    pub fn api(&self, path: &str) -> Api {
        match self {
            Endpoint::Body(r) => r.api,
            _ if path.starts_with("/v1/") => Api::OpenAi,
            _ => Api::Native,
        }
    }
}

macro_rules! route {
    ($name:ident, $op:ident, $api:ident, $pkg:literal, $strukt:literal, $fields:expr) => {
        static $name: BodyRoute = BodyRoute {
            op: Op::$op,
            api: Api::$api,
            pkg: $pkg,
            strukt: $strukt,
            fields: $fields,
        };
    };
}

const MODEL: &[&str] = &["model"];
const MODEL_OR_NAME: &[&str] = &["model", "name"];
route!(GENERATE, Generate, Native, "api", "GenerateRequest", MODEL);
route!(CHAT, Chat, Native, "api", "ChatRequest", MODEL);
route!(EMBED, Embed, Native, "api", "EmbedRequest", MODEL);
route!(
    EMBEDDINGS,
    Embeddings,
    Native,
    "api",
    "EmbeddingRequest",
    MODEL
);
route!(SHOW, Show, Native, "api", "ShowRequest", MODEL_OR_NAME);
route!(PUSH, Push, Native, "api", "PushRequest", MODEL_OR_NAME);
route!(
    DELETE,
    Delete,
    Native,
    "api",
    "DeleteRequest",
    MODEL_OR_NAME
);
route!(COPY, Copy, Native, "api", "CopyRequest", &["source"]);
route!(
    OA_CHAT,
    Chat,
    OpenAi,
    "openai",
    "ChatCompletionRequest",
    MODEL
);
route!(
    OA_COMPLETIONS,
    Generate,
    OpenAi,
    "openai",
    "CompletionRequest",
    MODEL
);
route!(
    OA_EMBEDDINGS,
    Embed,
    OpenAi,
    "openai",
    "EmbedRequest",
    MODEL
);

/// Classifies a request by method and path (query ignored).
pub fn classify(method: &str, path: &str) -> Endpoint {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let read = matches!(method, "GET" | "HEAD");
    let body = |r: &'static BodyRoute| Endpoint::Body(r);
    match (method, path) {
        ("POST", "/api/generate") => body(&GENERATE),
        ("POST", "/api/chat") => body(&CHAT),
        ("POST", "/api/embed") => body(&EMBED),
        ("POST", "/api/embeddings") => body(&EMBEDDINGS),
        ("POST", "/api/show") => body(&SHOW),
        ("POST", "/api/push") => body(&PUSH),
        ("DELETE", "/api/delete") => body(&DELETE),
        ("POST", "/api/copy") => body(&COPY),
        ("POST", "/v1/chat/completions") => body(&OA_CHAT),
        ("POST", "/v1/completions") => body(&OA_COMPLETIONS),
        ("POST", "/v1/embeddings") => body(&OA_EMBEDDINGS),
        (_, "/") if read => Endpoint::Local(LocalRead::Root),
        (_, "/api/version") if read => Endpoint::Local(LocalRead::Version),
        (_, "/api/tags") if read => Endpoint::Local(LocalRead::Tags),
        ("GET", "/api/ps") => Endpoint::Local(LocalRead::Ps),
        ("GET", "/v1/models") => Endpoint::Local(LocalRead::OpenAiModels),
        ("GET", p) => match p.strip_prefix("/v1/models/") {
            Some(seg) if !seg.is_empty() && !seg.contains('/') => {
                Endpoint::Local(LocalRead::OpenAiModel(percent_decode(seg)))
            }
            _ => Endpoint::AnyInstance,
        },
        _ => Endpoint::AnyInstance,
    }
}

/// A model a request names: as sent, and as a routing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedModel {
    /// The client's string, for messages that echo it.
    pub verbatim: String,
    pub name: ModelName,
    pub key: String,
}

impl BodyRoute {
    /// The model Ollama would use, from the scan outcome, or the error
    /// Ollama would answer.
    pub fn model(&self, scanned: Result<Fields, ScanError>) -> Result<RequestedModel, LbError> {
        let fields = scanned.map_err(|e| match e.go_message(self.pkg, self.strukt) {
            Some(m) => LbError::Json(m),
            None => LbError::MissingBody,
        })?;
        let value = fields.into_iter().flatten().find(|v| !v.is_empty);
        let verbatim = value
            .as_ref()
            .map(|v| v.verbatim.clone())
            .unwrap_or_default();
        let parsed = match value.and_then(|v| v.trimmed) {
            Some(trimmed) => ModelName::parse(&trimmed),
            None if verbatim.is_empty() => Err(NameError::Empty),
            None => Err(NameError::Invalid),
        };
        match parsed {
            Ok(name) => Ok(RequestedModel {
                verbatim,
                key: name.key(),
                name,
            }),
            Err(e) => Err(self.name_error(e, verbatim)),
        }
    }

    fn name_error(&self, e: NameError, verbatim: String) -> LbError {
        match (self.op, e) {
            (Op::Delete, _) => LbError::InvalidField {
                field: "name",
                value: verbatim,
            },
            (Op::Copy, _) => LbError::InvalidField {
                field: "source",
                value: verbatim,
            },
            (Op::Generate | Op::Embed, NameError::Empty) => LbError::ModelNotFound(verbatim),
            (_, NameError::Empty) => LbError::ModelRequired,
            (_, NameError::Invalid) => LbError::InvalidModelName,
        }
    }

    /// Ollama's answer when no instance holds the model.
    pub fn not_found(&self, model: &RequestedModel) -> LbError {
        match self.op {
            Op::Show => LbError::ModelNotFound(model.name.display_shortest()),
            Op::Copy => LbError::ModelNotFoundQuoted(model.verbatim.clone()),
            _ => LbError::ModelNotFound(model.verbatim.clone()),
        }
    }
}

/// Decodes `%XX` escapes of a path segment; malformed escapes stay as is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body_scan::BodyScanner;

    fn model_of(method: &str, path: &str, body: &str) -> Result<String, (u32, String)> {
        let Endpoint::Body(route) = classify(method, path) else {
            panic!("{path} is not a body route")
        };
        let mut s = BodyScanner::new(route.fields);
        s.feed(body.as_bytes());
        s.finish();
        let r = s.result().unwrap();
        route
            .model(r)
            .map(|m| m.key)
            .map_err(|e| (e.status(), e.message(route.api)))
    }

    #[test]
    fn routes_are_classified() {
        assert_eq!(
            classify("GET", "/api/tags?x=1"),
            Endpoint::Local(LocalRead::Tags)
        );
        assert_eq!(classify("HEAD", "/"), Endpoint::Local(LocalRead::Root));
        assert_eq!(
            classify("HEAD", "/api/ps"),
            Endpoint::AnyInstance,
            "Ollama answers its 405"
        );
        assert_eq!(classify("GET", "/api/generate"), Endpoint::AnyInstance);
        assert_eq!(classify("POST", "/api/pull"), Endpoint::AnyInstance);
        assert_eq!(
            classify("POST", "/api/blobs/sha256:x"),
            Endpoint::AnyInstance
        );
        assert_eq!(
            classify("GET", "/v1/models/llama3%3A8b"),
            Endpoint::Local(LocalRead::OpenAiModel("llama3:8b".into()))
        );
        assert_eq!(classify("GET", "/v1/models/user/m"), Endpoint::AnyInstance);
        assert_eq!(
            classify("POST", "/v1/chat/completions").api("/v1/chat/completions"),
            Api::OpenAi
        );
    }

    #[test]
    fn model_and_legacy_name() {
        let key = Ok("registry.ollama.ai/library/llama3:latest".to_string());
        assert_eq!(model_of("POST", "/api/show", r#"{"name":"llama3"}"#), key);
        assert_eq!(
            model_of("POST", "/api/show", r#"{"model":"llama3","name":"x"}"#),
            key
        );
        assert_eq!(
            model_of("POST", "/api/show", r#"{"model":"","name":"llama3"}"#),
            key
        );
        assert_eq!(
            model_of("DELETE", "/api/delete", r#"{"name":"llama3"}"#),
            key
        );
        assert_eq!(
            model_of(
                "POST",
                "/api/copy",
                r#"{"ſource":"llama3","destination":"y"}"#
            ),
            key
        );
        assert_eq!(
            model_of("POST", "/api/generate", r#"{"MODEL":" llama3 "}"#),
            key
        );
        assert_eq!(
            model_of("POST", "/api/generate", r#"{"name":"llama3"}"#),
            Err((404, "model '' not found".into())),
            "generate has no name alias"
        );
    }

    #[test]
    fn per_route_model_errors() {
        let cases = [
            ("/api/generate", "{}", 404, "model '' not found"),
            ("/api/embed", r#"{"model":null}"#, 404, "model '' not found"),
            ("/api/chat", "{}", 400, "model is required"),
            ("/api/embeddings", "{}", 400, "model is required"),
            ("/api/show", "{}", 400, "model is required"),
            ("/api/push", "{}", 400, "model is required"),
            ("/api/chat", r#"{"model":"a b"}"#, 400, "invalid model name"),
            ("/api/copy", r#"{"source":"a b"}"#, 400, r#"source "a b" is invalid"#),
            ("/v1/completions", "{}", 404, "model '' not found"),
            ("/v1/chat/completions", "{}", 400, "model is required"),
            ("/v1/chat/completions", "", 400, "EOF"),
            ("/api/chat", " \n", 400, "missing request body"),
            ("/api/chat", r#"{"model":1}"#, 400, "json: cannot unmarshal number into Go struct field ChatRequest.model of type string"),
            ("/v1/embeddings", "[]", 400, "json: cannot unmarshal array into Go value of type openai.EmbedRequest"),
            ("/api/generate", r#"{"model":"x""#, 400, "unexpected EOF"),
        ];
        for (path, body, status, msg) in cases {
            assert_eq!(
                model_of("POST", path, body),
                Err((status, msg.to_string())),
                "{path} {body}"
            );
        }
        assert_eq!(
            model_of("DELETE", "/api/delete", "{}"),
            Err((400, r#"name "" is invalid"#.into()))
        );
    }
}
