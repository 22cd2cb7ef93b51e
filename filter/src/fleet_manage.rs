//! Management requests the whole fleet carries out: which requests go to
//! syncd's fleet API instead of one instance (unless `x-ollama-instance`
//! pins one). Pull, delete, copy, create and blob checks and uploads are
//! known from the method and path; the unload idiom (`/api/generate` with
//! no prompt, `/api/chat` with no messages, and `keep_alive` 0) from a
//! small body read whole.

use serde_json::Value;

/// Largest generate or chat body read whole to look for the unload idiom
/// (an unload is a few dozen bytes; larger bodies are routed as soon as
/// the model is found).
pub const UNLOAD_BODY_MAX: u64 = 64 * 1024;

/// Whether `method path` (query ignored) is a management request syncd
/// carries out on the fleet.
pub fn is_fleet_request(method: &str, path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    match (method, path) {
        ("POST", "/api/pull" | "/api/copy" | "/api/create") => true,
        ("DELETE", "/api/delete") => true,
        ("HEAD" | "POST", p) => p
            .strip_prefix("/api/blobs/")
            .is_some_and(|d| !d.is_empty() && !d.contains('/')),
        _ => false,
    }
}

/// Whether a generate (`chat` false) or chat body is Ollama's unload
/// idiom: `keep_alive` given and zero, and no prompt (generate) or no
/// messages (chat). Bodies that are not a JSON object are not.
pub fn is_unload(body: &[u8], chat: bool) -> bool {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let nothing_to_answer = if chat {
        match fields.get("messages") {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        }
    } else {
        match fields.get("prompt") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        }
    };
    nothing_to_answer && fields.get("keep_alive").is_some_and(is_zero_duration)
}

/// Ollama's `keep_alive` is zero: the number 0 (seconds), or a Go
/// duration string of zero length such as `"0"`, `"0s"`, `"0m"`.
fn is_zero_duration(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => {
            let s = s.trim_start_matches(['+', '-']);
            if s == "0" {
                return true;
            }
            let digits = s.trim_end_matches(|c: char| c.is_alphabetic() || c == 'µ');
            let unit = &s[digits.len()..];
            matches!(unit, "ns" | "us" | "µs" | "ms" | "s" | "m" | "h")
                && !digits.is_empty()
                && digits.parse::<f64>().is_ok_and(|d| d == 0.0)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_requests_by_method_and_path() {
        let digest = format!("/api/blobs/sha256:{}", "a".repeat(64));
        let yes = [
            ("POST", "/api/pull"),
            ("POST", "/api/pull?x=1"),
            ("DELETE", "/api/delete"),
            ("POST", "/api/copy"),
            ("POST", "/api/create"),
            ("HEAD", digest.as_str()),
            ("POST", digest.as_str()),
        ];
        for (m, p) in yes {
            assert!(is_fleet_request(m, p), "{m} {p}");
        }
        let no = [
            ("GET", "/api/pull"),
            ("POST", "/api/push"),
            ("POST", "/api/generate"),
            ("POST", "/api/delete"),
            ("GET", digest.as_str()),
            ("POST", "/api/blobs/"),
            ("POST", "/api/blobs/a/b"),
        ];
        for (m, p) in no {
            assert!(!is_fleet_request(m, p), "{m} {p}");
        }
    }

    #[test]
    fn the_unload_idiom_and_its_neighbours() {
        let cases: [(&str, bool, bool); 14] = [
            (r#"{"model":"m","keep_alive":0}"#, false, true),
            (r#"{"model":"m","keep_alive":"0"}"#, false, true),
            (
                r#"{"model":"m","keep_alive":"0s","prompt":""}"#,
                false,
                true,
            ),
            (
                r#"{"model":"m","keep_alive":0.0,"prompt":null}"#,
                false,
                true,
            ),
            (
                r#"{"model":"m","keep_alive":"0m","messages":[]}"#,
                true,
                true,
            ),
            (r#"{"model":"m","keep_alive":0}"#, true, true),
            (r#"{"model":"m"}"#, false, false),
            (r#"{"model":"m","keep_alive":-1}"#, false, false),
            (r#"{"model":"m","keep_alive":"5m"}"#, false, false),
            (
                r#"{"model":"m","keep_alive":0,"prompt":"hi"}"#,
                false,
                false,
            ),
            (
                r#"{"model":"m","keep_alive":0,"messages":[{"role":"user","content":"hi"}]}"#,
                true,
                false,
            ),
            (r#"{"model":"m","keep_alive":"0x"}"#, false, false),
            (r#"{"model":"m","keep_alive":null}"#, false, false),
            (r#"[1]"#, false, false),
        ];
        for (body, chat, want) in cases {
            assert_eq!(is_unload(body.as_bytes(), chat), want, "{body} chat={chat}");
        }
    }
}
