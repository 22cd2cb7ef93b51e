#!/usr/bin/env bash
# Not part of CI. Runs the real Open WebUI 0.12.4 against the demo balancer
# and makes its own admin calls: "Update All Models" (one
# /ollama/api/pull/0 per model, as its Models settings page does) and
# eject (/ollama/api/unload) for every loaded model; prints what each
# instance holds and has loaded before and after.
#
# Open WebUI is big (about 7 GB with torch): it goes into its own virtualenv
# outside the repo (OPENWEBUI_VENV, default ~/.cache/ollama-lb/open-webui),
# installed from PyPI on first use. The demo (scripts/demo.sh) is started
# when nothing answers on DEMO_LISTEN; with the emulated demo, a new
# llama3.2 release is published to the emulated registry first, so the
# update visibly moves every copy to the new digest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${OPENWEBUI_VENV:-$HOME/.cache/ollama-lb/open-webui}"
lb="${DEMO_LISTEN:-127.0.0.1:11434}"
syncd="${SYNCD_LISTEN:-127.0.0.1:11435}"
port="${OPENWEBUI_PORT:-8080}"
data="$(mktemp -d "${TMPDIR:-/tmp}/openwebui-manage.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "Open WebUI's data and log: $data"
}
trap cleanup EXIT INT TERM

if [ ! -x "$venv/bin/open-webui" ]; then
  echo "installing open-webui==0.12.4 into $venv (about 7 GB)..."
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check open-webui==0.12.4
fi

if ! curl -fsS "http://$lb/api/version" >/dev/null 2>&1; then
  echo "starting the demo (scripts/demo.sh)..."
  mkdir -p .demo
  DEMO_LISTEN="$lb" SYNCD_LISTEN="$syncd" scripts/demo.sh >.demo/demo-console.log 2>&1 &
  pids+=($!)
  for _ in $(seq 600); do
    curl -fsS "http://$lb/api/version" >/dev/null 2>&1 && break
    sleep 0.5
  done
fi
curl -fsS "http://$lb/api/version" >/dev/null

echo "starting Open WebUI on 127.0.0.1:$port (its single Ollama connection: http://$lb)..."
# Run from its data folder: it writes a secret key file where it starts.
env -C "$data" DATA_DIR="$data" WEBUI_AUTH=False OFFLINE_MODE=true HF_HUB_OFFLINE=1 \
  RAG_EMBEDDING_MODEL_AUTO_UPDATE=False ENABLE_PERSISTENT_CONFIG=False \
  OLLAMA_BASE_URL="http://$lb" \
  "$venv/bin/open-webui" serve --host 127.0.0.1 --port "$port" >"$data/open-webui.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/health" >/dev/null || {
  tail -30 "$data/open-webui.log" >&2
  exit 1
}

WEBUI="http://127.0.0.1:$port" SYNCD="http://$syncd" LB="http://$lb" python3 - <<'PY'
import hashlib, json, os, urllib.request

webui, syncd = os.environ["WEBUI"], os.environ["SYNCD"]

def call(method, url, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=600) as resp:
        return resp.read().decode()

instances = json.loads(call("GET", f"{syncd}/v1/instances"))["instances"]

def show(title):
    print(f"\n== {title}")
    for i in instances:
        tags = json.loads(call("GET", f"{i['url']}/api/tags"))["models"]
        ps = json.loads(call("GET", f"{i['url']}/api/ps"))["models"]
        held = ", ".join(f"{m['name']}@{m['digest'][:12]}" for m in sorted(tags, key=lambda m: m["name"]))
        loaded = ", ".join(sorted(m["name"] for m in ps)) or "-"
        print(f"{i['name']:6} holds: {held}")
        print(f"{'':6} loaded: {loaded}")

token = json.loads(call("POST", f"{webui}/api/v1/auths/signin", {"email": "", "password": ""}))["token"]
# The emulated demo: a new llama3.2 appears in the registry.
new = hashlib.sha256(b"llama3.2 next release").hexdigest()
for i in instances:
    try:
        call("POST", f"{i['url']}/_emu/registry", {"name": "llama3.2", "digest": new})
    except Exception:
        pass  # a real Ollama: nothing to publish
# A second loaded copy, put there on purpose: x-ollama-instance pins the
# preload (no prompt, no keep_alive 0) to gpu-b.
lb = os.environ["LB"]
req = urllib.request.Request(f"{lb}/api/generate", data=json.dumps({"model": "llama3.2"}).encode(), method="POST")
req.add_header("x-ollama-instance", instances[1]["name"])
urllib.request.urlopen(req, timeout=600).read()
show("before")

models = json.loads(call("GET", f"{webui}/ollama/api/tags/0", token=token))["models"]
print(f"\n== Update All Models (Open WebUI: POST /ollama/api/pull/0 for each of {len(models)} models)")
for m in models:
    lines = [json.loads(l) for l in call("POST", f"{webui}/ollama/api/pull/0", {"name": m["name"]}, token).splitlines() if l.strip()]
    last_per_layer = {l["digest"]: l for l in lines if "digest" in l}
    top = max(last_per_layer.values(), key=lambda l: l.get("total", 0), default={})
    print(f"{m['name']:24} {len(lines):3} lines; weights layer at the end: {top.get('completed')}/{top.get('total')}; last: {json.dumps(lines[-1])}")
show("after Update All Models")

loaded = json.loads(call("GET", f"{webui}/ollama/api/ps", token=token))["models"]
print(f"\n== eject (Open WebUI: POST /ollama/api/unload) for {[m['name'] for m in loaded]}")
for m in loaded:
    print(m["name"], call("POST", f"{webui}/ollama/api/unload", {"model": m["name"]}, token))
show("after eject")
PY
