//! Routes, shapes, name rules and error texts of the emulated API.

mod common;

use common::{config, gen, start};
use futures_util::StreamExt;
use serde_json::{json, Value};

#[tokio::test]
async fn any_spelling_finds_the_model_and_the_echo_is_verbatim() {
    let emu = start(config(&["llama3:latest"])).await;
    for spelling in [
        "LLAMA3",
        "library/llama3",
        "llama3:latest",
        "registry.ollama.ai/library/llama3:LATEST",
    ] {
        let (s, body) = emu.call("/api/show", json!({"model": spelling})).await;
        assert_eq!(s, 200, "{spelling}: {body}");
        let (s, body) = emu.call("/api/generate", gen(spelling)).await;
        assert_eq!(s, 200, "{spelling}: {body}");
        assert_eq!(body["model"], spelling);
    }
    let stats = emu.stats().await;
    assert_eq!(stats["requests_by_model"]["llama3:latest"], 8);
    assert_eq!(stats["requests_by_path"]["/api/generate"], 4);
}

#[tokio::test]
async fn error_texts_match_ollama() {
    let mut c = config(&["llama3"]);
    c.models.push(ollama_emu::ModelSpec {
        name: "bert".into(),
        embedding: true,
        ..Default::default()
    });
    let emu = start(c).await;
    let cases: &[(&str, &str, u16, &str)] = &[
        ("/api/generate", "", 400, "missing request body"),
        ("/api/generate", "x", 400, "invalid character 'x' looking for beginning of value"),
        ("/api/generate", "{\"model\":", 400, "unexpected EOF"),
        (
            "/api/generate",
            "{\"model\":1}",
            400,
            "json: cannot unmarshal number into Go struct field GenerateRequest.model of type string",
        ),
        (
            "/api/chat",
            "{\"model\":\"llama3\",\"stream\":\"no\"}",
            400,
            "json: cannot unmarshal string into Go struct field ChatRequest.stream of type bool",
        ),
        ("/api/generate", "{\"model\":\"\"}", 404, "model '' not found"),
        ("/api/embed", "{\"model\":\"\"}", 404, "model '' not found"),
        ("/api/chat", "{\"model\":\"\"}", 400, "model is required"),
        ("/api/embeddings", "{}", 400, "model is required"),
        ("/api/show", "{}", 400, "model is required"),
        ("/api/generate", "{\"model\":\"bad name\"}", 400, "invalid model name"),
        ("/api/chat", "{\"model\":\"llama3:\"}", 400, "invalid model name"),
        ("/api/generate", "{\"model\":\"Nope\",\"prompt\":\"x\"}", 404, "model 'Nope' not found"),
        ("/api/chat", "{\"model\":\"nope\",\"messages\":[]}", 404, "model 'nope' not found"),
        ("/api/embed", "{\"model\":\"nope\",\"input\":\"x\"}", 404, "model \"nope\" not found, try pulling it first"),
        ("/api/show", "{\"name\":\"foo\"}", 404, "model 'foo:latest' not found"),
        ("/api/chat", "{\"model\":\"bert\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "\"bert\" does not support chat"),
        ("/api/generate", "{\"model\":\"bert\",\"prompt\":\"x\"}", 400, "\"bert\" does not support generate"),
        ("/api/chat", "{\"model\":\"llama3\",\"messages\":[],\"think\":true}", 400, "\"llama3\" does not support thinking"),
        ("/api/generate", "{\"model\":\"llama3\",\"prompt\":\"x\",\"top_logprobs\":21}", 400, "top_logprobs must be between 0 and 20"),
        ("/api/generate", "{\"model\":\"llama3\",\"keep_alive\":\"-1\"}", 400, "time: missing unit in duration \"-1\""),
        ("/api/generate", "{\"model\":\"llama3\",\"keep_alive\":\"soon\"}", 400, "time: invalid duration \"soon\""),
        ("/api/pull", "{\"model\":\"a b\"}", 400, "invalid model name"),
        ("/api/copy", "{\"source\":\"a b\",\"destination\":\"x\"}", 400, "source \"a b\" is invalid"),
        ("/api/copy", "{\"source\":\"llama3\",\"destination\":\"x:\"}", 400, "destination \"x:\" is invalid"),
        ("/api/copy", "{\"source\":\"gone\",\"destination\":\"x\"}", 404, "model \"gone\" not found"),
    ];
    for (path, body, status, message) in cases {
        let r = emu.post_raw(path, body).await;
        assert_eq!(r.status().as_u16(), *status, "{path} {body}");
        assert_eq!(
            r.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v, json!({"error": message}), "{path} {body}");
    }
}

#[tokio::test]
async fn openai_errors_have_the_openai_shape() {
    let emu = start(config(&["llama3"])).await;
    let (s, body) = emu
        .call(
            "/v1/chat/completions",
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(
        body,
        json!({"error": {"message": "model 'nope' not found", "type": "not_found_error", "param": null, "code": null}})
    );
    let (s, body) = emu
        .call(
            "/v1/chat/completions",
            json!({"model": "llama3", "messages": []}),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(body["error"]["message"], "[] is too short - 'messages'");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let (s, body) = emu
        .call("/v1/embeddings", json!({"model": "llama3", "input": []}))
        .await;
    assert_eq!(s, 400);
    assert_eq!(body["error"]["message"], "invalid input");
    let (s, _) = emu
        .call(
            "/v1/chat/completions",
            json!({"model": "llama3", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_gins_texts() {
    let emu = start(config(&[])).await;
    let r = emu.get("/api/nope").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-emu-instance"], "test-emu");
    assert_eq!(r.text().await.unwrap(), "404 page not found");
    let r = emu.get("/api/generate").await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.text().await.unwrap(), "405 method not allowed");
    let r = emu.post("/api/tags", json!({})).await;
    assert_eq!(r.status(), 405);
    let r = emu.get("/").await;
    assert_eq!(r.text().await.unwrap(), "Ollama is running");
    assert_eq!(
        emu.get_json("/api/version").await,
        json!({"version": "0.9.7"})
    );
}

#[tokio::test]
async fn tags_and_models_shapes() {
    let emu = start(config(&[])).await;
    assert_eq!(emu.get_json("/api/tags").await, json!({"models": []}));
    assert_eq!(emu.get_json("/api/ps").await, json!({"models": []}));
    assert_eq!(
        emu.get_json("/v1/models").await,
        json!({"object": "list", "data": null})
    );

    emu.control(
        "/_emu/model",
        json!({"name": "old", "modified_at": "2024-01-01T00:00:00Z"}),
    )
    .await;
    emu.control(
        "/_emu/model",
        json!({"name": "user/new:v1", "modified_at": "2025-01-01T00:00:00Z", "size": 42}),
    )
    .await;
    let tags = emu.get_json("/api/tags").await;
    let models = tags["models"].as_array().unwrap();
    assert_eq!(models[0]["name"], "user/new:v1");
    assert_eq!(models[0]["model"], "user/new:v1");
    assert_eq!(models[0]["size"], 42);
    assert_eq!(models[1]["name"], "old:latest");
    assert_eq!(
        models[1]["digest"],
        ollama_emu::models::default_digest("registry.ollama.ai/library/old:latest")
    );
    assert_eq!(models[1]["details"]["format"], "gguf");
    assert_eq!(models[1]["details"]["families"], json!(["llama"]));

    let v1 = emu.get_json("/v1/models").await;
    assert_eq!(
        v1["data"][0],
        json!({"id": "user/new:v1", "object": "model", "created": 1735689600, "owned_by": "user"})
    );
    let one = emu.get_json("/v1/models/old").await;
    assert_eq!(one["id"], "old");
    assert_eq!(one["owned_by"], "library");
    assert_eq!(emu.get("/v1/models/missing").await.status(), 404);
}

#[tokio::test]
async fn pull_copy_delete() {
    let emu = start(config(&[])).await;
    let text = emu
        .post("/api/pull", json!({"model": "tiny"}))
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0], json!({"status": "pulling manifest"}));
    let layer = &lines[1];
    assert!(layer["status"].as_str().unwrap().starts_with("pulling "));
    assert_eq!(
        layer["status"].as_str().unwrap().len(),
        "pulling ".len() + 12
    );
    assert!(layer["digest"].as_str().unwrap().starts_with("sha256:"));
    let last_layer = &lines[lines.len() - 4];
    assert_eq!(last_layer["completed"], last_layer["total"]);
    let tail: Vec<&str> = lines[lines.len() - 3..]
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        tail,
        ["verifying sha256 digest", "writing manifest", "success"]
    );
    let digest = ollama_emu::models::default_digest("registry.ollama.ai/library/tiny:latest");
    assert_eq!(
        emu.get_json("/api/tags").await["models"][0]["digest"],
        digest
    );

    // A registry update changes what the next pull fetches.
    let newer = "ab".repeat(32);
    emu.control("/_emu/registry", json!({"name": "tiny", "digest": newer}))
        .await;
    let (s, body) = emu
        .call("/api/pull", json!({"name": "tiny", "stream": false}))
        .await;
    assert_eq!((s, body), (200, json!({"status": "success"})));
    assert_eq!(
        emu.get_json("/api/tags").await["models"][0]["digest"],
        newer
    );

    // Unknown to the registry.
    emu.control("/_emu/registry", json!({"name": "ghost", "digest": null}))
        .await;
    let (s, body) = emu
        .call("/api/pull", json!({"model": "ghost", "stream": false}))
        .await;
    assert_eq!(
        (s, body),
        (
            500,
            json!({"error": "pull model manifest: file does not exist"})
        )
    );

    let r = emu
        .post(
            "/api/copy",
            json!({"source": "tiny", "destination": "team/tiny:copy"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    let (s, show) = emu
        .call("/api/show", json!({"model": "team/tiny:copy"}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(show["details"]["family"], "llama");

    let r = emu
        .http
        .delete(format!("{}/api/delete", emu.url))
        .json(&json!({"model": "tiny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    let r = emu
        .http
        .delete(format!("{}/api/delete", emu.url))
        .json(&json!({"model": "tiny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "model 'tiny' not found"}),
        "DeleteHandler quotes with '%s'"
    );
    let r = emu
        .http
        .delete(format!("{}/api/delete", emu.url))
        .json(&json!({"model": "a b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "name \"a b\" is invalid"})
    );
    let names: Vec<Value> = emu.get_json("/api/tags").await["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].clone())
        .collect();
    assert_eq!(names, [json!("team/tiny:copy")]);
}

#[tokio::test]
async fn streams_are_ndjson_and_sse() {
    let mut c = config(&["llama3"]);
    c.models[0].loaded = true;
    let emu = start(c).await;

    let r = emu
        .post(
            "/api/chat",
            json!({"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["message"]["role"], "assistant");
    assert_eq!(lines[0]["done"], false);
    let last = &lines[5];
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["message"], json!({"role": "assistant", "content": ""}));
    assert!(last["context"].is_null());
    for field in [
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "eval_count",
        "eval_duration",
    ] {
        assert!(last[field].as_u64().unwrap() > 0, "{field}");
    }

    let r = emu
        .post(
            "/v1/chat/completions",
            json!({"model": "llama3", "messages": [{"role": "user", "content": "hi"}], "stream": true,
                   "stream_options": {"include_usage": true}}),
        )
        .await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = r.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|e| !e.is_empty() && *e != "data: [DONE]")
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(events.len(), 5 + 2);
    assert!(events
        .iter()
        .all(|e| e["object"] == "chat.completion.chunk"));
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(events[1]["choices"][0]["delta"]["role"].is_null());
    assert_eq!(events[5]["choices"][0]["delta"], json!({}));
    assert_eq!(events[5]["choices"][0]["finish_reason"], "stop");
    assert_eq!(events[6]["choices"], json!([]));
    assert_eq!(events[6]["usage"]["completion_tokens"], 5);

    let (s, body) = emu
        .call(
            "/v1/completions",
            json!({"model": "llama3", "prompt": "once"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn embeddings_are_deterministic() {
    let emu = start(config(&["llama3"])).await;
    let (_, a) = emu
        .call(
            "/api/embed",
            json!({"model": "llama3", "input": ["x", "y"]}),
        )
        .await;
    let (_, b) = emu
        .call(
            "/api/embed",
            json!({"model": "llama3", "input": "x", "dimensions": 4}),
        )
        .await;
    assert_eq!(a["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(a["embeddings"][0].as_array().unwrap().len(), 8);
    assert_ne!(a["embeddings"][0], a["embeddings"][1]);
    assert_eq!(b["embeddings"][0].as_array().unwrap().len(), 4);
    let (_, again) = emu
        .call("/api/embed", json!({"model": "llama3", "input": ["x"]}))
        .await;
    assert_eq!(again["embeddings"][0], a["embeddings"][0]);
    let (_, empty) = emu
        .call("/api/embed", json!({"model": "llama3", "input": []}))
        .await;
    assert_eq!(empty, json!({"model": "llama3", "embeddings": []}));
    let (_, legacy) = emu
        .call("/api/embeddings", json!({"model": "llama3", "prompt": "x"}))
        .await;
    assert_eq!(legacy["embedding"].as_array().unwrap().len(), 8);
    let (_, v1) = emu
        .call("/v1/embeddings", json!({"model": "llama3", "input": "x"}))
        .await;
    assert_eq!(v1["data"][0]["object"], "embedding");
    let (_, b64) = emu
        .call(
            "/v1/embeddings",
            json!({"model": "llama3", "input": "x", "encoding_format": "base64"}),
        )
        .await;
    // 8 floats = 32 bytes = 44 base64 characters.
    assert_eq!(b64["data"][0]["embedding"].as_str().unwrap().len(), 44);
}

#[tokio::test]
async fn control_surface_shapes_the_instance() {
    let emu = start(config(&["llama3"])).await;
    emu.control(
        "/_emu/digest",
        json!({"name": "llama3", "digest": format!("sha256:{}", "cd".repeat(32))}),
    )
    .await;
    assert_eq!(
        emu.get_json("/api/tags").await["models"][0]["digest"],
        "cd".repeat(32)
    );
    emu.control("/_emu/load", json!({"name": "llama3", "keep_alive": -1}))
        .await;
    assert_eq!(emu.loaded().await, ["llama3:latest"]);
    emu.control("/_emu/unload", json!({"name": "llama3"})).await;
    assert!(emu.loaded().await.is_empty());
    emu.control("/_emu/remove", json!({"name": "llama3"})).await;
    assert_eq!(emu.get_json("/api/tags").await, json!({"models": []}));
    emu.control("/_emu/model", json!({"name": "a", "loaded": true}))
        .await;
    emu.control("/_emu/wipe", json!({})).await;
    assert!(emu.loaded().await.is_empty());
    emu.control(
        "/_emu/config",
        json!({"num_parallel": 4, "load_time_ms": 10, "response_tokens": 2}),
    )
    .await;
    emu.control("/_emu/model", json!({"name": "a"})).await;
    let (_, body) = emu.call("/api/generate", gen("a")).await;
    assert_eq!(body["eval_count"], 2);
    emu.control("/_emu/reset_stats", json!({})).await;
    assert_eq!(emu.stats().await["requests_total"], 0);
    let (s, _) = emu.call("/_emu/model", json!({"name": "bad name"})).await;
    assert_eq!(s, 400);
    let (s, _) = emu
        .call("/_emu/digest", json!({"name": "a", "digest": "xyz"}))
        .await;
    assert_eq!(s, 400);
    emu.handle.shutdown().await;
}

#[tokio::test]
async fn a_non_local_host_header_gets_an_empty_403() {
    let emu = start(config(&[])).await;
    let get = |host: &'static str| {
        emu.http
            .get(format!("{}/api/version", emu.url))
            .header("host", host)
            .send()
    };
    let r = get("ollama.example.com").await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-emu-instance"], "test-emu");
    assert_eq!(r.text().await.unwrap(), "");
    assert_eq!(get("localhost:11434").await.unwrap().status(), 200);
    assert_eq!(get("gpu-a.internal").await.unwrap().status(), 200);

    let mut c = config(&[]);
    c.host_check = false;
    let open = start(c).await;
    let r = open
        .http
        .get(format!("{}/api/version", open.url))
        .header("host", "ollama.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
