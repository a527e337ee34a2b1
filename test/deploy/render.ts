import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments, parse as parseYaml } from "yaml";

/** Everything the deploy tests look at: the chart rendered by a real helm, and the kustomize examples. */
export const REPO = new URL("../../", import.meta.url).pathname;
export const CHART = join(REPO, "deploy/helm/ikontainer");
export const KUSTOMIZE = join(REPO, "deploy/kustomize");

export type K8sDoc = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
};

export function parseDocs(text: string): K8sDoc[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length) throw new Error(d.errors.map((e) => e.message).join("\n"));
      return d.toJS() as K8sDoc | null;
    })
    .filter((d): d is K8sDoc => d !== null && typeof d === "object");
}

/** helm built from the Go module proxy by scripts/helm.sh (cached in .cache/helm). */
export function helmPath(): string {
  return execFileSync("sh", [join(REPO, "scripts/helm.sh")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  }).trim();
}

/** Value sets the chart is rendered with: defaults, every option on, and the alternatives. */
export const VALUE_SETS: Record<string, Record<string, unknown>> = {
  defaults: {},
  everything: {
    outputs: [
      "fluentd://fluentd.logging.svc.cluster.local:24224?tls=true",
      "elasticsearch:https://es.logging.svc:9200",
    ],
    node: { dockerLogDir: "/var/lib/docker/containers", forgetAfter: "30m" },
    elasticsearch: { apiKeySecret: "es-api-key", caSecret: "es-ca", indexPrefix: "k8s-logs" },
    fluentd: { sharedKeySecret: "fluentd-forward", caSecret: "fluentd-tls" },
    ddns: {
      enabled: true,
      server: "10.96.0.53:53",
      zone: "svc.example.org",
      reverseZone: "10.in-addr.arpa",
      tsigSecret: "ddns-tsig",
    },
    priorityClassName: "system-node-critical",
    podAnnotations: { "example.org/team": "platform" },
    extraArgs: ["--request-id-regex", "trace=([0-9a-f]+)"],
    imagePullSecrets: [{ name: "registry" }],
  },
  noEnrich: { kubeEnrich: false },
  root: { securityContext: { runAsRoot: true } },
};

export function renderChart(
  helm: string,
  name: string,
  values: Record<string, unknown>,
  dir: string,
): K8sDoc[] {
  const file = join(dir, `values-${name}.yaml`);
  writeFileSync(file, JSON.stringify(values)); // JSON is YAML
  const out = execFileSync(helm, ["template", "ikontainer", CHART, "--namespace", "logging", "-f", file], {
    encoding: "utf8",
  });
  return parseDocs(out);
}

/** The kustomize examples: rendered with `kubectl kustomize`, and their files as written. */
export function kustomizeDirs(): string[] {
  return readdirSync(KUSTOMIZE).filter((d) => !d.includes("."));
}

export function kustomizeFiles(dir: string): K8sDoc[] {
  const k = parseYaml(readFileSync(join(KUSTOMIZE, dir, "kustomization.yaml"), "utf8")) as {
    resources: string[];
  };
  return k.resources.flatMap((r) => parseDocs(readFileSync(join(KUSTOMIZE, dir, r), "utf8")));
}

/** kubectl renders the kustomize examples and applies the sidecar patch offline: required, never skipped. */
export function requireKubectl(): void {
  const r = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
  if (r.status !== 0)
    throw new Error(
      `kubectl is required by the deploy tests (kubectl kustomize, kubectl patch --local) and does not run here: ${
        r.error?.message ?? r.stderr
      }; scripts/setup.sh checks for it`,
    );
}

export function kustomizeRender(dir: string): K8sDoc[] {
  return parseDocs(execFileSync("kubectl", ["kustomize", join(KUSTOMIZE, dir)], { encoding: "utf8" }));
}

/** Validates one object against the Kubernetes schema shipped by kubernetes-models (throws on errors). */
export async function validateK8s(doc: K8sDoc): Promise<void> {
  const [group, version] = doc.apiVersion.includes("/") ? doc.apiVersion.split("/") : ["", doc.apiVersion];
  const mod = (await import(
    /* @vite-ignore */ `kubernetes-models/${group ? `${group}/` : ""}${version}/${doc.kind}`
  )) as Record<string, new (d: unknown) => { validate(): void }>;
  const Model = mod[doc.kind];
  if (!Model) throw new Error(`no kubernetes-models class for ${doc.apiVersion} ${doc.kind}`);
  new Model(doc).validate();
}

export interface PodSpecLike {
  containers: ContainerLike[];
  initContainers?: ContainerLike[];
  volumes?: Array<Record<string, unknown> & { name: string }>;
  securityContext?: Record<string, unknown>;
  automountServiceAccountToken?: boolean;
}

export interface ContainerLike {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: Record<string, unknown> }>;
  securityContext?: Record<string, unknown> & { capabilities?: { drop?: string[]; add?: string[] } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  ports?: Array<{ name?: string; containerPort: number }>;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
}

export function podTemplate(
  doc: K8sDoc,
): { spec: PodSpecLike; annotations: Record<string, string> } | undefined {
  const spec = doc.spec as
    | { template?: { metadata?: { annotations?: Record<string, string> }; spec: PodSpecLike } }
    | undefined;
  if (!spec?.template) return undefined;
  return { spec: spec.template.spec, annotations: spec.template.metadata?.annotations ?? {} };
}

/** Containers that run the ikontainer image (the agent reads their flags and environment). */
export function agentContainers(doc: K8sDoc): ContainerLike[] {
  const t = podTemplate(doc);
  if (!t) return [];
  return t.spec.containers.filter((c) => /(^|\/)ikontainer(:|$)/.test(c.image) && c.args?.[0] !== undefined);
}

/** The sidecar patch applied to an existing app Deployment, offline (`kubectl patch --local`). */
export function patchedSidecar(): K8sDoc[] {
  const dir = join(REPO, "deploy/patches");
  return parseDocs(
    execFileSync(
      "kubectl",
      [
        "patch",
        "--local",
        "-f",
        join(dir, "existing-app.yaml"),
        "--type",
        "strategic",
        "--patch-file",
        join(dir, "ikontainer-sidecar.yaml"),
        "-o",
        "yaml",
      ],
      { encoding: "utf8" },
    ),
  );
}

/** Every set of manifests the deploy tests check, by name. */
export function buildSets(tmp: string): Map<string, K8sDoc[]> {
  const sets = new Map<string, K8sDoc[]>();
  requireKubectl();
  const helm = helmPath();
  for (const [name, values] of Object.entries(VALUE_SETS))
    sets.set(`chart:${name}`, renderChart(helm, name, values, tmp));
  for (const d of kustomizeDirs()) {
    sets.set(`kustomize-files:${d}`, kustomizeFiles(d));
    sets.set(`kustomize:${d}`, kustomizeRender(d));
  }
  sets.set("patch:sidecar", patchedSidecar());
  return sets;
}

/** How many ikontainer containers buildSets holds: 4 chart renderings, sidecar + exec as files and rendered, patched. */
export function expectedAgentContainers(): number {
  return 4 + 2 * 2 + 1;
}

/** The strict decoder (test/deploy/strict, built by scripts/k8s-strict.sh): unknown fields are errors. */
export function strictPath(): string {
  return execFileSync("sh", [join(REPO, "scripts/k8s-strict.sh")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  }).trim();
}

/** Runs the strict decoder over documents; returns its report lines and exit status. */
export function strictDecode(bin: string, docs: readonly unknown[]): { status: number | null; out: string } {
  const input = docs.map((d) => `---\n${JSON.stringify(d)}\n`).join("");
  const r = spawnSync(bin, [], { input, encoding: "utf8" });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}
