import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AGENT_NS, installChart, stateDirOf, uninstallChart } from "./chart.js";
import { type Cluster, containerLogLines, podLogDir, REPO, readJsonRecords, waitUntil } from "./harness.js";
import { pod as podManifest, steadyWriter } from "./workloads.js";

/**
 * --kube-enrich against the real API server when its watch answers 410 Gone: `scripts/cluster.sh
 * restart-apiserver` compacts etcd past every watcher's resourceVersion and restarts the API server, so the
 * agent's next watch is too old. The agent must list again and go on: a pod created and a label changed
 * after the outage both reach the records.
 */
export function describeRelist(ready: () => Cluster): void {
  describe("kube-enrich: a forced 410 Gone from the real API server", () => {
    const release = "ikon-relist";
    const ns = "relist";
    type Rec = Record<string, unknown>;
    const recordsOf = (pod: string): Rec[] =>
      readJsonRecords(join(stateDirOf(release), "out")).filter((r) => r.namespace === ns && r.pod === pod);

    it("the agent relists and loses no pod or label change", async () => {
      const c = ready();
      installChart(c, release, ["file:/var/lib/ikontainer/out"]);
      const agent = await c.runningPod(AGENT_NS, `app.kubernetes.io/instance=${release}`);
      const agentLog = () => containerLogLines(podLogDir(agent, "ikontainer")).join("\n");
      await c.namespace(ns);
      const image = c.env.IKONTAINER_K8S_BUSYBOX_IMAGE;
      c.apply(podManifest(ns, "early", image, [{ name: "app", command: steadyWriter("early") }]));
      const early = await c.runningPod(ns, "early");
      await waitUntil(
        "early's records enriched",
        () => recordsOf("early").some((r) => r.pod_ip === early.status.podIP && r["labels.app"] === "early"),
        { stallMs: 60_000 },
      );
      expect(agentLog()).not.toContain("resourceVersion expired");

      execFileSync("sh", [join(REPO, "scripts/cluster.sh"), "restart-apiserver"], {
        stdio: ["ignore", "inherit", "inherit"],
        timeout: 300_000,
      });
      // changes the agent can only learn from a new list or a new watch
      c.kubectl(["-n", ns, "label", "pod", "early", "phase=after-gone"]);
      c.apply(podManifest(ns, "late", image, [{ name: "app", command: steadyWriter("late") }]));
      const late = await c.runningPod(ns, "late");

      await waitUntil(
        "the agent's relist after 410",
        () => agentLog().includes("(410 Gone); listing pods again"),
        {
          stallMs: 90_000,
        },
      );
      await waitUntil(
        "late's records enriched",
        () => recordsOf("late").some((r) => r.pod_ip === late.status.podIP && r["labels.app"] === "late"),
        // not the record count as progress: lines keep coming whether or not the agent learnt the pod
        { stallMs: 60_000 },
      );
      await waitUntil(
        "early's new label",
        () => recordsOf("early").some((r) => r["labels.phase"] === "after-gone"),
        { stallMs: 60_000 },
      );
      // one CUID per pod throughout
      for (const p of ["early", "late"])
        expect(new Set(recordsOf(p).map((r) => r.ikontainer_CUID)).size).toBe(1);
      c.kubectl(["delete", "namespace", ns, "--wait=false"]);
      uninstallChart(c, release);
    }, 600_000);
  });
}
