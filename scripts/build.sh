#!/usr/bin/env bash
# Builds the daemon, the emulator (debug) and the wasm filter (profile
# `wasm`). Prints where the filter landed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --quiet
cargo build -p filter --target wasm32-wasip1 --profile wasm --quiet
target="${CARGO_TARGET_DIR:-target}"
ls -l "$target/wasm32-wasip1/wasm/filter.wasm" | awk '{print "filter.wasm: " $5 " bytes"}'
