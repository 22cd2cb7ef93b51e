//! Which Ollama route a request is, where its model comes from, and the
//! per-route wording of Ollama's errors about the model.

use model_map::name::Source;
use model_map::{ModelName, NameError};

use crate::body_scan::{Fields, Kind, MessageSchema, ScanError};
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
    /// Every field the scan looks at: `fields`, then those whose kind is
    /// checked as Go's decoder would (see `kinds`).
    pub names: &'static [&'static str],
    /// The Go kind of each of `names`.
    pub kinds: &'static [Kind],
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

/// A body route: handler, API, Go struct, how many leading fields hold
/// the model, then every field with its Go kind, in declaration order.
macro_rules! route {
    ($name:ident, $op:ident, $api:ident, $pkg:literal, $strukt:literal, $model:literal,
     [$($field:literal => $kind:expr),* $(,)?]) => {
        static $name: BodyRoute = {
            const NAMES: &[&str] = &[$($field),*];
            BodyRoute {
                op: Op::$op,
                api: Api::$api,
                pkg: $pkg,
                strukt: $strukt,
                fields: NAMES.split_at($model).0,
                names: NAMES,
                kinds: &[$($kind),*],
            }
        };
    };
}

use crate::body_scan::nested;
use Kind::{Any, Array, Bool, Duration, Nested, Number, Object, Raw, Str, Text, Think};
const OPTIONS: Kind = Object("map[string]interface {}");
const INT: Kind = Number("int");
const F64: Kind = Number("float64");
const F32: Kind = Number("float32");

/// `api.Message`, decoded by its own `UnmarshalJSON`.
static API_MESSAGE: MessageSchema = MessageSchema {
    array_type: "[]api.Message",
    element_type: "api.Alias",
    custom_decoder: true,
    names: &[
        "role",
        "content",
        "thinking",
        "images",
        "tool_calls",
        "tool_name",
        "tool_call_id",
    ],
    kinds: &[
        Str,
        Str,
        Str,
        Array("[]api.ImageData"),
        Array("[]api.ToolCall"),
        Str,
        Str,
    ],
    content_types: false,
    tool_calls: &nested::API_TOOL_CALLS,
};

/// `openai.Message`, and the content types `FromChatRequest` takes.
static OPENAI_MESSAGE: MessageSchema = MessageSchema {
    array_type: "[]openai.Message",
    element_type: "openai.Message",
    custom_decoder: false,
    names: &[
        "role",
        "content",
        "reasoning",
        "tool_calls",
        "name",
        "tool_call_id",
    ],
    kinds: &[Str, Any, Str, Array("[]openai.ToolCall"), Str, Str],
    content_types: true,
    tool_calls: &nested::OPENAI_TOOL_CALLS,
};

// Fields as in Ollama v0.33.0-rc2 `api/types.go` and `openai/openai.go`.
route!(GENERATE, Generate, Native, "api", "GenerateRequest", 1, [
    "model" => Str, "prompt" => Str, "suffix" => Str, "system" => Str, "template" => Str,
    "context" => Array("[]int"), "stream" => Bool, "raw" => Bool, "format" => Raw,
    "keep_alive" => Duration, "images" => Array("[]api.ImageData"), "options" => OPTIONS,
    "think" => Think, "truncate" => Bool, "shift" => Bool, "_debug_render_only" => Bool,
    "logprobs" => Bool, "top_logprobs" => INT,
]);
route!(CHAT, Chat, Native, "api", "ChatRequest", 1, [
    "model" => Str, "messages" => Kind::Messages(&API_MESSAGE), "stream" => Bool, "format" => Raw,
    "keep_alive" => Duration, "tools" => Nested(&nested::API_TOOLS), "options" => OPTIONS,
    "think" => Think, "truncate" => Bool, "shift" => Bool, "_debug_render_only" => Bool,
    "logprobs" => Bool, "top_logprobs" => INT,
]);
route!(EMBED, Embed, Native, "api", "EmbedRequest", 1, [
    "model" => Str, "input" => Any, "keep_alive" => Duration, "truncate" => Bool,
    "dimensions" => INT, "options" => OPTIONS,
]);
route!(EMBEDDINGS, Embeddings, Native, "api", "EmbeddingRequest", 1, [
    "model" => Str, "prompt" => Str, "keep_alive" => Duration, "options" => OPTIONS,
]);
route!(SHOW, Show, Native, "api", "ShowRequest", 2, [
    "model" => Str, "name" => Str, "system" => Str, "template" => Str, "verbose" => Bool,
    "options" => OPTIONS,
]);
route!(PUSH, Push, Native, "api", "PushRequest", 2, [
    "model" => Str, "name" => Str, "insecure" => Bool, "username" => Str, "password" => Str,
    "stream" => Bool,
]);
route!(DELETE, Delete, Native, "api", "DeleteRequest", 2, ["model" => Str, "name" => Str]);
route!(COPY, Copy, Native, "api", "CopyRequest", 1, ["source" => Str, "destination" => Text]);
route!(OA_CHAT, Chat, OpenAi, "openai", "ChatCompletionRequest", 1, [
    "model" => Str, "messages" => Kind::Messages(&OPENAI_MESSAGE), "stream" => Bool,
    "stream_options" => Nested(&nested::STREAM_OPTIONS_SHAPE), "max_tokens" => INT, "seed" => INT,
    "stop" => Any, "temperature" => F64, "frequency_penalty" => F64,
    "presence_penalty" => F64, "top_p" => F64,
    "response_format" => Nested(&nested::RESPONSE_FORMAT_SHAPE), "tools" => Nested(&nested::OPENAI_TOOLS),
    "reasoning" => Nested(&nested::REASONING_SHAPE), "reasoning_effort" => Str, "logprobs" => Bool,
    "top_logprobs" => INT, "_debug_render_only" => Bool,
]);
route!(OA_COMPLETIONS, Generate, OpenAi, "openai", "CompletionRequest", 1, [
    "model" => Str, "prompt" => Str, "frequency_penalty" => F32, "max_tokens" => INT,
    "presence_penalty" => F32, "seed" => INT, "stop" => Any, "stream" => Bool,
    "stream_options" => Nested(&nested::STREAM_OPTIONS_SHAPE), "temperature" => F32,
    "top_p" => F32, "suffix" => Str, "logprobs" => INT, "_debug_render_only" => Bool,
]);
route!(OA_EMBEDDINGS, Embed, OpenAi, "openai", "EmbedRequest", 1, [
    "model" => Str, "input" => Any, "dimensions" => INT, "encoding_format" => Text,
]);

/// Classifies a request by method and path (query ignored); the path is
/// the one gin matches on, decoded by [`crate::gin_path::go_path`].
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
                Endpoint::Local(LocalRead::OpenAiModel(seg.to_string()))
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
    /// Asked for as a cloud model (`:cloud`, a `-cloud` tag): any Ollama
    /// server forwards it to ollama.com, so it needs no holder.
    pub cloud: bool,
}

impl BodyRoute {
    /// The model Ollama would use, from the scan outcome, or the error
    /// Ollama would answer.
    pub fn model(&self, scanned: Result<Fields, ScanError>) -> Result<RequestedModel, LbError> {
        let fields = scanned.map_err(|e| match e.go_message(self.pkg, self.strukt) {
            Some(m) => LbError::Json(m),
            None => LbError::MissingBody,
        })?;
        self.checks(&fields)?;
        let value = fields
            .iter()
            .take(self.fields.len())
            .flatten()
            .find(|v| !v.is_empty)
            .cloned();
        let verbatim = value
            .as_ref()
            .map(|v| v.verbatim.clone())
            .unwrap_or_default();
        let parsed = match value.and_then(|v| v.trimmed) {
            // Copy names models on disk; the others read a reference with
            // `:local` / `:cloud` (Ollama's modelref).
            Some(trimmed) if self.op == Op::Copy => {
                ModelName::parse(&trimmed).map(|n| (n, Source::Unspecified))
            }
            Some(trimmed) => ModelName::parse_ref(&trimmed),
            None if verbatim.is_empty() => Err(NameError::Empty),
            None => Err(NameError::Invalid),
        };
        let (name, source) = parsed.map_err(|e| self.name_error(e, verbatim.clone()))?;
        self.input_error(&fields)?;
        self.destination_error(&fields)?;
        Ok(RequestedModel {
            verbatim,
            key: name.key(),
            name,
            cloud: source == Source::Cloud,
        })
    }

    /// CopyHandler checks the destination's name before it looks for the
    /// source.
    fn destination_error(&self, fields: &Fields) -> Result<(), LbError> {
        if self.op != Op::Copy || fields.len() != self.names.len() {
            return Ok(());
        }
        let i = self.names.iter().position(|n| *n == "destination");
        let value = i.and_then(|i| fields.get(i)).cloned().flatten();
        let destination = value.map(|v| v.verbatim).unwrap_or_default();
        match ModelName::parse(&destination) {
            Ok(_) => Ok(()),
            Err(_) => Err(LbError::InvalidField {
                field: "destination",
                value: destination,
            }),
        }
    }

    /// EmbedHandler's `input` check, after the name and before the lookup:
    /// anything but a string, an array or null is `invalid input type`.
    fn input_error(&self, fields: &Fields) -> Result<(), LbError> {
        if self.op != Op::Embed || fields.len() != self.names.len() {
            return Ok(());
        }
        let input = self.names.iter().position(|n| *n == "input");
        match input.and_then(|i| fields.get(i)).cloned().flatten() {
            Some(v) if matches!(v.kind, "number" | "bool" | "object") => {
                Err(LbError::InvalidInputType)
            }
            _ => Ok(()),
        }
    }

    /// Ollama's checks between decoding and the model lookup that the
    /// scan can answer: the OpenAI middleware's `messages` and `input`.
    /// (Embed's `input` type comes after the name check, in
    /// [`BodyRoute::input_error`].)
    fn checks(&self, fields: &Fields) -> Result<(), LbError> {
        if fields.len() != self.names.len() {
            // Scanned for the model fields only (`BodyScanner::new`).
            return Ok(());
        }
        let field = |name: &str| {
            let i = self.names.iter().position(|n| *n == name)?;
            fields.get(i).cloned().flatten()
        };
        let empty = |name: &str| {
            field(name).is_none_or(|v| v.kind == "null" || (v.kind == "array" && v.is_empty))
        };
        let format = field("encoding_format")
            .map(|v| v.verbatim)
            .unwrap_or_default();
        let known_format = ["", "float", "base64"]
            .iter()
            .any(|f| format.eq_ignore_ascii_case(f));
        let top_logprobs = field("top_logprobs")
            .and_then(|v| v.verbatim.parse::<i64>().ok())
            .unwrap_or(0);
        match (self.api, self.op) {
            (Api::OpenAi, Op::Embed) if !known_format => Err(LbError::Middleware(format!(
                "Invalid value for 'encoding_format' = {format}. Supported values: ['float', 'base64']."
            ))),
            (Api::OpenAi, Op::Chat) if empty("messages") => {
                Err(LbError::Middleware("[] is too short - 'messages'".into()))
            }
            (Api::OpenAi, Op::Chat) if field("messages").is_some_and(|v| v.note.is_some()) => {
                let note = field("messages").and_then(|v| v.note).unwrap_or_default();
                Err(LbError::Middleware(note))
            }
            // Generate's and chat's first check after decoding.
            (_, Op::Generate | Op::Chat) if !(0..=20).contains(&top_logprobs) => {
                Err(LbError::TopLogprobs)
            }
            (Api::OpenAi, Op::Embed) if empty("input") => {
                Err(LbError::Middleware("invalid input".into()))
            }
            _ => Ok(()),
        }
    }

    fn name_error(&self, e: NameError, verbatim: String) -> LbError {
        match (self.op, e) {
            (Op::Delete, NameError::Empty) => LbError::ModelRequired,
            (_, e @ NameError::ConflictingSource(_)) => LbError::NameConflict(e.to_string()),
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
            // EmbedHandler and EmbeddingsHandler fail in `getModel`, which
            // `handleScheduleError` words this way (also behind /v1).
            Op::Embed | Op::Embeddings => LbError::ModelNotFoundPull(model.verbatim.clone()),
            _ => LbError::ModelNotFound(model.verbatim.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body_scan::BodyScanner;

    fn model_of(method: &str, path: &str, body: &str) -> Result<String, (u32, String)> {
        let Endpoint::Body(route) = classify(method, path) else {
            panic!("{path} is not a body route")
        };
        let mut s = BodyScanner::for_route(route);
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
            classify("GET", &crate::gin_path::go_path("/v1/models/llama3%3A8b")),
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
            model_of("POST", "/api/chat", r#"{"model":"llama3:local"}"#),
            key,
            ":local names the local model"
        );
        assert_eq!(
            model_of("POST", "/api/generate", r#"{"model":"gpt-oss:120b:cloud"}"#),
            model_of("POST", "/api/generate", r#"{"model":"gpt-oss:120b-cloud"}"#),
            "a cloud reference finds the entry the cloud model is listed under"
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
            ("/v1/chat/completions", r#"{"messages":[{"content":"hi"}]}"#, 400, "model is required"),
            ("/v1/chat/completions", r#"{"messages":[{}]}"#, 400, "invalid message content type: <nil>"),
            ("/api/chat", r#"{"model":1,"messages":[null,{"role":[]}]}"#, 400, "json: cannot unmarshal array into Go struct field ChatRequest.messages.role of type string"),
            // The OpenAI middleware's own checks come before the handler's.
            ("/v1/chat/completions", "{}", 400, "[] is too short - 'messages'"),
            ("/v1/chat/completions", r#"{"model":"x","messages":[]}"#, 400, "[] is too short - 'messages'"),
            ("/v1/chat/completions", r#"{"model":"x","messages":null}"#, 400, "[] is too short - 'messages'"),
            ("/v1/embeddings", r#"{"model":"x"}"#, 400, "invalid input"),
            ("/v1/embeddings", r#"{"model":"x","input":[]}"#, 400, "invalid input"),
            ("/v1/embeddings", r#"{"model":"x","input":{}}"#, 400, "invalid input type"),
            ("/api/embed", r#"{"model":"x","input":5}"#, 400, "invalid input type"),
            ("/api/embed", r#"{"model":"a b","input":5}"#, 400, "invalid model name"),
            // Every field's kind is checked, the first error in document order.
            ("/api/generate", r#"{"stream":"no","model":1}"#, 400, "json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool"),
            ("/api/generate", r#"{"model":"x","options":[]}"#, 400, "json: cannot unmarshal array into Go struct field GenerateRequest.options of type map[string]interface {}"),
            ("/api/generate", r#"{"model":"x","top_logprobs":"1"}"#, 400, "json: cannot unmarshal string into Go struct field GenerateRequest.top_logprobs of type int"),
            ("/api/chat", r#"{"model":"x","messages":{}}"#, 400, "json: cannot unmarshal object into Go struct field ChatRequest.messages of type []api.Message"),
            ("/api/chat", r#"{"model":1,"think":5}"#, 400, r#"think must be a boolean or string ("high", "medium", "low", "max", true, or false)"#),
            ("/v1/chat/completions", r#"{"model":"x","messages":[{}],"stream_options":true}"#, 400, "json: cannot unmarshal bool into Go struct field ChatCompletionRequest.stream_options of type openai.StreamOptions"),
            ("/v1/completions", r#"{"model":"x","temperature":"hot"}"#, 400, "json: cannot unmarshal string into Go struct field CompletionRequest.temperature of type float32"),
            ("/api/generate", r#"{"model":"x","top_logprobs":1.5}"#, 400, "json: cannot unmarshal number 1.5 into Go struct field GenerateRequest.top_logprobs of type int"),
            ("/v1/completions", r#"{"model":"x","top_p":-1e39}"#, 400, "json: cannot unmarshal number -1e39 into Go struct field CompletionRequest.top_p of type float32"),
            ("/api/chat", r#"{"model":1,"think":"extreme"}"#, 400, r#"invalid think value: "extreme" (must be "high", "medium", "low", "max", true, or false)"#),
            ("/v1/embeddings", r#"{"model":"x","encoding_format":"int8"}"#, 400, "Invalid value for 'encoding_format' = int8. Supported values: ['float', 'base64']."),
            ("/v1/chat/completions", r#"{"model":"x","messages":[{"content":"hi"}],"top_logprobs":21}"#, 400, "top_logprobs must be between 0 and 20"),
            ("/api/generate", r#"{"model":"x","keep_alive":"1"}"#, 400, r#"time: missing unit in duration "1""#),
            ("/api/generate", r#"{"model":1,"keep_alive":[]}"#, 400, "Unsupported type: '[]interface {}'"),
            // Ollama's source suffixes.
            ("/api/chat", r#"{"model":"x:local:cloud"}"#, 400, r#"use either :local or :cloud, not both: "x:local:cloud""#),
            ("/api/embed", r#"{"model":"a b"}"#, 400, "invalid model name"),
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
            Err((400, "model is required".into())),
            "DeleteHandler: modelref's ErrModelRequired"
        );
        assert_eq!(
            model_of("DELETE", "/api/delete", r#"{"name":"a b"}"#),
            Err((400, r#"name "a b" is invalid"#.into()))
        );
        assert_eq!(
            model_of("POST", "/api/copy", r#"{"source":"x","destination":"a b"}"#),
            Err((400, r#"destination "a b" is invalid"#.into())),
            "checked before the source is looked up"
        );
    }
}
