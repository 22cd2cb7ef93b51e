#!/usr/bin/env bash
# Renders the Envoy configurations kept in envoy/ from `syncd envoy-config`,
# the one source of Envoy configuration. With --check, fails if a kept file
# differs from what the renderer produces now (the test command runs that).
#
#   envoy/demo.yaml     the demo's emulated fleet (scripts/demo.sh renders
#                       the same for whatever fleet it runs)
#   envoy/compose.yaml  docker-compose.yaml: ollama-a/ollama-b, syncd:11435;
#                       also the template for an Envoy sidecar beside a fleet
#   envoy/demo-host.yaml  the demo fleet with `--route-by host`: a virtual
#                       host per instance, the layout a mesh (Istio) has
set -euo pipefail
cd "$(dirname "$0")/.."
syncd="${CARGO_TARGET_DIR:-target}/debug/syncd"
[ -x "$syncd" ] || cargo build -q -p syncd
check=false; [ "${1:-}" = "--check" ] && check=true

render() { # file, then syncd envoy-config flags
  local file=$1; shift
  local tmp; tmp=$(mktemp)
  env -u OLLAMA_BASE_URLS -u SYNCD_INSTANCES -u SYNCD_CONFIG "$syncd" envoy-config "$@" >"$tmp"
  if $check; then
    if diff -u "$file" "$tmp"; then echo "ok      $file is what the renderer produces"
    else echo "STALE   $file: run scripts/render-envoy.sh" >&2; rm -f "$tmp"; return 1; fi
    rm -f "$tmp"
  else
    mv "$tmp" "$file"; echo "wrote   $file"
  fi
}

render envoy/demo.yaml \
  --instance gpu-a=http://127.0.0.1:11501 --instance gpu-b=http://127.0.0.1:11502 \
  --instance gpu-c=http://127.0.0.1:11503 \
  --envoy-listen 127.0.0.1:11434 --admin 127.0.0.1:9901 --syncd 127.0.0.1:11435 \
  --wasm target/wasm32-wasip1/wasm/filter.wasm

render envoy/compose.yaml \
  --discover dns:ollama:11434 \
  --envoy-listen 0.0.0.0:11434 --admin 127.0.0.1:9901 --syncd syncd:11435 \
  --wasm /etc/envoy/filter.wasm

render envoy/demo-host.yaml \
  --instance gpu-a=http://127.0.0.1:11501 --instance gpu-b=http://127.0.0.1:11502 \
  --instance gpu-c=http://127.0.0.1:11503 \
  --envoy-listen 127.0.0.1:11434 --admin 127.0.0.1:9901 --syncd 127.0.0.1:11435 \
  --wasm target/wasm32-wasip1/wasm/filter.wasm --route-by host
