//! What gin (v1.10, Ollama's router) and gin-contrib/cors (v1.7) do around
//! the handlers: match on the percent-decoded path, redirect a trailing
//! slash, and apply Ollama's CORS configuration (`GenerateRoutes` in
//! server/routes.go, `AllowedOrigins` in envconfig/config.go).

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::origins::AllowedOrigins;

/// Every route as gin knows it: method and path (`:` marks a parameter,
/// which matches one segment).
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

fn route_exists(method: &str, path: &str) -> bool {
    ROUTES.iter().any(|(m, p)| *m == method && matches(p, path))
}

/// Decodes the escapes of characters that may stand unescaped in a path,
/// so routing sees what Go's `URL.Path` holds (gin matches on it); other
/// escapes stay for the path-parameter extractor to decode.
fn decode_path(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&byte) = b.get(i) {
        let decoded = (byte == b'%')
            .then(|| path.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(|c| c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(c));
        match decoded {
            Some(c) => {
                out.push(char::from(c));
                i += 3;
            }
            None => {
                out.push(char::from(byte));
                i += 1;
            }
        }
    }
    out
}

/// Runs before routing: percent-decodes the path and answers gin's
/// trailing-slash redirect (301 for GET, 307 otherwise; no middleware
/// runs for it in gin, so neither does the Host check or CORS).
pub async fn path_rules(mut req: Request, next: Next) -> Response {
    let raw = req.uri().path();
    if raw.contains('%') {
        let decoded = decode_path(raw);
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        if let Ok(uri) = format!("{decoded}{query}").parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') && !path.starts_with("/_emu/") {
        let trimmed = &path[..path.len() - 1];
        if route_exists(req.method().as_str(), trimmed) {
            let query = req
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            return redirect(req.method(), &format!("{trimmed}{query}"));
        }
    }
    next.run(req).await
}

/// `http.Redirect` as gin calls it.
fn redirect(method: &Method, location: &str) -> Response {
    let (status, text) = if method == Method::GET {
        (StatusCode::MOVED_PERMANENTLY, "Moved Permanently")
    } else {
        (StatusCode::TEMPORARY_REDIRECT, "Temporary Redirect")
    };
    let body = if method == Method::GET {
        format!("<a href=\"{}\">{text}</a>.\n\n", html_escape(location))
    } else {
        String::new()
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.remove(header::CONTENT_TYPE);
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    if method == Method::GET || method == Method::HEAD {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    resp
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Request headers Ollama allows in CORS, as gin-contrib/cors writes them
/// (`http.CanonicalHeaderKey` of each).
const ALLOW_HEADERS: &str = "Authorization,Content-Type,User-Agent,Accept,X-Requested-With,\
Openai-Beta,X-Stainless-Arch,X-Stainless-Async,X-Stainless-Custom-Poll-Interval,\
X-Stainless-Helper-Method,X-Stainless-Lang,X-Stainless-Os,X-Stainless-Package-Version,\
X-Stainless-Poll-Helper,X-Stainless-Retry-Count,X-Stainless-Runtime,\
X-Stainless-Runtime-Version,X-Stainless-Timeout";

/// What CORS decides for a request.
pub enum Cors {
    /// Not a cross-origin request: nothing to add.
    None,
    /// An origin not allowed: 403 with an empty body.
    Forbidden,
    /// A preflight (`OPTIONS`): 204 with these headers, no handler.
    Preflight(HeaderMap),
    /// A normal request: these headers on the handler's answer.
    Normal(HeaderMap),
}

/// gin-contrib/cors with Ollama's configuration and these origins.
pub fn cors(req: &Request, origins: &AllowedOrigins) -> Cors {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return Cors::None;
    };
    if origin.is_empty() {
        return Cors::None;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if origin == format!("http://{host}") || origin == format!("https://{host}") {
        return Cors::None;
    }
    if !origins.allows(origin) {
        return Cors::Forbidden;
    }
    let mut h = HeaderMap::new();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.append(name, v);
        }
    };
    // With `*` allowed, cors answers `*` and sends no `Vary`.
    let allow_origin = if origins.allow_all { "*" } else { origin };
    let vary = !origins.allow_all;
    if req.method() == Method::OPTIONS {
        set(
            "access-control-allow-methods",
            "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS",
        );
        set("access-control-allow-headers", ALLOW_HEADERS);
        set("access-control-max-age", "43200");
        if vary {
            set("vary", "Origin");
            set("vary", "Access-Control-Request-Method");
            set("vary", "Access-Control-Request-Headers");
        }
        set("access-control-allow-origin", allow_origin);
        Cors::Preflight(h)
    } else {
        if vary {
            set("vary", "Origin");
        }
        set("access-control-allow-origin", allow_origin);
        Cors::Normal(h)
    }
}

/// The last path segment as a handler parameter, percent-decoded the way
/// Go decodes a URL path: any bytes, invalid UTF-8 read as U+FFFD (axum's
/// `Path<String>` refuses it with a plain-text 400 that Ollama never
/// sends).
pub struct LossyParam(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for LossyParam {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let segment = parts.uri.path().rsplit('/').next().unwrap_or_default();
        Ok(LossyParam(percent_decode_lossy(segment)))
    }
}

fn percent_decode_lossy(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&byte) = b.get(i) {
        let hex = (byte == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(c) => {
                out.push(c);
                i += 3;
            }
            None => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_paths() {
        assert!(route_exists("GET", "/v1/models/llama3:latest"));
        assert!(!route_exists("GET", "/v1/models/a/b"));
        assert!(!route_exists("HEAD", "/api/ps"));
        assert_eq!(decode_path("/api/%74ags"), "/api/tags");
        assert_eq!(decode_path("/v1/models/a%2Fb"), "/v1/models/a/b");
        assert_eq!(
            decode_path("/v1/models/bad%20name"),
            "/v1/models/bad%20name"
        );
    }
}
