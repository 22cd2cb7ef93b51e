//! Paths as Ollama sees them. Go's `net/http` percent-decodes the whole
//! path into `URL.Path` and gin (v1.10) matches its routes on that, with
//! no slash merging and no dot-segment handling; a path ending in `/`
//! whose trimmed form is a route gets gin's redirect (301 for `GET`, 307
//! otherwise) before any middleware runs. Envoy already decodes the
//! unreserved characters and resolves dot segments (`normalize_path`); the
//! filter classifies on [`go_path`], so an escape Envoy keeps (`%3A`, `%21`)
//! reaches the route Ollama would take.

/// Every route of Ollama's gin router: method and path (`:` marks a
/// parameter, which matches one non-empty segment).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("HEAD", "/"),
    ("GET", "/api/version"),
    ("HEAD", "/api/version"),
    ("GET", "/api/tags"),
    ("HEAD", "/api/tags"),
    ("GET", "/api/ps"),
    ("POST", "/api/generate"),
    ("POST", "/api/chat"),
    ("POST", "/api/embed"),
    ("POST", "/api/embeddings"),
    ("POST", "/api/show"),
    ("POST", "/api/pull"),
    ("POST", "/api/push"),
    ("POST", "/api/create"),
    ("POST", "/api/copy"),
    ("DELETE", "/api/delete"),
    ("HEAD", "/api/blobs/:digest"),
    ("POST", "/api/blobs/:digest"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/:model"),
];

/// The path part of `raw` (no query) decoded as Go's `URL.Path` is, for
/// matching routes. `%3F` and `%23` stay escaped (a decoded `?` or `#` is
/// part of the path, which no route has; keeping them escaped keeps it
/// so for code that splits at `?`), as does a malformed escape.
pub fn go_path(raw: &str) -> String {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    if !path.contains('%') {
        return path.to_string();
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(|c| *c != b'?' && *c != b'#');
        match escaped {
            Some(c) => {
                out.push(c);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn matches(pattern: &str, path: &str) -> bool {
    let (mut p, mut s) = (pattern.split('/'), path.split('/'));
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with(':') => {
                if b.is_empty() {
                    return false;
                }
            }
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Whether gin has a route for `method` and the decoded `path`.
pub fn route_exists(method: &str, path: &str) -> bool {
    ROUTES.iter().any(|(m, p)| *m == method && matches(p, path))
}

/// gin's trailing-slash redirect, as `http.Redirect` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub status: u32,
    pub location: String,
    /// `text/html; charset=utf-8` for `GET` and `HEAD`, none otherwise.
    pub content_type: Option<&'static str>,
    pub body: String,
}

/// The redirect gin answers for a decoded `path` ending in `/` whose
/// trimmed form is a route of `method`; `query` is the raw query (no `?`).
pub fn trailing_slash_redirect(method: &str, path: &str, query: Option<&str>) -> Option<Redirect> {
    let trimmed = path.strip_suffix('/').filter(|t| !t.is_empty())?;
    if !route_exists(method, trimmed) {
        return None;
    }
    let location = match query {
        Some(q) => format!("{trimmed}?{q}"),
        None => trimmed.to_string(),
    };
    let get = method == "GET";
    let body = if get {
        format!(
            "<a href=\"{}\">Moved Permanently</a>.\n\n",
            html_escape(&location)
        )
    } else {
        String::new()
    };
    Some(Redirect {
        status: if get { 301 } else { 307 },
        content_type: matches!(method, "GET" | "HEAD").then_some("text/html; charset=utf-8"),
        location,
        body,
    })
}

/// The raw query of a `:path`, without the `?`.
pub fn raw_query(raw: &str) -> Option<&str> {
    let before_fragment = raw.split('#').next().unwrap_or_default();
    before_fragment.split_once('?').map(|(_, q)| q)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_decode_as_go_does() {
        assert_eq!(go_path("/api/ch%61t"), "/api/chat");
        assert_eq!(go_path("/api/%74ags?x=%61"), "/api/tags");
        assert_eq!(go_path("/api%2Ftags"), "/api/tags");
        assert_eq!(
            go_path("/v1/models/llama3%3Alatest"),
            "/v1/models/llama3:latest"
        );
        assert_eq!(
            go_path("/v1/models/a%2541"),
            "/v1/models/a%41",
            "decoded once"
        );
        assert_eq!(go_path("/api/chat%3F"), "/api/chat%3F");
        assert_eq!(go_path("/api/chat%zz"), "/api/chat%zz");
        assert_eq!(go_path("/api/chat%"), "/api/chat%");
        assert_eq!(go_path("/api/%ff"), "/api/\u{fffd}");
        assert_eq!(go_path("/api//tags"), "/api//tags", "gin does not merge");
    }

    #[test]
    fn trailing_slashes_redirect_as_gin_does() {
        let get = trailing_slash_redirect("GET", "/api/tags/", Some("a=1")).unwrap();
        assert_eq!(get.status, 301);
        assert_eq!(get.location, "/api/tags?a=1");
        assert_eq!(
            get.body,
            "<a href=\"/api/tags?a=1\">Moved Permanently</a>.\n\n"
        );
        assert_eq!(get.content_type, Some("text/html; charset=utf-8"));
        let post = trailing_slash_redirect("POST", "/api/chat/", None).unwrap();
        assert_eq!((post.status, post.body.as_str()), (307, ""));
        assert_eq!(post.content_type, None);
        assert!(trailing_slash_redirect("POST", "/api/tags/", None).is_none());
        assert!(trailing_slash_redirect("GET", "/", None).is_none());
        assert!(trailing_slash_redirect("GET", "/api/nothing/", None).is_none());
        let model = trailing_slash_redirect("GET", "/v1/models/m:1/", None).unwrap();
        assert_eq!(model.location, "/v1/models/m:1");
        assert_eq!(raw_query("/a?b=1#c"), Some("b=1"));
        assert_eq!(raw_query("/a"), None);
    }
}
