import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  agentContainers,
  buildSets,
  type ContainerLike,
  expectedAgentContainers,
  type K8sDoc,
  parseDocs,
  podTemplate,
  REPO,
  strictDecode,
  strictPath,
  validateK8s,
} from "./render.js";

/**
 * Every manifest in deploy/ and every rendering of the Helm chart, validated offline against the Kubernetes
 * schemas (kubernetes-models: the OpenAPI schemas of the API compiled to validators), plus the security and
 * operations rules the issue asks for.
 */
const sets = new Map<string, K8sDoc[]>();
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "ikon-deploy-"));
  for (const [k, v] of buildSets(dir)) sets.set(k, v);
}, 600_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const all = () => [...sets].flatMap(([set, docs]) => docs.map((doc) => ({ set, doc })));
const isFluentd = (c: ContainerLike) => c.image.startsWith("fluent/");

describe("deploy/ manifests", () => {
  it("renders the chart and the kustomize examples", () => {
    expect(
      sets
        .get("chart:defaults")
        ?.map((d) => d.kind)
        .sort(),
    ).toEqual(["ClusterRole", "ClusterRoleBinding", "DaemonSet", "ServiceAccount"]);
    expect(
      sets
        .get("chart:noEnrich")
        ?.map((d) => d.kind)
        .sort(),
    ).toEqual(["DaemonSet", "ServiceAccount"]);
    expect(sets.get("kustomize-files:sidecar")?.map((d) => d.kind)).toEqual(["Deployment"]);
    expect(sets.get("kustomize-files:exec")?.map((d) => d.kind)).toEqual(["Deployment"]);
    expect(
      sets
        .get("kustomize-files:fluentd")
        ?.map((d) => d.kind)
        .sort(),
    ).toEqual(["ConfigMap", "Service", "StatefulSet"]);
    // kubectl kustomize renders every example to the same objects its files hold
    for (const d of ["sidecar", "exec", "fluentd"])
      expect(
        sets
          .get(`kustomize:${d}`)
          ?.map((x) => `${x.kind}/${x.metadata.name}`)
          .sort(),
        d,
      ).toEqual(
        sets
          .get(`kustomize-files:${d}`)
          ?.map((x) => `${x.kind}/${x.metadata.name}`)
          .sort(),
      );
    expect(sets.get("patch:sidecar")?.map((d) => d.kind)).toEqual(["Deployment"]);
  });

  it("validates every object against the Kubernetes schemas", async () => {
    const failures: string[] = [];
    for (const { set, doc } of all()) {
      try {
        await validateK8s(doc);
      } catch (e) {
        failures.push(`${set} ${doc.kind}/${doc.metadata?.name}: ${(e as Error).message}`);
      }
    }
    expect(failures).toEqual([]);
    expect(all().length).toBeGreaterThan(20);
  });

  it("decodes every object strictly into the Kubernetes Go types (no unknown or duplicate field)", () => {
    const bin = strictPath();
    for (const [set, docs] of sets) {
      const r = strictDecode(bin, docs);
      expect({ set, status: r.status, out: r.out }).toEqual({
        set,
        status: 0,
        out: docs.map((d) => `ok ${d.apiVersion} ${d.kind}\n`).join(""),
      });
    }
    // the strict check catches what the schema check lets through: a misspelt field
    const ds = structuredClone(sets.get("chart:defaults")!.find((d) => d.kind === "DaemonSet")!);
    const c = (
      ds.spec as { template: { spec: { containers: Array<{ securityContext: Record<string, unknown> }> } } }
    ).template.spec.containers[0]!;
    delete c.securityContext.readOnlyRootFilesystem;
    c.securityContext.readOnlyRootFilesytem = true;
    return validateK8s(ds).then(() => {
      const r = strictDecode(bin, [ds]);
      expect(r.status).toBe(1);
      expect(r.out).toContain(
        'unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFilesytem"',
      );
    });
  }, 300_000);

  it("the validator rejects a broken object (the check can fail)", async () => {
    const ds = structuredClone(sets.get("chart:defaults")!.find((d) => d.kind === "DaemonSet")!);
    (ds.spec as { template: { spec: { containers: Array<Record<string, unknown>> } } }).template.spec
      .containers[0]!.ports = [{ containerPort: "metrics" }];
    await expect(validateK8s(ds)).rejects.toThrow(/containerPort/);
  });

  it("runs every container locked down: read-only root, no privilege escalation, no capabilities, non-root", () => {
    const problems: string[] = [];
    for (const { set, doc } of all()) {
      const t = podTemplate(doc);
      if (!t) continue;
      expect(t.spec.securityContext?.seccompProfile, `${set} ${doc.kind} seccomp`).toEqual({
        type: "RuntimeDefault",
      });
      for (const c of [...(t.spec.initContainers ?? []), ...t.spec.containers]) {
        const sc = c.securityContext ?? {};
        const where = `${set} ${doc.kind}/${doc.metadata.name} ${c.name}`;
        if (sc.readOnlyRootFilesystem !== true) problems.push(`${where}: root filesystem writable`);
        if (sc.allowPrivilegeEscalation !== false) problems.push(`${where}: privilege escalation allowed`);
        if (JSON.stringify(sc.capabilities?.drop) !== '["ALL"]')
          problems.push(`${where}: capabilities not dropped`);
        const root = sc.runAsNonRoot === false;
        // Allowed exceptions, each justified in values.yaml / docs/deploy.md:
        // the init container that hands the hostPath state folder to the agent user (CHOWN+FOWNER only),
        // and the opt-in runAsRoot for nodes whose logs are 0600.
        const chown =
          c.name === "state-owner" && JSON.stringify(sc.capabilities?.add) === '["CHOWN","FOWNER"]';
        if (root && !chown && set !== "chart:root") problems.push(`${where}: runs as root`);
        if (!root && sc.runAsNonRoot !== true && t.spec.securityContext?.runAsNonRoot !== true)
          problems.push(`${where}: runAsNonRoot not set`);
        if (sc.capabilities?.add && !chown) problems.push(`${where}: adds capabilities`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("the node agent reads /var/log/pods as non-root with group 0, read-only; state on a hostPath", () => {
    const ds = sets.get("chart:defaults")!.find((d) => d.kind === "DaemonSet")!;
    const t = podTemplate(ds)!;
    expect(t.spec.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 10001,
      supplementalGroups: [0],
    });
    const agent = t.spec.containers[0]!;
    expect(agent.volumeMounts).toContainEqual({
      name: "pod-logs",
      mountPath: "/var/log/pods",
      readOnly: true,
    });
    expect(t.spec.volumes).toContainEqual({
      name: "pod-logs",
      hostPath: { path: "/var/log/pods", type: "Directory" },
    });
    expect(t.spec.volumes).toContainEqual({
      name: "state",
      hostPath: { path: "/var/lib/ikontainer", type: "DirectoryOrCreate" },
    });
    expect((ds.spec as { template: { spec: { tolerations: unknown } } }).template.spec.tolerations).toEqual([
      { operator: "Exists" },
    ]);
    // every hostPath except the state folder is mounted read-only, in every rendering
    for (const [set, docs] of sets)
      for (const d of docs) {
        const p = podTemplate(d);
        if (!p) continue;
        const host = new Set((p.spec.volumes ?? []).filter((v) => v.hostPath).map((v) => v.name));
        for (const c of p.spec.containers)
          for (const m of c.volumeMounts ?? [])
            if (host.has(m.name) && m.name !== "state") expect(m.readOnly, `${set} ${m.name}`).toBe(true);
      }
  });

  it("probes /healthz and /readyz on the metrics port, with Prometheus scrape annotations", () => {
    let n = 0;
    for (const { set, doc } of all()) {
      const t = podTemplate(doc);
      for (const c of agentContainers(doc)) {
        n++;
        const port = c.ports?.find((p) => p.name === "metrics");
        expect(port, `${set} ${c.name}`).toBeDefined();
        expect(c.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "metrics" });
        expect(c.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "metrics" });
        const metricsFlag = c.args![c.args!.indexOf("--metrics-port") + 1];
        expect(Number(metricsFlag), `${set} ${c.name} --metrics-port`).toBe(port!.containerPort);
        expect(t!.annotations).toMatchObject({
          "prometheus.io/scrape": "true",
          "prometheus.io/port": String(port!.containerPort),
          "prometheus.io/path": "/metrics",
        });
      }
    }
    expect(n).toBe(expectedAgentContainers());
  });

  it("references Secrets and never inlines one", () => {
    const secretish = /(KEY|PASSWORD|SECRET|TOKEN|TSIG)/i;
    for (const { set, doc } of all()) {
      expect(doc.kind, set).not.toBe("Secret");
      const t = podTemplate(doc);
      if (!t) continue;
      for (const c of [...(t.spec.initContainers ?? []), ...t.spec.containers]) {
        for (const e of c.env ?? [])
          if (secretish.test(e.name) && !e.name.endsWith("_FILE"))
            expect(e.valueFrom?.secretKeyRef, `${set} ${c.name} ${e.name}`).toBeDefined();
        for (const a of c.args ?? [])
          expect(a, `${set} ${c.name}`).not.toMatch(/^--(tsig|es-api-key|password)$/);
      }
    }
    const everything = sets.get("chart:everything")!.find((d) => d.kind === "DaemonSet")!;
    const text = JSON.stringify(everything);
    expect(text).toContain('"secretKeyRef":{"name":"es-api-key","key":"api-key"}');
    expect(text).toContain('"secretKeyRef":{"name":"fluentd-forward","key":"shared-key"}');
    expect(text).toContain('"name":"IKONTAINER_FLUENTD_CA","value":"/etc/ikontainer/fluentd-ca/ca.crt"');
    expect(text).toContain(
      '"secret":{"secretName":"fluentd-tls","items":[{"key":"ca.crt","path":"ca.crt"}]}',
    );
    expect(text).toContain('"secret":{"secretName":"ddns-tsig","defaultMode":256}');
    expect(text).toContain('"--tsig-file","/etc/ikontainer/tsig/tsig.key"');
  });

  it("grants the node agent pods get/list/watch and nothing else", () => {
    const role = sets.get("chart:defaults")!.find((d) => d.kind === "ClusterRole")!;
    expect(role.rules).toEqual([{ apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch"] }]);
    const binding = sets.get("chart:defaults")!.find((d) => d.kind === "ClusterRoleBinding")!;
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: "ikontainer", namespace: "logging" }]);
    for (const [set, docs] of sets) {
      for (const d of docs.filter((x) => x.kind === "Role" || x.kind === "ClusterRole"))
        expect(JSON.stringify(d.rules), set).toBe(JSON.stringify(role.rules));
      // only the DaemonSet with enrichment mounts an API token
      for (const d of docs) {
        const t = podTemplate(d);
        if (t)
          expect(t.spec.automountServiceAccountToken, `${set} ${d.metadata.name}`).toBe(
            set !== "chart:noEnrich" && set.startsWith("chart:"),
          );
      }
    }
  });

  it("the fluentd ConfigMap forwards in_forward to out_elasticsearch with logstash_format and a file buffer", () => {
    const cm = sets.get("kustomize-files:fluentd")!.find((d) => d.kind === "ConfigMap")!;
    const conf = (cm.data as Record<string, string>)["fluent.conf"]!;
    expect(conf).toMatch(/<source>\s+@type forward\s+port 24224/);
    expect(conf).toMatch(/<match ikontainer\.\*\*>\s+@type elasticsearch/);
    expect(conf).toMatch(/logstash_format true/);
    expect(conf).toMatch(/logstash_prefix ikontainer-logs\n/);
    expect(conf).toMatch(/<buffer>\s+@type file\s+path \/fluentd\/buffer\//);
    // the buffer path is on the persistent volume, the config is the ConfigMap
    const sts = sets.get("kustomize-files:fluentd")!.find((d) => d.kind === "StatefulSet")!;
    const c = podTemplate(sts)!.spec.containers[0]!;
    expect(isFluentd(c)).toBe(true);
    expect(c.volumeMounts).toContainEqual({ name: "buffer", mountPath: "/fluentd/buffer" });
    expect(readFileSync(new URL("../../src/config/elasticsearch.ts", import.meta.url), "utf8")).toContain(
      'default: "ikontainer-logs"',
    );
  });

  it("the sidecar shares an emptyDir with the application and gets the Downward API fields", () => {
    const dep = sets.get("kustomize-files:sidecar")![0]!;
    const t = podTemplate(dep)!;
    const [app, agent] = t.spec.containers;
    expect(app!.volumeMounts).toContainEqual({ name: "app-logs", mountPath: "/var/log/app" });
    expect(agent!.volumeMounts).toContainEqual({
      name: "app-logs",
      mountPath: "/var/log/app",
      readOnly: true,
    });
    expect(t.spec.volumes).toContainEqual({ name: "app-logs", emptyDir: { sizeLimit: "1Gi" } });
    expect(agent!.args!.slice(0, 3)).toEqual(["run", "--watch", "/var/log/app"]);
    const env = Object.fromEntries(agent!.env!.map((e) => [e.name, JSON.stringify(e.valueFrom)]));
    expect(env).toMatchObject({
      POD_NAME: '{"fieldRef":{"fieldPath":"metadata.name"}}',
      POD_NAMESPACE: '{"fieldRef":{"fieldPath":"metadata.namespace"}}',
      POD_IP: '{"fieldRef":{"fieldPath":"status.podIP"}}',
      NODE_NAME: '{"fieldRef":{"fieldPath":"spec.nodeName"}}',
    });
    // the patch for an existing Deployment (applied offline with kubectl patch --local) gives the same shape
    const patched = podTemplate(sets.get("patch:sidecar")![0]!)!;
    expect(patched.spec.containers.map((c) => c.name)).toEqual(["app", "ikontainer"]);
    expect(patched.spec.containers[0]!.volumeMounts).toContainEqual({
      name: "app-logs",
      mountPath: "/var/log/app",
    });
    expect(patched.spec.containers[0]!.command).toEqual(
      (
        podTemplate(parseDocs(readFileSync(join(REPO, "deploy/patches/existing-app.yaml"), "utf8"))[0]!)!.spec
          .containers[0] as { command: string[] }
      ).command,
    );
    expect(patched.spec.volumes?.map((v) => v.name)).toEqual(["app-logs", "state"]);
    const exec = podTemplate(sets.get("kustomize-files:exec")![0]!)!.spec.containers[0]!;
    expect(exec.args![0]).toBe("exec");
    expect(exec.args).toContain("--");
  });

  it("the node agent's memory limit holds the peak RSS measured by bench/node-mode.ts, with its V8 flags, plus 25%", () => {
    const ds = sets.get("chart:defaults")!.find((d) => d.kind === "DaemonSet")!;
    const agent = podTemplate(ds)!.spec.containers[0] as ContainerLike & {
      resources?: { limits?: { memory?: string } };
    };
    const limit = /^(\d+)Mi$/.exec(agent.resources?.limits?.memory ?? "");
    expect(limit, "limits.memory in Mi").not.toBeNull();
    const nodeOptions = agent.env?.find((e) => e.name === "NODE_OPTIONS")?.value ?? "";
    // Every committed node-mode result: runs labelled "[NAME]" ran with protocol.nodeFlags[NAME], others with none.
    const peaks: number[] = [];
    const results = join(REPO, "bench/results");
    for (const f of readdirSync(results).filter((n) => /^node-mode.*\.json$/.test(n))) {
      const r = JSON.parse(readFileSync(join(results, f), "utf8")) as {
        protocol: { nodeFlags?: Record<string, string[]> };
        runs: Array<{ condition: string; peakRssMiB: number }>;
      };
      for (const run of r.runs) {
        if (!run.condition.startsWith("node mode")) continue;
        // The label may also carry "reads=N" (bench/node-mode.ts --max-concurrent-reads): not a flag set.
        const label = /\[(.+)\]$/
          .exec(run.condition)?.[1]
          ?.split(", ")
          .find((t) => !t.startsWith("reads="));
        const flags = label ? (r.protocol.nodeFlags?.[label] ?? []).join(" ") : "";
        if (flags === nodeOptions) peaks.push(run.peakRssMiB);
      }
    }
    expect(peaks.length, `node-mode runs with NODE_OPTIONS="${nodeOptions}"`).toBeGreaterThanOrEqual(3);
    expect(Number(limit![1])).toBeGreaterThanOrEqual(Math.max(...peaks) * 1.25);
  });
});
