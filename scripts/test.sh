#!/bin/sh
# The one test command: installs what is missing, checks format and lint, type-checks, builds, runs every test.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
npx biome check .
npx tsc -p tsconfig.json --noEmit
npx tsc -p tsconfig.build.json
npx vitest run "$@"
