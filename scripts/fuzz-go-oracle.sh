#!/usr/bin/env bash
# Differential fuzzing of the filter's body scan against Go (not part of CI):
# feeds COUNT generated and mutated request bodies (default 10,000,000) to
# both the filter's scanner (host-compiled) and tools/go-oracle (Go's
# encoding/json decoding into Ollama's request structs, and the checks
# Ollama makes before the model lookup), and prints every class of
# disagreement on the model read, accept/reject and the error text, with
# examples. SEED replays a run. Installs Go from Debian if it is missing.
#   scripts/fuzz-go-oracle.sh [COUNT] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT="${1:-10000000}"
SEED="${2:-1}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"

# Debian bookworm's own Go is 1.19; its backports carry 1.23 (the newest a
# Debian registry gives here). The oracle needs 1.22+ (cmp.Or, go.mod).
find_go() {
  for g in /usr/lib/go-1.2[3-9]/bin/go /usr/lib/go-1.[3-9]*/bin/go; do
    [ -x "$g" ] && { echo "$g"; return 0; }
  done
  if command -v go >/dev/null 2>&1 && go version | grep -Eq 'go1\.(2[2-9]|[3-9][0-9])'; then
    command -v go
    return 0
  fi
  return 1
}
if ! GO=$(find_go); then
  echo "fuzz: installing Go 1.23 from Debian bookworm-backports" >&2
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat >/etc/apt/sources.list.d/backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports golang-1.23-go >/dev/null
  GO=$(find_go)
fi
echo "fuzz: $("$GO" version)" >&2

mkdir -p target/go-oracle
(cd tools/go-oracle && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$GO" build -o ../../target/go-oracle/go-oracle .)
cargo build --release -q -p filter --example fuzz_oracle
start=$(date +%s)
nice -n 5 target/release/examples/fuzz_oracle target/go-oracle/go-oracle "$COUNT" "$SEED"
echo "fuzz: wall time $(( $(date +%s) - start )) s (machine: $(nproc) cores, shared)" >&2
