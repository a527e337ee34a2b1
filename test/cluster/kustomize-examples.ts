import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { type Cluster, emptyDirOf, type Pod, REPO, readJsonRecords, waitUntil } from "./harness.js";

/**
 * deploy/kustomize/sidecar and deploy/kustomize/exec applied with `kubectl apply -k`, through an overlay that
 * changes only what this machine needs: the namespace, the images (no registry here) and the output (no
 * fluentd Service: pods here have no cluster DNS, so records go to a file in the state emptyDir). The
 * Secrets the examples reference are created first, as docs/deploy.md says.
 */
const NS = "kx";

/** The index of an example container's `--output` value, for the overlay's JSON patch. */
function outputArgIndex(example: string, container: string): number {
  const doc = parseYaml(readFileSync(join(REPO, "deploy/kustomize", example, "deployment.yaml"), "utf8")) as {
    spec: { template: { spec: { containers: Array<{ name: string; args: string[] }> } } };
  };
  const args = doc.spec.template.spec.containers.find((x) => x.name === container)!.args;
  return args.indexOf("--output") + 1;
}

function overlay(c: Cluster, dir: string, example: string, kind: string, name: string, container: string) {
  mkdirSync(dir, { recursive: true });
  const containers = (
    parseYaml(readFileSync(join(REPO, "deploy/kustomize", example, "deployment.yaml"), "utf8")) as {
      spec: { template: { spec: { containers: Array<{ name: string }> } } };
    }
  ).spec.template.spec.containers.map((x) => x.name);
  const at = containers.indexOf(container);
  const [agentRepo, agentTag] = c.env.IKONTAINER_K8S_AGENT_IMAGE.split(":");
  const [bbRepo, bbTag] = c.env.IKONTAINER_K8S_BUSYBOX_IMAGE.split(":");
  writeFileSync(
    join(dir, "kustomization.yaml"),
    JSON.stringify({
      apiVersion: "kustomize.config.k8s.io/v1beta1",
      kind: "Kustomization",
      namespace: NS,
      // kustomize takes another kustomization only by a relative path
      resources: [relative(dir, join(REPO, "deploy/kustomize", example))],
      images: [
        { name: "ikontainer", newName: agentRepo, newTag: agentTag },
        { name: "busybox", newName: bbRepo, newTag: bbTag },
      ],
      patches: [
        {
          target: { kind, name },
          patch: JSON.stringify([
            {
              op: "replace",
              path: `/spec/template/spec/containers/${at}/args/${outputArgIndex(example, container)}`,
              value: "file:/var/lib/ikontainer/out",
            },
            ...containers.map((_, i) => ({
              op: "add",
              path: `/spec/template/spec/containers/${i}/imagePullPolicy`,
              value: "Never",
            })),
          ]),
        },
      ],
    }),
  );
}

export function describeKustomizeExamples(ready: () => Cluster, scratch: string): void {
  describe("the kustomize sidecar and exec examples (kubectl apply -k)", () => {
    it("run on the kubelet and stamp every line with their pod's CUID", async () => {
      const c = ready();
      await c.namespace(NS);
      // the Secrets the examples reference (values are placeholders: the output here is a file)
      c.kubectl([
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "fluentd-forward",
        "--from-literal=shared-key=unused-here",
      ]);
      c.kubectl([
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "fluentd-tls",
        "--from-literal=ca.crt=unused-here",
      ]);
      for (const [example, name, container] of [
        ["sidecar", "web", "ikontainer"],
        ["exec", "worker", "worker"],
      ] as const) {
        const dir = join(scratch, `kustomize-${example}`);
        overlay(c, dir, example, "Deployment", name, container);
        c.kubectl(["apply", "-k", dir]);
      }
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
      const web = await running("app=web", 2);
      const worker = await running("app=worker", 1);
      const recs = (p: Pod) => readJsonRecords(join(emptyDirOf(p, "state"), "out"));
      const cuids = new Set<string>();
      for (const p of [...web, ...worker]) {
        await waitUntil(`${p.metadata.name}: stamped lines`, () => recs(p).length >= 2, { stallMs: 60_000 });
        const got = recs(p);
        const cuid = (
          JSON.parse(readFileSync(join(emptyDirOf(p, "state"), "cuid.json"), "utf8")) as { cuid: string }
        ).cuid;
        cuids.add(cuid);
        for (const r of got) {
          expect(r.ikontainer_CUID).toBe(cuid);
          expect(r).toMatchObject({ pod: p.metadata.name, namespace: NS, pod_ip: p.status.podIP });
          expect(String(r.request_id)).toMatch(/^(req|job)-\d+$/);
        }
      }
      expect(cuids.size, "one CUID per pod").toBe(3);
      // exec mode also passes the child's lines on to the container's stdout
      expect(c.kubectl(["-n", NS, "logs", worker[0]!.metadata.name, "-c", "worker"])).toMatch(/job \d+ done/);
      c.kubectl(["delete", "namespace", NS, "--wait=false"]);
    }, 600_000);
  });
}
