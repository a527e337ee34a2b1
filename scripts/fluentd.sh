#!/bin/sh
# Starts and stops real fluentd (../shared/vendor: fluentd 1.16.11, fluent-plugin-elasticsearch 5.2.5,
# serverengine 2.3.2, run by Debian's Ruby) for tests and benchmarks.
#
#   scripts/fluentd.sh start DIR      run DIR/fluent.conf; buffers, pos files and the log stay in DIR; wait until ready
#   scripts/fluentd.sh stop DIR       SIGTERM to the pid in DIR/pid (fluentd flushes), SIGKILL after 30 s
#   scripts/fluentd.sh status DIR     exit 0 while that fluentd runs
#   scripts/fluentd.sh check DIR      parse DIR/fluent.conf with fluentd's --dry-run
#
# The vendor folder is read-only: everything fluentd writes goes under DIR (the configuration names those paths).
# fluentd runs without its supervisor (`--no-supervisor`), so DIR/pid is the process that does the work: a
# SIGKILL to it is a crash, with nothing left behind. Environment: IKONTAINER_FLUENTD_VENDOR (../shared/vendor
# from the project root), IKONTAINER_FLUENTD_READY_TIMEOUT (seconds, 120); the configuration's "#{ENV[...]}"
# values come from the caller's environment.
set -eu
cd "$(dirname "$0")/.."
VENDOR=${IKONTAINER_FLUENTD_VENDOR:-$(pwd)/../shared/vendor}
FLUENTD=$VENDOR/fluentd-1.16.11/bin/fluentd
RUBYLIB_DIRS=$VENDOR/serverengine-2.3.2/lib:$VENDOR/fluent-plugin-elasticsearch-5.2.5/lib
READY_TIMEOUT=${IKONTAINER_FLUENTD_READY_TIMEOUT:-120}

log() { echo "fluentd.sh: $*" >&2; }
die() { log "$*"; exit 1; }

prereq() {
  [ -f "$FLUENTD" ] || die "fluentd not found at $FLUENTD (set IKONTAINER_FLUENTD_VENDOR)"
  command -v ruby >/dev/null 2>&1 || die "ruby is not installed (scripts/setup.sh installs Debian's Ruby packages)"
}

dir_of() {
  d=${1:?usage: start|stop|status|check DIR}
  [ -d "$d" ] || die "no such dir: $d"
  (cd "$d" && pwd)
}

alive() { [ -f "$1/pid" ] && kill -0 "$(cat "$1/pid")" 2>/dev/null; }

start() {
  prereq
  d=$(dir_of "$1")
  [ -f "$d/fluent.conf" ] || die "$d/fluent.conf missing"
  if alive "$d"; then log "already running (pid $(cat "$d/pid"))"; return 0; fi
  : >"$d/fluentd.log"
  # a plain background command (no function, no subshell), so $! is fluentd itself
  RUBYLIB=$RUBYLIB_DIRS${RUBYLIB:+:$RUBYLIB} ruby "$FLUENTD" -c "$d/fluent.conf" --no-supervisor \
    >>"$d/fluentd.log" 2>&1 </dev/null &
  echo $! >"$d/pid"
  i=0
  # in_forward and the outputs are up when fluentd logs this line
  until grep -q "fluentd worker is now running" "$d/fluentd.log" 2>/dev/null; do
    if ! kill -0 "$(cat "$d/pid")" 2>/dev/null; then
      tail -n 30 "$d/fluentd.log" >&2
      die "fluentd exited during start (log: $d/fluentd.log)"
    fi
    i=$((i + 1))
    if [ "$i" -gt $((READY_TIMEOUT * 5)) ]; then
      tail -n 30 "$d/fluentd.log" >&2
      die "fluentd not ready after ${READY_TIMEOUT} s (log: $d/fluentd.log)"
    fi
    sleep 0.2
  done
  log "running (pid $(cat "$d/pid"), log $d/fluentd.log)"
}

stop() {
  d=$(dir_of "$1")
  [ -f "$d/pid" ] || return 0
  pid=$(cat "$d/pid")
  kill "$pid" 2>/dev/null || true
  i=0
  while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -gt 300 ] && { log "no exit 30 s after SIGTERM: SIGKILL"; kill -9 "$pid" 2>/dev/null || true; break; }
    sleep 0.1
  done
  rm -f "$d/pid"
}

status() { alive "$(dir_of "$1")"; }

check() {
  prereq
  d=$(dir_of "$1")
  RUBYLIB=$RUBYLIB_DIRS${RUBYLIB:+:$RUBYLIB} ruby "$FLUENTD" -c "$d/fluent.conf" --dry-run
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  start) start "$@" ;;
  stop) stop "$@" ;;
  status) status "$@" ;;
  check) check "$@" ;;
  *)
    sed -n '5,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
