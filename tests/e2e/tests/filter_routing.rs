//! The filter in the real Envoy: routing by the model in the body, the
//! errors it answers itself, the fleet reads, and the map protocol, with a
//! test-controlled map (exact health and load) and with the real syncd.

use e2e::{Emu, Envoy, MapServer, Rig};
use model_map::{InstanceState, Loaded, ModelEntry, ModelMap, ModelName, Replica};
use serde_json::{json, Value};
use std::time::Duration;

/// (method, path, headers, body) → (status, answering instance, body
/// fragment).
type Case<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    String,
    u16,
    Option<&'a str>,
    &'a str,
);

/// A replica of `model` on `emu`, loaded or not.
struct Holds<'a> {
    emu: &'a str,
    model: &'a str,
    loaded: bool,
}

fn map_of(instances: &[(&Emu, bool)], down: &[&str], holds: &[Holds]) -> ModelMap {
    let mut all: Vec<InstanceState> = instances
        .iter()
        .map(|(e, healthy)| InstanceState {
            name: e.name.clone(),
            url: e.url.clone(),
            cluster: e.name.clone(),
            authority: e.addr.to_string(),
            address: e.addr.to_string(),
            healthy: *healthy,
            version: Some("0.12.0".into()),
        })
        .collect();
    for name in down {
        all.push(InstanceState {
            name: name.to_string(),
            url: "http://127.0.0.1:9".into(),
            cluster: name.to_string(),
            authority: "127.0.0.1:9".into(),
            address: "127.0.0.1:9".into(),
            healthy: false,
            version: None,
        });
    }
    let mut models: Vec<ModelEntry> = Vec::new();
    for h in holds {
        let name = ModelName::parse(h.model).expect("test model names are valid");
        let replica = Replica {
            instance: h.emu.to_string(),
            digest: "d".repeat(64),
            size: 1000,
            modified_at: "2025-01-01T00:00:00Z".into(),
            modified_unix: 1_735_689_600,
            details: json!({"format": "gguf"}),
            loaded: h.loaded.then(|| Loaded {
                size: 1000,
                size_vram: 1000,
                expires_at: "2030-01-01T00:00:00Z".into(),
                expires_unix: 1_893_456_000,
                context_length: Some(4096),
                entry: None,
            }),
            listed: None,
        };
        match models.iter_mut().find(|m| m.key == name.key()) {
            Some(m) => m.replicas.push(replica),
            None => models.push(ModelEntry {
                key: name.key(),
                name: name.display_shortest(),
                canonical_digest: "d".repeat(64),
                digest_mismatch: false,
                replicas: vec![replica],
            }),
        }
    }
    models.sort_by(|a, b| a.key.cmp(&b.key));
    ModelMap::new(all, models)
}

/// Two emulators (a: llama3 loaded; b: llama3 and mistral), a map server
/// that also lists `c` (down, holding qwen), and Envoy with the filter.
async fn fleet(rig: &mut Rig, workers: u32) -> anyhow::Result<(Emu, Emu, MapServer, Envoy)> {
    let a = rig
        .emulator("a", &["--loaded", "llama3", "--load-time", "50ms"])
        .await?;
    let b = rig
        .emulator(
            "b",
            &[
                "--model",
                "llama3",
                "--model",
                "mistral",
                "--load-time",
                "50ms",
            ],
        )
        .await?;
    let maps = MapServer::start().await?;
    maps.set(map_of(
        &[(&a, true), (&b, true)],
        &["c"],
        &[
            Holds {
                emu: "a",
                model: "llama3",
                loaded: true,
            },
            Holds {
                emu: "b",
                model: "llama3",
                loaded: false,
            },
            Holds {
                emu: "b",
                model: "mistral",
                loaded: false,
            },
            Holds {
                emu: "c",
                model: "qwen",
                loaded: false,
            },
        ],
    ));
    let mut config = rig.envoy_config(&[&a, &b], maps.addr);
    // The stand-in map server serves no endpoints: a fixed fleet cluster.
    config.fleet_endpoints = e2e::envoy_config::FleetEndpoints::Static;
    config.plugin_config =
        json!({"long_poll_seconds": 2, "affinity_header": "x-openwebui-chat-id"});
    let envoy = rig.envoy(&config, workers).await?;
    wait_for_map(&envoy).await?;
    Ok((a, b, maps, envoy))
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

/// Sends one request; returns status, the answering instance and the body.
async fn send(
    envoy: &Envoy,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> anyhow::Result<(u16, Option<String>, String)> {
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut req = e2e::http().request(method, format!("{}{path}", envoy.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let instance = resp
        .headers()
        .get("x-emu-instance")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((status, instance, resp.text().await?))
}

#[tokio::test]
async fn filter_routes_by_model_and_answers_like_ollama() -> anyhow::Result<()> {
    let mut rig = Rig::new("filter_routing");
    let (a, _b, _maps, envoy) = fleet(&mut rig, 2).await?;
    let a_addr = a.addr.to_string();
    let chat = r#""messages":[{"role":"user","content":"hi"}],"stream":false"#;
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/generate",
            vec![],
            r#"{"model":"llama3","prompt":"hi","stream":false}"#.into(),
            200,
            Some("a"),
            "\"done\":true",
        ),
        (
            "POST",
            "/api/chat",
            vec![],
            format!(r#"{{"model":"mistral",{chat}}}"#),
            200,
            Some("b"),
            "\"done\":true",
        ),
        (
            "POST",
            "/api/chat",
            // A client listing a (which lacks mistral) and asking for no
            // retries still reaches b: the filter's list and retry count win.
            vec![
                ("x-ollama-lb-endpoints", a_addr.as_str()),
                ("x-envoy-max-retries", "0"),
                ("x-envoy-retry-on", "5xx"),
            ],
            format!(r#"{{{chat},"model":"mistral:latest"}}"#),
            200,
            Some("b"),
            "\"done\":true",
        ),
        (
            "POST",
            "/api/chat",
            vec![],
            format!(r#"  {{"model":"llama3",{chat},"model":"mistral"}} trailing"#),
            200,
            Some("b"),
            "",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![],
            format!(r#"{{"model":"mistral",{chat}}}"#),
            200,
            Some("b"),
            "chat.completion",
        ),
        (
            "POST",
            "/api/show",
            vec![("x-ollama-instance", "b")],
            r#"{"model":"llama3"}"#.into(),
            200,
            Some("b"),
            "model_info",
        ),
        (
            "POST",
            "/api/pull",
            // Unpinned, a pull goes to syncd's fleet API (fleet_manage.rs);
            // this map server is no syncd.
            vec![("x-ollama-instance", "a")],
            r#"{"model":"tinyllama","stream":false}"#.into(),
            200,
            Some("a"),
            "success",
        ),
        (
            "POST",
            "/api/generate",
            vec![],
            r#"{"model":"nope","prompt":"hi"}"#.into(),
            404,
            None,
            r#"{"error":"model 'nope' not found"}"#,
        ),
        (
            "POST",
            "/api/generate",
            vec![],
            r#"{"model":"qwen"}"#.into(),
            503,
            None,
            "every instance holding it is down",
        ),
        (
            "POST",
            "/api/chat",
            vec![],
            r#"{"model":5}"#.into(),
            400,
            None,
            "json: cannot unmarshal number into Go struct field ChatRequest.model of type string",
        ),
        (
            "POST",
            "/api/chat",
            vec![],
            r#"{"model":"llama3""#.into(),
            400,
            None,
            r#"{"error":"unexpected EOF"}"#,
        ),
        (
            "POST",
            "/api/chat",
            vec![],
            "".into(),
            400,
            None,
            r#"{"error":"missing request body"}"#,
        ),
        (
            "POST",
            "/api/chat",
            vec![],
            r#"{"model":"a b"}"#.into(),
            400,
            None,
            "invalid model name",
        ),
        (
            "POST",
            "/api/generate",
            vec![],
            "{}".into(),
            404,
            None,
            "model '' not found",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![],
            // With messages: without them Ollama's middleware answers 400.
            r#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#.into(),
            404,
            None,
            r#""type":"not_found_error""#,
        ),
        (
            "POST",
            "/api/show",
            vec![("x-ollama-instance", "zz")],
            "{}".into(),
            400,
            None,
            "known instances: a, b, c",
        ),
        (
            "GET",
            "/",
            vec![],
            String::new(),
            200,
            None,
            "Ollama is running",
        ),
        (
            "GET",
            "/api/version",
            vec![],
            String::new(),
            200,
            None,
            r#"{"version":"0.12.0"}"#,
        ),
        (
            "GET",
            "/api/tags",
            vec![],
            String::new(),
            200,
            None,
            "\"mistral:latest\"",
        ),
        (
            "GET",
            "/api/ps",
            vec![],
            String::new(),
            200,
            None,
            "\"llama3:latest\"",
        ),
        (
            "GET",
            "/v1/models/llama3",
            vec![],
            String::new(),
            200,
            None,
            r#""id":"llama3""#,
        ),
        (
            "GET",
            "/v1/models/qwen",
            vec![],
            String::new(),
            404,
            None,
            "not_found_error",
        ),
    ];
    for (method, path, headers, body, status, instance, fragment) in cases {
        let body = (!body.is_empty()).then_some(body.as_str());
        let got = send(&envoy, method, path, &headers, body).await?;
        let what = format!("{method} {path} {body:?} → {got:?}");
        assert_eq!(got.0, status, "{what}");
        if instance.is_some() {
            assert_eq!(got.1.as_deref(), instance, "{what}");
        }
        assert!(got.2.contains(fragment), "{what}");
    }
    // Unknown routes still reach an instance, which answers them itself.
    let (status, instance, _) = send(&envoy, "GET", "/api/nothing-here", &[], None).await?;
    assert_eq!((status, instance.is_some()), (404, true));
    let tags: Value = serde_json::from_str(&send(&envoy, "GET", "/api/tags", &[], None).await?.2)?;
    let names: Vec<&str> = tags["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "qwen is only on a down instance: {names:?}");
    assert!(
        envoy
            .stat("wasmcustom.ollama_lb.routed.b")
            .await
            .unwrap_or(0)
            >= 4
    );
    assert_eq!(envoy.stat("wasmcustom.ollama_lb.inflight.a").await, Some(0));
    assert_eq!(
        envoy.stat("wasmcustom.ollama_lb.map_instances").await,
        Some(3)
    );
    assert!(
        envoy.errors(&mut rig).is_empty(),
        "{:?}",
        envoy.errors(&mut rig)
    );
    Ok(())
}

#[tokio::test]
async fn filter_reads_a_big_body_whose_model_comes_last() -> anyhow::Result<()> {
    let mut rig = Rig::new("filter_big_body");
    let (_a, _b, _maps, envoy) = fleet(&mut rig, 1).await?;
    let prompt = "x".repeat(20 << 20);
    let body = format!(r#"{{"prompt":"{prompt}","stream":false,"model":"mistral"}}"#);
    let (status, instance, text) = send(&envoy, "POST", "/api/generate", &[], Some(&body)).await?;
    assert_eq!((status, instance.as_deref()), (200, Some("b")), "{text}");
    // Above the old 32 MiB limit, under the 256 MiB default (multimodal
    // requests with several images); 413s are in hostile_requests.rs.
    let large = format!(
        r#"{{"prompt":"{}","stream":false,"model":"mistral"}}"#,
        "x".repeat(40 << 20)
    );
    let (status, instance, text) = send(&envoy, "POST", "/api/generate", &[], Some(&large)).await?;
    assert_eq!((status, instance.as_deref()), (200, Some("b")), "{text}");
    assert!(
        envoy.errors(&mut rig).is_empty(),
        "{:?}",
        envoy.errors(&mut rig)
    );
    Ok(())
}

#[tokio::test]
async fn filter_waits_for_the_map_then_follows_it() -> anyhow::Result<()> {
    let mut rig = Rig::new("filter_map_protocol");
    let a = rig.emulator("a", &["--model", "llama3"]).await?;
    let b = rig.emulator("b", &["--model", "llama3"]).await?;
    let maps = MapServer::start().await?;
    let mut config = rig.envoy_config(&[&a, &b], maps.addr);
    // The stand-in map server serves no endpoints: a fixed fleet cluster.
    config.fleet_endpoints = e2e::envoy_config::FleetEndpoints::Static;
    config.plugin_config = json!({"long_poll_seconds": 2});
    let envoy = rig.envoy(&config, 2).await?;
    let gen = r#"{"model":"llama3","prompt":"hi","stream":false}"#;
    let (status, _, text) = send(&envoy, "POST", "/api/generate", &[], Some(gen)).await?;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("model map not ready yet"), "{text}");

    let only = |emu: &str| Holds {
        emu: if emu == "a" { "a" } else { "b" },
        model: "llama3",
        loaded: false,
    };
    maps.set(map_of(&[(&a, true), (&b, true)], &[], &[only("a")]));
    wait_for_map(&envoy).await?;
    for _ in 0..6 {
        let (status, instance, _) = send(&envoy, "POST", "/api/generate", &[], Some(gen)).await?;
        assert_eq!((status, instance.as_deref()), (200, Some("a")));
    }
    // A new map reaches every worker through the long poll.
    maps.set(map_of(&[(&a, true), (&b, true)], &[], &[only("b")]));
    let mut moved = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let (_, instance, _) = send(&envoy, "POST", "/api/generate", &[], Some(gen)).await?;
        if instance.as_deref() == Some("b") {
            moved = true;
            break;
        }
    }
    assert!(moved, "the new map was never used");
    for _ in 0..6 {
        let (_, instance, _) = send(&envoy, "POST", "/api/generate", &[], Some(gen)).await?;
        assert_eq!(
            instance.as_deref(),
            Some("b"),
            "every worker has the new map"
        );
    }
    // syncd gone: the last map stays in use.
    drop(maps);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, instance, _) = send(&envoy, "POST", "/api/generate", &[], Some(gen)).await?;
    assert_eq!((status, instance.as_deref()), (200, Some("b")));
    assert!(
        envoy.errors(&mut rig).is_empty(),
        "{:?}",
        envoy.errors(&mut rig)
    );
    Ok(())
}

#[tokio::test]
async fn filter_keeps_a_conversation_on_one_instance_and_avoids_a_failed_one() -> anyhow::Result<()>
{
    let mut rig = Rig::new("filter_affinity");
    let (a, b, _maps, envoy) = fleet(&mut rig, 2).await?;
    let show = r#"{"model":"llama3"}"#;
    let mut seen = std::collections::HashMap::new();
    for chat in 0..12 {
        let id = format!("chat-{chat}");
        let h = [("x-openwebui-chat-id", id.as_str())];
        let (_, first, _) = send(&envoy, "POST", "/api/show", &h, Some(show)).await?;
        for _ in 0..3 {
            let (_, again, _) = send(&envoy, "POST", "/api/show", &h, Some(show)).await?;
            assert_eq!(again, first, "{id} stays put");
        }
        seen.insert(id, first.unwrap_or_default());
    }
    assert!(
        seen.values().any(|i| i == "a") && seen.values().any(|i| i == "b"),
        "{seen:?}"
    );
    // b dies: its conversations move to a at once (Envoy retries the
    // refused connection on the next instance the filter listed), and stay
    // there while b cools down.
    let (on_b, _) = seen
        .iter()
        .find(|(_, i)| *i == "b")
        .expect("some chat on b");
    let h = [("x-openwebui-chat-id", on_b.as_str())];
    rig.kill(b.proc);
    for attempt in 0..3 {
        let (status, instance, _) = send(&envoy, "POST", "/api/show", &h, Some(show)).await?;
        assert_eq!(
            (status, instance.as_deref()),
            (200, Some(a.name.as_str())),
            "request {attempt} after b died"
        );
    }
    assert!(
        envoy
            .stat("cluster.ollama_fleet.upstream_rq_retry_success")
            .await
            >= Some(1)
    );
    assert!(
        envoy.errors(&mut rig).is_empty(),
        "{:?}",
        envoy.errors(&mut rig)
    );
    Ok(())
}

#[tokio::test]
async fn filter_routes_with_the_real_syncd() -> anyhow::Result<()> {
    let mut rig = Rig::new("filter_syncd");
    let a = rig
        .emulator("a", &["--model", "llama3", "--ollama-version", "0.11.0"])
        .await?;
    let b = rig
        .emulator("b", &["--model", "mistral", "--ollama-version", "0.12.3"])
        .await?;
    let syncd = rig.syncd(&[&a, &b], &[]).await?;
    let config = rig.envoy_config(&[&a, &b], syncd.addr);
    let envoy = rig.envoy(&config, 2).await?;
    wait_for_map(&envoy).await?;
    for (model, instance) in [("mistral", "b"), ("llama3", "a"), ("MISTRAL:latest", "b")] {
        let body = format!(r#"{{"model":"{model}","prompt":"hi","stream":false}}"#);
        let (status, got, text) = send(&envoy, "POST", "/api/generate", &[], Some(&body)).await?;
        assert_eq!(
            (status, got.as_deref()),
            (200, Some(instance)),
            "{model}: {text}"
        );
    }
    let (_, _, version) = send(&envoy, "GET", "/api/version", &[], None).await?;
    assert_eq!(version, r#"{"version":"0.11.0"}"#);
    let (_, _, tags) = send(&envoy, "GET", "/api/tags", &[], None).await?;
    assert!(
        tags.contains("llama3:latest") && tags.contains("mistral:latest"),
        "{tags}"
    );
    assert!(
        envoy.errors(&mut rig).is_empty(),
        "{:?}",
        envoy.errors(&mut rig)
    );
    Ok(())
}

#[tokio::test]
async fn filter_spreads_streams_by_in_flight_count_across_workers() -> anyhow::Result<()> {
    let mut rig = Rig::new("filter_least_request");
    let slow = [
        "--model",
        "llama3",
        "--tokens-per-second",
        "20",
        "--response-tokens",
        "40",
        "--num-parallel",
        "8",
    ];
    let a = rig.emulator("a", &slow).await?;
    let b = rig.emulator("b", &slow).await?;
    let maps = MapServer::start().await?;
    let holds = [
        Holds {
            emu: "a",
            model: "llama3",
            loaded: false,
        },
        Holds {
            emu: "b",
            model: "llama3",
            loaded: false,
        },
    ];
    maps.set(map_of(&[(&a, true), (&b, true)], &[], &holds));
    let mut config = rig.envoy_config(&[&a, &b], maps.addr);
    // The stand-in map server serves no endpoints: a fixed fleet cluster.
    config.fleet_endpoints = e2e::envoy_config::FleetEndpoints::Static;
    config.plugin_config = json!({"policy": "least_request"});
    let envoy = rig.envoy(&config, 2).await?;
    wait_for_map(&envoy).await?;
    let mut streams = Vec::new();
    for _ in 0..6 {
        let url = format!("{}/api/generate", envoy.url);
        streams.push(tokio::spawn(async move {
            let resp = e2e::http()
                .post(url)
                .body(r#"{"model":"llama3","prompt":"hi"}"#)
                .send()
                .await?;
            let who = resp
                .headers()
                .get("x-emu-instance")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            resp.bytes().await?;
            anyhow::Ok(who)
        }));
        // Each request is routed (and counted) before the next one starts,
        // on whichever worker the connection lands.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(envoy.stat("wasmcustom.ollama_lb.inflight.a").await, Some(3));
    assert_eq!(envoy.stat("wasmcustom.ollama_lb.inflight.b").await, Some(3));
    let mut on_a = 0;
    for s in streams {
        if s.await??.as_deref() == Some("a") {
            on_a += 1;
        }
    }
    assert_eq!(on_a, 3, "least_request alternates while all six stream");
    assert_eq!(
        envoy.stat("wasmcustom.ollama_lb.inflight.a").await,
        Some(0),
        "every stream end is counted once"
    );
    assert_eq!(envoy.stat("wasmcustom.ollama_lb.inflight.b").await, Some(0));
    assert!(
        envoy.errors(&mut rig).is_empty(),
        "{:?}",
        envoy.errors(&mut rig)
    );
    Ok(())
}

#[tokio::test]
async fn filter_cools_down_an_instance_that_dies_mid_stream() -> anyhow::Result<()> {
    let mut rig = Rig::new("filter_mid_stream_reset");
    let slow = [
        "--model",
        "llama3",
        "--tokens-per-second",
        "5",
        "--response-tokens",
        "50",
    ];
    let a = rig.emulator("a", &slow).await?;
    let b = rig.emulator("b", &slow).await?;
    let maps = MapServer::start().await?;
    let holds = [
        Holds {
            emu: "a",
            model: "llama3",
            loaded: false,
        },
        Holds {
            emu: "b",
            model: "llama3",
            loaded: false,
        },
    ];
    maps.set(map_of(&[(&a, true), (&b, true)], &[], &holds));
    let mut config = rig.envoy_config(&[&a, &b], maps.addr);
    // The stand-in map server serves no endpoints: a fixed fleet cluster.
    config.fleet_endpoints = e2e::envoy_config::FleetEndpoints::Static;
    config.plugin_config = json!({"affinity_header": "x-chat", "cooldown_ms": 60000});
    let envoy = rig.envoy(&config, 1).await?;
    wait_for_map(&envoy).await?;
    let show = r#"{"model":"llama3"}"#;
    let mut on_b = None;
    for chat in 0..32 {
        let id = format!("c{chat}");
        let (_, who, _) = send(&envoy, "POST", "/api/show", &[("x-chat", &id)], Some(show)).await?;
        if who.as_deref() == Some("b") {
            on_b = Some(id);
            break;
        }
    }
    let chat = on_b.expect("some conversation hashes to b");
    let mut resp = e2e::http()
        .post(format!("{}/api/generate", envoy.url))
        .header("x-chat", &chat)
        .body(r#"{"model":"llama3","prompt":"hi"}"#)
        .send()
        .await?;
    assert_eq!(resp.headers()["x-emu-instance"], "b");
    assert!(resp.chunk().await?.is_some(), "the stream started");
    rig.kill(b.proc);
    while let Ok(Some(_)) = resp.chunk().await {}
    // b comes back on its port, but stays in cool-down.
    rig.emulator_on("b", &b.addr.to_string(), &slow).await?;
    let (status, who, _) = send(
        &envoy,
        "POST",
        "/api/show",
        &[("x-chat", &chat)],
        Some(show),
    )
    .await?;
    assert_eq!((status, who.as_deref()), (200, Some("a")));
    assert_eq!(envoy.stat("wasmcustom.ollama_lb.inflight.b").await, Some(0));
    Ok(())
}
