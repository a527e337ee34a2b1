/**
 * The overhead benchmark (issue 6): the paper's experiment on this machine, with this project's agent.
 *
 *   npm run bench:overhead                 full protocol: 100 and 500 req/s, 60 s, 5 repetitions, Locust
 *   npm run bench:overhead -- --quick      smoke: 10 s, 1 repetition
 *   npm run bench:overhead -- --help       every option (reduced protocols, conditions, load tool)
 *   npm run bench:overhead -- --rates 500 --reps 10 --duration 30s --conditions none,file,file-poll
 *
 * Conditions, interleaved in one run (each (repetition, rate) block runs every condition once, in a shuffled
 * order, each on a freshly started app): no agent; `ikontainer run` per service with the file sink (file-poll:
 * the same with `--watcher poll --poll-interval 1s`), with the
 * fluentd sink through real fluentd into Elasticsearch (the paper's path: agent → fluentd → Elasticsearch, with
 * the fluent.conf deploy/ ships, started per trial by scripts/fluentd.sh), with the Elasticsearch sink (real
 * Elasticsearch via scripts/elasticsearch.sh); `ikontainer exec` per service; the paper's mechanism
 * (bench/baselines/paper-agent.sh).
 * Results: bench/results/overhead-<stamp>.json, .md (table), .svg (chart) and overhead-<stamp>/ (Locust CSVs).
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  copyFileSync,
  cpSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { parseDuration } from "../src/config/units.js";
import { logsIndexTemplate } from "../src/sinks/elasticsearch-schema.js";
import { FLUENTD_SCRIPT, RealFluentd } from "../test/fixtures/fluentd.js";
import {
  freePort,
  type RunningApp,
  runningServices,
  SERVICES,
  type Service,
  startApp,
  type Wrap,
  waitExit,
} from "./app/launch.js";
import { AgentMeter } from "./app/proc.js";
import { account, countLine, type LineAccount, newTally, type Tally, tallyDir } from "./app/tally.js";
import { exactSummary, locustStatsCsv, runLoad } from "./loadgen.js";

const HERE = dirname(fileURLToPath(import.meta.url));
/** Repo root, both from bench/ (sources) and bench/.work/dist/bench/ (compiled). */
const ROOT = resolve(HERE, HERE.includes("/.work/dist/") ? "../../../.." : "..");
const BUILT_CLI = join(ROOT, "dist/cli/main.js");
/** The agent under test: a snapshot of dist/ taken at the start of the run (others may rebuild dist/ meanwhile). */
let CLI = BUILT_CLI;
const LOCUST = "/usr/bin/locust";
const PAPER_SCRIPT = join(ROOT, "bench/baselines/paper-agent.sh");
const LOADGEN_JS = join(HERE, "loadgen.js");

/** The paper's figures (Iijima & Kushida, §6.1): Istio vs Istio + IKontainer on two 4-vCPU VMs. */
const PAPER = {
  100: { p50Without: 14, p50With: 16, overhead: 16 / 14 - 1, note: "median 14 → 16 ms" },
  500: {
    p50Without: 955.3,
    p50With: 1082.6,
    overhead: 0.133,
    note: "medians 955.3 / 1082.6 ms, reported as 13.3% overhead",
  },
} as const;

export const CONDITIONS = ["none", "file", "file-poll", "fluentd", "elasticsearch", "exec", "paper"] as const;
export type Condition = (typeof CONDITIONS)[number];

const LABELS: Record<Condition | "none-loadgen", string> = {
  none: "no agent",
  file: "agent (run) → file",
  "file-poll": "agent (run --watcher poll, 1 s) → file",
  fluentd: "agent (run) → fluentd → Elasticsearch",
  elasticsearch: "agent (run) → Elasticsearch",
  exec: "agent (exec) → file",
  paper: "paper's script",
  "none-loadgen": "no agent (our loadgen)",
};

interface Options {
  rates: number[];
  reps: number;
  durationMs: number;
  warmupMs: number;
  conditions: Condition[];
  load: "locust" | "loadgen";
  agreement: boolean;
  out: string;
  quick: boolean;
  keep: boolean;
  seed: number;
  /** Nice value for every process of a trial (app, agents, load); 0 = unchanged. */
  nice: number;
}

interface LoadSummary {
  tool: string;
  count: number;
  failures: number;
  steadyCount: number;
  steadyFailures: number;
  rps: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
  mean: number | null;
  perSecond?: { second: number; count: number; p50: number; p99: number }[];
  locust?: Record<string, number>;
}

interface TrialResult {
  condition: Condition | "none-loadgen";
  rate: number;
  rep: number;
  order: number;
  startedAt: string;
  /** 1-minute load average of the machine before and after the trial (other work on the machine shows here). */
  loadavg?: [number, number];
  tool: string;
  load?: LoadSummary;
  csv?: string[];
  agent?: { cpuSeconds: number; cpuSecondsUnderLoad: number; peakRssMiB: number; maxAgentRssMiB: number };
  lines?: LineAccount;
  /** Seconds from the end of the load until every written line was tagged (or the wait gave up). */
  drainSeconds?: number;
  error?: string;
}

const log = (msg: string) =>
  process.stderr.write(`[overhead ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------- receivers

/** A real single-node Elasticsearch, started once per run by scripts/elasticsearch.sh. */
class Elasticsearch {
  port = 0;
  dir = "";
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(workDir: string): Promise<void> {
    this.port = await freePort();
    this.dir = join(workDir, "es-node");
    mkdirSync(this.dir, { recursive: true });
    execFileSync(join(ROOT, "scripts/elasticsearch.sh"), ["start", String(this.port), this.dir], {
      stdio: ["ignore", "inherit", "inherit"],
    });
  }

  async count(prefix: string): Promise<number> {
    await fetch(`${this.url}/${prefix}*/_refresh`, { method: "POST" });
    const r = await fetch(`${this.url}/${prefix}*/_count`);
    if (!r.ok) return 0;
    return ((await r.json()) as { count: number }).count;
  }

  /** Every document, through the scroll API (a consistent snapshot across shards and daily indices). */
  async tally(prefix: string): Promise<Tally> {
    const t = newTally();
    await fetch(`${this.url}/${prefix}*/_refresh`, { method: "POST" });
    type Page = { _scroll_id?: string; hits: { hits: { _source: Record<string, string> }[] } };
    const post = async (path: string, body: unknown): Promise<Page | undefined> => {
      const r = await fetch(`${this.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return r.ok ? ((await r.json()) as Page) : undefined;
    };
    let page = await post(`/${prefix}*/_search?scroll=2m`, {
      size: 10000,
      _source: ["message", "svc", "ikontainer_CUID"],
      sort: ["_doc"],
    });
    const ids: string[] = [];
    while (page && page.hits.hits.length > 0) {
      for (const h of page.hits.hits)
        countLine(t, h._source.message ?? "", h._source.svc, h._source.ikontainer_CUID);
      if (!page._scroll_id) break;
      ids.push(page._scroll_id);
      page = await post("/_search/scroll", { scroll: "2m", scroll_id: page._scroll_id });
    }
    if (ids.length)
      await fetch(`${this.url}/_search/scroll`, {
        method: "DELETE",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ scroll_id: [...new Set(ids)] }),
      }).catch(() => undefined);
    return t;
  }

  async drop(prefix: string): Promise<void> {
    await fetch(`${this.url}/${prefix}*`, { method: "DELETE" }).catch(() => undefined);
    await fetch(`${this.url}/_index_template/${prefix}`, { method: "DELETE" }).catch(() => undefined);
  }

  stop(): void {
    if (this.dir)
      execFileSync(join(ROOT, "scripts/elasticsearch.sh"), ["stop", this.dir], { stdio: "inherit" });
  }
}

// ---------------------------------------------------------------------------------------------- agents

interface Agents {
  roots: ChildProcess[];
  /** The application's own pids inside the agents' trees (exec mode), left out of the agent's figures. */
  exclude: number[];
  stop(): Promise<void>;
}

/** Processes of the running trial, killed if the run itself is interrupted. */
const live = new Set<{ p: ChildProcess; group: boolean }>();

/** `group`: the process leads its own process group, stopped as a whole (the paper's script is a pipeline). */
function spawnLogged(argv: string[], outBase: string, group = false): ChildProcess {
  const p = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], detached: group });
  const entry = { p, group };
  live.add(entry);
  p.once("exit", () => live.delete(entry));
  p.stdout!.pipe(createWriteStream(`${outBase}.out`));
  p.stderr!.pipe(createWriteStream(`${outBase}.err`));
  return p;
}

async function stopAll(procs: ChildProcess[], group = false): Promise<void> {
  const signal = (p: ChildProcess, sig: NodeJS.Signals) => {
    try {
      if (group) process.kill(-p.pid!, sig);
      else p.kill(sig);
    } catch {
      // already gone
    }
  };
  for (const p of procs) signal(p, "SIGTERM");
  for (const p of procs) {
    if (!(await waitExit(p, 15_000))) {
      signal(p, "SIGKILL");
      await waitExit(p, 2_000);
    }
  }
}

function agentArgs(svc: Service, dir: string): string[] {
  return ["--svc", svc, "--state-dir", join(dir, "state", svc), "--log-level", "warn"];
}

async function waitForText(file: string, text: string, p: ChildProcess, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (p.exitCode !== null) throw new Error(`${file}: process exited with ${p.exitCode}`);
    try {
      if (readFileSync(file, "utf8").includes(text)) return;
    } catch {
      // not written yet
    }
    await sleep(25);
  }
  throw new Error(`${file}: no "${text}" after ${timeoutMs} ms`);
}

interface Ctx {
  dir: string;
  /** The trial's fluentd (fluentd condition): the shipped config, writing to es under esPrefix. */
  fluentd?: RealFluentd;
  es?: Elasticsearch;
  esPrefix: string;
}

/** The `--output` of each run condition. */
function outputFor(cond: Condition, ctx: Ctx, svc: Service): string[] {
  switch (cond) {
    case "file":
      return ["--output", `file:${join(ctx.dir, "out", svc)}`];
    case "file-poll":
      // no inotify event per line: the folder is looked at once a second (cost per pod, issue 13)
      return ["--output", `file:${join(ctx.dir, "out", svc)}`, "--watcher", "poll", "--poll-interval", "1s"];
    case "fluentd":
      return ["--output", `fluentd://127.0.0.1:${ctx.fluentd!.o.port}?ca=${ctx.fluentd!.tls.ca}`];
    case "elasticsearch":
      return ["--output", `elasticsearch:${ctx.es!.url}`, "--es-index-prefix", ctx.esPrefix];
    default:
      throw new Error(`no run output for ${cond}`);
  }
}

async function startAgents(cond: Condition, ctx: Ctx, app: RunningApp | undefined): Promise<Agents> {
  const procDir = join(ctx.dir, "procs");
  mkdirSync(procDir, { recursive: true });
  if (cond === "none") return { roots: [], exclude: [], stop: async () => undefined };
  if (cond === "exec") {
    const roots = SERVICES.map((s) => app!.procs[s]);
    const pids = await app!.servicePids();
    return { roots, exclude: Object.values(pids), stop: async () => undefined };
  }
  if (cond === "fluentd") await startFluentd(ctx);
  const roots: ChildProcess[] = [];
  for (const svc of SERVICES) {
    const logDir = join(ctx.dir, "logs", svc);
    mkdirSync(logDir, { recursive: true });
    if (cond === "paper") {
      const p = spawnLogged(
        ["bash", PAPER_SCRIPT, logDir, join(ctx.dir, "out", svc), svc],
        join(procDir, `paper-${svc}`),
        true,
      );
      roots.push(p);
      await waitForText(join(procDir, `paper-${svc}.err`), "Watches established", p, 10_000);
    } else {
      roots.push(
        spawnLogged(
          ["node", CLI, "run", "--watch", logDir, ...agentArgs(svc, ctx.dir), ...outputFor(cond, ctx, svc)],
          join(procDir, `agent-${svc}`),
        ),
      );
    }
  }
  return {
    roots,
    exclude: [],
    stop: async () => {
      await stopAll(roots, cond === "paper");
      await ctx.fluentd?.stop();
    },
  };
}

/** A fresh fluentd per trial (like the app), with the agents' index template on its prefix. */
async function startFluentd(ctx: Ctx): Promise<void> {
  const es = ctx.es!;
  await fetch(`${es.url}/_index_template/${ctx.esPrefix}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(logsIndexTemplate(ctx.esPrefix)),
  });
  ctx.fluentd = new RealFluentd(join(ctx.dir, "fluentd"), {
    esUrl: es.url,
    indexPrefix: ctx.esPrefix,
    sharedKey: FLUENTD_SHARED_KEY,
    port: await freePort(),
  });
  await ctx.fluentd.start();
}

/** The agents find it in their environment (IKONTAINER_FLUENTD_SHARED_KEY), as in the shipped manifests. */
const FLUENTD_SHARED_KEY = randomBytes(16).toString("hex");
process.env.IKONTAINER_FLUENTD_SHARED_KEY = FLUENTD_SHARED_KEY;

function execWrap(ctx: Ctx): Wrap {
  return (svc, command) => [
    "node",
    CLI,
    "exec",
    ...agentArgs(svc, ctx.dir),
    "--output",
    `file:${join(ctx.dir, "out", svc)}`,
    "--",
    ...command,
  ];
}

async function tallyFor(cond: Condition, ctx: Ctx): Promise<Tally | undefined> {
  switch (cond) {
    case "none":
      return undefined;
    case "fluentd":
    case "elasticsearch":
      return ctx.es!.tally(ctx.esPrefix);
    default:
      return tallyDir(join(ctx.dir, "out"));
  }
}

/** Cheap progress figure while waiting for the agents to catch up (ES: a count, not a full scan). */
async function progressFor(cond: Condition, ctx: Ctx, written: Record<Service, number>): Promise<number> {
  if (cond === "elasticsearch" || cond === "fluentd") return ctx.es!.count(ctx.esPrefix);
  const t = await tallyFor(cond, ctx);
  return t ? account(t, written).tagged : 0;
}

/** Waits until every written line is tagged, or nothing moved for `idleMs`, or `maxMs` passed. */
async function waitTagged(
  cond: Condition,
  ctx: Ctx,
  written: Record<Service, number>,
  idleMs: number,
  maxMs: number,
): Promise<void> {
  const total = Object.values(written).reduce((a, b) => a + b, 0);
  // fluentd writes to Elasticsearch every flush_interval (5 s in the shipped config)
  const idle = cond === "fluentd" ? Math.max(idleMs, 12_000) : idleMs;
  let last = -1;
  let lastChange = Date.now();
  const until = Date.now() + maxMs;
  for (;;) {
    const n = await progressFor(cond, ctx, written);
    if (n >= total) return;
    if (n !== last) {
      last = n;
      lastChange = Date.now();
    }
    if (Date.now() - lastChange > idle || Date.now() > until) return;
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------- load

async function runLocust(url: string, rate: number, opts: Options, dir: string): Promise<LoadSummary> {
  const exact = join(dir, "locust_exact.json");
  const p = spawn(
    LOCUST,
    [
      "-f",
      join(ROOT, "bench/locustfile.py"),
      "--headless",
      "-u",
      String(rate),
      "-r",
      String(rate),
      "-t",
      `${Math.round(opts.durationMs / 1000)}s`,
      "--host",
      url,
      "--csv",
      join(dir, "locust"),
      "--only-summary",
      "--loglevel",
      "WARNING",
    ],
    {
      cwd: dir,
      env: {
        ...process.env,
        IKON_BENCH_EXACT: exact,
        IKON_BENCH_WARMUP_S: String(opts.warmupMs / 1000),
        IKON_BENCH_DURATION_S: String(Math.round(opts.durationMs / 1000)),
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const entry = { p, group: false };
  live.add(entry);
  p.once("exit", () => live.delete(entry));
  p.stdout!.pipe(createWriteStream(join(dir, "locust.out")));
  p.stderr!.pipe(createWriteStream(join(dir, "locust.err")));
  if (!(await waitExit(p, opts.durationMs + 60_000))) {
    p.kill("SIGKILL");
    throw new Error("locust did not finish");
  }
  if (!existsSync(exact))
    throw new Error(`locust wrote no totals (exit ${p.exitCode}); see ${dir}/locust.err`);
  return JSON.parse(readFileSync(exact, "utf8")) as LoadSummary;
}

/** Our loadgen in its own process (as users run it); in this process when run from sources (tests). */
async function runLoadgen(url: string, rate: number, opts: Options, dir: string): Promise<LoadSummary> {
  const prefix = join(dir, "loadgen");
  if (!existsSync(LOADGEN_JS)) {
    const result = await runLoad({ host: url, users: rate, durationMs: opts.durationMs });
    writeFileSync(`${prefix}_stats.csv`, locustStatsCsv(result));
    return exactSummary(result, opts.warmupMs);
  }
  const p = spawn(
    process.execPath,
    [
      LOADGEN_JS,
      "--host",
      url,
      "--users",
      String(rate),
      "--duration",
      `${opts.durationMs}ms`,
      "--warmup",
      `${opts.warmupMs}ms`,
      "--csv",
      prefix,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const entry = { p, group: false };
  live.add(entry);
  p.once("exit", () => live.delete(entry));
  p.stderr!.pipe(createWriteStream(join(dir, "loadgen.err")));
  if (!(await waitExit(p, opts.durationMs + 60_000))) {
    p.kill("SIGKILL");
    throw new Error("loadgen did not finish");
  }
  return JSON.parse(readFileSync(`${prefix}_exact.json`, "utf8")) as LoadSummary;
}

// ---------------------------------------------------------------------------------------------- trial

async function runTrial(
  condName: Condition | "none-loadgen",
  rate: number,
  rep: number,
  order: number,
  opts: Options,
  shared: {
    es?: Elasticsearch;
    workDir: string;
    csvDir: string;
  },
): Promise<TrialResult> {
  const cond: Condition = condName === "none-loadgen" ? "none" : condName;
  const tool = condName === "none-loadgen" ? "loadgen" : opts.load;
  const id = `${rate}rps-r${rep}-${condName}`;
  const dir = join(shared.workDir, id);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const ctx: Ctx = {
    dir,
    es: shared.es,
    esPrefix: `bench-${randomBytes(4).toString("hex")}`,
  };
  const result: TrialResult = {
    condition: condName,
    rate,
    rep,
    order,
    startedAt: new Date().toISOString(),
    tool,
  };
  const loadBefore = os.loadavg()[0]!;
  let app: RunningApp | undefined;
  let agents: Agents | undefined;
  let meter: AgentMeter | undefined;
  try {
    app = await startApp({
      logMode: cond === "exec" ? "stdout" : "file",
      logRoot: join(dir, "logs"),
      outputRoot: join(dir, "procs"),
      ...(cond === "exec" ? { wrap: execWrap(ctx) } : {}),
    });
    agents = await startAgents(cond, ctx, app);
    meter = new AgentMeter(
      agents.roots.map((p) => p.pid!),
      agents.exclude,
    );
    // Prove the whole chain before measuring: a few requests, every line tagged (also warms the JIT).
    for (let i = 0; i < 20; i++) await fetch(`${app.url}/`).then((r) => r.text());
    if (cond !== "none") await waitTagged(cond, ctx, await app.linesWritten(), 2_000, 30_000);
    const cpuBefore = meter.cpu();
    const load =
      tool === "locust"
        ? await runLocust(app.url, rate, opts, dir)
        : await runLoadgen(app.url, rate, opts, dir);
    result.load = load;
    const loadEnd = Date.now();
    const written = await app.linesWritten();
    if (cond !== "none") {
      // The paper's script loses lines for good: stop waiting when nothing moved for 5 s.
      await waitTagged(cond, ctx, written, 5_000, 120_000);
      result.drainSeconds = (Date.now() - loadEnd) / 1000;
      // An agent that died is a failed trial, not a cheap one.
      const dead = agents.roots.find((p) => p.exitCode !== null || p.signalCode !== null);
      if (dead)
        throw new Error(
          `an agent exited during the trial (${dead.exitCode ?? dead.signalCode}); see ${dir}/procs`,
        );
      const cpuAfter = meter.cpu();
      const rss = meter.peakRssBytes();
      result.agent = {
        cpuSeconds: round(cpuAfter, 3),
        cpuSecondsUnderLoad: round(cpuAfter - cpuBefore, 3),
        peakRssMiB: round(rss.total / 2 ** 20, 1),
        maxAgentRssMiB: round(rss.maxPerAgent / 2 ** 20, 1),
      };
      const t = await tallyFor(cond, ctx);
      result.lines = account(t ?? newTally(), written);
    } else {
      result.lines = account(newTally(), written);
    }
    // Keep Locust's own files (and our loadgen's) next to the results.
    result.csv = [];
    for (const f of [
      "locust_stats.csv",
      "locust_stats_history.csv",
      "locust_failures.csv",
      "locust_exceptions.csv",
    ]) {
      if (existsSync(join(dir, f))) {
        const dest = join(shared.csvDir, `${id}_${f.replace(/^locust_/, "")}`);
        copyFileSync(join(dir, f), dest);
        result.csv.push(relative(ROOT, dest));
      }
    }
    if (existsSync(join(dir, "loadgen_stats.csv"))) {
      const dest = join(shared.csvDir, `${id}_loadgen_stats.csv`);
      copyFileSync(join(dir, "loadgen_stats.csv"), dest);
      result.csv.push(relative(ROOT, dest));
    }
  } catch (e) {
    result.error = (e as Error).message;
    log(`${id}: ${result.error}`);
  } finally {
    result.loadavg = [round(loadBefore, 2), round(os.loadavg()[0]!, 2)];
    meter?.stop();
    await agents?.stop();
    await app?.stop();
    if (cond === "elasticsearch" || cond === "fluentd") await ctx.es?.drop(ctx.esPrefix);
    if (!opts.keep && !result.error) rmSync(dir, { recursive: true, force: true });
  }
  const l = result.load;
  log(
    `${id}: p50 ${fmt(l?.p50)} p95 ${fmt(l?.p95)} p99 ${fmt(l?.p99)} ms, ${fmt(l?.rps, 1)} req/s, ` +
      `failures ${l?.failures ?? "-"}, lines ${result.lines?.tagged ?? "-"}/${result.lines?.written ?? "-"} tagged, ` +
      `lost ${result.lines?.lost ?? "-"}, dup ${result.lines?.duplicates ?? "-"}, agent CPU ${result.agent?.cpuSecondsUnderLoad ?? "-"} s`,
  );
  return result;
}

// ---------------------------------------------------------------------------------------------- availability

/** Why a condition cannot be measured here, or undefined when it can. Checked, never assumed. */
function unavailable(cond: Condition): string | undefined {
  const help = (cmd: string) => {
    try {
      return execFileSync("node", [CLI, cmd, "--help"], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (e) {
      return `ERROR ${(e as Error).message}`;
    }
  };
  if (cond === "none") return undefined;
  if (cond === "paper") {
    for (const t of ["inotifywait", "uuidgen", "tail"]) {
      try {
        execFileSync("sh", ["-c", `command -v ${t}`], { stdio: "ignore" });
      } catch {
        return `${t} is not installed (apt-get install inotify-tools uuid-runtime)`;
      }
    }
    return undefined;
  }
  if (!existsSync(CLI)) return `${relative(ROOT, CLI)} is missing (npx tsc -p tsconfig.build.json)`;
  if (cond === "exec") {
    const h = help("exec");
    return h.startsWith("ERROR") ? `\`ikontainer exec\` is not available: ${h.slice(6, 200)}` : undefined;
  }
  const h = help("run");
  if (h.startsWith("ERROR")) return `\`ikontainer run\` is not available: ${h.slice(6, 200)}`;
  if (cond === "fluentd") {
    try {
      execFileSync("sh", ["-c", "command -v ruby"], { stdio: "ignore" });
    } catch {
      return "ruby is not installed (scripts/setup.sh installs it for fluentd)";
    }
    if (!existsSync(FLUENTD_SCRIPT)) return "scripts/fluentd.sh is missing";
    return probeOutput("fluentd://127.0.0.1:9", []);
  }
  if (cond === "elasticsearch") {
    if (!h.includes("--es-index-prefix")) return "`ikontainer run` has no --es-index-prefix setting";
    if (!existsSync(join(ROOT, "scripts/elasticsearch.sh"))) return "scripts/elasticsearch.sh is missing";
    return probeOutput("elasticsearch:http://127.0.0.1:9", ["--es-index-prefix", "bench-probe"]);
  }
  return undefined;
}

/**
 * Starts `ikontainer run` with this output for 3 s (nothing listens on port 9): a sink that is not wired
 * into `run` fails at once with a configuration error; a wired one keeps retrying its destination.
 */
function probeOutput(spec: string, extra: string[]): string | undefined {
  const dir = join(ROOT, "bench/.work", `probe-${process.pid}`);
  mkdirSync(join(dir, "logs"), { recursive: true });
  try {
    const r = spawnSync(
      "node",
      [CLI, "run", "--watch", join(dir, "logs"), "--svc", "probe", "--state-dir", join(dir, "state")].concat([
        "--output",
        spec,
        ...extra,
      ]),
      { encoding: "utf8", timeout: 3000, killSignal: "SIGKILL" },
    );
    if (r.signal === "SIGKILL") return undefined;
    const msg =
      (r.stderr || r.stdout || "")
        .trim()
        .split("\n")
        .find((l) => l.includes("IKON_ERR")) ?? r.stderr;
    return `\`ikontainer run --output ${spec}\` fails: ${msg.trim().slice(0, 300)}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------- summary

const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;
const fmt = (x: number | null | undefined, d = 2) => (x === null || x === undefined ? "-" : x.toFixed(d));

function median(xs: number[]): number | null {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

interface Row {
  condition: string;
  label: string;
  rate: number;
  reps: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  rps: number | null;
  failures: number;
  requests: number;
  agentCpuSeconds: number | null;
  agentCpuPercentOfOneCore: number | null;
  /** Agent CPU per line written (µs), median over repetitions: the cost that does not depend on the noise. */
  agentCpuMicrosPerLine: number | null;
  peakRssMiB: number | null;
  written: number;
  tagged: number;
  lost: number;
  duplicates: number;
  malformed: number;
  drainSecondsMax: number | null;
  /** Ratio of medians vs no agent at the same rate, minus 1. */
  overheadP50: number | null;
  overheadP99: number | null;
  /** Median of the per-repetition ratios (each condition vs the no-agent trial of the same block). */
  pairedOverheadP50: number | null;
  pairedOverheadP99: number | null;
  errors: string[];
}

function summarize(trials: TrialResult[], opts: Options): Row[] {
  const rows: Row[] = [];
  const conds = [...new Set(trials.map((t) => t.condition))];
  for (const rate of opts.rates) {
    const base = trials.filter((t) => t.rate === rate && t.condition === "none" && t.load);
    const baseP50 = median(base.map((t) => t.load!.p50 ?? Number.NaN));
    const baseP99 = median(base.map((t) => t.load!.p99 ?? Number.NaN));
    for (const c of conds) {
      const ts = trials.filter((t) => t.rate === rate && t.condition === c);
      if (ts.length === 0) continue;
      const ok = ts.filter((t) => t.load && !t.error);
      const p50 = median(ok.map((t) => t.load!.p50 ?? Number.NaN));
      const p99 = median(ok.map((t) => t.load!.p99 ?? Number.NaN));
      const paired = (key: "p50" | "p99") =>
        median(
          ok.map((t) => {
            const b = base.find((x) => x.rep === t.rep);
            const bv = b?.load?.[key];
            const v = t.load![key];
            return bv && v ? v / bv - 1 : Number.NaN;
          }),
        );
      const cpu = median(ok.filter((t) => t.agent).map((t) => t.agent!.cpuSecondsUnderLoad));
      const seconds = opts.durationMs / 1000;
      rows.push({
        condition: c,
        label: LABELS[c],
        rate,
        reps: ok.length,
        p50,
        p95: median(ok.map((t) => t.load!.p95 ?? Number.NaN)),
        p99,
        rps: median(ok.map((t) => t.load!.rps)),
        failures: ok.reduce((a, t) => a + t.load!.failures, 0),
        requests: ok.reduce((a, t) => a + t.load!.count, 0),
        agentCpuSeconds: cpu,
        agentCpuPercentOfOneCore: cpu === null ? null : round((100 * cpu) / seconds, 1),
        agentCpuMicrosPerLine: median(
          ok
            .filter((t) => t.agent && t.lines?.written)
            .map((t) => round((1e6 * t.agent!.cpuSecondsUnderLoad) / t.lines!.written, 1)),
        ),
        peakRssMiB: median(ok.filter((t) => t.agent).map((t) => t.agent!.peakRssMiB)),
        written: ok.reduce((a, t) => a + (t.lines?.written ?? 0), 0),
        tagged: ok.reduce((a, t) => a + (t.lines?.tagged ?? 0), 0),
        lost: ok.reduce((a, t) => a + (c === "none" || c === "none-loadgen" ? 0 : (t.lines?.lost ?? 0)), 0),
        duplicates: ok.reduce((a, t) => a + (t.lines?.duplicates ?? 0), 0),
        malformed: ok.reduce((a, t) => a + (t.lines?.malformed ?? 0), 0),
        drainSecondsMax: ok.some((t) => t.drainSeconds !== undefined)
          ? Math.max(...ok.map((t) => t.drainSeconds ?? 0))
          : null,
        overheadP50: p50 !== null && baseP50 ? p50 / baseP50 - 1 : null,
        overheadP99: p99 !== null && baseP99 ? p99 / baseP99 - 1 : null,
        pairedOverheadP50: c === "none" ? null : paired("p50"),
        pairedOverheadP99: c === "none" ? null : paired("p99"),
        errors: ts.filter((t) => t.error).map((t) => `rep ${t.rep}: ${t.error}`),
      });
    }
  }
  return rows;
}

const pct = (x: number | null) => (x === null ? "-" : `${x >= 0 ? "+" : ""}${(100 * x).toFixed(1)}%`);

function markdownTable(rows: Row[], notMeasured: Record<string, string>): string {
  const lines = [
    "| rate | condition | p50 ms | p95 ms | p99 ms | req/s | failures | Δp50 | Δp99 | agent CPU s (% of a core) | agent CPU µs/line | agent peak RSS MiB | lines written | tagged | lost | duplicated | paper |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
  ];
  for (const r of rows) {
    const paper = PAPER[r.rate as 100 | 500];
    const isAgent = r.condition !== "none" && r.condition !== "none-loadgen";
    lines.push(
      `| ${r.rate} | ${r.label} | ${fmt(r.p50)} | ${fmt(r.p95)} | ${fmt(r.p99)} | ${fmt(r.rps, 1)} | ${r.failures} | ` +
        `${isAgent ? pct(r.overheadP50) : ""} | ${isAgent ? pct(r.overheadP99) : ""} | ` +
        `${r.agentCpuSeconds === null ? "" : `${fmt(r.agentCpuSeconds)} (${r.agentCpuPercentOfOneCore}%)`} | ` +
        `${r.agentCpuMicrosPerLine === null ? "" : fmt(r.agentCpuMicrosPerLine, 0)} | ` +
        `${r.peakRssMiB === null ? "" : fmt(r.peakRssMiB, 1)} | ${r.written} | ${isAgent ? r.tagged : ""} | ` +
        `${isAgent ? r.lost : ""} | ${isAgent ? r.duplicates : ""} | ` +
        `${paper && (r.condition === "paper" || r.condition === "none") ? (r.condition === "none" ? `${paper.p50Without} ms` : `${paper.p50With} ms (${pct(paper.overhead)})`) : ""} |`,
    );
  }
  for (const [c, why] of Object.entries(notMeasured)) {
    lines.push(`| all | ${LABELS[c as Condition]} | not measured: ${why} ||||||||||||||||`);
  }
  return lines.join("\n");
}

/**
 * Grouped bars: per rate a panel, per condition p50/p95/p99, on a log scale (a saturated condition's seconds and
 * a quiet one's milliseconds must both be readable). Plain SVG, no dependencies.
 */
function chartSvg(rows: Row[], title: string): string {
  const rates = [...new Set(rows.map((r) => r.rate))];
  const panelW = 560;
  const panelH = 300;
  const W = panelW * rates.length + 40;
  const H = panelH + 170;
  const colors = { p50: "#4c78a8", p95: "#f58518", p99: "#e45756" };
  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
  ];
  rates.forEach((rate, i) => {
    const rs = rows.filter((r) => r.rate === rate && r.p99 !== null);
    const x0 = 70 + i * panelW;
    const y0 = 50;
    const h = panelH - 40;
    const w = panelW - 80;
    const vals = rs.flatMap((r) => [r.p50 ?? 1, r.p99 ?? 1]);
    const lo = 10 ** Math.floor(Math.log10(Math.max(0.1, Math.min(1, ...vals))));
    const hi = 10 ** Math.ceil(Math.log10(Math.max(10, ...vals)));
    const yOf = (v: number) =>
      y0 + h - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / Math.log10(hi / lo)) * h;
    out.push(
      `<text x="${x0 + w / 2}" y="${y0 - 8}" text-anchor="middle" font-size="13">${rate} requests/s</text>`,
    );
    for (let v = lo; v <= hi * 1.0001; v *= 10) {
      const y = yOf(v);
      out.push(`<line x1="${x0}" x2="${x0 + w}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
      out.push(`<text x="${x0 - 6}" y="${y + 4}" text-anchor="end">${v >= 1 ? v : v.toFixed(1)}</text>`);
    }
    out.push(
      `<text transform="translate(${x0 - 46},${y0 + h / 2}) rotate(-90)" text-anchor="middle">response time, ms (log)</text>`,
    );
    const gw = w / Math.max(1, rs.length);
    rs.forEach((r, j) => {
      const bw = (gw - 14) / 3;
      (["p50", "p95", "p99"] as const).forEach((k, n) => {
        const v = r[k] ?? 0;
        const y = yOf(v);
        const x = x0 + j * gw + 7 + n * bw;
        out.push(
          `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${bw.toFixed(1)}" height="${(y0 + h - y).toFixed(1)}" fill="${colors[k]}"><title>${esc(`${r.label} ${k}: ${fmt(v)} ms`)}</title></rect>`,
        );
      });
      const cx = x0 + j * gw + gw / 2;
      out.push(
        `<text x="${cx.toFixed(1)}" y="${(yOf(r.p99 ?? lo) - 4).toFixed(1)}" text-anchor="middle" font-size="9">${fmt(r.p50, 1)}</text>`,
      );
      out.push(
        `<text transform="translate(${cx},${y0 + h + 10}) rotate(35)" text-anchor="start">${esc(r.label)}</text>`,
      );
    });
    out.push(`<line x1="${x0}" x2="${x0 + w}" y1="${y0 + h}" y2="${y0 + h}" stroke="#333"/>`);
  });
  (["p50", "p95", "p99"] as const).forEach((k, n) => {
    out.push(`<rect x="${70 + n * 70}" y="${H - 22}" width="12" height="12" fill="${colors[k]}"/>`);
    out.push(`<text x="${86 + n * 70}" y="${H - 12}">${k}</text>`);
  });
  out.push(`<text x="${300}" y="${H - 12}">number above each group: p50 in ms</text>`);
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}

function machine(): Record<string, unknown> {
  const locustVersion = (() => {
    try {
      return execFileSync("/usr/bin/python3", ["-c", "import locust; print(locust.__version__)"], {
        encoding: "utf8",
      }).trim();
    } catch {
      return undefined;
    }
  })();
  return {
    hostname: os.hostname(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryMiB: Math.round(os.totalmem() / 2 ** 20),
    kernel: os.release(),
    node: process.version,
    locust: locustVersion,
    loadavgAtStart: os.loadavg(),
  };
}

// ---------------------------------------------------------------------------------------------- main

let machineInfo: Record<string, unknown> = {};

/** Copies dist/ so every trial runs the same agent build, and records which commit it was built from. */
function snapshotAgent(workDir: string): Record<string, unknown> {
  const git = (args: string[]) => {
    try {
      return execFileSync("git", args, {
        cwd: ROOT,
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      }).trim();
    } catch {
      return undefined;
    }
  };
  if (existsSync(BUILT_CLI)) {
    // dist/, the package.json it reads its version from, and node_modules: an `npm install` or uninstall in
    // the repo during the run must not change (or break) the agent under test.
    const snap = join(workDir, "agent");
    cpSync(join(ROOT, "dist"), join(snap, "dist"), { recursive: true });
    copyFileSync(join(ROOT, "package.json"), join(snap, "package.json"));
    cpSync(join(ROOT, "node_modules"), join(snap, "node_modules"), {
      recursive: true,
      verbatimSymlinks: true,
    });
    CLI = join(snap, "dist/cli/main.js");
  }
  return {
    commit: git(["rev-parse", "HEAD"]),
    dirtySrc: (git(["status", "--porcelain", "--", "src"]) ?? "").split("\n").filter(Boolean).length,
    distBuiltAt: existsSync(BUILT_CLI) ? statSync(BUILT_CLI).mtime.toISOString() : undefined,
  };
}

function shuffle<T>(xs: T[], rand: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      rates: { type: "string" },
      reps: { type: "string" },
      duration: { type: "string" },
      warmup: { type: "string" },
      conditions: { type: "string" },
      load: { type: "string", default: "locust" },
      "no-agreement": { type: "boolean", default: false },
      out: { type: "string", default: join(ROOT, "bench/results") },
      keep: { type: "boolean", default: false },
      seed: { type: "string" },
      nice: { type: "string", default: "0" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`Usage: npm run bench:overhead -- [options]

The paper's overhead experiment: a five-service app under constant load (Locust), with and without the agent.

  --quick              smoke run: 10 s per trial, 1 repetition, 2 s warm-up
  --rates LIST         requests/s, comma-separated (default 100,500)
  --reps N             repetitions of every (rate, condition) (default 5)
  --duration D         load per trial (default 60s)
  --warmup D           first part of each trial left out of the percentiles (default 5s; counted in lines)
  --conditions LIST    of ${CONDITIONS.join(",")} (default: all)
  --load TOOL          locust (default; Debian's /usr/bin/locust) or loadgen (bench/loadgen.ts)
  --no-agreement       skip the Locust-vs-loadgen check (no agent, lowest rate, every repetition)
  --out DIR            results folder (default bench/results)
  --keep               keep every trial's logs and outputs under bench/.work/overhead/
  --seed N             order of conditions inside each block
  --nice=N             run the app, the agents and the load at this nice value (e.g. -5 on a shared machine)
  --render FILE.json   only re-write the .md and .svg of a finished run from its JSON
`);
    process.exit(0);
  }
  const quick = values.quick ?? false;
  const conditions = (values.conditions?.split(",") ?? [...CONDITIONS]).map((c) => c.trim()) as Condition[];
  for (const c of conditions)
    if (!CONDITIONS.includes(c))
      throw new Error(`unknown condition "${c}" (expected ${CONDITIONS.join(", ")})`);
  if (values.load !== "locust" && values.load !== "loadgen") throw new Error("--load is locust or loadgen");
  return {
    rates: (values.rates ?? "100,500").split(",").map(Number),
    reps: Number(values.reps ?? (quick ? 1 : 5)),
    durationMs: parseDuration(values.duration ?? (quick ? "10s" : "60s"), "--duration"),
    warmupMs: parseDuration(values.warmup ?? (quick ? "2s" : "5s"), "--warmup"),
    conditions,
    load: values.load,
    agreement: !values["no-agreement"],
    out: resolve(values.out ?? join(ROOT, "bench/results")),
    quick,
    keep: values.keep ?? false,
    seed: Number(values.seed ?? Date.now() % 100000),
    nice: Number(values.nice ?? 0),
  };
}

/** Re-writes the .md and .svg (and the summary rows) of a finished run from its JSON. */
function render(file: string): string {
  const j = JSON.parse(readFileSync(file, "utf8"));
  const { loadavgDuringTrials: _drop, ...machineRest } = j.machine as Record<string, unknown>;
  machineInfo = machineRest;
  const opts: Options = {
    ...parseOptions([]),
    rates: j.protocol.rates,
    reps: j.protocol.repetitions,
    durationMs: j.protocol.durationSeconds * 1000,
    warmupMs: j.protocol.warmupSeconds * 1000,
    load: j.protocol.load,
    seed: j.protocol.seed,
  };
  const base = resolve(file).replace(/\.json$/, "");
  return writeResults(base, {
    opts,
    stamp: base.replace(/^.*overhead-/, ""),
    started: j.started,
    finished: j.finished,
    trials: j.trials,
    notMeasured: j.notMeasured,
    done: j.complete,
    total: j.trialsPlanned,
    agent: j.agent,
    csvDir: join(ROOT, j.csv),
  });
}

export async function main(argv: string[]): Promise<string> {
  const renderAt = argv.indexOf("--render");
  if (renderAt >= 0) {
    process.stdout.write(`${render(argv[renderAt + 1] ?? "")}\n`);
    return argv[renderAt + 1] ?? "";
  }
  const opts = parseOptions(argv);
  const notMeasured: Record<string, string> = {};
  const conditions = opts.conditions.filter((c) => {
    const why = unavailable(c);
    if (why) {
      notMeasured[c] = why;
      log(`${c}: NOT MEASURED: ${why}`);
    }
    return !why;
  });
  const stamp = `${new Date().toISOString().slice(0, 16).replace(/:/g, "")}Z${opts.quick ? "-quick" : ""}`;
  const workDir = join(ROOT, "bench/.work/overhead", `${stamp}-${process.pid}`);
  const csvDir = join(opts.out, `overhead-${stamp}`);
  mkdirSync(workDir, { recursive: true });
  mkdirSync(csvDir, { recursive: true });
  // Inherited by every process the run starts (app, agents, Locust, Elasticsearch).
  if (opts.nice !== 0) os.setPriority(opts.nice);
  machineInfo = { ...machine(), nice: opts.nice };
  const agentInfo = snapshotAgent(workDir);

  const shared: {
    es?: Elasticsearch;
    workDir: string;
    csvDir: string;
  } = { workDir, csvDir };
  // fluentd's condition writes through fluentd into the same node
  if (conditions.includes("elasticsearch") || conditions.includes("fluentd")) {
    try {
      shared.es = new Elasticsearch();
      log("starting Elasticsearch (kept running for the whole run, so every condition shares its idle load)");
      await shared.es.start(workDir);
    } catch (e) {
      for (const c of ["elasticsearch", "fluentd"] as const) {
        if (!conditions.includes(c)) continue;
        notMeasured[c] = `Elasticsearch did not start: ${(e as Error).message}`;
        conditions.splice(conditions.indexOf(c), 1);
      }
      shared.es = undefined;
    }
  }

  // Interrupted runs leave nothing behind: trial processes and the Elasticsearch node are stopped.
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: stopping`);
    for (const { p, group } of live) {
      try {
        if (group) process.kill(-p.pid!, "SIGKILL");
        else p.kill("SIGKILL");
      } catch {
        // gone
      }
    }
    for (const p of runningServices) p.kill("SIGKILL");
    shared.es?.stop();
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.stdout.on("error", () => undefined);

  const extra: ("none-loadgen" | Condition)[] =
    opts.agreement && opts.load === "locust" ? ["none-loadgen"] : [];
  const minRate = Math.min(...opts.rates);
  const blocks = opts.reps * opts.rates.length;
  const perBlock = conditions.length + extra.length / opts.rates.length;
  log(
    `protocol: rates ${opts.rates.join(", ")} req/s × ${opts.reps} repetitions × ${opts.durationMs / 1000} s ` +
      `(warm-up ${opts.warmupMs / 1000} s), conditions ${conditions.join(", ")}${extra.length ? ` + loadgen check at ${minRate} req/s` : ""}; ` +
      `load ${opts.load}; about ${Math.round((blocks * perBlock * (opts.durationMs / 1000 + 8)) / 60)} min`,
  );

  let seed = opts.seed;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const trials: TrialResult[] = [];
  const started = new Date().toISOString();
  const total = blocks * conditions.length + (extra.length ? opts.reps : 0);
  let order = 0;
  const base = join(opts.out, `overhead-${stamp}`);
  const write = (done: boolean) =>
    writeResults(base, { opts, stamp, started, trials, notMeasured, done, total, agent: agentInfo, csvDir });
  try {
    for (let rep = 1; rep <= opts.reps; rep++) {
      for (const rate of opts.rates) {
        const block: (Condition | "none-loadgen")[] = [...conditions, ...(rate === minRate ? extra : [])];
        for (const c of shuffle(block, rand)) {
          trials.push(await runTrial(c, rate, rep, order++, opts, shared));
          // written after every trial, so an interrupted run still leaves its (marked partial) results
          write(false);
        }
      }
    }
  } finally {
    shared.es?.stop();
  }
  const table = write(true);
  log(`results: ${relative(ROOT, base)}.json / .md / .svg, Locust CSVs in ${relative(ROOT, csvDir)}/`);
  process.stdout.write(`${table}\n`);
  if (!opts.keep) rmSync(workDir, { recursive: true, force: true });
  return `${base}.json`;
}

interface WriteArgs {
  opts: Options;
  stamp: string;
  started: string;
  trials: TrialResult[];
  notMeasured: Record<string, string>;
  done: boolean;
  total: number;
  agent: Record<string, unknown>;
  csvDir: string;
  /** Kept when re-rendering a finished run. */
  finished?: string;
}

/** Writes <base>.json, .md and .svg from the trials so far; returns the markdown table. */
function writeResults(base: string, a: WriteArgs): string {
  const { opts, stamp, trials, notMeasured } = a;
  const rows = summarize(trials, opts);
  const protocol = {
    rates: opts.rates,
    repetitions: opts.reps,
    durationSeconds: opts.durationMs / 1000,
    warmupSeconds: opts.warmupMs / 1000,
    load: opts.load,
    users: "one Locust user per request/s, each constant_throughput(1) (FastHttpUser)",
    interleaving:
      "every (repetition, rate) block runs each condition once in a shuffled order, fresh app per trial",
    seed: opts.seed,
    fullProtocol: opts.reps >= 5 && opts.durationMs >= 60_000,
  };
  const loads = trials.flatMap((t) => t.loadavg ?? []);
  const result = {
    benchmark: "overhead",
    complete: a.done,
    trialsDone: trials.length,
    trialsPlanned: a.total,
    started: a.started,
    finished: a.finished ?? (a.done ? new Date().toISOString() : undefined),
    machine: { ...machineInfo, loadavgDuringTrials: { median: median(loads), max: Math.max(0, ...loads) } },
    agent: a.agent,
    protocol,
    paper: PAPER,
    notMeasured,
    csv: relative(ROOT, a.csvDir),
    rows,
    trials,
  };
  writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
  const table = markdownTable(rows, notMeasured);
  writeFileSync(
    `${base}.md`,
    `# Overhead benchmark ${stamp}${a.done ? "" : ` (PARTIAL: ${trials.length} of ${a.total} trials)`}\n\n` +
      `${protocol.fullProtocol ? "Full protocol" : "REDUCED protocol"}: ` +
      `${opts.rates.join(" and ")} req/s, ${opts.reps} repetition(s) × ${opts.durationMs / 1000} s ` +
      `(first ${opts.warmupMs / 1000} s left out of the percentiles), load by ${opts.load}; medians over repetitions.\n` +
      `Machine: ${machineInfo.cpus} cores (${machineInfo.cpuModel}), 1-minute load average during the trials: ` +
      `median ${fmt(median(loads), 1)}, max ${fmt(Math.max(0, ...loads), 1)}. Agent: commit ${String(a.agent.commit ?? "?").slice(0, 10)}` +
      `${a.agent.dirtySrc ? ` + ${a.agent.dirtySrc} uncommitted src/ files` : ""}.\n` +
      `Δ = ratio of the medians to "no agent" at the same rate; the JSON also has the paired (per-repetition) ratios.\n\n` +
      `${table}\n`,
  );
  writeFileSync(
    `${base}.svg`,
    chartSvg(
      rows,
      `Response time per condition (${opts.reps} × ${opts.durationMs / 1000} s, medians, ${os.cpus().length} cores)`,
    ),
  );
  return table;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main(process.argv.slice(2)).catch((e) => {
    process.stderr.write(`overhead: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });
}
