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
 * Second phase (`--es-samples`, 5): the writers are deleted, the chart is installed again with a fluentd output
 * only (real fluentd with the shipped config → a real Elasticsearch node), and one pod at a time writes one line;
 * measured: container start / first line → its stamped document found by a search (see startToElasticsearch).
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
import {
  AGENT_NS,
  installChart,
  installChartWithFluentd,
  stateDirOf,
  uninstallChart,
} from "../test/cluster/chart.js";
import { Cluster, clusterDown, clusterUp, type Pod, podLogDir, REPO } from "../test/cluster/harness.js";
import { pod as podManifest } from "../test/cluster/workloads.js";
import { dedicatedNode, es } from "../test/fixtures/elasticsearch.js";
import { pipelineFluentd } from "../test/fluentd/pipeline.js";
import { median } from "./paired-stats.js";

const TICK = 100; // USER_HZ
const { values } = parseArgs({
  options: {
    pods: { type: "string", default: "6" },
    lines: { type: "string", default: "20000" },
    "es-samples": { type: "string", default: "5" },
  },
});
const PODS = Number(values.pods);
const LINES = Number(values.lines);
const RELEASE = "ikon-bench";
const NS = "bench";
const ES_SAMPLES = Number(values["es-samples"]);
const RELEASE_ES = "ikon-bench-es";

/**
 * Second phase: the chart with only a fluentd output (real fluentd, shipped config, on the bridge's gateway →
 * a dedicated Elasticsearch node); one pod at a time, the time from its container's start (`startedAt`, whole
 * seconds) and from its first line's CRI timestamp to the first stamped document of the pod that a search finds.
 * fluentd's shipped config flushes every 5 s, so that is part of the figure.
 */
async function firstDocOfPod(url: string, prefix: string, pod: string) {
  await es(url, "POST", `/${prefix}-*/_refresh?ignore_unavailable=true&allow_no_indices=true`);
  const r = await es<{ hits: { hits: Array<{ _source: { ikontainer_CUID?: string } }> } }>(
    url,
    "POST",
    `/${prefix}-*/_search?ignore_unavailable=true&allow_no_indices=true`,
    { size: 1, query: { term: { pod } } },
  );
  return r.hits?.hits?.[0]?._source;
}

/** Deletes pods and waits until they are gone, so their IPs go back to the node's small range (8 addresses). */
function deletePods(c: Cluster, names: string[]): void {
  if (names.length === 0) return;
  c.kubectl(["-n", NS, "delete", "pod", ...names, "--grace-period=1", "--wait=true", "--timeout=120s"]);
}

/** Why a sample pod has no document yet: its phase and IP (a pod that got no IP never wrote a line). */
function sampleState(c: Cluster, name: string): string {
  try {
    const p = c.pod(NS, name);
    return `pod ${name}: phase ${p.status.phase}, IP ${p.status.podIP ?? "none"}`;
  } catch (e) {
    return `pod ${name}: ${String(e)}`;
  }
}

async function startToElasticsearch(c: Cluster, esUrl: string) {
  const gateway = c.env.IKONTAINER_K8S_GATEWAY;
  const fluentd = await pipelineFluentd(esUrl, "bench", gateway);
  await fluentd.start();
  try {
    installChartWithFluentd(c, RELEASE_ES, fluentd, join(stateDirOf(RELEASE_ES), ".."));
    await c.runningPod(AGENT_NS, `app.kubernetes.io/instance=${RELEASE_ES}`);
    const samples: Array<{ pod: string; containerStartToEsMs: number; criFirstLineToEsMs: number }> = [];
    for (let i = 0; i < ES_SAMPLES; i++) {
      const name = `s-${i}`;
      c.apply(
        podManifest(NS, name, c.env.IKONTAINER_K8S_BUSYBOX_IMAGE, [
          { name: "app", command: ["sh", "-c", `echo "first ${name}"; while true; do sleep 1; done`] },
        ]),
      );
      let seenAt: number | undefined;
      const until = Date.now() + 180_000;
      while (seenAt === undefined) {
        if (Date.now() > until)
          throw new Error(`${name}: no document in Elasticsearch after 180 s (${sampleState(c, name)})`);
        await sleep(100);
        // the first document of the pod that carries a CUID
        const hit = await firstDocOfPod(esUrl, fluentd.o.indexPrefix, name).catch(() => undefined);
        if (hit?.ikontainer_CUID) seenAt = Date.now();
      }
      const p = c.pod(NS, name);
      const started = Date.parse(
        (p.status.containerStatuses![0]!.state.running as { startedAt: string }).startedAt,
      );
      samples.push({
        pod: name,
        containerStartToEsMs: seenAt - started,
        criFirstLineToEsMs: seenAt - criTimeOf(podLogDir(p, "app"), / first s-/)!,
      });
      deletePods(c, [name]);
    }
    uninstallChart(c, RELEASE_ES);
    const a = samples.map((x) => x.containerStartToEsMs);
    const b = samples.map((x) => x.criFirstLineToEsMs);
    return {
      samples,
      containerStartToEsMs: { median: median(a), max: Math.max(...a) },
      criFirstLineToEsMs: { median: median(b), max: Math.max(...b) },
    };
  } finally {
    await fluentd.stop();
  }
}

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
  const loadavgAtStart = readFileSync("/proc/loadavg", "utf8").trim();
  // the Elasticsearch node starts while the cluster comes up and the file-output burst runs
  const esNode = await dedicatedNode("bench-cluster");
  const esStarted = esNode.start();
  esStarted.catch(() => undefined);
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
    uninstallChart(c, RELEASE);
    // the writers are done; the second phase's pods need their addresses
    deletePods(
      c,
      pods.map((p) => p.metadata.name),
    );
    await esStarted;
    const toEs = await startToElasticsearch(c, esNode.url);
    const burstStart = Math.min(...perPod.map((p) => p.burstStartCri));
    const burstEnd = Math.max(...perPod.map((p) => p.burstEndCri));
    const burstLines = PODS * LINES;
    const result = {
      bench: "cluster-node-mode",
      date: new Date().toISOString(),
      kubernetes: c.env.IKONTAINER_K8S_VERSION,
      agentImage: `${c.env.IKONTAINER_K8S_AGENT_IMAGE} (${c.env.IKONTAINER_K8S_AGENT_IMAGE_KIND})`,
      machine: {
        cores: os.cpus().length,
        loadavgAtStart,
        loadavgAtEnd: readFileSync("/proc/loadavg", "utf8").trim(),
        node: process.version,
      },
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
        // chart with a fluentd output only → real fluentd (flush 5 s) → Elasticsearch; one pod at a time
        firstStampedLineInElasticsearch: toEs,
      },
      perPod,
    };
    mkdirSync(join(REPO, "bench/results"), { recursive: true });
    const out = join(REPO, `bench/results/cluster-node-mode-${result.date.replace(/[:.]/g, "-")}.json`);
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(JSON.stringify(result.results, null, 2));
    console.log(out);
  } finally {
    clusterDown();
    await esNode.destroy();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
