import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  checkSeqLines,
  countLines,
  killLoop,
  killStartedAgents,
  readStamped,
  removeDir,
  startCli,
  startCpuBurners,
  startWriter,
  stopAgent,
  tempDir,
  testSeed,
  untilProgress,
} from "../helpers/agent.js";
import { seededRandom } from "../helpers/seeded-random.js";

const dirs: string[] = [];
afterEach(() => {
  killStartedAgents();
  for (const d of dirs.splice(0)) removeDir(d);
});

/**
 * 20 effective kill -9s of a live agent: each lands after the agent logged `tailing` and its output grew, after
 * a seeded random delay (seed printed). Two writers, one rotating by rename, one plain in a subfolder; every line
 * checked for its exact shape and counted exactly once.
 */
async function killNine(name: string, burners: number) {
  const root = tempDir("ikon-kill-");
  dirs.push(root);
  const logs = join(root, "logs");
  const out = join(root, "out");
  const state = join(root, "state");
  mkdirSync(join(logs, "b"), { recursive: true });
  const args = ["run", "--watch", logs, "--output", `file:${out}`, "--state-dir", state, "--svc", "k9"];
  args.push("--linger", "200ms", "--poll-interval", "100ms", "--checkpoint-interval", "20ms");
  const seed = testSeed(name);
  const burn = burners ? startCpuBurners(burners, 600_000) : undefined;
  try {
    // The container's first agent start makes the CUID; from then on every line is owed.
    const first = startCli(args);
    await first.waitForLog("tailing", 30_000);
    first.child.kill("SIGKILL");
    await first.exited;
    const a = startWriter([join(logs, "a.log"), 0, 5_000, "rename", 9_000, "a"]);
    const b = startWriter([join(logs, "b", "b.log"), 0, 5_000, "none", 0, "b"]);
    const loop = await killLoop({ args, out, kills: 20, rng: seededRandom(seed), maxDelayMs: 600 }).finally(
      () => Promise.all([a.stop(), b.stop()]),
    );
    const [wa, wb] = await Promise.all([a.done, b.done]);
    const agent = startCli(args);
    await agent.waitForLog("tailing", 30_000);
    // Wait while the output moves; a stall ends the wait and the check below says what is missing.
    await untilProgress(() => countLines(out), wa.lines + wb.lines, 15_000, "final drain").catch(
      () => undefined,
    );
    await stopAgent(agent);
    const lines = readStamped(out);
    const rep = checkSeqLines(lines, { totals: { a: wa.lines, b: wb.lines }, lineBytes: 100 });
    console.log(
      `[${name}] kills ${loop.kills}, lines a ${wa.lines} b ${wb.lines}, rotations ${wa.rotations}`,
    );
    expect(loop.kills).toBe(20);
    expect(wa.rotations).toBeGreaterThan(0);
    for (const r of Object.values(rep))
      expect({ lost: r.lost, duplicated: r.duplicated, broken: r.broken }).toEqual({
        lost: 0,
        duplicated: 0,
        broken: [],
      });
    // One CUID for the container instance across all agent processes.
    expect(new Set(lines.map((l) => l.cuid)).size).toBe(1);
  } finally {
    burn?.stop();
  }
}

describe("kill -9 at any moment", () => {
  it(
    "20 effective kill -9 restarts of a live agent (with rename rotations): every written line exactly once",
    () => killNine("kill9", 0),
    600_000,
  );

  it(
    "soak: the same kill -9 loop beside 2 busy processes (CPU contention)",
    () => killNine("kill9-contention", 2),
    600_000,
  );
});
