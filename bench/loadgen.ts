/**
 * A constant-rate load generator for machines without Python: the same users, task mix and pacing as
 * bench/locustfile.py (N users, each one request per second, like Locust's `constant_throughput(1)`), and
 * the same `_stats.csv` columns as Locust writes (percentile columns rounded the way Locust rounds them).
 * Exact percentiles (nearest rank over every response time) go to `<csv>_exact.json`, as the locustfile does.
 *
 *   node bench/.work/dist/bench/loadgen.js --host http://127.0.0.1:8080 --users 100 --duration 20s --csv out/run
 */
import { writeFileSync } from "node:fs";
import http from "node:http";
import { parseArgs } from "node:util";
import { parseDuration } from "../src/config/units.js";
import { seededRandom } from "../test/helpers/seeded-random.js";

export interface LoadOptions {
  host: string;
  users: number;
  /** Requests per second per user (Locust's constant_throughput). */
  throughput?: number;
  durationMs: number;
  /** Users are started evenly over this time (Locust's `-r users` spawns them all within a second). */
  spawnMs?: number;
  seed?: number;
}

export interface Sample {
  name: string;
  ms: number;
  failed: boolean;
  bytes: number;
  /** When the request started, ms after the load started. */
  at: number;
}

export interface LoadResult {
  samples: Sample[];
  durationMs: number;
  startTime: number;
  lastRequestTime: number;
  errors: Map<string, number>;
}

const WORDS = [
  "container",
  "log",
  "tracing",
  "kubernetes",
  "mesh",
  "latency",
  "network",
  "search",
  "sidecar",
];

interface Task {
  name: string;
  weight: number;
  make(rand: () => number): { method: string; path: string; body?: Buffer };
}

const TASKS: Task[] = [
  { name: "/", weight: 6, make: () => ({ method: "GET", path: "/" }) },
  {
    name: "/search",
    weight: 3,
    make: (rand) => ({ method: "GET", path: `/search?q=${WORDS[Math.floor(rand() * WORDS.length)]}` }),
  },
  {
    name: "/upload",
    weight: 1,
    make: (rand) => ({
      method: "POST",
      path: "/upload",
      body: Buffer.from(
        JSON.stringify({
          title: `${WORDS[Math.floor(rand() * WORDS.length)]} study ${Math.floor(rand() * 1e6)}`,
          authors: ["Bench"],
          pdfBytes: 123456,
        }),
      ),
    }),
  },
];
const TOTAL_WEIGHT = TASKS.reduce((s, t) => s + t.weight, 0);

/** Weighted choice, like Locust's @task(weight). */
function pickTask(r: number): Task {
  for (const t of TASKS) {
    if (r < t.weight) return t;
    r -= t.weight;
  }
  return TASKS[0]!;
}

function request(agent: http.Agent, host: string, t: { method: string; path: string; body?: Buffer }) {
  return new Promise<{ status: number; bytes: number }>((resolve, reject) => {
    const req = http.request(
      `${host}${t.path}`,
      {
        method: t.method,
        agent,
        headers: t.body ? { "content-type": "application/json", "content-length": t.body.length } : {},
      },
      (res) => {
        let bytes = 0;
        res.on("data", (c: Buffer) => {
          bytes += c.length;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, bytes }));
        res.on("error", reject);
      },
    );
    req.setTimeout(60_000, () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end(t.body);
  });
}

/** Runs the load in this process; each user has its own keep-alive connection, like a Locust user. */
export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const rand = seededRandom(opts.seed ?? Date.now());
  const period = 1000 / (opts.throughput ?? 1);
  const spawnMs = opts.spawnMs ?? 1000;
  const samples: Sample[] = [];
  const errors = new Map<string, number>();
  const t0 = performance.now();
  const startTime = Date.now();
  let lastRequestTime = startTime;
  const end = t0 + opts.durationMs;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const user = async (i: number) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    await sleep((spawnMs * i) / opts.users);
    while (performance.now() < end) {
      const started = performance.now();
      const task = pickTask(rand() * TOTAL_WEIGHT);
      const spec = task.make(rand);
      try {
        const r = await request(agent, opts.host, spec);
        const ms = performance.now() - started;
        const failed = r.status >= 400 || r.status === 0;
        if (failed)
          errors.set(`${task.name} HTTP ${r.status}`, (errors.get(`${task.name} HTTP ${r.status}`) ?? 0) + 1);
        samples.push({ name: task.name, ms, failed, bytes: r.bytes, at: started - t0 });
      } catch (e) {
        const key = `${task.name} ${(e as Error).message}`;
        errors.set(key, (errors.get(key) ?? 0) + 1);
        samples.push({
          name: task.name,
          ms: performance.now() - started,
          failed: true,
          bytes: 0,
          at: started - t0,
        });
      }
      lastRequestTime = Date.now();
      // constant_throughput: the next task starts one period after this one started.
      const wait = period - (performance.now() - started);
      if (wait > 0 && performance.now() + wait < end) await sleep(wait);
      else if (wait > 0) break;
    }
    agent.destroy();
  };
  await Promise.all(Array.from({ length: opts.users }, (_, i) => user(i)));
  return { samples, durationMs: opts.durationMs, startTime, lastRequestTime, errors };
}

/** Nearest-rank percentile over sorted values (the locustfile's exact percentiles use the same rule). */
export function percentile(sorted: number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const k = Math.max(0, Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1));
  return sorted[k]!;
}

/** Locust's bucketing: < 100 ms to 1 ms, < 1 s to 10 ms, < 10 s to 100 ms, else to 1 s. */
function locustRound(ms: number): number {
  if (ms < 100) return Math.round(ms);
  if (ms < 1000) return Math.round(ms / 10) * 10;
  if (ms < 10000) return Math.round(ms / 100) * 100;
  return Math.round(ms / 1000) * 1000;
}

/** Locust's percentile over its rounded buckets (calculate_response_time_percentile). */
function locustPercentile(rounded: number[], q: number): number {
  const n = rounded.length;
  const want = Math.floor(n * q);
  const counts = new Map<number, number>();
  for (const r of rounded) counts.set(r, (counts.get(r) ?? 0) + 1);
  let processed = 0;
  for (const rt of [...counts.keys()].sort((a, b) => b - a)) {
    processed += counts.get(rt)!;
    if (n - processed <= want) return rt;
  }
  return 0;
}

export const LOCUST_STATS_COLUMNS = [
  "Type",
  "Name",
  "Request Count",
  "Failure Count",
  "Median Response Time",
  "Average Response Time",
  "Min Response Time",
  "Max Response Time",
  "Average Content Size",
  "Requests/s",
  "Failures/s",
  "50%",
  "66%",
  "75%",
  "80%",
  "90%",
  "95%",
  "98%",
  "99%",
  "99.9%",
  "99.99%",
  "100%",
];
const PERCENTILES = [0.5, 0.66, 0.75, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0];

function statsRow(type: string, name: string, s: Sample[], seconds: number): (string | number)[] {
  const ms = s.map((x) => x.ms);
  const rounded = ms.map(locustRound);
  const failures = s.filter((x) => x.failed).length;
  const n = s.length;
  let min = Number.POSITIVE_INFINITY;
  let max = 0;
  for (const v of ms) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const median = n ? Math.min(Math.max(locustPercentile(rounded, 0.5), min), max) : 0;
  return [
    type,
    name,
    n,
    failures,
    median,
    n ? ms.reduce((a, b) => a + b, 0) / n : 0,
    n ? min : 0,
    n ? max : 0,
    n ? s.reduce((a, x) => a + x.bytes, 0) / n : 0,
    seconds > 0 ? n / seconds : 0,
    seconds > 0 ? failures / seconds : 0,
    ...PERCENTILES.map((q) => (n ? locustPercentile(rounded, q) : "N/A")),
  ];
}

/** The `_stats.csv` Locust would write for these samples. */
export function locustStatsCsv(result: LoadResult): string {
  const seconds = (result.lastRequestTime - result.startTime) / 1000;
  const rows: (string | number)[][] = [LOCUST_STATS_COLUMNS];
  for (const t of [...TASKS].sort((a, b) => a.name.localeCompare(b.name))) {
    const s = result.samples.filter((x) => x.name === t.name);
    if (s.length) rows.push(statsRow(t.name === "/upload" ? "POST" : "GET", t.name, s, seconds));
  }
  rows.push(statsRow("", "Aggregated", result.samples, seconds));
  // Python's csv module (Locust) ends rows with \r\n.
  return `${rows.map((r) => r.join(",")).join("\r\n")}\r\n`;
}

export interface ExactSummary {
  tool: string;
  count: number;
  failures: number;
  elapsedSeconds: number;
  warmupSeconds: number;
  steadyCount: number;
  steadyFailures: number;
  /** Requests/s over the steady window (after the warm-up). */
  rps: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
  mean: number | null;
  perSecond: { second: number; count: number; p50: number; p99: number }[];
}

/** Exact figures; requests that started in the first `warmupMs` are counted but not in the percentiles. */
export function exactSummary(result: LoadResult, warmupMs = 0): ExactSummary {
  const steady = result.samples.filter((s) => s.at >= warmupMs);
  const times = steady.map((s) => s.ms).sort((a, b) => a - b);
  const elapsed = (result.lastRequestTime - result.startTime) / 1000;
  // Steady rate: requests started after the warm-up, over the run time after the warm-up (as the locustfile).
  const steadyElapsed = Math.max(0, (result.durationMs - warmupMs) / 1000);
  return {
    tool: "loadgen",
    count: result.samples.length,
    failures: result.samples.filter((s) => s.failed).length,
    elapsedSeconds: elapsed,
    warmupSeconds: warmupMs / 1000,
    steadyCount: steady.length,
    steadyFailures: steady.filter((s) => s.failed).length,
    rps: steadyElapsed > 0 ? times.length / steadyElapsed : 0,
    p50: percentile(times, 0.5),
    p95: percentile(times, 0.95),
    p99: percentile(times, 0.99),
    max: times.length ? times[times.length - 1]! : null,
    mean: times.length ? times.reduce((a, b) => a + b, 0) / times.length : null,
    perSecond: perSecond(result.samples),
  };
}

/** Per-second medians and p99s (by start time), to see warm-up and noise over the run. */
function perSecond(samples: Sample[]): { second: number; count: number; p50: number; p99: number }[] {
  const buckets = new Map<number, number[]>();
  for (const s of samples) {
    const k = Math.floor(s.at / 1000);
    const b = buckets.get(k);
    if (b) b.push(s.ms);
    else buckets.set(k, [s.ms]);
  }
  return [...buckets.keys()]
    .sort((a, b) => a - b)
    .map((second) => {
      const v = buckets.get(second)!.sort((a, b) => a - b);
      return { second, count: v.length, p50: percentile(v, 0.5)!, p99: percentile(v, 0.99)! };
    });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: "string" },
      users: { type: "string", default: "100" },
      throughput: { type: "string", default: "1" },
      duration: { type: "string", default: "60s" },
      warmup: { type: "string", default: "0" },
      csv: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || !values.host) {
    process.stdout.write(
      "Usage: loadgen --host URL [--users N] [--throughput REQ_PER_S_PER_USER] [--duration 60s] [--warmup 5s]\n" +
        "               [--csv PREFIX]\n" +
        "Constant-rate load like bench/locustfile.py; writes PREFIX_stats.csv (Locust's columns) and PREFIX_exact.json.\n",
    );
    process.exit(values.help ? 0 : 2);
  }
  const result = await runLoad({
    host: values.host,
    users: Number(values.users),
    throughput: Number(values.throughput),
    durationMs: parseDuration(values.duration ?? "60s", "--duration"),
  });
  const summary = exactSummary(result, parseDuration(values.warmup ?? "0", "--warmup"));
  if (values.csv) {
    writeFileSync(`${values.csv}_stats.csv`, locustStatsCsv(result));
    writeFileSync(
      `${values.csv}_exact.json`,
      JSON.stringify({ ...summary, errors: Object.fromEntries(result.errors) }),
    );
  }
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main().catch((e) => {
    process.stderr.write(`loadgen: ${(e as Error).message}\n`);
    process.exit(1);
  });
}
