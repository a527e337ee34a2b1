#!/bin/sh
# Builds test/deploy/strict (strict decoding of manifests into the Kubernetes Go types: unknown fields are
# errors) into .cache/k8s-strict, once per source change; prints the binary's path. Needs Go.
set -eu
PATH="$PATH:/usr/local/go/bin" # where the go.dev tarball installs Go
cd "$(dirname "$0")/.."
bin="$PWD/.cache/k8s-strict/k8s-strict"
stamp="$PWD/.cache/k8s-strict/source.sha256"
sum=$(cat test/deploy/strict/main.go test/deploy/strict/go.mod test/deploy/strict/go.sum | sha256sum | cut -d' ' -f1)
if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null 2>&1 || { echo "k8s-strict.sh: go is not installed" >&2; exit 1; }
mkdir -p "$(dirname "$bin")"
(cd test/deploy/strict && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -o "$bin" .) >&2
echo "$sum" > "$stamp"
echo "$bin"
