import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { sharedElasticsearch } from "../fixtures/elasticsearch.js";
import type { RealFluentd } from "../fixtures/fluentd.js";
import { docs, pipelineFluentd } from "../fluentd/pipeline.js";
import { installChartWithFluentd, stateDirOf, uninstallChart } from "./chart.js";
import { type Cluster, REPO, sleep, waitUntil } from "./harness.js";
import { linesOfEnded, pod as podManifest, steadyWriter } from "./workloads.js";

/**
 * The chart's DaemonSet → real fluentd (the shipped fluent.conf: in_forward with TLS and a shared key, on the
 * bridge's gateway address) → Elasticsearch (the run's shared node on 127.0.0.1), with the CA and the shared
 * key from the Secrets docs/deploy.md creates. Found again with `logs --es --cuid --request-id`.
 */
export function describeFluentdToEs(ready: () => Cluster, scratch: string): void {
  describe("DaemonSet → real fluentd on the bridge → Elasticsearch", () => {
    const release = "ikon-es";
    const ns = "esns";
    let fluentd: RealFluentd | undefined;
    afterAll(async () => {
      await fluentd?.stop(); // scripts/fluentd.sh stop: by the PID in its folder
    }, 90_000);

    /** The CUID node mode gave a container instance, from the agent's ledger on the host. */
    const cuidOf = (pod: string): string | undefined => {
      let text = "";
      try {
        text = readFileSync(join(stateDirOf(release), "node-cuids.jsonl"), "utf8");
      } catch {
        return undefined;
      }
      for (const l of text.split("\n")) {
        if (!l.startsWith("{")) continue;
        const e = JSON.parse(l) as { cuid: string; namespace?: string; pod?: string; container?: string };
        if (e.namespace === ns && e.pod === pod && e.container === "app") return e.cuid;
      }
      return undefined;
    };

    it("every line of a pod once in Elasticsearch, under its CUID; logs --es --cuid --request-id and trace find it", async () => {
      const c = ready();
      const gateway = c.env.IKONTAINER_K8S_GATEWAY;
      const url = await sharedElasticsearch();
      fluentd = await pipelineFluentd(url, "cluster", gateway);
      await fluentd.start();
      installChartWithFluentd(c, release, fluentd, scratch);

      await c.namespace(ns);
      c.apply(
        podManifest(ns, "es-app", c.env.IKONTAINER_K8S_BUSYBOX_IMAGE, [
          { name: "app", command: steadyWriter("es") },
        ]),
      );
      const podIp = (await c.runningPod(ns, "es-app")).status.podIP;
      let cuid: string | undefined;
      await waitUntil(
        "the instance's CUID in the agent's ledger",
        () => {
          cuid = cuidOf("es-app");
          return cuid !== undefined;
        },
        {
          stallMs: 60_000,
        },
      );
      const stored = () => docs(url, fluentd!.o.indexPrefix, cuid);
      // while waiting: a search right after fluentd created the index can meet unassigned shards (503)
      const storedSoFar = () => stored().catch(() => undefined);
      let seen = 0;
      await waitUntil(
        "the first lines in Elasticsearch",
        async () => {
          const d = await storedSoFar();
          if (d) seen = d.length;
          return seen >= 40;
        },
        { stallMs: 90_000, progress: () => seen },
      );
      c.kubectl(["-n", ns, "delete", "pod", "es-app", "--wait=true"]);
      let end: string | undefined;
      await waitUntil(
        "the end line in Elasticsearch",
        async () => {
          const d = await storedSoFar();
          if (!d) return false;
          seen = d.length;
          end = d.map((x) => x.message).find((m) => m.startsWith("es-end "));
          return end !== undefined;
        },
        { stallMs: 90_000, progress: () => seen },
      );
      const truth = linesOfEnded("es", end!);
      await waitUntil(
        "every line in Elasticsearch",
        async () => {
          const d = await storedSoFar();
          if (d) seen = d.length;
          return seen >= truth.length;
        },
        {
          stallMs: 90_000,
          progress: () => seen,
        },
      );
      await sleep(6000); // fluentd flushes every 5 s: a duplicate would show up by now
      const d = await stored();
      expect(d.map((x) => x.message).sort()).toEqual([...truth].sort());
      expect(new Set(d.map((x) => x._id)).size).toBe(truth.length);
      expect(
        d.every((x) => x.version === 1),
        "no document written twice",
      ).toBe(true);

      // the last request before SIGTERM: by then kube-enrich knows the pod IP for certain
      const asked = truth[truth.length - 2]!;
      const rid = /x-request-id=(\S+)/.exec(asked)![1]!;
      const found = execFileSync(
        process.execPath,
        [
          join(REPO, "dist/cli/main.js"),
          "logs",
          "--es",
          url,
          "--es-index-prefix",
          fluentd.o.indexPrefix,
          "--cuid",
          cuid!,
          "--request-id",
          rid,
          "--json",
        ],
        { encoding: "utf8" },
      )
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { message: string; pod?: string; namespace?: string });
      expect(found.map((r) => r.message)).toEqual([asked]);
      expect(found[0]).toMatchObject({ pod: "es-app", namespace: ns });
      // trace: the request's hops over Elasticsearch; one instance here, with the pod IP kube-enrich added
      const trace = JSON.parse(
        execFileSync(
          process.execPath,
          [
            join(REPO, "dist/cli/main.js"),
            "trace",
            rid,
            "--es",
            url,
            "--es-index-prefix",
            fluentd.o.indexPrefix,
            "--json",
          ],
          { encoding: "utf8" },
        ),
      ) as { hops: Array<Record<string, unknown>> };
      expect(trace.hops).toHaveLength(1);
      expect(trace.hops[0]).toMatchObject({ cuid, svc: `app.${ns}.cluster.local`, pod_ip: podIp });
      uninstallChart(c, release);
      c.kubectl(["delete", "namespace", ns, "--wait=false"]);
    }, 600_000);
  });
}
