/**
 * CPU time and memory of an agent from /proc: the agent's process and all its descendants (the paper's
 * script is bash + inotifywait + a `tail` per event), minus processes that are the application's own
 * (in exec mode the service runs as the agent's child).
 */
import { type ChildProcess, execFileSync } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

interface Stat {
  pid: number;
  ppid: number;
  /** utime + stime + cutime + cstime, in seconds (cutime covers children already reaped, like each `tail`). */
  cpu: number;
  rssBytes: number;
}

function readStat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // f[0] is field 3 (state): ppid=4, utime=14, stime=15, cutime=16, cstime=17, rss=24
    const n = (field: number) => Number(f[field - 3]);
    return {
      pid,
      ppid: n(4),
      cpu: (n(14) + n(15) + n(16) + n(17)) / CLK_TCK,
      rssBytes: n(24) * 4096,
    };
  } catch {
    return undefined;
  }
}

function allStats(): Stat[] {
  const out: Stat[] = [];
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const s = readStat(pid);
    if (s) out.push(s);
  }
  return out;
}

/** The processes of each root's tree, without the excluded pids and their descendants. */
function trees(roots: readonly number[], exclude: ReadonlySet<number>): Stat[] {
  const stats = allStats();
  const children = new Map<number, Stat[]>();
  for (const s of stats) {
    const c = children.get(s.ppid);
    if (c) c.push(s);
    else children.set(s.ppid, [s]);
  }
  const byPid = new Map(stats.map((s) => [s.pid, s]));
  const out: Stat[] = [];
  const walk = (s: Stat) => {
    if (exclude.has(s.pid)) return;
    out.push(s);
    for (const c of children.get(s.pid) ?? []) walk(c);
  };
  for (const r of roots) {
    const s = byPid.get(r);
    if (s) walk(s);
  }
  return out;
}

function hwmBytes(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Samples the agents' trees every `intervalMs` for peak memory; `cpu()` reads CPU seconds now. */
export class AgentMeter {
  private peakSum = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly exclude: Set<number>;

  constructor(
    private readonly roots: readonly number[],
    exclude: Iterable<number> = [],
    intervalMs = 250,
  ) {
    this.exclude = new Set(exclude);
    if (roots.length > 0) {
      this.sample();
      this.timer = setInterval(() => this.sample(), intervalMs);
      this.timer.unref();
    }
  }

  private sample(): void {
    const sum = trees(this.roots, this.exclude).reduce((a, s) => a + s.rssBytes, 0);
    if (sum > this.peakSum) this.peakSum = sum;
  }

  /** CPU seconds used so far by all agent processes (live ones and the children they reaped). */
  cpu(): number {
    return trees(this.roots, this.exclude).reduce((a, s) => a + s.cpu, 0);
  }

  /**
   * Peak resident memory of all agents together: the larger of the sampled peak of their summed RSS and the
   * sum of each long-lived process's own high-water mark (VmHWM), which sampling cannot miss.
   */
  peakRssBytes(): { total: number; maxPerAgent: number } {
    this.sample();
    let hwmSum = 0;
    let maxPerAgent = 0;
    for (const r of this.roots) {
      const perAgent = trees([r], this.exclude).reduce((a, s) => a + hwmBytes(s.pid), 0);
      hwmSum += perAgent;
      if (perAgent > maxPerAgent) maxPerAgent = perAgent;
    }
    return { total: Math.max(this.peakSum, hwmSum), maxPerAgent };
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

/** SIGTERM, then SIGKILL after 10 s; resolves when the child has exited. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const killLater = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(killLater);
}
