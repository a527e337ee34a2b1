#!/bin/sh
# Fetches, starts and stops a single-node Elasticsearch for tests, benchmarks and the demo.
#
#   scripts/elasticsearch.sh fetch                 zip from Maven Central into .cache/elasticsearch, unpacked once
#   scripts/elasticsearch.sh start PORT [DIR]      start a node on 127.0.0.1:PORT (data/logs/config in DIR), wait for yellow
#   scripts/elasticsearch.sh stop DIR|PORT         stop it (SIGTERM, then SIGKILL after 30 s)
#   scripts/elasticsearch.sh status DIR|PORT       exit 0 when the node answers
#   scripts/elasticsearch.sh version               the Elasticsearch version this script runs
#
# Elasticsearch refuses to run as root: as root the node runs as the dedicated user `ikontainer-es` (created on
# first use); run by any other user, the node runs as that user. Java 17 from the machine (ES_JAVA_HOME overrides).
# Environment: IKONTAINER_ES_VERSION (8.19.2), IKONTAINER_ES_BASE (/var/tmp/ikontainer-es: unpacked distribution
# and default node dirs, outside the work tree so the dedicated user can read it wherever the repo lives),
# IKONTAINER_ES_HEAP (512m), IKONTAINER_ES_USER (ikontainer-es).
set -eu
cd "$(dirname "$0")/.."
REPO=$(pwd)

VERSION=${IKONTAINER_ES_VERSION:-8.19.2}
BASE=${IKONTAINER_ES_BASE:-/var/tmp/ikontainer-es}
HEAP=${IKONTAINER_ES_HEAP:-512m}
ES_USER=${IKONTAINER_ES_USER:-ikontainer-es}
CACHE=$REPO/.cache/elasticsearch
ZIP=$CACHE/elasticsearch-$VERSION.zip
HOME_DIR=$BASE/elasticsearch-$VERSION
ARTIFACT=org.elasticsearch.distribution.integ-test-zip:elasticsearch:$VERSION:zip
ROOT_PLUGIN_SRC=$REPO/test/fixtures/es-root-plugin

log() { echo "elasticsearch.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# a fresh Debian machine, as root: install what is missing
apt_install() {
  [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 || return 0
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; } || true
}

fetch() {
  if [ ! -s "$ZIP" ]; then
    mkdir -p "$CACHE"
    command -v mvn >/dev/null 2>&1 || apt_install maven
    command -v mvn >/dev/null 2>&1 || die "mvn is not installed (apt-get install maven), needed to fetch $ARTIFACT"
    log "fetching $ARTIFACT"
    mvn -q dependency:copy -Dartifact="$ARTIFACT" -DoutputDirectory="$CACHE" -Dmdep.overWriteIfNewer=true ||
      die "could not fetch $ARTIFACT from Maven Central"
  fi
  if [ ! -x "$HOME_DIR/bin/elasticsearch" ]; then
    mkdir -p "$BASE"
    chmod 755 "$BASE"
    tmp=$(mktemp -d "$BASE/unpack.XXXXXX")
    if command -v unzip >/dev/null 2>&1; then
      unzip -q "$ZIP" -d "$tmp"
    else
      python3 -m zipfile -e "$ZIP" "$tmp" # drops the exec bits: restored below
      chmod a+x "$tmp/elasticsearch-$VERSION/bin/"*
    fi
    chmod -R a+rX "$tmp"
    # rename is atomic: two racing fetches both end with a complete distribution
    mv "$tmp/elasticsearch-$VERSION" "$HOME_DIR" 2>/dev/null || true
    rm -rf "$tmp"
    [ -x "$HOME_DIR/bin/elasticsearch" ] || die "unpacking $ZIP failed"
  fi
  root_plugin
}

# The integ-test zip has no handler for `GET /` (405); the Ruby client in fluentd's out_elasticsearch needs it.
# Our plugin (test/fixtures/es-root-plugin, docs/elasticsearch.md) is compiled against this distribution's jars
# and installed into its plugins/ folder, rebuilt when its sources change.
root_plugin() {
  dest=$HOME_DIR/plugins/ikontainer-es-root
  sum=$(cat "$ROOT_PLUGIN_SRC/plugin-descriptor.properties.in" $(find "$ROOT_PLUGIN_SRC/src" -name '*.java' | sort) | sha256sum | cut -c1-16)
  [ "$(cat "$dest/.source-sum" 2>/dev/null)" = "$sum" ] && return 0
  # one builder at a time (concurrent fetches); the next one finds the plugin current
  exec 8>"$BASE/root-plugin.lock"
  flock 8
  [ "$(cat "$dest/.source-sum" 2>/dev/null)" = "$sum" ] && { exec 8>&-; return 0; }
  jdk=$(java_home)
  [ -x "$jdk/bin/javac" ] || { apt_install openjdk-17-jdk-headless; jdk=$(java_home); }
  [ -x "$jdk/bin/javac" ] || die "javac (JDK 17) is needed to build the GET / plugin (apt-get install openjdk-17-jdk-headless)"
  tmp=$(mktemp -d "$BASE/root-plugin.XXXXXX")
  mkdir -p "$tmp/classes" "$tmp/plugin"
  "$jdk/bin/javac" -nowarn --release 17 -cp "$HOME_DIR/lib/*" -d "$tmp/classes" $(find "$ROOT_PLUGIN_SRC/src" -name '*.java') ||
    { rm -rf "$tmp"; die "compiling $ROOT_PLUGIN_SRC failed"; }
  "$jdk/bin/jar" --create --file "$tmp/plugin/ikontainer-es-root.jar" -C "$tmp/classes" .
  sed "s/@VERSION@/$VERSION/g" "$ROOT_PLUGIN_SRC/plugin-descriptor.properties.in" >"$tmp/plugin/plugin-descriptor.properties"
  echo "$sum" >"$tmp/plugin/.source-sum"
  chmod -R a+rX "$tmp/plugin"
  # swap by rename: a node starting meanwhile sees the old or the new plugin, never half of one
  [ -d "$dest" ] && mv "$dest" "$tmp/old"
  mv "$tmp/plugin" "$dest"
  rm -rf "$tmp"
  exec 8>&-
  log "installed the GET / plugin into $dest"
}

java_home() {
  if [ -n "${ES_JAVA_HOME:-}" ]; then echo "$ES_JAVA_HOME"; return; fi
  for d in /usr/lib/jvm/java-17-openjdk-* /usr/lib/jvm/java-17-* /usr/lib/jvm/*17*; do
    [ -x "$d/bin/java" ] && { echo "$d"; return; }
  done
  if ! command -v java >/dev/null 2>&1; then
    apt_install openjdk-17-jre-headless
    for d in /usr/lib/jvm/java-17-openjdk-*; do
      [ -x "$d/bin/java" ] && { echo "$d"; return; }
    done
  fi
  j=$(command -v java) || die "no Java 17 found (apt-get install openjdk-17-jre-headless)"
  dirname "$(dirname "$(readlink -f "$j")")"
}

ensure_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  id "$ES_USER" >/dev/null 2>&1 && return 0
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$ES_USER" 2>/dev/null ||
    id "$ES_USER" >/dev/null 2>&1 || die "cannot create user $ES_USER"
}

as_es() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$ES_USER" -- "$@"; else "$@"; fi
}

node_dir() {
  case "$1" in
    */*) echo "$1" ;;
    *[!0-9]*) die "expected a port or a node dir, got '$1'" ;;
    *) echo "$BASE/node-$1" ;;
  esac
}

healthy() {
  u="http://127.0.0.1:$1/_cluster/health?wait_for_status=yellow&timeout=4s"
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -m 5 "$u" >/dev/null 2>&1
  else
    node -e 'fetch(process.argv[1], { signal: AbortSignal.timeout(5000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$u"
  fi
}

# start/stop of one node dir are serialised (flock), so concurrent test runs share one node
lock() {
  exec 9>"$1.lock"
  flock 9
}

wait_healthy() { # PORT PID DIR
  i=0
  while ! healthy "$1"; do
    i=$((i + 1))
    if [ "$i" -gt 600 ] || ! kill -0 "$2" 2>/dev/null; then
      tail -n 40 "$3/logs/ikontainer-test.log" >&2 2>/dev/null || true
      die "not yellow on 127.0.0.1:$1"
    fi
    sleep 0.5
  done
}

start() {
  port=${1:?usage: start PORT [DIR]}
  dir=$(node_dir "${2:-$port}")
  fetch
  ensure_user
  mkdir -p "$dir"
  lock "$dir"
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    port=$(cat "$dir/port")
    wait_healthy "$port" "$(cat "$dir/pid")" "$dir"
    log "already running on http://127.0.0.1:$port"
    # a node started before the GET / plugin was installed lacks it until restarted
    if command -v curl >/dev/null 2>&1 && [ "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:$port/")" != 200 ]; then
      log "warning: this node does not answer GET / (started without the plugin): stop and start it again"
    fi
    return 0
  fi
  mkdir -p "$dir/config" "$dir/data" "$dir/logs"
  [ -f "$dir/config/jvm.options" ] || cp -R "$HOME_DIR/config/." "$dir/config/"
  cat >"$dir/config/elasticsearch.yml" <<EOF
cluster.name: ikontainer-test
node.name: node-$port
discovery.type: single-node
network.host: 127.0.0.1
http.port: $port
transport.port: 0
path.data: $dir/data
path.logs: $dir/logs
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
xpack.security.enabled: false
EOF
  # jvm.options names logs/ relative to the distribution, which the dedicated user cannot write
  sed -i "s#file=logs/#file=$dir/logs/#; s#-XX:ErrorFile=logs/#-XX:ErrorFile=$dir/logs/#; s#-XX:HeapDumpPath=data#-XX:HeapDumpPath=$dir/data#" \
    "$dir/config/jvm.options"
  if [ "$(id -u)" -eq 0 ]; then chown -R "$ES_USER" "$dir"; fi
  echo "$port" >"$dir/port"
  rm -f "$dir/pid"
  log "starting Elasticsearch $VERSION on 127.0.0.1:$port (heap $HEAP, dir $dir)"
  (cd "$dir" && as_es env ES_JAVA_HOME="$(java_home)" ES_PATH_CONF="$dir/config" \
    ES_JAVA_OPTS="-Xms$HEAP -Xmx$HEAP ${ES_JAVA_OPTS_EXTRA:-}" \
    "$HOME_DIR/bin/elasticsearch" -d -p "$dir/pid") >"$dir/start.out" 2>&1 9>&- ||
    { cat "$dir/start.out" >&2; die "start failed (logs in $dir/logs)"; }
  wait_healthy "$port" "$(cat "$dir/pid")" "$dir"
  log "ready on http://127.0.0.1:$port (pid $(cat "$dir/pid"))"
}

stop() {
  dir=$(node_dir "${1:?usage: stop DIR|PORT}")
  [ -d "$dir" ] || return 0
  lock "$dir"
  [ -f "$dir/pid" ] || { log "not running ($dir/pid missing)"; return 0; }
  pid=$(cat "$dir/pid")
  kill "$pid" 2>/dev/null || true
  i=0
  while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -gt 300 ] && { kill -9 "$pid" 2>/dev/null || true; break; }
    sleep 0.1
  done
  rm -f "$dir/pid"
}

status() {
  dir=$(node_dir "${1:?usage: status DIR|PORT}")
  [ -f "$dir/port" ] || exit 1
  healthy "$(cat "$dir/port")"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  fetch) fetch ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  status) status "$@" ;;
  version) echo "$VERSION" ;;
  *)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
