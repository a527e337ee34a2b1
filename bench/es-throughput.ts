/**
 * Elasticsearch end to end (issue 3, issue 13 item 3): 1,000,000 lines from `ikontainer run` until all are
 * searchable, beside the same documents sent straight to `_bulk` in the same run and against the same node.
 * Target: the agent reaches >= 0.9 of the reference with the same request budget.
 *
 * The reference is given what the agent has, no less and no more:
 *   - the same documents: toStructured's record of each line with the agent's stream (the real file path,
 *     no source time, so `@timestamp` is the read time as the agent's), the same `_index`, the same `_id`s and
 *     `create` (the agent's op type for exactly-once); the fields of one stored agent document are checked
 *     against the reference's after each agent run;
 *   - the same request budget: up to 5 MB bodies with two requests in flight (the sink's flushBytes and
 *     concurrency defaults); `reference1` (one in flight) is kept as a second figure;
 *   - the same end: the clock stops when `_refresh` made all N documents searchable (`_count` = N), after the
 *     last `_bulk` answer (reference) or once the agent's checkpoint reached the end of the file.
 * The reference's bodies are prepared before its clock starts (what the node can take); the agent reads,
 * splits, stamps, encodes, sends and checkpoints inside its clock.
 *
 * After a warm-up (JIT), each round runs the selected runs, each into fresh indices deleted afterwards, in
 * alternating order (odd rounds reversed) so neither side always gets the warmer node:
 *   reference   prepared 5 MB `_bulk` bodies, two requests in flight (the agent's budget)
 *   reference1  the same bodies, one request at a time
 *   sink        ElasticsearchSink.write() fed like the tailer feeds it, 64 KiB batches (in-process)
 *   agent       `ikontainer run --output elasticsearch:URL` tailing a 1,000,000-line file
 *   agent160    the same agent in a memory cgroup limited to --memory-limit MiB (160: the sidecar examples'
 *               limits.memory), to show it stays inside a pod's limit (no OOM kill) and what that costs; root
 * Every run is checked: exactly N documents, N distinct `_id`s. Per-round agent/reference ratios (the two
 * runs next to each other) are reported with their median, since the machine's load moves between rounds.
 *
 *   npm run bench:es -- --rounds 3 --runs reference,agent,agent160,reference1
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
import { memoryCgroup } from "./app/memory-cgroup.js";

const run = promisify(execFile);
// compiled to bench/.work/dist/bench/: the repository is four levels up
const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));

const { values: args } = parseArgs({
  options: {
    lines: { type: "string", default: "1000000" },
    rounds: { type: "string", default: "1" },
    "skip-agent": { type: "boolean", default: false },
    "memory-limit": { type: "string", default: "160" },
    runs: { type: "string", default: "reference,agent,reference1,sink" },
    out: { type: "string", default: join(ROOT, "bench", "results") },
  },
});
const N = Number(args.lines);
const ROUNDS = Number(args.rounds);
/** agent160's cgroup limit in MiB: the sidecar examples' limits.memory. */
const LIMIT_MIB = Number(args["memory-limit"]);
const CUID = "0196f1c2-0000-7000-8000-0000000be0c4";
const SVC = "bench.shop.cluster.local";
const READ = 64 * 1024; // the file reader's read size (src/sources/tail/file-reader.ts MAX_CHUNK)
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
function makeBatches(lines: Buffer[], stream: StreamInfo, inputId: string): LineBatch[] {
  const out: LineBatch[] = [];
  let offset = 0;
  let cur: LineBatch["lines"] = [];
  let size = 0;
  // a plain file has no source time: the agent stamps the read time (one per read), as here
  const readAt = Date.now();
  for (let i = 0; i < lines.length; i++) {
    const b = lines[i]!;
    cur.push({ bytes: b, offset });
    offset += b.length + 1;
    size += b.length + 1;
    if (size >= READ || i === lines.length - 1) {
      out.push({ stream, lines: cur, inputId, endOffset: offset, endPart: 0, readAt: readAt + out.length });
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
/** The keys of a reference document's source, in order (an agent document must have the same). */
let referenceFields = "";
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
  /** 1-minute load average when the run started (2 cores; this bench itself adds about 2 while it runs). */
  load_1m_at_start: number;
  /** The agent only: peak RSS (VmHWM) and whether a stored document has the reference's fields. */
  agent_peak_rss_mib?: number;
  /** agent160: OOM kills in its memory cgroup (0: the agent stayed inside the limit). */
  oom_kills?: number;
  same_fields_as_reference?: boolean;
  check: { docs: number; indices: number; distinct_ids: number };
}

async function measure(
  name: string,
  url: string,
  esPid: number,
  prefix: string,
  body: () => Promise<{ clientCpuS: number; peakRssMiB?: number; oomKills?: number }>,
): Promise<RunResult> {
  await req(url, "DELETE", `/${prefix}-*`);
  const load = Math.round(os.loadavg()[0]! * 100) / 100;
  const es0 = ticksOf(esPid);
  const t0 = process.hrtime.bigint();
  const { clientCpuS, peakRssMiB, oomKills } = await body();
  // the same end for every run: all N documents searchable
  for (let i = 0; ; i++) {
    await req(url, "POST", `/${prefix}-*/_refresh`);
    if ((await countDocs(url, prefix)) >= N) break;
    if (i > 600) throw new Error(`${name}: fewer than ${N} documents searchable after 60 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const esCpu = (ticksOf(esPid) - es0) / TICK;
  const check = await verify(url, prefix);
  // the first line's document (it carries a request ID, as the reference's first does)
  const sample = (await req(url, "GET", `/${prefix}-*/_search?size=1&q=ikontainer_offset:0`)) as {
    hits?: { hits?: Array<{ _source: Record<string, unknown> }> };
  };
  const fields = Object.keys(sample.hits?.hits?.[0]?._source ?? {}).join(",");
  await req(url, "DELETE", `/${prefix}-*`);
  const r: RunResult = {
    name,
    docs: N,
    seconds: Math.round(seconds * 1000) / 1000,
    docs_per_s: Math.round(N / seconds),
    client_cpu_s: Math.round(clientCpuS * 100) / 100,
    client_cpu_per_1k_docs_ms: Math.round(((clientCpuS * 1e6) / N) * 1000) / 1000,
    es_cpu_s: Math.round(esCpu * 100) / 100,
    load_1m_at_start: load,
    ...(peakRssMiB !== undefined ? { agent_peak_rss_mib: peakRssMiB } : {}),
    ...(oomKills !== undefined ? { oom_kills: oomKills } : {}),
    ...(referenceFields && name.startsWith("agent")
      ? { same_fields_as_reference: fields === referenceFields }
      : {}),
    check: { ...check, distinct_ids: check.indices === 1 ? check.docs : Number.NaN },
  };
  process.stderr.write(`${JSON.stringify(r)}\n`);
  if (check.docs !== N || check.indices !== 1)
    throw new Error(`${name}: ${check.docs} documents in ${check.indices} indices, expected ${N} in 1`);
  if (r.same_fields_as_reference === false)
    throw new Error(`${name}: stored fields ${fields}, the reference's ${referenceFields}`);
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
    // the log file the agent tails; the reference's documents are made from the same stream (path, inode)
    const logDir = join(work, "logs");
    mkdirSync(logDir);
    const logFile = join(logDir, "access.log");
    writeFileSync(logFile, Buffer.concat(lines.flatMap((l) => [l, Buffer.from("\n")])));
    const st = statSync(logFile);
    const stream: StreamInfo = {
      key: "file:0:access.log",
      path: logFile,
      relPath: "access.log",
      channel: "file",
    };
    const batches = makeBatches(lines, stream, `${st.dev}:${st.ino}`);
    const structured: StructuredOptions = {
      identity: { cuid: CUID, svc: SVC },
      requestIds: new RequestIdExtractor(),
    };

    // the reference's bodies: the agent's documents (same _index, _id, op type and source), in 5 MB bodies
    const refBodies = (prefix: string): string[] => {
      const bodies: string[] = [];
      let cur = "";
      for (const b of batches) {
        for (const l of b.lines) {
          const rec = toStructured(l, b, structured) as Record<string, unknown>;
          rec.ikontainer_offset = l.offset;
          referenceFields ||= Object.keys(rec).join(",");
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

    const results: RunResult[] = [];
    // the reference's indices get the very template the sink installs for its own
    await req(url, "PUT", "/_index_template/bench-ref", logsIndexTemplate("bench-ref"));
    await req(url, "PUT", "/_index_template/bench-ref1", logsIndexTemplate("bench-ref1"));
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
    const agentRun = (name: string, prefix: string, limitMiB?: number): Promise<RunResult> => {
      const state = join(work, `state-${Date.now()}`);
      const metricsPort = 40_000 + Math.floor(Math.random() * 20_000);
      return measure(name, url, esPid, prefix, async () => {
        const cgroup =
          limitMiB === undefined ? undefined : memoryCgroup(`ikon-bench-es-${process.pid}`, limitMiB);
        // in the cgroup: the shell moves itself there, then becomes node (so the limit holds from the start)
        const child = spawn(
          cgroup ? "sh" : process.execPath,
          [
            ...(cgroup ? ["-c", 'echo $$ > "$0" && exec "$@"', cgroup.procs, process.execPath] : []),
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
            prefix,
            "--log-level",
            "warn",
            "--metrics-port",
            String(metricsPort),
            "--metrics-host",
            "127.0.0.1",
          ],
          { stdio: ["ignore", "ignore", "inherit"] },
        );
        agentChild = child;
        // accepted by the sink: its lines-out counter (the checkpoint file is written only once a second);
        // searchable is then checked by measure() like every run's
        let cpu = 0;
        for (;;) {
          await new Promise((r) => setTimeout(r, 100));
          try {
            cpu = ticksOf(child.pid!) / TICK;
          } catch {
            const ooms = cgroup?.oomKills();
            cgroup?.remove();
            throw new Error(`agent exited early${ooms ? ` (killed by the OOM killer ${ooms} time(s))` : ""}`);
          }
          const out = await fetch(`http://127.0.0.1:${metricsPort}/metrics`)
            .then((r) => r.text())
            .catch(() => "");
          const m = /^ikontainer_lines_out_total\{sink="elasticsearch:[^"]*"\} (\d+)/m.exec(out);
          if (m && Number(m[1]) >= N) break;
        }
        const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
        const peakRssMiB = Math.round(Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 102.4) / 10;
        child.kill("SIGTERM");
        await new Promise((r) => child.on("exit", r));
        agentChild = undefined;
        const oomKills = cgroup?.oomKills();
        cgroup?.remove();
        return { clientCpuS: cpu, peakRssMiB, ...(cgroup ? { oomKills } : {}) };
      });
    };
    const runs: Record<string, () => Promise<RunResult>> = {
      reference: () =>
        reference(
          "reference: prepared 5 MB _bulk bodies, two requests in flight (the agent's budget)",
          "bench-ref",
          2,
        ),
      reference1: () =>
        reference("reference1: prepared 5 MB _bulk bodies, one request at a time", "bench-ref1", 1),
      sink: () =>
        measure(
          "sink: ElasticsearchSink.write(), 64 KiB read batches, one file, awaited in order",
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
      agent: () =>
        agentRun("agent: ikontainer run --output elasticsearch:URL tailing the file", "bench-agent"),
      agent160: () =>
        agentRun(
          `agent160: the same agent in a memory cgroup limited to ${LIMIT_MIB} MiB (a pod's limits.memory)`,
          "bench-agent160",
          LIMIT_MIB,
        ),
    };
    // warm the JVM (JIT, caches) so the first measured run is not the cold one
    process.stderr.write("warm-up\n");
    {
      const warm = refBodies("bench-warm").slice(0, 40);
      for (const body of warm) await post(url, "/_bulk?filter_path=errors", body);
      await req(url, "DELETE", "/bench-warm-*");
    }
    const order = args.runs.split(",").filter((r) => !(args["skip-agent"] && r === "agent"));
    for (const name of order) if (!runs[name]) throw new Error(`unknown run ${name}`);
    const rounds: RunResult[][] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const these: RunResult[] = [];
      for (const name of round % 2 === 0 ? order : [...order].reverse()) these.push(await runs[name]!());
      rounds.push(these);
      results.push(...these);
    }
    const of = (xs: RunResult[], prefix: string) => xs.filter((r) => r.name.startsWith(`${prefix}:`));
    const mean = (xs: RunResult[]) => xs.reduce((s, r) => s + r.docs_per_s, 0) / Math.max(1, xs.length);
    const r3 = (x: number) => Math.round(x * 1000) / 1000;
    const median = (xs: number[]) => {
      const v = [...xs].sort((a, b) => a - b);
      return v.length === 0 ? Number.NaN : (v[(v.length - 1) >> 1]! + v[v.length >> 1]!) / 2;
    };
    // per round: the two runs were next to each other, so the machine's load was about the same
    const perRound = (a: string, b: string) =>
      rounds
        .map((rs) => {
          const x = of(rs, a)[0];
          const y = of(rs, b)[0];
          return x && y ? r3(x.docs_per_s / y.docs_per_s) : undefined;
        })
        .filter((x): x is number => x !== undefined);
    const ratio = (a: string, b: string) => {
      const xs = of(results, a);
      const ys = of(results, b);
      if (xs.length === 0 || ys.length === 0) return undefined;
      const rs = perRound(a, b);
      return { of_means: r3(mean(xs) / mean(ys)), per_round: rs, median_per_round: r3(median(rs)) };
    };
    const ag = of(results, "agent");
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
      agent_vs_reference: ratio("agent", "reference"),
      agent_vs_reference1: ratio("agent", "reference1"),
      sink_vs_reference: ratio("sink", "reference"),
      agent_docs_per_s_median: ag.length ? Math.round(median(ag.map((r) => r.docs_per_s))) : undefined,
      agent_cpu_us_per_line_median: ag.length
        ? Math.round(median(ag.map((r) => r.client_cpu_per_1k_docs_ms)) * 100) / 100
        : undefined,
      target: 0.9,
      notes:
        "2 cores shared by Elasticsearch, the client and other work on the machine (load_1m_at_start per run). " +
        "CPU seconds from process.cpuUsage (bench process) or /proc (agent: its whole life, start-up included; Elasticsearch). " +
        "client_cpu_per_1k_docs_ms is also µs per line. Every run ends when all N documents are searchable (_refresh, _count). " +
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
