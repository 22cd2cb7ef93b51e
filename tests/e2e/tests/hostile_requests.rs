//! A table of hostile requests, sent as raw HTTP/1 bytes to an emulated
//! Ollama directly and through the real Envoy with the filter, in both
//! routing modes: forged `Host` and `Origin`, encoded paths, trailing
//! slashes, huge and many headers, HTTP/1.0, large bodies chunked and not,
//! odd query strings on fleet reads. Each case expects what Ollama (the
//! emulator) answers, or the balancer's documented rule where Ollama has
//! none (its limits).

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use e2e::envoy_config::RouteBy;
use e2e::Rig;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One answer: status, headers (lowercase names), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `head` (request line and headers, `\r\n`-separated, without the
/// blank line) and `body` on a new connection, and reads the answer to
/// the connection's end (`Connection: close` is added).
async fn raw(base: &str, head: &str, body: &[u8]) -> anyhow::Result<Answer> {
    let addr = base.trim_start_matches("http://");
    let conn = tokio::net::TcpStream::connect(addr).await?;
    let (mut reader, mut writer) = conn.into_split();
    let mut request = format!("{head}\r\nConnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    // A server may answer (413, 431) and close before the body is sent:
    // write and read at once, and keep what was read before a reset.
    let write = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    drop(write.await);
    parse(&out).map_err(|e| anyhow::anyhow!("{}: {e}", head.lines().next().unwrap_or("")))
}

fn parse(bytes: &[u8]) -> anyhow::Result<Answer> {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header end in {:?}", String::from_utf8_lossy(bytes)))?;
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&rest[..end]).trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&rest[end + 2..end + 2 + size]);
        rest = &rest[(end + 4 + size).min(rest.len())..];
    }
    out
}

/// `POST path` with a JSON body and a `Content-Length`.
fn post(path: &str, host: &str, body: &str) -> (String, Vec<u8>) {
    (
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        ),
        body.as_bytes().to_vec(),
    )
}

fn get(path: &str, host: &str, extra: &str) -> String {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {host}");
    if !extra.is_empty() {
        head.push_str("\r\n");
        head.push_str(extra);
    }
    head
}

const CHAT: &str =
    r#"{"model":"llama3","messages":[{"role":"user","content":"hi"}],"stream":false}"#;

struct Fleet {
    rig: Rig,
    /// The instance holding llama3 (alone); `b` holds only qwen.
    a: e2e::Emu,
}

async fn fleet(test: &str) -> anyhow::Result<Fleet> {
    let mut rig = Rig::new(test);
    let a = rig
        .emulator(
            "a",
            &[
                "--model",
                "llama3",
                "--load-time",
                "0s",
                "--response-tokens",
                "2",
            ],
        )
        .await?;
    Ok(Fleet { rig, a })
}

async fn balancer(
    fleet: &mut Fleet,
    b: &e2e::Emu,
    route_by: RouteBy,
    max_body: u64,
) -> anyhow::Result<e2e::Envoy> {
    let a = fleet.a.clone();
    let syncd = fleet.rig.syncd(&[&a, b], &[]).await?;
    let mut config = fleet.rig.envoy_config(&[&a, b], syncd.addr);
    config.route_by = route_by;
    config.max_body_bytes = max_body;
    config.plugin_config = json!({"long_poll_seconds": 1});
    let envoy = fleet.rig.envoy(&config, 1).await?;
    let url = envoy.url.clone();
    e2e::until(
        "the filter lists both instances' models",
        Duration::from_secs(30),
        || {
            let url = url.clone();
            async move {
                let tags = e2e::http()
                    .get(format!("{url}/api/tags"))
                    .send()
                    .await
                    .ok()?;
                let text = tags.text().await.ok()?;
                (text.contains("llama3:latest") && text.contains("qwen")).then_some(())
            }
        },
    )
    .await?;
    Ok(envoy)
}

/// Cases that Ollama (the emulator, directly) and the balancer answer
/// alike: `(what, request head, body)`; status, `location`,
/// `access-control-allow-origin` and, for errors and redirects, the body
/// must be the same.
fn same_as_ollama(host: &str) -> Vec<(&'static str, String, Vec<u8>)> {
    let (chat_head, chat_body) = post("/api/chat", "evil.example", CHAT);
    let (pull_head, pull_body) = post("/api/pull", "evil.example:11434", r#"{"model":"llama3"}"#);
    let (enc_head, enc_body) = post("/api/ch%61t", host, CHAT);
    let (slash_head, slash_body) = post("/api/chat/", host, CHAT);
    let origin = |o: &str| get("/api/version", host, &format!("Origin: {o}"));
    vec![
        ("forged Host on a fleet read", get("/api/tags", "evil.example", ""), vec![]),
        ("forged Host on a routed request", chat_head, chat_body),
        ("forged Host on management", pull_head, pull_body),
        ("forged Host with port", get("/api/version", "ollama.example.com:11434", ""), vec![]),
        ("foreign Origin", origin("https://evil.example"), vec![]),
        ("look-alike Origin", origin("http://localhost.evil.com"), vec![]),
        ("local Origin with a port", origin("http://localhost:3000"), vec![]),
        ("app Origin", origin("app://ollama"), vec![]),
        (
            "foreign Origin on a routed request",
            format!("{}\r\nOrigin: https://evil.example", post("/api/chat", host, CHAT).0),
            CHAT.as_bytes().to_vec(),
        ),
        (
            "preflight from a local origin",
            format!(
                "OPTIONS /api/chat HTTP/1.1\r\nHost: {host}\r\nOrigin: http://127.0.0.1:5173\r\nAccess-Control-Request-Method: POST"
            ),
            vec![],
        ),
        ("percent-encoded routed path", enc_head, enc_body),
        ("trailing slash, GET", get("/api/tags/?x=1", host, ""), vec![]),
        ("trailing slash, POST", slash_head, slash_body),
        ("HTTP/1.0", format!("GET /api/version HTTP/1.0\r\nHost: {host}"), vec![]),
        ("HTTP/1.0 without Host", "GET /api/version HTTP/1.0".to_string(), vec![]),
        (
            "encoded model in /v1/models",
            get("/v1/models/llama3%3Alatest", host, ""),
            vec![],
        ),
    ]
}

fn compare(what: &str, direct: &Answer, through: &Answer, failures: &mut Vec<String>) {
    let mut diff = |field: &str, a: Option<&str>, b: Option<&str>| {
        if a != b {
            failures.push(format!("{what}: {field}: Ollama {a:?}, balancer {b:?}"));
        }
    };
    diff(
        "status",
        Some(&direct.status.to_string()),
        Some(&through.status.to_string()),
    );
    for h in [
        "location",
        "access-control-allow-origin",
        "access-control-allow-methods",
    ] {
        diff(h, direct.header(h), through.header(h));
    }
    if direct.status >= 300 {
        diff("body", Some(&direct.text()), Some(&through.text()));
    }
}

async fn ollama_rules_hold(
    fleet: &mut Fleet,
    envoy: &e2e::Envoy,
    mode: &str,
) -> anyhow::Result<()> {
    let host = envoy.url.trim_start_matches("http://").to_string();
    let direct_host = fleet.a.addr.to_string();
    let mut failures = Vec::new();
    for ((what, head, body), (_, direct_head, _)) in same_as_ollama(&host)
        .into_iter()
        .zip(same_as_ollama(&direct_host))
    {
        let direct = raw(&fleet.a.url, &direct_head, &body).await?;
        let through = raw(&envoy.url, &head, &body).await?;
        compare(&format!("{mode}: {what}"), &direct, &through, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        fleet.rig.logs()
    );
    Ok(())
}

async fn balancer_rules_hold(envoy: &e2e::Envoy, mode: &str) -> anyhow::Result<()> {
    let host = envoy.url.trim_start_matches("http://").to_string();
    let tags = raw(&envoy.url, &get("/api/tags", &host, ""), &[]).await?;
    assert_eq!(tags.status, 200, "{mode}");
    // Every spelling of a fleet read is the fleet read, never one
    // instance's list.
    for path in [
        "/api/%74ags",
        "/api%2Ftags",
        "/api/tags?%zz&a=1&a=2;b",
        "/api/t%61gs?",
    ] {
        let got = raw(&envoy.url, &get(path, &host, ""), &[]).await?;
        assert_eq!(
            (got.status, got.text()),
            (200, tags.text()),
            "{mode}: {path}"
        );
    }
    let ps = raw(&envoy.url, &get("/api/ps?=&&x=%00", &host, ""), &[]).await?;
    assert_eq!(ps.status, 200, "{mode}: odd query on /api/ps");
    // An encoded chat goes to the holder, every time.
    for _ in 0..6 {
        let (head, body) = post("/api/ch%61t", &host, CHAT);
        let got = raw(&envoy.url, &head, &body).await?;
        assert_eq!(got.status, 200, "{mode}: {}", got.text());
        assert_eq!(got.header("x-emu-instance"), Some("a"), "{mode}");
    }
    // Go accepts 1 MiB of headers: one big one, or many small ones.
    let big = format!("X-Big: {}", "b".repeat(100 << 10));
    let many: Vec<String> = (0..300).map(|i| format!("X-H{i}: {i}")).collect();
    for (what, extra) in [
        ("one 100 KiB header", big),
        ("300 headers", many.join("\r\n")),
    ] {
        let got = raw(&envoy.url, &get("/api/version", &host, &extra), &[]).await?;
        assert_eq!(got.status, 200, "{mode}: {what}: {}", got.text());
    }
    // Beyond Go's limit Envoy answers, in Ollama's JSON shape.
    let huge = format!("X-Huge: {}", "h".repeat(1100 << 10));
    let got = raw(&envoy.url, &get("/api/version", &host, &huge), &[]).await?;
    assert_eq!(got.status, 431, "{mode}");
    let v: serde_json::Value = serde_json::from_slice(&got.body)?;
    assert!(v["error"].is_string(), "{mode}: {}", got.text());
    // An allowed cross-origin request routed to an instance gets the CORS
    // headers from the balancer.
    let (head, body) = post("/api/chat", &host, CHAT);
    let got = raw(
        &envoy.url,
        &format!("{head}\r\nOrigin: http://localhost:3000"),
        &body,
    )
    .await?;
    assert_eq!(got.status, 200, "{mode}");
    assert_eq!(
        got.header("access-control-allow-origin"),
        Some("http://localhost:3000"),
        "{mode}"
    );
    Ok(())
}

/// Bodies over the limit get 413 in Ollama's shape (OpenAI's on `/v1`),
/// with and without a length; large ones under it are routed.
async fn body_limits_hold(envoy: &e2e::Envoy, limit: usize, mode: &str) -> anyhow::Result<()> {
    let host = envoy.url.trim_start_matches("http://").to_string();
    let padded = |size: usize| {
        let pad = "x".repeat(size);
        format!(
            r#"{{"model":"llama3","messages":[{{"role":"user","content":"hi"}}],"stream":false,"images":["{pad}"]}}"#
        )
    };
    let under = padded(limit / 2);
    let (head, body) = post("/api/chat", &host, &under);
    let got = raw(&envoy.url, &head, &body).await?;
    assert_eq!(got.status, 200, "{mode}: a large body under the limit");
    let over = padded(limit + (2 << 20));
    for path in ["/api/chat", "/v1/chat/completions"] {
        let (head, body) = post(path, &host, &over);
        let sized = raw(&envoy.url, &head, &body).await?;
        let chunked_head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"
        );
        let mut chunked = Vec::new();
        for piece in over.as_bytes().chunks(256 << 10) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let streamed = raw(&envoy.url, &chunked_head, &chunked).await?;
        for (what, got) in [("with a length", sized), ("chunked", streamed)] {
            assert_eq!(got.status, 413, "{mode} {path} {what}: {}", got.text());
            let v: serde_json::Value = serde_json::from_slice(&got.body)
                .map_err(|e| anyhow::anyhow!("{mode} {path} {what}: {e}: {}", got.text()))?;
            let message = if path.starts_with("/v1/") {
                &v["error"]["message"]
            } else {
                &v["error"]
            };
            assert!(
                message.as_str().is_some_and(|m| m.contains("too large")),
                "{mode} {path} {what}: {}",
                got.text()
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn hostile_requests_get_ollamas_answers_in_endpoints_mode() -> anyhow::Result<()> {
    let mut fleet = fleet("hostile_requests_endpoints").await?;
    let b = fleet
        .rig
        .emulator("b", &["--model", "qwen2.5:0.5b"])
        .await?;
    let limit = 4 << 20;
    let envoy = balancer(&mut fleet, &b, RouteBy::Endpoints, limit).await?;
    ollama_rules_hold(&mut fleet, &envoy, "endpoints").await?;
    balancer_rules_hold(&envoy, "endpoints").await?;
    body_limits_hold(&envoy, limit as usize, "endpoints").await?;
    Ok(())
}

#[tokio::test]
async fn hostile_requests_get_ollamas_answers_in_host_mode() -> anyhow::Result<()> {
    let mut fleet = fleet("hostile_requests_host").await?;
    let b = fleet
        .rig
        .emulator("b", &["--model", "qwen2.5:0.5b"])
        .await?;
    let limit = 4 << 20;
    let envoy = balancer(&mut fleet, &b, RouteBy::Host, limit).await?;
    ollama_rules_hold(&mut fleet, &envoy, "host").await?;
    balancer_rules_hold(&envoy, "host").await?;
    body_limits_hold(&envoy, limit as usize, "host").await?;
    Ok(())
}
