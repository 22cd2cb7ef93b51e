//! Differential fuzzing of the body scan against Go: generates and mutates
//! request bodies for every body route, asks `tools/go-oracle` (Go's
//! `encoding/json` into Ollama's request structs, and the checks Ollama
//! makes before the model lookup) what Ollama decides, and compares with
//! what the filter decides for a model nobody holds: the model read, accept
//! or reject, and the error text. Run by `scripts/fuzz-go-oracle.sh`;
//! usage: `fuzz_oracle ORACLE_BINARY [COUNT] [SEED]`. Prints counts per
//! class of disagreement with examples; not part of CI.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use filter::body_scan::BodyScanner;
use filter::endpoint::{classify, BodyRoute, Endpoint};
use filter::errors::LbError;

#[path = "fuzz_oracle/gen.rs"]
mod gen;

/// Route numbers as the oracle reads them, with the method and path.
pub const ROUTES: [(&str, &str); 11] = [
    ("POST", "/api/generate"),
    ("POST", "/api/chat"),
    ("POST", "/api/embed"),
    ("POST", "/api/embeddings"),
    ("POST", "/api/show"),
    ("POST", "/api/push"),
    ("DELETE", "/api/delete"),
    ("POST", "/api/copy"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
];

/// What one side decided.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// 400 with this text, before the model is looked at.
    Reject(String),
    /// Decoded and checked: this model string, and embed's input check
    /// (`None`: the name failed first, so the filter did not reach it).
    Model {
        model: String,
        bad_input: Option<bool>,
    },
    /// A check the oracle does not make.
    Unjudged,
}

fn parse_oracle(line: &str) -> Verdict {
    let mut parts = line.splitn(3, '\t');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("E"), Some(_status), Some(text)) => Verdict::Reject(unquote(text)),
        (Some("M"), Some(model), Some(flag)) => Verdict::Model {
            model: unquote(model),
            bad_input: Some(flag == "1"),
        },
        _ => Verdict::Reject(format!("oracle line unreadable: {line}")),
    }
}

/// Go's `strconv.Quote` undone (the oracle quotes every string).
fn unquote(q: &str) -> String {
    let inner = q
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(q);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('a') => out.push('\u{7}'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some('x') => {
                let h: String = chars.by_ref().take(2).collect();
                out.push(char::from(u8::from_str_radix(&h, 16).unwrap_or(b'?')));
            }
            Some('u') => {
                let h: String = chars.by_ref().take(4).collect();
                out.push(
                    u32::from_str_radix(&h, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .unwrap_or('?'),
                );
            }
            Some('U') => {
                let h: String = chars.by_ref().take(8).collect();
                out.push(
                    u32::from_str_radix(&h, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .unwrap_or('?'),
                );
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// The filter's decision, fed in `chunks` pieces as Envoy would.
fn filter_verdict(route: &'static BodyRoute, body: &[u8], split: usize) -> Verdict {
    let mut scanner = BodyScanner::for_route(route);
    let (a, b) = body.split_at(split.min(body.len()));
    let done = scanner.feed(a);
    if !done {
        scanner.feed(b);
    }
    scanner.finish();
    let Some(scanned) = scanner.result() else {
        return Verdict::Reject("scan ended without an outcome".into());
    };
    let model = scanned.as_ref().ok().map(|fields| {
        fields
            .iter()
            .take(route.fields.len())
            .flatten()
            .find(|v| !v.is_empty)
            .map(|v| {
                v.trimmed
                    .clone()
                    .unwrap_or_else(|| format!("<long {}>", v.verbatim.len()))
            })
            .unwrap_or_default()
    });
    match route.model(scanned) {
        Err(LbError::Middleware(m)) if m.starts_with("invalid input_audio") => Verdict::Unjudged,
        Err(
            e @ (LbError::Json(_)
            | LbError::MissingBody
            | LbError::Middleware(_)
            | LbError::TopLogprobs),
        ) => Verdict::Reject(e.message(route.api)),
        Err(LbError::InvalidInputType) => Verdict::Model {
            model: model.unwrap_or_default(),
            bad_input: Some(true),
        },
        Ok(_) => Verdict::Model {
            model: model.unwrap_or_default(),
            bad_input: Some(false),
        },
        Err(_) => Verdict::Model {
            model: model.unwrap_or_default(),
            bad_input: None,
        },
    }
}

/// Compares; the class of a disagreement, if any.
fn disagreement(go: &Verdict, ours: &Verdict) -> Option<&'static str> {
    match (go, ours) {
        (_, Verdict::Unjudged) => None,
        (Verdict::Reject(a), Verdict::Reject(b)) if a == b => None,
        (Verdict::Reject(_), Verdict::Reject(_)) => Some("error text"),
        (Verdict::Reject(_), Verdict::Model { .. }) => Some("accepted what Ollama rejects"),
        (Verdict::Model { .. }, Verdict::Reject(_)) => Some("rejected what Ollama accepts"),
        (
            Verdict::Model {
                model: a,
                bad_input: x,
            },
            Verdict::Model {
                model: b,
                bad_input: y,
            },
        ) => {
            let go_model = a.trim();
            let long = b.starts_with("<long ") && go_model.len() > 1024;
            if go_model != b.as_str() && !long {
                Some("model read")
            } else if y.is_some() && x != y {
                Some("embed input check")
            } else {
                None
            }
        }
        (Verdict::Unjudged, _) => None,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let oracle = args
        .get(1)
        .ok_or("usage: fuzz_oracle ORACLE [COUNT] [SEED]")?;
    let count: u64 = args.get(2).map_or(Ok(1_000_000), |s| s.parse())?;
    let seed: u64 = args.get(3).map_or(Ok(0x5eed), |s| s.parse())?;
    let mut child = Command::new(oracle)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u8, Vec<u8>, usize)>(65_536);
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, stdin);
        let mut g = gen::Gen::new(seed);
        for _ in 0..count {
            let (route, body) = g.body();
            let split = g.below(body.len() + 1);
            out.write_all(&[route])?;
            out.write_all(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes())?;
            out.write_all(&body)?;
            if tx.send((route, body, split)).is_err() {
                break;
            }
        }
        out.flush()
    });
    let start = Instant::now();
    let mut lines = BufReader::with_capacity(1 << 20, stdout).lines();
    let mut classes: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
    let (mut run, mut unjudged) = (0u64, 0u64);
    let routes: Vec<&'static BodyRoute> = ROUTES
        .iter()
        .filter_map(|(m, p)| match classify(m, p) {
            Endpoint::Body(r) => Some(r),
            _ => None,
        })
        .collect();
    for (route, body, split) in rx {
        let line = lines.next().ok_or("oracle ended early")??;
        let go = parse_oracle(&line);
        let r = routes.get(usize::from(route)).ok_or("route")?;
        let ours = filter_verdict(r, &body, split);
        run += 1;
        if ours == Verdict::Unjudged {
            unjudged += 1;
        }
        if let Some(class) = disagreement(&go, &ours) {
            let key = format!(
                "{class} ({})",
                ROUTES.get(usize::from(route)).map_or("", |r| r.1)
            );
            let entry = classes.entry(key).or_default();
            entry.0 += 1;
            if entry.1.len() < 4 {
                let shown: String = String::from_utf8_lossy(&body).chars().take(300).collect();
                entry.1.push(format!(
                    "body {shown:?}\n      go:   {go:?}\n      ours: {ours:?}"
                ));
            }
        }
        if run % 1_000_000 == 0 {
            eprintln!("{run} bodies, {:.0} s", start.elapsed().as_secs_f64());
        }
    }
    writer.join().map_err(|_| "writer thread")??;
    let _ = child.wait();
    println!(
        "{run} bodies in {:.1} s; {unjudged} left to checks the oracle does not make",
        start.elapsed().as_secs_f64()
    );
    let total: u64 = classes.values().map(|c| c.0).sum();
    println!("{total} disagreements");
    for (class, (n, examples)) in &classes {
        println!("  {n:>9}  {class}");
        for e in examples {
            println!("      {e}");
        }
    }
    Ok(())
}
