#!/bin/sh
# Quick start: two demo "containers" (web, api) write logs; one agent per container stamps every line with its
# CUID into the embedded local store; then the query commands find the lines by CUID and request ID.
set -eu
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null
npx tsc -p tsconfig.build.json
D=.demo
rm -rf "$D"
mkdir -p "$D/web" "$D/api"
ik() { node dist/cli/main.js "$@"; }

# One agent per container, as a sidecar would run: its own state dir (CUID, checkpoints, local store).
# (In a pod they start with the application; here we wait until both tail before the app writes.)
POD_IP=10.0.0.11 POD_NAME=web-7d9f-abcde node dist/cli/main.js run --watch "$D/web" --state-dir "$D/web-state" --svc web --linger 500ms 2>"$D/web-agent.log" &
WEB=$!
POD_IP=10.0.0.12 POD_NAME=api-5c4b-fghij node dist/cli/main.js run --watch "$D/api" --state-dir "$D/api-state" --svc api --linger 500ms 2>"$D/api-agent.log" &
API=$!
trap 'kill $WEB $API 2>/dev/null || true' EXIT
i=0
until grep -q '"msg":"tailing"' "$D/web-agent.log" 2>/dev/null && grep -q '"msg":"tailing"' "$D/api-agent.log" 2>/dev/null; do
  i=$((i + 1))
  [ $i -lt 600 ] || { echo "demo: the agents did not start; see $D/*-agent.log" >&2; exit 1; }
  sleep 0.1
done
OUT=$(node scripts/demo-app.mjs "$D" 200)
sleep 2
kill -TERM $WEB $API
wait $WEB $API || true

REQ=$(echo "$OUT" | sed 's/.*"sample":"\([^"]*\)".*/\1/')
WEB_CUID=$(ik cuid --state-dir "$D/web-state")
API_CUID=$(ik cuid --state-dir "$D/api-state")
echo
echo "== 200 requests logged by web (CUID $WEB_CUID) and api (CUID $API_CUID); every line is stamped."
echo "== Raw stamped store lines (first 2 of web):"
head -n 2 "$D/web-state/store/access.log"
echo
echo "== ikontainer logs --state-dir $D/api-state --cuid $API_CUID --request-id $REQ"
ik logs --state-dir "$D/api-state" --cuid "$API_CUID" --request-id "$REQ" || true
echo
echo "== ikontainer trace $REQ --store $D/web-state/store --store $D/api-state/store"
ik trace "$REQ" --store "$D/web-state/store" --store "$D/api-state/store" --state-dir "$D/web-state" || true
echo
echo "== ikontainer whois 10.0.0.12 --state-dir $D/api-state"
ik whois 10.0.0.12 --state-dir "$D/api-state" || true
echo
echo "Try them yourself (the store is in $D/*-state/store):"
echo "  node dist/cli/main.js logs  --state-dir $D/web-state --cuid $WEB_CUID --since 1h"
echo "  node dist/cli/main.js trace $REQ --store $D/web-state/store --store $D/api-state/store"
echo "  node dist/cli/main.js whois 10.0.0.11 --state-dir $D/web-state"
