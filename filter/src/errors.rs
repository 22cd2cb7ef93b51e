//! Every answer the filter gives itself instead of an instance, with the
//! status and text Ollama would use, in the native or the OpenAI form.

use serde_json::json;

/// The two error shapes of Ollama's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `{"error":"..."}`
    Native,
    /// `{"error":{"message","type","param":null,"code":null}}` under `/v1`.
    OpenAi,
}

/// A request the filter answers with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbError {
    /// Empty body; Ollama says `missing request body` natively and the
    /// OpenAI middleware passes through `EOF`.
    MissingBody,
    /// JSON that Go's decoder rejects, with Go's text.
    Json(String),
    /// 400 `model is required`.
    ModelRequired,
    /// 400 `invalid model name`.
    InvalidModelName,
    /// 400 `<field> "<value>" is invalid` (delete, copy).
    InvalidField { field: &'static str, value: String },
    /// 404 `model '<x>' not found`.
    ModelNotFound(String),
    /// 404 `model "<x>" not found` (copy).
    ModelNotFoundQuoted(String),
    /// `model "x" not found, try pulling it first` (embed routes).
    ModelNotFoundPull(String),
    /// Both `:local` and `:cloud`: Ollama's modelref text, as is.
    NameConflict(String),
    /// A check of the OpenAI middleware after decoding (`messages`,
    /// `input`), with its text.
    Middleware(String),
    /// Embed's `input` is neither a string nor an array.
    InvalidInputType,
    /// Generate's and chat's range check on `top_logprobs`.
    TopLogprobs,
    /// 503: holders exist but none is healthy.
    ModelUnavailable(String),
    /// 503: no healthy instance at all.
    NoHealthyInstance,
    /// 503: no map from syncd yet.
    NoMap,
    /// 400: `x-ollama-instance` names no instance.
    UnknownInstance { name: String, known: Vec<String> },
    /// 413: body larger than `max_body_bytes`.
    TooLarge(u64),
}

/// Header that pins a request to one instance by name.
pub const INSTANCE_HEADER: &str = "x-ollama-instance";

impl LbError {
    /// The outcome this error is counted as
    /// (`ollama_lb.outcome.<outcome>` in the filter's stats).
    pub fn outcome(&self) -> &'static str {
        match self {
            LbError::NoMap => "no_map",
            LbError::TooLarge(_) => "too_large",
            _ => match self.status() {
                404 => "not_found",
                503 => "unavailable",
                _ => "bad_request",
            },
        }
    }

    /// HTTP status of the answer.
    pub fn status(&self) -> u32 {
        match self {
            LbError::ModelNotFound(_)
            | LbError::ModelNotFoundQuoted(_)
            | LbError::ModelNotFoundPull(_) => 404,
            LbError::ModelUnavailable(_) | LbError::NoHealthyInstance | LbError::NoMap => 503,
            LbError::TooLarge(_) => 413,
            _ => 400,
        }
    }

    /// The message text, in Ollama's words where Ollama has them.
    pub fn message(&self, api: Api) -> String {
        match self {
            LbError::MissingBody if api == Api::OpenAi => "EOF".into(),
            LbError::MissingBody => "missing request body".into(),
            LbError::Json(m) | LbError::NameConflict(m) | LbError::Middleware(m) => m.clone(),
            LbError::InvalidInputType => "invalid input type".into(),
            LbError::TopLogprobs => "top_logprobs must be between 0 and 20".into(),
            LbError::ModelRequired => "model is required".into(),
            LbError::InvalidModelName => "invalid model name".into(),
            LbError::InvalidField { field, value } => format!("{field} {} is invalid", go_quote(value)),
            LbError::ModelNotFound(m) => format!("model '{m}' not found"),
            LbError::ModelNotFoundQuoted(m) => format!("model {} not found", go_quote(m)),
            LbError::ModelNotFoundPull(m) => {
                format!("model {} not found, try pulling it first", go_quote(m))
            }
            LbError::ModelUnavailable(m) => {
                format!("model '{m}' is not available: every instance holding it is down")
            }
            LbError::NoHealthyInstance => {
                "no Ollama instance is available: every instance behind ollama-lb is down".into()
            }
            LbError::NoMap => "model map not ready yet: ollama-lb has not received the fleet's model map from syncd".into(),
            LbError::UnknownInstance { name, known } => format!(
                "unknown instance {} in {INSTANCE_HEADER}; known instances: {}",
                go_quote(name),
                known.join(", ")
            ),
            LbError::TooLarge(max) => {
                format!("request body too large: ollama-lb reads at most {max} bytes to find the model")
            }
        }
    }

    /// The JSON body in the shape of `api`.
    /// Whether Ollama's OpenAI middleware gives this error itself (gin's
    /// `c.JSON`); the others come from the handler behind it, re-encoded
    /// by the middleware's writer (a bare `application/json` and a
    /// trailing newline). The balancer's own errors take the second form.
    pub fn from_openai_middleware(&self) -> bool {
        matches!(
            self,
            LbError::MissingBody | LbError::Json(_) | LbError::Middleware(_)
        )
    }

    pub fn body(&self, api: Api) -> String {
        error_body(self.status(), &self.message(api), api)
    }
}

/// An error body with `message` in the shape of `api` for `status`.
pub fn error_body(status: u32, message: &str, api: Api) -> String {
    let value = match api {
        Api::Native => json!({ "error": message }),
        Api::OpenAi => {
            let kind = match status {
                400 => "invalid_request_error",
                404 => "not_found_error",
                _ => "api_error",
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
        }
    };
    go_json(&value)
}

/// `v` as Go's `json.Marshal` writes it: keys in the order they were put
/// in (serde_json's `preserve_order`: declaration order for our literals,
/// the instance's order for what it sent) and `<`, `>`, `&`, U+2028,
/// U+2029 escaped as gin's `c.JSON` does. Those characters only occur
/// inside strings, so escaping the serialised text is exact.
pub fn go_json(v: &serde_json::Value) -> String {
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

/// Go's `%q` for a string: `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            other => push_go_escaped(&mut out, other),
        }
    }
    out.push('"');
    out
}

/// Appends `c` as `strconv.Quote` writes it inside quotes (quote marks are
/// the caller's business).
pub(crate) fn push_go_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if is_go_printable(c) => out.push(c),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// An approximation of Go's `strconv.IsPrint`, exact for Latin-1 (the only
/// range the JSON error texts can contain).
fn is_go_printable(c: char) -> bool {
    match c as u32 {
        0x20..=0x7e => true,
        0x7f..=0xa0 | 0xad => false,
        0xa1..=0xff => true,
        _ => !c.is_control() && !c.is_whitespace() && c != '\u{fffe}' && c != '\u{ffff}',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_name_what_happened() {
        for (e, want) in [
            (LbError::NoMap, "no_map"),
            (LbError::TooLarge(1), "too_large"),
            (LbError::ModelNotFound("x".into()), "not_found"),
            (LbError::ModelNotFoundPull("x".into()), "not_found"),
            (LbError::ModelUnavailable("x".into()), "unavailable"),
            (LbError::NoHealthyInstance, "unavailable"),
            (LbError::ModelRequired, "bad_request"),
            (LbError::Json("unexpected EOF".into()), "bad_request"),
        ] {
            assert_eq!(e.outcome(), want, "{e:?}");
        }
    }

    #[test]
    fn native_and_openai_shapes() {
        let e = LbError::ModelNotFound("x".into());
        assert_eq!(e.body(Api::Native), r#"{"error":"model 'x' not found"}"#);
        let v: serde_json::Value = serde_json::from_str(&e.body(Api::OpenAi)).unwrap();
        assert_eq!(
            v,
            json!({"error":{"message":"model 'x' not found","type":"not_found_error","param":null,"code":null}})
        );
        let v: serde_json::Value = serde_json::from_str(&LbError::NoMap.body(Api::OpenAi)).unwrap();
        assert_eq!(v["error"]["type"], "api_error");
        assert_eq!(LbError::ModelRequired.status(), 400);
        assert_eq!(LbError::MissingBody.message(Api::OpenAi), "EOF");
    }

    #[test]
    fn go_quoting() {
        assert_eq!(
            go_quote("a\"b\\c\n\x01é\u{80}"),
            r#""a\"b\\c\n\x01é\u0080""#
        );
        let e = LbError::InvalidField {
            field: "name",
            value: "x y".into(),
        };
        assert_eq!(e.message(Api::Native), r#"name "x y" is invalid"#);
    }
}
