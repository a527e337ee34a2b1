import { ERR_INVALID_SETTING } from "../core/errors.js";
import { AGENT_SETTINGS, TAIL_SETTINGS } from "./agent.js";
import { resolveSettings, type SettingDef } from "./settings.js";

/** Defaults of node mode live here and nowhere else. */
export const DEFAULT_POD_LOG_DIR = "/var/log/pods";
export const DEFAULT_KUBE_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token";
export const DEFAULT_KUBE_CA_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/** Settings of `run --mode node` (the DaemonSet). */
export const NODE_SETTINGS: SettingDef[] = [
  {
    key: "mode",
    kind: "enum",
    choices: ["folder", "node"],
    default: "folder",
    description:
      "folder: tail --watch folders with one CUID; node: tail the node's container logs (CRI / Docker), one CUID per container instance",
  },
  {
    key: "podLogDir",
    kind: "string",
    arg: "DIR",
    default: DEFAULT_POD_LOG_DIR,
    description:
      "node mode: kubelet's pod log folder (<namespace>_<pod>_<uid>/<container>/<restart>.log, CRI format)",
  },
  {
    key: "dockerLogDir",
    kind: "string",
    arg: "DIR",
    description:
      "node mode: also tail Docker json-file logs here (<id>/<id>-json.log), e.g. /var/lib/docker/containers",
  },
  {
    key: "nodeName",
    kind: "string",
    arg: "NAME",
    description: "node mode: this node's name (default: env NODE_NAME from the Downward API)",
  },
  {
    key: "clusterDomain",
    kind: "string",
    arg: "DOMAIN",
    default: "cluster.local",
    description:
      "node mode: svc of a container is <container>.<namespace>.<domain> (env CLUSTER_DOMAIN also read)",
  },
  {
    key: "kubeEnrich",
    kind: "bool",
    default: false,
    description: "node mode: add pod_ip and labels from the API server (watches this node's pods only)",
  },
  {
    key: "kubeApiUrl",
    kind: "string",
    arg: "URL",
    description: "node mode: API server URL (default: in-cluster, from KUBERNETES_SERVICE_HOST/PORT)",
  },
  {
    key: "kubeTokenFile",
    kind: "string",
    arg: "FILE",
    default: DEFAULT_KUBE_TOKEN_FILE,
    description: "node mode: service-account token for --kube-enrich ('' for none)",
  },
  {
    key: "kubeCaFile",
    kind: "string",
    arg: "FILE",
    default: DEFAULT_KUBE_CA_FILE,
    description: "node mode: CA bundle of the API server for --kube-enrich ('' for the system CAs)",
  },
  {
    key: "forgetAfter",
    kind: "duration",
    arg: "DURATION",
    default: 3_600_000,
    description:
      "node mode: drop a container instance's CUID from the state file this long after its log is gone",
  },
  {
    key: "podUid",
    kind: "string",
    arg: "UID",
    description:
      "node mode: this agent's own pod UID, whose logs are not read (default: env POD_UID from the Downward API, else detected)",
  },
  {
    key: "includeOwnLogs",
    kind: "bool",
    default: false,
    description:
      "node mode: also ship this agent's own pod logs: only their stderr lines (the agent's own logs), never stdout (its records)",
  },
];

export interface NodeConfig {
  mode: "folder" | "node";
  podLogDir: string;
  dockerLogDir: string | undefined;
  nodeName: string | undefined;
  clusterDomain: string;
  kubeEnrich: boolean;
  kubeApiUrl: string | undefined;
  kubeTokenFile: string | undefined;
  kubeCaFile: string | undefined;
  forgetAfter: number;
  podUid: string | undefined;
  includeOwnLogs: boolean;
}

/** `defs` must hold every setting of the command, so a shared `--config` file's other keys are known. */
export function loadNodeConfig(
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
  defs: readonly SettingDef[] = [...AGENT_SETTINGS, ...TAIL_SETTINGS, ...NODE_SETTINGS],
): NodeConfig {
  const s = resolveSettings(defs, flags, env);
  const nodeName = (s.nodeName as string | undefined) ?? env.NODE_NAME;
  const clusterDomain =
    flags.clusterDomain === undefined && !env.IKONTAINER_CLUSTER_DOMAIN && env.CLUSTER_DOMAIN
      ? env.CLUSTER_DOMAIN
      : (s.clusterDomain as string);
  let kubeApiUrl = s.kubeApiUrl as string | undefined;
  if (s.mode === "node" && s.kubeEnrich) {
    if (!nodeName)
      throw ERR_INVALID_SETTING(
        "invalid --node-name: --kube-enrich watches this node's pods; pass --node-name or set NODE_NAME from spec.nodeName",
      );
    if (!kubeApiUrl && env.KUBERNETES_SERVICE_HOST) {
      const h = env.KUBERNETES_SERVICE_HOST;
      kubeApiUrl = `https://${h.includes(":") ? `[${h}]` : h}:${env.KUBERNETES_SERVICE_PORT ?? "443"}`;
    }
    if (!kubeApiUrl)
      throw ERR_INVALID_SETTING(
        "invalid --kube-api-url: --kube-enrich needs the API server; not in a cluster (no KUBERNETES_SERVICE_HOST), pass --kube-api-url",
      );
    try {
      new URL(kubeApiUrl);
    } catch {
      throw ERR_INVALID_SETTING(`invalid --kube-api-url: not a URL (got "${kubeApiUrl}")`);
    }
  }
  const orNone = (v: unknown): string | undefined => (v === undefined || v === "" ? undefined : String(v));
  return {
    mode: s.mode as "folder" | "node",
    podLogDir: s.podLogDir as string,
    dockerLogDir: orNone(s.dockerLogDir),
    nodeName,
    clusterDomain,
    kubeEnrich: s.kubeEnrich as boolean,
    kubeApiUrl,
    kubeTokenFile: orNone(s.kubeTokenFile),
    kubeCaFile: orNone(s.kubeCaFile),
    forgetAfter: s.forgetAfter as number,
    podUid: orNone(s.podUid)?.toLowerCase(),
    includeOwnLogs: s.includeOwnLogs as boolean,
  };
}
