import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { es, sharedElasticsearch } from "../fixtures/elasticsearch.js";
import type { RealFluentd } from "../fixtures/fluentd.js";
import { type KnotServer, startKnot } from "../fixtures/knot.js";
import { pipelineFluentd } from "../fluentd/pipeline.js";
import { type Cluster, emptyDirOf, type Pod, REPO, waitUntil } from "./harness.js";

/**
 * deploy/kustomize/sidecar and deploy/kustomize/exec applied as written (`kubectl apply -k deploy/kustomize/X`),
 * after what a user does first: the namespace and the Secrets the examples reference (docs/deploy.md). What
 * the examples reach: `fluentd.logging.svc.cluster.local:24224`, resolved through the cluster DNS the kubelet
 * hands to pods (scripts/cluster.sh: clusterDNS = the bridge's gateway) where a real Knot serves cluster.local,
 * and answered by real fluentd (the shipped config: TLS with a certificate for that name, shared key) on the
 * gateway, which writes to the run's Elasticsearch. The images are the names the examples resolve to
 * (tagged at import by scripts/cluster/images.sh), so nothing is pulled.
 */
const NS = "shop"; // the examples' own namespace
const FLUENTD_NAME = "fluentd.logging.svc.cluster.local";

interface EsRecord {
  ikontainer_CUID?: string;
  pod?: string;
  namespace?: string;
  pod_ip?: string;
  request_id?: string;
  message?: string;
}

/** The CUID the pod's agent keeps in its state emptyDir (cuid.json); undefined until it is written. */
function cuidOfPod(p: Pod): string | undefined {
  try {
    return (JSON.parse(readFileSync(join(emptyDirOf(p, "state"), "cuid.json"), "utf8")) as { cuid: string })
      .cuid;
  } catch {
    return undefined;
  }
}

/** Every document fluentd wrote under this prefix (all of them: attribution is checked on each). */
async function allRecords(url: string, prefix: string): Promise<EsRecord[]> {
  await es(url, "POST", `/${prefix}-*/_refresh?ignore_unavailable=true&allow_no_indices=true`);
  const r = await es<{ hits: { hits: Array<{ _source: EsRecord }> } }>(
    url,
    "POST",
    `/${prefix}-*/_search?ignore_unavailable=true&allow_no_indices=true`,
    { size: 10_000, query: { match_all: {} } },
  );
  return (r.hits?.hits ?? []).map((h) => h._source);
}

export function describeKustomizeExamples(ready: () => Cluster, scratch: string): void {
  describe("the kustomize sidecar and exec examples, as written (kubectl apply -k)", () => {
    let knot: KnotServer | undefined;
    let fluentd: RealFluentd | undefined;
    afterAll(async () => {
      await knot?.stop(); // by its PID
      await fluentd?.stop(); // scripts/fluentd.sh stop: by the PID in its folder
    }, 90_000);

    it("run on the kubelet; every line reaches fluentd and Elasticsearch under its own pod's CUID", async () => {
      const c = ready();
      const gateway = c.env.IKONTAINER_K8S_GATEWAY;
      const url = await sharedElasticsearch();
      fluentd = await pipelineFluentd(url, "kustomize", gateway, { port: 24224, dnsNames: [FLUENTD_NAME] });
      await fluentd.start();
      // the cluster DNS: cluster.local with the fluentd Service's name on the gateway
      knot = await startKnot({
        host: gateway,
        port: 53,
        zone: "cluster.local",
        records: [`${FLUENTD_NAME.replace(/\.cluster\.local$/, "")} A ${gateway}`],
      });
      expect(await knot.dig(FLUENTD_NAME, "A")).toEqual([gateway]);

      await c.namespace(NS);
      // the Secrets, as docs/deploy.md creates them (files, never literals on a command line)
      const keyFile = join(scratch, "kx-shared-key");
      writeFileSync(keyFile, fluentd.o.sharedKey, { mode: 0o600 });
      c.kubectl([
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "fluentd-forward",
        `--from-file=shared-key=${keyFile}`,
      ]);
      c.kubectl([
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "fluentd-tls",
        `--from-file=ca.crt=${fluentd.tls.ca}`,
      ]);
      for (const example of ["sidecar", "exec"])
        c.kubectl(["apply", "-k", join(REPO, "deploy/kustomize", example)]);

      const running = (sel: string, n: number) => {
        let pods: Pod[] = [];
        return waitUntil(`${n} pod(s) ${sel}`, () => {
          pods = c
            .podsBySelector(NS, sel)
            .filter(
              (p) =>
                p.status.phase === "Running" &&
                !p.metadata.deletionTimestamp &&
                (p.status.containerStatuses ?? []).every((s) => s.state.running),
            );
          return pods.length === n;
        }).then(() => pods);
      };
      const pods = [...(await running("app=web", 2)), ...(await running("app=worker", 1))];
      const cuidByPod = new Map<string, string>();
      for (const p of pods) {
        await waitUntil(`${p.metadata.name}: its CUID`, () => cuidOfPod(p) !== undefined, {
          stallMs: 60_000,
        });
        cuidByPod.set(p.metadata.name, cuidOfPod(p)!);
      }
      expect(new Set(cuidByPod.values()).size, "one CUID per pod").toBe(3);

      let recs: EsRecord[] = [];
      const countOf = (name: string) => recs.filter((r) => r.pod === name).length;
      await waitUntil(
        "stamped lines of every pod in Elasticsearch",
        async () => {
          recs = await allRecords(url, fluentd!.o.indexPrefix).catch(() => recs);
          return pods.every((p) => countOf(p.metadata.name) >= 3);
        },
        { stallMs: 90_000, progress: () => recs.length },
      );
      const ipOf = new Map(pods.map((p) => [p.metadata.name, p.status.podIP]));
      for (const r of recs) {
        // every line arriving is attributed: its pod (Downward API) and that pod's own CUID
        expect(cuidByPod.has(r.pod ?? ""), `a line of an unknown pod: ${JSON.stringify(r)}`).toBe(true);
        expect(r.ikontainer_CUID).toBe(cuidByPod.get(r.pod!));
        expect(r).toMatchObject({ namespace: NS, pod_ip: ipOf.get(r.pod!) });
        expect(String(r.request_id)).toMatch(r.pod!.startsWith("web-") ? /^req-\d+$/ : /^job-\d+$/);
      }
      // exec mode also passes the child's lines on to the container's stdout
      const worker = pods.find((p) => p.metadata.name.startsWith("worker-"))!;
      expect(c.kubectl(["-n", NS, "logs", worker.metadata.name, "-c", "worker"])).toMatch(/job \d+ done/);
      c.kubectl(["delete", "namespace", NS, "--wait=false"]);
    }, 600_000);
  });
}
