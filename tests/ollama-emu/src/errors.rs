//! HTTP errors in Ollama's two shapes: native `{"error":"…"}` and the
//! OpenAI-compatible `{"error":{"message","type","param","code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::scheduler::SchedError;

/// The JSON content type Ollama (gin's `c.JSON`) sends.
pub const JSON_CT: &str = "application/json; charset=utf-8";

/// What the OpenAI middleware's writers set when they rewrite an answer
/// (`/v1/models`, and errors from the handler behind it).
pub const OPENAI_WRITER_CT: &str = "application/json";

/// `v` as Go's `json.Marshal` writes it (gin's `c.JSON`): fields in the
/// order they were inserted (the struct's declaration order), and `<`,
/// `>`, `&`, U+2028 and U+2029 escaped. Those characters only occur
/// inside strings, so escaping the serialised text is exact.
pub fn go_json(v: &Value) -> String {
    let text = v.to_string();
    if !text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// An error answer: status and Ollama's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// The same error in the `/v1` shape, as the handler behind the
    /// OpenAI middleware gives it.
    pub fn openai(self) -> OpenAiError {
        OpenAiError {
            error: self,
            from_middleware: false,
        }
    }

    /// The same error in the `/v1` shape, from the middleware's own checks
    /// (decoding, `messages`, `input`, `encoding_format`).
    pub fn openai_middleware(self) -> OpenAiError {
        OpenAiError {
            error: self,
            from_middleware: true,
        }
    }
}

impl From<SchedError> for ApiError {
    fn from(e: SchedError) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

/// A JSON response as gin's `c.JSON` writes it.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    json_text(status, go_json(body))
}

/// A JSON response as the OpenAI middleware's writers send it: Go's
/// `json.Encoder` (a newline after the value) and a bare content type.
pub fn openai_writer_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, format!("{}\n", go_json(body))).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(OPENAI_WRITER_CT),
    );
    resp
}

/// Already-serialised (or deliberately broken) JSON with Ollama's
/// content type.
pub fn json_text(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CT));
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &json!({ "error": self.message }))
    }
}

/// An [`ApiError`] rendered as the OpenAI middleware does: its own checks
/// answer with gin's `c.JSON`; errors from the handler go through the
/// writer's `writeError`, which re-encodes them with `json.Encoder`.
#[derive(Debug)]
pub struct OpenAiError {
    pub error: ApiError,
    pub from_middleware: bool,
}

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        e.openai()
    }
}

/// `openai.NewError`'s type for a status.
pub fn openai_error_body(status: StatusCode, message: &str) -> Value {
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        404 => "not_found_error",
        _ => "api_error",
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let status = self.error.status;
        let body = openai_error_body(status, &self.error.message);
        if self.from_middleware {
            json_response(status, &body)
        } else {
            openai_writer_response(status, &body)
        }
    }
}
