//! The filter's host mode (`route_by: host`) in the real Envoy, with the
//! real syncd: the bootstrap has a virtual host per instance authority
//! (what a mesh such as Istio generates per service host) and no
//! `cluster_header` route, so a request reaches an instance only if the
//! filter rewrote `:authority` and cleared the route cache.

use e2e::envoy_config::RouteBy;
use e2e::Rig;
use serde_json::json;

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
    envoy.wait_for_map().await?;

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
        let headers_ref: Vec<(&str, &str)> =
            headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (got, by, text) = envoy.send(method, path, &headers_ref, Some(body)).await?;
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
    let (status, by, text) = envoy.send("POST", "/api/pull", &[], Some(pull)).await?;
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
    envoy.wait_for_map().await?;
    rig.kill(b.proc);
    // Once the filter has the map with b down, every request reaches a.
    envoy
        .wait_for_map_where(&rig, &syncd, 1, "b down", |m| {
            m.instance("b").is_some_and(|b| !b.healthy)
        })
        .await?;
    let gen = r#"{"model":"llama3","prompt":"hi","stream":false}"#;
    for _ in 0..6 {
        let (status, by, text) = envoy.send("POST", "/api/generate", &[], Some(gen)).await?;
        assert_eq!((status, by.as_deref()), (200, Some("a")), "{text}");
    }
    rig.kill(a.proc);
    envoy
        .wait_for_map_where(&rig, &syncd, 1, "a down", |m| {
            m.instance("a").is_some_and(|a| !a.healthy)
        })
        .await?;
    let (status, by, text) = envoy.send("POST", "/api/generate", &[], Some(gen)).await?;
    assert_eq!((status, by), (503, None), "{text}");
    assert!(text.contains("every instance holding it is down"), "{text}");
    Ok(())
}
