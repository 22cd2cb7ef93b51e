//! HTTP errors in Ollama's two shapes: native `{"error":"…"}` and the
//! OpenAI-compatible `{"error":{"message","type","param","code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::scheduler::SchedError;

/// The JSON content type Ollama (gin's `c.JSON`) sends.
pub const JSON_CT: &str = "application/json; charset=utf-8";

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

    /// The same error in the `/v1` shape.
    pub fn openai(self) -> OpenAiError {
        OpenAiError(self)
    }
}

impl From<SchedError> for ApiError {
    fn from(e: SchedError) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

/// A JSON response with Ollama's content type.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    json_text(status, body.to_string())
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

/// An [`ApiError`] rendered as the OpenAI middleware does.
#[derive(Debug)]
pub struct OpenAiError(pub ApiError);

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        OpenAiError(e)
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
        json_response(
            self.0.status,
            &openai_error_body(self.0.status, &self.0.message),
        )
    }
}
