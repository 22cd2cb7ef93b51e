//! The fuzzer's bodies: a valid Ollama body of a route, built from its
//! fields in random order, then mutated in structure (type swaps, odd keys,
//! numbers, strings, nesting) and sometimes in bytes.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// A small deterministic generator (xorshift64*), so a seed replays a run.
pub struct Gen {
    state: u64,
}

/// Fields of each route (by route number) with values Ollama accepts.
const FIELDS: [&[(&str, &[&str])]; 11] = [
    // generate
    &[
        ("model", MODELS),
        ("prompt", STRINGS),
        ("suffix", STRINGS),
        ("system", STRINGS),
        ("context", &["[1,2,3]", "[]"]),
        ("stream", BOOLS),
        ("raw", BOOLS),
        ("format", &["\"json\"", "{\"type\":\"object\"}"]),
        ("keep_alive", DURATIONS),
        ("images", IMAGES),
        ("options", OPTIONS),
        ("think", THINK),
        ("truncate", BOOLS),
        ("logprobs", BOOLS),
        ("top_logprobs", &["0", "5", "20"]),
    ],
    // chat
    &[
        ("model", MODELS),
        ("messages", MESSAGES),
        ("stream", BOOLS),
        ("format", &["\"json\""]),
        ("keep_alive", DURATIONS),
        ("tools", TOOLS),
        ("options", OPTIONS),
        ("think", THINK),
        ("top_logprobs", &["1"]),
    ],
    // embed
    &[
        ("model", MODELS),
        ("input", &["\"hi\"", "[\"a\",\"b\"]", "[]", "\"\""]),
        ("keep_alive", DURATIONS),
        ("truncate", BOOLS),
        ("dimensions", &["0", "256"]),
        ("options", OPTIONS),
    ],
    // embeddings
    &[
        ("model", MODELS),
        ("prompt", STRINGS),
        ("keep_alive", DURATIONS),
        ("options", OPTIONS),
    ],
    // show
    &[
        ("model", MODELS),
        ("name", MODELS),
        ("system", STRINGS),
        ("verbose", BOOLS),
        ("options", OPTIONS),
    ],
    // push
    &[
        ("model", MODELS),
        ("name", MODELS),
        ("insecure", BOOLS),
        ("stream", BOOLS),
    ],
    // delete
    &[("model", MODELS), ("name", MODELS)],
    // copy
    &[("source", MODELS), ("destination", MODELS)],
    // openai chat
    &[
        ("model", MODELS),
        ("messages", OA_MESSAGES),
        ("stream", BOOLS),
        ("stream_options", &["{\"include_usage\":true}"]),
        ("max_tokens", &["16"]),
        ("seed", &["42"]),
        ("stop", &["\"x\"", "[\"x\",\"y\"]"]),
        ("temperature", &["0.7", "1"]),
        ("top_p", &["0.9"]),
        ("response_format", &["{\"type\":\"json_object\"}"]),
        ("tools", TOOLS),
        ("reasoning", &["{\"effort\":\"low\"}"]),
        ("reasoning_effort", &["\"high\""]),
        ("logprobs", BOOLS),
        ("top_logprobs", &["2"]),
    ],
    // openai completions
    &[
        ("model", MODELS),
        ("prompt", STRINGS),
        ("max_tokens", &["8"]),
        ("temperature", &["0.5"]),
        ("stream", BOOLS),
        ("suffix", STRINGS),
        ("logprobs", &["1"]),
    ],
    // openai embeddings
    &[
        ("model", MODELS),
        ("input", &["\"hi\"", "[\"a\"]", "[1,2]"]),
        ("dimensions", &["8"]),
        ("encoding_format", &["\"float\"", "\"base64\"", "\"FLOAT\""]),
    ],
];

const MODELS: &[&str] = &[
    "\"llama3\"",
    "\"llama3:8b\"",
    "\"  qwen2.5:0.5b \"",
    "\"\"",
    "\"Llama3:Latest\"",
    "\"llama3:local\"",
    "\"gpt-oss:20b-cloud\"",
    "\"x:local:cloud\"",
    "\"bad name\"",
    "\"hf.co/org/repo:Q4_K_M\"",
    "\"\\u006clama3\"",
    "\"ll\\u0000ama\"",
    "\"caf\u{e9}\"",
    "\"registry.example.com:5000/ns/m:tag\"",
];
const STRINGS: &[&str] = &[
    "\"hi\"",
    "\"\"",
    "\"line\\nbreak \\\"q\\\" \\ud83d\\ude00\"",
];
const BOOLS: &[&str] = &["true", "false", "null"];
const DURATIONS: &[&str] = &["\"5m\"", "-1", "0", "\"1h2m3s\"", "300", "\"-1m\"", "1.5"];
const THINK: &[&str] = &["true", "false", "\"high\"", "\"low\"", "\"max\""];
const IMAGES: &[&str] = &["[\"aGVsbG8=\"]", "[]", "[\"\"]"];
const OPTIONS: &[&str] = &[
    "{\"temperature\":0.2}",
    "{}",
    "{\"num_ctx\":4096,\"stop\":[\"x\"],\"seed\":1}",
];
const TOOLS: &[&str] = &[
    "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}}}}}]",
    "[]",
];
const MESSAGES: &[&str] = &[
    "[{\"role\":\"user\",\"content\":\"hi\"}]",
    "[]",
    "[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]}]",
    "[{\"role\":\"user\",\"content\":\"see\",\"images\":[\"aGVsbG8=\"]}]",
];
const OA_MESSAGES: &[&str] = &[
    "[{\"role\":\"user\",\"content\":\"hi\"}]",
    "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]",
    "[]",
    "[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}]",
];

/// Values of every JSON kind, odd numbers and strings, to swap in.
const SWAPS: &[&str] = &[
    "1",
    "-0",
    "01",
    "1.5",
    "1e400",
    "-1e400",
    "1e2",
    "-1",
    "21",
    "9223372036854775808",
    "2147483648",
    "0.0",
    "1.",
    "1.}",
    "-",
    "1e",
    "true",
    "false",
    "null",
    "nul",
    "tru",
    "\"\"",
    "\"x\"",
    "\"5m\"",
    "\"1x\"",
    "\"\\u00zz\"",
    "\"\\q\"",
    "\"\\ud800\"",
    "[]",
    "[1]",
    "[\"a\"]",
    "[null]",
    "[{}]",
    "[[]]",
    "{}",
    "{\"a\":1}",
    "{\"role\":1}",
    "[{\"role\":1}]",
    "[{\"content\":1}]",
    "[{\"images\":[1]}]",
    "[{\"images\":\"x\"}]",
    "[{\"images\":[\"!!\"]}]",
    "[{\"tool_calls\":{}}]",
    "[{\"tool_calls\":[{\"function\":{\"arguments\":1}}]}]",
    "[{\"tool_calls\":[{\"function\":{\"index\":1.5}}]}]",
    "[\"x\"]",
    "[1,2]",
    "\"high\"",
    "\"medium\"",
    "\"HIGH\"",
    "{\"type\":1}",
    "[{\"type\":\"function\",\"function\":1}]",
    "[{\"function\":{\"parameters\":{\"properties\":{\"a\":{\"type\":1}}}}}]",
    "{\"include_usage\":1}",
    "{\"effort\":1}",
    "[\"aGVsbG8\"]",
    "[\"a\"]",
    "[\"aGVsbG8=\",1]",
    "{\"temperature\":\"x\"}",
];

/// Keys Go matches case-insensitively, and others.
const ODD_KEYS: &[&str] = &[
    "MODEL",
    "ModeL",
    "\\u006dodel",
    "mod\\u0065l",
    "model ",
    "Name",
    "NAME",
    "SOURCE",
    "Messages",
    "KEEP_ALIVE",
    "Think",
    "OPTIONS",
    "Top_Logprobs",
    "unknown",
    "",
    "mo\u{17f}el",
    "\u{212a}eep_alive",
];

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items
            .get(self.below(items.len()))
            .copied()
            .unwrap_or("null")
    }

    /// A route number and a body for it.
    pub fn body(&mut self) -> (u8, Vec<u8>) {
        let route = self.below(FIELDS.len());
        let fields = FIELDS.get(route).copied().unwrap_or(&[]);
        let mut parts: Vec<String> = Vec::new();
        for (name, values) in fields {
            if name != &"model" && name != &"messages" && self.chance(3) {
                continue;
            }
            let key = if self.chance(12) {
                self.pick(ODD_KEYS).to_string()
            } else {
                (*name).to_string()
            };
            let value = if self.chance(5) {
                self.pick(SWAPS).to_string()
            } else {
                self.pick(values).to_string()
            };
            parts.push(format!("\"{key}\":{value}"));
            if self.chance(15) {
                let again = self.pick(values);
                parts.push(format!("\"{key}\":{again}"));
            }
        }
        self.shuffle(&mut parts);
        let mut body = format!("{{{}}}", parts.join(",")).into_bytes();
        self.mutate(&mut body);
        (route as u8, body)
    }

    fn shuffle(&mut self, parts: &mut [String]) {
        for i in (1..parts.len()).rev() {
            let j = self.below(i + 1);
            parts.swap(i, j);
        }
    }

    /// Whole-body mutations, each now and then.
    fn mutate(&mut self, body: &mut Vec<u8>) {
        match self.below(40) {
            0 => body.splice(0..0, [0xEF, 0xBB, 0xBF]).for_each(drop),
            1 => body.extend_from_slice(
                self.pick(&[" x", "}", "{}", "\n\n", "garbage", "]"])
                    .as_bytes(),
            ),
            2 => body.truncate(self.below(body.len() + 1)),
            3 => {
                let depth = [2, 100, 9_999, 10_000, 10_001][self.below(5)];
                let at = body.len().saturating_sub(1);
                let nest = format!(",\"options\":{}{}", "[".repeat(depth), "]".repeat(depth));
                body.splice(at..at, nest.bytes()).for_each(drop);
            }
            4 => self.insert_in_string(body, &[0xFF]),
            5 => self.insert_in_string(body, &[0xC3]),
            6 => self.insert_in_string(body, &[0xED, 0xA0, 0x80]),
            7 => {
                let long = "a".repeat([1_000, 1_100, 70_000][self.below(3)]);
                let at = body.len().saturating_sub(1);
                let field = format!(",\"model\":\"{long}\"");
                body.splice(at..at, field.bytes()).for_each(drop);
            }
            8 => {
                *body = self
                    .pick(&["[]", "\"x\"", "1", "true", "null", "", "  ", "{", "nul"])
                    .as_bytes()
                    .to_vec()
            }
            9..=14 => self.bytes(body),
            15 => body.splice(0..0, *b" \t\r\n").for_each(drop),
            _ => {}
        }
    }

    fn insert_in_string(&mut self, body: &mut Vec<u8>, bytes: &[u8]) {
        let quotes: Vec<usize> = body
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'"')
            .map(|(i, _)| i + 1)
            .collect();
        let at = quotes.get(self.below(quotes.len())).copied().unwrap_or(0);
        body.splice(at..at, bytes.iter().copied()).for_each(drop);
    }

    /// Byte-level mutations: flip, insert, delete, duplicate a run.
    fn bytes(&mut self, body: &mut Vec<u8>) {
        for _ in 0..=self.below(3) {
            let at = self.below(body.len());
            match self.below(4) {
                0 => {
                    if let Some(b) = body.get_mut(at) {
                        *b ^= 1 << self.below(8);
                    }
                }
                1 => {
                    let b = *b"{}[]\",:\\0123456789.-+eEtfn u"
                        .get(self.below(29))
                        .unwrap_or(&b' ');
                    body.insert(at.min(body.len()), b);
                }
                2 => {
                    if at < body.len() {
                        body.remove(at);
                    }
                }
                _ => {
                    let end = (at + self.below(16)).min(body.len());
                    let run: Vec<u8> = body.get(at..end).unwrap_or(&[]).to_vec();
                    body.splice(at..at, run).for_each(drop);
                }
            }
        }
    }
}
