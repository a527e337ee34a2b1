import { configDefaults, defineConfig } from "vitest/config";

/**
 * The chaos suite (test/tail/chaos-rotation.test.ts) is run by `npm run test:chaos`, not by `npm test`: its
 * copytruncate cases still find duplicates in some runs (issue 16 is open; README "copytruncate"), and a suite
 * that is red for a known, reported bug would hide every other result.
 */
export const CHAOS_TESTS = ["test/tail/chaos-rotation.test.ts"];

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: [...configDefaults.exclude, ...CHAOS_TESTS],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
    globalSetup: ["test/fixtures/global-setup.ts", "test/fixtures/es-global-setup.ts"],
  },
});
