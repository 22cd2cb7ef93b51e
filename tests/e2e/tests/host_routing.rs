//! The filter's host mode (`route_by: host`) in the real Envoy, with the
//! real syncd: the bootstrap has a virtual host per instance authority
//! (what a mesh such as Istio generates per service host) and no
//! `cluster_header` route, so a request reaches an instance only if the
//! filter rewrote `:authority` and cleared the route cache.

use e2e::envoy_config::RouteBy;
use e2e::{Envoy, Rig};
use serde_json::json;
use std::time::Duration;

/// (method, path, headers, body) → (status, answering instance, body
/// fragment).
type Case<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, String)>,
    &'a str,
    u16,
    Option<&'a str>,
    &'a str,
);

async fn send(
    envoy: &Envoy,
    (method, path, headers, body): (&str, &str, &[(&str, String)], &str),
) -> anyhow::Result<(u16, Option<String>, String)> {
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut req = e2e::http().request(method, format!("{}{path}", envoy.url));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.body(body.to_string()).send().await?;
    let status = resp.status().as_u16();
    let instance = resp
        .headers()
        .get("x-emu-instance")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((status, instance, resp.text().await?))
}

#[tokio::test]
async fn host_mode_routes_by_authority_and_ignores_spoofed_headers() -> anyhow::Result<()> {
    let mut rig = Rig::new("host_routing");
    let a = rig
        .emulator("a", &["--loaded", "llama3", "--load-time", "50ms"])
        .await?;
    let b = rig
        .emulator("b", &["--model", "mistral", "--load-time", "50ms"])
        .await?;
    let syncd = rig.syncd(&[&a, &b], &[]).await?;
    let mut config = rig.envoy_config(&[&a, &b], syncd.addr);
    config.route_by = RouteBy::Host;
    config.plugin_config = json!({"long_poll_seconds": 2});
    let envoy = rig.envoy(&config, 2).await?;
    wait_for_map(&envoy).await?;

    let b_host = b.addr.to_string();
    let gen = r#"{"model":"llama3","prompt":"hi","stream":false}"#;
    let chat = r#"{"model":"mistral","messages":[{"role":"user","content":"hi"}],"stream":false}"#;
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/generate",
            vec![],
            gen,
            200,
            Some("a"),
            "\"done\":true",
        ),
        (
            "POST",
            "/api/chat",
            vec![],
            chat,
            200,
            Some("b"),
            "\"done\":true",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![],
            chat,
            200,
            Some("b"),
            "chat.completion",
        ),
        // A client naming b every way it could still reaches a, which
        // holds the model: the filter's authority wins, the endpoints
        // header is removed and the instance header overwritten.
        (
            "POST",
            "/api/generate",
            vec![
                ("host", b_host.clone()),
                ("x-ollama-lb-endpoints", b.addr.to_string()),
                ("x-ollama-lb-instance", "b".into()),
            ],
            gen,
            200,
            Some("a"),
            "\"done\":true",
        ),
        // Pinning still works: b answers for itself that it lacks llama3.
        (
            "POST",
            "/api/show",
            vec![("x-ollama-instance", "b".into())],
            r#"{"model":"llama3"}"#,
            404,
            Some("b"),
            "not found",
        ),
        (
            "POST",
            "/api/generate",
            vec![],
            r#"{"model":"nope"}"#,
            404,
            None,
            r#"{"error":"model 'nope' not found"}"#,
        ),
        (
            "POST",
            "/api/chat",
            vec![],
            r#"{"model":"llama3""#,
            400,
            None,
            r#"{"error":"unexpected EOF"}"#,
        ),
        (
            "POST",
            "/api/show",
            vec![("x-ollama-instance", "zz".into())],
            "{}",
            400,
            None,
            r#"unknown instance \"zz\""#,
        ),
        ("GET", "/api/tags", vec![], "", 200, None, "mistral:latest"),
    ];
    for (method, path, headers, body, status, instance, fragment) in &cases {
        let (got, by, text) = send(&envoy, (method, path, headers, body)).await?;
        assert_eq!(
            (got, by.as_deref()),
            (*status, *instance),
            "{method} {path} {headers:?} {body}: {text}"
        );
        assert!(text.contains(fragment), "{method} {path} {body}: {text}");
    }
    // A pull goes to syncd's fleet API, which pulls on every healthy
    // instance: the fleet route works in host mode too.
    let pull = r#"{"model":"tinyllama","stream":false}"#;
    let (status, by, text) = send(&envoy, ("POST", "/api/pull", &[], pull)).await?;
    assert_eq!(
        (status, by, text.as_str()),
        (200, None, r#"{"status":"success"}"#)
    );
    for emu in [&a, &b] {
        let tags = e2e::http()
            .get(format!("{}/api/tags", emu.url))
            .send()
            .await?
            .text()
            .await?;
        assert!(tags.contains("tinyllama:latest"), "{}: {tags}", emu.name);
    }
    let routed_a = envoy
        .stat("wasmcustom.ollama_lb.routed.a")
        .await
        .unwrap_or(0);
    let routed_b = envoy
        .stat("wasmcustom.ollama_lb.routed.b")
        .await
        .unwrap_or(0);
    assert_eq!(routed_a + routed_b, 5, "a {routed_a}, b {routed_b}");
    assert!(
        envoy.errors(&mut rig).is_empty(),
        "{:?}",
        envoy.errors(&mut rig)
    );
    Ok(())
}

#[tokio::test]
async fn host_mode_avoids_an_instance_that_went_down() -> anyhow::Result<()> {
    let mut rig = Rig::new("host_routing_down");
    let a = rig.emulator("a", &["--model", "llama3"]).await?;
    let b = rig.emulator("b", &["--model", "llama3"]).await?;
    let syncd = rig.syncd(&[&a, &b], &[]).await?;
    let mut config = rig.envoy_config(&[&a, &b], syncd.addr);
    config.route_by = RouteBy::Host;
    config.plugin_config = json!({"long_poll_seconds": 2, "policy": "round_robin"});
    let envoy = rig.envoy(&config, 1).await?;
    wait_for_map(&envoy).await?;
    rig.kill(b.proc);
    let gen = r#"{"model":"llama3","prompt":"hi","stream":false}"#;
    // Until syncd marks b down, a request sent to b fails (Envoy's 503) and
    // puts b in cool-down; after that every request reaches a.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..6 {
        let (status, by, text) = send(&envoy, ("POST", "/api/generate", &[], gen)).await?;
        assert_eq!((status, by.as_deref()), (200, Some("a")), "{text}");
    }
    rig.kill(a.proc);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, by, text) = send(&envoy, ("POST", "/api/generate", &[], gen)).await?;
    assert_eq!((status, by), (503, None), "{text}");
    assert!(text.contains("every instance holding it is down"), "{text}");
    Ok(())
}

async fn wait_for_map(envoy: &Envoy) -> anyhow::Result<()> {
    for _ in 0..200 {
        let resp = e2e::http()
            .get(format!("{}/api/tags", envoy.url))
            .send()
            .await?;
        if resp.status() == 200 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("the filter never installed a map")
}
