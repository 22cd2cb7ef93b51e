#!/usr/bin/env bash
# Runs the benchmarks and writes docs/benchmarks.md and docs/bench/*.svg.
# Installs what it needs (the wasm target and Envoy via scripts/setup.sh,
# wrk from Debian), builds release binaries and the wasm filter, then runs
# `ollama-lb-bench` (about 10 minutes on 2 cores). Extra arguments go to the
# program, e.g. `scripts/bench.sh --sections routing` or `--quick`.
# Never part of CI: absolute numbers depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
if ! command -v wrk >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq wrk
  else
    echo "bench: install wrk (https://github.com/wg/wrk) and run again" >&2
    exit 1
  fi
fi
command -v taskset >/dev/null 2>&1 || { echo "bench: taskset (util-linux) is needed" >&2; exit 1; }

cargo build --release --quiet -p ollama-emu -p syncd -p bench
cargo build --quiet -p filter -p floor-filter --target wasm32-wasip1 --profile wasm
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/ollama-lb-bench" "$@"
