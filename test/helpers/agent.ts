import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CLI = new URL("../../dist/cli/main.js", import.meta.url).pathname;
export const WRITER = new URL("../fixtures/writer.mjs", import.meta.url).pathname;

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
  /** Resolves when the agent logged `msg` (JSON log line). */
  waitForLog: (msg: string, timeoutMs?: number) => Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
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
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
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
      const timer = setTimeout(
        () => reject(new Error(`timeout waiting for log "${msg}"; stderr:\n${err}`)),
        timeoutMs,
      );
      if (!check()) listeners.push(() => void check());
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

export const TAG_RE =
  /\{"ikontainer_CUID":"([0-9a-f-]{36})","svc":"([^"]*)"(?:,"ikontainer_part":\d+(?:,"ikontainer_partial":true)?)?\}$/;

/** Reads every file under dir (recursively) as append-format lines: [{text, cuid, svc}]. */
export function readStamped(dir: string): Array<{ file: string; text: string; cuid: string; svc: string }> {
  const out: Array<{ file: string; text: string; cuid: string; svc: string }> = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else {
        const text = readFileSync(p, "latin1");
        const lines = text.split("\n");
        if (lines.at(-1) === "") lines.pop();
        for (const l of lines) {
          const m = TAG_RE.exec(l);
          if (!m) throw new Error(`untagged line in ${p}: ${l.slice(0, 200)}`);
          out.push({ file: p, text: l.slice(0, m.index), cuid: m[1]!, svc: m[2]! });
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
    return readStamped(dir);
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
