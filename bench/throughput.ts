/**
 * Throughput benchmark of the agent core (issue 2, "Benchmark").
 *
 *   npm run bench:throughput                 5 repetitions of every trial, interleaved, then one profiled backlog
 *   npm run bench:throughput -- --quick      1 repetition, 5 s live writer, 200,000-line backlog (smoke)
 *   npm run bench:throughput -- --help       options
 *
 * Trials (each repetition runs all of them once, in a shuffled order, so machine noise hits every condition):
 *   backlog-agent   1,000,000 ~100-byte lines in 4 files already there; `ikontainer run --watch IN --output
 *                   file:OUT`, from spawn until the output files hold every stamped line (stat-polled, exact size)
 *   backlog-sed     reference 1: one-shot `sed 's/$/TAG/'` over the same 4 files, one after the other (one core),
 *                   TAG = the agent's exact tag, so the output bytes are the same as the agent's
 *   live-agent      a writer process appends 20,000 lines/s to 2 files for 20 s, rotating them by rename every
 *                   5 s; each line carries its write time (CLOCK_MONOTONIC µs); a reader follows the output
 *                   folder with fs.watch (inotify) and takes the delay of every line when it appears
 *   live-tailsed    reference 2: `tail -F -n +1 FILE | sed -u 's/$/TAG/' > OUT` per file, same writer, same reader
 *   live-tailstdbuf the same pipeline with `stdbuf -oL sed` instead of `sed -u` (GNU sed -u reads its input ONE
 *                   BYTE per read(2), which is what limits reference 2; -oL only line-buffers the output)
 *   files2000       2,000 files (20 folders × 100 files × 50 lines); time until every line is out (metrics),
 *                   then peak RSS (VmHWM) and ikontainer_files_watched
 *   startup         spawn → the agent's "tailing" log line (4 small files); `ikontainer --help` and `node -e 0`
 *                   wall time
 * CPU seconds: utime+stime (+ reaped children) from /proc/<pid>/stat; peak RSS: VmHWM from /proc/<pid>/status.
 * Results: bench/results/throughput-<stamp>.json and .md (the table); the load average before/after every trial
 * is recorded (other work on the machine shows there).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import {
  closeSync,
  existsSync,
  type FSWatcher,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  watch,
  writeFileSync,
  writeSync,
} from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { freePort } from "./app/launch.js";
import { AgentMeter } from "./app/proc.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, HERE.includes("/.work/dist/") ? "../../../.." : "..");
const CLI = join(ROOT, "dist/cli/main.js");
const WRITER = join(HERE, "throughput-writer.js");
const SVC = "bench";

const TARGETS = {
  backlogLinesPerSec: 400_000,
  liveP99Ms: 100,
  rss2000FilesMiB: 80,
  startupMs: 300,
};

// ---------------------------------------------------------------------------------------------- options

const { values: args } = parseArgs({
  options: {
    reps: { type: "string", default: "5" },
    quick: { type: "boolean", default: false },
    "backlog-lines": { type: "string", default: "1000000" },
    "live-seconds": { type: "string", default: "20" },
    "live-rate": { type: "string", default: "20000" },
    only: { type: "string" },
    profile: { type: "boolean", default: true },
    keep: { type: "boolean", default: false },
    seed: { type: "string", default: "1" },
    "agent-node-args": { type: "string", default: "" },
    help: { type: "boolean", default: false },
  },
  allowNegative: true,
});
if (args.help) {
  process.stdout.write(
    [
      "bench/throughput: backlog, live delay, 2,000 files, start-up of `ikontainer run` beside sed and tail -F | sed",
      "  --reps N             repetitions of every trial (default 5)",
      "  --quick              1 repetition, 5 s live, 200,000-line backlog, no profile",
      "  --backlog-lines N    lines in the backlog (default 1000000, 4 files)",
      "  --live-seconds S     live writer duration (default 20)",
      "  --live-rate N        live writer lines/s in total over 2 files (default 20000)",
      "  --only a,b           trials: backlog-agent,backlog-sed,live-agent,live-tailsed,live-tailstdbuf,files2000,startup",
      "  --no-profile         skip the extra --cpu-prof backlog run",
      "  --keep               keep the work folder",
      '  --agent-node-args "A B"  extra node flags for every agent (e.g. --max-semi-space-size=2)',
      "",
    ].join("\n"),
  );
  process.exit(0);
}
const QUICK = args.quick;
const REPS = QUICK ? 1 : Number(args.reps);
const BACKLOG_LINES = QUICK ? 200_000 : Number(args["backlog-lines"]);
const BACKLOG_FILES = 4;
const LIVE_SECONDS = QUICK ? 5 : Number(args["live-seconds"]);
const LIVE_RATE = Number(args["live-rate"]);
const LIVE_FILES = 2;
const ROTATE_SECONDS = QUICK ? 2 : 5;
const PROFILE = args.profile && !QUICK;
const ALL_TRIALS = [
  "backlog-agent",
  "backlog-sed",
  "live-agent",
  "live-tailsed",
  "live-tailstdbuf",
  "files2000",
  "startup",
] as const;
type TrialKind = (typeof ALL_TRIALS)[number];
const TRIALS: TrialKind[] = args.only
  ? (args.only.split(",").map((s) => s.trim()) as TrialKind[]).filter((t) => ALL_TRIALS.includes(t))
  : [...ALL_TRIALS];

const AGENT_NODE_ARGS = (args["agent-node-args"] ?? "").split(/\s+/).filter(Boolean);
const WORK = join(os.tmpdir(), `ikon-bench-throughput-${process.pid}`);

// ---------------------------------------------------------------------------------------------- helpers

const now = () => performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime+stime+cutime+cstime of one process, in seconds. */
function cpuOf(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

/** VmHWM (peak resident set) and VmRSS of one process, in MiB. */
function memOf(pid: number): { hwm: number; rss: number } {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? Number.NaN);
    return { hwm: kb("VmHWM") / 1024, rss: kb("VmRSS") / 1024 };
  } catch {
    return { hwm: Number.NaN, rss: Number.NaN };
  }
}

function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}
function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
const round = (x: number, d = 1) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : x);

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}
function shuffle<T>(xs: T[], r: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j] as T, a[i] as T];
  }
  return a;
}

function fresh(dir: string): string {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Sum of the sizes of the regular files under dir (recursive). */
function treeBytes(dir: string): number {
  let sum = 0;
  let names: string[];
  try {
    names = readdirSync(dir, { recursive: true }) as string[];
  } catch {
    return 0;
  }
  for (const n of names) {
    try {
      const st = statSync(join(dir, n));
      if (st.isFile()) sum += st.size;
    } catch {
      // raced with a rename
    }
  }
  return sum;
}

const loadavg = () => os.loadavg().map((x) => round(x, 2)) as [number, number, number];

// ---------------------------------------------------------------------------------------------- the agent

interface Agent {
  child: ChildProcess;
  pid: number;
  spawnedAt: number;
  /** performance.now() when the "tailing" log line arrived. */
  tailing: Promise<number>;
  exited: Promise<number | null>;
  stderr: string[];
  /** How often each of the agent's own log messages appeared (e.g. "file shrank (copytruncate)…"). */
  logCounts: Record<string, number>;
  metricsPort?: number;
}

function startAgent(
  watchDir: string,
  outDir: string,
  stateDir: string,
  opts: { metricsPort?: number; nodeArgs?: string[] } = {},
): Agent {
  const argv = [
    ...AGENT_NODE_ARGS,
    ...(opts.nodeArgs ?? []),
    CLI,
    "run",
    "--watch",
    watchDir,
    "--output",
    `file:${outDir}`,
    "--state-dir",
    stateDir,
    "--svc",
    SVC,
  ];
  if (opts.metricsPort) argv.push("--metrics-port", String(opts.metricsPort), "--metrics-host", "127.0.0.1");
  const spawnedAt = now();
  const child = spawn(process.execPath, argv, { stdio: ["ignore", "ignore", "pipe"] });
  const stderr: string[] = [];
  const logCounts: Record<string, number> = {};
  let resolveTailing: (t: number) => void = () => {};
  let rejectTailing: (e: Error) => void = () => {};
  const tailing = new Promise<number>((res, rej) => {
    resolveTailing = res;
    rejectTailing = rej;
  });
  tailing.catch(() => {});
  let buf = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (d: string) => {
    const t = now();
    buf += d;
    let i = buf.indexOf("\n");
    while (i >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (stderr.length < 200) stderr.push(line);
      const msg = /"msg":"([^"]*)"/.exec(line)?.[1];
      if (msg) logCounts[msg] = (logCounts[msg] ?? 0) + 1;
      if (line.includes('"msg":"tailing"')) resolveTailing(t);
      i = buf.indexOf("\n");
    }
  });
  const exited = new Promise<number | null>((res) => {
    child.on("exit", (code) => {
      rejectTailing(new Error(`agent exited (${code}) before "tailing": ${stderr.slice(-5).join("\n")}`));
      res(code);
    });
  });
  return { child, pid: child.pid as number, spawnedAt, tailing, exited, stderr, logCounts, ...opts };
}

async function stopAgent(a: Agent): Promise<void> {
  if (a.child.exitCode !== null || a.child.signalCode !== null) return;
  a.child.kill("SIGTERM");
  const t = setTimeout(() => a.child.kill("SIGKILL"), 8000);
  await a.exited;
  clearTimeout(t);
}

async function metric(port: number, name: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/** The agent's tag for a CUID of the usual 36 characters: same length as the real one. */
const TAG = JSON.stringify({ ikontainer_CUID: "01a20000-0000-7000-8000-000000000000", svc: SVC });

// ---------------------------------------------------------------------------------------------- inputs

interface BacklogInput {
  dir: string;
  files: string[];
  lines: number;
  bytes: number;
}

function makeBacklog(dir: string, lines: number): BacklogInput {
  fresh(dir);
  const per = Math.ceil(lines / BACKLOG_FILES);
  const files: string[] = [];
  let bytes = 0;
  let made = 0;
  for (let f = 0; f < BACKLOG_FILES; f++) {
    const path = join(dir, `app${f}.log`);
    const fd = openSync(path, "w");
    const n = Math.min(per, lines - made);
    const chunk: string[] = [];
    for (let i = 0; i < n; i++) {
      // ~100 bytes with the newline; a little variety like a real access log
      const head = `2026-11-23T05:00:${String(i % 60).padStart(2, "0")}.${String(i % 1000).padStart(3, "0")}Z INFO app${f} GET /api/items/${i} status=200 dur_ms=${i % 97}`;
      chunk.push(head.padEnd(99, " ."));
      if (chunk.length === 10_000) {
        const s = `${chunk.join("\n")}\n`;
        bytes += Buffer.byteLength(s);
        writeAll(fd, s);
        chunk.length = 0;
      }
    }
    if (chunk.length) {
      const s = `${chunk.join("\n")}\n`;
      bytes += Buffer.byteLength(s);
      writeAll(fd, s);
    }
    closeSync(fd);
    made += n;
    files.push(path);
  }
  return { dir, files, lines: made, bytes };
}
function writeAll(fd: number, s: string): void {
  const b = Buffer.from(s);
  let off = 0;
  while (off < b.length) off += writeSync(fd, b, off, b.length - off);
}

function makeManyFiles(dir: string, folders: number, perFolder: number, linesEach: number) {
  fresh(dir);
  let lines = 0;
  for (let d = 0; d < folders; d++) {
    const sub = join(dir, `svc${String(d).padStart(2, "0")}`);
    mkdirSync(sub);
    for (let f = 0; f < perFolder; f++) {
      const rows: string[] = [];
      for (let i = 0; i < linesEach; i++) rows.push(`line ${i} of svc${d}/f${f} ${"y".repeat(60)}`);
      writeFileSync(join(sub, `f${String(f).padStart(3, "0")}.log`), `${rows.join("\n")}\n`);
      lines += linesEach;
    }
  }
  return { dir, files: folders * perFolder, lines };
}

// ---------------------------------------------------------------------------------------------- trials

interface TrialBase {
  kind: TrialKind;
  rep: number;
  order: number;
  startedAt: string;
  loadavg: { before: [number, number, number]; after?: [number, number, number] };
  error?: string;
}
type Trial = TrialBase & Record<string, unknown>;

async function backlogAgent(input: BacklogInput, dir: string, nodeArgs: string[] = []) {
  const out = join(dir, "out");
  const state = join(dir, "state");
  fresh(dir);
  const expected = input.bytes + input.lines * TAG.length;
  const a = startAgent(input.dir, out, state, { nodeArgs });
  try {
    let tailingAt = Number.NaN;
    a.tailing.then((t) => {
      tailingAt = t;
    });
    const deadline = now() + 180_000;
    let bytes = treeBytes(out);
    let firstOutAt = Number.NaN;
    while (bytes < expected) {
      if (now() > deadline) throw new Error(`timeout: ${bytes}/${expected} output bytes`);
      if (a.child.exitCode !== null) throw new Error(`agent exited: ${a.stderr.slice(-3).join(" | ")}`);
      await sleep(5);
      bytes = treeBytes(out);
      if (bytes > 0 && Number.isNaN(firstOutAt)) firstOutAt = now();
    }
    const doneAt = now();
    const cpu = cpuOf(a.pid);
    const mem = memOf(a.pid);
    if (bytes !== expected) throw new Error(`output has ${bytes} bytes, expected ${expected}`);
    const wall = (doneAt - a.spawnedAt) / 1000;
    // Reading starts before the "tailing" log line, so the processing time is counted from the first output byte.
    const processing = (doneAt - (Number.isNaN(firstOutAt) ? tailingAt : firstOutAt)) / 1000;
    return {
      lines: input.lines,
      inputBytes: input.bytes,
      outputBytes: bytes,
      wallSeconds: round(wall, 3),
      startupMs: round(tailingAt - a.spawnedAt, 1),
      linesPerSec: Math.round(input.lines / wall),
      mbPerSec: round(input.bytes / 1e6 / wall, 1),
      firstOutputMs: round(firstOutAt - a.spawnedAt, 1),
      linesPerSecFromFirstOutput: Math.round(input.lines / processing),
      cpuSeconds: round(cpu, 2),
      peakRssMiB: round(mem.hwm, 1),
    };
  } finally {
    await stopAgent(a);
  }
}

async function backlogSed(input: BacklogInput, dir: string) {
  fresh(dir);
  const out = fresh(join(dir, "out"));
  const timeFile = join(dir, "time.txt");
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, not a JS template
  const script = 'for f in "$@"; do sed "s/\\$/$TAG/" "$f" > "$OUT/${f##*/}"; done';
  const t0 = now();
  const child = spawn(
    "/usr/bin/time",
    ["-o", timeFile, "-f", "%e %U %S %M", "sh", "-c", script, "sh", ...input.files],
    { stdio: "ignore", env: { ...process.env, TAG, OUT: out, LC_ALL: "C" } },
  );
  const [code] = (await once(child, "exit")) as [number | null];
  const wall = (now() - t0) / 1000;
  if (code !== 0) throw new Error(`sed exited with ${code}`);
  const [, user, sys, maxKb] = readFileSync(timeFile, "utf8").trim().split("\n").pop()?.split(" ") ?? [];
  const bytes = treeBytes(out);
  const expected = input.bytes + input.lines * TAG.length;
  if (bytes !== expected) throw new Error(`sed output has ${bytes} bytes, expected ${expected}`);
  return {
    lines: input.lines,
    inputBytes: input.bytes,
    outputBytes: bytes,
    wallSeconds: round(wall, 3),
    linesPerSec: Math.round(input.lines / wall),
    mbPerSec: round(input.bytes / 1e6 / wall, 1),
    cpuSeconds: round(Number(user) + Number(sys), 2),
    peakRssMiB: round(Number(maxKb) / 1024, 1),
  };
}

/** Follows every file in a folder (inotify via fs.watch, plus a 50 ms safety-net poll) and times each line. */
class OutputReader {
  private readonly offsets = new Map<string, number>();
  private readonly partial = new Map<string, string>();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private scheduled = false;
  readonly delaysMs: number[] = [];
  /** Delays by the second of the run in which the line was written (rotations every ROTATE_SECONDS). */
  readonly bySecond: number[][] = [];
  /** CLOCK_MONOTONIC µs when the writer was started. */
  startUs = Number.NaN;
  readonly seen: Uint8Array[];
  received = 0;
  duplicates = 0;
  malformed = 0;
  private readonly buf = Buffer.allocUnsafe(1 << 20);

  constructor(
    private readonly dir: string,
    files: number,
    maxPerFile: number,
  ) {
    this.seen = Array.from({ length: files }, () => new Uint8Array(maxPerFile + 1));
    this.watcher = watch(dir, () => this.schedule());
    this.timer = setInterval(() => this.schedule(), 50);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.readAll();
    });
  }

  readAll(): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(this.dir, name);
      let fd: number;
      try {
        fd = openSync(path, "r");
      } catch {
        continue;
      }
      try {
        let off = this.offsets.get(path) ?? 0;
        for (;;) {
          const n = readSync(fd, this.buf, 0, this.buf.length, off);
          if (n <= 0) break;
          const arrivedUs = Number(process.hrtime.bigint() / 1000n);
          off += n;
          const text = (this.partial.get(path) ?? "") + this.buf.toString("latin1", 0, n);
          const last = text.lastIndexOf("\n");
          this.partial.set(path, text.slice(last + 1));
          if (last >= 0) this.take(text.slice(0, last), arrivedUs, name, off - n);
        }
        this.offsets.set(path, off);
      } finally {
        closeSync(fd);
      }
    }
  }

  /** The first duplicates seen: which output file, which line, at which output offset (chunk start). */
  readonly duplicateSamples: { file: string; f: number; seq: number; chunkOffset: number }[] = [];

  private take(text: string, arrivedUs: number, file: string, chunkOffset: number): void {
    for (const line of text.split("\n")) {
      const m = /^ts=(\d+) f=(\d+) seq=(\d+) /.exec(line);
      if (!m) {
        this.malformed++;
        continue;
      }
      const f = Number(m[2]);
      const seq = Number(m[3]);
      const seen = this.seen[f];
      if (!seen || seq >= seen.length) {
        this.malformed++;
        continue;
      }
      if (seen[seq]) {
        this.duplicates++;
        if (this.duplicateSamples.length < 5) this.duplicateSamples.push({ file, f, seq, chunkOffset });
        continue;
      }
      seen[seq] = 1;
      this.received++;
      const ts = Number(m[1]);
      const delay = (arrivedUs - ts) / 1000;
      this.delaysMs.push(delay);
      const sec = Math.max(0, Math.floor((ts - this.startUs) / 1e6));
      const b = this.bySecond[sec] ?? [];
      b.push(delay);
      this.bySecond[sec] = b;
    }
  }

  close(): void {
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
  }
}

async function liveTrial(kind: "agent" | "tailsed" | "tailstdbuf", dir: string) {
  fresh(dir);
  const input = fresh(join(dir, "in"));
  const out = fresh(join(dir, "out"));
  const state = join(dir, "state");
  for (let k = 0; k < LIVE_FILES; k++) writeFileSync(join(input, `app${k}.log`), "");
  let agent: Agent | undefined;
  const shells: ChildProcess[] = [];
  let meter: AgentMeter | undefined;
  let reader: OutputReader | undefined;
  let writer: ChildProcess | undefined;
  try {
    let readyMs: number;
    if (kind === "agent") {
      agent = startAgent(input, out, state);
      readyMs = (await agent.tailing) - agent.spawnedAt;
      meter = new AgentMeter([agent.pid]);
    } else {
      const t0 = now();
      for (let k = 0; k < LIVE_FILES; k++) {
        const sh = spawn(
          "sh",
          [
            "-c",
            kind === "tailsed"
              ? 'tail -F -n +1 "$1" 2>/dev/null | sed -u "s/\\$/$TAG/" > "$2"'
              : 'tail -F -n +1 "$1" 2>/dev/null | stdbuf -oL sed "s/\\$/$TAG/" > "$2"',
            "sh",
            join(input, `app${k}.log`),
            join(out, `app${k}.log`),
          ],
          { stdio: "ignore", detached: true, env: { ...process.env, TAG, LC_ALL: "C" } },
        );
        shells.push(sh);
      }
      await sleep(300);
      readyMs = now() - t0;
      meter = new AgentMeter(shells.map((s) => s.pid as number));
    }
    const cpu0 = meter.cpu();
    const perFile = Math.ceil((LIVE_RATE * LIVE_SECONDS) / LIVE_FILES) + 10;
    reader = new OutputReader(out, LIVE_FILES, perFile);
    reader.startUs = Number(process.hrtime.bigint() / 1000n);
    const w = spawn(
      process.execPath,
      [WRITER, input, String(LIVE_FILES), String(LIVE_RATE), String(LIVE_SECONDS), String(ROTATE_SECONDS)],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    writer = w;
    let wout = "";
    w.stdout?.setEncoding("utf8");
    w.stdout?.on("data", (d: string) => {
      wout += d;
    });
    const [wcode] = (await once(w, "exit")) as [number | null];
    if (wcode !== 0) throw new Error(`writer exited with ${wcode}`);
    const wres = JSON.parse(wout) as { written: number[]; rotations: number; lateTicks: number };
    const written = wres.written.reduce((a, b) => a + b, 0);
    const writerDone = now();
    const drainDeadline = writerDone + 10_000;
    while (reader.received < written && now() < drainDeadline) await sleep(20);
    reader.readAll();
    const drainMs = now() - writerDone;
    const cpu = meter.cpu() - cpu0;
    const rss = meter.peakRssBytes().total / 2 ** 20;
    const d = Float64Array.from(reader.delaysMs).sort();
    return {
      rate: LIVE_RATE,
      seconds: LIVE_SECONDS,
      files: LIVE_FILES,
      rotations: wres.rotations,
      writerLateTicks: wres.lateTicks,
      written,
      received: reader.received,
      lost: written - reader.received,
      duplicates: reader.duplicates,
      ...(reader.duplicates ? { duplicateSamples: reader.duplicateSamples } : {}),
      ...(agent ? { agentLog: agent.logCounts } : {}),
      malformed: reader.malformed,
      readyMs: round(readyMs, 1),
      drainMs: round(drainMs, 0),
      p50Ms: round(quantile(d, 0.5), 2),
      p90Ms: round(quantile(d, 0.9), 2),
      p99Ms: round(quantile(d, 0.99), 2),
      p999Ms: round(quantile(d, 0.999), 2),
      /** p99 delay of the lines written in each second of the run (shows whether rotations hurt). */
      p99BySecondMs: Array.from(reader.bySecond, (b) =>
        b ? round(quantile(Float64Array.from(b).sort(), 0.99), 1) : null,
      ),
      maxMs: round(quantile(d, 1), 2),
      cpuSeconds: round(cpu, 2),
      cpuPercentOfCore: round((cpu / LIVE_SECONDS) * 100, 1),
      peakRssMiB: round(rss, 1),
    };
  } finally {
    reader?.close();
    if (writer && writer.exitCode === null) writer.kill("SIGKILL");
    meter?.stop();
    if (agent) await stopAgent(agent);
    for (const sh of shells) {
      try {
        process.kill(-(sh.pid as number), "SIGTERM");
      } catch {
        // already gone
      }
    }
  }
}

async function files2000(input: { dir: string; files: number; lines: number }, dir: string) {
  fresh(dir);
  const port = await freePort();
  const a = startAgent(input.dir, join(dir, "out"), join(dir, "state"), { metricsPort: port });
  try {
    const startupMs = (await a.tailing) - a.spawnedAt;
    const deadline = now() + 120_000;
    let out = await metric(port, "ikontainer_lines_out_total");
    while (out < input.lines) {
      if (now() > deadline) throw new Error(`timeout: ${out}/${input.lines} lines out`);
      await sleep(50);
      out = await metric(port, "ikontainer_lines_out_total");
    }
    const allOutMs = now() - a.spawnedAt;
    const watched = await metric(port, "ikontainer_files_watched");
    await sleep(2000); // idle with every file watched: the steady state
    const watchedIdle = await metric(port, "ikontainer_files_watched");
    const mem = memOf(a.pid);
    return {
      files: input.files,
      lines: input.lines,
      startupMs: round(startupMs, 1),
      allOutMs: round(allOutMs, 0),
      filesWatched: watched,
      filesWatchedAfterIdle: watchedIdle,
      peakRssMiB: round(mem.hwm, 1),
      rssAfterIdleMiB: round(mem.rss, 1),
      cpuSeconds: round(cpuOf(a.pid), 2),
    };
  } finally {
    await stopAgent(a);
  }
}

async function timeCommand(argv: string[]): Promise<number> {
  const t0 = now();
  const c = spawn(argv[0] as string, argv.slice(1), { stdio: "ignore" });
  const [code] = (await once(c, "exit")) as [number | null];
  if (code !== 0) throw new Error(`${argv.join(" ")} exited with ${code}`);
  return now() - t0;
}

async function startup(input: string, dir: string) {
  fresh(dir);
  const a = startAgent(input, join(dir, "out"), join(dir, "state"));
  let tailingMs: number;
  try {
    tailingMs = (await a.tailing) - a.spawnedAt;
  } finally {
    await stopAgent(a);
  }
  const help: number[] = [];
  const bare: number[] = [];
  for (let i = 0; i < 3; i++) {
    help.push(await timeCommand([process.execPath, CLI, "--help"]));
    bare.push(await timeCommand([process.execPath, "-e", "0"]));
  }
  return {
    tailingMs: round(tailingMs, 1),
    helpMs: round(median(help), 1),
    nodeBareMs: round(median(bare), 1),
    helpSamplesMs: help.map((x) => round(x, 1)),
  };
}

// ---------------------------------------------------------------------------------------------- profile

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function summarizeProfile(file: string, top = 25) {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i] as number);
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000; // the delta after a sample is the time spent in it
    if (!n) continue;
    const cf = n.callFrame;
    const url = cf.url.replace(/^file:\/\//, "").replace(`${ROOT}/`, "");
    const key = cf.url ? `${cf.functionName || "(anonymous)"} ${url}:${cf.lineNumber + 1}` : cf.functionName;
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  }
  const rows = [...self.entries()].sort((a, b) => b[1] - a[1]);
  const byArea = new Map<string, number>();
  for (const [k, ms] of rows) {
    const area = k.startsWith("(")
      ? k
      : k.includes(" node:")
        ? `node:${/ node:([\w/_]+)/.exec(k)?.[1] ?? "?"}`
        : k.includes("node_modules/")
          ? `npm:${/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(k)?.[1] ?? "?"}`
          : k.includes("dist/")
            ? `ikontainer:${/dist\/([\w/-]+)\.js/.exec(k)?.[1] ?? "?"}`
            : "(other)";
    byArea.set(area, (byArea.get(area) ?? 0) + ms);
  }
  return {
    totalMs: round(total, 0),
    top: rows
      .slice(0, top)
      .map(([fn, ms]) => ({ fn, selfMs: round(ms, 1), pct: round((ms / total) * 100, 1) })),
    byArea: [...byArea.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 20)
      .map(([area, ms]) => ({ area, selfMs: round(ms, 0), pct: round((ms / total) * 100, 1) })),
  };
}

async function profiledBacklog(input: BacklogInput, dir: string) {
  const profDir = fresh(join(dir, "prof"));
  const r = await backlogAgent(input, join(dir, "run"), [
    "--cpu-prof",
    `--cpu-prof-dir=${profDir}`,
    "--cpu-prof-interval=200",
  ]);
  const file = readdirSync(profDir).find((f) => f.endsWith(".cpuprofile"));
  if (!file) return { run: r, error: "no .cpuprofile written (agent did not exit normally?)" };
  return { run: r, profile: summarizeProfile(join(profDir, file)) };
}

// ---------------------------------------------------------------------------------------------- main

function gitFacts(): string {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], {
      cwd: ROOT,
      encoding: "utf8",
    }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src"], {
      cwd: ROOT,
      encoding: "utf8",
    }).trim();
    return dirty ? `${head} (src/ modified: ${dirty.split("\n").length} files)` : head;
  } catch {
    return "?";
  }
}

function machine() {
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    nproc: Number(execFileSync("nproc", { encoding: "utf8" }).trim()),
    cpuModel: cpus[0]?.model ?? "?",
    cpuMHz: cpus[0]?.speed,
    memTotalMiB: Math.round(os.totalmem() / 2 ** 20),
    kernel: os.release(),
    node: process.version,
    sed: execFileSync("sed", ["--version"], { encoding: "utf8" }).split("\n")[0],
    tail: execFileSync("tail", ["--version"], { encoding: "utf8" }).split("\n")[0],
    fs: execFileSync("df", ["-T", os.tmpdir()], { encoding: "utf8" })
      .trim()
      .split("\n")
      .pop()
      ?.split(/\s+/)[1],
    /** The build under test is the shared dist/ (others may rebuild it): the commit and whether src/ was dirty. */
    commit: gitFacts(),
  };
}

function summarize(trials: Trial[]) {
  const ok = (k: TrialKind) => trials.filter((t) => t.kind === k && !t.error);
  const med = (k: TrialKind, f: string) => round(median(ok(k).map((t) => Number(t[f]))), 2);
  const s = {
    backlogAgent: {
      n: ok("backlog-agent").length,
      wallSeconds: med("backlog-agent", "wallSeconds"),
      linesPerSec: med("backlog-agent", "linesPerSec"),
      mbPerSec: med("backlog-agent", "mbPerSec"),
      linesPerSecFromFirstOutput: med("backlog-agent", "linesPerSecFromFirstOutput"),
      cpuSeconds: med("backlog-agent", "cpuSeconds"),
      peakRssMiB: med("backlog-agent", "peakRssMiB"),
    },
    backlogSed: {
      n: ok("backlog-sed").length,
      wallSeconds: med("backlog-sed", "wallSeconds"),
      linesPerSec: med("backlog-sed", "linesPerSec"),
      mbPerSec: med("backlog-sed", "mbPerSec"),
      cpuSeconds: med("backlog-sed", "cpuSeconds"),
      peakRssMiB: med("backlog-sed", "peakRssMiB"),
    },
    backlogRatioToSed: Number.NaN,
    liveAgent: liveSummary(ok("live-agent")),
    liveTailSed: liveSummary(ok("live-tailsed")),
    liveTailStdbuf: liveSummary(ok("live-tailstdbuf")),
    files2000: {
      n: ok("files2000").length,
      peakRssMiB: med("files2000", "peakRssMiB"),
      rssAfterIdleMiB: med("files2000", "rssAfterIdleMiB"),
      filesWatched: med("files2000", "filesWatched"),
      allOutMs: med("files2000", "allOutMs"),
      startupMs: med("files2000", "startupMs"),
      cpuSeconds: med("files2000", "cpuSeconds"),
    },
    startup: {
      n: ok("startup").length,
      tailingMs: med("startup", "tailingMs"),
      helpMs: med("startup", "helpMs"),
      nodeBareMs: med("startup", "nodeBareMs"),
    },
  };
  s.backlogRatioToSed = round(s.backlogAgent.linesPerSec / s.backlogSed.linesPerSec, 3);
  const targets = {
    backlog: {
      target: `>= ${TARGETS.backlogLinesPerSec} lines/s`,
      measured: s.backlogAgent.linesPerSec,
      met: s.backlogAgent.linesPerSec >= TARGETS.backlogLinesPerSec,
    },
    liveP99: {
      target: `<= ${TARGETS.liveP99Ms} ms`,
      measured: s.liveAgent.p99Ms,
      met: s.liveAgent.p99Ms <= TARGETS.liveP99Ms,
    },
    rss2000Files: {
      target: `<= ${TARGETS.rss2000FilesMiB} MiB`,
      measured: s.files2000.peakRssMiB,
      met: s.files2000.peakRssMiB <= TARGETS.rss2000FilesMiB,
    },
    startup: {
      target: `< ${TARGETS.startupMs} ms`,
      measured: s.startup.tailingMs,
      met: s.startup.tailingMs < TARGETS.startupMs,
    },
  };
  return { ...s, targets };
}

function liveSummary(ts: Trial[]) {
  const m = (f: string) => round(median(ts.map((t) => Number(t[f]))), 2);
  return {
    n: ts.length,
    p50Ms: m("p50Ms"),
    p90Ms: m("p90Ms"),
    p99Ms: m("p99Ms"),
    maxMs: m("maxMs"),
    cpuSeconds: m("cpuSeconds"),
    cpuPercentOfCore: m("cpuPercentOfCore"),
    peakRssMiB: m("peakRssMiB"),
    lostTotal: ts.reduce((a, t) => a + Number(t.lost), 0),
    duplicatesTotal: ts.reduce((a, t) => a + Number(t.duplicates), 0),
    writtenTotal: ts.reduce((a, t) => a + Number(t.written), 0),
  };
}

function markdown(res: {
  date: string;
  machine: ReturnType<typeof machine>;
  summary: ReturnType<typeof summarize>;
  loadRange: string;
}) {
  const s = res.summary;
  const yes = (b: boolean) => (b ? "met" : "**missed**");
  const L = [
    `Run ${res.date} on ${res.machine.nproc} × ${res.machine.cpuModel}, Node ${res.machine.node}, ${res.machine.fs} tmp; ` +
      `medians of ${REPS} interleaved repetitions; 1-min load average during the run ${res.loadRange}.`,
    "",
    "| workload | condition | lines/s | MB/s | CPU s | peak RSS MiB | delay p50 / p99 / max ms | missing 10 s after the writer stopped / duplicated |",
    "|---|---|---:|---:|---:|---:|---|---|",
    `| backlog ${(BACKLOG_LINES / 1e6).toLocaleString("en")}M lines, 4 files | ikontainer run → file | ${s.backlogAgent.linesPerSec.toLocaleString("en")} (${s.backlogAgent.linesPerSecFromFirstOutput.toLocaleString("en")} from the first output byte) | ${s.backlogAgent.mbPerSec} | ${s.backlogAgent.cpuSeconds} | ${s.backlogAgent.peakRssMiB} | | 0 / 0 (exact size) |`,
    `| | sed 's/$/TAG/' one-shot | ${s.backlogSed.linesPerSec.toLocaleString("en")} | ${s.backlogSed.mbPerSec} | ${s.backlogSed.cpuSeconds} | ${s.backlogSed.peakRssMiB} | | |`,
    `| live ${LIVE_RATE.toLocaleString("en")} lines/s, 2 files, ${LIVE_SECONDS} s, rename every ${ROTATE_SECONDS} s | ikontainer run → file | ${LIVE_RATE.toLocaleString("en")} | ${round((LIVE_RATE * 100) / 1e6, 1)} | ${s.liveAgent.cpuSeconds} (${s.liveAgent.cpuPercentOfCore}% of a core) | ${s.liveAgent.peakRssMiB} | ${s.liveAgent.p50Ms} / ${s.liveAgent.p99Ms} / ${s.liveAgent.maxMs} | ${s.liveAgent.lostTotal} / ${s.liveAgent.duplicatesTotal} of ${s.liveAgent.writtenTotal.toLocaleString("en")} (${s.liveAgent.n} runs) |`,
    `| | tail -F \\| sed -u per file | ${LIVE_RATE.toLocaleString("en")} | ${round((LIVE_RATE * 100) / 1e6, 1)} | ${s.liveTailSed.cpuSeconds} (${s.liveTailSed.cpuPercentOfCore}% of a core) | ${s.liveTailSed.peakRssMiB} | ${s.liveTailSed.p50Ms} / ${s.liveTailSed.p99Ms} / ${s.liveTailSed.maxMs} | ${s.liveTailSed.lostTotal} / ${s.liveTailSed.duplicatesTotal} of ${s.liveTailSed.writtenTotal.toLocaleString("en")} (${s.liveTailSed.n} runs) |`,
    `| | tail -F \\| stdbuf -oL sed per file | ${LIVE_RATE.toLocaleString("en")} | ${round((LIVE_RATE * 100) / 1e6, 1)} | ${s.liveTailStdbuf.cpuSeconds} (${s.liveTailStdbuf.cpuPercentOfCore}% of a core) | ${s.liveTailStdbuf.peakRssMiB} | ${s.liveTailStdbuf.p50Ms} / ${s.liveTailStdbuf.p99Ms} / ${s.liveTailStdbuf.maxMs} | ${s.liveTailStdbuf.lostTotal} / ${s.liveTailStdbuf.duplicatesTotal} of ${s.liveTailStdbuf.writtenTotal.toLocaleString("en")} (${s.liveTailStdbuf.n} runs) |`,
    `| 2,000 files × 50 lines | ikontainer run → file | (all out in ${s.files2000.allOutMs} ms) | | ${s.files2000.cpuSeconds} | ${s.files2000.peakRssMiB} (${s.files2000.rssAfterIdleMiB} idle after) | | files watched: ${s.files2000.filesWatched} |`,
    "",
    `Backlog ratio agent / sed: **${s.backlogRatioToSed}**. Start-up (spawn → "tailing" log line): ${s.startup.tailingMs} ms; ` +
      `\`ikontainer --help\`: ${s.startup.helpMs} ms (bare \`node -e 0\`: ${s.startup.nodeBareMs} ms).`,
    "",
    "| target | measured | |",
    "|---|---|---|",
    `| backlog ≥ ${TARGETS.backlogLinesPerSec.toLocaleString("en")} lines/s | ${s.backlogAgent.linesPerSec.toLocaleString("en")} lines/s | ${yes(s.targets.backlog.met)} |`,
    `| (backlog, counted from the first output byte: start-up excluded) | ${s.backlogAgent.linesPerSecFromFirstOutput.toLocaleString("en")} lines/s | ${yes(s.backlogAgent.linesPerSecFromFirstOutput >= TARGETS.backlogLinesPerSec)} |`,
    `| live p99 ≤ ${TARGETS.liveP99Ms} ms | ${s.liveAgent.p99Ms} ms | ${yes(s.targets.liveP99.met)} |`,
    `| peak RSS ≤ ${TARGETS.rss2000FilesMiB} MiB with 2,000 files | ${s.files2000.peakRssMiB} MiB | ${yes(s.targets.rss2000Files.met)} |`,
    `| start-up < ${TARGETS.startupMs} ms | ${s.startup.tailingMs} ms | ${yes(s.targets.startup.met)} |`,
    "",
  ];
  // Trials left out with --only give NaN rows: leave those rows out.
  return L.filter((line) => !line.includes("NaN")).join("\n");
}

async function main(): Promise<void> {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run npx tsc -p tsconfig.build.json`);
  fresh(WORK);
  const date = new Date().toISOString();
  const m = machine();
  process.stderr.write(`work folder ${WORK}; preparing inputs…\n`);
  const backlog = makeBacklog(join(WORK, "backlog-in"), BACKLOG_LINES);
  const many = makeManyFiles(join(WORK, "many-in"), 20, 100, 50);
  const small = makeBacklog(join(WORK, "small-in"), 40);
  const r = rng(Number(args.seed));
  const trials: Trial[] = [];
  let order = 0;
  try {
    for (let rep = 1; rep <= REPS; rep++) {
      for (const kind of shuffle(TRIALS, r)) {
        const t: Trial = {
          kind,
          rep,
          order: ++order,
          startedAt: new Date().toISOString(),
          loadavg: { before: loadavg() },
        };
        const dir = join(WORK, `${kind}-${rep}`);
        process.stderr.write(`rep ${rep}/${REPS} ${kind} (load ${t.loadavg.before[0]})… `);
        try {
          let res: Record<string, unknown>;
          if (kind === "backlog-agent") res = await backlogAgent(backlog, dir);
          else if (kind === "backlog-sed") res = await backlogSed(backlog, dir);
          else if (kind === "live-agent") res = await liveTrial("agent", dir);
          else if (kind === "live-tailsed") res = await liveTrial("tailsed", dir);
          else if (kind === "live-tailstdbuf") res = await liveTrial("tailstdbuf", dir);
          else if (kind === "files2000") res = await files2000(many, dir);
          else res = await startup(small.dir, dir);
          Object.assign(t, res);
          process.stderr.write(`${JSON.stringify(res)}\n`);
        } catch (e) {
          t.error = e instanceof Error ? e.message : String(e);
          process.stderr.write(`ERROR ${t.error}\n`);
        }
        t.loadavg.after = loadavg();
        trials.push(t);
        if (!args.keep) rmSync(dir, { recursive: true, force: true });
      }
    }
    let profile: unknown;
    if (PROFILE && TRIALS.includes("backlog-agent")) {
      process.stderr.write("profiled backlog run (--cpu-prof)… ");
      try {
        profile = await profiledBacklog(backlog, join(WORK, "profile"));
        process.stderr.write("done\n");
      } catch (e) {
        profile = { error: e instanceof Error ? e.message : String(e) };
        process.stderr.write(`ERROR ${JSON.stringify(profile)}\n`);
      }
    }
    const summary = summarize(trials);
    const loads = trials.flatMap((t) => [t.loadavg.before[0], t.loadavg.after?.[0] ?? t.loadavg.before[0]]);
    const loadRange = `${Math.min(...loads)}–${Math.max(...loads)}`;
    const result = {
      benchmark: "throughput",
      date,
      machine: m,
      options: {
        reps: REPS,
        quick: QUICK,
        backlogLines: BACKLOG_LINES,
        backlogFiles: BACKLOG_FILES,
        liveRate: LIVE_RATE,
        liveSeconds: LIVE_SECONDS,
        liveFiles: LIVE_FILES,
        rotateSeconds: ROTATE_SECONDS,
        trials: TRIALS,
        seed: Number(args.seed),
        agentNodeArgs: AGENT_NODE_ARGS,
      },
      loadavgRange: loadRange,
      summary,
      trials,
      profile,
    };
    const stamp = date.replace(/[:.]/g, "-");
    const resultsDir = join(ROOT, "bench/results");
    mkdirSync(resultsDir, { recursive: true });
    const jsonPath = join(resultsDir, `throughput-${stamp}.json`);
    writeFileSync(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
    const md = markdown({ date, machine: m, summary, loadRange });
    writeFileSync(join(resultsDir, `throughput-${stamp}.md`), md);
    process.stdout.write(`${md}\n${jsonPath}\n`);
  } finally {
    if (!args.keep) rmSync(WORK, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
