#!/usr/bin/env bash
# The demo: one Ollama endpoint on 127.0.0.1:11434 in front of a fleet.
#
# Without OLLAMA_BASE_URLS it starts three emulated Ollama servers (ports
# 11501-11503) holding overlapping models. With OLLAMA_BASE_URLS set (the
# same ';'-separated value Open WebUI reads) it balances those servers.
# Then it starts syncd (127.0.0.1:11435, whose status page is at /) and
# Envoy with the filter (admin on 127.0.0.1:9901), prints the page's
# address and what to try, and stops everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target="${CARGO_TARGET_DIR:-$root/target}"
listen="${DEMO_LISTEN:-127.0.0.1:11434}"
syncd_listen="${SYNCD_LISTEN:-127.0.0.1:11435}"
admin="${ENVOY_ADMIN:-127.0.0.1:9901}"
run="$root/.demo"

scripts/setup.sh
scripts/build.sh

mkdir -p "$run"
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "stopping the demo..."
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "logs are in $run/"
}
trap cleanup EXIT INT TERM

port_free() { ! (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
for addr in "$listen" "$syncd_listen" "$admin"; do
  port_free "$addr" || { echo "demo: $addr is already in use; stop what holds it or set DEMO_LISTEN / SYNCD_LISTEN / ENVOY_ADMIN" >&2; exit 1; }
done

if [ -z "${OLLAMA_BASE_URLS:-}" ]; then
  emu="$target/debug/ollama-emu"
  start_emu() { # name port args...
    local name=$1 port=$2; shift 2
    port_free "127.0.0.1:$port" || { echo "demo: port $port is in use" >&2; exit 1; }
    "$emu" --name "$name" --listen "127.0.0.1:$port" --load-time 3s --tokens-per-second 30 "$@" \
      >"$run/emu-$name.log" 2>&1 &
    pids+=($!)
  }
  start_emu gpu-a 11501 --model llama3.2 --model qwen2.5:0.5b --loaded llama3.2
  start_emu gpu-b 11502 --model llama3.2 --model nomic-embed-text
  start_emu gpu-c 11503 --model qwen2.5:0.5b --model mistral
  export SYNCD_INSTANCES="gpu-a=http://127.0.0.1:11501,gpu-b=http://127.0.0.1:11502,gpu-c=http://127.0.0.1:11503"
  echo "started 3 emulated Ollama servers: $SYNCD_INSTANCES"
else
  echo "balancing OLLAMA_BASE_URLS=$OLLAMA_BASE_URLS"
fi

"$target/debug/syncd" check-config
"$target/debug/syncd" envoy-config --envoy-listen "$listen" --admin "$admin" --syncd "$syncd_listen" \
  --wasm "$target/wasm32-wasip1/wasm/filter.wasm" >"$run/envoy.yaml"

# --envoy-admin: the status page shows requests in flight as Envoy counts them.
SYNCD_LISTEN="$syncd_listen" "$target/debug/syncd" run --envoy-admin "http://$admin" \
  >"$run/syncd.log" 2>&1 &
pids+=($!)
.venv/bin/envoy -c "$run/envoy.yaml" --disable-hot-restart --concurrency 2 -l warning \
  >"$run/envoy.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
  curl -fsS "http://$listen/api/version" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://$listen/api/version" >/dev/null || { echo "Envoy did not come up; see $run/envoy.log" >&2; tail -20 "$run/envoy.log" >&2; exit 1; }

"$target/debug/syncd" status --url "http://$syncd_listen" || true
cat <<MSG

ollama-lb is up: one Ollama at http://$listen for the whole fleet.

  Status page:  http://$syncd_listen/     (the fleet at a glance, live; JSON at /v1/status)

Try:
  curl http://$listen/api/tags                    # every model of the fleet
  curl http://$listen/api/chat -d '{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}'
  OLLAMA_HOST=http://$listen .venv/bin/python -c 'import ollama; print(ollama.chat(model="mistral", messages=[{"role":"user","content":"hi"}]).message.content)'
  $target/debug/syncd status --url http://$syncd_listen     # the fleet at a glance
  curl -s http://$admin/stats | grep ollama_lb     # the filter's stats
Logs: $run/ (Envoy's access log, one JSON line per request: $run/envoy.log)   Stop: Ctrl-C
MSG
wait
