import { readdirSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { LogLine } from "../../core/record.js";
import type { LineDecoder } from "../tail/file-reader.js";
import { parsePodLogPath } from "./paths.js";

/**
 * The node agent's own pod. Its container log under /var/log/pods holds what the agent itself prints: with
 * `--output stdout` every record it sends, which it must never read back and stamp again (issue 15). The pod
 * is known from the Downward API (POD_UID, or --pod-uid); else it is detected from what the kubelet leaves in
 * the container (its pod folder /var/lib/kubelet/pods/<uid>/ in the mount table, `pod<uid>` in the cgroup
 * path), else from the hostname (a pod's hostname is its name) when exactly one pod folder has that name.
 */
export interface OwnPod {
  uid: string;
  /** How it was found, for the start log. */
  how: "setting" | "POD_UID" | "mountinfo" | "cgroup" | "hostname";
}

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const KUBELET_POD_DIR = new RegExp(`/pods/(${UUID})/`, "i");
// systemd's cgroup driver writes the UID with `_` instead of `-`.
const CGROUP_POD = /pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})/i;

/** The pod UID in /proc/self/mountinfo (kubelet mounts /etc/hosts, secrets, volumes from its pod folder). */
export function podUidFromMountinfo(text: string): string | undefined {
  return KUBELET_POD_DIR.exec(text)?.[1]?.toLowerCase();
}

/** The pod UID in /proc/self/cgroup (cgroup v1, or v2 without a private cgroup namespace; systemd uses `_`). */
export function podUidFromCgroup(text: string): string | undefined {
  return CGROUP_POD.exec(text)?.[1]?.replace(/_/g, "-").toLowerCase();
}

const read = (p: string): string => {
  try {
    return readFileSync(p, "utf8");
  } catch {
    return "";
  }
};

export function detectOwnPod(opts: {
  setting: string | undefined;
  env: NodeJS.ProcessEnv;
  podLogDir: string;
  procDir?: string;
  hostName?: string;
}): OwnPod | undefined {
  if (opts.setting) return { uid: opts.setting.toLowerCase(), how: "setting" };
  if (opts.env.POD_UID) return { uid: opts.env.POD_UID.toLowerCase(), how: "POD_UID" };
  const proc = opts.procDir ?? "/proc";
  const m = podUidFromMountinfo(read(`${proc}/self/mountinfo`));
  if (m) return { uid: m, how: "mountinfo" };
  const c = podUidFromCgroup(read(`${proc}/self/cgroup`));
  if (c) return { uid: c, how: "cgroup" };
  const name = opts.hostName ?? hostname();
  let dirs: string[] = [];
  try {
    dirs = readdirSync(opts.podLogDir);
  } catch {
    // no pod folder yet
  }
  const same = dirs
    .map((d) => parsePodLogPath(`${d}/c/0.log`))
    .filter(
      (p) =>
        p !== undefined &&
        p.pod === name &&
        (!opts.env.POD_NAMESPACE || p.namespace === opts.env.POD_NAMESPACE),
    );
  if (same.length === 1) return { uid: same[0]!.podUid, how: "hostname" };
  return undefined;
}

/** Exclude glob (relative to the pod log folder) for every container log of one pod. */
export function ownPodExclude(uid: string): string {
  return `*_*_${uid}/**`;
}

/**
 * `--include-own-logs`: the agent's own pod is read, but only its stderr lines (the agent's pino logs) go out;
 * stdout lines are what it sent (with --output stdout) and are never stamped again.
 */
export class StderrOnlyDecoder implements LineDecoder {
  constructor(private readonly inner: LineDecoder) {}

  decode(lines: LogLine[]): LogLine[] {
    return this.inner.decode(lines).filter((l) => l.channel === "stderr");
  }

  heldFrom(): number | undefined {
    return this.inner.heldFrom();
  }

  flush(): LogLine[] {
    return this.inner.flush().filter((l) => l.channel === "stderr");
  }
}
