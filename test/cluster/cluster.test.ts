import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_NS, installChart, stateDirOf, uninstallChart } from "./chart.js";
import { describeFluentdToEs } from "./fluentd-es.js";
import {
  Cluster,
  clusterDown,
  clusterUp,
  containerLogLines,
  criLines,
  type Pod,
  podLogDir,
  REPO,
  readJsonRecords,
  sleep,
  waitUntil,
} from "./harness.js";
import { describeKustomizeExamples } from "./kustomize-examples.js";
import { describeRelist } from "./relist.js";
import { describeSidecarAndDns } from "./sidecar-dns.js";
import {
  BURST_BATCH_LINES,
  BURST_BATCHES,
  burstWriter,
  deployment,
  linesOfEnded,
  parseLine,
  pod as podManifest,
  steadyWriter,
} from "./workloads.js";

/** A file the kubelet may rotate or gzip away between listing and reading: gone reads as empty. */
const readIfThere = (f: string): string => {
  try {
    return readFileSync(f, "utf8");
  } catch {
    return "";
  }
};
const sizeIfThere = (f: string): number => {
  try {
    return statSync(f).size;
  } catch {
    return -1;
  }
};

/**
 * The chart and node mode on a real single-node Kubernetes (scripts/cluster.sh: etcd, kube-apiserver,
 * controller-manager, scheduler, kubelet, containerd, bridge CNI with a small pod range). Brought up here and
 * torn down after; without root or when it cannot come up, the tests fail (they never skip).
 */

let cluster: Cluster;
let upError: unknown;
const scratch = "/var/tmp/ikontainer-k8s/test-scratch";

beforeAll(() => {
  try {
    cluster = new Cluster(clusterUp());
  } catch (e) {
    upError = e;
  }
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
}, 40 * 60_000);

afterAll(() => {
  if (process.getuid?.() === 0) clusterDown();
}, 180_000);

const ready = () => {
  if (upError) throw upError;
  return cluster;
};

type Rec = Record<string, unknown>;

/** Groups workload records by CUID: which instances (tokens), restart numbers and seqs each CUID carries. */
function byCuid(records: Rec[]) {
  const m = new Map<
    string,
    { insts: Set<string>; restarts: Set<unknown>; seqs: number[]; lines: string[] }
  >();
  for (const r of records) {
    const cuid = String(r.ikontainer_CUID);
    let g = m.get(cuid);
    if (!g) {
      g = { insts: new Set(), restarts: new Set(), seqs: [], lines: [] };
      m.set(cuid, g);
    }
    const p = parseLine(String(r.message));
    if (p) {
      g.insts.add(p.inst);
      g.seqs.push(p.seq);
    }
    g.restarts.add(r.restart);
    g.lines.push(String(r.message));
  }
  return m;
}

const sorted = (xs: string[]) => [...xs].sort();

describe("DaemonSet from the helm chart, file output", () => {
  const release = "ikon-file";
  const out = () => join(stateDirOf(release), "out");
  const ns = "chartns"; // not "shop": the kustomize examples create that one as written
  let web: Pod;
  const appTruth: string[][] = []; // lines of restarts 0, 1, 2 from the kubelet's files
  let burstTotal = 0;

  it("installs with only image and outputs set; the agent runs as the chart's non-root user", async () => {
    const c = ready();
    installChart(c, release, ["file:/var/lib/ikontainer/out"]);
    const agent = await c.runningPod(AGENT_NS, "app.kubernetes.io/name=ikontainer");
    const status = readFileSync(
      `/proc/${c.containerPid(AGENT_NS, agent.metadata.name, "ikontainer")}/status`,
      "utf8",
    );
    expect(/^Uid:\s+(\d+)\s+(\d+)/m.exec(status)?.slice(1)).toEqual(["10001", "10001"]);
    expect(/^Gid:\s+(\d+)/m.exec(status)?.[1]).toBe("10001");
    expect(/^Groups:\s*(.*)$/m.exec(status)?.[1]?.split(/\s+/)).toContain("0");
    expect(/^CapEff:\s+(\w+)/m.exec(status)?.[1]).toBe("0000000000000000");
  }, 300_000);

  it("kills (restarts 1 and 2), kubelet rotation and a pod deletion lose and duplicate nothing; one CUID per instance", async () => {
    const c = ready();
    await c.namespace(ns);
    c.apply(
      deployment(ns, "web", c.env.IKONTAINER_K8S_BUSYBOX_IMAGE, [
        { name: "app", command: steadyWriter("app") },
        { name: "burst", command: burstWriter() },
      ]),
    );
    web = await c.runningPod(ns, "app=web");
    const appDir = podLogDir(web, "app");
    const linesIn = (f: string) => (existsSync(f) ? criLines(readFileSync(f, "utf8")).length : 0);
    const restartsOf = () =>
      c.pod(ns, web.metadata.name).status.containerStatuses?.find((s) => s.name === "app")?.restartCount ?? 0;

    await waitUntil("app 0.log", () => linesIn(join(appDir, "0.log")) >= 40);
    c.killContainer(ns, web.metadata.name, "app");
    await waitUntil("restart 1", () => restartsOf() === 1 && linesIn(join(appDir, "1.log")) >= 40);
    copyFileSync(join(appDir, "0.log"), join(scratch, "app-0.log")); // instance 0 is dead: its file is complete
    c.killContainer(ns, web.metadata.name, "app");
    await waitUntil("restart 2", () => restartsOf() === 2 && linesIn(join(appDir, "2.log")) >= 40);
    // the kubelet keeps only the newest dead container's log
    await waitUntil("0.log deleted by the kubelet", () => !existsSync(join(appDir, "0.log")), {
      stallMs: 30_000,
    });
    copyFileSync(join(appDir, "1.log"), join(scratch, "app-1.log"));

    const burstDir = podLogDir(web, "burst");
    const rotatedSeen = new Set<string>();
    await waitUntil(
      "the burst container's last line",
      () => {
        if (!existsSync(burstDir)) return false;
        // Read the kubelet's files, not `kubectl logs --tail=1`: a rotation right after the last line leaves
        // 0.log empty, and the line is then in the newest rotated file (the kubelet gzips only older ones).
        let done = false;
        for (const f of readdirSync(burstDir)) {
          if (/^0\.log\.\d/.test(f)) rotatedSeen.add(f);
          if (/^0\.log(\.\d+-\d+)?$/.test(f) && readIfThere(join(burstDir, f)).includes("burst done"))
            done = true;
        }
        return done;
      },
      {
        stallMs: 60_000,
        // progress: the burst container's log files keep growing or rotating until its last line
        progress: () =>
          existsSync(burstDir)
            ? readdirSync(burstDir).map((f) => `${f}:${sizeIfThere(join(burstDir, f))}`)
            : [],
      },
    );
    expect(rotatedSeen.size, "the kubelet rotated the burst log").toBeGreaterThan(0);
    burstTotal = BURST_BATCHES * BURST_BATCH_LINES;

    // delete the pod: the agent must finish the files of a pod that is gone
    c.kubectl(["-n", ns, "delete", "deployment", "web", "--wait=false"]);
    await waitUntil("app container exited", () => {
      try {
        const s = c.pod(ns, web.metadata.name).status.containerStatuses?.find((x) => x.name === "app");
        return s?.state.terminated !== undefined || s?.state.running === undefined;
      } catch {
        return true;
      }
    });
    await waitUntil("2.log complete", () => {
      try {
        return c.podsBySelector(ns, "app=web").length === 0;
      } catch {
        return true;
      }
    });
    for (const r of [0, 1]) appTruth[r] = criLines(readFileSync(join(scratch, `app-${r}.log`), "utf8"));
    const podRecords = () =>
      readJsonRecords(out()).filter((r) => r.namespace === ns && r.pod === web.metadata.name);
    // the last instance's own count, from its end line (the kubelet removed the deleted pod's logs)
    let endLine: string | undefined;
    await waitUntil(
      "the last app instance's end line",
      () => {
        endLine = podRecords()
          .map((r) => String(r.message))
          .find((m) => m.startsWith("app-end "));
        return endLine !== undefined;
      },
      { stallMs: 60_000, progress: () => podRecords().length },
    );
    appTruth[2] = linesOfEnded("app", endLine!);
    for (const lines of appTruth) expect(lines.length).toBeGreaterThanOrEqual(40);

    // every written line arrives; then nothing more (no late duplicates)
    const expected = appTruth.flat().length + burstTotal + 1;
    await waitUntil("every workload line in the agent's file output", () => podRecords().length >= expected, {
      stallMs: 60_000,
      progress: () => podRecords().length,
    });
    await sleep(5000);
    const records = podRecords();

    const app = records.filter((r) => r.container === "app");
    const groups = byCuid(app);
    expect(groups.size, "one CUID per app instance (restarts 0, 1, 2)").toBe(3);
    for (const r of [0, 1, 2]) {
      const [cuid, g] = [...groups].find(([, g]) => g.restarts.has(r)) ?? [];
      expect(cuid, `a CUID for restart ${r}`).toBeDefined();
      expect([...g!.restarts]).toEqual([r]);
      expect(g!.insts.size, `restart ${r}: one writer instance behind one CUID`).toBe(1);
      expect(sorted(g!.lines), `restart ${r}: exactly the lines the kubelet wrote`).toEqual(
        sorted(appTruth[r]!),
      );
    }
    for (const r of app) {
      const p = parseLine(String(r.message));
      if (!p) {
        expect(String(r.message)).toMatch(/^app-end /);
        continue;
      }
      expect(r.request_id).toBe(p.rid);
      expect(r.node).toBe(c.env.IKONTAINER_K8S_NODE);
      expect(r.svc).toBe(`app.${ns}.cluster.local`);
    }

    const burst = records.filter((r) => r.container === "burst");
    expect(new Set(burst.map((r) => r.ikontainer_CUID)).size, "one CUID across rotations").toBe(1);
    const seqs = burst
      .map((r) => /burst seq=(\d+)/.exec(String(r.message))?.[1])
      .filter((s) => s !== undefined);
    expect(seqs.length).toBe(burstTotal);
    expect(new Set(seqs).size).toBe(burstTotal);
    expect(burst.filter((r) => String(r.message).startsWith("burst done")).length).toBe(1);
    expect(records.length).toBe(expected);
  }, 600_000);

  it("a pod that gets a freed IP: whois --at names each instance, and their lines never mix", async () => {
    const c = ready();
    const image = c.env.IKONTAINER_K8S_BUSYBOX_IMAGE;
    c.apply(podManifest(ns, "ip-first", image, [{ name: "app", command: steadyWriter("first") }]));
    const first = await c.runningPod(ns, "ip-first");
    const ip = first.status.podIP!;
    await sleep(2000);
    const tFirst = new Date().toISOString();
    await sleep(1000);
    c.kubectl(["-n", ns, "delete", "pod", "ip-first", "--wait=true"]);
    // host-local hands out addresses onward from the last one and wraps within the small range
    let reuser: Pod | undefined;
    for (let n = 1; n <= 12 && !reuser; n++) {
      const name = `ip-next-${n}`;
      c.apply(podManifest(ns, name, image, [{ name: "app", command: steadyWriter(name) }]));
      const p = await c.runningPod(ns, name);
      if (p.status.podIP === ip) reuser = p;
      else c.kubectl(["-n", ns, "delete", "pod", name, "--wait=true"]);
    }
    expect(reuser, `a new pod got the freed IP ${ip}`).toBeDefined();
    await sleep(3000);
    const tSecond = new Date().toISOString();

    const recordsOf = (pod: string) =>
      readJsonRecords(out()).filter((r) => r.namespace === ns && r.pod === pod);
    await waitUntil(
      "lines of both pods",
      () => recordsOf("ip-first").length > 0 && recordsOf(reuser!.metadata.name).length > 0,
    );
    const cuidOf = (pod: string) => [...new Set(recordsOf(pod).map((r) => String(r.ikontainer_CUID)))];
    const [firstCuid, secondCuid] = [cuidOf("ip-first"), cuidOf(reuser!.metadata.name)];
    expect(firstCuid).toHaveLength(1);
    expect(secondCuid).toHaveLength(1);
    expect(firstCuid[0]).not.toBe(secondCuid[0]);

    const whois = (at: string) =>
      JSON.parse(
        execFileSync(
          process.execPath,
          [
            join(REPO, "dist/cli/main.js"),
            "whois",
            ip,
            "--at",
            at,
            "--json",
            "--state-dir",
            stateDirOf(release),
          ],
          { encoding: "utf8" },
        ),
      ) as Array<{ cuid: string; pod?: string }>;
    let before: Array<{ cuid: string; pod?: string }> = [];
    // the agent learns the pod IP from the API server (kube-enrich): allow it to reach the ledger
    await waitUntil(
      `whois ${ip}`,
      () => {
        try {
          before = whois(tFirst);
          return whois(tSecond).length > 0;
        } catch {
          return false;
        }
      },
      { stallMs: 30_000 },
    );
    expect(before.map((m) => m.cuid)).toEqual(firstCuid);
    expect(before[0]?.pod).toBe("ip-first");
    const after = whois(tSecond);
    expect(after.map((m) => m.cuid)).toEqual(secondCuid);
    expect(after[0]?.pod).toBe(reuser!.metadata.name);

    // never mixed: each CUID's lines come from its own writer only
    for (const [pod, tag] of [
      ["ip-first", "first"],
      [reuser!.metadata.name, reuser!.metadata.name],
    ] as const) {
      const recs = recordsOf(pod);
      expect(recs.every((r) => new RegExp(`^${tag}(-end)? inst=`).test(String(r.message)))).toBe(true);
      expect(new Set(recs.map((r) => /inst=(\w+)/.exec(String(r.message))?.[1])).size).toBe(1);
    }
    for (const r of readJsonRecords(out()))
      if (r.ikontainer_CUID === firstCuid[0]) expect(r.pod).toBe("ip-first");
    c.kubectl(["-n", ns, "delete", "pod", reuser!.metadata.name, "--wait=false"]);
    uninstallChart(c, release);
  }, 600_000);
});

describe("DaemonSet with outputs={stdout} (issue 15): the agent never re-reads its own output", () => {
  const release = "ikon-stdout";
  const ns = "echo";

  it("each workload line once, one CUID per instance, no record of the agent's own log", async () => {
    const c = ready();
    installChart(c, release, ["stdout"]);
    const agent = await c.runningPod(AGENT_NS, `app.kubernetes.io/instance=${release}`);
    const agentDir = podLogDir(agent, "ikontainer");
    await c.namespace(ns);
    c.apply(
      deployment(ns, "talker", c.env.IKONTAINER_K8S_BUSYBOX_IMAGE, [
        { name: "app", command: steadyWriter("talk") },
      ]),
    );
    const talker = await c.runningPod(ns, "app=talker");
    const appDir = podLogDir(talker, "app");
    const agentRecords = () =>
      containerLogLines(agentDir)
        .filter((l) => l.startsWith("{") && l.includes("ikontainer_CUID"))
        .map((l) => JSON.parse(l) as Rec);
    const written = () =>
      [0, 1, 2].flatMap((r) =>
        existsSync(join(appDir, `${r}.log`)) ? criLines(readFileSync(join(appDir, `${r}.log`), "utf8")) : [],
      );
    // fail fast if the loop starts: a record seen twice, or the agent's own pod among the stamped records
    const check = () => {
      const recs = agentRecords();
      const own = recs.filter(
        (r) => r.pod === agent.metadata.name || String(r.source ?? "").includes(agent.metadata.uid),
      );
      expect(own.length, "records of the agent's own container log").toBe(0);
      const msgs = recs
        .filter((r) => r.pod === talker.metadata.name)
        .map((r) => `${r.ikontainer_CUID} ${r.message}`);
      expect(new Set(msgs).size, "duplicated records").toBe(msgs.length);
      return recs;
    };
    const guard = (cond: () => boolean) => () => {
      check();
      return cond();
    };
    const restartsOf = () =>
      c.pod(ns, talker.metadata.name).status.containerStatuses?.find((s) => s.name === "app")?.restartCount ??
      0;
    const truth: string[][] = [];
    await waitUntil(
      "talker lines",
      guard(() => written().length >= 40),
    );
    c.killContainer(ns, talker.metadata.name, "app");
    await waitUntil(
      "restart 1",
      guard(() => restartsOf() === 1),
    );
    await waitUntil(
      "1.log",
      guard(() => existsSync(join(appDir, "1.log"))),
    );
    truth[0] = criLines(readFileSync(join(appDir, "0.log"), "utf8"));
    c.killContainer(ns, talker.metadata.name, "app");
    await waitUntil(
      "restart 2",
      guard(() => restartsOf() === 2),
    );
    truth[1] = criLines(readFileSync(join(appDir, "1.log"), "utf8"));
    await sleep(3000);
    c.kubectl(["-n", ns, "scale", "deployment", "talker", "--replicas=0"]);
    await waitUntil(
      "talker stopped",
      guard(() => c.podsBySelector(ns, "app=talker").length === 0),
    );
    const talkerRecords = () => check().filter((r) => r.pod === talker.metadata.name);
    let endLine: string | undefined;
    await waitUntil(
      "the last talker instance's end line",
      guard(() => {
        endLine = talkerRecords()
          .map((r) => String(r.message))
          .find((m) => m.startsWith("talk-end "));
        return endLine !== undefined;
      }),
      { stallMs: 60_000, progress: () => talkerRecords().length },
    );
    truth[2] = linesOfEnded("talk", endLine!);
    const total = truth.flat().length;
    await waitUntil("every talker line on the agent's stdout", () => talkerRecords().length >= total, {
      stallMs: 60_000,
      progress: () => talkerRecords().length,
    });
    await sleep(5000);
    const recs = talkerRecords();
    expect(recs.length).toBe(total);
    const groups = byCuid(recs);
    expect(groups.size).toBe(3);
    for (const r of [0, 1, 2]) {
      const g = [...groups.values()].find((x) => x.restarts.has(r))!;
      expect([...g.restarts]).toEqual([r]);
      expect(sorted(g.lines)).toEqual(sorted(truth[r]!));
    }
    uninstallChart(c, release);
  }, 600_000);
});

describeSidecarAndDns(ready, scratch);
describeKustomizeExamples(ready, scratch);
describeRelist(ready);
describeFluentdToEs(ready, scratch);
