//! An `https` instance behind a TLS server with a self-signed CA that
//! requires a bearer key: syncd polls it with the CA and the key from the
//! environment, and the balancer's Envoy (host layout: a cluster of its
//! own with upstream TLS, SNI and the `Authorization` header from Envoy's
//! environment) routes a chat to it. The same server under a wrong key is
//! marked bad with the 401 in `last_error`, and the key never appears in
//! syncd's answers or log.
//!
//! The TLS server is a second Envoy: it terminates TLS with the test's
//! certificate and forwards to an emulator only a request whose
//! `Authorization` is exactly `Bearer <key>`; anything else gets 401.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use e2e::envoy_config::{RouteBy, UpstreamTls};
use e2e::{rig, Emu, Envoy, Rig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const KEY: &str = "sk-test-4f9a1c";
const KEY_ENV: &str = "OLLAMA_LB_TEST_SECURE_KEY";
const WRONG_KEY_ENV: &str = "OLLAMA_LB_TEST_WRONG_KEY";

/// Writes a CA and a server certificate for `localhost` and 127.0.0.1
/// signed by it; returns (ca.pem, server.pem, server.key).
fn certificates(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // rcgen gives every certificate the same name by default; BoringSSL
    // (Envoy) then takes the server's for self-signed.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ollama-lb test CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let server_key = KeyPair::generate()?;
    let mut server_params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server = server_params.signed_by(&server_key, &ca, &ca_key)?;
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca.pem())?;
    std::fs::write(&paths.1, server.pem())?;
    std::fs::write(&paths.2, server_key.serialize_pem())?;
    Ok(paths)
}

/// The TLS server's bootstrap: TLS with `cert`/`key`, the emulator behind
/// it only for `Authorization: Bearer KEY`.
fn tls_server_yaml(emu: &Emu, cert: &Path, key: &Path) -> String {
    let config = json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "tls",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                            "common_tls_context": {"tls_certificates": [{
                                "certificate_chain": {"filename": cert.display().to_string()},
                                "private_key": {"filename": key.display().to_string()},
                            }]},
                        },
                    },
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "tls",
                            "route_config": {"virtual_hosts": [{
                                "name": "all",
                                "domains": ["*"],
                                "routes": [
                                    {
                                        "match": {"prefix": "/", "headers": [{
                                            "name": "authorization",
                                            "string_match": {"exact": format!("Bearer {KEY}")},
                                        }]},
                                        "route": {"cluster": "emu", "timeout": "0s"},
                                    },
                                    {
                                        "match": {"prefix": "/"},
                                        "direct_response": {
                                            "status": 401,
                                            "body": {"inline_string": "{\"error\":\"unauthorized\"}"},
                                        },
                                    },
                                ],
                            }]},
                            "http_filters": [{
                                "name": "envoy.filters.http.router",
                                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                            }],
                        },
                    }],
                }],
            }],
            "clusters": [{
                "name": "emu",
                "type": "STATIC",
                "connect_timeout": "2s",
                "load_assignment": {"cluster_name": "emu", "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {
                        "address": emu.addr.ip().to_string(), "port_value": emu.addr.port(),
                    }}},
                }]}]},
            }],
        },
    });
    // JSON is YAML.
    config.to_string()
}

async fn get_json(url: &str) -> anyhow::Result<Value> {
    Ok(e2e::http().get(url).send().await?.json().await?)
}

async fn get_text(url: &str) -> anyhow::Result<String> {
    Ok(e2e::http().get(url).send().await?.text().await?)
}

/// syncd's report of instance `name` once `check` holds for it.
async fn report_when(
    syncd: &str,
    name: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let url = format!("{syncd}/v1/instances");
    e2e::until(
        &format!("{name} reported as wanted"),
        Duration::from_secs(30),
        || {
            let url = url.clone();
            let check = &check;
            async move {
                let body = get_json(&url).await.ok()?;
                let found = body["instances"]
                    .as_array()?
                    .iter()
                    .find(|i| i["name"] == name)
                    .cloned()?;
                check(&found).then_some(found)
            }
        },
    )
    .await
}

/// POSTs a chat for `model`; (status, answering emulator, body).
async fn chat(envoy: &Envoy, model: &str) -> anyhow::Result<(u16, Option<String>, String)> {
    let body =
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": false});
    let resp = e2e::http()
        .post(format!("{}/api/chat", envoy.url))
        .json(&body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let instance = resp
        .headers()
        .get("x-emu-instance")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((status, instance, resp.text().await?))
}

#[tokio::test]
async fn https_instance_with_a_bearer_key_is_polled_and_routed() -> anyhow::Result<()> {
    let mut rig = Rig::new("tls_instances");
    rig.env = vec![
        (KEY_ENV.into(), KEY.into()),
        (WRONG_KEY_ENV.into(), "sk-wrong".into()),
    ];
    let (ca, cert, key) = certificates(&rig.dir)?;
    let secure = rig.emulator("secure", &["--loaded", "llama3"]).await?;
    let plain = rig.emulator("plain", &["--model", "mistral"]).await?;
    let tls_server = Envoy::start_yaml(&mut rig, &tls_server_yaml(&secure, &cert, &key), 1).await?;
    let tls_port = tls_server
        .url
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .ok_or_else(|| anyhow::anyhow!("no port in {}", tls_server.url))?;

    // The same server twice: by name with the right key, by IP with a
    // wrong one (so the CA's IP SAN is checked too).
    let file = rig.dir.join("instances.toml");
    let ca_text = ca.display().to_string();
    std::fs::write(
        &file,
        format!(
            "[[instance]]\nname = \"secure\"\nurl = \"https://localhost:{tls_port}\"\n\
             ca_file = {ca_text:?}\nbearer_token_env = \"{KEY_ENV}\"\n\n\
             [[instance]]\nname = \"wrong_key\"\nurl = \"https://127.0.0.1:{tls_port}\"\n\
             ca_file = {ca_text:?}\nbearer_token_env = \"{WRONG_KEY_ENV}\"\n"
        ),
    )?;
    let file_arg = file.display().to_string();
    let syncd = rig.syncd(&[&plain], &["--config", &file_arg]).await?;

    let good = report_when(&syncd.url, "secure", |i| i["healthy"] == true).await?;
    assert_eq!(good["models"], 1, "{good}");
    let bad = report_when(&syncd.url, "wrong_key", |i| i["polled"] == true).await?;
    assert_eq!(bad["healthy"], false, "{bad}");
    let error = bad["last_error"].as_str().unwrap_or("");
    assert!(
        error.contains("HTTP 401") && error.contains("unauthorized"),
        "{bad}"
    );
    let map = get_json(&format!("{}/v1/map", syncd.url)).await?;
    let holders: Vec<&str> = map["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["name"].as_str().is_some_and(|n| n.starts_with("llama3")))
        .flat_map(|m| m["replicas"].as_array().into_iter().flatten())
        .filter_map(|r| r["instance"].as_str())
        .collect();
    assert_eq!(holders, ["secure"], "{map}");

    // The balancer: a cluster per instance, TLS and the key for the
    // secure ones (the key from Envoy's environment, not the file).
    let mut config = rig.envoy_config(&[&plain], syncd.addr);
    config.route_by = RouteBy::Host;
    for (name, host, env) in [
        ("secure", "localhost", KEY_ENV),
        ("wrong_key", "127.0.0.1", WRONG_KEY_ENV),
    ] {
        let mut u = rig::upstream(name, ([127, 0, 0, 1], tls_port).into());
        u.host = host.into();
        u.tls = Some(UpstreamTls {
            ca_file: Some(ca_text.clone()),
        });
        u.bearer_token_env = Some(env.into());
        config.instances.push(u);
    }
    config.plugin_config = json!({"long_poll_seconds": 2});
    let yaml = config.to_yaml();
    assert!(!yaml.contains(KEY), "the key is in the bootstrap");
    let envoy = rig.envoy(&config, 1).await?;
    let routed = e2e::until(
        "llama3 routed to secure",
        Duration::from_secs(30),
        || async {
            chat(&envoy, "llama3")
                .await
                .ok()
                .filter(|(status, _, _)| *status == 200)
        },
    )
    .await?;
    assert_eq!(routed.1.as_deref(), Some("secure"), "{routed:?}");
    assert!(routed.2.contains("\"done\":true"), "{routed:?}");
    let (status, instance, body) = chat(&envoy, "mistral").await?;
    assert_eq!(
        (status, instance.as_deref()),
        (200, Some("plain")),
        "{body}"
    );

    for path in ["/v1/instances", "/v1/map", "/metrics"] {
        let text = get_text(&format!("{}{path}", syncd.url)).await?;
        assert!(!text.contains(KEY), "{path} shows the key");
    }
    assert!(
        !rig.output_of(syncd.proc).contains(KEY),
        "syncd logged the key"
    );
    Ok(())
}
