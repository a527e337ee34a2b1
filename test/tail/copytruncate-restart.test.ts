import { appendFileSync, copyFileSync, mkdirSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { CheckpointStore } from "../../src/core/checkpoint.js";
import { Pipeline } from "../../src/core/pipeline.js";
import type { LineBatch } from "../../src/core/record.js";
import { silentLogger } from "../../src/observe/logger.js";
import { Tailer } from "../../src/sources/tail/tailer.js";
import { removeDir, tempDir, untilProgress } from "../helpers/agent.js";

/**
 * Issue 16, deterministically: the interleavings that duplicated (or lost until the next restart) lines when
 * copytruncate met kill -9 restarts, driven with real files and the real tailer and checkpoint. The one part
 * that misbehaves on purpose: reads of the log file's first bytes go through a hook, so the "application"
 * rotates its file at an exact moment of the agent's start (between two of the agent's reads), which a real
 * writer only hits by chance (the chaos suite: about one run in ten under CPU contention).
 */
const hook = vi.hoisted(() => ({
  /** Called before each read at position 0 of a file opened through fs/promises, with its path. */
  onHeadRead: undefined as ((path: string) => void) | undefined,
  /** Descriptors of the files opened through fs/promises (the reader's synchronous reads use the descriptor). */
  paths: new Map<number, string>(),
}));

// The file reader reads with readSync on the descriptor of a FileHandle: the same hook there.
vi.mock("node:fs", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs")>();
  const readSync = ((fd: number, ...rest: unknown[]) => {
    const path = hook.paths.get(fd);
    if (path !== undefined && rest[3] === 0) hook.onHeadRead?.(path);
    return (real.readSync as (...a: unknown[]) => number)(fd, ...rest);
  }) as typeof real.readSync;
  return { ...real, readSync, default: { ...real, readSync } };
});

vi.mock("node:fs/promises", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs/promises")>();
  const open = async (...args: Parameters<typeof real.open>) => {
    const fh = await real.open(...args);
    const path = String(args[0]);
    hook.paths.set(fh.fd, path);
    const read = fh.read.bind(fh) as (...a: unknown[]) => ReturnType<typeof fh.read>;
    Object.assign(fh, {
      read: (...a: unknown[]) => {
        if (a[3] === 0) hook.onHeadRead?.(path);
        return read(...a);
      },
    });
    return fh;
  };
  return { ...real, open, default: { ...real, open } };
});

const dirs: string[] = [];
afterEach(() => {
  hook.onHeadRead = undefined;
  for (const d of dirs.splice(0)) removeDir(d);
});

const line = (n: number, gen: number) => `seq=${n} g${gen} ${"x".repeat(80)}\n`;
const lines = (from: number, to: number, gen: number) => {
  let s = "";
  for (let n = from; n < to; n++) s += line(n, gen);
  return s;
};

/** One agent run in-process: the real tailer, checkpoint store and pipeline; the sink collects lines. */
async function agent(logs: string, state: string, got: string[]) {
  const checkpoints = new CheckpointStore(state);
  const sink = {
    id: "mem",
    write: async (b: LineBatch) => {
      for (const l of b.lines) got.push(l.bytes.toString());
      return undefined;
    },
    close: async () => undefined,
  };
  const pipeline = new Pipeline([sink], checkpoints, silentLogger);
  const tailer = new Tailer({
    roots: [logs],
    include: ["**/*.log"],
    exclude: ["**/*.log.*"],
    maxLineBytes: 16_384,
    lingerMs: 100,
    pollMs: 50,
    readFrom: "head",
    checkpoints,
    log: silentLogger,
    ownedSince: 0,
    submit: (batch, input) => pipeline.submit(batch, { input }),
  });
  await tailer.start();
  return {
    /** kill -9 right after a checkpoint write: what was accepted is checkpointed, nothing else happens. */
    kill: async () => {
      await tailer.stop(false);
      checkpoints.flush(true);
    },
  };
}

function seqCounts(got: string[]) {
  const counts = new Map<number, number>();
  for (const l of got) {
    const n = Number(/^seq=(\d+) /.exec(l)?.[1]);
    counts.set(n, (counts.get(n) ?? 0) + 1);
  }
  return counts;
}

function check(got: string[], total: number) {
  const counts = seqCounts(got);
  const lost: number[] = [];
  const duplicated: number[] = [];
  for (let n = 0; n < total; n++) {
    const c = counts.get(n) ?? 0;
    if (c === 0) lost.push(n);
    if (c > 1) duplicated.push(n);
  }
  return { lost: lost.length, duplicated: duplicated.length, firstDup: duplicated[0], firstLost: lost[0] };
}

async function setUp() {
  const root = tempDir("ikon-ctr-");
  dirs.push(root);
  const logs = join(root, "logs");
  const state = join(root, "state");
  mkdirSync(logs, { recursive: true });
  return { logs, state, app: join(logs, "app.log") };
}

/**
 * Waits while `got` grows toward `want`; a stall of `stallMs` ends the wait (the check then says what is missing
 * or extra). Past `want`, it only looks for extra lines (duplicates) for `stallMs`.
 */
const settle = (got: string[], want: number, stallMs = 10_000) =>
  untilProgress(() => got.length, want, stallMs, "lines").catch(() => undefined);

describe("copytruncate meets kill -9 restarts (issue 16)", () => {
  it("the file is copied and truncated between the agent's start-up check of its first bytes and its next read", async () => {
    const { logs, state, app } = await setUp();
    const got: string[] = [];
    writeFileSync(app, lines(0, 2_000, 0));
    const a1 = await agent(logs, state, got);
    await settle(got, 2_000);
    await a1.kill();
    expect(got.length).toBe(2_000);
    // Written while the agent is down: not delivered yet.
    appendFileSync(app, lines(2_000, 3_000, 0));

    // The restart matches the checkpoint against the first bytes; right after that check, logrotate copies
    // and truncates, and the application writes the next generation.
    let headReads = 0;
    hook.onHeadRead = (path) => {
      if (path !== app || ++headReads !== 2) return;
      copyFileSync(app, `${app}.1`);
      truncateSync(app, 0);
      appendFileSync(app, lines(3_000, 3_500, 1));
    };
    const a2 = await agent(logs, state, got);
    await settle(got, 3_500);
    await a2.kill();
    hook.onHeadRead = undefined;
    expect(headReads).toBeGreaterThanOrEqual(2);
    expect(check(got, 3_500)).toEqual({ lost: 0, duplicated: 0, firstDup: undefined, firstLost: undefined });

    // One more restart: the copy was read past the checkpoint once, and is never taken for content never seen.
    const a3 = await agent(logs, state, got);
    await settle(got, 3_501, 2_000);
    await a3.kill();
    expect(check(got, 3_500)).toEqual({ lost: 0, duplicated: 0, firstDup: undefined, firstLost: undefined });
  });

  it("the refilled file is rotated again right after the agent's first read of it", async () => {
    const { logs, state, app } = await setUp();
    const got: string[] = [];
    writeFileSync(app, lines(0, 2_000, 0));
    const a1 = await agent(logs, state, got);
    await settle(got, 2_000);
    // Head reads from here: the check that finds the truncation, the first read of the new generation, then
    // the next look at the first bytes; just before that one, the next rotation lands.
    let headReads = 0;
    hook.onHeadRead = (path) => {
      if (path !== app || ++headReads !== 3) return;
      copyFileSync(app, `${app}.2`);
      truncateSync(app, 0);
      appendFileSync(app, lines(2_100, 2_200, 2));
    };
    copyFileSync(app, `${app}.1`);
    truncateSync(app, 0);
    appendFileSync(app, lines(2_000, 2_100, 1));
    await settle(got, 2_200);
    await a1.kill();
    hook.onHeadRead = undefined;
    expect(headReads).toBeGreaterThanOrEqual(3);
    const a2 = await agent(logs, state, got);
    await settle(got, 2_201, 2_000);
    await a2.kill();
    expect(check(got, 2_200)).toEqual({ lost: 0, duplicated: 0, firstDup: undefined, firstLost: undefined });
  });

  for (const copied of [0, 20])
    it(`a restart finds the copy still being made (${copied} lines copied so far)`, async () => {
      const { logs, state, app } = await setUp();
      const got: string[] = [];
      writeFileSync(app, lines(0, 2_000, 0));
      const a1 = await agent(logs, state, got);
      await settle(got, 2_000);
      await a1.kill();
      appendFileSync(app, lines(2_000, 3_000, 0));
      // logrotate has begun the copy (app.log.1 holds the first lines so far) when the agent starts.
      writeFileSync(`${app}.1`, lines(0, copied, 0));
      const a2 = await agent(logs, state, got);
      // The copy completes, the original is truncated and written again.
      appendFileSync(`${app}.1`, lines(copied, 3_000, 0));
      truncateSync(app, 0);
      appendFileSync(app, lines(3_000, 3_500, 1));
      await settle(got, 3_500);
      await a2.kill();
      const a3 = await agent(logs, state, got);
      await settle(got, 3_501, 2_000);
      await a3.kill();
      expect(check(got, 3_500)).toEqual({
        lost: 0,
        duplicated: 0,
        firstDup: undefined,
        firstLost: undefined,
      });
    });
});
