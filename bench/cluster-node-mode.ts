/**
 * Node mode on the real single-node cluster (issue 12 item 3): the chart's DaemonSet (`--output file:`, kube-enrich
 * on) reading N busybox pods that each write one line at start, then a burst of L lines as fast as their shell
 * can. Root, and the cluster lock (the npm script takes it):
 *
 *   npm run bench:cluster [-- --pods 6 --lines 20000]   (holds /var/lock/ikon-cluster.lock while it runs)
 *
 * Measured on the host: records in the agent's output (counted as they arrive, polled every 100 ms), the
 * agent's CPU (utime+stime of its process in /proc) and peak RSS (VmHWM) over the burst; for each pod, the time
 * from its first line's CRI timestamp (containerd, host clock) and from the container's start (`startedAt`,
 * whole seconds) to that line's record in the output. The writers' own rate (CRI timestamps of their first and
 * last burst lines) is recorded too, so it is visible whether the agent or the writers set the pace.
 * Results: bench/results/cluster-node-mode-<time>.json. Brings the cluster up and tears it down.
 */
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { gunzipSync } from "node:zlib";
import { AGENT_NS, installChart, stateDirOf, uninstallChart } from "../test/cluster/chart.js";
import { Cluster, clusterDown, clusterUp, type Pod, podLogDir, REPO } from "../test/cluster/harness.js";
import { pod as podManifest } from "../test/cluster/workloads.js";

const TICK = 100; // USER_HZ
const { values } = parseArgs({
  options: { pods: { type: "string", default: "6" }, lines: { type: "string", default: "20000" } },
});
const PODS = Number(values.pods);
const LINES = Number(values.lines);
const RELEASE = "ikon-bench";
const NS = "bench";

const ticksOf = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return Number(rest[11]) + Number(rest[12]);
};
const hwmMiB = (pid: number) =>
  Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;

/** Counts records (lines) in the agent's output files as they grow, and notes when each pod's first one came. */
class OutputCounter {
  private offsets = new Map<string, number>();
  private tail = new Map<string, string>();
  count = 0;
  readonly firstSeen = new Map<string, number>();
  constructor(private readonly dir: string) {}
  poll(): void {
    const walk = (d: string): string[] => {
      let names: string[] = [];
      try {
        names = readdirSync(d);
      } catch {
        return [];
      }
      return names.flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]));
    };
    for (const f of walk(this.dir)) {
      const size = statSync(f).size;
      const at = this.offsets.get(f) ?? 0;
      if (size <= at) continue;
      const buf = Buffer.alloc(size - at);
      const fd = openSync(f, "r");
      readSync(fd, buf, 0, buf.length, at);
      closeSync(fd);
      this.offsets.set(f, size);
      const text = (this.tail.get(f) ?? "") + buf.toString("utf8");
      const lines = text.split("\n");
      this.tail.set(f, lines.pop() ?? "");
      for (const l of lines) {
        if (!l.startsWith("{")) continue;
        this.count++;
        if (l.includes('"message":"first ')) {
          const pod = /"pod":"([^"]+)"/.exec(l)?.[1];
          if (pod?.startsWith("w-") && !this.firstSeen.has(pod)) this.firstSeen.set(pod, Date.now());
        }
      }
    }
  }
}

/** CRI timestamp (ms since epoch) of the one line of a container's logs (rotated and gzipped ones too) matching `re`. */
function criTimeOf(dir: string, re: RegExp): number | undefined {
  for (const f of readdirSync(dir).filter((x) => /^0\.log/.test(x))) {
    let buf = readFileSync(join(dir, f));
    if (f.endsWith(".gz")) buf = gunzipSync(buf);
    for (const l of buf.toString("utf8").split("\n"))
      if (re.test(l)) return Date.parse(l.slice(0, l.indexOf(" ")));
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const c = new Cluster(clusterUp());
  try {
    installChart(c, RELEASE, ["file:/var/lib/ikontainer/out"]);
    const agent = await c.runningPod(AGENT_NS, `app.kubernetes.io/instance=${RELEASE}`);
    const agentPid = c.containerPid(AGENT_NS, agent.metadata.name, "ikontainer");
    await c.namespace(NS);
    const counter = new OutputCounter(join(stateDirOf(RELEASE), "out"));
    counter.poll();
    const before = counter.count;
    const writer = (i: number) => [
      "sh",
      "-c",
      `echo "first w-${i}"; sleep 8; pad=$(printf '%080d' 0); j=0
while [ $j -lt ${LINES} ]; do j=$((j+1)); echo "burst w-${i} seq=$j x-request-id=w${i}-$j $pad"; done
echo "burst-end w-${i}"; while true; do sleep 1; done`,
    ];
    for (let i = 0; i < PODS; i++)
      c.apply(
        podManifest(NS, `w-${i}`, c.env.IKONTAINER_K8S_BUSYBOX_IMAGE, [{ name: "app", command: writer(i) }]),
      );
    const expected = before + PODS * (LINES + 2);
    const cpu0 = ticksOf(agentPid);
    const wall0 = Date.now();
    let last = counter.count;
    let lastChange = Date.now();
    while (counter.count < expected) {
      await sleep(100);
      counter.poll();
      if (counter.count !== last) {
        last = counter.count;
        lastChange = Date.now();
      }
      if (Date.now() - lastChange > 120_000)
        throw new Error(`stalled at ${counter.count}/${expected} records`);
    }
    const doneAt = Date.now();
    const cpuSeconds = (ticksOf(agentPid) - cpu0) / TICK;
    const peakRssMiB = hwmMiB(agentPid);

    const pods: Pod[] = [];
    for (let i = 0; i < PODS; i++) pods.push(c.pod(NS, `w-${i}`));
    const perPod = pods.map((p) => {
      const dir = podLogDir(p, "app");
      const firstCri = criTimeOf(dir, / first w-/)!;
      const started = Date.parse(
        (p.status.containerStatuses![0]!.state.running as { startedAt: string }).startedAt,
      );
      const seen = counter.firstSeen.get(p.metadata.name)!;
      return {
        pod: p.metadata.name,
        criFirstLineToRecordMs: seen - firstCri,
        containerStartToRecordMs: seen - started,
        burstStartCri: criTimeOf(dir, / burst w-\d+ seq=1 /)!,
        burstEndCri: criTimeOf(dir, / burst-end /)!,
      };
    });
    const burstStart = Math.min(...perPod.map((p) => p.burstStartCri));
    const burstEnd = Math.max(...perPod.map((p) => p.burstEndCri));
    const burstLines = PODS * LINES;
    const result = {
      bench: "cluster-node-mode",
      date: new Date().toISOString(),
      kubernetes: c.env.IKONTAINER_K8S_VERSION,
      agentImage: `${c.env.IKONTAINER_K8S_AGENT_IMAGE} (${c.env.IKONTAINER_K8S_AGENT_IMAGE_KIND})`,
      machine: { cores: os.cpus().length, loadavgAtEnd: os.loadavg(), node: process.version },
      params: {
        pods: PODS,
        burstLinesPerPod: LINES,
        lineBytes: 130,
        output: "file (json)",
        kubeEnrich: true,
      },
      results: {
        records: PODS * (LINES + 2),
        writersLinesPerSecond: Math.round(burstLines / ((burstEnd - burstStart) / 1000)),
        agentLinesPerSecond: Math.round(burstLines / ((doneAt - burstStart) / 1000)),
        agentLagAfterLastLineMs: doneAt - burstEnd,
        agentCpuSeconds: cpuSeconds,
        agentCpuMicrosecondsPerLine: Math.round((cpuSeconds / (PODS * (LINES + 2))) * 1e6 * 10) / 10,
        agentPeakRssMiB: Math.round(peakRssMiB * 10) / 10,
        wallSeconds: (doneAt - wall0) / 1000,
        firstLineMs: {
          criToRecord: perPod.map((p) => p.criFirstLineToRecordMs),
          containerStartToRecord: perPod.map((p) => p.containerStartToRecordMs),
        },
      },
      perPod,
    };
    mkdirSync(join(REPO, "bench/results"), { recursive: true });
    const out = join(REPO, `bench/results/cluster-node-mode-${result.date.replace(/[:.]/g, "-")}.json`);
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(JSON.stringify(result.results, null, 2));
    console.log(out);
    uninstallChart(c, RELEASE);
  } finally {
    clusterDown();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
