//! The request headers the filter looks at, taken from one read of the
//! whole header map (each host call that returns data costs the VM an
//! allocation called from the host, so one read beats five).

/// What the filter needs from a request's headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    /// `:authority` (HTTP/1 `Host`) as the client sent it.
    pub authority: String,
    /// `origin`, when present.
    pub origin: Option<String>,
    /// `content-length`, when present and a number.
    pub content_length: Option<u64>,
    /// `x-ollama-instance`, trimmed (an operator pinning one instance).
    pub pinned: Option<String>,
    /// The configured affinity header's value, when not empty.
    pub affinity: Option<String>,
    /// The client sent the routing header (which the filter removes).
    pub has_endpoints_header: bool,
    /// The client sent one of [`RETRY_HEADERS`] (which the filter removes).
    pub has_retry_headers: bool,
    /// The client sent [`model_map::FLEET_HEADER`] (which the filter
    /// removes: only the filter sends a request to the fleet API).
    pub has_fleet_header: bool,
    /// The client sent [`model_map::ANSWERED_HEADER`] (which the filter
    /// removes).
    pub has_answered_header: bool,
}

/// Envoy's request headers that change how often or how long a request is
/// retried: the filter and the route decide that, never a client.
pub const RETRY_HEADERS: [&str; 6] = [
    "x-envoy-max-retries",
    "x-envoy-retry-on",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
];

impl RequestHead {
    /// Reads the headers the filter needs from `(name, value)` pairs; the
    /// first of repeated headers counts. Names compare without case.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        endpoints_header: &str,
        affinity_header: Option<&str>,
    ) -> Self {
        let mut head = RequestHead::default();
        let (mut method, mut path, mut length) = (false, false, false);
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        for (name, value) in pairs {
            if name.eq_ignore_ascii_case(":method") && !method {
                method = true;
                head.method = text(value);
            } else if name.eq_ignore_ascii_case(":path") && !path {
                path = true;
                head.path = text(value);
            } else if name.eq_ignore_ascii_case(":authority") && head.authority.is_empty() {
                head.authority = text(value);
            } else if name.eq_ignore_ascii_case("origin") && head.origin.is_none() {
                head.origin = Some(text(value));
            } else if name.eq_ignore_ascii_case("content-length") && !length {
                length = true;
                head.content_length = text(value).trim().parse().ok();
            } else if name.eq_ignore_ascii_case(crate::errors::INSTANCE_HEADER) {
                if head.pinned.is_none() {
                    head.pinned = Some(text(value).trim().to_string());
                }
            } else if name.eq_ignore_ascii_case(endpoints_header) {
                head.has_endpoints_header = true;
            } else if RETRY_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                head.has_retry_headers = true;
            } else if name.eq_ignore_ascii_case(model_map::FLEET_HEADER) {
                head.has_fleet_header = true;
            } else if name.eq_ignore_ascii_case(model_map::ANSWERED_HEADER) {
                head.has_answered_header = true;
            }
            if affinity_header.is_some_and(|h| name.eq_ignore_ascii_case(h))
                && head.affinity.is_none()
                && !value.is_empty()
            {
                head.affinity = Some(text(value));
            }
        }
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(pairs: &[(&str, &str)], affinity: Option<&str>) -> RequestHead {
        RequestHead::from_pairs(
            pairs.iter().map(|(n, v)| (*n, v.as_bytes())),
            "x-ollama-lb-endpoints",
            affinity,
        )
    }

    #[test]
    fn reads_what_routing_needs() {
        let h = head(
            &[
                (":method", "POST"),
                (":path", "/api/chat"),
                (":authority", "lb"),
                ("Origin", "http://localhost:3000"),
                ("Content-Length", " 42 "),
                ("x-ollama-instance", " gpu-a "),
                ("x-chat", "c1"),
                ("x-chat", "c2"),
                ("X-Ollama-LB-Endpoints", "6.6.6.6:1"),
                ("X-Envoy-Retry-On", "5xx"),
                ("X-Ollama-LB-Fleet", "1"),
            ],
            Some("x-chat"),
        );
        assert!(h.has_fleet_header);
        assert!(h.has_retry_headers);
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/api/chat");
        assert_eq!(h.authority, "lb");
        assert_eq!(h.origin.as_deref(), Some("http://localhost:3000"));
        assert_eq!(h.content_length, Some(42));
        assert_eq!(h.pinned.as_deref(), Some("gpu-a"));
        assert_eq!(h.affinity.as_deref(), Some("c1"), "the first one counts");
        assert!(h.has_endpoints_header);
    }

    #[test]
    fn absent_empty_and_odd_values() {
        let h = head(
            &[(":path", "/"), ("content-length", "lots"), ("x-chat", "")],
            Some("x-chat"),
        );
        assert_eq!(h.method, "");
        assert_eq!(h.content_length, None);
        assert_eq!(h.pinned, None);
        assert_eq!(h.affinity, None, "an empty affinity value is none");
        assert!(!h.has_endpoints_header && !h.has_retry_headers && !h.has_fleet_header);
        let bytes = RequestHead::from_pairs(
            [(":path", &b"/api/\xff"[..])],
            "x-ollama-lb-endpoints",
            None,
        );
        assert_eq!(bytes.path, "/api/\u{fffd}", "not UTF-8: replaced, no panic");
    }
}
