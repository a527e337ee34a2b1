import { defineConfig } from "vitest/config";

/** The rotation chaos suite: part of `npm test`, and runnable alone with `npm run test:chaos`. */
export const CHAOS_TESTS = ["test/tail/chaos-rotation.test.ts"];

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
    globalSetup: ["test/fixtures/global-setup.ts", "test/fixtures/es-global-setup.ts"],
  },
});
