//! The floor of the overhead benchmark: a proxy-wasm filter that does only
//! what any filter routing by a JSON body must. It holds the headers, reads
//! the first body window the way ollama-lb's filter does, sets the
//! override-host header of the fleet cluster to the `IP:port` named in its
//! plugin configuration and lets the request go (the same mechanism as
//! ollama-lb's endpoints mode: no route-cache clearing). No map, no
//! policy, no metrics.
//!
//! Measured beside plain Envoy and ollama-lb's filter, it splits the
//! filter's overhead into what Envoy and v8 charge any such filter and
//! what ollama-lb's own logic adds.

#[cfg(target_arch = "wasm32")]
mod wasm {
    use std::rc::Rc;

    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, MapType};

    const ENDPOINTS_HEADER: &str = "x-ollama-lb-endpoints";
    const WINDOW: usize = 64 * 1024;

    struct Root {
        endpoint: Rc<str>,
        /// Also clear the route cache (the overhead bench's target e).
        clear: bool,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            let bytes = self.get_plugin_configuration().unwrap_or_default();
            // The endpoint, bare or as a JSON string, then optionally
            // `clear_route_cache`.
            let text = String::from_utf8_lossy(&bytes);
            let mut words = text.trim().trim_matches('"').split_whitespace();
            self.endpoint = words.next().unwrap_or("").into();
            self.clear = words.next() == Some("clear_route_cache");
            !self.endpoint.is_empty()
        }

        fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Request {
                endpoint: Rc::clone(&self.endpoint),
                clear: self.clear,
                routed: false,
            }))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Request {
        endpoint: Rc<str>,
        clear: bool,
        /// Routed already: later body callbacks pass through (routing
        /// again after the router started costs Envoy dearly).
        routed: bool,
    }

    impl Request {
        fn route(&mut self) -> Action {
            self.routed = true;
            let _ = hostcalls::set_map_value(
                MapType::HttpRequestHeaders,
                ENDPOINTS_HEADER,
                Some(&self.endpoint),
            );
            if self.clear {
                let _ = hostcalls::call_foreign_function("clear_route_cache", None);
            }
            Action::Continue
        }
    }

    impl Context for Request {}

    impl HttpContext for Request {
        fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
            if end_of_stream {
                return self.route();
            }
            Action::Pause
        }

        fn on_http_request_body(&mut self, size: usize, _end_of_stream: bool) -> Action {
            if self.routed {
                return Action::Continue;
            }
            let window = self.get_http_request_body(0, WINDOW.min(size));
            if window.is_some_and(|w| !w.is_empty()) {
                return self.route();
            }
            Action::Pause
        }
    }

    // The SDK's entry-point macro exports `_initialize` and calls module
    // constructors in an `unsafe` block.
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
            Box::new(Root {
                endpoint: Rc::from(""),
                clear: false,
            })
        });
    }}
}
