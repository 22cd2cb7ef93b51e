//! The emulator against Ollama's source, byte for byte: malformed bodies
//! on every body route (Go's `encoding/json` texts, Ollama's own checks),
//! gin's path rules, CORS, and Go's field order and escaping. Each
//! expected text is read from Ollama v0.33.0-rc2 and Go's encoding/json;
//! see the reference table in `tests/ollama-emu/README.md`.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{config, start};
use serde_json::{json, Value};

include!("common/malformed.rs");

#[tokio::test]
async fn malformed_bodies_get_ollamas_status_and_text() {
    let emu = start(config(&["llama3"])).await;
    let mut failures = Vec::new();
    for (route, body, status, message) in MALFORMED {
        let (method, path) = method_path(route);
        let resp = emu
            .http
            .request(method, format!("{}{path}", emu.url))
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

/// `OLLAMA_ORIGINS` adds origins (wildcards included) to the defaults;
/// `*` answers `*` without `Vary`; browser extensions need an entry; an
/// `OPTIONS` without `Origin` for a local host name is `204` from the Host
/// check, for a loopback IP it reaches gin (405).
#[tokio::test]
async fn ollama_origins_and_the_host_check_on_options() {
    let emu = start(ollama_emu::Config {
        origins: Some("https://*.corp.example,chrome-extension://*".into()),
        ..config(&["llama3"])
    })
    .await;
    let get = |origin: &'static str| {
        emu.http
            .get(format!("{}/api/tags", emu.url))
            .header("origin", origin)
            .send()
    };
    for (origin, status) in [
        ("https://wiki.corp.example", 200),
        ("chrome-extension://abc", 200),
        ("http://localhost:8080", 200),
        ("https://corp.example.evil", 403),
        ("moz-extension://abc", 403),
    ] {
        let r = get(origin).await.expect("sent");
        assert_eq!(r.status().as_u16(), status, "{origin}");
    }
    let all = start(ollama_emu::Config {
        origins: Some("*".into()),
        ..config(&["llama3"])
    })
    .await;
    let r = all
        .http
        .get(format!("{}/api/tags", all.url))
        .header("origin", "https://anything.example")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers().get("vary").is_none());

    let port = emu.handle.addr().port();
    let options = |host: String| {
        emu.http
            .request(reqwest::Method::OPTIONS, format!("{}/api/chat", emu.url))
            .header("host", host)
            .send()
    };
    let r = options(format!("localhost:{port}")).await.expect("sent");
    assert_eq!(r.status(), 204);
    let r = options(format!("127.0.0.1:{port}")).await.expect("sent");
    assert_eq!(r.status(), 405);
    let r = options("evil.example".into()).await.expect("sent");
    assert_eq!(r.status(), 403);
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
