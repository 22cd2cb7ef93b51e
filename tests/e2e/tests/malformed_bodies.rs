//! Malformed bodies × routes through the real Envoy with the filter, and
//! directly from the emulator: both answer Ollama's status, text, content
//! type and bytes (the table is the emulator's, `include!`d). Where the
//! model is unknown the balancer answers itself, so these cases check its
//! order of checks: a body Ollama rejects with 400 gets that 400, not 404.

use e2e::Rig;
use serde_json::{json, Value};

include!("../../ollama-emu/tests/common/malformed.rs");

async fn post(base: &str, route: &str, body: &[u8]) -> anyhow::Result<(u16, String, String)> {
    let (method, path) = method_path(route);
    let resp = e2e::http()
        .request(method, format!("{base}{path}"))
        .body(body.to_vec())
        .send()
        .await?;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Ok((status, ct, resp.text().await?))
}

#[tokio::test]
async fn malformed_bodies_get_ollamas_answer_through_the_balancer() -> anyhow::Result<()> {
    let mut rig = Rig::new("malformed_bodies");
    let a = rig.emulator("a", &["--model", "llama3"]).await?;
    let syncd = rig.syncd(&[&a], &[]).await?;
    let mut config = rig.envoy_config(&[&a], syncd.addr);
    config.plugin_config = json!({"long_poll_seconds": 1});
    let envoy = rig.envoy(&config, 1).await?;
    // Wait until the filter has a map that lists the model.
    let tags = format!("{}/api/tags", envoy.url);
    e2e::until("the filter lists llama3", e2e::envoy::PATIENCE, || async {
        let text = e2e::http()
            .get(&tags)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("llama3:latest").then_some(())
    })
    .await?;

    // Ollama sends no `Server` header; neither do the balancer's answers.
    for (method, path) in [
        ("GET", "/api/version"),
        ("GET", "/api/tags"),
        ("POST", "/api/chat"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let resp = e2e::http()
            .request(method, format!("{}{path}", envoy.url))
            .body("{\"model\":\"nope\"}")
            .send()
            .await?;
        assert!(
            resp.headers().get("server").is_none(),
            "{path}: {:?}",
            resp.headers()
        );
    }

    let mut failures = Vec::new();
    for (route, body, status, message) in MALFORMED {
        let want = expected(route, *status, message);
        let want = (*status, want.1.to_string(), want.0);
        let through = post(&envoy.url, route, body).await?;
        let direct = post(&a.url, route, body).await?;
        for (what, got) in [("balancer", &through), ("emulator", &direct)] {
            if *got != want {
                failures.push(format!(
                    "{what} {route} {}: got {got:?}, want {want:?}",
                    String::from_utf8_lossy(body)
                ));
            }
        }
    }
    // A path Ollama's router decodes: the name is invalid, not missing.
    let want = (
        400,
        "application/json".to_string(),
        "{\"error\":{\"message\":\"invalid model name\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}\n".to_string(),
    );
    for base in [&envoy.url, &a.url] {
        let resp = e2e::http()
            .get(format!("{base}/v1/models/bad%20name"))
            .send()
            .await?;
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let got = (status, ct, resp.text().await?);
        if got != want {
            failures.push(format!(
                "{base}/v1/models/bad%20name: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        rig.logs()
    );
    Ok(())
}

#[test]
fn the_table_is_go_shaped() {
    // `expected` is shared with the emulator's tests; check it once here.
    let (body, ct) = expected("/api/chat", 400, "a <b> & c");
    assert_eq!(body, r#"{"error":"a \u003cb\u003e \u0026 c"}"#);
    assert_eq!(ct, "application/json; charset=utf-8");
    let (body, ct) = expected("/v1/embeddings", 404, "x");
    assert_eq!(
        body,
        "{\"error\":{\"message\":\"x\",\"type\":\"not_found_error\",\"param\":null,\"code\":null}}\n"
    );
    assert_eq!(ct, "application/json");
    let _: Value = serde_json::from_str(&body).expect("valid JSON");
}
