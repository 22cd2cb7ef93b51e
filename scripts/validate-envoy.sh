#!/usr/bin/env bash
# Runs `envoy --mode validate` on every Envoy configuration in the repo
# (envoy/*.yaml). Each file's wasm path (e.g. /etc/envoy/filter.wasm inside
# the compose container) is pointed at the local build for the check, so
# the real filter is loaded and its plugin configuration checked too.
set -euo pipefail
cd "$(dirname "$0")/.."
wasm="$(pwd)/${CARGO_TARGET_DIR:-target}/wasm32-wasip1/wasm/filter.wasm"
case "${CARGO_TARGET_DIR:-}" in /*) wasm="$CARGO_TARGET_DIR/wasm32-wasip1/wasm/filter.wasm";; esac
[ -f "$wasm" ] || { echo "validate-envoy: build the filter first (scripts/build.sh): $wasm" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
status=0
shopt -s nullglob
for f in envoy/*.yaml; do
  sed -E "s|filename: \"[^\"]*filter\.wasm\"|filename: \"$wasm\"|" "$f" >"$tmp/$(basename "$f")"
  if out=$(.venv/bin/envoy --mode validate -c "$tmp/$(basename "$f")" --disable-hot-restart -l error 2>&1); then
    echo "ok      $f"
  else
    echo "INVALID $f"; echo "$out" | tail -20; status=1
  fi
done
exit $status
