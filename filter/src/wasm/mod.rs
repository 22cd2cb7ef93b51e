//! The Envoy side: the only code that calls proxy-wasm. [`root`] owns the
//! configuration, fetches the map from syncd and shares it between
//! workers; [`worker`] is the state a worker's contexts share (config,
//! installed map, picker); [`http`] routes one request; [`shared`] wraps the host calls
//! for shared data, metrics and time so failures become logged outcomes
//! instead of panics.

mod http;
mod root;
mod shared;
mod worker;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

// The SDK's entry-point macro exports `_initialize` with `#[no_mangle]` and
// calls the module's constructors in an `unsafe` block; nothing else here
// is unsafe.
#[allow(unsafe_code)]
mod entry {
    use super::*;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
            Box::new(root::Root::new(context_id))
        });
    }}
}
