//! What the body scan's kind checks cost per request: each body is scanned
//! for its model only (as before the checks) and for every field of its
//! route, and the time per scan and the ratio are printed. Run with
//! `cargo run --release -p filter --example scan_cost`; it prints figures,
//! it asserts nothing.

use std::time::Instant;

use filter::body_scan::BodyScanner;
use filter::conversation::{key_of, Source};
use filter::endpoint::{classify, Endpoint, Op};

fn time_per_scan(body: &[u8], scanner: impl Fn() -> BodyScanner) -> f64 {
    let iterations = (20_000_000 / body.len().max(1)).clamp(200, 200_000);
    let start = Instant::now();
    for _ in 0..iterations {
        let mut s = scanner();
        s.feed(std::hint::black_box(body));
        s.finish();
        std::hint::black_box(s.result());
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn main() {
    let long_prompt = "word ".repeat(20_000);
    // A 750 KB picture as base64 (what a vision chat sends), and an
    // options object full of numbers: the deep checks read both.
    let image = "aGVsbG8gd29ybGQh".repeat(64_000);
    let options: Vec<String> = (0..200).map(|i| format!("\"k{i}\":{i}.5")).collect();
    // Ten tool definitions and a tool call: the nested checks read them.
    let tool = r#"{"type":"function","function":{"name":"get_weather","description":"Get the weather","parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string","description":"The city"},"unit":{"type":["string","null"],"enum":["c","f"]}}}}}"#;
    let tools = [tool; 10].join(",");
    let bodies: Vec<(&str, &str, String)> = vec![
        (
            "/api/chat",
            "small chat",
            r#"{"model":"llama3","messages":[{"role":"user","content":"hi"}],"stream":false,"options":{"temperature":0.2}}"#.into(),
        ),
        (
            "/api/generate",
            "100 KB prompt",
            format!(r#"{{"model":"llama3","prompt":"{long_prompt}","stream":true,"keep_alive":"5m"}}"#),
        ),
        (
            "/api/chat",
            "chat with a 1 MB image",
            format!(
                r#"{{"model":"llava","messages":[{{"role":"user","content":"what is this?","images":["{image}"]}}]}}"#
            ),
        ),
        (
            "/api/generate",
            "generate, 200 options",
            format!(r#"{{"model":"llama3","prompt":"hi","options":{{{}}}}}"#, options.join(",")),
        ),
        (
            "/api/chat",
            "chat, 10 tools, a tool call",
            format!(
                r#"{{"model":"llama3","messages":[{{"role":"user","content":"weather?"}},{{"role":"assistant","content":"","tool_calls":[{{"function":{{"index":0,"name":"get_weather","arguments":{{"city":"Paris","unit":"c"}}}}}}]}}],"tools":[{tools}]}}"#
            ),
        ),
        (
            "/v1/chat/completions",
            "OpenAI chat, 10 messages",
            format!(
                r#"{{"model":"llama3","messages":[{}],"stream":true,"stream_options":{{"include_usage":true}},"temperature":0.7}}"#,
                [r#"{"role":"user","content":"tell me about the sea"}"#; 10].join(",")
            ),
        ),
    ];
    println!(
        "{:<28} {:>10} {:>14} {:>14} {:>7}",
        "body", "bytes", "model only ns", "all fields ns", "ratio"
    );
    for (path, label, body) in &bodies {
        let Endpoint::Body(route) = classify("POST", path) else {
            continue;
        };
        let before = time_per_scan(body.as_bytes(), || BodyScanner::new(route.fields));
        let after = time_per_scan(body.as_bytes(), || BodyScanner::for_route(route));
        println!(
            "{label:<28} {:>10} {before:>14.0} {after:>14.0} {:>7.2}",
            body.len(),
            after / before
        );
    }
    conversation_cost(&bodies);
}

/// The conversation key's walk beside the full scan, on the same bodies
/// and on a long conversation (a 4 KB system prompt and 40 turns).
fn conversation_cost(bodies: &[(&str, &str, String)]) {
    let turns: Vec<String> = (0..40)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            format!(
                r#"{{"role":"{role}","content":"turn {i} {}"}}"#,
                "words ".repeat(300)
            )
        })
        .collect();
    let long_chat = format!(
        r#"{{"model":"llama3","messages":[{{"role":"system","content":"{}"}},{}],"stream":true}}"#,
        "rules ".repeat(700),
        turns.join(",")
    );
    let mut all: Vec<(&str, &str, String)> = bodies.to_vec();
    all.push(("/api/chat", "chat, 4 KB system, 40 turns", long_chat));
    println!(
        "\n{:<28} {:>10} {:>14} {:>16}",
        "body", "bytes", "all fields ns", "conversation ns"
    );
    for (path, label, body) in &all {
        let Endpoint::Body(route) = classify("POST", path) else {
            continue;
        };
        let source = match route.op {
            Op::Chat => Source::Messages,
            _ => Source::Prompt,
        };
        let scan = time_per_scan(body.as_bytes(), || BodyScanner::for_route(route));
        let iterations = (20_000_000 / body.len().max(1)).clamp(200, 200_000);
        let start = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(key_of(source, std::hint::black_box(body.as_bytes())));
        }
        let key = start.elapsed().as_nanos() as f64 / iterations as f64;
        println!("{label:<28} {:>10} {scan:>14.0} {key:>16.0}", body.len());
    }
}
