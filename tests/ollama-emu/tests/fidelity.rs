//! The emulator against Ollama's source, byte for byte: malformed bodies
//! on every body route (Go's `encoding/json` texts, Ollama's own checks),
//! gin's path rules, CORS, and Go's field order and escaping. Each
//! expected text is read from Ollama v0.33.0-rc2 and Go's encoding/json;
//! see the reference table in `tests/ollama-emu/README.md`.

mod common;

use common::{config, start};
use serde_json::{json, Value};

/// (route, body, status, message). `/v1/*` answers carry the message in
/// the OpenAI error object.
const MALFORMED: &[(&str, &[u8], u16, &str)] = &[
    ("/api/generate", b"", 400, "missing request body"),
    ("/api/generate", b"\xef\xbb\xbf{}", 400, "invalid character '\u{ef}' looking for beginning of value"),
    ("/api/generate", b"{\"model\":tru}", 400, "invalid character '}' in literal true (expecting 'e')"),
    ("/api/generate", b"{\"model\":01}", 400, "invalid character '1' after object key:value pair"),
    ("/api/generate", b"{\"model\":\"m\",\"options\":{\"t\":1.}}", 400, "invalid character '}' after decimal point in numeric literal"),
    ("/api/generate", b"{\"model\":\"m\",\"prompt\":\"\\q\"}", 400, "invalid character 'q' in string escape code"),
    ("/api/generate", b"{\"model\":\"nope\",\"options\":{\"t\":1e400}}", 400, "json: cannot unmarshal number 1e400 into Go struct field GenerateRequest.options of type float64"),
    ("/api/generate", b"{\"model\":\"nope\",\"top_logprobs\":1.5}", 400, "json: cannot unmarshal number 1.5 into Go struct field GenerateRequest.top_logprobs of type int"),
    ("/api/generate", b"{\"model\":\"nope\",\"context\":[1,\"a\"]}", 400, "json: cannot unmarshal string into Go struct field GenerateRequest.context of type int"),
    ("/api/generate", b"{\"model\":\"nope\",\"think\":\"extreme\"}", 400, "invalid think value: \"extreme\" (must be \"high\", \"medium\", \"low\", \"max\", true, or false)"),
    ("/api/generate", b"{\"model\":\"nope\",\"think\":1}", 400, "think must be a boolean or string (\"high\", \"medium\", \"low\", \"max\", true, or false)"),
    ("/api/generate", b"[]", 400, "json: cannot unmarshal array into Go value of type api.GenerateRequest"),
    ("/api/generate", b"{\"model\":\"nope\",\"prompt\":\"x\"} trailing", 404, "model 'nope' not found"),
    ("/api/chat", b"{\"model\":\"nope\",\"messages\":[{\"role\":1}]}", 400, "json: cannot unmarshal number into Go struct field ChatRequest.messages.role of type string"),
    ("/api/chat", b"{\"model\":\"nope\",\"messages\":[\"hi\"]}", 400, "json: cannot unmarshal string into Go struct field ChatRequest.messages of type api.Alias"),
    ("/api/chat", b"{\"model\":\"nope\",\"messages\":{}}", 400, "json: cannot unmarshal object into Go struct field ChatRequest.messages of type []api.Message"),
    ("/api/chat", b"{\"model\":\"nope\",\"stream\":\"no\"}", 400, "json: cannot unmarshal string into Go struct field ChatRequest.stream of type bool"),
    ("/api/embed", b"{\"model\":\"nope\",\"input\":\"x\"}", 404, "model \"nope\" not found, try pulling it first"),
    ("/api/embed", b"{\"model\":\"nope\",\"dimensions\":\"8\"}", 400, "json: cannot unmarshal string into Go struct field EmbedRequest.dimensions of type int"),
    ("/api/embeddings", b"{\"model\":\"nope\",\"prompt\":\"x\"}", 404, "model \"nope\" not found, try pulling it first"),
    ("/api/show", b"{\"model\":5}", 400, "json: cannot unmarshal number into Go struct field ShowRequest.model of type string"),
    ("/v1/chat/completions", b"", 400, "EOF"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[]}", 400, "[] is too short - 'messages'"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "invalid message content type: float64"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", 400, "invalid message format"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":5}]}", 400, "json: cannot unmarshal number into Go struct field Message.messages.role of type string"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream_options\":true}", 400, "json: cannot unmarshal bool into Go struct field ChatCompletionRequest.stream_options of type openai.StreamOptions"),
    ("/v1/completions", b"{\"model\":\"nope\",\"stream_options\":{\"include_usage\":\"yes\"}}", 400, "json: cannot unmarshal string into Go struct field StreamOptions.stream_options.include_usage of type bool"),
    ("/v1/embeddings", b"{\"model\":\"nope\"}", 400, "invalid input"),
    ("/v1/embeddings", b"{\"model\":\"nope\",\"input\":[]}", 400, "invalid input"),
    ("/v1/embeddings", b"{\"model\":\"nope\",\"input\":\"x\",\"encoding_format\":\"int8\"}", 400, "Invalid value for 'encoding_format' = int8. Supported values: ['float', 'base64']."),
];

/// The bytes Ollama sends for an error: gin's `c.JSON` (native, and the
/// OpenAI middleware's own 400s) or the OpenAI writer's re-encoding
/// (errors from the handler, with a newline and a bare content type).
fn expected(route: &str, status: u16, message: &str) -> (String, &'static str) {
    let go = |v: Value| {
        v.to_string()
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
    };
    if !route.starts_with("/v1/") {
        return (
            go(json!({"error": message})),
            "application/json; charset=utf-8",
        );
    }
    let kind = match status {
        400 => "invalid_request_error",
        404 => "not_found_error",
        _ => "api_error",
    };
    let body =
        go(json!({"error": {"message": message, "type": kind, "param": null, "code": null}}));
    // Only 404s in this table come from the handler.
    if status == 404 {
        (format!("{body}\n"), "application/json")
    } else {
        (body, "application/json; charset=utf-8")
    }
}

#[tokio::test]
async fn malformed_bodies_get_ollamas_status_and_text() {
    let emu = start(config(&["llama3"])).await;
    let mut failures = Vec::new();
    for (route, body, status, message) in MALFORMED {
        let resp = emu
            .http
            .post(format!("{}{route}", emu.url))
            .body(body.to_vec())
            .send()
            .await
            .expect("request sent");
        let got_status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp.text().await.expect("body");
        let (want_body, want_ct) = expected(route, *status, message);
        if got_status != *status || text != want_body || ct != want_ct {
            failures.push(format!(
                "{route} {}: got {got_status} {ct} {text:?}, want {status} {want_ct} {want_body:?}",
                String::from_utf8_lossy(body)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn depth_limit_and_invalid_utf8_are_gos() {
    let emu = start(config(&["llama3"])).await;
    let deep = "[".repeat(10_001);
    let r = emu
        .http
        .post(format!("{}/api/generate", emu.url))
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":"invalid character '[' exceeded max depth"}"#
    );
    // Invalid UTF-8 in a string is replaced, not rejected; the echo shows it.
    let body = b"{\"model\":\"llama3\",\"prompt\":\"\",\"system\":\"a\xffb\"}".to_vec();
    let r = emu
        .http
        .post(format!("{}/api/generate", emu.url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // In a model name the replacement character makes the name invalid.
    let body = b"{\"model\":\"no\xffpe\"}".to_vec();
    let r = emu
        .http
        .post(format!("{}/api/generate", emu.url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), r#"{"error":"invalid model name"}"#);
}

#[tokio::test]
async fn gin_path_rules_head_and_cors() {
    let emu = start(config(&["llama3"])).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |p: &str| format!("{}{p}", emu.url);

    let r = http.get(url("/api/tags/")).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "/api/tags");
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        r.text().await.unwrap(),
        "<a href=\"/api/tags\">Moved Permanently</a>.\n\n"
    );
    let r = http
        .post(url("/api/chat/"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], "/api/chat");
    assert_eq!(r.text().await.unwrap(), "");

    let r = http.get(url("/api/%74ags")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the path is matched percent-decoded");
    let r = http.get(url("/v1/models/a%2Fb")).send().await.unwrap();
    assert_eq!(
        r.status(),
        404,
        "an escaped slash splits the segment, as in Go"
    );
    assert_eq!(r.text().await.unwrap(), "404 page not found");

    for (path, status) in [
        ("/api/ps", 405),
        ("/v1/models", 405),
        ("/api/tags", 200),
        ("/", 200),
        ("/api/version", 200),
    ] {
        let r = http.head(url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "HEAD {path}");
    }

    let r = http
        .request(reqwest::Method::OPTIONS, url("/api/chat"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_eq!(
        r.headers()["access-control-allow-methods"],
        "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
    );
    let r = http
        .get(url("/api/tags"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_eq!(r.headers()["vary"], "Origin");
    let r = http
        .get(url("/api/tags"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), "");
}

/// The keys of each object in `text`, in the order written.
fn key_order(text: &str, keys: &[&str]) -> bool {
    let positions: Vec<usize> = keys
        .iter()
        .filter_map(|k| text.find(&format!("\"{k}\":")))
        .collect();
    positions.len() == keys.len() && positions.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test]
async fn answers_keep_go_field_order() {
    let emu = start(config(&["llama3"])).await;
    emu.control("/_emu/load", json!({"name": "llama3"})).await;
    let tags = emu.get("/api/tags").await.text().await.unwrap();
    assert!(
        key_order(
            &tags,
            &[
                "name",
                "model",
                "modified_at",
                "size",
                "digest",
                "details",
                "capabilities"
            ]
        ),
        "{tags}"
    );
    assert!(
        key_order(
            &tags,
            &[
                "parent_model",
                "format",
                "family",
                "families",
                "parameter_size",
                "quantization_level"
            ]
        ),
        "{tags}"
    );
    let ps = emu.get("/api/ps").await.text().await.unwrap();
    assert!(
        key_order(
            &ps,
            &[
                "name",
                "model",
                "size",
                "digest",
                "details",
                "expires_at",
                "size_vram",
                "context_length"
            ]
        ),
        "{ps}"
    );
    let r = emu.get("/v1/models").await;
    assert_eq!(r.headers()["content-type"], "application/json");
    let models = r.text().await.unwrap();
    assert!(
        models.starts_with("{\"object\":\"list\",\"data\":[{\"id\":"),
        "{models}"
    );
    let entry = models.split_once("\"data\":[").map_or("", |(_, e)| e);
    assert!(
        key_order(entry, &["id", "object", "created", "owned_by"]),
        "{models}"
    );
    assert!(models.ends_with("}\n"), "json.Encoder ends with a newline");
    let (_, body) = emu
        .call(
            "/api/generate",
            json!({"model": "llama3", "prompt": "hi", "stream": false}),
        )
        .await;
    let text = body.to_string();
    assert!(
        key_order(
            &text,
            &["model", "created_at", "response", "done", "done_reason"]
        ),
        "{text}"
    );
}

#[test]
fn embedding_flag_adds_an_embedding_model() {
    use clap::Parser;
    let cli = ollama_emu::cli::Cli::parse_from([
        "ollama-emu",
        "--model",
        "llama3",
        "--embedding",
        "bert",
    ]);
    let c = ollama_emu::cli::build_config(cli).expect("valid flags");
    let bert = c
        .models
        .iter()
        .find(|m| m.name == "bert")
        .expect("bert is on disk");
    assert!(bert.embedding);
}
