/**
 * fluentd output throughput: lines/s and CPU of the agent's fluentd path into real fluentd, beside a reference
 * client into the same fluentd, in the same run.
 *
 *   npm run bench:fluentd
 *   node bench/.work/dist/bench/fluentd-throughput.js --lines 500000
 *
 * The receiver is fluentd 1.16 (scripts/fluentd.sh) with the `<source>` deploy/ ships (in_forward over TLS with
 * the shared key); its `<match>` is replaced by a null output, so the figures are the forward leg (decode,
 * handshake, ack) and not Elasticsearch's indexing (that path is in bench/overhead.ts). Three senders, one after
 * another, same records, each timed until fluentd acknowledged its last chunk:
 *   reference  a minimal script: @fluent-org/logger with acks, PackedForward, ~1 MiB batches, awaited in turn
 *   direct     FluentdSink (records from toStructured, one chunk per batch, acked) with --no-buffer
 *   buffered   BufferedSink(FluentdSink): batches appended to the on-disk queue (fdatasync per group),
 *              delivered by the background sender
 * Results: bench/results/fluentd-throughput-<stamp>.json (with the load average: the machine may be shared)
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { EventTime, FluentClient } from "@fluent-org/logger";
import type { LineBatch, StreamInfo } from "../src/core/record.js";
import { BufferedSink } from "../src/sinks/buffer.js";
import { FluentdSink } from "../src/sinks/fluentd.js";
import { RequestIdExtractor } from "../src/transforms/request-id.js";
import { type StructuredOptions, toStructured } from "../src/transforms/tag.js";
import { RealFluentd } from "../test/fixtures/fluentd.js";

const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
const { values: args } = parseArgs({
  options: {
    lines: { type: "string", default: "500000" },
    out: { type: "string", default: join(ROOT, "bench", "results") },
  },
});

await main();

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

function ticksOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return Number(rest[11]) + Number(rest[12]);
}

function makeBatches(n: number, stream: StreamInfo): LineBatch[] {
  const methods = ["GET", "POST", "PUT", "DELETE"];
  const t0 = Date.parse("2026-11-23T10:00:00.000Z");
  const out: LineBatch[] = [];
  let cur: LineBatch["lines"] = [];
  let size = 0;
  let offset = 0;
  for (let i = 0; i < n; i++) {
    const rid = i % 4 === 3 ? "" : ` x-request-id=${((i * 2654435761) >>> 0).toString(16).padStart(8, "0")}`;
    const bytes = Buffer.from(
      `${new Date(t0 + i).toISOString()} INFO ${methods[i % 4]} /api/v1/items/${i % 50_000} status=${i % 17 === 0 ? 500 : 200} dur=${i % 250}ms${rid}`,
    );
    cur.push({ bytes, offset, time: t0 + i });
    offset += bytes.length + 1;
    size += bytes.length + 1;
    if (size >= 1024 * 1024 || i === n - 1) {
      out.push({ stream, lines: cur, inputId: "bench:1", endOffset: offset, endPart: 0, readAt: t0 + i });
      cur = [];
      size = 0;
    }
  }
  return out;
}

async function main(): Promise<void> {
  const N = Number(args.lines);
  const sharedKey = randomBytes(16).toString("hex");
  const dir = mkdtempSync(join(os.tmpdir(), "ikon-bench-fluentd-"));
  const fluentd = new RealFluentd(join(dir, "fluentd"), {
    esUrl: "http://127.0.0.1:9",
    indexPrefix: "unused",
    sharedKey,
    port: await freePort(),
    match: "<match ikontainer.**>\n  @type null\n</match>",
  });
  await fluentd.start();
  const fluentdPid = fluentd.pid()!;
  // fluentd is stopped by its pid however the run ends
  process.once("exit", () => {
    try {
      process.kill(fluentdPid, "SIGTERM");
    } catch {
      // already stopped
    }
  });
  const port = fluentd.o.port;
  const tls = { ca: readFileSync(fluentd.tls.ca) };
  const security = { clientHostname: "bench", sharedKey };
  const stream: StreamInfo = {
    key: "file:0:app.log",
    path: "/var/log/app/app.log",
    relPath: "app.log",
    channel: "file",
  };
  const structured: StructuredOptions = {
    identity: { cuid: "0196f1c2-0000-7000-8000-0000000f1e0d", svc: "bench.shop.cluster.local" },
    requestIds: new RequestIdExtractor(),
    fields: { pod: "bench-0", namespace: "shop", node: "node-1", pod_ip: "10.0.0.7" },
  };
  const batches = makeBatches(N, stream);
  const results: Record<string, unknown> = {};

  async function measure(name: string, send: () => Promise<void>): Promise<void> {
    global.gc?.();
    const load0 = os.loadavg()[0]!;
    const c0 = process.cpuUsage();
    const r0 = ticksOf(fluentdPid);
    const rss0 = process.memoryUsage().rss;
    let peakRss = rss0;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }, 50);
    const t0 = performance.now();
    // every sender resolves only once fluentd acknowledged its last chunk
    await send();
    const s = (performance.now() - t0) / 1000;
    clearInterval(sampler);
    const c = process.cpuUsage(c0);
    const cpuS = (c.user + c.system) / 1e6;
    results[name] = {
      seconds: Number(s.toFixed(3)),
      lines_per_s: Math.round(N / s),
      sender_cpu_s: Number(cpuS.toFixed(3)),
      sender_cpu_per_100k_lines_s: Number(((cpuS * 100_000) / N).toFixed(3)),
      fluentd_cpu_s: (ticksOf(fluentdPid) - r0) / 100,
      sender_peak_rss_growth_mb: Number(((peakRss - rss0) / 1e6).toFixed(1)),
      loadavg_1m: [Number(load0.toFixed(2)), Number(os.loadavg()[0]!.toFixed(2))],
    };
    console.log(name, results[name]);
  }

  await measure("reference", async () => {
    const client = new FluentClient(null, {
      eventMode: "PackedForward",
      ack: { ackTimeout: 30_000 },
      socket: { host: "127.0.0.1", port, tls },
      security,
    });
    for (const b of batches) {
      const ps = b.lines.map((l) => {
        const rec = toStructured(l, b, structured);
        return client.emit("ikontainer.bench", rec, EventTime.fromTimestamp(l.time!));
      });
      await Promise.all(ps);
    }
    await client.shutdown();
  });

  await measure("direct", async () => {
    const sink = new FluentdSink({ host: "127.0.0.1", port, structured, tls, security });
    for (const b of batches) await sink.write(b);
    await sink.close();
  });

  try {
    await measure("buffered", async () => {
      const sink = new BufferedSink(new FluentdSink({ host: "127.0.0.1", port, structured, tls, security }), {
        dir: join(dir, "buffer"),
        maxBytes: 256 * 1024 * 1024,
      });
      await sink.recover({});
      for (const b of batches) await sink.write(b);
      await sink.drain();
      await sink.close();
    });
  } finally {
    await fluentd.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const ref = results.reference as { lines_per_s: number };
  const out = {
    benchmark: "fluentd-throughput",
    date: new Date().toISOString(),
    lines: N,
    receiver: "fluentd 1.16.11 in_forward (TLS, shared key, acks) from deploy/'s fluent.conf, null output",
    line_bytes_avg: Math.round(batches[batches.length - 1]!.endOffset / N),
    machine: {
      cpus: os.cpus().length,
      model: os.cpus()[0]?.model,
      node: process.version,
      loadavg_at_end: os.loadavg(),
    },
    results,
    direct_vs_reference: Number(
      ((results.direct as { lines_per_s: number }).lines_per_s / ref.lines_per_s).toFixed(3),
    ),
    buffered_vs_reference: Number(
      ((results.buffered as { lines_per_s: number }).lines_per_s / ref.lines_per_s).toFixed(3),
    ),
  };
  mkdirSync(args.out!, { recursive: true });
  const file = join(args.out!, `fluentd-throughput-${out.date.replace(/[:.]/g, "-")}.json`);
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`wrote ${file}`);
}
