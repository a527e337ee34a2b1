import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  checkSeqLines,
  countLines,
  killLoop,
  killStartedAgents,
  readStamped,
  removeDir,
  startCli,
  startCpuBurners,
  startWriter,
  stopAgent,
  tempDir,
  untilProgress,
} from "./agent.js";
import { seededRandom } from "./seeded-random.js";

export interface ChaosOptions {
  rotation: "rename" | "copytruncate" | "mixed";
  /** node: a simulated /var/log/pods tree in CRI format, read with --mode node. */
  node?: boolean;
  /** Busy `yes` processes running beside the agent the whole time (0: idle machine). */
  burners?: number;
  seed: number;
  files?: number;
  /** Lines per second over all files. */
  rate?: number;
  rotateEvery?: number;
  kills?: number;
  maxKillDelayMs?: number;
  lineBytes?: number;
  /** Progress lines (kills, drain) for long runs. */
  log?: (msg: string) => void;
}

export interface ChaosResult {
  rotation: string;
  node: boolean;
  burners: number;
  seed: number;
  files: number;
  lines: number;
  lost: number;
  duplicated: number;
  broken: number;
  restarts: number;
  rotations: number;
  lostSample: string[];
  dupSample: string[];
  brokenSample: string[];
  ms: number;
}

/**
 * The chaos run of issue 16: `files` files written at `rate` lines/s in all, each rotated every `rotateEvery`
 * lines (rename, copytruncate, or alternating), the agent `kill -9`ed after a seeded random delay once it is
 * tailing and its output grew, `kills` times, then a last agent drains everything and the output is checked
 * line by line (exact shape, exactly once).
 */
export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const files = o.files ?? 4;
  const rate = o.rate ?? 10_000;
  const lineBytes = o.lineBytes ?? 100;
  const root = tempDir("ikon-chaos-");
  const started = Date.now();
  // IKON_CHAOS_KEEP=1: the run's folder (files, output, state, agents.log) is kept for diagnosis.
  const keep = process.env.IKON_CHAOS_KEEP === "1";
  const burners = o.burners ? startCpuBurners(o.burners, 1_200_000) : undefined;
  try {
    const logs = join(root, o.node ? "pods" : "logs");
    const out = join(root, "out");
    const state = join(root, "state");
    const paths = Array.from({ length: files }, (_, i) =>
      o.node
        ? join(logs, `ns-${i}_web-${i}_0000000${i}-aaaa-bbbb-cccc-dddddddddddd`, "app", "0.log")
        : join(logs, `app${i}.log`),
    );
    for (const p of paths) mkdirSync(join(p, ".."), { recursive: true });
    const args = o.node
      ? ["run", "--mode", "node", "--pod-log-dir", logs, "--node-name", "node-a"]
      : ["run", "--watch", logs, "--svc", "chaos"];
    args.push("--output", `file:${out}`, "--state-dir", state, "--linger", "300ms");
    args.push("--poll-interval", "100ms", "--checkpoint-interval", "20ms", "--log-level", "info");

    // The first start makes the CUID (from then on every line is owed), then the writers start.
    const first = startCli(args);
    await first.waitForLog("tailing", 30_000);
    first.child.kill("SIGKILL");
    await first.exited;
    const tags = paths.map((_, i) => `f${i}`);
    const writers = paths.map((p, i) =>
      startWriter([
        p,
        0,
        Math.round(rate / files),
        o.rotation,
        o.rotateEvery ?? 4_000,
        tags[i]!,
        lineBytes,
        o.node ? "cri" : "plain",
      ]),
    );
    const loop = await killLoop({
      args,
      out,
      kills: o.kills ?? 20,
      rng: seededRandom(o.seed),
      maxDelayMs: o.maxKillDelayMs ?? 1_000,
      onKill: (n, d) => o.log?.(`kill ${n} after ${d} ms`),
      onAgentLog: (text) => keep && appendFileSync(join(root, "agents.log"), `${text}=== kill -9\n`),
    }).finally(() => Promise.all(writers.map((w) => w.stop())));
    const written = await Promise.all(writers.map((w) => w.done));
    const total = written.reduce((a, w) => a + w.lines, 0);
    o.log?.(`writers stopped: ${total} lines; draining`);
    // The last agent drains everything; wait while the output moves (a stall ends the wait, the check says why).
    const last = startCli(args);
    await last.waitForLog("tailing", 30_000);
    await untilProgress(() => countLines(out), total, 15_000, "final drain").catch(() => undefined);
    await stopAgent(last);
    if (keep) appendFileSync(join(root, "agents.log"), last.stderr());
    const reports = checkSeqLines(readStamped(out), {
      lineBytes,
      totals: Object.fromEntries(tags.map((t, i) => [t, written[i]!.lines])),
    });
    const rs = Object.entries(reports);
    return {
      rotation: o.rotation,
      node: !!o.node,
      burners: o.burners ?? 0,
      seed: o.seed,
      files,
      lines: total,
      lost: rs.reduce((a, [, r]) => a + r.lost, 0),
      duplicated: rs.reduce((a, [, r]) => a + r.duplicated, 0),
      broken: rs[0]?.[1].broken.length ?? 0,
      restarts: loop.kills,
      rotations: written.reduce((a, w) => a + w.rotations, 0),
      lostSample: rs.flatMap(([t, r]) => r.lostSample.map((n) => `${t}:${n}`)).slice(0, 10),
      dupSample: rs.flatMap(([t, r]) => r.dupSample.map((n) => `${t}:${n}`)).slice(0, 10),
      brokenSample: rs[0]?.[1].broken.slice(0, 5) ?? [],
      ms: Date.now() - started,
    };
  } finally {
    killStartedAgents();
    burners?.stop();
    if (keep) o.log?.(`kept ${root}`);
    else removeDir(root);
  }
}
