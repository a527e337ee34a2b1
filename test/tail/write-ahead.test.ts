import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CheckpointStore } from "../../src/core/checkpoint.js";
import { Pipeline } from "../../src/core/pipeline.js";
import type { LineBatch } from "../../src/core/record.js";
import { silentLogger } from "../../src/observe/logger.js";
import { Tailer } from "../../src/sources/tail/tailer.js";
import { removeDir, tempDir } from "../helpers/agent.js";
import { waitForCount } from "../helpers/progress.js";

/**
 * A sink with write-ahead (the Elasticsearch sink's `writeAheadBytes`) gets a file's next batches before the
 * earlier ones were accepted. The checkpoint must still only ever record an offset whose every line before it
 * was accepted. The sink here misbehaves on purpose: it accepts batches in a scrambled order (later ones
 * first), as two bulk requests in flight can finish.
 */
/** A tailer of `logs` handing its batches to `pipeline` with the sinks' write-ahead, as `run` wires it. */
function tailerThrough(logs: string, checkpoints: CheckpointStore, pipeline: Pipeline): Tailer {
  return new Tailer({
    roots: [logs],
    include: ["**/*.log"],
    exclude: [],
    maxLineBytes: 16_384,
    lingerMs: 100,
    pollMs: 50,
    readFrom: "head",
    checkpoints,
    log: silentLogger,
    ownedSince: 0,
    submit: (batch, input, after) => pipeline.submit(batch, { input, after }),
    writeAheadBytes: pipeline.writeAheadBytes,
  });
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) removeDir(d);
});

describe("write-ahead", () => {
  it("hands on several batches of one file at once, and checkpoints only what every earlier batch accepted", async () => {
    const root = tempDir("ikon-write-ahead-");
    dirs.push(root);
    const logs = join(root, "logs");
    mkdirSync(logs);
    const n = 20_000; // about 1.2 MB: about 19 reads of 64 KiB
    let text = "";
    for (let i = 0; i < n; i++) text += `line ${String(i).padStart(6, "0")} ${"x".repeat(48)}\n`;
    writeFileSync(join(logs, "app.log"), text);

    const accepted: Array<{ start: number; end: number }> = []; // byte ranges of accepted batches
    const got: string[] = [];
    let outstanding = 0;
    let maxOutstanding = 0;
    let k = 0;
    const sink = {
      id: "scrambled",
      writeAheadBytes: 256 * 1024,
      write: async (b: LineBatch) => {
        outstanding++;
        maxOutstanding = Math.max(maxOutstanding, outstanding);
        // every third batch waits longest: the ones after it are accepted first
        const wait = (k++ % 3) * 15;
        await new Promise((r) => setTimeout(r, wait));
        for (const l of b.lines) got.push(l.bytes.toString());
        accepted.push({ start: b.lines[0]!.offset, end: b.endOffset });
        outstanding--;
        return undefined;
      },
      close: async () => undefined,
    };
    const checkpoints = new CheckpointStore(join(root, "state"));
    const commits: number[] = [];
    const violations: string[] = [];
    const commit = checkpoints.commit.bind(checkpoints);
    checkpoints.commit = (id, state, receipts) => {
      if (state) {
        commits.push(state.offset);
        // every byte before the recorded offset must be in an accepted batch
        const covered = accepted
          .filter((a) => a.start < state.offset)
          .reduce((s, a) => s + (Math.min(a.end, state.offset) - a.start), 0);
        if (covered !== state.offset) violations.push(`offset ${state.offset}, accepted ${covered}`);
      }
      commit(id, state, receipts);
    };
    const pipeline = new Pipeline([sink], checkpoints, silentLogger);
    expect(pipeline.writeAheadBytes).toBe(256 * 1024);
    const tailer = tailerThrough(logs, checkpoints, pipeline);
    await tailer.start();
    try {
      await waitForCount(() => got.length, n, { what: "lines through the scrambling sink" });
      await waitForCount(() => commits.at(-1) ?? 0, text.length, { what: "checkpoint at the end" });
      expect(maxOutstanding).toBeGreaterThan(1); // batches really went out ahead
      expect(violations).toEqual([]);
      expect(commits).toEqual([...commits].sort((a, b) => a - b));
      expect(new Set(got).size).toBe(n);
      expect(got.length).toBe(n);
    } finally {
      await tailer.stop();
      await pipeline.close();
    }
  });
  it("bounds the lines handed on ahead over all files together, not per file", async () => {
    const root = tempDir("ikon-write-ahead-");
    dirs.push(root);
    const logs = join(root, "logs");
    mkdirSync(logs);
    const files = 8;
    const n = 10_000; // about 0.6 MB per file: about 9 reads of 64 KiB each
    let text = "";
    for (let i = 0; i < n; i++) text += `line ${String(i).padStart(6, "0")} ${"x".repeat(48)}\n`;
    for (let f = 0; f < files; f++) writeFileSync(join(logs, `app${f}.log`), text);

    const budget = 256 * 1024;
    let lines = 0;
    let heldBytes = 0; // bytes of batches handed to the sink and not yet accepted, all files together
    let maxHeldBytes = 0;
    let maxHeldBatches = 0;
    let held = 0;
    const sink = {
      id: "slow",
      writeAheadBytes: budget,
      write: async (b: LineBatch) => {
        const bytes = b.endOffset - b.lines[0]!.offset;
        heldBytes += bytes;
        held++;
        maxHeldBytes = Math.max(maxHeldBytes, heldBytes);
        maxHeldBatches = Math.max(maxHeldBatches, held);
        await new Promise((r) => setTimeout(r, 20)); // a slow store: batches pile up if nothing bounds them
        lines += b.lines.length;
        heldBytes -= bytes;
        held--;
        return undefined;
      },
      close: async () => undefined,
    };
    const checkpoints = new CheckpointStore(join(root, "state"));
    const pipeline = new Pipeline([sink], checkpoints, silentLogger);
    const tailer = tailerThrough(logs, checkpoints, pipeline);
    await tailer.start();
    try {
      await waitForCount(() => lines, files * n, { what: "lines of every file through the slow sink" });
      // the budget, plus at most one batch per file being read: one read (64 KiB) and the line that the read
      // before it cut in two (carried into this batch); per-file budgets would allow 8 x 256 KiB
      const lineBytes = text.indexOf("\n") + 1;
      expect(maxHeldBytes).toBeLessThanOrEqual(budget + files * (64 * 1024 + lineBytes));
      expect(maxHeldBatches).toBeGreaterThan(files); // and files really went ahead
    } finally {
      await tailer.stop();
      await pipeline.close();
    }
  });
});
