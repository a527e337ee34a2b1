/**
 * Node mode (issue 5): one agent reading 500 pods' CRI log files under a simulated /var/log/pods, beside the
 * single-folder agent on the same total volume (the same application lines, without CRI framing), in the
 * same run: one folder with one file, and one folder with 500 files (one per pod). Conditions are
 * interleaved, each repetition runs every condition once on freshly written data.
 *
 *   npm run build && npx tsc -p bench/tsconfig.json && node bench/.work/dist/bench/node-mode.js [--lines-per-pod 600] [--reps 3]
 *
 * Each run: the files are written first, then the agent starts (reads from the head) and is timed from
 * spawn until its /metrics say every line was accepted by the sink (`--output file:DIR`, append format).
 * CPU = utime+stime of the agent process (from /proc), RSS = its peak (VmHWM). Results:
 * bench/results/node-mode.json.
 *
 * Node flags (issue 13: V8 settings the Helm chart sets, checked against the memory limit):
 *   --flags NAME=FLAGS (repeatable), e.g. --flags default= --flags semi8=--max-semi-space-size=8: every condition
 *   runs once per flag set, named "condition [NAME]"; --only node|one|many keeps the named conditions only.
 *   With either option the result goes to bench/results/node-mode-<stamp>.json (node-mode.json stays the
 *   README's full run).
 *   --max-concurrent-reads 8,16,32: every condition also runs once per value of the agent's
 *   --max-concurrent-reads, named "condition [reads=N]" (issue 13: files read at once in the catch-up burst
 *   against peak RSS and lines/s, same build, interleaved).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { PodLogTree } from "../test/node/pod-logs.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, HERE.includes("/.work/dist/") ? "../../../.." : "..");
const CLI = join(ROOT, "dist/cli/main.js");
const TICK = 100; // USER_HZ on Linux

interface Run {
  condition: string;
  rep: number;
  lines: number;
  bytesOnDisk: number;
  files: number;
  seconds: number;
  /** Spawn until the initial scan opened every file ("tailing"); null when every line was out before that. */
  startupSeconds: number | null;
  linesPerSecond: number;
  cpuSeconds: number;
  cpuPercent: number;
  peakRssMiB: number;
  /** 1-minute load average when the run ended (the machine is shared). */
  loadavg1: number;
}

function ticksOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return Number(rest[11]) + Number(rest[12]);
}

function hwmKiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : 0;
}

function get(url: string): Promise<string> {
  return new Promise((res, rej) =>
    http
      .get(url, (r) => {
        let b = "";
        r.setEncoding("utf8");
        r.on("data", (c: string) => {
          b += c;
        });
        r.on("end", () => res(b));
      })
      .on("error", rej),
  );
}

async function measure(
  condition: string,
  rep: number,
  nodeFlags: string[],
  args: string[],
  lines: number,
  bytes: number,
  files: number,
) {
  const work = mkdtempSync(join(os.tmpdir(), "ikon-bench-run-"));
  const started = process.hrtime.bigint();
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...nodeFlags,
      CLI,
      "run",
      ...args,
      "--state-dir",
      join(work, "state"),
      "--output",
      `file:${join(work, "out")}`,
      "--svc",
      "bench",
      "--metrics-port",
      "0",
      "--metrics-host",
      "127.0.0.1",
      "--log-level",
      "info",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let err = "";
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const pid = child.pid!;
  let port = 0;
  let done = false;
  let cpuTicks = 0;
  let hwm = 0;
  let tailingAt = 0n;
  while (!done) {
    await new Promise((r) => setTimeout(r, 50));
    if (child.exitCode !== null) throw new Error(`agent exited: ${err}`);
    if (!port) {
      const m = /"port":(\d+),"msg":"serving \/metrics/.exec(err);
      if (m) port = Number(m[1]);
      continue;
    }
    const text = await get(`http://127.0.0.1:${port}/metrics`).catch(() => "");
    const m = /^ikontainer_lines_out_total\{[^}]*\} (\d+)/m.exec(text);
    cpuTicks = ticksOf(pid);
    hwm = hwmKiB(pid);
    if (!tailingAt && err.includes('"msg":"tailing"')) tailingAt = process.hrtime.bigint();
    if (m && Number(m[1]) >= lines) done = true;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  rmSync(work, { recursive: true, force: true });
  const cpuSeconds = cpuTicks / TICK;
  const run: Run = {
    condition,
    rep,
    lines,
    bytesOnDisk: bytes,
    files,
    seconds: round(seconds, 3),
    startupSeconds: tailingAt ? round(Number(tailingAt - started) / 1e9, 3) : null,
    linesPerSecond: Math.round(lines / seconds),
    cpuSeconds: round(cpuSeconds, 2),
    cpuPercent: round((100 * cpuSeconds) / seconds, 1),
    peakRssMiB: round(hwm / 1024, 1),
    loadavg1: round(os.loadavg()[0]!, 2),
  };
  console.log(JSON.stringify(run));
  return run;
}

const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "lines-per-pod": { type: "string", default: "600" },
      pods: { type: "string", default: "500" },
      reps: { type: "string", default: "3" },
      flags: { type: "string", multiple: true, default: [] },
      only: { type: "string", multiple: true, default: [] },
      "max-concurrent-reads": { type: "string" },
    },
  });
  const flagSets: Array<[string, string[]]> = values.flags.length
    ? values.flags.map((f) => {
        const i = f.indexOf("=");
        return [
          f.slice(0, i),
          f
            .slice(i + 1)
            .split(" ")
            .filter(Boolean),
        ];
      })
    : [["", []]];
  const ONLY_KEYS: Record<string, number> = { node: 0, one: 1, many: 2 };
  const readLimits: Array<number | undefined> = values["max-concurrent-reads"]
    ? values["max-concurrent-reads"].split(",").map(Number)
    : [undefined];
  const pods = Number(values.pods);
  const perPod = Number(values["lines-per-pod"]);
  const reps = Number(values.reps);
  const runs: Run[] = [];
  const du = (d: string) => {
    let n = 0;
    const walk = (p: string) => {
      for (const e of readdirSync(p, { withFileTypes: true })) {
        const q = join(p, e.name);
        if (e.isDirectory()) walk(q);
        else n += readFileSync(q).length;
      }
    };
    walk(d);
    return n;
  };
  const loadavgAtStart = os.loadavg().map((x) => round(x, 2));
  for (let rep = 1; rep <= reps; rep++) {
    // Fresh data for every repetition: the node tree and the same lines as plain text.
    const data = mkdtempSync(join(os.tmpdir(), "ikon-bench-data-"));
    const tree = new PodLogTree(join(data, "pods"), 60, false);
    const perPodPlain: string[] = [];
    for (let i = 0; i < pods; i++) {
      const p = tree.addPod(i, ["app"]);
      perPodPlain.push(`${tree.write(p, "app", perPod).join("\n")}\n`);
    }
    const lines = tree.count;
    mkdirSync(join(data, "one-file"));
    writeFileSync(join(data, "one-file", "app.log"), perPodPlain.join(""));
    mkdirSync(join(data, "many-files"));
    for (const [i, t] of perPodPlain.entries()) writeFileSync(join(data, "many-files", `pod-${i}.log`), t);
    perPodPlain.length = 0;
    const conditions: Array<[string, string[], string, number]> = [
      [
        "node mode: 500 pods, CRI files",
        ["--mode", "node", "--pod-log-dir", join(data, "pods")],
        join(data, "pods"),
        pods,
      ],
      ["folder agent: 1 file", ["--watch", join(data, "one-file")], join(data, "one-file"), 1],
      ["folder agent: 500 files", ["--watch", join(data, "many-files")], join(data, "many-files"), pods],
    ];
    const chosen = values.only.length ? values.only.map((o) => conditions[ONLY_KEYS[o]!]!) : conditions;
    const trials = chosen.flatMap((c) => flagSets.flatMap((f) => readLimits.map((r) => [c, f, r] as const)));
    // Rotate the order per repetition so no condition always runs first (page cache, CPU frequency).
    for (let k = 0; k < trials.length; k++) {
      const [[name, args, dir, files], [flagName, flags], reads] = trials[(k + rep) % trials.length]!;
      const tags = [flagName, reads === undefined ? "" : `reads=${reads}`].filter(Boolean).join(", ");
      const label = tags ? `${name} [${tags}]` : name;
      const readArgs = reads === undefined ? [] : ["--max-concurrent-reads", String(reads)];
      runs.push(await measure(label, rep, flags, [...args, ...readArgs], lines, du(dir), files));
    }
    rmSync(data, { recursive: true, force: true });
  }
  const summary = [...new Set(runs.map((r) => r.condition))].map((c) => {
    const rs = runs.filter((r) => r.condition === c);
    return {
      condition: c,
      lines: rs[0]!.lines,
      bytesOnDisk: rs[0]!.bytesOnDisk,
      files: rs[0]!.files,
      medianLinesPerSecond: median(rs.map((r) => r.linesPerSecond)),
      medianCpuSeconds: median(rs.map((r) => r.cpuSeconds)),
      medianCpuPercent: median(rs.map((r) => r.cpuPercent)),
      medianPeakRssMiB: median(rs.map((r) => r.peakRssMiB)),
      maxPeakRssMiB: Math.max(...rs.map((r) => r.peakRssMiB)),
    };
  });
  const out = {
    benchmark: "node-mode",
    date: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length,
      model: os.cpus()[0]?.model,
      memGiB: round(os.totalmem() / 2 ** 30, 1),
      node: process.version,
    },
    protocol: {
      pods,
      linesPerPod: `${perPod} written (+1 interleaved line per split line)`,
      reps,
      sink: "file:DIR, append format",
      timing:
        "spawn of the agent until ikontainer_lines_out_total reaches every line (catch-up read of pre-written files)",
      cpu: "utime+stime of the agent process",
      rss: "VmHWM of the agent process",
      ...(values.flags.length ? { nodeFlags: Object.fromEntries(flagSets) } : {}),
      ...(values["max-concurrent-reads"] ? { maxConcurrentReads: readLimits } : {}),
      loadavgAtStart,
      loadavgAtEnd: os.loadavg().map((x) => round(x, 2)),
    },
    summary,
    runs,
  };
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  const name =
    values.flags.length || values.only.length || values["max-concurrent-reads"]
      ? `node-mode-${out.date.replace(/[:.]/g, "-")}.json`
      : "node-mode.json";
  writeFileSync(join(ROOT, "bench/results", name), `${JSON.stringify(out, null, 2)}\n`);
  console.log(join(ROOT, "bench/results", name));
  console.table(summary);
}

await main();
