/**
 * Peak memory of an idle sidecar under V8 settings a small container would set (issue 13 item 1), beside bare
 * `node -e` in the same run, and what each setting costs on a backlog, beside one-shot sed in the same run:
 *
 *   npx tsc -p tsconfig.build.json && npx tsc -p bench/tsconfig.json \
 *     && node scripts/bundle.mjs \
 *     && node bench/.work/dist/bench/sidecar-memory.js [--reps 5] [--backlog-reps 3] [--backlog-lines 1000000] \
 *          [--settings default,semi8] [--builds dist,bundle]
 *
 * Builds of the agent: dist (tsc output, one file per module) and bundle (scripts/bundle.mjs: the esbuild bundle
 * the image runs, dist-bundle/cli/main.js); both run from this checkout's node_modules. `--builds NAME=PATH` adds
 * another (say a bundle of an older revision, for an A/B in the same run).
 *
 * Settings (node options, the same for `node -e` and for the agent):
 *   default           none
 *   semi1             --max-semi-space-size=1 (young generation 1 MiB per semi-space instead of up to 16)
 *   semi2, semi4, semi8  --max-semi-space-size=2 / 4 / 8 (in between)
 *   old64             --max-old-space-size=64
 *   semi1-old64       both
 *   optsize           --optimize-for-size
 *   lite              --lite-mode (no optimizing compiler: only to show what memory it saves and what it costs)
 * Idle: bare `node -e` kept alive HOLD ms, and an idle `ikontainer run` (one empty watched folder, fresh state
 * dir) held HOLD ms after its "tailing" log line; peak RSS = VmHWM from /proc/PID/status (the whole process,
 * start-up included, which is what a container memory limit sees). Conditions shuffled per repetition.
 * Backlog: N lines of 100 bytes in 4 files already there; `run --watch IN --output file:OUT` from spawn until the
 * output holds every line (exact byte count), per setting, and one-shot `sed 's/$/TAG/'` over the same files
 * (TAG as long as the agent's tag); lines/s, ratio to sed of the same repetition, peak RSS.
 * Result: bench/results/sidecar-memory-<stamp>.json.
 */
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { stopChild } from "./app/proc.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, HERE.includes("/.work/dist/") ? "../../../.." : "..");
const BUILDS: Record<string, string> = {
  dist: join(ROOT, "dist/cli/main.js"),
  bundle: join(ROOT, "dist-bundle/cli/main.js"),
};
const SVC = "bench";
const TAG = JSON.stringify({ ikontainer_CUID: "01a20000-0000-7000-8000-000000000000", svc: SVC });
const HOLD_MS = 2_000;
const SETTINGS: Record<string, string[]> = {
  default: [],
  semi1: ["--max-semi-space-size=1"],
  semi2: ["--max-semi-space-size=2"],
  semi4: ["--max-semi-space-size=4"],
  semi8: ["--max-semi-space-size=8"],
  old64: ["--max-old-space-size=64"],
  "semi1-old64": ["--max-semi-space-size=1", "--max-old-space-size=64"],
  optsize: ["--optimize-for-size"],
  lite: ["--lite-mode"],
};

const { values: args } = parseArgs({
  options: {
    reps: { type: "string", default: "5" },
    "backlog-reps": { type: "string", default: "3" },
    "backlog-lines": { type: "string", default: "1000000" },
    settings: { type: "string" },
    builds: { type: "string", default: "dist,bundle" },
  },
});
/** --settings a,b: only these settings (default: all). */
const CHOSEN = args.settings ? args.settings.split(",") : Object.keys(SETTINGS);
// A build may also be given as NAME=PATH (e.g. a bundle of another revision, for an A/B in the same run).
const CHOSEN_BUILDS = args.builds.split(",").map((b) => {
  const [name, path] = b.split("=") as [string, string | undefined];
  if (path) BUILDS[name] = resolve(path);
  return name;
});
for (const b of CHOSEN_BUILDS)
  if (!BUILDS[b] || !existsSync(BUILDS[b]!)) throw new Error(`no build ${b} (${BUILDS[b]})`);
const REPS = Number(args.reps);
const BACKLOG_REPS = Number(args["backlog-reps"]);
const BACKLOG_LINES = Number(args["backlog-lines"]);
const WORK = join(os.tmpdir(), `ikon-bench-sidecar-mem-${process.pid}`);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const shuffle = <T>(xs: T[]) => [...xs].sort(() => Math.random() - 0.5);
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
function memMiB(pid: number): { hwm: number; rss: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)![1]);
    return { hwm: round(kb("VmHWM") / 1024), rss: round(kb("VmRSS") / 1024) };
  } catch {
    return undefined;
  }
}
function cpuSeconds(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}
function dirBytes(dir: string): number {
  let sum = 0;
  for (const n of readdirSync(dir)) sum += statSync(join(dir, n)).size;
  return sum;
}
function fresh(dir: string): string {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}
function agentArgs(build: string, flags: string[], watch: string, state: string, out?: string): string[] {
  const a = [...flags, BUILDS[build]!, "run", "--watch", watch, "--state-dir", state, "--svc", SVC];
  return out ? [...a, "--output", `file:${out}`] : a;
}

/** Peak and current RSS of a process sampled just before it is stopped. */
async function idle(
  kind: "bare" | "agent",
  build: string,
  flags: string[],
  n: number,
): Promise<{ hwm: number; rss: number }> {
  const dir = fresh(join(WORK, `idle-${n}`));
  mkdirSync(join(dir, "logs"));
  const argv =
    kind === "bare"
      ? [...flags, "-e", `setTimeout(() => {}, ${HOLD_MS + 5_000})`]
      : agentArgs(build, flags, join(dir, "logs"), join(dir, "state"));
  const child = spawn(process.execPath, argv, { stdio: ["ignore", "ignore", "pipe"] });
  try {
    let err = "";
    child.stderr!.setEncoding("utf8");
    const ready =
      kind === "bare"
        ? Promise.resolve()
        : new Promise<void>((res, rej) => {
            child.stderr!.on("data", (d: string) => {
              err += d;
              if (err.includes('"msg":"tailing"')) res();
            });
            child.once("exit", (c) => rej(new Error(`agent exited (${c}): ${err.slice(-400)}`)));
          });
    await ready;
    await sleep(HOLD_MS);
    const m = memMiB(child.pid!);
    if (!m) throw new Error(`${kind} ${flags.join(" ")} ended early: ${err.slice(-400)}`);
    return m;
  } finally {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

function makeBacklog(dir: string): { files: string[]; bytes: number } {
  fresh(dir);
  const files: string[] = [];
  const per = Math.ceil(BACKLOG_LINES / 4);
  let bytes = 0;
  for (let k = 0; k < 4; k++) {
    const lines: string[] = [];
    for (let i = 0; i < per && k * per + i < BACKLOG_LINES; i++) {
      lines.push(
        `${`seq=${String(k * per + i).padStart(10, "0")} level=info msg="request served" `.padEnd(99, "x")}\n`,
      );
    }
    const f = join(dir, `app${k}.log`);
    writeFileSync(f, lines.join(""));
    files.push(f);
    bytes += lines.length * 100;
  }
  return { files, bytes };
}

interface BacklogRun {
  seconds: number;
  linesPerSec: number;
  cpuSeconds: number;
  peakRssMiB: number;
}

async function backlogAgent(
  build: string,
  flags: string[],
  input: string,
  bytes: number,
  n: number,
): Promise<BacklogRun> {
  const dir = fresh(join(WORK, `backlog-${n}`));
  const out = fresh(join(dir, "out"));
  const expected = bytes + BACKLOG_LINES * TAG.length;
  const t0 = performance.now();
  const child = spawn(process.execPath, agentArgs(build, flags, input, join(dir, "state"), out), {
    stdio: ["ignore", "ignore", "ignore"],
  });
  try {
    let lastBytes = 0;
    let lastProgress = performance.now();
    let peak = 0;
    for (;;) {
      const b = dirBytes(out);
      peak = Math.max(peak, memMiB(child.pid!)?.hwm ?? 0);
      if (b >= expected) break;
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`agent ${flags} exited: ${b}/${expected}`);
      if (b > lastBytes) [lastBytes, lastProgress] = [b, performance.now()];
      else if (performance.now() - lastProgress > 60_000)
        throw new Error(`no progress for 60 s at ${b}/${expected}`);
      await sleep(5);
    }
    const seconds = (performance.now() - t0) / 1000;
    const final = dirBytes(out);
    if (final !== expected) throw new Error(`agent output ${final} bytes, expected ${expected}`);
    return {
      seconds: round(seconds, 3),
      linesPerSec: Math.round(BACKLOG_LINES / seconds),
      cpuSeconds: round(cpuSeconds(child.pid!), 2),
      peakRssMiB: Math.max(peak, memMiB(child.pid!)?.hwm ?? 0),
    };
  } finally {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function backlogSed(files: string[], n: number): Promise<BacklogRun> {
  const out = fresh(join(WORK, `sed-${n}`));
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, not a JS template
  const script = 'for f in "$@"; do sed "s/\\$/$TAG/" "$f" > "$OUT/${f##*/}"; done';
  const t0 = performance.now();
  const child = spawn("sh", ["-c", script, "sh", ...files], {
    stdio: "ignore",
    env: { ...process.env, TAG, OUT: out, LC_ALL: "C" },
  });
  const [code] = (await once(child, "exit")) as [number | null];
  const seconds = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`sed exited with ${code}`);
  rmSync(out, { recursive: true, force: true });
  return {
    seconds: round(seconds, 3),
    linesPerSec: Math.round(BACKLOG_LINES / seconds),
    cpuSeconds: Number.NaN,
    peakRssMiB: Number.NaN,
  };
}

async function main(): Promise<void> {
  fresh(WORK);
  const started = new Date().toISOString();
  const loads: number[] = [];
  let n = 0;
  try {
    // ---- idle
    const idleSamples: Record<string, Array<{ hwm: number; rss: number }>> = {};
    for (let r = 0; r < REPS; r++) {
      const conds = CHOSEN.flatMap((s) => [`bare:${s}`, ...CHOSEN_BUILDS.map((b) => `agent-${b}:${s}`)]);
      for (const c of shuffle(conds)) {
        const [who, setting] = c.split(":") as [string, string];
        const build = who.replace(/^agent-/, "");
        loads.push(os.loadavg()[0]!);
        const got = await idle(who === "bare" ? "bare" : "agent", build, SETTINGS[setting]!, n++);
        idleSamples[c] = [...(idleSamples[c] ?? []), got];
      }
    }
    const idleSummary = Object.fromEntries(
      Object.entries(idleSamples).map(([c, xs]) => [
        c,
        { peakMiB: round(median(xs.map((x) => x.hwm))), rssMiB: round(median(xs.map((x) => x.rss))) },
      ]),
    );
    console.log(JSON.stringify(idleSummary, null, 2));
    // ---- backlog
    const input = join(WORK, "backlog-in");
    const { files, bytes } = makeBacklog(input);
    const backlog: Record<string, Array<BacklogRun & { overSed: number; rep: number }>> = {};
    for (let r = 0; r < BACKLOG_REPS; r++) {
      const sedRun = await backlogSed(files, n++);
      backlog.sed = [...(backlog.sed ?? []), { ...sedRun, overSed: 1, rep: r }];
      for (const bs of shuffle(CHOSEN_BUILDS.flatMap((b) => CHOSEN.map((x) => `${b}:${x}`)))) {
        const [b, x] = bs.split(":") as [string, string];
        const s = bs;
        loads.push(os.loadavg()[0]!);
        const a = await backlogAgent(b, SETTINGS[x]!, input, bytes, n++);
        const overSed = round(a.linesPerSec / sedRun.linesPerSec, 2);
        backlog[s] = [...(backlog[s] ?? []), { ...a, overSed, rep: r }];
        console.log(s, JSON.stringify(a), round(a.linesPerSec / sedRun.linesPerSec, 2));
      }
    }
    const backlogSummary = Object.fromEntries(
      Object.entries(backlog).map(([s, xs]) => [
        s,
        {
          linesPerSec: Math.round(median(xs.map((x) => x.linesPerSec))),
          overSed: round(median(xs.map((x) => x.overSed)), 2),
          cpuSeconds: round(median(xs.map((x) => x.cpuSeconds)), 2),
          peakRssMiB: round(median(xs.map((x) => x.peakRssMiB))),
          maxPeakRssMiB: Math.max(...xs.map((x) => x.peakRssMiB)),
        },
      ]),
    );
    const result = {
      benchmark: "sidecar-memory",
      date: started,
      node: process.version,
      commit: execFileSync("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim(),
      cpus: os.cpus().length,
      settings: Object.fromEntries(CHOSEN.map((s) => [s, SETTINGS[s]])),
      builds: Object.fromEntries(CHOSEN_BUILDS.map((b) => [b, BUILDS[b]!.slice(ROOT.length + 1)])),
      reps: REPS,
      holdMs: HOLD_MS,
      backlog: { reps: BACKLOG_REPS, lines: BACKLOG_LINES, lineBytes: 100, files: 4 },
      note: "machine shared with other work (see loadavg1): memory is insensitive to it, lines/s is not; ratios to sed are per repetition",
      loadavg1: {
        min: round(Math.min(...loads), 2),
        median: round(median(loads), 2),
        max: round(Math.max(...loads), 2),
      },
      targets: { idlePeakMiB: 48, backlogOverSed: 0.7 },
      idleSummary,
      backlogSummary,
      idleSamples,
      backlogRuns: backlog,
    };
    const outFile = join(ROOT, "bench/results", `sidecar-memory-${started.replace(/[:.]/g, "-")}.json`);
    writeFileSync(outFile, `${JSON.stringify(result, null, 2)}\n`);
    console.log(JSON.stringify({ idleSummary, backlogSummary, loadavg1: result.loadavg1 }, null, 2));
    console.log(outFile);
  } finally {
    rmSync(WORK, { recursive: true, force: true });
  }
}

await main();
