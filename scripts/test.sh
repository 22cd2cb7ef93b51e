#!/usr/bin/env bash
# The test command: installs what is missing, then runs every check and
# every test (formatting, clippy for host and wasm, Envoy config
# validation, unit, integration and end-to-end tests, Python-client tests).
# Chromium (for the status page test) comes from apt-get, so on a machine
# without it this needs root or password-less sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }

step "setup (wasm target, Envoy ${ENVOY_VERSION:-1.40.0}, Python clients)"
scripts/setup.sh

step "headless Chromium (Debian's chromium), for the status page test"
if ! command -v "${CHROMIUM_BIN:-chromium}" >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
"${CHROMIUM_BIN:-chromium}" --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy (host)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "clippy (wasm32-wasip1)"
cargo clippy -p filter -p model-map -p floor-filter --target wasm32-wasip1 --quiet -- -D warnings

step "build binaries and the wasm filter"
scripts/build.sh

step "Envoy configurations: rendered from one source, and valid for Envoy 1.40"
scripts/render-envoy.sh --check
scripts/validate-envoy.sh

step "deployment files (compose, Dockerfiles, Kubernetes, Istio), validated offline"
scripts/validate-deploy.sh

step "cargo test (unit, integration, end-to-end)"
cargo test --workspace --quiet -- --test-threads 2

step "Python clients against the emulator and through Envoy"
.venv/bin/python -m pytest -q tests/python

step "all checks passed"
