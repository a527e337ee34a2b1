#!/bin/bash
# The paper's IKontainer mechanism (Iijima & Kushida, §5.2), reproduced as faithfully as its text allows,
# as the baseline of bench/overhead.ts:
#   - the CUID is made once with `uuidgen`;
#   - `inotifywait -m -r -e modify` watches the log folder recursively;
#   - on every MODIFY event the latest line of the file is read with `tail`, the CUID tag
#     {"ikontainer_CUID":"…","svc":"…"} is appended to it, and the tagged line is appended to the file the
#     log agent (fluentd in the paper) ships.
# The paper does not say what happens when several lines arrive between two events (inotify merges
# identical unread events) or when an event fires for a line already tagged: this script does exactly what
# the mechanism does, and the benchmark counts the lost and duplicated lines.
# The paper also says the log files are "rewritten"; rewriting the watched file in place re-triggers MODIFY
# on itself and races with the application's own appends, so the tagged lines go to a separate folder.
#
# Usage: paper-agent.sh WATCH_DIR OUT_DIR SVC
set -u
WATCH=${1:?usage: paper-agent.sh WATCH_DIR OUT_DIR SVC}
OUT=${2:?usage: paper-agent.sh WATCH_DIR OUT_DIR SVC}
SVC=${3:?usage: paper-agent.sh WATCH_DIR OUT_DIR SVC}
WATCH=${WATCH%/}
mkdir -p "$OUT"

CUID=$(uuidgen)
TAG="{\"ikontainer_CUID\":\"$CUID\",\"svc\":\"$SVC\"}"
echo "paper-agent: CUID $CUID svc $SVC watching $WATCH" >&2
# (inotifywait reports "Watches established." on stderr when it is ready; the benchmark waits for it)

inotifywait -m -r -e modify --format '%w%f' "$WATCH" | while IFS= read -r path; do
  rel=${path#"$WATCH"/}
  case $rel in */*) [ -d "$OUT/${rel%/*}" ] || mkdir -p "$OUT/${rel%/*}" ;; esac
  line=$(tail -n 1 "$path")
  printf '%s%s\n' "$line" "$TAG" >>"$OUT/$rel"
done
