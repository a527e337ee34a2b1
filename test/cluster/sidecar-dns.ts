import { execFileSync } from "node:child_process";
import { chmodSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { type KnotServer, startKnot } from "../fixtures/knot.js";
import { checkResolveAndProxyFollowRollout } from "./dns-rollout.js";
import { type Cluster, emptyDirOf, type Pod, REPO, readJsonRecords, waitUntil } from "./harness.js";

/**
 * The sidecar patch (deploy/patches/ikontainer-sidecar.yaml) applied with `kubectl patch` to a running
 * Deployment (deploy/patches/existing-app.yaml), as docs/deploy.md says, plus what this test machine needs
 * (cluster images, output to a file in the state emptyDir, DNS registration in a real Knot on the bridge's
 * gateway address with the TSIG key from a Secret). Checked from the host's view of the pods' emptyDirs, and
 * DNS from inside the pods.
 */

type Rec = Record<string, unknown>;
const NS = "side";
const ZONE = "ikontainer.test";
const REVERSE_ZONE = "77.244.10.in-addr.arpa";
const PATCH = join(REPO, "deploy/patches/ikontainer-sidecar.yaml");
const OUT_IN_STATE = "/var/lib/ikontainer/out";

const lines = (f: string): string[] => {
  try {
    return readFileSync(f, "utf8")
      .split("\n")
      .filter((l) => l !== "");
  } catch {
    return [];
  }
};

/** The documented args with the output pointed at the state emptyDir and DNS registration added. */
function testArgs(documented: string[], gateway: string): string[] {
  const args = [...documented];
  args[args.indexOf("--output") + 1] = `file:${OUT_IN_STATE}`;
  return [
    ...args,
    "--ddns-server",
    `${gateway}:53`,
    "--zone",
    ZONE,
    "--reverse-zone",
    REVERSE_ZONE,
    "--tsig-file",
    "/etc/ikontainer/tsig/tsig.key",
    "--port",
    "metrics:9464/tcp",
    // short, so `ddns gc` may remove a killed sidecar's records within the test
    "--lease",
    "20s",
  ];
}

export function describeSidecarAndDns(ready: () => Cluster, scratch: string): void {
  describe("sidecar patch on a running Deployment; DNS registration in Knot, resolved from pods", () => {
    let knot: KnotServer | undefined;
    afterAll(async () => {
      await knot?.stop(); // by its PID
    });

    const webPods = (c: Cluster): Pod[] =>
      c
        .podsBySelector(NS, "app=web")
        .filter(
          (p) =>
            p.status.phase === "Running" &&
            !p.metadata.deletionTimestamp &&
            (p.status.containerStatuses ?? []).length >= 2 &&
            (p.status.containerStatuses ?? []).every((s) => s.state.running),
        );
    const recordsOf = (p: Pod): Rec[] => readJsonRecords(join(emptyDirOf(p, "state"), "out"));
    const appLines = (p: Pod): string[] => lines(join(emptyDirOf(p, "app-logs"), "access.log"));
    const cuidOf = (p: Pod): string =>
      (JSON.parse(readFileSync(join(emptyDirOf(p, "state"), "cuid.json"), "utf8")) as { cuid: string }).cuid;
    /** Every line the app wrote up to now arrives once, in order, under the pod's own CUID. */
    const checkExactlyOnce = async (p: Pod, cuid: string) => {
      const truth = appLines(p);
      expect(truth.length).toBeGreaterThan(0);
      await waitUntil(
        `${p.metadata.name}: the sidecar caught up`,
        () => recordsOf(p).length >= truth.length,
        {
          stallMs: 60_000,
          progress: () => recordsOf(p).length,
        },
      );
      const recs = recordsOf(p);
      const all = appLines(p);
      expect(
        recs.map((r) => r.message),
        "no line lost or duplicated",
      ).toEqual(all.slice(0, recs.length));
      for (const r of recs) {
        expect(r.ikontainer_CUID).toBe(cuid);
        expect(r.request_id).toBe(/request_id=(\S+)/.exec(String(r.message))?.[1]);
      }
    };
    const inPod = (c: Cluster, p: Pod, container: string, cmd: string[]) =>
      c.kubectl(["-n", NS, "exec", p.metadata.name, "-c", container, "--", ...cmd]);
    const nslookup = (c: Cluster, p: Pod, type: string, name: string) => {
      try {
        return inPod(c, p, "app", ["nslookup", `-type=${type}`, name, c.env.IKONTAINER_K8S_GATEWAY]);
      } catch (e) {
        return String((e as { stdout?: string }).stdout ?? "");
      }
    };

    let pods: Pod[] = [];
    const cuids = new Map<string, string>();

    it("kubectl patch with the documented file: pod fields from the Downward API, one CUID per pod, nothing lost across a sidecar kill", async () => {
      const c = ready();
      const gateway = c.env.IKONTAINER_K8S_GATEWAY;
      knot = await startKnot({ host: gateway, port: 53, zone: ZONE, reverseZone: REVERSE_ZONE });
      await c.namespace(NS);
      // the TSIG key reaches the pod only as a Secret mounted as a file (never inlined, never an argument)
      const keyFile = join(scratch, "tsig.key");
      writeFileSync(keyFile, `${knot.tsig}\n`, { mode: 0o600 });
      chmodSync(keyFile, 0o600);
      c.kubectl(["-n", NS, "create", "secret", "generic", "ddns-tsig", `--from-file=tsig.key=${keyFile}`]);
      rmSync(keyFile);

      const app = parseYaml(readFileSync(join(REPO, "deploy/patches/existing-app.yaml"), "utf8")) as {
        metadata: { namespace: string };
        spec: { template: { spec: { containers: Array<{ image: string; imagePullPolicy?: string }> } } };
      };
      app.metadata.namespace = NS;
      for (const ct of app.spec.template.spec.containers) {
        ct.image = c.env.IKONTAINER_K8S_BUSYBOX_IMAGE;
        ct.imagePullPolicy = "Never";
      }
      c.apply(app);
      await c.runningPod(NS, "app=web");

      // as docs/deploy.md: the patch on the running Deployment; then this machine's settings, one rollout
      c.kubectl(["-n", NS, "rollout", "pause", "deployment/web"]);
      c.kubectl(["-n", NS, "patch", "deployment", "web", "--type", "strategic", "--patch-file", PATCH]);
      const documented = (
        parseYaml(readFileSync(PATCH, "utf8")) as {
          spec: { template: { spec: { containers: Array<{ name: string; args?: string[] }> } } };
        }
      ).spec.template.spec.containers.find((x) => x.name === "ikontainer")!.args!;
      const here = {
        spec: {
          template: {
            spec: {
              containers: [
                {
                  name: "ikontainer",
                  image: c.env.IKONTAINER_K8S_AGENT_IMAGE,
                  imagePullPolicy: "Never",
                  args: testArgs(documented, gateway),
                  volumeMounts: [{ name: "tsig", mountPath: "/etc/ikontainer/tsig", readOnly: true }],
                },
              ],
              volumes: [{ name: "tsig", secret: { secretName: "ddns-tsig", defaultMode: 0o440 } }],
            },
          },
        },
      };
      c.kubectl(["-n", NS, "patch", "deployment", "web", "--type", "strategic", "-p", JSON.stringify(here)]);
      c.kubectl(["-n", NS, "rollout", "resume", "deployment/web"]);
      c.kubectl(["-n", NS, "rollout", "status", "deployment/web", "--timeout=240s"]);
      await waitUntil("two patched pods running", () => {
        pods = webPods(c);
        return pods.length === 2;
      });
      for (const p of pods) {
        await waitUntil(`${p.metadata.name}: records`, () => recordsOf(p).length >= 3, { stallMs: 60_000 });
        cuids.set(p.metadata.name, cuidOf(p));
        const r = recordsOf(p)[0]!;
        expect(r).toMatchObject({
          pod: p.metadata.name,
          namespace: NS,
          node: c.env.IKONTAINER_K8S_NODE,
          pod_ip: p.status.podIP,
          pod_uid: p.metadata.uid,
          svc: `web.${NS}.cluster.local`,
        });
      }
      expect(new Set(cuids.values()).size, "one CUID per pod").toBe(2);

      // SIGKILL the first pod's sidecar: the kubelet restarts it with the same emptyDirs (same CUID, checkpoints)
      const [victim] = pods;
      const sidecarRestarts = () =>
        c.pod(NS, victim!.metadata.name).status.containerStatuses?.find((s) => s.name === "ikontainer")
          ?.restartCount ?? 0;
      c.killContainer(NS, victim!.metadata.name, "ikontainer");
      await waitUntil("the sidecar restarted", () => sidecarRestarts() === 1);
      const before = appLines(victim!).length;
      await waitUntil("the app wrote on after the kill", () => appLines(victim!).length >= before + 5, {
        stallMs: 30_000,
      });
      for (const p of pods) await checkExactlyOnce(p, cuids.get(p.metadata.name)!);
      expect(cuidOf(victim!)).toBe(cuids.get(victim!.metadata.name));
    }, 600_000);

    it("each sidecar's A, TXT (with its CUID), SRV and PTR records resolve from inside a pod; a deleted pod's go; a killed pod's IP reused: ddns gc keeps the new owner's", async () => {
      const c = ready();
      const k = knot!;
      const nameOf = (p: Pod) => `${cuids.get(p.metadata.name)}.web.${NS}.${ZONE}`;
      const ptrOf = (ip: string) => `${ip.split(".").reverse().join(".")}.in-addr.arpa`;
      for (const p of pods)
        await waitUntil(`${nameOf(p)} in Knot`, async () => (await k.dig(nameOf(p), "A")).length > 0, {
          stallMs: 60_000,
        });
      const [asker] = pods;
      for (const p of pods) {
        // busybox's resolver in the app container, asking Knot on the bridge's gateway address
        expect(nslookup(c, asker!, "a", nameOf(p))).toMatch(new RegExp(`Address:\\s+${p.status.podIP}\\b`));
        // busybox prints a TXT record's first string only (cuid=…); kdig on the host shows them all
        expect(nslookup(c, asker!, "txt", nameOf(p))).toContain(`"cuid=${cuids.get(p.metadata.name)}"`);
        const txt = (await k.dig(nameOf(p), "TXT")).join(" ");
        expect(txt).toContain(`"cuid=${cuids.get(p.metadata.name)}"`);
        expect(txt).toContain(`"pod=${p.metadata.name}"`);
        expect(nslookup(c, asker!, "ptr", ptrOf(p.status.podIP!))).toContain(nameOf(p));
      }
      const srv = nslookup(c, asker!, "srv", `_metrics._tcp.web.${NS}.${ZONE}`);
      for (const p of pods) expect(srv).toContain(`9464 ${nameOf(p)}`);
      // the project's own resolver, from inside the sidecar container
      const resolved = inPod(c, asker!, "ikontainer", [
        "node",
        "/app/dist/cli/main.js",
        "resolve",
        `web.${NS}.${ZONE}`,
        "--dns-server",
        `${c.env.IKONTAINER_K8S_GATEWAY}:53`,
        "--zone",
        ZONE,
        "--json",
      ])
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { cuid?: string; address?: string; pod?: string });
      expect(resolved.map((r) => r.cuid).sort()).toEqual([...cuids.values()].sort());
      for (const p of pods)
        expect(resolved.find((r) => r.cuid === cuids.get(p.metadata.name))?.address).toBe(p.status.podIP);

      // deleting a pod: its sidecar deregisters at SIGTERM; the replacement registers under its own CUID
      const gone = pods[1]!;
      c.kubectl(["-n", NS, "delete", "pod", gone.metadata.name, "--grace-period=3", "--wait=true"]);
      expect(await k.dig(nameOf(gone), "ANY")).toEqual([]);
      const ptr = await k.dig(ptrOf(gone.status.podIP!), "PTR");
      expect(ptr).not.toContain(`${nameOf(gone)}.`);
      expect(await k.dig(nameOf(pods[0]!), "A"), "the other pod's records stay").toEqual([
        pods[0]!.status.podIP,
      ]);

      const seen = new Set(pods.map((p) => p.metadata.uid));
      /** The Deployment's next new pod, once its sidecar has written its CUID. */
      const nextReplacement = async (): Promise<Pod> => {
        let next: Pod | undefined;
        await waitUntil("the replacement pod", () => {
          next = webPods(c).find((p) => !seen.has(p.metadata.uid));
          return next !== undefined;
        });
        seen.add(next!.metadata.uid);
        await waitUntil("the replacement's CUID", () => {
          try {
            cuids.set(next!.metadata.name, cuidOf(next!));
            return true;
          } catch {
            return false;
          }
        });
        return next!;
      };
      /** Its registration complete (A, TXT and the PTR of its IP). */
      const registered = (p: Pod) =>
        waitUntil(
          `${nameOf(p)} registered`,
          async () =>
            (await k.dig(nameOf(p), "A")).length > 0 &&
            (await k.dig(nameOf(p), "TXT")).length > 0 &&
            (await k.dig(ptrOf(p.status.podIP!), "PTR")).includes(`${nameOf(p)}.`),
          { stallMs: 60_000 },
        );

      // A sidecar that dies without deregistering (kill -9, a node lost): the replacement's sidecar is frozen
      // (SIGSTOP) and the pod deleted with a short grace period, so the kubelet SIGKILLs it: its A, TXT and the
      // PTR of its IP stay in the zone until `ddns gc` removes them once the lease (--lease 20s) has passed.
      const crashed = await nextReplacement();
      await registered(crashed);
      process.kill(c.containerPid(NS, crashed.metadata.name, "ikontainer"), "SIGSTOP");
      c.kubectl(["-n", NS, "delete", "pod", crashed.metadata.name, "--grace-period=2", "--wait=true"]);
      const oldIp = crashed.status.podIP!;
      expect(await k.dig(nameOf(crashed), "A"), "a killed sidecar's records stay").toEqual([oldIp]);

      // delete replacements (each deregisters at SIGTERM) until host-local wraps round the small range and
      // hands one the killed pod's IP (issue 12 item 2d)
      let fresh: Pod | undefined;
      for (let n = 1; n <= 12; n++) {
        const next = await nextReplacement();
        if (next.status.podIP === oldIp) {
          fresh = next;
          break;
        }
        await registered(next);
        // The sidecar leaves DNS at SIGTERM, retrying slow exchanges for up to 10 s (knotd on a loaded machine can
        // take ~1 s per update); 15 s is the shipped examples' grace period. Twice in CI (2026-12-04), with a 3 s
        // deregistration budget that ended at the first timed-out exchange, the records stayed here.
        c.kubectl(["-n", NS, "delete", "pod", next.metadata.name, "--grace-period=15", "--wait=true"]);
        expect(await k.dig(nameOf(next), "ANY"), "a deleted replacement's records go").toEqual([]);
        cuids.delete(next.metadata.name);
      }
      expect(fresh, `a new pod got the killed pod's IP ${oldIp}`).toBeDefined();
      expect([...cuids.values()].filter((x) => x === cuids.get(fresh!.metadata.name))).toHaveLength(1);
      await registered(fresh!);
      // the newest instance holding an address owns its PTR: the stale one is replaced at registration
      expect(await k.dig(ptrOf(oldIp), "PTR")).toEqual([`${nameOf(fresh!)}.`]);
      expect(await k.dig(nameOf(crashed), "TXT"), "the stale instance is still published").not.toEqual([]);

      // `ddns gc` on the host, after the stale lease: it removes the killed instance and nothing of the IP's
      // new owner (the PTR guard: removed only while it names the stale instance; the service's A for the
      // address stays while a live instance has it)
      const staleTxt = (await k.dig(nameOf(crashed), "TXT")).join(" ");
      const expires = Date.parse(/expires=([^"\s]+)/.exec(staleTxt)?.[1] ?? "");
      expect(Number.isFinite(expires), `expires= in ${staleTxt}`).toBe(true);
      await waitUntil("the stale lease passed", () => Date.now() > expires + 1000);
      const keyFile = join(scratch, "gc-tsig.key");
      writeFileSync(keyFile, `${k.tsig}\n`, { mode: 0o600 });
      try {
        execFileSync(
          process.execPath,
          [
            join(REPO, "dist/cli/main.js"),
            "ddns",
            "gc",
            "--ddns-server",
            `${c.env.IKONTAINER_K8S_GATEWAY}:53`,
            "--zone",
            ZONE,
            "--reverse-zone",
            REVERSE_ZONE,
            "--tsig-file",
            keyFile,
          ],
          { stdio: ["ignore", "pipe", "pipe"] },
        );
      } finally {
        rmSync(keyFile);
      }
      expect(await k.dig(nameOf(crashed), "ANY"), "ddns gc removed the killed instance").toEqual([]);
      expect(await k.dig(`web.${NS}.${ZONE}`, "PTR")).not.toContain(`${nameOf(crashed)}.`);

      // the IP's new owner has its own records only: A, PTR and TXT with its CUID, nothing of the old instance
      expect(await k.dig(nameOf(fresh!), "A")).toEqual([oldIp]);
      expect(await k.dig(`web.${NS}.${ZONE}`, "A"), "the service's A for the reused IP").toContain(oldIp);
      expect(await k.dig(ptrOf(oldIp), "PTR")).toEqual([`${nameOf(fresh!)}.`]);
      const freshTxt = (await k.dig(nameOf(fresh!), "TXT")).join(" ");
      expect(freshTxt).toContain(`"cuid=${cuids.get(fresh!.metadata.name)}"`);
      expect(freshTxt).toContain(`"pod=${fresh!.metadata.name}"`);
      expect(freshTxt).not.toContain(cuids.get(crashed.metadata.name)!);
      expect(nslookup(c, pods[0]!, "ptr", ptrOf(oldIp))).toContain(nameOf(fresh!));
      expect(nslookup(c, pods[0]!, "ptr", ptrOf(oldIp))).not.toContain(nameOf(crashed));
      expect(await k.dig(nameOf(pods[0]!), "A")).toEqual([pods[0]!.status.podIP]);
      // the key never shows in the Deployment or the pods (only the Secret holds it)
      expect(c.kubectl(["-n", NS, "get", "deployment,pods", "-o", "json"])).not.toContain(k.secret);
    }, 600_000);

    it("resolve and the SOCKS5 proxy on the host follow the Deployment scaled 1 → 3, rolled and scaled to 1", async () => {
      const c = ready();
      await checkResolveAndProxyFollowRollout(c, {
        ns: NS,
        zone: ZONE,
        gateway: c.env.IKONTAINER_K8S_GATEWAY,
        livePods: () => webPods(c),
        cuidOf,
      });
      expect(c.kubectl(["-n", NS, "get", "deployment,pods", "-o", "json"])).not.toContain(knot!.secret);
      c.kubectl(["delete", "namespace", NS, "--wait=false"]);
    }, 600_000);
  });
}
