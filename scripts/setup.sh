#!/bin/sh
# Installs what the tests and the demo need on a fresh Debian 12 machine, idempotently:
# npm dependencies, Debian packages (Knot DNS, BIND 9 for the documented config, dig, inotify-tools, uuidgen, Locust), the Elasticsearch zip.
set -eu
cd "$(dirname "$0")/.."

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

need=""
for pair in knotd:knot kdig:knot-dnsutils dig:bind9-dnsutils nsupdate:bind9-dnsutils named:bind9 curl:curl ip:iproute2 inotifywait:inotify-tools uuidgen:uuid-runtime openssl:openssl; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need="$need $pkg"
done
[ -x /usr/bin/locust ] || need="$need python3-locust"
if [ -n "$need" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages:$need (run as root or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q $need >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $need >/dev/null; }
fi

# Elasticsearch for the sink and query tests (fetched once into .cache/, see scripts/elasticsearch.sh).
if [ -x scripts/elasticsearch.sh ]; then scripts/elasticsearch.sh fetch; fi

# helm (renders the chart) and a strict Kubernetes decoder, built once from the Go module proxy into .cache/,
# for test/deploy: Go >= 1.24 is required (Debian 12's golang is 1.19; install Go from go.dev into /usr/local/go).
PATH="$PATH:/usr/local/go/bin"
export PATH
command -v go >/dev/null 2>&1 || { echo "setup: Go >= 1.24 is required (not on PATH nor in /usr/local/go/bin): install it from https://go.dev/dl/" >&2; exit 1; }
go_minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
[ "${go_minor:-0}" -ge 24 ] || { echo "setup: Go >= 1.24 is required, found $(go env GOVERSION) at $(command -v go)" >&2; exit 1; }
sh scripts/helm.sh >/dev/null
sh scripts/k8s-strict.sh >/dev/null
# kubectl renders the kustomize examples and applies the sidecar patch offline (test/deploy); not in Debian 12.
command -v kubectl >/dev/null 2>&1 || { echo "setup: kubectl is required by test/deploy (kubectl kustomize, kubectl patch --local): install it from https://kubernetes.io/docs/tasks/tools/" >&2; exit 1; }
