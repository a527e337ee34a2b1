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
# A skipped or todo test fails the run (always, not only under CI): a test that cannot run here must say why and fail.
# Select tests by file (`npm test -- test/tail`), not with -t, which skips the rest.
report=.cache/vitest-report.json
mkdir -p .cache
rm -f "$report"
npx vitest run --reporter=default --reporter=json --outputFile="$report" "$@"
node scripts/no-skipped-tests.mjs "$report"
