import { defineConfig } from "vitest/config";
import base, { CHAOS_TESTS } from "./vitest.config.js";

/** `npm run test:chaos`: the rotation chaos suite alone (it is also part of `npm test`). */
export default defineConfig({ test: { ...base.test, include: CHAOS_TESTS, exclude: [] } });
