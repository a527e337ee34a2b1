import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { registry } from "../../src/observe/metrics.js";
import { BufferedSink, decodeFrame } from "../../src/sinks/buffer.js";
import { FluentdSink } from "../../src/sinks/fluentd.js";
import { ForwardReceiver } from "../fixtures/forward-server.js";
import { batchOf, exactlyOnce, indexes, structured } from "./batches.js";

/**
 * A damaged disk buffer loses only what is damaged: corrupted bytes inside a segment cost the frame they hit
 * (counted and logged with segment and offset), every later frame is still delivered; a delivered.log whose
 * position cannot be true is logged and delivery starts over (duplicates rather than loss).
 */

vi.setConfig({ testTimeout: 180_000 });

const N = 200_000;
const PER_BATCH = 100;
const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "ikon-buf-damage-"));
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A logger whose JSON lines the test can read. */
function capturingLogger(): { log: pino.Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      out.push(String(chunk));
      cb();
    },
  });
  const log = pino({ level: "info" }, stream);
  return {
    log,
    lines: () =>
      out
        .join("")
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

function sink(port: number, dir: string, log?: pino.Logger): BufferedSink {
  const inner = new FluentdSink({
    host: "127.0.0.1",
    port,
    structured: structured(),
    ackTimeoutMs: 10_000,
    connectTimeoutMs: 1000,
    reconnectMaxMs: 200,
  });
  const s = new BufferedSink(inner, {
    dir,
    maxBytes: 256 * 1024 * 1024,
    segmentBytes: 4 * 1024 * 1024,
    retryMinMs: 50,
    retryMaxMs: 200,
    drainOnCloseMs: 200,
    fsync: false,
    ...(log ? { log } : {}),
  });
  cleanup.push(() => s.close());
  return s;
}

async function metric(name: string, sinkId: string): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  return m?.values.find((v) => v.labels.sink === sinkId)?.value ?? 0;
}

/** Queues N lines while nothing listens on `port`, then closes the sink: all of them stay on disk. */
async function queueAll(dir: string, port: number): Promise<void> {
  const s = sink(port, dir);
  for (let i = 0; i < N; i += PER_BATCH) await s.write(batchOf(i, i + PER_BATCH));
  await s.close();
}

async function unusedPort(): Promise<number> {
  const r = new ForwardReceiver({ port: 0 });
  await r.start();
  const p = r.port;
  await r.stop();
  return p;
}

const segments = (dir: string) =>
  readdirSync(dir)
    .filter((n) => n.endsWith(".seg"))
    .sort();

/** The frame starting at or before `at` in a segment file: its start and the line indexes it holds. */
function frameAround(path: string, at: number): { start: number; lines: number[] } {
  const data = Buffer.alloc(statSync(path).size);
  const fd = openSync(path, "r");
  readSync(fd, data, 0, data.length, 0);
  closeSync(fd);
  let pos = 0;
  for (;;) {
    const len = data.readUInt32BE(pos + 4);
    const end = pos + 20 + len;
    if (at < end) {
      const batch = decodeFrame(data.subarray(pos, end));
      return { start: pos, lines: batch.lines.map((l) => l.offset / 100) };
    }
    pos = end;
  }
}

async function deliverAll(dir: string, port: number, log: pino.Logger, expected: number) {
  const r = new ForwardReceiver({ port });
  await r.start();
  cleanup.push(() => r.stop());
  const s = sink(port, dir, log);
  expect(await s.drain(150_000)).toBe(true);
  await r.waitForStored(expected, 30_000);
  return { s, got: indexes(r.stored.map((e) => e.record.message)) };
}

describe("damaged disk buffer", () => {
  it("4 corrupted bytes mid-segment: only the damaged frame is skipped, counted and logged; the rest arrives", async () => {
    const dir = tempDir();
    const port = await unusedPort();
    await queueAll(dir, port);
    const segs = segments(dir);
    expect(segs.length).toBeGreaterThan(1);
    const seg = join(dir, segs[0]!);
    let mid = Math.floor(statSync(seg).size / 2);
    // in the payload (the frame's 20-byte head carries its own checksum and the line count)
    if (mid - frameAround(seg, mid).start < 24) mid += 24;
    const damaged = frameAround(seg, mid);
    const fd = openSync(seg, "r+");
    writeSync(fd, Buffer.from([0xde, 0xad, 0xbe, 0xef]), 0, 4, mid);
    closeSync(fd);

    const cap = capturingLogger();
    const { s, got } = await deliverAll(dir, port, cap.log, N - damaged.lines.length);
    const lost = new Set(damaged.lines);
    const expected = [...Array(N).keys()].filter((i) => !lost.has(i));
    expect(got.length).toBe(N - damaged.lines.length);
    expect(new Set(got).size).toBe(got.length); // no duplicates
    expect(got.filter((i) => lost.has(i))).toEqual([]);
    expect(exactlyOnce(got.concat(damaged.lines), N)).toEqual({ missing: [], duplicated: [] });
    expect(got.length).toBe(expected.length);
    // counted exactly, and logged with the segment and the offset
    expect(await metric("ikontainer_buffer_damaged_lines_total", s.id)).toBe(damaged.lines.length);
    expect(await metric("ikontainer_buffer_damaged_frames_total", s.id)).toBe(1);
    const warn = cap.lines().find((l) => String(l.msg).includes("damaged"));
    expect(warn).toMatchObject({ segment: seg, offset: damaged.start, lines: damaged.lines.length });
  });

  it('delivered.log saying {"pos":999999999}: logged, delivery starts over, every line arrives', async () => {
    const dir = tempDir();
    const port = await unusedPort();
    await queueAll(dir, port);
    writeFileSync(join(dir, "delivered.log"), '{"pos":999999999}\n');
    const cap = capturingLogger();
    const { got } = await deliverAll(dir, port, cap.log, N);
    expect(exactlyOnce(got, N)).toEqual({ missing: [], duplicated: [] });
    const warn = cap.lines().find((l) => String(l.msg).includes("delivered.log"));
    expect(warn).toMatchObject({ pos: 999999999 });
  });

  it("delivered.log holding garbage: logged, every line arrives", async () => {
    const dir = tempDir();
    const port = await unusedPort();
    await queueAll(dir, port);
    writeFileSync(join(dir, "delivered.log"), "\u0000\u0000garbage{{{\n");
    const cap = capturingLogger();
    const { got } = await deliverAll(dir, port, cap.log, N);
    expect(exactlyOnce(got, N)).toEqual({ missing: [], duplicated: [] });
    expect(cap.lines().some((l) => String(l.msg).includes("delivered.log"))).toBe(true);
  });
});
