/**
 * Elasticsearch sink throughput (issue 3): documents/s and CPU for 1,000,000 lines, beside a reference in
 * the same run and against the same single node: the same documents sent straight to `_bulk` in 5 MB
 * batches, one request at a time, by a minimal script (plain `http`, bodies prepared before the clock
 * starts, so the reference is what the node can take). Target: the sink reaches >= 80% of the reference.
 *
 * After a warm-up run (JIT), each round runs these, each into fresh indices deleted afterwards, in alternating
 * order (round 2 reversed) so neither side always gets the warmer node:
 *   reference  prepared 5 MB `_bulk` bodies, sent one after the other (the reference)
 *   reference2 the same bodies with two requests in flight (what a simple script gets from two write threads)
 *   sink       ElasticsearchSink.write() fed like the tailer feeds it: one file, batches of the lines in 1 MiB
 *              reads, each awaited before the next (the clock includes building every document)
 *   agent      `ikontainer run --output elasticsearch:URL` tailing a 1,000,000-line file (end to end: read,
 *              split, stamp, bulk, checkpoint); done when `_count` reaches 1,000,000
 * Every run is checked: exactly N documents, N distinct `_id`s.
 *
 *   npm run bench:es                     (builds, starts its own node with scripts/elasticsearch.sh)
 *   node --max-old-space-size=8192 bench/.work/dist/bench/es-throughput.js --lines 1000000 --rounds 1
 *
 * Results: bench/results/es-throughput-<stamp>.json
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { esConnection } from "../src/config/elasticsearch.js";
import type { LineBatch, StreamInfo } from "../src/core/record.js";
import { documentId, ElasticsearchSink } from "../src/sinks/elasticsearch.js";
import { dailyIndex, logsIndexTemplate } from "../src/sinks/elasticsearch-schema.js";
import { RequestIdExtractor } from "../src/transforms/request-id.js";
import { type StructuredOptions, toStructured } from "../src/transforms/tag.js";

const run = promisify(execFile);
// compiled to bench/.work/dist/bench/: the repository is four levels up
const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));

const { values: args } = parseArgs({
  options: {
    lines: { type: "string", default: "1000000" },
    rounds: { type: "string", default: "1" },
    "skip-agent": { type: "boolean", default: false },
    out: { type: "string", default: join(ROOT, "bench", "results") },
  },
});
const N = Number(args.lines);
const ROUNDS = Number(args.rounds);
const CUID = "0196f1c2-0000-7000-8000-0000000be0c4";
const SVC = "bench.shop.cluster.local";
const READ = 1024 * 1024;
const REF_BATCH = 5 * 1024 * 1024;

function ticksOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return Number(rest[11]) + Number(rest[12]); // utime + stime (clock ticks)
}
const TICK = 100; // sysconf(_SC_CLK_TCK) on Linux

/** Lines like a service's access log: timestamp, level, method, path, status, latency, request ID on 3 of 4. */
function makeLines(n: number): Buffer[] {
  const methods = ["GET", "POST", "PUT", "DELETE"];
  const out: Buffer[] = new Array(n);
  const t0 = Date.parse("2026-11-23T10:00:00.000Z");
  for (let i = 0; i < n; i++) {
    const rid =
      i % 4 === 3
        ? ""
        : ` x-request-id=${((i * 2654435761) >>> 0).toString(16).padStart(8, "0")}-${(i % 9973).toString(16)}`;
    out[i] = Buffer.from(
      `${new Date(t0 + i).toISOString()} INFO ${methods[i % 4]} /api/v1/items/${i % 50_000} status=${i % 17 === 0 ? 500 : 200} dur=${i % 250}ms user=u${i % 997}${rid}`,
    );
  }
  return out;
}

/** Batches as the tailer makes them from 1 MiB reads of one file. */
function makeBatches(lines: Buffer[], stream: StreamInfo): LineBatch[] {
  const out: LineBatch[] = [];
  let offset = 0;
  let cur: LineBatch["lines"] = [];
  let size = 0;
  const t0 = Date.parse("2026-11-23T10:00:00.000Z");
  for (let i = 0; i < lines.length; i++) {
    const b = lines[i]!;
    cur.push({ bytes: b, offset, time: t0 + i });
    offset += b.length + 1;
    size += b.length + 1;
    if (size >= READ || i === lines.length - 1) {
      out.push({ stream, lines: cur, inputId: "2049:1", endOffset: offset, endPart: 0, readAt: t0 });
      cur = [];
      size = 0;
    }
  }
  return out;
}

function post(
  url: string,
  path: string,
  body: string | Buffer,
  type = "application/x-ndjson",
): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}${path}`,
      { method: "POST", headers: { "content-type": type }, agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if ((res.statusCode ?? 0) >= 300)
            reject(new Error(`${path}: HTTP ${res.statusCode} ${text.slice(0, 300)}`));
          else resolve(text);
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}
let agentChild: ReturnType<typeof spawn> | undefined;
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

async function req(
  url: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const r = await fetch(`${url}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return (await r.json()) as Record<string, unknown>;
}

async function countDocs(url: string, prefix: string): Promise<number> {
  const r = await req(url, "GET", `/${prefix}-*/_count?ignore_unavailable=true&allow_no_indices=true`);
  return Number(r.count ?? 0);
}

/** N documents in ONE index (all lines fall on one day) means N distinct `_id`s: an index holds an _id once. */
async function verify(url: string, prefix: string): Promise<{ docs: number; indices: number }> {
  await req(url, "POST", `/${prefix}-*/_refresh`);
  const docs = await countDocs(url, prefix);
  const r = await fetch(`${url}/_cat/indices/${prefix}-*?format=json`);
  const indices = ((await r.json()) as unknown[]).length;
  return { docs, indices };
}

interface RunResult {
  name: string;
  docs: number;
  seconds: number;
  docs_per_s: number;
  client_cpu_s: number;
  client_cpu_per_1k_docs_ms: number;
  es_cpu_s: number;
  check: { docs: number; indices: number; distinct_ids: number };
}

async function measure(
  name: string,
  url: string,
  esPid: number,
  prefix: string,
  body: () => Promise<{ clientCpuS: number }>,
): Promise<RunResult> {
  await req(url, "DELETE", `/${prefix}-*`);
  const es0 = ticksOf(esPid);
  const t0 = process.hrtime.bigint();
  const { clientCpuS } = await body();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const esCpu = (ticksOf(esPid) - es0) / TICK;
  const check = await verify(url, prefix);
  await req(url, "DELETE", `/${prefix}-*`);
  const r: RunResult = {
    name,
    docs: N,
    seconds: Math.round(seconds * 1000) / 1000,
    docs_per_s: Math.round(N / seconds),
    client_cpu_s: Math.round(clientCpuS * 100) / 100,
    client_cpu_per_1k_docs_ms: Math.round(((clientCpuS * 1e6) / N) * 1000) / 1000,
    es_cpu_s: Math.round(esCpu * 100) / 100,
    check: { ...check, distinct_ids: check.indices === 1 ? check.docs : Number.NaN },
  };
  process.stderr.write(`${JSON.stringify(r)}\n`);
  if (check.docs !== N || check.indices !== 1)
    throw new Error(`${name}: ${check.docs} documents in ${check.indices} indices, expected ${N} in 1`);
  return r;
}

async function main(): Promise<void> {
  // other work on the machine shares the 2 cores; recorded so a reader can judge the figures
  const loadAtStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const work = mkdtempSync(join(os.tmpdir(), "ikon-bench-es-"));
  const port = 19_000 + Math.floor(Math.random() * 20_000);
  const nodeDir = join("/var/tmp/ikontainer-es", `bench-${process.pid}`);
  const script = join(ROOT, "scripts", "elasticsearch.sh");
  // an interrupted run still stops its node and its agent
  for (const sig of ["SIGINT", "SIGTERM"] as const)
    process.once(sig, () => {
      if (agentChild?.pid) process.kill(agentChild.pid, "SIGKILL");
      execFileSync("sh", [script, "stop", nodeDir]);
      rmSync(nodeDir, { recursive: true, force: true });
      rmSync(`${nodeDir}.lock`, { force: true });
      rmSync(work, { recursive: true, force: true });
      process.exit(130);
    });
  process.stderr.write(`starting Elasticsearch on ${port}\n`);
  await run("sh", [script, "start", String(port), nodeDir], { timeout: 180_000 });
  const url = `http://127.0.0.1:${port}`;
  const esPid = Number(readFileSync(join(nodeDir, "pid"), "utf8"));
  const version = (await req(url, "GET", "/_nodes/_local?filter_path=nodes.*.version")).nodes as Record<
    string,
    { version: string }
  >;
  const esVersion = Object.values(version)[0]?.version;
  try {
    process.stderr.write(`generating ${N} lines\n`);
    const lines = makeLines(N);
    const stream: StreamInfo = {
      key: "file:0:access.log",
      path: "/var/log/app/access.log",
      relPath: "access.log",
      channel: "file",
    };
    const batches = makeBatches(lines, stream);
    const structured: StructuredOptions = {
      identity: { cuid: CUID, svc: SVC },
      requestIds: new RequestIdExtractor(),
    };

    // the reference's bodies: the sink's documents (same _index, _id and source), in 5 MB bodies
    const refBodies = (prefix: string): string[] => {
      const bodies: string[] = [];
      let cur = "";
      for (const b of batches) {
        for (const l of b.lines) {
          const rec = toStructured(l, b, structured) as Record<string, unknown>;
          rec.ikontainer_offset = l.offset;
          const item = `{"create":{"_index":"${dailyIndex(prefix, rec["@timestamp"] as string)}","_id":"${documentId(CUID, b, l.offset, l.part, l.bytes)}"}}\n${JSON.stringify(rec)}\n`;
          if (cur.length > 0 && cur.length + item.length > REF_BATCH) {
            bodies.push(cur);
            cur = "";
          }
          cur += item;
        }
      }
      if (cur) bodies.push(cur);
      return bodies;
    };

    // the log file the agent tails
    const logDir = join(work, "logs");
    mkdirSync(logDir);
    writeFileSync(join(logDir, "access.log"), Buffer.concat(lines.flatMap((l) => [l, Buffer.from("\n")])));

    const results: RunResult[] = [];
    // the reference's indices get the very template the sink installs for its own
    await req(url, "PUT", "/_index_template/bench-ref", logsIndexTemplate("bench-ref"));
    await req(url, "PUT", "/_index_template/bench-ref2", logsIndexTemplate("bench-ref2"));
    const reference = async (name: string, prefix: string, inFlight: number) => {
      const bodies = refBodies(prefix);
      return measure(name, url, esPid, prefix, async () => {
        const c0 = process.cpuUsage();
        let next = 0;
        const worker = async () => {
          while (next < bodies.length) {
            const body = bodies[next++]!;
            const r = JSON.parse(await post(url, "/_bulk?filter_path=errors", body)) as { errors: boolean };
            if (r.errors) throw new Error("reference: bulk item errors");
          }
        };
        await Promise.all(Array.from({ length: inFlight }, worker));
        const c = process.cpuUsage(c0);
        return { clientCpuS: (c.user + c.system) / 1e6 };
      });
    };
    const runs: Record<string, () => Promise<RunResult>> = {
      reference: () =>
        reference("reference: prepared 5 MB _bulk bodies, one request at a time", "bench-ref", 1),
      reference2: () =>
        reference("reference2: prepared 5 MB _bulk bodies, two requests in flight", "bench-ref2", 2),
      sink: () =>
        measure(
          "sink: ElasticsearchSink.write(), 1 MiB read batches, one file, awaited in order",
          url,
          esPid,
          "bench-sink",
          async () => {
            const c0 = process.cpuUsage();
            const sink = new ElasticsearchSink({
              connection: esConnection(url, {}),
              structured,
              deadLetterPath: join(work, "dead.jsonl"),
              indexPrefix: "bench-sink",
            });
            for (const b of batches) await sink.write(b);
            await sink.close();
            const c = process.cpuUsage(c0);
            return { clientCpuS: (c.user + c.system) / 1e6 };
          },
        ),
      agent: () => {
        const state = join(work, `state-${Date.now()}`);
        return measure(
          "agent: ikontainer run --output elasticsearch:URL tailing the file",
          url,
          esPid,
          "bench-agent",
          async () => {
            const child = spawn(
              process.execPath,
              [
                join(ROOT, "dist", "cli", "main.js"),
                "run",
                "--watch",
                logDir,
                "--svc",
                SVC,
                "--state-dir",
                state,
                "--output",
                `elasticsearch:${url}`,
                "--es-index-prefix",
                "bench-agent",
                "--log-level",
                "warn",
              ],
              { stdio: ["ignore", "ignore", "inherit"] },
            );
            // done when the agent's checkpoint reaches the end of the file: every line accepted by the sink
            // (polling _count would need _refresh calls, which cost Elasticsearch more than the indexing)
            const size = statSync(join(logDir, "access.log")).size;
            let cpu = 0;
            for (;;) {
              await new Promise((r) => setTimeout(r, 100));
              try {
                cpu = ticksOf(child.pid!) / TICK;
              } catch {
                throw new Error("agent exited early");
              }
              try {
                const cp = JSON.parse(readFileSync(join(state, "checkpoints.json"), "utf8")) as {
                  inputs: Record<string, { offset: number }>;
                };
                if (Object.values(cp.inputs).some((i) => i.offset >= size)) break;
              } catch {
                // not written yet, or being replaced
              }
            }
            child.kill("SIGTERM");
            await new Promise((r) => child.on("exit", r));
            return { clientCpuS: cpu };
          },
        );
      },
    };
    // warm the JVM (JIT, caches) so the first measured run is not the cold one
    process.stderr.write("warm-up\n");
    {
      const warm = refBodies("bench-warm").slice(0, 40);
      for (const body of warm) await post(url, "/_bulk?filter_path=errors", body);
      await req(url, "DELETE", "/bench-warm-*");
    }
    const order = ["reference", "sink", "reference2", ...(args["skip-agent"] ? [] : ["agent"])];
    for (let round = 0; round < ROUNDS; round++) {
      for (const name of round % 2 === 0 ? order : [...order].reverse()) results.push(await runs[name]!());
    }
    const ref = results.filter((r) => r.name.startsWith("reference:"));
    const ref2 = results.filter((r) => r.name.startsWith("reference2:"));
    const sink = results.filter((r) => r.name.startsWith("sink"));
    const ag = results.filter((r) => r.name.startsWith("agent"));
    const mean = (xs: RunResult[]) => xs.reduce((s, r) => s + r.docs_per_s, 0) / Math.max(1, xs.length);
    const summary = {
      benchmark: "es-throughput",
      date: new Date().toISOString(),
      elasticsearch_version: esVersion,
      elasticsearch_heap: "512m",
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
      load_average_at_start: loadAtStart,
      load_average_at_end: os.loadavg().map((x) => Math.round(x * 100) / 100),
      lines: N,
      avg_line_bytes: Math.round(lines.reduce((s, l) => s + l.length, 0) / N),
      rounds: ROUNDS,
      runs: results,
      sink_vs_reference: Math.round((mean(sink) / mean(ref)) * 1000) / 1000,
      sink_vs_reference2: Math.round((mean(sink) / mean(ref2)) * 1000) / 1000,
      agent_vs_reference: ag.length ? Math.round((mean(ag) / mean(ref)) * 1000) / 1000 : undefined,
      agent_vs_reference2: ag.length ? Math.round((mean(ag) / mean(ref2)) * 1000) / 1000 : undefined,
      target: 0.8,
      notes:
        "2 cores shared by Elasticsearch and the client; CPU seconds from process.cpuUsage (bench process) or /proc (agent, Elasticsearch). " +
        "The reference's bodies are prepared before its clock starts; the sink and agent build every document inside theirs.",
    };
    mkdirSync(args.out, { recursive: true });
    const file = join(args.out, `es-throughput-${summary.date.replace(/[:.]/g, "-")}.json`);
    writeFileSync(file, `${JSON.stringify(summary, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\nwritten ${file}\n`);
  } finally {
    await run("sh", [script, "stop", nodeDir]).catch(() => undefined);
    rmSync(nodeDir, { recursive: true, force: true });
    rmSync(`${nodeDir}.lock`, { force: true });
    rmSync(work, { recursive: true, force: true });
    agent.destroy();
  }
}

await main();
