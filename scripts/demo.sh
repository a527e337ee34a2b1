#!/bin/sh
# Quick start: the incident the CUID exists for. A small "cart" service is scaled in and out, and a later
# instance gets the pod IP an earlier one had; one request failed in between. One agent per container instance
# stamps its lines with its CUID into the embedded local store; then grep by IP (mixes instances) is put beside
# whois/logs/trace (one instance, the right lines), and the page of `ikontainer ui` shows the same answer.
# Pod IPs are simulated: each agent gets its instance's IP through POD_IP, as the Downward API would set it.
set -eu
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null
npx tsc -p tsconfig.build.json
D=.demo
rm -rf "$D"
mkdir -p "$D"
ik() { node dist/cli/main.js "$@"; }
PIDS=""
trap 'for p in $PIDS; do kill "$p" 2>/dev/null || true; done' EXIT

# start NAME SVC IP: one agent beside one container instance, waits until it tails
start() {
  mkdir -p "$D/$1"
  POD_IP=$3 POD_NAME=$1 NODE_NAME=node-a POD_NAMESPACE=shop node dist/cli/main.js run --watch "$D/$1" \
    --state-dir "$D/$1-state" --svc "$2" --linger 500ms 2>"$D/$1-agent.log" &
  eval "PID_$(echo "$1" | tr - _)=$!"
  PIDS="$PIDS $!"
  i=0
  until grep -q '"msg":"tailing"' "$D/$1-agent.log" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 600 ] || { echo "demo: the agent of $1 did not start; see $D/$1-agent.log" >&2; exit 1; }
    sleep 0.1
  done
}
pid() { eval "echo \$PID_$(echo "$1" | tr - _)"; }
# stored NAME N: waits until the agent of NAME has stored N lines
stored() {
  i=0
  until [ "$(find "$D/$1-state/store" -type f -exec cat {} + 2>/dev/null | wc -l)" -ge "$2" ]; do
    i=$((i + 1))
    [ $i -lt 600 ] || { echo "demo: the agent of $1 stored fewer than $2 lines; see $D/$1-agent.log" >&2; exit 1; }
    sleep 0.1
  done
}
count() { echo "$1" | sed "s/.*\"$2\":\([0-9]*\).*/\1/"; }

echo "== web, cart-1 (10.0.0.21) and cart-2 (10.0.0.22) start; web calls cart; one request fails"
start web web.shop.cluster.local 10.0.0.10
start cart-1 cart.shop.cluster.local 10.0.0.21
start cart-2 cart.shop.cluster.local 10.0.0.22
A=$(node scripts/demo-app.mjs "$D" before 20)
stored cart-1 "$(count "$A" cart-1)"
echo "== scale in: cart-1 is killed (kill -9: no clean stop in the ledger)"
kill -KILL "$(pid cart-1)"
sleep 1
echo "== scale out: cart-3 starts and gets 10.0.0.21, the IP cart-1 had"
start cart-3 cart.shop.cluster.local 10.0.0.21
B=$(node scripts/demo-app.mjs "$D" after 20)
WEB_LINES=$(($(count "$A" web) + $(count "$B" web)))
stored web "$WEB_LINES"
stored cart-2 $(($(count "$A" cart-2) + $(count "$B" cart-2)))
stored cart-3 "$(count "$B" cart-3)"
for n in web cart-2 cart-3; do kill -TERM "$(pid "$n")"; done
for n in web cart-2 cart-3; do wait "$(pid "$n")" || true; done
PIDS=""

REQ=$(echo "$A" | sed 's/.*"failing":{"id":"\([^"]*\)".*/\1/')
AT=$(echo "$A" | sed 's/.*"at":"\([^"]*\)".*/\1/')
IP=10.0.0.21
STATES=""
for n in web cart-1 cart-2 cart-3; do STATES="$STATES --state-dir $D/$n-state"; done
CUID1=$(ik cuid --state-dir "$D/cart-1-state")
echo
echo "The failing request: $REQ at $AT, web got a 502 from $IP."
echo
echo "== 1. grep by IP: grep -rh $IP $D/*-state/store   (what an IP-only search finds)"
GREP=$(grep -rh "$IP" "$D"/*-state/store)
echo "$GREP" | wc -l | sed 's/^/   lines: /'
echo "   from these container instances (CUID: lines):"
echo "$GREP" | grep -o '"ikontainer_CUID":"[^"]*","svc":"[^"]*"' | sort | uniq -c | sed 's/"ikontainer_CUID":"\([^"]*\)","svc":"\([^"]*\)"/\1 \2/; s/^/   /'
echo "   -> several instances' lines mixed: the IP alone cannot say which one failed."
echo
echo "== 2. ikontainer whois $IP --at $AT   (all state dirs)"
ik whois "$IP" --at "$AT" $STATES || true
echo "   (without --at: every holder of $IP, the crashed one's end inferred from the next start)"
ik whois "$IP" $STATES | sed 's/^/   /' || true
echo
echo "== 3. ikontainer logs --cuid $CUID1 --request-id $REQ"
ik logs --cuid "$CUID1" --request-id "$REQ" $STATES || true
echo
echo "== 4. ikontainer trace $REQ"
ik trace "$REQ" $STATES || true
echo
PORT=${IKONTAINER_DEMO_UI_PORT:-8765}
URL="http://127.0.0.1:$PORT/ip?ip=$IP&at=$AT"
UI="node dist/cli/main.js ui --listen 127.0.0.1:$PORT$STATES"
if [ -t 1 ] && [ "${IKONTAINER_DEMO_NO_UI:-}" = "" ]; then
  echo "== The same answer on a page: open $URL"
  echo "   (request path: http://127.0.0.1:$PORT/request?id=$REQ ; Ctrl-C stops the page)"
  exec $UI
else
  echo "== The same answer on a page: run"
  echo "   $UI"
  echo "   and open $URL"
fi
