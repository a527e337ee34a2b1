import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  exactlyOnceReport,
  readStamped,
  readStampedSoFar,
  removeDir,
  runWriter,
  seqCounts,
  sleep,
  startCli,
  stopAgent,
  tempDir,
  until,
} from "../helpers/agent.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) removeDir(d);
});

describe("kill -9 at any moment", () => {
  it("24 kill -9 restarts of a live agent (with rename rotations): every written line comes out exactly once", async () => {
    const root = tempDir("ikon-kill-");
    dirs.push(root);
    const logs = join(root, "logs");
    const out = join(root, "out");
    const state = join(root, "state");
    mkdirSync(join(logs, "b"), { recursive: true });
    const args = ["run", "--watch", logs, "--output", `file:${out}`, "--state-dir", state, "--svc", "k9"];
    args.push(
      "--linger",
      "200ms",
      "--poll-interval",
      "100ms",
      "--checkpoint-interval",
      "20ms",
      "--log-level",
      "warn",
    );

    // The container's first agent start makes the CUID; from then on every line is owed.
    const first = startCli(args.map((a) => (a === "warn" ? "info" : a)));
    await first.waitForLog("tailing");
    first.child.kill("SIGKILL");
    await first.exited;

    // Two writers: one rotating by rename, one plain, in a subfolder; ~8 s of writing.
    const total = 40_000;
    const writers = Promise.all([
      runWriter([join(logs, "a.log"), total, 5_000, "rename", 9_000, "a"]),
      runWriter([join(logs, "b", "b.log"), total, 5_000, "none", 0, "b"]),
    ]);
    let done = false;
    void writers.then(() => {
      done = true;
    });
    let kills = 0;
    while (!done || kills < 24) {
      const agent = startCli(args);
      await sleep(150 + Math.floor(Math.random() * 450));
      agent.child.kill("SIGKILL");
      await agent.exited;
      kills++;
    }
    await writers;
    const agent = startCli(args);
    await until(
      () => {
        const lines = readStampedSoFar(out);
        return seqCounts(lines, "a").size >= total && seqCounts(lines, "b").size >= total;
      },
      30_000,
      200,
    ).catch(() => undefined); // the assertions below say what is missing
    await stopAgent(agent);
    const lines = readStamped(out);
    expect(kills).toBeGreaterThanOrEqual(24);
    expect(exactlyOnceReport(seqCounts(lines, "a"), total)).toEqual({
      missing: 0,
      dup: 0,
      missingSample: [],
    });
    expect(exactlyOnceReport(seqCounts(lines, "b"), total)).toEqual({
      missing: 0,
      dup: 0,
      missingSample: [],
    });
    // One CUID for the container instance across all 25 agent processes.
    expect(new Set(lines.map((l) => l.cuid)).size).toBe(1);
  });
});
