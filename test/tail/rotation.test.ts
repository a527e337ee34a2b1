import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  exactlyOnceReport,
  readStamped,
  readStampedSoFar,
  removeDir,
  runWriter,
  seqCounts,
  startCli,
  stopAgent,
  tempDir,
  until,
} from "../helpers/agent.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) removeDir(d);
});

function setup() {
  const root = tempDir("ikon-rot-");
  dirs.push(root);
  return { root, logs: join(root, "logs"), out: join(root, "out"), state: join(root, "state") };
}

const agentArgs = (d: ReturnType<typeof setup>) => [
  "run",
  "--watch",
  d.logs,
  "--output",
  `file:${d.out}`,
  "--state-dir",
  d.state,
  "--svc",
  "rot",
  "--linger",
  "300ms",
  "--poll-interval",
  "100ms",
];

describe("rotation under a 20k lines/s writer", () => {
  it("rename rotation: every line exactly once, one output file per stream", async () => {
    const d = setup();
    const { mkdirSync } = await import("node:fs");
    mkdirSync(d.logs);
    const agent = startCli(agentArgs(d));
    await agent.waitForLog("tailing");
    // Two files at 10k lines/s each, both rotating by rename every 7,000 lines.
    const total = 60_000;
    const ws = await Promise.all([
      runWriter([join(d.logs, "app.log"), total, 10_000, "rename", 7_000, "r"]),
      runWriter([join(d.logs, "web.log"), total, 10_000, "rename", 7_000, "w"]),
    ]);
    expect(ws.map((w) => w.rotations)).toEqual([8, 8]); // at 7k, 14k, … 56k
    const done = () => {
      const lines = readStampedSoFar(d.out);
      return seqCounts(lines, "r").size >= total && seqCounts(lines, "w").size >= total;
    };
    await until(done, 20_000).catch(() => undefined); // the assertions below say what is missing
    await stopAgent(agent);
    const lines = readStamped(d.out);
    expect(exactlyOnceReport(seqCounts(lines, "r"), total)).toEqual({
      missing: 0,
      dup: 0,
      missingSample: [],
    });
    expect(exactlyOnceReport(seqCounts(lines, "w"), total)).toEqual({
      missing: 0,
      dup: 0,
      missingSample: [],
    });
    // The stream keeps one output file across rotations; rotated names are never read as new streams.
    expect(readdirSync(d.out).sort()).toEqual(["app.log", "web.log"]);
  });

  it("copytruncate: restarts the file at 0, no line twice, no broken line", async () => {
    const d = setup();
    const { mkdirSync } = await import("node:fs");
    mkdirSync(d.logs);
    const agent = startCli(agentArgs(d));
    await agent.waitForLog("tailing");
    const total = 40_000;
    const w = await runWriter([join(d.logs, "app.log"), total, 20_000, "copytruncate", 10_000, "c"]);
    expect(w.rotations).toBe(3);
    const last = total - 1;
    await until(() => seqCounts(readStampedSoFar(d.out)).has(last), 20_000);
    await stopAgent(agent);
    const lines = readStamped(d.out);
    for (const l of lines) expect(l.text).toMatch(/^seq=\d+ c x+$/);
    const counts = seqCounts(lines);
    const rep = exactlyOnceReport(counts, total);
    expect(rep.dup).toBe(0);
    // copytruncate can lose what the writer appended between the agent's last read and the truncate (an
    // inherent race of copytruncate); every such line is in the rotated copy, and it is counted here.
    const copies = readdirSync(d.logs)
      .filter((n) => n !== "app.log")
      .map((n) => readFileSync(join(d.logs, n), "utf8"))
      .join("");
    for (let i = 0; i < total; i++) if (!counts.has(i)) expect(copies).toContain(`seq=${i} c `);
    expect(rep.missing).toBeLessThan(total * 0.05);
  });
});

describe("deletion", () => {
  it("a file deleted while the application still writes to it is read to its end, then finished", async () => {
    const d = setup();
    const { mkdirSync, openSync, writeSync, closeSync, unlinkSync } = await import("node:fs");
    mkdirSync(d.logs);
    const file = join(d.logs, "gone.log");
    const fd = openSync(file, "a");
    writeSync(fd, "before-1\nbefore-2\n");
    const agent = startCli(agentArgs(d));
    await agent.waitForLog("tailing");
    await until(() => readStampedSoFar(d.out).length === 2);
    unlinkSync(file);
    writeSync(fd, "after-delete\nlast without newline");
    closeSync(fd);
    await until(() => readStampedSoFar(d.out).length === 4, 10_000);
    await stopAgent(agent);
    expect(readStamped(d.out).map((l) => l.text)).toEqual([
      "before-1",
      "before-2",
      "after-delete",
      "last without newline",
    ]);
  });
});
