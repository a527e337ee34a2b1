#!/bin/sh
# Installs what the tests and the demo need on a fresh Debian 12 machine, idempotently:
# npm dependencies, Debian packages (Knot DNS, BIND 9 for the documented config, dig, inotify-tools, uuidgen, Locust,
# docker.io, debootstrap), the Elasticsearch zip, the Node base for the image test.
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
# Debian's chromium for the browser tests of `ikontainer ui` (driven by playwright-core; no browser download)
[ -x /usr/bin/chromium ] || need="$need chromium"
if [ -n "$need" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages:$need (run as root or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q $need >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $need >/dev/null; }
fi

# Real fluentd (../shared/vendor, run by scripts/fluentd.sh) needs Debian's Ruby and the gems it loads.
need=""
for pkg in ruby ruby-msgpack ruby-yajl ruby-cool.io ruby-http-parser.rb ruby-sigdump ruby-tzinfo ruby-strptime \
  ruby-webrick ruby-serverengine ruby-elasticsearch ruby-excon; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need="$need $pkg"
done
if [ -n "$need" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages for fluentd:$need (run as root or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends $need >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $need >/dev/null; }
fi
# javac builds the test node's `GET /` plugin (scripts/elasticsearch.sh, docs/elasticsearch.md)
command -v javac >/dev/null 2>&1 || { [ "$(id -u)" -eq 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jdk-headless >/dev/null; } || true

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

# Docker engine (docker.io) and debootstrap for test/image; the Node base root filesystem is made once per
# machine and Node version into /var/tmp/ikontainer-image (scripts/docker.sh).
sh scripts/docker.sh install
sh scripts/docker.sh base-tar >/dev/null

# The real single-node Kubernetes of test/cluster (scripts/cluster.sh): binaries built once per machine under
# /var/tmp/ikontainer-k8s (~8 min cold), Debian's containerd, CNI plugins and busybox-static. Root only; the
# cluster tests fail (not skip) without it.
if [ "$(id -u)" -eq 0 ]; then sh scripts/cluster.sh build >/dev/null; fi
