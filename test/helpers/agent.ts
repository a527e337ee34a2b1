import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitForCount } from "./progress.js";

// Overridable for bench scripts, which run compiled from another folder.
export const CLI = process.env.IKON_CLI ?? new URL("../../dist/cli/main.js", import.meta.url).pathname;
export const WRITER = process.env.IKON_WRITER ?? new URL("../fixtures/writer.mjs", import.meta.url).pathname;

export function tempDir(prefix = "ikon-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface AgentProcess {
  child: ChildProcess;
  stderr: () => string;
  stdout: () => string;
  /** Resolves when the agent logged `msg` (JSON log line); fails after `timeoutMs` without any new output. */
  waitForLog: (msg: string, timeoutMs?: number) => Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ChildProcess>();

/** Kills (by PID) every agent a test started and did not stop, e.g. after a failed assertion: call in afterEach. */
export function killStartedAgents(): void {
  for (const c of running) if (c.pid) c.kill("SIGKILL");
  running.clear();
}

/** Starts the built CLI; `opts.prefix` runs it under another command (e.g. `unshare … sh -c 'exec "$@"' sh`). */
export function startCli(args: string[], opts: SpawnOptions & { prefix?: string[] } = {}): AgentProcess {
  const { prefix = [], ...spawnOpts } = opts;
  const argv = [...prefix.slice(1), process.execPath, CLI, ...args];
  const child = spawn(prefix[0] ?? process.execPath, prefix.length ? argv : argv.slice(1), {
    stdio: ["ignore", "pipe", "pipe"],
    ...spawnOpts,
  });
  let err = "";
  let out = "";
  const listeners: Array<() => void> = [];
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
    for (const l of listeners) l();
  });
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  running.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  const waitForLog = (msg: string, timeoutMs = 15_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        for (const line of err.split("\n")) {
          if (!line.startsWith("{")) continue;
          try {
            const o = JSON.parse(line) as Record<string, unknown>;
            if (o.msg === msg) {
              clearTimeout(timer);
              resolve(o);
              return true;
            }
          } catch {
            // not a log line
          }
        }
        return false;
      };
      // Fails only when the agent has logged nothing for `timeoutMs` (a slow start on a loaded machine still logs).
      let timer: NodeJS.Timeout;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(
          () => reject(new Error(`no log "${msg}" and no other output for ${timeoutMs} ms; stderr:\n${err}`)),
          timeoutMs,
        );
      };
      arm();
      if (!check()) listeners.push(() => void (check() || arm()));
      void exited.then(() => {
        if (!check()) {
          clearTimeout(timer);
          reject(new Error(`agent exited before logging "${msg}"; stderr:\n${err}`));
        }
      });
    });
  return { child, stderr: () => err, stdout: () => out, waitForLog, exited };
}

/** Runs the CLI to completion. */
export async function runCli(
  args: string[],
  opts: SpawnOptions = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = startCli(args, opts);
  const { code } = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

export async function stopAgent(p: AgentProcess, signal: NodeJS.Signals = "SIGTERM") {
  p.child.kill(signal);
  return p.exited;
}

export function runWriter(
  args: Array<string | number>,
): Promise<{ lines: number; rotations: number; ms: number }> {
  const child = spawn(process.execPath, [WRITER, ...args.map(String)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  return new Promise((resolve, reject) =>
    child.once("exit", (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`writer exited ${code}`)),
    ),
  );
}

/** The append-format tag: CUID, svc, then a piece number and/or the partial mark (a piece, or a line cut by a truncation). */
export const TAG_RE =
  /\{"ikontainer_CUID":"([0-9a-f-]{36})","svc":"([^"]*)"(?:,"ikontainer_part":(\d+))?(,"ikontainer_partial":true)?\}$/;

export interface StampedLine {
  file: string;
  text: string;
  cuid: string;
  svc: string;
  part?: number;
  partial?: boolean;
}

/**
 * Reads every file under dir (recursively) as append-format lines: [{text, cuid, svc, part?, partial?}].
 * `writing`: the agent may be writing now, so a last line without its newline is a write in progress, not yet a
 * line (skipped). Without it, such a tail is a torn write and an error like any untagged line.
 */
export function readStamped(dir: string, opts: { writing?: boolean } = {}): StampedLine[] {
  const out: StampedLine[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else {
        const text = readFileSync(p, "latin1");
        const lines = text.split("\n");
        const tail = lines.pop(); // "" when the file ends with a newline
        if (tail && !opts.writing) throw new Error(`unterminated last line in ${p}: ${tail.slice(0, 200)}`);
        for (const l of lines) {
          const m = TAG_RE.exec(l);
          if (!m) throw new Error(`untagged line in ${p}: ${l.slice(0, 200)}`);
          const line: StampedLine = { file: p, text: l.slice(0, m.index), cuid: m[1]!, svc: m[2]! };
          if (m[3] !== undefined) line.part = Number(m[3]);
          if (m[4] !== undefined) line.partial = true;
          out.push(line);
        }
      }
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

/** Like readStamped, but a line caught half-written (the agent is mid-write) yields [] instead of throwing. */
export function readStampedSoFar(dir: string): ReturnType<typeof readStamped> {
  try {
    return readStamped(dir, { writing: true });
  } catch {
    return [];
  }
}

/** Number of complete lines in every file under dir (cheap progress check). */
export function countLines(dir: string): number {
  let n = 0;
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else {
        const b = readFileSync(p);
        for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, i + 1)) n++;
      }
    }
  };
  if (existsSync(dir)) walk(dir);
  return n;
}

/** Counts `seq=<n>` occurrences: exactly-once check helper. */
export function seqCounts(lines: Array<{ text: string }>, tag?: string): Map<number, number> {
  const counts = new Map<number, number>();
  for (const { text } of lines) {
    const m = /^seq=(\d+) (\S+) /.exec(text);
    if (!m || (tag && m[2] !== tag)) continue;
    const n = Number(m[1]);
    counts.set(n, (counts.get(n) ?? 0) + 1);
  }
  return counts;
}

export function exactlyOnceReport(counts: Map<number, number>, total: number) {
  let missing = 0;
  let dup = 0;
  const missingSample: number[] = [];
  for (let i = 0; i < total; i++) {
    const c = counts.get(i) ?? 0;
    if (c === 0) {
      missing++;
      if (missingSample.length < 10) missingSample.push(i);
    }
    if (c > 1) dup += c - 1;
  }
  return { missing, dup, missingSample };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls until fn() is truthy. */
export async function until<T>(fn: () => T | Promise<T>, timeoutMs = 20_000, stepMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error("condition not met in time");
    await sleep(stepMs);
  }
}

export interface SeqCheck {
  /** Lines per tag (the writer's total for that tag). */
  totals: Record<string, number>;
  /** Every line the writer wrote is this long with its newline (writer.mjs LINE_BYTES). */
  lineBytes: number;
}

export interface SeqReport {
  lines: number;
  lost: number;
  duplicated: number;
  lostSample: number[];
  dupSample: number[];
  /** Lines that are not exactly a written line (wrong shape or length, unknown tag, a piece or partial mark). */
  broken: string[];
}

/**
 * The strict exactly-once checker: every output line must be exactly one line the writer wrote
 * (`seq=<n> <tag> x…`, `lineBytes - 1` bytes, tagged as a whole line). Nothing is skipped: a broken, partial or
 * foreign line is reported in `broken`, each seq of each tag must appear exactly once.
 */
export function checkSeqLines(lines: StampedLine[], spec: SeqCheck): Record<string, SeqReport> {
  const counts = new Map<string, Map<number, number>>();
  const reports: Record<string, SeqReport> = {};
  const broken: string[] = [];
  for (const tag of Object.keys(spec.totals)) counts.set(tag, new Map());
  for (const l of lines) {
    const m = /^seq=(\d+) (\S+) (x+)$/.exec(l.text);
    const c = m ? counts.get(m[2]!) : undefined;
    if (!m || !c || l.text.length !== spec.lineBytes - 1 || l.part !== undefined || l.partial) {
      broken.push(`${l.file}: ${l.text.slice(0, 120)}${l.partial ? " [partial]" : ""}`);
      continue;
    }
    const n = Number(m[1]);
    c.set(n, (c.get(n) ?? 0) + 1);
  }
  for (const [tag, total] of Object.entries(spec.totals)) {
    const c = counts.get(tag)!;
    const r: SeqReport = { lines: total, lost: 0, duplicated: 0, lostSample: [], dupSample: [], broken };
    for (let i = 0; i < total; i++) {
      const k = c.get(i) ?? 0;
      if (k === 0) {
        r.lost++;
        if (r.lostSample.length < 10) r.lostSample.push(i);
      }
      if (k > 1) {
        r.duplicated += k - 1;
        if (r.dupSample.length < 10) r.dupSample.push(i);
      }
    }
    for (const n of c.keys()) if (n >= total) broken.push(`seq=${n} ${tag}: beyond the ${total} written`);
    reports[tag] = r;
  }
  return reports;
}

/** The seed for a randomised test: IKON_TEST_SEED, else fresh; printed so a failure can be replayed. */
export function testSeed(name: string): number {
  const seed = Number(process.env.IKON_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`[${name}] seed ${seed} (replay with IKON_TEST_SEED=${seed})`);
  return seed;
}

/** A writer.mjs process that runs until stopped (TOTAL 0) or its total. */
export function startWriter(args: Array<string | number>) {
  const child = spawn(process.execPath, [WRITER, ...args.map(String)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const done = new Promise<{ lines: number; rotations: number; ms: number }>((resolve, reject) =>
    child.once("exit", (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`writer exited ${code}`)),
    ),
  );
  return {
    done,
    stop: () => {
      child.kill("SIGTERM");
      return done;
    },
  };
}

/**
 * CPU contention: `n` busy `yes > /dev/null` processes, killed by PID by `stop()` or after `maxMs` at the latest.
 */
export function startCpuBurners(n: number, maxMs: number) {
  const kids = Array.from({ length: n }, () => spawn("yes", [], { stdio: "ignore" }));
  const stop = () => {
    clearTimeout(timer);
    for (const k of kids)
      if (k.exitCode === null && k.signalCode === null && k.pid) {
        try {
          process.kill(k.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
  };
  const timer = setTimeout(stop, maxMs);
  return { stop, pids: kids.map((k) => k.pid) };
}

/**
 * Total bytes of the files under dir (a cheap "did it grow" check); a folder not made yet counts 0, and entries
 * removed during the walk (e.g. fluentd's flushed buffer chunks) are skipped.
 */
export function outputBytes(dir: string): number {
  let n = 0;
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const name of names) {
      const st = statSync(join(d, name), { throwIfNoEntry: false });
      if (st?.isDirectory()) walk(join(d, name));
      else if (st) n += st.size;
    }
  };
  walk(dir);
  return n;
}

/** Waits until `progress()` reaches `target`, failing only when it stops moving for `stallMs`. */
export function untilProgress(
  progress: () => number,
  target: number,
  stallMs: number,
  what: string,
  stepMs = 200,
): Promise<number> {
  return waitForCount(progress, target, { idleMs: stallMs, stepMs, what });
}

/**
 * `kill -9` loop: each kill is counted only once the agent logged `tailing` and its output grew since it
 * started, then lands after a seeded random delay. Runs until `kills` such kills are done. Waits are on
 * progress (a stall fails), never fixed windows.
 */
export async function killLoop(o: {
  args: string[];
  out: string;
  kills: number;
  rng: () => number;
  maxDelayMs: number;
  stallMs?: number;
  onKill?: (n: number, delayMs: number) => void;
  /** Each killed agent's log (stderr), e.g. kept for diagnosis. */
  onAgentLog?: (stderr: string) => void;
}): Promise<{ kills: number; delays: number[] }> {
  const delays: number[] = [];
  const stallMs = o.stallMs ?? 30_000;
  while (delays.length < o.kills) {
    const agent = startCli(o.args);
    try {
      await agent.waitForLog("tailing", stallMs);
      const before = outputBytes(o.out);
      await untilProgress(() => outputBytes(o.out), before + 1, stallMs, "agent output before a kill");
      const delay = Math.floor(o.rng() * o.maxDelayMs);
      await sleep(delay);
      delays.push(delay);
      o.onKill?.(delays.length, delay);
    } finally {
      agent.child.kill("SIGKILL");
      await agent.exited;
      o.onAgentLog?.(agent.stderr());
    }
  }
  return { kills: delays.length, delays };
}

/** `run` tailing the folder `watch` into `file:<out>`, state in `state`, as service `svc`, plus `extra` flags. */
export const fileRunArgs = (watch: string, out: string, state: string, svc: string, ...extra: string[]) => [
  "run",
  "--watch",
  watch,
  "--output",
  `file:${out}`,
  "--state-dir",
  state,
  "--svc",
  svc,
  ...extra,
];

/** `run --mode node` over the pod log folder `pods`, state in `state`, to `output`, plus `extra` flags. */
export const nodeRunArgs = (pods: string, state: string, output: string, ...extra: string[]) => [
  "run",
  "--mode",
  "node",
  "--pod-log-dir",
  pods,
  "--state-dir",
  state,
  "--output",
  output,
  ...extra,
];

/** A test file's afterAll: stops the agents still running (SIGTERM, by PID) and removes its folders. */
export async function stopAndRemove(agents: AgentProcess[], dirs: string[]): Promise<void> {
  for (const a of agents) if (a.child.exitCode === null && a.child.signalCode === null) await stopAgent(a);
  for (const d of dirs) removeDir(d);
}
