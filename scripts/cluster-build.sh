#!/bin/sh
# Builds the Kubernetes and etcd binaries the test cluster runs, once per machine, from the Go module proxy.
#
#   scripts/cluster-build.sh        build into $IKONTAINER_K8S_BASE/<versions>/bin (default /var/tmp/ikontainer-k8s)
#
# Kept outside the work tree (CI clones into a new folder each time) and keyed by the versions, so a machine builds
# them once (~8 min cold on 2 cores). k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces the staging
# modules with ./staging paths, so a wrapper module requires it and points each staging module at its published
# v0.x twin. Called by scripts/cluster.sh build.
set -eu
K8S_VERSION=${IKONTAINER_K8S_VERSION:-v1.34.4}
ETCD_VERSION=${IKONTAINER_ETCD_VERSION:-v3.6.17}
BASE=${IKONTAINER_K8S_BASE:-/var/tmp/ikontainer-k8s}/k8s-$K8S_VERSION-etcd-$ETCD_VERSION
BIN=$BASE/bin
K8S_CMDS="kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl"
export PATH="$PATH:/usr/local/go/bin"
export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0

log() { echo "cluster-build.sh: $*" >&2; }
die() { log "$*"; exit 1; }

all_built() {
  for c in $K8S_CMDS etcd etcdctl; do [ -x "$BIN/$c" ] || return 1; done
}
if all_built; then echo "$BIN"; exit 0; fi
command -v go >/dev/null 2>&1 || die "go is not installed (needed to build Kubernetes $K8S_VERSION)"

# Only one build at a time per machine: a second caller waits for the first.
mkdir -p "$BASE"
exec 9>"$BASE/.build.lock"
flock 9
if all_built; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN"

minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
staging_version="v0.${K8S_VERSION#v1.}"
date_now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ver_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ver_flags="$ver_flags -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ver_flags="$ver_flags -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date_now"
done

# --- Kubernetes ---
src=$BASE/src/kubernetes
mkdir -p "$src"
cd "$src"
if [ ! -f go.mod ]; then
  cat >go.mod.tmp <<MOD
module ikontainer.local/k8s-build

go 1.24.0

godebug default=go1.24

require k8s.io/kubernetes $K8S_VERSION
MOD
  mv go.mod.tmp go.mod
  upstream_mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$upstream_mod" ] || die "could not download k8s.io/kubernetes@$K8S_VERSION"
  # every `k8s.io/X => ./staging/src/k8s.io/X` becomes `k8s.io/X => k8s.io/X v0.<minor>.<patch>`
  {
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$upstream_mod"
    echo ")"
  } >>go.mod
  grep -q '=>' go.mod || die "no staging replaces found in $upstream_mod"
fi
for c in $K8S_CMDS; do
  [ -x "$BIN/$c" ] && continue
  log "building $c $K8S_VERSION"
  go get "k8s.io/kubernetes/cmd/$c@$K8S_VERSION" >&2
  go build -trimpath -ldflags "-s -w $ver_flags" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c"
  mv "$BIN/$c.tmp" "$BIN/$c"
done

# --- etcd --- (its server module also carries replace directives: same wrapper approach)
src=$BASE/src/etcd
mkdir -p "$src"
cd "$src"
if [ ! -f go.mod ]; then
  cat >go.mod <<MOD
module ikontainer.local/etcd-build

go 1.24.0

require (
	go.etcd.io/etcd/server/v3 $ETCD_VERSION
	go.etcd.io/etcd/etcdctl/v3 $ETCD_VERSION
)
MOD
fi
for pair in etcd:go.etcd.io/etcd/server/v3 etcdctl:go.etcd.io/etcd/etcdctl/v3; do
  c=${pair%%:*}
  pkg=${pair#*:}
  [ -x "$BIN/$c" ] && continue
  log "building $c $ETCD_VERSION"
  go get "$pkg@$ETCD_VERSION" >&2
  go build -trimpath -ldflags "-s -w" -o "$BIN/$c.tmp" "$pkg"
  mv "$BIN/$c.tmp" "$BIN/$c"
done
all_built || die "build incomplete in $BIN"
echo "$BIN"
