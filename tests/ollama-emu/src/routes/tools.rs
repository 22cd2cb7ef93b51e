//! The typed values inside tool definitions, tool calls and the OpenAI
//! request's option objects, as Ollama v0.33.0-rc2 declares them
//! (`api/types.go`, `openai/openai.go`), for [`crate::gojson`].

use crate::gojson::Kind;

const STRINGS: Kind = Kind::List("[]string", &Kind::Str);

/// `api.ToolProperty`, inside a `ToolPropertiesMap`'s own decoder (so its
/// own custom types are plain here: the outer one names every error).
static TOOL_PROPERTY: Kind = Kind::Struct(
    "api.ToolProperty",
    &[
        ("anyOf", Kind::List("[]api.ToolProperty", &TOOL_PROPERTY)),
        ("type", Kind::PropertyType),
        ("items", Kind::Any),
        ("description", Kind::Str),
        ("enum", Kind::List("[]interface {}", &Kind::Any)),
        (
            "properties",
            Kind::Map("map[string]api.ToolProperty", &TOOL_PROPERTY),
        ),
        ("required", STRINGS),
    ],
);

/// `*api.ToolPropertiesMap`.
const PROPERTIES: Kind = Kind::Custom(&Kind::Map("map[string]api.ToolProperty", &TOOL_PROPERTY));

const TOOL_FUNCTION: Kind = Kind::Struct(
    "api.ToolFunction",
    &[
        ("name", Kind::Str),
        ("description", Kind::Str),
        (
            "parameters",
            Kind::Struct(
                "api.ToolFunctionParameters",
                &[
                    ("type", Kind::Str),
                    ("$defs", Kind::Any),
                    ("items", Kind::Any),
                    ("required", STRINGS),
                    ("properties", PROPERTIES),
                ],
            ),
        ),
    ],
);

const TOOL: Kind = Kind::Struct(
    "api.Tool",
    &[
        ("type", Kind::Str),
        ("items", Kind::Any),
        ("function", TOOL_FUNCTION),
    ],
);

/// `tools` of `/api/chat`.
pub const API_TOOLS: Kind = Kind::List("api.Tools", &TOOL);
/// `tools` of `/v1/chat/completions`.
pub const OPENAI_TOOLS: Kind = Kind::List("[]api.Tool", &TOOL);

/// `tool_calls` of an `api.Message`.
pub const API_TOOL_CALLS: Kind = Kind::List(
    "[]api.ToolCall",
    &Kind::Struct(
        "api.ToolCall",
        &[
            ("id", Kind::Str),
            (
                "function",
                Kind::Struct(
                    "api.ToolCallFunction",
                    &[
                        ("index", Kind::Int),
                        ("name", Kind::Str),
                        (
                            "arguments",
                            Kind::Custom(&Kind::Map("map[string]interface {}", &Kind::Any)),
                        ),
                    ],
                ),
            ),
        ],
    ),
);

/// `tool_calls` of an `openai.Message` (its `function` an anonymous
/// struct, which Go's errors name with an empty struct name).
pub const OPENAI_TOOL_CALLS: Kind = Kind::List(
    "[]openai.ToolCall",
    &Kind::Struct(
        "openai.ToolCall",
        &[
            ("id", Kind::Str),
            ("index", Kind::Int),
            ("type", Kind::Str),
            (
                "function",
                Kind::Struct(
                    "struct { Name string \"json:\\\"name\\\"\"; Arguments string \"json:\\\"arguments\\\"\" }",
                    &[("name", Kind::Str), ("arguments", Kind::Str)],
                ),
            ),
        ],
    ),
);

/// `*openai.ResponseFormat`.
pub const RESPONSE_FORMAT: Kind = Kind::Struct(
    "openai.ResponseFormat",
    &[
        ("type", Kind::Str),
        (
            "json_schema",
            Kind::Struct("openai.JsonSchema", &[("schema", Kind::Raw)]),
        ),
    ],
);

/// `*openai.Reasoning`.
pub const REASONING: Kind = Kind::Struct("openai.Reasoning", &[("effort", Kind::Str)]);
