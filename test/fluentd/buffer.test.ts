import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import v8 from "node:v8";
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import type { LineBatch } from "../../src/core/record.js";
import { registry } from "../../src/observe/metrics.js";
import { BufferedSink, decodeFrame, encodeFrame } from "../../src/sinks/buffer.js";
import { FluentdSink } from "../../src/sinks/fluentd.js";
import { ForwardReceiver } from "../fixtures/forward-server.js";
import { waitForCount } from "../helpers/progress.js";
import { batchOf, exactlyOnce, indexes, structured } from "./batches.js";

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "ikon-buf-"));
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function receiver(port = 0): Promise<ForwardReceiver> {
  const r = new ForwardReceiver({ port });
  await r.start();
  cleanup.push(() => r.stop());
  return r;
}

function buffered(
  port: number,
  dir: string,
  extra: Partial<ConstructorParameters<typeof BufferedSink>[1]> = {},
  innerExtra: Partial<ConstructorParameters<typeof FluentdSink>[0]> = {},
) {
  const inner = new FluentdSink({
    host: "127.0.0.1",
    port,
    structured: structured(),
    ackTimeoutMs: 5000,
    connectTimeoutMs: 1000,
    reconnectMaxMs: 200,
    ...innerExtra,
  });
  const s = new BufferedSink(inner, {
    dir,
    maxBytes: 4 * 1024 * 1024,
    retryMinMs: 50,
    retryMaxMs: 200,
    drainOnCloseMs: 200,
    ...extra,
  });
  cleanup.push(() => s.close());
  return s;
}

async function metric(name: string, sink: string): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  return m?.values.find((v) => v.labels.sink === sink)?.value ?? 0;
}

const got = (r: ForwardReceiver) => indexes(r.stored.map((e) => e.record.message));
const dirBytes = (dir: string) =>
  readdirSync(dir)
    .filter((n) => n.endsWith(".seg"))
    .reduce((a, n) => a + statSync(join(dir, n)).size, 0);

describe("BufferedSink: durable, bounded on-disk queue in front of fluentd", () => {
  it("round-trips every line field through the frame format", () => {
    const b: LineBatch = {
      stream: {
        key: "exec:stdout",
        path: "/proc/1/fd/1",
        relPath: "stdout.log",
        channel: "stdout",
        cuid: "c",
        svc: "s",
        fields: { pod: "p" },
      },
      lines: [
        {
          bytes: Buffer.from([0xff, 0x00, 0x41]),
          offset: 7,
          part: 2,
          partial: true,
          time: 5,
          timeText: "2024-01-01T00:00:00.000000001Z",
          channel: "stderr",
        },
        { bytes: Buffer.alloc(0), offset: 9, unterminated: true },
      ],
      inputId: "exec:stdout",
      endOffset: 10,
      endPart: 0,
      readAt: 42,
    };
    const f = encodeFrame(b);
    expect(decodeFrame(f)).toEqual(b);
    f.writeUInt8(f.readUInt8(f.length - 1) ^ 1, f.length - 1);
    expect(() => decodeFrame(f)).toThrow(/corrupt/);
  });

  it("receiver down when the sink starts: writes are accepted from disk, delivered once it listens", async () => {
    const dir = tempDir();
    const port = await freePort();
    const s = buffered(port, dir);
    for (let i = 0; i < 50; i++) await s.write(batchOf(i * 20, i * 20 + 20));
    expect(s.bufferedBytes).toBeGreaterThan(0);
    expect(await metric("ikontainer_buffer_bytes", s.id)).toBe(s.bufferedBytes);
    await waitForCount(() => metric("ikontainer_buffer_retries_total", s.id), 1, {
      stepMs: 50,
      what: "a delivery retry against the closed port",
    });
    const r = await receiver(port);
    await r.waitForStored(1000);
    expect(await s.drain(20_000)).toBe(true);
    expect(exactlyOnce(got(r), 1000)).toEqual({ missing: [], duplicated: [] });
    expect(got(r)).toEqual([...Array(1000).keys()]); // in order
    expect(s.bufferedBytes).toBe(0);
  });

  it("receiver that never acks: nothing counts as delivered, it stays queued and is retried later", async () => {
    const dir = tempDir();
    const r = await receiver();
    let ack = false;
    r.onChunk = () => (ack ? "ack" : "withhold");
    const s = buffered(r.port, dir, {}, { ackTimeoutMs: 400 });
    const delivered0 = await metric("ikontainer_buffer_delivered_lines_total", s.id);
    const rejected0 = await metric("ikontainer_buffer_rejections_total", s.id);
    await s.write(batchOf(0, 100));
    // Sent, not acknowledged, and sent again (waited for, not timed): still nothing counts as delivered.
    await waitForCount(() => metric("ikontainer_buffer_rejections_total", s.id), rejected0 + 2, {
      stepMs: 50,
      what: "two unacknowledged deliveries",
    });
    expect(r.stored).toHaveLength(0);
    expect(r.discarded).toBeGreaterThanOrEqual(200);
    expect(await metric("ikontainer_buffer_delivered_lines_total", s.id)).toBe(delivered0);
    expect(s.bufferedBytes).toBeGreaterThan(0);
    ack = true;
    expect(await s.drain(20_000)).toBe(true);
    expect(exactlyOnce(got(r), 100)).toEqual({ missing: [], duplicated: [] });
    expect(await metric("ikontainer_buffer_delivered_lines_total", s.id)).toBe(delivered0 + 100);
  });

  it("receiver dropping the connection mid-stream: every line arrives exactly once", async () => {
    const dir = tempDir();
    const r = await receiver();
    r.onChunk = (i) => (i % 3 === 1 ? "drop" : "ack");
    const s = buffered(r.port, dir, { sendBytes: 8 * 1024 });
    const n = 3000;
    for (let i = 0; i < n; i += 50) await s.write(batchOf(i, i + 50));
    setTimeout(() => r.dropConnections(), 30);
    expect(await s.drain(20_000)).toBe(true);
    expect(r.connections).toBeGreaterThan(3);
    expect(exactlyOnce(got(r), n)).toEqual({ missing: [], duplicated: [] });
  });

  it("a round where one input's chunk fails and another's is acked: retried with later lines, each once", async () => {
    const dir = tempDir();
    const r = await receiver();
    let withheldA = 0;
    // The first chunk of input A (lines < 1000) is never acknowledged; everything else is.
    r.onChunk = (_i, _n, entries) => {
      const first = Number(/^line (\d+) /.exec(String(entries[0]?.record.message))?.[1]);
      if (first < 1000 && withheldA++ === 0) return "withhold";
      return "ack";
    };
    const s = buffered(r.port, dir, {}, { ackTimeoutMs: 400 });
    await s.write(batchOf(0, 50, { inputId: "A" }));
    await s.write(batchOf(1000, 1050, { inputId: "B" }));
    await r.waitForStored(50); // B's chunk is stored and acked; A's is pending and will time out
    // More lines of B right behind B's accepted entry: the retry must send them, and not B's first ones again.
    await s.write(batchOf(1050, 1100, { inputId: "B" }));
    await s.write(batchOf(50, 100, { inputId: "A" }));
    expect(await s.drain(20_000)).toBe(true);
    expect(withheldA).toBeGreaterThan(1);
    const all = got(r);
    expect(
      exactlyOnce(
        all.filter((i) => i < 1000),
        100,
      ),
    ).toEqual({ missing: [], duplicated: [] });
    expect(
      exactlyOnce(
        all.filter((i) => i >= 1000).map((i) => i - 1000),
        100,
      ),
    ).toEqual({ missing: [], duplicated: [] });
  });

  it("disk buffer at its bound: the writer blocks, nothing is dropped, it resumes when the receiver is back", async () => {
    const dir = tempDir();
    const port = await freePort();
    const maxBytes = 64 * 1024;
    const s = buffered(port, dir, { maxBytes, segmentBytes: 16 * 1024 });
    let written = 0;
    let blocked = false;
    while (!blocked) {
      const w = s.write(batchOf(written, written + 20, { pad: 100 }));
      const res = await Promise.race([
        w.then(() => "ok"),
        new Promise((r) => setTimeout(() => r("blocked"), 500)),
      ]);
      if (res === "blocked") {
        blocked = true;
        expect(dirBytes(dir)).toBeLessThanOrEqual(maxBytes);
        expect(await metric("ikontainer_buffer_full", s.id)).toBe(1);
        const r = await receiver(port);
        await w; // unblocks once the sender frees space
        written += 20;
        await s.write(batchOf(written, written + 20, { pad: 100 }));
        written += 20;
        expect(await s.drain(20_000)).toBe(true);
        expect(exactlyOnce(got(r), written)).toEqual({ missing: [], duplicated: [] });
        expect(await metric("ikontainer_buffer_blocked_writes_total", s.id)).toBeGreaterThan(0);
      } else written += 20;
      if (written > 100_000) throw new Error("writer never blocked");
    }
    expect(written).toBeGreaterThan(100); // it held a good amount before blocking
  });

  it("survives a restart: what was queued when it stopped is delivered by the next instance", async () => {
    const dir = tempDir();
    const port = await freePort();
    const a = buffered(port, dir);
    await a.write(batchOf(0, 300));
    await a.write(batchOf(300, 600));
    await a.close(); // receiver down: the lines stay on disk
    expect(dirBytes(dir)).toBeGreaterThan(0);
    const r = await receiver(port);
    const b = buffered(port, dir);
    await b.recover({ "2049:1234": Number.MAX_SAFE_INTEGER }); // both batches were checkpointed
    await b.write(batchOf(600, 700));
    expect(await b.drain(20_000)).toBe(true);
    expect(exactlyOnce(got(r), 700)).toEqual({ missing: [], duplicated: [] });
    expect(got(r)).toEqual([...Array(700).keys()]);
  });

  it("after a crash, lines read again past the checkpoint are not queued twice", async () => {
    const dir = tempDir();
    const r = await receiver();
    const a = buffered(r.port, dir);
    const first = await a.write(batchOf(0, 100));
    await a.write(batchOf(100, 200)); // accepted but, say, its input offset never reached the checkpoint
    expect(await a.drain(20_000)).toBe(true);
    await a.close();
    // The source restarts from the checkpoint (line 100) and reads 100..250 again.
    const b = buffered(r.port, dir);
    await b.recover({ [first!.key]: first!.value });
    await b.write(batchOf(100, 150));
    await b.write(batchOf(150, 250));
    expect(await b.drain(20_000)).toBe(true);
    expect(exactlyOnce(got(r), 250)).toEqual({ missing: [], duplicated: [] });
    expect(await metric("ikontainer_buffer_reread_lines_skipped_total", b.id)).toBeGreaterThanOrEqual(100);
  });

  it("slow receiver: backpressure keeps memory flat while 100,000 lines go through", async () => {
    const dir = tempDir();
    const r = await receiver();
    r.ackDelayMs = 15;
    const s = buffered(r.port, dir, { maxBytes: 512 * 1024, sendBytes: 64 * 1024 });
    const n = 100_000;
    // Keep only a count at the receiver, not 150k records, so the figure is the agent side's memory.
    let count = 0;
    const seen = new Uint8Array(n);
    let dup = 0;
    r.stored.push = (...items) => {
      for (const e of items) {
        const i = Number(/^line (\d+) /.exec(String(e.record.message))![1]);
        if (seen[i]) dup++;
        seen[i] = 1;
        count++;
      }
      return 0;
    };
    // Live heap (after a full GC) every 10,000 lines: flat means it does not grow with what went through.
    v8.setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const live = () => {
      gc();
      gc(); // a second pass frees the Buffers whose wrappers the first one collected
      // Buffers live outside the JS heap: count them too, or held frames would not show
      const m = process.memoryUsage();
      return m.heapUsed + m.external;
    };
    const base = live();
    const rss0 = process.memoryUsage().rss;
    const samples: number[] = [];
    let peakRss = rss0;
    for (let i = 0; i < n; i += 500) {
      await s.write(batchOf(i, i + 500, { pad: 60 }));
      if (i % 10_000 === 0) {
        samples.push(live());
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
        expect(dirBytes(dir)).toBeLessThanOrEqual(512 * 1024 + 64 * 1024);
      }
    }
    expect(await s.drain(30_000)).toBe(true);
    samples.push(live());
    expect(count).toBe(n);
    expect(dup).toBe(0);
    // Flat = it does not grow with what went through: ~6 MB of lines pass in the second half alone, and a
    // queue that kept them (as frames: ~11 MB) would lift the second half's samples by that much. Medians,
    // because a sample can catch garbage a collection has not released yet.
    const mb = (b: number) => b / 1e6;
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    const half = Math.floor(samples.length / 2);
    const firstHalf = median(samples.slice(0, half));
    const secondHalf = median(samples.slice(half));
    const rssMb = mb(peakRss - rss0);
    console.log(
      `slow receiver: live memory (heap + external) growth ${mb(Math.max(...samples) - base).toFixed(1)} MB at most; median ${mb(firstHalf - base).toFixed(1)} MB in the first half, ${mb(secondHalf - base).toFixed(1)} MB in the second; RSS growth ${rssMb.toFixed(1)} MB for ${n} lines`,
    );
    expect(mb(secondHalf - firstHalf)).toBeLessThan(4);
    expect(await metric("ikontainer_buffer_blocked_writes_total", s.id)).toBeGreaterThan(0);
  }, 300_000);
});
