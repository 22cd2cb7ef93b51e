//! Locations of what the tests run. Each can be overridden by an
//! environment variable, which CI and the scripts leave unset.

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `<repo>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// A debug binary of the workspace, e.g. `ollama-emu` or `syncd`.
pub fn bin(name: &str) -> PathBuf {
    target_dir().join("debug").join(name)
}

/// The Envoy binary from the project's virtualenv (`ENVOY_BIN` overrides).
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/envoy"))
}

/// The benchmark's floor filter (`bench/floor-filter`), built like the
/// filter.
pub fn floor_filter_wasm() -> PathBuf {
    target_dir().join("wasm32-wasip1/wasm/floor_filter.wasm")
}

/// The filter built with `--profile wasm` (`FILTER_WASM` overrides).
pub fn filter_wasm() -> PathBuf {
    std::env::var_os("FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("wasm32-wasip1/wasm/filter.wasm"))
}
