//! Ollama's CORS origin list: `envconfig.AllowedOrigins` (the
//! `OLLAMA_ORIGINS` value split on `,`, then the local and app defaults)
//! as gin-contrib/cors v1.7.2 reads it with Ollama's settings
//! (`AllowWildcard`, `AllowBrowserExtensions`).
//!
//! gin-contrib/cors keeps two views of the list: exact entries trimmed and
//! lowercased, and wildcard entries (one `*`) as written, so a space before
//! a wildcard entry makes it match nothing. An entry that has no `*` and
//! does not start with a scheme it accepts, or one with two `*`, makes
//! Ollama panic at start; here it is a configuration error naming it.
//! Browser-extension schemes are only accepted as entries: an extension's
//! origin is allowed only if `OLLAMA_ORIGINS` lists it (e.g.
//! `chrome-extension://*`).

use thiserror::Error;

/// Schemes an entry without `*` may start with (cors `DefaultSchemas` and
/// `ExtensionSchemas`, in the order Go's error text lists them).
const ENTRY_SCHEMES: [&str; 6] = [
    "http://",
    "https://",
    "chrome-extension://",
    "safari-extension://",
    "moz-extension://",
    "ms-browser-extension://",
];

/// Why an `OLLAMA_ORIGINS` value would stop Ollama from starting.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OriginsError {
    #[error("OLLAMA_ORIGINS entry {0:?}: bad origin: origins must contain '*' or include http://,https://,chrome-extension://,safari-extension://,moz-extension://,ms-browser-extension://")]
    BadOrigin(String),
    #[error("OLLAMA_ORIGINS entry {0:?}: only one * is allowed")]
    TwoWildcards(String),
}

/// The origins a server accepts for cross-origin requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigins {
    /// An entry was exactly `*`: every origin, answered with `*`.
    pub allow_all: bool,
    exact: Vec<String>,
    /// (before `*`, after `*`) of each wildcard entry.
    wildcards: Vec<(String, String)>,
}

/// `envconfig.Var`: surrounding spaces, then quotes, removed.
fn env_var_value(raw: &str) -> &str {
    raw.trim_matches(|c: char| c.is_ascii_whitespace())
        .trim_matches(|c| c == '"' || c == '\'')
}

/// The list `envconfig.AllowedOrigins` builds from an `OLLAMA_ORIGINS`
/// value (`None` or empty: only the defaults).
pub fn origin_entries(ollama_origins: Option<&str>) -> Vec<String> {
    let mut entries: Vec<String> = match ollama_origins.map(env_var_value) {
        Some(v) if !v.is_empty() => v.split(',').map(str::to_string).collect(),
        _ => Vec::new(),
    };
    for host in ["localhost", "127.0.0.1", "0.0.0.0"] {
        for pattern in ["http://{}", "https://{}", "http://{}:*", "https://{}:*"] {
            entries.push(pattern.replace("{}", host));
        }
    }
    for scheme in ["app", "file", "tauri", "vscode-webview", "vscode-file"] {
        entries.push(format!("{scheme}://*"));
    }
    entries
}

impl AllowedOrigins {
    /// Ollama's origins for an `OLLAMA_ORIGINS` value, or the reason
    /// Ollama would refuse to start with it.
    pub fn from_ollama_origins(value: Option<&str>) -> Result<Self, OriginsError> {
        let entries = origin_entries(value);
        if let Some(bad) = entries
            .iter()
            .find(|e| !e.contains('*') && !ENTRY_SCHEMES.iter().any(|s| e.starts_with(s)))
        {
            return Err(OriginsError::BadOrigin(bad.clone()));
        }
        let mut wildcards = Vec::new();
        for entry in entries.iter().filter(|e| e.contains('*')) {
            let Some((before, after)) = entry.split_once('*') else {
                continue;
            };
            if after.contains('*') {
                return Err(OriginsError::TwoWildcards(entry.clone()));
            }
            wildcards.push((before.to_string(), after.to_string()));
        }
        let mut exact: Vec<String> = Vec::new();
        for e in &entries {
            let norm = e.trim().to_lowercase();
            if !exact.contains(&norm) {
                exact.push(norm);
            }
        }
        Ok(AllowedOrigins {
            allow_all: entries.iter().any(|e| e == "*"),
            exact,
            wildcards,
        })
    }

    /// Ollama's defaults (no `OLLAMA_ORIGINS`).
    pub fn defaults() -> Self {
        AllowedOrigins::from_ollama_origins(None).unwrap_or(AllowedOrigins {
            allow_all: false,
            exact: Vec::new(),
            wildcards: Vec::new(),
        })
    }

    /// cors `validateOrigin`: the origin as the client sent it (not
    /// lowercased) against the exact entries, then the wildcard ones.
    pub fn allows(&self, origin: &str) -> bool {
        self.allow_all
            || self.exact.iter().any(|e| e == origin)
            || self.wildcards.iter().any(|(before, after)| {
                (before.is_empty() && origin.ends_with(after.as_str()))
                    || (after.is_empty() && origin.starts_with(before.as_str()))
                    || (origin.starts_with(before.as_str()) && origin.ends_with(after.as_str()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_local_hosts_and_app_schemes() {
        let o = AllowedOrigins::defaults();
        assert!(o.allows("http://localhost:3000"));
        assert!(o.allows("https://127.0.0.1"));
        assert!(o.allows("tauri://localhost"));
        assert!(
            !o.allows("chrome-extension://abc"),
            "extensions need OLLAMA_ORIGINS"
        );
        assert!(
            !o.allows("HTTP://LOCALHOST"),
            "the origin is compared as sent"
        );
        assert!(!o.allows("https://example.com"));
        // a wildcard matches as a prefix: Ollama's own rule, quirk included
        assert!(o.allows("http://localhost:x.example.com"));
    }

    #[test]
    fn ollama_origins_adds_exact_and_wildcard_entries() {
        let o = AllowedOrigins::from_ollama_origins(Some(
            " 'https://App.Example.com,chrome-extension://*,https://*.corp.example' ",
        ))
        .expect("valid");
        assert!(o.allows("https://app.example.com"));
        assert!(
            !o.allows("https://App.Example.com"),
            "entries are lowercased, origins not"
        );
        assert!(o.allows("chrome-extension://abcdef"));
        assert!(o.allows("https://wiki.corp.example"));
        assert!(!o.allows("https://corp.example.evil"));
        let all = AllowedOrigins::from_ollama_origins(Some("*")).expect("valid");
        assert!(all.allow_all && all.allows("https://anything"));
        // a space before a wildcard entry keeps it from matching
        let spaced = AllowedOrigins::from_ollama_origins(Some("https://a.example, https://*.b"))
            .expect("valid");
        assert!(spaced.allows("https://a.example") && !spaced.allows("https://x.b"));
    }

    #[test]
    fn entries_ollama_would_panic_on_are_errors() {
        for (value, want) in [
            ("example.com", OriginsError::BadOrigin("example.com".into())),
            ("https://a.example,", OriginsError::BadOrigin(String::new())),
            (
                "https://a.example, https://b.example",
                OriginsError::BadOrigin(" https://b.example".into()),
            ),
            (
                "https://*.*.example",
                OriginsError::TwoWildcards("https://*.*.example".into()),
            ),
        ] {
            assert_eq!(
                AllowedOrigins::from_ollama_origins(Some(value)),
                Err(want),
                "{value}"
            );
        }
    }
}
