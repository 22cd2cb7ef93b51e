// The malformed-body table, shared by the emulator's tests (`fidelity.rs`)
// and the balancer's (`tests/e2e/tests/malformed_bodies.rs`) through
// `include!`. Bodies naming `nope` are answered by the balancer itself
// (no instance holds it); those it cannot judge without decoding deeper
// than the top-level fields name `llama3`, which the instance holds.

/// (route, body, status, message). `/v1/*` answers carry the message in
/// the OpenAI error object.
const MALFORMED: &[(&str, &[u8], u16, &str)] = &[
    ("/api/generate", b"", 400, "missing request body"),
    ("/api/generate", b"\xef\xbb\xbf{}", 400, "invalid character '\u{ef}' looking for beginning of value"),
    ("/api/generate", b"{\"model\":tru}", 400, "invalid character '}' in literal true (expecting 'e')"),
    ("/api/generate", b"{\"model\":01}", 400, "invalid character '1' after object key:value pair"),
    ("/api/generate", b"{\"model\":\"m\",\"options\":{\"t\":1.}}", 400, "invalid character '}' after decimal point in numeric literal"),
    ("/api/generate", b"{\"model\":\"m\",\"prompt\":\"\\q\"}", 400, "invalid character 'q' in string escape code"),
    ("/api/generate", b"{\"model\":\"llama3\",\"options\":{\"t\":1e400}}", 400, "json: cannot unmarshal number 1e400 into Go struct field GenerateRequest.options of type float64"),
    ("/api/generate", b"{\"model\":\"nope\",\"top_logprobs\":1.5}", 400, "json: cannot unmarshal number 1.5 into Go struct field GenerateRequest.top_logprobs of type int"),
    ("/api/generate", b"{\"model\":\"llama3\",\"context\":[1,\"a\"]}", 400, "json: cannot unmarshal string into Go struct field GenerateRequest.context of type int"),
    ("/api/generate", b"{\"model\":\"nope\",\"think\":\"extreme\"}", 400, "invalid think value: \"extreme\" (must be \"high\", \"medium\", \"low\", \"max\", true, or false)"),
    ("/api/generate", b"{\"model\":\"nope\",\"think\":1}", 400, "think must be a boolean or string (\"high\", \"medium\", \"low\", \"max\", true, or false)"),
    ("/api/generate", b"[]", 400, "json: cannot unmarshal array into Go value of type api.GenerateRequest"),
    ("/api/generate", b"{\"model\":\"nope\",\"prompt\":\"x\"} trailing", 404, "model 'nope' not found"),
    ("/api/chat", b"{\"model\":\"nope\",\"messages\":[{\"role\":1}]}", 400, "json: cannot unmarshal number into Go struct field ChatRequest.messages.role of type string"),
    ("/api/chat", b"{\"model\":\"nope\",\"messages\":[\"hi\"]}", 400, "json: cannot unmarshal string into Go struct field ChatRequest.messages of type api.Alias"),
    ("/api/chat", b"{\"model\":\"nope\",\"messages\":{}}", 400, "json: cannot unmarshal object into Go struct field ChatRequest.messages of type []api.Message"),
    ("/api/chat", b"{\"model\":\"nope\",\"stream\":\"no\"}", 400, "json: cannot unmarshal string into Go struct field ChatRequest.stream of type bool"),
    ("/api/embed", b"{\"model\":\"nope\",\"input\":\"x\"}", 404, "model \"nope\" not found, try pulling it first"),
    ("/api/embed", b"{\"model\":\"nope\",\"dimensions\":\"8\"}", 400, "json: cannot unmarshal string into Go struct field EmbedRequest.dimensions of type int"),
    ("/api/embeddings", b"{\"model\":\"nope\",\"prompt\":\"x\"}", 404, "model \"nope\" not found, try pulling it first"),
    ("/api/show", b"{\"model\":5}", 400, "json: cannot unmarshal number into Go struct field ShowRequest.model of type string"),
    ("/v1/chat/completions", b"", 400, "EOF"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[]}", 400, "[] is too short - 'messages'"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "invalid message content type: float64"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", 400, "invalid message format"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":5}]}", 400, "json: cannot unmarshal number into Go struct field Message.messages.role of type string"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream_options\":true}", 400, "json: cannot unmarshal bool into Go struct field ChatCompletionRequest.stream_options of type openai.StreamOptions"),
    ("/v1/completions", b"{\"model\":\"nope\",\"stream_options\":{\"include_usage\":\"yes\"}}", 400, "json: cannot unmarshal string into Go struct field StreamOptions.stream_options.include_usage of type bool"),
    ("/v1/embeddings", b"{\"model\":\"nope\"}", 400, "invalid input"),
    ("/v1/embeddings", b"{\"model\":\"nope\",\"input\":[]}", 400, "invalid input"),
    ("/v1/embeddings", b"{\"model\":\"nope\",\"input\":\"x\",\"encoding_format\":\"int8\"}", 400, "Invalid value for 'encoding_format' = int8. Supported values: ['float', 'base64']."),
    ("/api/chat", b"{\"model\":\"x:local:cloud\"}", 400, "use either :local or :cloud, not both: \"x:local:cloud\""),
    ("/api/chat", b"{\"model\":\"nope\",\"messages\":[],\"think\":[]}", 400, "think must be a boolean or string (\"high\", \"medium\", \"low\", \"max\", true, or false)"),
    ("/api/embed", b"{\"model\":\"nope\",\"input\":5}", 400, "invalid input type"),
    ("/api/generate", b"{\"model\":\"nope\",\"stream\":1}", 400, "json: cannot unmarshal number into Go struct field GenerateRequest.stream of type bool"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 404, "model 'nope' not found"),
    ("/v1/embeddings", b"{\"model\":\"nope\",\"input\":\"x\"}", 404, "model \"nope\" not found, try pulling it first"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream_options\":true}", 400, "json: cannot unmarshal bool into Go struct field ChatCompletionRequest.stream_options of type openai.StreamOptions"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{}],\"temperature\":1e400}", 400, "json: cannot unmarshal number 1e400 into Go struct field ChatCompletionRequest.temperature of type float64"),
    ("/v1/completions", b"{\"model\":\"nope\",\"temperature\":1e39}", 400, "json: cannot unmarshal number 1e39 into Go struct field CompletionRequest.temperature of type float32"),
    ("/api/generate", b"{\"model\":\"nope\",\"top_logprobs\":99999999999999999999}", 400, "json: cannot unmarshal number 99999999999999999999 into Go struct field GenerateRequest.top_logprobs of type int"),
    ("/api/chat", b"{\"model\":\"nope\",\"stream\":\"x\",\"think\":\"max \"}", 400, "invalid think value: \"max \" (must be \"high\", \"medium\", \"low\", \"max\", true, or false)"),
    ("/api/chat", b"{\"model\":\"nope\",\"think\":\"high\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 404, "model 'nope' not found"),
    ("/api/chat", b"{\"model\":\"nope\",\"stream\":\"x\",\"messages\":[{\"role\":\"user\"},{\"content\":[],\"role\":true}]}", 400, "json: cannot unmarshal array into Go struct field ChatRequest.messages.content of type string"),
    ("/api/chat", b"{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"images\":[]}]}", 404, "model 'nope' not found"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{}]}", 400, "invalid message content type: <nil>"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[]}]}", 404, "model 'nope' not found"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[5]}", 400, "json: cannot unmarshal number into Go struct field ChatCompletionRequest.messages of type openai.Message"),
    ("/api/generate", b"{\"model\":\"nope\",\"keep_alive\":\"-1\"}", 400, "time: missing unit in duration \"-1\""),
    // Found by scripts/fuzz-go-oracle.sh against Go's encoding/json.
    ("/api/chat", b"{\"model\":\"nope\",\"keep_alive\":1e400}", 400, "json: cannot unmarshal number 1e400 into Go struct field ChatRequest.keep_alive of type float64"),
    ("/api/generate", b"{\"model\":\"nope\",\"keep_alive\":\"\\u00e9\"}", 400, "time: invalid duration \"\\xc3\\xa9\""),
    ("/api/embed", b"{\"model\":\"nope\",\"input\":[1e400]}", 400, "json: cannot unmarshal number 1e400 into Go struct field EmbedRequest.input of type float64"),
    ("/api/generate", b"{\"model\":\"nope\",\"options\":{\"a\":[-1e400]}}", 400, "json: cannot unmarshal number -1e400 into Go struct field GenerateRequest.options of type float64"),
    ("/api/generate", b"{\"model\":\"nope\",\"format\":1e400}", 404, "model 'nope' not found"),
    ("/v1/completions", b"{\"model\":\"nope\",\"prompt\":[\"a\"]}", 400, "json: cannot unmarshal array into Go struct field CompletionRequest.prompt of type string"),
    ("/api/chat", b"{\"model\":\"nope\",\"stream\":1,\"keep_alive\":true}", 400, "Unsupported type: 'bool'"),
    ("/api/embed", b"{\"model\":\"nope\",\"keep_alive\":\"5x\"}", 400, "time: unknown unit \"x\" in duration \"5x\""),
    ("/api/embeddings", b"{\"model\":\"nope\",\"keep_alive\":\"10m\"}", 404, "model \"nope\" not found, try pulling it first"),
    ("/api/generate", b"{\"model\":\"nope\",\"top_logprobs\":21}", 400, "top_logprobs must be between 0 and 20"),
    ("/api/chat", b"{\"model\":\"a b\",\"top_logprobs\":-1}", 400, "top_logprobs must be between 0 and 20"),
    // Nested values (tools, tool calls, OpenAI option objects, content
    // parts), found by the fuzzer's second round.
    ("/api/chat", b"{\"model\":\"nope\",\"tools\":[{\"type\":\"function\",\"function\":1}]}", 400, "json: cannot unmarshal number into Go struct field Tool.tools.function of type api.ToolFunction"),
    ("/api/chat", b"{\"model\":\"nope\",\"tools\":[{\"function\":{\"parameters\":{\"properties\":{\"a\":{\"type\":1}}}}}]}", 400, "json: cannot unmarshal number into Go struct field ToolFunctionParameters.tools.function.parameters.properties of type []string"),
    ("/api/chat", b"{\"model\":\"nope\",\"messages\":[{\"tool_calls\":[{\"function\":{\"index\":1.5}}]}]}", 400, "json: cannot unmarshal number 1.5 into Go struct field ChatRequest.messages.tool_calls.function.index of type int"),
    ("/api/chat", b"{\"model\":\"nope\",\"messages\":[{\"role\":1,\"tool_calls\":[{\"function\":{\"arguments\":1}}]}]}", 400, "json: cannot unmarshal number into Go struct field ChatRequest.messages.tool_calls.function.arguments of type map[string]interface {}"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"reasoning\":{\"effort\":1}}", 400, "json: cannot unmarshal number into Go struct field Reasoning.reasoning.effort of type string"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"response_format\":{\"json_schema\":[]}}", 400, "json: cannot unmarshal array into Go struct field ResponseFormat.response_format.json_schema of type openai.JsonSchema"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"tool_calls\":[{\"function\":{\"arguments\":1}}]}]}", 400, "json: cannot unmarshal number into Go struct field .messages.tool_calls.function.arguments of type string"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":\"u\"},null]}]}", 400, "invalid message format"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[null]}", 400, "invalid message content type: <nil>"),
    ("/v1/chat/completions", b"{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"u\"}}]}]}", 404, "model 'nope' not found"),
    ("DELETE /api/delete", b"{}", 400, "model is required"),
    ("DELETE /api/delete", b"{\"model\":\"nope\"}", 404, "model 'nope' not found"),
    ("DELETE /api/delete", b"{\"name\":\"a b\"}", 400, "name \"a b\" is invalid"),
    ("DELETE /api/delete", b"{\"name\":\"x:local:cloud\"}", 400, "use either :local or :cloud, not both: \"x:local:cloud\""),
    ("/api/copy", b"{\"source\":\"nope\",\"destination\":\"a b\"}", 400, "destination \"a b\" is invalid"),
    ("/api/copy", b"{\"source\":\"nope\",\"destination\":\"x\"}", 404, "model \"nope\" not found"),
];

/// A table route as method and path (`POST` unless it says otherwise).
fn method_path(route: &str) -> (reqwest::Method, &str) {
    match route.split_once(' ') {
        Some((m, p)) => (reqwest::Method::from_bytes(m.as_bytes()).unwrap_or(reqwest::Method::POST), p),
        None => (reqwest::Method::POST, route),
    }
}

/// The bytes Ollama sends for an error: gin's `c.JSON` (native, and the
/// OpenAI middleware's own 400s) or the OpenAI writer's re-encoding
/// (errors from the handler, with a newline and a bare content type).
fn expected(route: &str, status: u16, message: &str) -> (String, &'static str) {
    let route = method_path(route).1;
    let go = |v: Value| {
        v.to_string()
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
    };
    if !route.starts_with("/v1/") {
        return (
            go(json!({"error": message})),
            "application/json; charset=utf-8",
        );
    }
    let kind = match status {
        400 => "invalid_request_error",
        404 => "not_found_error",
        _ => "api_error",
    };
    let body =
        go(json!({"error": {"message": message, "type": kind, "param": null, "code": null}}));
    // Only 404s in this table come from the handler.
    if status == 404 {
        (format!("{body}\n"), "application/json")
    } else {
        (body, "application/json; charset=utf-8")
    }
}

