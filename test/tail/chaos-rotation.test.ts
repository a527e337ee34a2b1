import { describe, expect, it } from "vitest";
import { testSeed } from "../helpers/agent.js";
import { type ChaosOptions, runChaos } from "../helpers/chaos.js";

/**
 * Issue 16: 4 files at 10,000 lines/s in all, each rotated every 4,000 lines, the agent kill -9ed ~every second
 * (each kill after it is tailing and its output grew), 20 kills, then a strict line-by-line check: every
 * written line exactly once, none broken. The copytruncate race is closed (the copy is read past the
 * checkpointed offset), so nothing may be lost in any mode.
 */
async function chaos(name: string, o: Omit<ChaosOptions, "seed">) {
  const r = await runChaos({ ...o, seed: testSeed(name) });
  console.log(`[${name}] ${JSON.stringify(r)}`);
  expect(r.restarts).toBeGreaterThanOrEqual(20);
  expect(r.rotations).toBeGreaterThan(0);
  expect({ lost: r.lost, duplicated: r.duplicated, broken: r.brokenSample }).toEqual({
    lost: 0,
    duplicated: 0,
    broken: [],
  });
}

describe("chaos: rotation under kill -9 (issue 16)", () => {
  for (const rotation of ["rename", "copytruncate", "mixed"] as const)
    it(
      `${rotation}: 20 kill -9 restarts, every line exactly once`,
      () => chaos(rotation, { rotation }),
      600_000,
    );

  it(
    "mixed, under CPU contention (2 busy processes): every line exactly once",
    () => chaos("mixed-contention", { rotation: "mixed", burners: 2 }),
    600_000,
  );

  it(
    "node mode (CRI files under a pod log tree), mixed: every line exactly once",
    () => chaos("node-mixed", { rotation: "mixed", node: true }),
    600_000,
  );

  it(
    "node mode, copytruncate, under CPU contention: every line exactly once",
    () => chaos("node-copytruncate-contention", { rotation: "copytruncate", node: true, burners: 2 }),
    600_000,
  );
});
