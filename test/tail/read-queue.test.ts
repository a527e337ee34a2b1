import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CheckpointStore } from "../../src/core/checkpoint.js";
import { Pipeline } from "../../src/core/pipeline.js";
import type { LineBatch } from "../../src/core/record.js";
import { silentLogger } from "../../src/observe/logger.js";
import { ReadSlots } from "../../src/sources/tail/read-slots.js";
import { Tailer } from "../../src/sources/tail/tailer.js";
import { removeDir, tempDir } from "../helpers/agent.js";
import { waitForCount } from "../helpers/progress.js";

/**
 * A starved machine, made on purpose: the sink takes its time over every batch and the poll comes round far
 * faster than the reads, so reads always wait for a slot. Found with node mode beside 8 busy processes: the
 * files created after start were opened but never read (9,625 of 10,442 lines), because every poll queued one
 * more read per file and a freed slot went to a newcomer while the woken waiter went to the back of the queue.
 */
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) removeDir(d);
});

describe("read slots", () => {
  it("hand a freed slot to the oldest waiter, never to a newcomer", async () => {
    const slots = new ReadSlots(1);
    const order: string[] = [];
    let releaseFirst!: () => void;
    const first = slots.run(() => new Promise<void>((r) => (releaseFirst = r)));
    const waiter = slots.run(async () => {
      order.push("waiter");
    });
    releaseFirst();
    // Newcomers arrive while the release and the waiter's wake-up are still in flight (microtasks).
    const newcomers: Promise<void>[] = [];
    for (let i = 0; i < 20; i++) {
      await Promise.resolve();
      newcomers.push(
        slots.run(async () => {
          order.push(`newcomer ${i}`);
        }),
      );
    }
    await Promise.all([first, waiter, ...newcomers]);
    expect(order[0]).toBe("waiter");
    expect(order.slice(1)).toEqual(Array.from({ length: 20 }, (_, i) => `newcomer ${i}`));
  });
});

describe("tailer on a starved machine", () => {
  it("queues at most one read per file and reads files created after start", async () => {
    const root = tempDir("ikon-readq-");
    dirs.push(root);
    const logs = join(root, "logs");
    mkdirSync(logs);
    const files = 60;
    for (let i = 0; i < files; i++) writeFileSync(join(logs, `f${i}.log`), `f${i} line 0\n`);
    const got: string[] = [];
    const sink = {
      id: "slow",
      // The part that misbehaves on purpose: every batch takes 5 ms, as on a machine with no CPU to spare.
      write: async (b: LineBatch) => {
        await new Promise((r) => setTimeout(r, 5));
        for (const l of b.lines) got.push(l.bytes.toString());
        return undefined;
      },
      close: async () => undefined,
    };
    const checkpoints = new CheckpointStore(join(root, "state"));
    const pipeline = new Pipeline([sink], checkpoints, silentLogger);
    const tailer = new Tailer({
      roots: [logs],
      include: ["**/*.log"],
      exclude: [],
      maxLineBytes: 16_384,
      lingerMs: 100,
      pollMs: 2,
      readFrom: "head",
      checkpoints,
      log: silentLogger,
      ownedSince: 0,
      maxConcurrentReads: 2,
      submit: (batch, input) => pipeline.submit(batch, { input }),
    });
    await tailer.start();
    let maxWaiting = 0;
    const sample = setInterval(() => {
      maxWaiting = Math.max(maxWaiting, tailer.readsWaiting);
    }, 1);
    try {
      // Every file keeps growing, so each poll finds work everywhere; a new file appears meanwhile.
      let expected = files;
      for (let round = 1; round <= 10; round++) {
        for (let i = 0; i < files; i++) appendFileSync(join(logs, `f${i}.log`), `f${i} line ${round}\n`);
        expected += files;
        if (round === 3) {
          writeFileSync(join(logs, "new.log"), "new line 0\nnew line 1\nnew line 2\n");
          expected += 3;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      await waitForCount(() => got.length, expected, { what: "lines of the starved tailer" });
      expect(got.filter((l) => l.startsWith("new "))).toEqual(["new line 0", "new line 1", "new line 2"]);
      expect(new Set(got).size).toBe(got.length);
      // At most one waiting read per file (61 files), however many polls passed.
      expect(maxWaiting).toBeLessThanOrEqual(files + 1);
    } finally {
      clearInterval(sample);
      await tailer.stop();
      await pipeline.close();
    }
  });
});
