#!/bin/sh
# The one test command: installs what is missing, checks format and lint, type-checks, builds, runs every test.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
npx biome check .
npx tsc -p tsconfig.json --noEmit
npx tsc -p tsconfig.build.json
# test/image starts and stops its own Docker engine (scripts/docker.sh); this stops one a crashed run left.
trap 'sh scripts/docker.sh reap || true' EXIT
npx vitest run "$@"
