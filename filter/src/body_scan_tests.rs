use super::*;

const FIELDS: &[&str] = &["model", "name"];

fn scan_chunks(chunks: &[&[u8]]) -> Result<Fields, ScanError> {
    let mut s = BodyScanner::new(FIELDS);
    let mut done = false;
    for c in chunks {
        done = s.feed(c);
    }
    if !done {
        s.finish();
    }
    s.result().expect("finished scanner has a result")
}

fn scan(body: &[u8]) -> Result<Fields, ScanError> {
    scan_chunks(&[body])
}

/// The model field's trimmed value, or the error text.
fn model(body: &str) -> Result<Option<String>, String> {
    match scan(body.as_bytes()) {
        Ok(f) => Ok(f[0].as_ref().and_then(|v| v.trimmed.clone())),
        Err(e) => Err(e
            .go_message("api", "GenerateRequest")
            .unwrap_or_else(|| "EOF".into())),
    }
}

fn ok(s: &str) -> Result<Option<String>, String> {
    Ok(Some(s.to_string()))
}

fn err(s: &str) -> Result<Option<String>, String> {
    Err(s.to_string())
}

#[test]
fn plain_bodies() {
    assert_eq!(model(r#"{"model":"llama3","prompt":"hi"}"#), ok("llama3"));
    assert_eq!(model(r#"  {"prompt":"hi", "model" : "m" }  "#), ok("m"));
    assert_eq!(model(r#"{"prompt":"hi"}"#), Ok(None));
    assert_eq!(model("{}"), Ok(None));
    assert_eq!(model("null"), Ok(None), "top-level null is an empty struct");
}

#[test]
fn go_key_folding_and_duplicates() {
    assert_eq!(model(r#"{"Model":"a"}"#), ok("a"));
    assert_eq!(model(r#"{"MODEL":"a"}"#), ok("a"));
    assert_eq!(model(r#"{"mod\u0065l":"a"}"#), ok("a"));
    assert_eq!(model(r#"{"model":"a","model":"b"}"#), ok("b"), "last wins");
    assert_eq!(
        model(r#"{"model":"a","model":null}"#),
        ok("a"),
        "null is ignored"
    );
    assert_eq!(model(r#"{"model":"a","Model":""}"#), ok(""));
    assert_eq!(model(r#"{"modelx":"a","mode":"b"}"#), Ok(None));
    assert_eq!(
        model(r#"{"options":{"model":"x"},"model":"y"}"#),
        ok("y"),
        "nested keys are not fields"
    );
    assert_eq!(model(r#"{"messages":[{"model":"x"}]}"#), Ok(None));
    let f = scan("{\"nam\u{212a}\":1,\"na\u{17f}e\":2,\"NAME\":\"n\"}".as_bytes()).unwrap();
    assert_eq!(
        f[1].as_ref().and_then(|v| v.trimmed.clone()).as_deref(),
        Some("n")
    );
    let f = scan("{\"ſource\":\"s\"}".as_bytes());
    assert!(f.is_ok());
}

#[test]
fn unicode_folding_for_source() {
    static SRC: &[&str] = &["source"];
    let mut s = BodyScanner::new(SRC);
    s.feed("{\"\u{17f}OURCE\":\"m\"}".as_bytes());
    let f = s.result().unwrap().unwrap();
    assert_eq!(f[0].as_ref().unwrap().trimmed.as_deref(), Some("m"));
    let mut s = BodyScanner::new(&["keep"]);
    s.feed("{\"\u{212a}eep\":\"m\"}".as_bytes());
    assert_eq!(
        s.result().unwrap().unwrap()[0].as_ref().unwrap().verbatim,
        "m"
    );
}

#[test]
fn string_decoding() {
    assert_eq!(model(r#"{"model":"ll\u0061ma3"}"#), ok("llama3"));
    assert_eq!(model(r#"{"model":"a\/b"}"#), ok("a/b"));
    assert_eq!(model(r#"{"model":"\ud83d\ude00"}"#), ok("😀"));
    assert_eq!(model(r#"{"model":"\ud83dx"}"#), ok("\u{fffd}x"));
    assert_eq!(model(r#"{"model":"\u0020 m\t\n"}"#), ok("m"), "trimmed");
    assert_eq!(
        model("{\"model\":\"\u{a0}m\u{3000}\"}"),
        ok("m"),
        "Unicode spaces trimmed"
    );
    assert_eq!(
        scan(b"{\"model\":\"a\xffb\"}").unwrap()[0]
            .as_ref()
            .unwrap()
            .verbatim,
        "a\u{fffd}b"
    );
    let padded = format!(
        "{{\"model\":\"{}llama3{}\"}}",
        " ".repeat(5000),
        "\\n".repeat(5000)
    );
    assert_eq!(
        model(&padded),
        ok("llama3"),
        "long padding does not hide a valid name"
    );
    let long = format!("{{\"model\":\"{}\"}}", "x".repeat(5000));
    assert_eq!(model(&long), Ok(None), "overlong: no trimmed value");
    let f = scan(long.as_bytes()).unwrap();
    assert!(!f[0].as_ref().unwrap().is_empty);
}

#[test]
fn trailing_bytes_after_the_first_value_are_ignored() {
    assert_eq!(model(r#"{"model":"a"} garbage {"#), ok("a"));
    assert_eq!(model(r#"{"model":"a"}{"model":"b"}"#), ok("a"));
    assert_eq!(
        model("[1]x"),
        err("json: cannot unmarshal array into Go value of type api.GenerateRequest")
    );
    assert_eq!(
        model("12x"),
        err("json: cannot unmarshal number into Go value of type api.GenerateRequest")
    );
    assert_eq!(
        model("12"),
        err("json: cannot unmarshal number into Go value of type api.GenerateRequest")
    );
    assert_eq!(
        model(r#""s""#),
        err("json: cannot unmarshal string into Go value of type api.GenerateRequest")
    );
    assert_eq!(
        model("true"),
        err("json: cannot unmarshal bool into Go value of type api.GenerateRequest")
    );
}

#[test]
fn type_errors() {
    let t = |k: &str| {
        format!(
            "json: cannot unmarshal {k} into Go struct field GenerateRequest.model of type string"
        )
    };
    assert_eq!(model(r#"{"model":5}"#), Err(t("number")));
    assert_eq!(model(r#"{"model":true}"#), Err(t("bool")));
    assert_eq!(model(r#"{"model":{"a":1}}"#), Err(t("object")));
    assert_eq!(model(r#"{"model":[]}"#), Err(t("array")));
    assert_eq!(
        model(r#"{"model":5,"model":"a"}"#),
        Err(t("number")),
        "Go keeps the first error"
    );
    assert_eq!(
        model(r#"{"model":5,"x":}"#),
        err("invalid character '}' looking for beginning of value"),
        "syntax first"
    );
    assert_eq!(
        model(r#"{"stream":"x","model":"a"}"#),
        ok("a"),
        "other fields are Ollama's business"
    );
}

#[test]
fn syntax_errors_with_go_texts() {
    let cases = [
        ("", "EOF"),
        ("   \n\t", "EOF"),
        ("x", "invalid character 'x' looking for beginning of value"),
        (
            "{x",
            "invalid character 'x' looking for beginning of object key string",
        ),
        ("{\"a\" 1", "invalid character '1' after object key"),
        (
            "{\"a\":1 2",
            "invalid character '2' after object key:value pair",
        ),
        ("[1 2", "invalid character '2' after array element"),
        (
            "{\"a\":\"\n\"}",
            "invalid character '\\n' in string literal",
        ),
        (
            "{\"a\":\"\x01\"}",
            "invalid character '\\x01' in string literal",
        ),
        (
            "{\"a\":01}",
            "invalid character '1' after object key:value pair",
        ),
        ("{\"a\":-x}", "invalid character 'x' in numeric literal"),
        (
            "{\"a\":1.}",
            "invalid character '}' after decimal point in numeric literal",
        ),
        (
            "{\"a\":1e}",
            "invalid character '}' in exponent of numeric literal",
        ),
        (
            "{\"a\":tru}",
            "invalid character '}' in literal true (expecting 'e')",
        ),
        (
            "{\"a\":fx}",
            "invalid character 'x' in literal false (expecting 'a')",
        ),
        (
            "{\"a\":nUll}",
            "invalid character 'U' in literal null (expecting 'u')",
        ),
        (
            "{\"a\":\"\\x\"}",
            "invalid character 'x' in string escape code",
        ),
        (
            "{\"a\":\"\\u12g4\"}",
            "invalid character 'g' in \\u hexadecimal character escape",
        ),
        (
            "{'a':1}",
            "invalid character '\\'' looking for beginning of object key string",
        ),
        (
            "{\"a\":\"b\"\"}",
            "invalid character '\"' after object key:value pair",
        ),
        (
            "\u{e9}",
            "invalid character 'Ã' looking for beginning of value",
        ),
        (
            "{\"model\":\"a\",}",
            "invalid character '}' looking for beginning of object key string",
        ),
        (
            "[1,]",
            "invalid character ']' looking for beginning of value",
        ),
        ("{\"model\":\"a\"", "unexpected EOF"),
        ("{\"model\":", "unexpected EOF"),
        ("[", "unexpected EOF"),
        ("-", "unexpected EOF"),
        ("nul", "unexpected EOF"),
        ("\"abc", "unexpected EOF"),
        (
            "{\"a\":\\",
            "invalid character '\\\\' looking for beginning of value",
        ),
        (
            "{\"a\":+1}",
            "invalid character '+' looking for beginning of value",
        ),
        (
            "{\"a\":.5}",
            "invalid character '.' looking for beginning of value",
        ),
        (
            "\u{feff}{}",
            "invalid character 'ï' looking for beginning of value",
        ),
        ("{\"a\":1}\u{0}", "json: ok"),
    ];
    for (body, expected) in cases {
        let got = model(body);
        if expected == "json: ok" {
            assert!(got.is_ok(), "{body:?}: {got:?}");
        } else {
            assert_eq!(got, err(expected), "{body:?}");
        }
    }
}

#[test]
fn numbers_and_literals_that_are_valid() {
    for v in [
        "0", "-0", "1.5e10", "-2E-3", "1e+2", "123", "0.0", "true", "false", "null", "\"\"", "[]",
        "{}", "[[],{}]",
    ] {
        let body = format!("{{\"x\":{v},\"model\":\"m\"}}");
        assert_eq!(model(&body), ok("m"), "{body}");
    }
}

#[test]
fn nesting_limit_is_goes() {
    let deep = |n: usize| {
        format!(
            "{{\"model\":\"m\",\"x\":{}{}}}",
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    assert_eq!(
        model(&deep(9_999)),
        ok("m"),
        "top object + 9999 arrays = 10000 levels"
    );
    assert_eq!(
        model(&deep(10_000)),
        err("invalid character '[' exceeded max depth")
    );
    assert_eq!(
        model(&"[".repeat(200_000)),
        err("invalid character '[' exceeded max depth")
    );
}

#[test]
fn the_model_may_come_last_in_a_big_body() {
    let prompt = "a".repeat(20 << 20);
    let body =
        format!("{{\"prompt\":\"{prompt}\",\"options\":{{\"x\":[1,2,3]}},\"model\":\"big\"}}");
    let chunks: Vec<&[u8]> = body.as_bytes().chunks(64 << 10).collect();
    let f = scan_chunks(&chunks).unwrap();
    assert_eq!(f[0].as_ref().unwrap().trimmed.as_deref(), Some("big"));
}

/// Every split of every body into two and three chunks gives the whole-body
/// outcome.
#[test]
fn chunk_boundaries_never_change_the_outcome() {
    let bodies: &[&[u8]] = &[
        br#"{"model":"llama3","prompt":"hi"}"#,
        br#" { "MODEL" : "\ud83d\ude00x\u0041" , "name":"n" } trailing"#,
        b"{\"model\":\"a\xe2\x82\xacb\xff\",\"x\":[1.5e-3,true,null,{\"y\":\"\\\"\"}]}",
        br#"{"model":"a","model":null,"na\u006de":"z"}"#,
        "{\"\u{17f}\":1,\"mod\u{212a}\":2,\"model\":\"  padded  \"}".as_bytes(),
        br#"{"model":12}"#,
        br#"{"model":"a",}"#,
        br#"{"model":"a""#,
        b"123",
        b"-1.0e+5 ",
        b"nul",
        b"   ",
        br#"[{"model":"x"}]"#,
        br#"{"a":"\ud800\udc00\udc00\u00e9"}"#,
    ];
    for body in bodies {
        let whole = scan(body);
        for i in 0..=body.len() {
            assert_eq!(
                scan_chunks(&[&body[..i], &body[i..]]),
                whole,
                "{:?} split at {i}",
                String::from_utf8_lossy(body)
            );
            for j in i..=body.len() {
                assert_eq!(scan_chunks(&[&body[..i], &body[i..j], &body[j..]]), whole);
            }
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(scan_chunks(&bytes), whole);
    }
}

#[test]
fn no_input_panics() {
    // A cheap deterministic fuzz: random bytes from a JSON-ish alphabet.
    let alphabet = b"{}[]:,\"\\u0123456789abcdefnrtlse-+.E \n\xff\xc3\xa9modelMODEL";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let len = (x % 40) as usize;
        let body: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                alphabet[(x % alphabet.len() as u64) as usize]
            })
            .collect();
        let whole = scan(&body);
        let mid = len / 2;
        assert_eq!(scan_chunks(&[&body[..mid], &body[mid..]]), whole);
    }
}

/// Random JSON-ish text: valid documents with a few random byte edits.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[(self.next() % options.len() as u64) as usize]
    }

    fn value(&mut self, out: &mut String, depth: u32) {
        match self.next() % if depth > 3 { 4 } else { 6 } {
            0 => out.push_str(self.pick(&["0", "-1", "12.5", "3e7", "-0.25E-2", "7"])),
            1 => out.push_str(self.pick(&["true", "false", "null"])),
            2 | 3 => {
                let s = self.pick(&[
                    r#""m""#,
                    r#""llama3""#,
                    r#""""#,
                    r#""a\"b""#,
                    r#""\u0041\n""#,
                    r#"" x ""#,
                    r#""\ud83d\ude00é""#,
                    r#""\/\b\f\r\t""#,
                ]);
                out.push_str(s);
            }
            4 => {
                out.push('[');
                for i in 0..self.next() % 3 {
                    if i > 0 {
                        out.push(',');
                    }
                    self.value(out, depth + 1);
                }
                out.push(']');
            }
            _ => self.object(out, depth + 1),
        }
    }

    fn object(&mut self, out: &mut String, depth: u32) {
        out.push('{');
        for i in 0..self.next() % 4 {
            if i > 0 {
                out.push(',');
            }
            out.push_str(self.pick(&["\"model\"", "\"name\"", "\"prompt\"", "\"x\""]));
            out.push_str(self.pick(&[":", " : "]));
            self.value(out, depth);
        }
        out.push('}');
    }

    fn mutate(&mut self, doc: &mut Vec<u8>) {
        const BYTES: &[u8] = b"{}[]:,\"\\ 0e.-tnu";
        for _ in 0..self.next() % 3 {
            let at = (self.next() % (doc.len() as u64 + 1)) as usize;
            let b = BYTES[(self.next() % BYTES.len() as u64) as usize];
            match self.next() % 3 {
                0 if at < doc.len() => doc[at] = b,
                1 if at < doc.len() => {
                    doc.remove(at);
                }
                _ => doc.insert(at, b),
            }
        }
    }
}

/// Differential test against serde_json, which follows the same RFC 8259
/// grammar for documents starting with `{` or `[`: valid documents give a
/// result, invalid ones a syntax error, and the model matches serde's
/// `model` (only lowercase keys are generated, so no folding is involved).
#[test]
fn agrees_with_serde_json_on_validity_and_value() {
    let mut g = Gen(0x1234_5678_9abc_def1);
    for _ in 0..30_000 {
        let mut doc = String::new();
        g.object(&mut doc, 0);
        let mut doc = doc.into_bytes();
        let mutated = g.next() % 2 == 0;
        if mutated {
            g.mutate(&mut doc);
        }
        // serde_json rejects invalid UTF-8 and lone surrogates; Go does not.
        let Ok(text) = std::str::from_utf8(&doc) else {
            continue;
        };
        if mutated && text.contains("\\ud") {
            continue;
        }
        let first = doc.iter().find(|b| !b.is_ascii_whitespace());
        if !matches!(first, Some(b'{') | Some(b'[')) {
            continue;
        }
        let theirs = serde_json::Deserializer::from_slice(&doc)
            .into_iter::<serde_json::Value>()
            .next();
        let ours = scan(&doc);
        match theirs {
            Some(Ok(v)) => {
                let ok = match (&ours, v.is_object()) {
                    (Ok(_), true) => true,
                    (Err(ScanError::TopLevel("array")), false) => true,
                    (Err(ScanError::FieldType { field, .. }), true) => {
                        // Go keeps the first type error even when a later
                        // duplicate is a string; serde only sees the last.
                        let dup = text.matches(&format!("\"{field}\"")).count() > 1;
                        dup || (!v[field].is_string() && !v[field].is_null())
                    }
                    _ => false,
                };
                assert!(ok, "{text}: serde {v}, ours {ours:?}");
                if let (Ok(f), Some(m)) = (&ours, v.get("model").and_then(|m| m.as_str())) {
                    assert_eq!(
                        f[0].as_ref().map(|x| x.verbatim.as_str()),
                        Some(m),
                        "{text}"
                    );
                }
            }
            Some(Err(e)) => {
                assert!(
                    matches!(
                        ours,
                        Err(ScanError::Syntax(_)) | Err(ScanError::UnexpectedEof)
                    ),
                    "{text}: serde says {e}, ours {ours:?}"
                );
            }
            None => assert!(matches!(ours, Err(ScanError::Empty)), "{text}"),
        }
    }
}

/// Every body the Go oracle once disagreed on gets Ollama's outcome.
#[test]
fn fuzz_corpus_gets_ollamas_outcome() {
    use crate::endpoint::{classify, Endpoint};
    let corpus = include_str!("body_scan/fuzz_corpus.txt");
    let mut failures = Vec::new();
    for line in corpus
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut parts = line.splitn(3, '\t');
        let (Some(path), Some(want), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("corpus line without three fields: {line}");
        };
        let method = if path == "/api/delete" {
            "DELETE"
        } else {
            "POST"
        };
        let Endpoint::Body(route) = classify(method, path) else {
            panic!("{path} is not a body route");
        };
        let mut s = BodyScanner::for_route(route);
        if !s.feed(body.as_bytes()) {
            s.finish();
        }
        let got = match route.model(s.result().expect("an outcome")) {
            Ok(m) => format!("model:{}", m.verbatim),
            Err(e) => e.message(route.api),
        };
        if got != want {
            failures.push(format!("{path} {body}\n  got  {got}\n  want {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The fast path through image strings counts alphabet runs at once; the
/// outcome must be the one the character-by-character check gives,
/// wherever the chunks split and whatever escapes the string holds.
#[test]
fn image_fast_path_agrees_with_the_character_check() {
    use crate::endpoint::{classify, Endpoint};
    let Endpoint::Body(route) = classify("POST", "/api/generate") else {
        panic!("/api/generate is a body route");
    };
    let images = [
        "aGVsbG8=",
        "aGVsbG8",
        "aGVs\\nbG8=",
        "aG\\u0056sbA==",
        "aGVsbA=x",
        "aGV=sbA",
        "aGVs\\u00e9",
        "caf\u{e9}YWJj",
        "YWJj\\ud83dYWJj",
        "YWJjZA==\\r\\n",
    ];
    for image in images {
        let body = format!(r#"{{"model":"m","images":["{image}"]}}"#);
        // Go turns a lone surrogate into U+FFFD; serde_json refuses it.
        let decoded: String = serde_json::from_str(&format!("\"{image}\""))
            .unwrap_or_else(|_| image.replace("\\ud83d", "\u{fffd}"));
        let mut check = base64::Base64Check::default();
        for c in decoded.chars() {
            crate::go_string::CharSink::push(&mut check, c);
        }
        let want = check.error_offset();
        for split in 0..=body.len() {
            let (a, b) = body.as_bytes().split_at(split);
            let mut s = BodyScanner::for_route(route);
            if !(s.feed(a) || s.feed(b)) {
                s.finish();
            }
            let got = match s.result() {
                Some(Err(ScanError::Base64 { at, .. })) => Some(at),
                _ => None,
            };
            assert_eq!(got, want, "{image:?} split at {split}");
        }
    }
}
