import {
  appendFileSync,
  copyFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  checkSeqLines,
  exactlyOnceReport,
  killStartedAgents,
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
import { waitForCount } from "../helpers/progress.js";

const dirs: string[] = [];
afterEach(() => {
  killStartedAgents();
  for (const d of dirs.splice(0)) removeDir(d);
});

function setup() {
  const root = tempDir("ikon-rot-");
  dirs.push(root);
  return { root, logs: join(root, "logs"), out: join(root, "out"), state: join(root, "state") };
}

const agentArgs = (d: ReturnType<typeof setup>, watcher = "inotify") => [
  "run",
  "--watcher",
  watcher,
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

// --watcher poll finds renames, new files and truncations only by looking every --poll-interval: the same cases.
describe.each(["inotify", "poll"])("rotation under a 20k lines/s writer, --watcher %s", (watcher) => {
  it("rename rotation: every line exactly once, one output file per stream", async () => {
    const d = setup();
    const { mkdirSync } = await import("node:fs");
    mkdirSync(d.logs);
    const agent = startCli(agentArgs(d, watcher));
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
    // Order within a stream: a rotated file is drained to its end before its successor's lines go out.
    for (const tag of ["r", "w"]) {
      const seqs = lines
        .filter((l) => l.text.includes(` ${tag} `))
        .map((l) => Number(/^seq=(\d+)/.exec(l.text)![1]));
      const back = seqs.findIndex((n, i) => i > 0 && n < seqs[i - 1]!);
      expect(back, `stream ${tag} goes back at output line ${back}`).toBe(-1);
    }
    // The stream keeps one output file across rotations; rotated names are never read as new streams.
    expect(readdirSync(d.out).sort()).toEqual(["app.log", "web.log"]);
  });

  it("copytruncate: restarts the file at 0; the copy closes the race: every line exactly once, none broken", async () => {
    const d = setup();
    mkdirSync(d.logs);
    const agent = startCli(agentArgs(d, watcher));
    await agent.waitForLog("tailing");
    const total = 40_000;
    const w = await runWriter([join(d.logs, "app.log"), total, 20_000, "copytruncate", 10_000, "c"]);
    expect(w.rotations).toBe(3);
    await until(() => seqCounts(readStampedSoFar(d.out)).has(total - 1), 20_000);
    await stopAgent(agent);
    // Lines written between the agent's last read and each truncation are read from the copy.
    expect(checkSeqLines(readStamped(d.out), { totals: { c: total }, lineBytes: 100 }).c).toMatchObject({
      lost: 0,
      duplicated: 0,
      broken: [],
    });
  });
});

/** `n` lines `seq=<i> <tag> x…` of 100 bytes, from `from`. */
const seqLines = (tag: string, from: number, n: number) =>
  Array.from({ length: n }, (_, k) => {
    const head = `seq=${from + k} ${tag} `;
    return `${head}${"x".repeat(99 - head.length)}\n`;
  }).join("");

describe("copytruncate edge cases", () => {
  it("lines written just before the truncation (never read from the file) come from the copy", async () => {
    const d = setup();
    mkdirSync(d.logs);
    const file = join(d.logs, "app.log");
    writeFileSync(file, seqLines("t", 0, 10));
    const agent = startCli(agentArgs(d));
    await agent.waitForLog("tailing");
    await until(() => readStampedSoFar(d.out).length === 10);
    // Append, copy and truncate in one go: the agent cannot have read the appended lines from app.log.
    appendFileSync(file, seqLines("t", 10, 3000));
    copyFileSync(file, `${file}.1`);
    truncateSync(file, 0);
    // Fewer new bytes than were read before: the truncation shows as a shrink (see the README's limits).
    appendFileSync(file, seqLines("t", 3010, 5));
    await until(() => seqCounts(readStampedSoFar(d.out)).has(3014), 20_000);
    await stopAgent(agent);
    expect(checkSeqLines(readStamped(d.out), { totals: { t: 3015 }, lineBytes: 100 }).t).toMatchObject({
      lost: 0,
      duplicated: 0,
      broken: [],
    });
  });

  it("a partial line held when the file is truncated goes out marked partial, never as a whole line", async () => {
    const d = setup();
    mkdirSync(d.logs);
    const file = join(d.logs, "app.log");
    writeFileSync(file, "whole-1\nhalf of a li");
    const agent = startCli(agentArgs(d));
    await agent.waitForLog("tailing");
    await until(() => readStampedSoFar(d.out).length === 1);
    truncateSync(file, 0); // no copy: the held bytes are cut for good
    appendFileSync(file, "after-1\n");
    await until(() => readStampedSoFar(d.out).length === 3, 10_000);
    await stopAgent(agent);
    expect(readStamped(d.out).map((l) => [l.text, l.partial ?? false])).toEqual([
      ["whole-1", false],
      ["half of a li", true],
      ["after-1", false],
    ]);
  });

  it("after kill -9, a copy of delivered content is read only past the checkpoint (no duplicates)", async () => {
    const d = setup();
    mkdirSync(d.logs);
    const file = join(d.logs, "app.log");
    const args = [...agentArgs(d), "--checkpoint-interval", "20ms", "--log-level", "info"];
    const first = startCli(args);
    await first.waitForLog("tailing");
    writeFileSync(file, seqLines("k", 0, 500));
    await until(() => readStampedSoFar(d.out).length === 500);
    // The 500 delivered lines are checkpointed (read from the checkpoint file, not timed).
    const checkpointed = () => {
      try {
        const cp = JSON.parse(readFileSync(join(d.state, "checkpoints.json"), "utf8")) as {
          inputs: Record<string, { offset: number }>;
        };
        return Math.max(0, ...Object.values(cp.inputs).map((i) => i.offset));
      } catch {
        return 0; // not written yet
      }
    };
    await waitForCount(checkpointed, statSync(file).size, { stepMs: 20, what: "the 500 lines checkpointed" });
    first.child.kill("SIGKILL");
    await first.exited;
    // While the agent is down: more lines, then copytruncate, then new lines.
    appendFileSync(file, seqLines("k", 500, 200));
    copyFileSync(file, `${file}.1`);
    truncateSync(file, 0);
    appendFileSync(file, seqLines("k", 700, 100));
    const agent = startCli(args);
    await agent.waitForLog("tailing");
    await until(() => seqCounts(readStampedSoFar(d.out)).has(799), 20_000);
    await stopAgent(agent);
    const lines = readStamped(d.out);
    expect(checkSeqLines(lines, { totals: { k: 800 }, lineBytes: 100 }).k).toMatchObject({
      lost: 0,
      duplicated: 0,
      broken: [],
    });
    // In order: the copy's rest before the truncated file's new lines.
    const seqs = lines.map((l) => Number(/^seq=(\d+)/.exec(l.text)![1]));
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    // Explained by the copy: no mismatch warning.
    expect(agent.stderr()).not.toContain("IKON_ERR_CHECKPOINT_MISMATCH");
  });

  it("a checkpoint that matches neither the file nor a copy is warned about (IKON_ERR_CHECKPOINT_MISMATCH), then read from 0", async () => {
    const d = setup();
    mkdirSync(d.logs);
    const file = join(d.logs, "app.log");
    writeFileSync(file, seqLines("m", 0, 50));
    const args = agentArgs(d);
    const first = startCli(args);
    await first.waitForLog("tailing");
    await until(() => readStampedSoFar(d.out).length === 50);
    await stopAgent(first);
    // Same inode, other content (rewritten in place while the agent was down).
    writeFileSync(file, seqLines("n", 0, 60));
    const agent = startCli(args);
    await agent.waitForLog("tailing");
    const warn = await agent.waitForLog(
      "checkpoint does not match the file: reading it from the start (if it is the same content, its lines go out again)",
    );
    expect(warn.code).toBe("IKON_ERR_CHECKPOINT_MISMATCH");
    await until(() => readStampedSoFar(d.out).length === 110);
    await stopAgent(agent);
  });
});

describe("file names", () => {
  it("a file whose name is not valid UTF-8 is reported (IKON_ERR_FILE_NAME), not silently skipped", async () => {
    const d = setup();
    mkdirSync(d.logs);
    const { writeFileSync: write } = await import("node:fs");
    write(
      Buffer.concat([Buffer.from(`${d.logs}/bad-`), Buffer.from([0xff, 0xfe]), Buffer.from(".log")]),
      "x\n",
    );
    writeFileSync(join(d.logs, "good.log"), "y\n");
    const agent = startCli(agentArgs(d));
    await agent.waitForLog("tailing");
    const warn = await agent.waitForLog("file name is not valid UTF-8; it is not read: rename it");
    expect(warn).toMatchObject({ code: "IKON_ERR_FILE_NAME", nameHex: "6261642dfffe2e6c6f67" });
    await until(() => readStampedSoFar(d.out).length === 1);
    await stopAgent(agent);
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
