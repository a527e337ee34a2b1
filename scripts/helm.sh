#!/bin/sh
# Builds helm (pinned) from the Go module proxy into .cache/helm/bin, once; prints the binary's path.
# The deploy tests render the chart with it (test/deploy/chart.test.ts). Needs Go (>= 1.24).
set -eu
PATH="$PATH:/usr/local/go/bin" # where the go.dev tarball installs Go
cd "$(dirname "$0")/.."
HELM_VERSION=v3.22.0
bin="$PWD/.cache/helm/bin/helm"
if [ -x "$bin" ] && "$bin" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null 2>&1 || { echo "helm.sh: go is not installed (needed to build helm $HELM_VERSION)" >&2; exit 1; }
mkdir -p "$PWD/.cache/helm/bin"
# Version stamp as helm's own Makefile sets it, so `helm version` reports the pinned version.
GOBIN="$PWD/.cache/helm/bin" GOFLAGS=-mod=mod CGO_ENABLED=0 \
  go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
echo "$bin"
