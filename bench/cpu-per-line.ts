/**
 * Agent CPU per line at steady low rates (issue 13 item 2): where the per-event floor lies.
 *
 *   npx tsc -p tsconfig.build.json && npx tsc -p bench/tsconfig.json \
 *     && node bench/.work/dist/bench/cpu-per-line.js [--reps 3] [--seconds 20] [--rates 20,200,400,2000,20000]
 *
 * Conditions, each at every rate, all (condition × rate) trials shuffled within each repetition:
 *   run       `ikontainer run --watch IN --output file:OUT`; a writer process appends RATE lines/s to IN/app.log
 *   exec      `ikontainer exec --output file:OUT -- node writer - RATE`: the writer is the agent's child and
 *             writes to its stdout (the agent also copies each line to its own stdout, here /dev/null)
 *   tail-sed  reference: `tail -F -n +1 IN/app.log | stdbuf -oL sed 's/$/TAG/' > OUT/app.log`, same writer
 *   node-watch  floor reference: a bare Node process with one fs.watch on IN and a no-op callback, same writer
 *             (what any Node agent pays per inotify event before doing anything); it writes nothing, so its
 *             µs/line divides by the lines written in the window (RATE × --seconds)
 *   run-fluentd  `ikontainer run --watch IN --output fluentd://127.0.0.1:PORT?ca=…` into real fluentd (TLS, shared
 *             key, acks, the agent's default on-disk buffer in front), same writer
 *   run-es    `ikontainer run --watch IN --output elasticsearch:http://127.0.0.1:PORT`, one index prefix per trial
 *             For these two, lines delivered in the window are the agent's own counter
 *             `ikontainer_lines_out_total` (--metrics-port) read at window start and end; the receivers are started
 *             once per bench run (bench/cpu-per-line-services.ts), and at the end of each trial (writer stopped,
 *             counter settled) the receiver's own count is compared with the counter and recorded in `check`.
 *   run:NAME  with --variant NAME=ARGS: `run` with extra agent flags, to find where the per-event cost goes
 *             (e.g. --conditions run --variant "delay100=--read-delay 100")
 * Every line is its own write(2) of 100 bytes. Measured: utime+stime (field 14+15 of /proc/PID/stat) of the agent
 * process only (not the writer, not reaped children; for tail-sed, tail + sed) over a window of --seconds that
 * starts --warm seconds after the first output byte, divided by the lines that reached OUT in the window
 * (output bytes / output line length). So start-up is excluded and a falling-behind agent is charged per line
 * it actually delivered. Clock ticks are 10 ms: at 20 lines/s over 20 s that is a 25 µs/line resolution.
 * The load average is recorded per trial: other work competes for the two cores, which inflates CPU time a
 * little (cache misses, more wake-ups with smaller batches), so figures from a busy machine are pessimistic.
 * Result: bench/results/cpu-per-line-<stamp>.json.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { BenchElasticsearch, BenchFluentd, freePort, linesOutTotal } from "./cpu-per-line-services.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, HERE.includes("/.work/dist/") ? "../../../.." : "..");
const CLI = join(ROOT, "dist/cli/main.js");
const WRITER = join(HERE, "cpu-per-line-writer.js");
const SVC = "bench";
/** Same length as the agent's append tag with a 36-character CUID, so the reference writes as many bytes. */
const TAG = JSON.stringify({ ikontainer_CUID: "01a20000-0000-7000-8000-000000000000", svc: SVC });
type Condition = string;

const { values: args } = parseArgs({
  options: {
    reps: { type: "string", default: "3" },
    seconds: { type: "string", default: "20" },
    warm: { type: "string", default: "2" },
    rates: { type: "string", default: "20,200,400,2000,20000" },
    conditions: { type: "string", default: "run,exec,tail-sed" },
    variant: { type: "string", multiple: true, default: [] },
  },
});
/** --variant NAME=ARGS: one more condition, `run` with these extra agent flags (e.g. "slow=--read-delay 100"). */
const VARIANTS = new Map<string, string[]>(
  args.variant.map((v) => {
    const at = v.indexOf("=");
    return [
      `run:${v.slice(0, at)}`,
      v
        .slice(at + 1)
        .split(/\s+/)
        .filter(Boolean),
    ] as const;
  }),
);
const CONDITIONS: Condition[] = [...args.conditions.split(","), ...VARIANTS.keys()];
const REPS = Number(args.reps);
const SECONDS = Number(args.seconds);
const WARM = Number(args.warm);
const RATES = args.rates.split(",").map(Number);
const WORK = join(os.tmpdir(), `ikon-bench-cpu-${process.pid}`);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/** utime+stime of one process (its own threads only), in seconds. */
function ownCpu(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}
function hwmMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? round(Number(m[1]) / 1024) : Number.NaN;
}
function dirBytes(dir: string): number {
  let sum = 0;
  for (const n of readdirSync(dir)) sum += statSync(join(dir, n)).size;
  return sum;
}
function firstLineBytes(dir: string): number {
  const name = readdirSync(dir).find((n) => statSync(join(dir, n)).size > 0);
  if (!name) throw new Error("no output");
  const text = readFileSync(join(dir, name), "utf8");
  return text.indexOf("\n") + 1;
}
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const killLater = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(killLater);
}

/** Resolves when the agent logs "tailing" (run is ready to see new files). */
function tailing(child: ChildProcess): Promise<void> {
  return new Promise((res, rej) => {
    let err = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (d: string) => {
      err += d;
      if (err.includes('"msg":"tailing"')) res();
    });
    child.once("exit", (c) => rej(new Error(`agent exited (${c}) before tailing: ${err.slice(-500)}`)));
  });
}

/** The receivers of the sink conditions, started in main() when a condition needs them. */
const services: { fluentd?: BenchFluentd; es?: BenchElasticsearch } = {};
const SINK_CONDITIONS = new Set(["run-fluentd", "run-es"]);

/** Resolves once the agent's sink accepted a first line; fails if none comes for 60 s. */
async function firstLineOut(metricsPort: number, procs: ChildProcess[]): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if ((await linesOutTotal(metricsPort)).total > 0) return;
    if (Date.now() > deadline) throw new Error("no line out within 60 s");
    if (procs.some((p) => p.exitCode !== null)) throw new Error("a process exited before any line out");
    await sleep(100);
  }
}

/** The counter once it stopped moving for 2 s (the writer is stopped), at most 60 s. */
async function settledLinesOut(metricsPort: number): Promise<number> {
  let last = -1;
  let since = Date.now();
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { total } = await linesOutTotal(metricsPort);
    if (total !== last) {
      last = total;
      since = Date.now();
    } else if (Date.now() - since >= 2000 || Date.now() > deadline) return total;
    await sleep(250);
  }
}

/** Waits until the receiver holds `expected` lines (fluentd flushes its file every second), at most 20 s. */
async function receivedLines(condition: Condition, trialTag: string, expected: number): Promise<number> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const n =
      condition === "run-fluentd"
        ? services.fluentd!.received(`ikontainer.${trialTag}`)
        : await services.es!.count(trialTag);
    if (n >= expected || Date.now() > deadline) return n;
    await sleep(500);
  }
}

/** Waits for the first output byte; fails if nothing comes for 30 s. */
async function firstOutput(out: string, procs: ChildProcess[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (dirBytes(out) === 0) {
    if (Date.now() > deadline) throw new Error("no output within 30 s");
    if (procs.some((p) => p.exitCode !== null)) throw new Error("a process exited before any output");
    await sleep(20);
  }
}

interface Trial {
  condition: Condition;
  rate: number;
  rep: number;
  seconds: number;
  linesOut: number;
  linesDue: number;
  cpuSeconds: number;
  usPerLine: number;
  peakRssMiB: number;
  loadavg1: number;
  /** Sink conditions: the receiver's own count against the agent's counter after the writer stopped. */
  check?: { agentLinesOutTotal: number; receiverLines: number; receiver: string; ok: boolean };
}

async function trial(condition: Condition, rate: number, rep: number, n: number): Promise<Trial> {
  const dir = join(WORK, `t${n}`);
  const [inDir, out, state] = ["in", "out", "state"].map((d) => join(dir, d)) as [string, string, string];
  for (const d of [inDir, out, state]) mkdirSync(d, { recursive: true });
  const writeFor = String(WARM + SECONDS + 15); // outlives the window even if the output starts late
  const procs: ChildProcess[] = [];
  let measured: number[] = [];
  let metricsPort = 0;
  let writer: ChildProcess | undefined;
  const trialTag = `bench-t${n}`;
  try {
    if (condition === "run" || VARIANTS.has(condition)) {
      const agent = spawn(
        process.execPath,
        [
          ...[CLI, "run", "--watch", inDir, "--output", `file:${out}`, "--state-dir", state, "--svc", SVC],
          ...(VARIANTS.get(condition) ?? []),
        ],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
      procs.push(agent);
      await tailing(agent);
      procs.push(
        spawn(process.execPath, [WRITER, join(inDir, "app.log"), String(rate), writeFor], {
          stdio: "ignore",
        }),
      );
      measured = [agent.pid!];
    } else if (SINK_CONDITIONS.has(condition)) {
      metricsPort = await freePort();
      const output =
        condition === "run-fluentd"
          ? [
              "--output",
              `fluentd://127.0.0.1:${services.fluentd!.port}?ca=${services.fluentd!.ca}`,
              "--fluentd-tag-prefix",
              `ikontainer.${trialTag}`, // the <match ikontainer.**> of the receiver
            ]
          : ["--output", `elasticsearch:${services.es!.url}`, "--es-index-prefix", trialTag];
      const agent = spawn(
        process.execPath,
        [
          ...[CLI, "run", "--watch", inDir, ...output, "--state-dir", state, "--svc", SVC],
          ...["--metrics-port", String(metricsPort), "--metrics-host", "127.0.0.1"],
        ],
        {
          stdio: ["ignore", "ignore", "pipe"],
          env: { ...process.env, IKONTAINER_FLUENTD_SHARED_KEY: services.fluentd?.sharedKey ?? "" },
        },
      );
      procs.push(agent);
      await tailing(agent);
      writer = spawn(process.execPath, [WRITER, join(inDir, "app.log"), String(rate), writeFor], {
        stdio: "ignore",
      });
      procs.push(writer);
      measured = [agent.pid!];
    } else if (condition === "exec") {
      const argv = [CLI, "exec", "--output", `file:${out}`, "--state-dir", state, "--svc", SVC, "--"];
      const agent = spawn(
        process.execPath,
        [...argv, process.execPath, WRITER, "-", String(rate), writeFor],
        {
          stdio: ["ignore", "ignore", "pipe"],
        },
      );
      agent.stderr!.resume();
      procs.push(agent);
      measured = [agent.pid!];
    } else if (condition === "tail-sed") {
      const file = join(inDir, "app.log");
      writeFileSync(file, "");
      const tail = spawn("tail", ["-F", "-n", "+1", file], { stdio: ["ignore", "pipe", "ignore"] });
      const outFd = openSync(join(out, "app.log"), "a");
      const sed = spawn("stdbuf", ["-oL", "sed", `s/$/${TAG}/`], {
        stdio: [tail.stdout, outFd, "ignore"],
        env: { ...process.env, LC_ALL: "C" },
      });
      closeSync(outFd);
      procs.push(tail, sed);
      procs.push(spawn(process.execPath, [WRITER, file, String(rate), writeFor], { stdio: "ignore" }));
      measured = [tail.pid!, sed.pid!];
    } else if (condition === "node-watch") {
      const file = join(inDir, "app.log");
      writeFileSync(file, "");
      const watchOnly = `require("node:fs").watch(${JSON.stringify(inDir)}, () => {}); console.log("watching");`;
      const w = spawn(process.execPath, ["-e", watchOnly], { stdio: ["ignore", "pipe", "ignore"] });
      procs.push(w);
      await new Promise<void>((r) => w.stdout!.once("data", () => r()));
      procs.push(spawn(process.execPath, [WRITER, file, String(rate), writeFor], { stdio: "ignore" }));
      measured = [w.pid!];
    } else throw new Error(`unknown condition ${condition}`);
    const sink = SINK_CONDITIONS.has(condition);
    if (condition === "node-watch")
      await sleep(500); // no output to wait for: the writer's first lines
    else if (sink) await firstLineOut(metricsPort, procs);
    else await firstOutput(out, procs);
    await sleep(WARM * 1000);
    // sink conditions: the counter is read before and after the CPU sample, so the scrape is outside the window
    const out0 = sink ? (await linesOutTotal(metricsPort)).total : dirBytes(out);
    const cpu0 = measured.reduce((s, p) => s + ownCpu(p), 0);
    await sleep(SECONDS * 1000);
    const cpu1 = measured.reduce((s, p) => s + ownCpu(p), 0);
    const out1 = sink ? (await linesOutTotal(metricsPort)).total : dirBytes(out);
    const linesOut =
      condition === "node-watch"
        ? rate * SECONDS
        : sink
          ? out1 - out0
          : Math.round((out1 - out0) / firstLineBytes(out));
    const peakRssMiB = hwmMiB(measured[measured.length - 1]!);
    const loadavg1 = round(os.loadavg()[0]!, 2);
    let check: Trial["check"];
    if (sink) {
      await stop(writer!);
      const agentLinesOutTotal = await settledLinesOut(metricsPort);
      const receiverLines = await receivedLines(condition, trialTag, agentLinesOutTotal);
      check = {
        agentLinesOutTotal,
        receiverLines,
        receiver:
          condition === "run-fluentd" ? "fluentd out_file lines" : "Elasticsearch _count after _refresh",
        ok: receiverLines === agentLinesOutTotal,
      };
      if (condition === "run-es") await services.es!.drop(trialTag);
    }
    return {
      condition,
      rate,
      rep,
      seconds: SECONDS,
      linesOut,
      linesDue: rate * SECONDS,
      cpuSeconds: round(cpu1 - cpu0, 2),
      usPerLine: round(((cpu1 - cpu0) * 1e6) / linesOut, 2),
      peakRssMiB,
      loadavg1,
      ...(check ? { check } : {}),
    };
  } finally {
    for (const p of [...procs].reverse()) await stop(p);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  const trials: Trial[] = [];
  const started = new Date().toISOString();
  const loadBefore = os.loadavg();
  let n = 0;
  const servicePids: Record<string, number | undefined> = {};
  // an interrupted run still stops its receivers (the agents and writers die with their parent's pipes)
  for (const sig of ["SIGINT", "SIGTERM"] as const)
    process.once(sig, () => {
      const fluentdPid = services.fluentd?.pid();
      if (fluentdPid) process.kill(fluentdPid, "SIGTERM");
      services.es?.stopSync();
      rmSync(WORK, { recursive: true, force: true });
      process.exit(130);
    });
  try {
    if (CONDITIONS.includes("run-fluentd")) {
      services.fluentd = new BenchFluentd(join(WORK, "fluentd"), await freePort());
      await services.fluentd.start();
      servicePids.fluentd = services.fluentd.pid();
      console.error(`fluentd on ${services.fluentd.port} (pid ${servicePids.fluentd})`);
    }
    if (CONDITIONS.includes("run-es")) {
      services.es = new BenchElasticsearch(ROOT);
      await services.es.start(await freePort());
      servicePids.elasticsearch = services.es.pid();
      console.error(`Elasticsearch at ${services.es.url} (pid ${servicePids.elasticsearch})`);
    }
    for (let rep = 0; rep < REPS; rep++) {
      const order = CONDITIONS.flatMap((c) => RATES.map((r) => [c, r] as const)).sort(
        () => Math.random() - 0.5,
      );
      for (const [c, r] of order) {
        const t = await trial(c, r, rep, n++);
        trials.push(t);
        console.log(JSON.stringify(t));
      }
    }
  } finally {
    if (services.fluentd) await services.fluentd.stop();
    services.es?.stopSync();
    rmSync(WORK, { recursive: true, force: true });
  }
  const summary = CONDITIONS.map((c) => ({
    condition: c,
    byRate: RATES.map((r) => {
      const ts = trials.filter((t) => t.condition === c && t.rate === r);
      const us = ts.map((t) => t.usPerLine);
      return {
        rate: r,
        medianUsPerLine: round(median(us), 2),
        minUsPerLine: Math.min(...us),
        maxUsPerLine: Math.max(...us),
        medianCpuPercent: round(median(ts.map((t) => (t.cpuSeconds / t.seconds) * 100)), 2),
        deliveredFraction: round(median(ts.map((t) => t.linesOut / t.linesDue)), 3),
      };
    }),
  }));
  // Each agent condition's median over the reference's median at the same rate (when the reference ran).
  const medianAt = (c: Condition, r: number) =>
    summary.find((s) => s.condition === c)?.byRate.find((b) => b.rate === r)?.medianUsPerLine;
  const agentOverRef = Object.fromEntries(
    RATES.map((r) => {
      const ref = medianAt("tail-sed", r);
      const ratios = CONDITIONS.filter((c) => c !== "tail-sed").map((c) => {
        const us = medianAt(c, r);
        return [c, ref && us !== undefined ? round(us / ref, 2) : null] as const;
      });
      return [r, Object.fromEntries(ratios)];
    }),
  );
  const loads = trials.map((t) => t.loadavg1);
  const result = {
    benchmark: "cpu-per-line",
    date: started,
    node: process.version,
    commit: execFileSync("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim(),
    cpus: os.cpus().length,
    reps: REPS,
    windowSeconds: SECONDS,
    warmSeconds: WARM,
    lineBytes: 100,
    note: "agent process only (utime+stime); machine shared with other work: see loadavg, figures are pessimistic",
    loadavg: {
      before: loadBefore,
      after: os.loadavg(),
      trialMin: Math.min(...loads),
      trialMedian: median(loads),
      trialMax: Math.max(...loads),
    },
    targets: {
      runFileUsPerLineAt400PerAgent: 10,
      execUsPerLineAt400PerAgent: 20,
      runFluentdUsPerLineAt400PerAgent: 20,
      runEsUsPerLineAt400PerAgent: 20,
    },
    receivers: {
      fluentd: services.fluentd
        ? "fluentd 1.16.11 in_forward (TLS, shared key, acks) from deploy/'s fluent.conf, out_file; the agent's default on-disk buffer in front"
        : undefined,
      elasticsearch: services.es ? "single node from scripts/elasticsearch.sh on loopback" : undefined,
      pids: servicePids,
    },
    checksFailed: trials.filter((t) => t.check && !t.check.ok).length,
    summary,
    agentOverReference: agentOverRef,
    trials,
  };
  const outFile = join(ROOT, "bench/results", `cpu-per-line-${started.replace(/[:.]/g, "-")}.json`);
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify({ summary, agentOverRef, loadavg: result.loadavg }, null, 2));
  console.log(outFile);
}

await main();
