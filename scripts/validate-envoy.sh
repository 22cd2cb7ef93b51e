#!/usr/bin/env bash
# Runs `envoy --mode validate` on every Envoy configuration in the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
shopt -s nullglob
for f in envoy/*.yaml; do
  if out=$(.venv/bin/envoy --mode validate -c "$f" --disable-hot-restart -l error 2>&1); then
    echo "ok      $f"
  else
    echo "INVALID $f"; echo "$out" | tail -20; status=1
  fi
done
exit $status
