import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";

/**
 * The real single-node cluster of scripts/cluster.sh, driven from tests: bring it up and down, kubectl, helm,
 * containerd's ctr, and readers for the files the kubelet and the agent write on this host.
 */

const HERE = dirname(fileURLToPath(import.meta.url));
// also compiled for bench/ (bench/.work/dist/test/cluster/): the repository is then five folders up
export const REPO = resolve(HERE, HERE.includes("/.work/dist/") ? "../../../../.." : "../..");
export const CTR_ADDR = "/run/ikontainer-k8s/containerd.sock";
export const POD_LOG_DIR = "/var/log/pods";

export interface ClusterEnv {
  KUBECONFIG: string;
  IKONTAINER_K8S_BIN: string;
  IKONTAINER_K8S_NODE: string;
  IKONTAINER_K8S_GATEWAY: string;
  IKONTAINER_K8S_POD_RANGE: string;
  IKONTAINER_K8S_AGENT_IMAGE: string;
  IKONTAINER_K8S_AGENT_IMAGE_KIND: string;
  IKONTAINER_K8S_BUSYBOX_IMAGE: string;
  IKONTAINER_K8S_VERSION: string;
}

function parseEnv(text: string): ClusterEnv {
  const env: Record<string, string> = {};
  for (const m of text.matchAll(/^export (\w+)=(.*)$/gm)) env[m[1]!] = m[2]!;
  return env as unknown as ClusterEnv;
}

/** `scripts/cluster.sh up`: a failure (not root, build failed, node never Ready) throws: the tests fail, never skip. */
export function clusterUp(): ClusterEnv {
  if (process.getuid?.() !== 0)
    throw new Error("the cluster tests need root (kubelet, containerd, iptables)");
  const out = execFileSync("sh", [join(REPO, "scripts/cluster.sh"), "up"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    timeout: 30 * 60_000,
  });
  return parseEnv(out);
}

export function clusterDown(): void {
  execFileSync("sh", [join(REPO, "scripts/cluster.sh"), "down"], { stdio: ["ignore", "inherit", "inherit"] });
}

export class Cluster {
  readonly helmBin: string;
  constructor(readonly env: ClusterEnv) {
    this.helmBin = execFileSync("sh", [join(REPO, "scripts/helm.sh")], { encoding: "utf8" }).trim();
  }

  kubectl(args: string[], input?: string): string {
    return execFileSync(join(this.env.IKONTAINER_K8S_BIN, "kubectl"), args, {
      encoding: "utf8",
      env: { ...process.env, KUBECONFIG: this.env.KUBECONFIG },
      ...(input !== undefined ? { input } : {}),
      stdio: ["pipe", "pipe", "pipe"],
      maxBuffer: 64 << 20,
    });
  }

  kubectlJson<T>(args: string[]): T {
    return JSON.parse(this.kubectl([...args, "-o", "json"])) as T;
  }

  apply(manifest: object | string): void {
    this.kubectl(["apply", "-f", "-"], typeof manifest === "string" ? manifest : JSON.stringify(manifest));
  }

  helm(args: string[]): string {
    return execFileSync(this.helmBin, args, {
      encoding: "utf8",
      env: { ...process.env, KUBECONFIG: this.env.KUBECONFIG, HELM_CACHE_HOME: "/tmp/ikon-helm-cache" },
      stdio: ["ignore", "pipe", "pipe"],
    });
  }

  /** A namespace ready for pods: its default service account and root CA configmap exist. */
  async namespace(ns: string): Promise<void> {
    this.kubectl(["create", "namespace", ns]);
    await waitUntil(`namespace ${ns} ready`, () => {
      try {
        this.kubectl(["-n", ns, "get", "serviceaccount/default", "configmap/kube-root-ca.crt"]);
        return true;
      } catch {
        return false;
      }
    });
  }

  pod(ns: string, name: string): Pod {
    return this.kubectlJson<Pod>(["-n", ns, "get", "pod", name]);
  }

  podsBySelector(ns: string, selector: string): Pod[] {
    return this.kubectlJson<{ items: Pod[] }>(["-n", ns, "get", "pods", "-l", selector]).items;
  }

  /** Waits until a pod is Running with all containers ready; returns it. */
  async runningPod(ns: string, selectorOrName: string): Promise<Pod> {
    let found: Pod | undefined;
    await waitUntil(`pod ${ns}/${selectorOrName} running`, () => {
      const pods = selectorOrName.includes("=")
        ? this.podsBySelector(ns, selectorOrName)
        : (() => {
            try {
              return [this.pod(ns, selectorOrName)];
            } catch {
              return [];
            }
          })();
      found = pods.find(
        (p) =>
          p.status.phase === "Running" &&
          !p.metadata.deletionTimestamp &&
          (p.status.containerStatuses ?? []).every((c) => c.state.running),
      );
      return found !== undefined;
    });
    return found!;
  }

  /** SIGKILL a container's process through containerd (the kubelet then restarts it as a new instance). */
  killContainer(ns: string, pod: string, container: string): void {
    const id = containerId(this.pod(ns, pod), container);
    execFileSync("ctr", ["--address", CTR_ADDR, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id]);
  }

  /** The host PID of a running container's main process. */
  containerPid(ns: string, pod: string, container: string): number {
    const id = containerId(this.pod(ns, pod), container);
    const out = execFileSync("ctr", ["--address", CTR_ADDR, "-n", "k8s.io", "tasks", "ls"], {
      encoding: "utf8",
    });
    const line = out.split("\n").find((l) => l.startsWith(id));
    if (!line) throw new Error(`no task for container ${id}`);
    return Number(line.split(/\s+/)[1]);
  }
}

export interface ContainerStatus {
  name: string;
  containerID?: string;
  restartCount: number;
  state: { running?: object; terminated?: object; waiting?: object };
}

export interface Pod {
  metadata: { name: string; namespace: string; uid: string; deletionTimestamp?: string };
  status: { phase: string; podIP?: string; containerStatuses?: ContainerStatus[] };
}

export function containerId(pod: Pod, container: string): string {
  const s = pod.status.containerStatuses?.find((c) => c.name === container);
  if (!s?.containerID) throw new Error(`container ${container} of ${pod.metadata.name} has no ID yet`);
  return s.containerID.replace(/^containerd:\/\//, "");
}

export function podLogDir(pod: Pod, container: string): string {
  return join(POD_LOG_DIR, `${pod.metadata.namespace}_${pod.metadata.name}_${pod.metadata.uid}`, container);
}

/**
 * Polls `check` every 250 ms until it returns true. Fails when nothing changes for `stallMs`: `progress` (when
 * given) says what counts as a change (e.g. records seen so far); without it the wait may last `stallMs`.
 */
export async function waitUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  opts: { stallMs?: number; progress?: () => unknown } = {},
): Promise<void> {
  const stallMs = opts.stallMs ?? 120_000;
  let last = opts.progress?.();
  let lastChange = Date.now();
  for (;;) {
    if (await check()) return;
    const now = opts.progress?.();
    if (opts.progress && JSON.stringify(now) !== JSON.stringify(last)) {
      last = now;
      lastChange = Date.now();
    }
    if (Date.now() - lastChange > stallMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The text lines of a CRI log file (partial `P` lines joined), as the application wrote them. */
export function criLines(text: string): string[] {
  const out: string[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    if (raw === "") continue;
    const m = /^\S+ (stdout|stderr) ([PF]) ?(.*)$/.exec(raw);
    if (!m) continue;
    pending += m[3];
    if (m[2] === "F") {
      out.push(pending);
      pending = "";
    }
  }
  return out;
}

/** Every CRI line a container wrote, from its current and rotated log files (gzipped ones too), oldest first. */
export function containerLogLines(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const files = readdirSync(dir)
    .filter((f) => /^\d+\.log/.test(f))
    .sort((a, b) => {
      // 0.log.<stamp>[.gz] (older) before 0.log; restarts in order
      const [ra, rb] = [Number.parseInt(a, 10), Number.parseInt(b, 10)];
      if (ra !== rb) return ra - rb;
      const [sa, sb] = [a.replace(/\.gz$/, ""), b.replace(/\.gz$/, "")];
      if (sa === `${ra}.log`) return 1;
      if (sb === `${rb}.log`) return -1;
      return sa.localeCompare(sb);
    });
  const lines: string[] = [];
  for (const f of files) {
    let buf: Buffer;
    try {
      buf = readFileSync(join(dir, f));
    } catch {
      continue; // rotated or compressed while listing
    }
    if (f.endsWith(".gz")) buf = gunzipSync(buf);
    lines.push(...criLines(buf.toString("utf8")));
  }
  return lines;
}

/** JSON records from every file under a folder (the agent's `file:` output), skipping a torn last line. */
export function readJsonRecords(dir: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else
        for (const line of readFileSync(p, "utf8").split("\n")) {
          if (!line.startsWith("{")) continue;
          try {
            out.push(JSON.parse(line) as Record<string, unknown>);
          } catch {
            // a line being written right now
          }
        }
    }
  };
  walk(dir);
  return out;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Where the kubelet keeps a pod's emptyDir volume on this host. */
export function emptyDirOf(pod: Pod, volume: string): string {
  return `/var/lib/kubelet/pods/${pod.metadata.uid}/volumes/kubernetes.io~empty-dir/${volume}`;
}
