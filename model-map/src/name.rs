//! Ollama model names (`types/model/name.go`): parsing, validity, the
//! display form used by `/api/tags`, and the lowercase routing key.
//!
//! Grammar: `[scheme://][host/][namespace/]model[:tag]`. Missing parts take
//! the defaults `registry.ollama.ai`, `library` and `latest`. Comparison is
//! case-insensitive, so the routing key is the fully qualified name in
//! lowercase.

use thiserror::Error;

/// Default registry host.
pub const DEFAULT_HOST: &str = "registry.ollama.ai";
/// Default namespace.
pub const DEFAULT_NAMESPACE: &str = "library";
/// Default tag.
pub const DEFAULT_TAG: &str = "latest";

/// Why a string is not a valid Ollama model name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is empty after trimming white space.
    #[error("model is required")]
    Empty,
    /// One part breaks Ollama's character or length rules.
    #[error("invalid model name")]
    Invalid,
    /// Both a `:local` and a `:cloud` suffix (the name as given, trimmed).
    #[error("use either :local or :cloud, not both: {0:?}")]
    ConflictingSource(String),
}

/// Where a request asks the model to run: Ollama's explicit source
/// suffixes (`internal/modelref`, v0.17.6+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Unspecified,
    /// `name:local`: the model on this server.
    Local,
    /// `name:cloud`, or a tag ending in `-cloud`.
    Cloud,
}

/// A fully qualified model name, with the case the user wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelName {
    pub host: String,
    pub namespace: String,
    pub model: String,
    pub tag: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Host,
    Namespace,
    Model,
    Tag,
}

impl ModelName {
    /// Parses `s` as Ollama does (`ParseName`: trim, split, fill defaults)
    /// and checks every part (`IsValid`).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        let bare = parse_bare(s);
        let name = ModelName {
            host: or_default(bare.host, DEFAULT_HOST),
            namespace: or_default(bare.namespace, DEFAULT_NAMESPACE),
            model: bare.model.unwrap_or_default().to_string(),
            tag: or_default(bare.tag, DEFAULT_TAG),
        };
        let parts = [
            (Part::Host, &name.host),
            (Part::Namespace, &name.namespace),
            (Part::Model, &name.model),
            (Part::Tag, &name.tag),
        ];
        if parts.iter().all(|(kind, part)| is_valid_part(*kind, part)) {
            Ok(name)
        } else {
            Err(NameError::Invalid)
        }
    }

    /// Parses a model reference as Ollama's request handlers read it
    /// (`modelref.ParseRef`, then `ParseName` of the base): a `:local`
    /// suffix names the local model (`llama3:local` is `llama3`); a cloud
    /// reference (`m:cloud`, `m:8b:cloud`, `m:8b-cloud`) is the name the
    /// cloud model is listed under (`m:cloud`, `m:8b-cloud`), so any of
    /// its spellings finds the listed entry; both suffixes are an error.
    pub fn parse_ref(s: &str) -> Result<(Self, Source), NameError> {
        let raw = s.trim();
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        let (base, source) = source_suffix(raw);
        if source != Source::Unspecified && source_suffix(&base).1 != Source::Unspecified {
            return Err(NameError::ConflictingSource(raw.to_string()));
        }
        let listed = match source {
            Source::Cloud if has_explicit_tag(&base) => format!("{base}-cloud"),
            Source::Cloud => format!("{base}:cloud"),
            _ => base,
        };
        if listed.trim().is_empty() {
            // `:local` alone: Ollama's ParseName of "" is simply invalid.
            return Err(NameError::Invalid);
        }
        Ok((Self::parse(&listed)?, source))
    }

    /// The routing key: `host/namespace/model:tag`, lowercase. Two names are
    /// the same model exactly when their keys are equal.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}:{}",
            self.host, self.namespace, self.model, self.tag
        )
        .to_ascii_lowercase()
    }

    /// `DisplayShortest`: `model:tag`, `ns/model:tag` or `host/ns/model:tag`.
    pub fn display_shortest(&self) -> String {
        if !self.host.eq_ignore_ascii_case(DEFAULT_HOST) {
            format!(
                "{}/{}/{}:{}",
                self.host, self.namespace, self.model, self.tag
            )
        } else if !self.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) {
            format!("{}/{}:{}", self.namespace, self.model, self.tag)
        } else {
            format!("{}:{}", self.model, self.tag)
        }
    }
}

/// Shorthand for `ModelName::parse(s).map(|n| n.key())`.
pub fn routing_key(s: &str) -> Result<String, NameError> {
    ModelName::parse(s).map(|n| n.key())
}

/// Splits an explicit source suffix off `raw` (`parseSourceSuffix`).
fn source_suffix(raw: &str) -> (String, Source) {
    if let Some(idx) = raw.rfind(':') {
        let suffix_raw = raw[idx + 1..].trim();
        let suffix = suffix_raw.to_lowercase();
        match suffix.as_str() {
            "cloud" => return (raw[..idx].to_string(), Source::Cloud),
            "local" => return (raw[..idx].to_string(), Source::Local),
            _ => {}
        }
        if !suffix_raw.contains('/') && suffix.ends_with("-cloud") {
            // "-cloud" is ASCII, so lowercasing kept its byte length.
            let tag = &suffix_raw[..suffix_raw.len().saturating_sub("-cloud".len())];
            return (format!("{}{tag}", &raw[..=idx]), Source::Cloud);
        }
    }
    (raw.to_string(), Source::Unspecified)
}

/// Whether a tag is written (a colon after the last slash).
fn has_explicit_tag(name: &str) -> bool {
    match (name.rfind(':'), name.rfind('/')) {
        (Some(colon), Some(slash)) => colon > slash,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Parts as written; `Some("")` marks a separator with nothing beside it,
/// which Ollama turns into its `!MISSING!` sentinel (always invalid).
struct Bare<'a> {
    host: Option<&'a str>,
    namespace: Option<&'a str>,
    model: Option<&'a str>,
    tag: Option<&'a str>,
}

const MISSING: &str = "!MISSING!";

fn parse_bare(s: &str) -> Bare<'_> {
    let mut bare = Bare {
        host: None,
        namespace: None,
        model: None,
        tag: None,
    };
    let mut rest = s;
    let last_colon = s.rfind(':');
    let last_slash = s.rfind('/');
    if let Some(colon) = last_colon {
        if last_slash.is_none_or(|slash| colon > slash) {
            let (before, after) = (&s[..colon], &s[colon + 1..]);
            bare.tag = Some(promised(after));
            rest = promised(before);
        }
    }
    let Some((before, model)) = rest.rsplit_once('/') else {
        bare.model = Some(rest);
        return bare;
    };
    bare.model = Some(promised(model));
    rest = promised(before);
    let Some((before, namespace)) = rest.rsplit_once('/') else {
        bare.namespace = Some(rest);
        return bare;
    };
    bare.namespace = Some(promised(namespace));
    let host = promised(before);
    bare.host = Some(host.split_once("://").map_or(host, |(_, h)| h));
    bare
}

fn promised(part: &str) -> &str {
    if part.is_empty() {
        MISSING
    } else {
        part
    }
}

fn or_default(part: Option<&str>, default: &str) -> String {
    match part {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => default.to_string(),
    }
}

fn is_valid_part(kind: Part, s: &str) -> bool {
    let max = if kind == Part::Host { 350 } else { 80 };
    if s.is_empty() || s.len() > max {
        return false;
    }
    s.bytes().enumerate().all(|(i, b)| {
        let word = b.is_ascii_alphanumeric() || b == b'_';
        if i == 0 {
            return word;
        }
        match b {
            b'-' => true,
            b'.' => kind != Part::Namespace,
            b':' => kind == Part::Host,
            _ => word,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_model_share_a_key() {
        let key = "registry.ollama.ai/library/llama3:latest";
        for s in [
            "llama3",
            "llama3:latest",
            "LLAMA3",
            "library/llama3",
            "registry.ollama.ai/library/llama3:latest",
            "Registry.Ollama.AI/Library/Llama3:LATEST",
            "  llama3  ",
            "https://registry.ollama.ai/library/llama3",
        ] {
            assert_eq!(routing_key(s).as_deref(), Ok(key), "{s}");
        }
    }

    #[test]
    fn other_hosts_namespaces_and_tags_are_other_models() {
        assert_eq!(
            routing_key("user/llama3:8b").unwrap(),
            "registry.ollama.ai/user/llama3:8b"
        );
        assert_eq!(
            routing_key("localhost:5000/team/m:v1").unwrap(),
            "localhost:5000/team/m:v1"
        );
        assert_eq!(
            routing_key("qwen2.5:0.5b").unwrap(),
            "registry.ollama.ai/library/qwen2.5:0.5b"
        );
    }

    #[test]
    fn display_shortest_drops_defaults_only() {
        let d = |s: &str| ModelName::parse(s).unwrap().display_shortest();
        assert_eq!(d("llama3"), "llama3:latest");
        assert_eq!(d("user/m"), "user/m:latest");
        assert_eq!(d("example.com/user/m:1"), "example.com/user/m:1");
    }

    #[test]
    fn invalid_names_are_rejected() {
        assert_eq!(routing_key(""), Err(NameError::Empty));
        assert_eq!(routing_key("   "), Err(NameError::Empty));
        for s in [
            "llama3:",
            "/llama3",
            "-llama3",
            "llama 3",
            "ns.x/m",
            "m:t:t/x",
            "a/b/c/d",
            "mödel",
            &"x".repeat(81),
        ] {
            assert_eq!(routing_key(s), Err(NameError::Invalid), "{s:?}");
        }
    }

    #[test]
    fn source_suffixes_as_ollamas_resolver_reads_them() {
        let r = |s: &str| ModelName::parse_ref(s).map(|(n, src)| (n.display_shortest(), src));
        assert_eq!(
            r("llama3:local"),
            Ok(("llama3:latest".into(), Source::Local))
        );
        assert_eq!(
            r("llama3:8b:LOCAL"),
            Ok(("llama3:8b".into(), Source::Local))
        );
        assert_eq!(
            r("gpt-oss:120b:cloud"),
            Ok(("gpt-oss:120b-cloud".into(), Source::Cloud))
        );
        assert_eq!(
            r("gpt-oss:120b-cloud"),
            Ok(("gpt-oss:120b-cloud".into(), Source::Cloud))
        );
        assert_eq!(r("kimi:cloud"), Ok(("kimi:cloud".into(), Source::Cloud)));
        assert_eq!(
            r("llama3"),
            Ok(("llama3:latest".into(), Source::Unspecified))
        );
        assert_eq!(
            r("x:local:cloud"),
            Err(NameError::ConflictingSource("x:local:cloud".into()))
        );
        assert_eq!(
            NameError::ConflictingSource("x:local:cloud".into()).to_string(),
            r#"use either :local or :cloud, not both: "x:local:cloud""#
        );
        assert_eq!(
            r("x:8b-cloud:local"),
            Err(NameError::ConflictingSource("x:8b-cloud:local".into()))
        );
        assert_eq!(r(":local"), Err(NameError::Invalid));
        assert_eq!(r(" "), Err(NameError::Empty));
    }

    #[test]
    fn a_colon_before_the_last_slash_belongs_to_the_host() {
        let n = ModelName::parse("host:8080/ns/m").unwrap();
        assert_eq!((n.host.as_str(), n.tag.as_str()), ("host:8080", "latest"));
    }
}
