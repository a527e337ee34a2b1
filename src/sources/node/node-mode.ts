import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type { NodeConfig } from "../../config/node.js";
import { ERR_OWN_POD_UNKNOWN, ERR_STATE_DAMAGED, errorMessage } from "../../core/errors.js";
import type { StreamInfo } from "../../core/record.js";
import type { Logger } from "../../observe/logger.js";
import type { LineDecoder } from "../tail/file-reader.js";
import { CriDecoder } from "./cri.js";
import { type ContainerCuid, ContainerCuidStore } from "./cuids.js";
import { DockerJsonDecoder } from "./docker.js";
import { type PodMeta, PodWatcher } from "./kube.js";
import { ledgerInstanceCuids } from "./ledger-cuids.js";
import { detectOwnPod, type OwnPod, ownPodExclude, StderrOnlyDecoder } from "./own-pod.js";
import {
  type ContainerLogPath,
  DOCKER_LOG_INCLUDE,
  instanceKey,
  POD_LOG_INCLUDE,
  parseDockerLogPath,
  parsePodLogPath,
} from "./paths.js";

export interface NodeModeOptions {
  node: NodeConfig;
  stateDir: string;
  cuidVersion: 4 | 7;
  maxLineBytes: number;
  log: Logger;
  /**
   * Whether lines of a stream (`file:<root>:<relative path>`) were already sent (its checkpoint): an instance
   * whose CUID was lost from the state file but whose lines went out must not get a new one.
   */
  shipped?: (streamKey: string) => boolean;
  /** Environment (Downward API) to find the agent's own pod in; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Called once per new container instance (the CUID ledger entry). */
  onInstance?: (entry: ContainerCuid) => void;
  /**
   * The CUID ledger (src/store/ledger.ts): a start per container instance (namespace, pod, pod_uid, container,
   * restart, node), a stop when a newer restart of the container appears or its log is gone.
   */
  ledger?: {
    recordStart(entry: { cuid: string; svc: string; started_at?: string } & Record<string, unknown>): void;
    recordStop(cuid: string): void;
  };
}

type Fields = Record<string, string | number>;

/**
 * `run --mode node` (the DaemonSet): what the tailer needs to read a node's container logs.
 * - roots/include: kubelet's pod log folder (and Docker's containers folder when configured);
 * - `streamFor`: each file's container instance → its own CUID (made locally, kept in the state dir),
 *   svc `<container>.<namespace>.<cluster-domain>` and fields namespace/pod/pod_uid/container/restart/node;
 * - `decoderFor`: CRI or Docker json-file decoding (joins split lines, keeps stream and runtime timestamp);
 * - optional enrichment with pod_ip and labels from the API server, applied to the streams' fields in place.
 */
export class NodeMode {
  readonly roots: string[];
  readonly include: string[];
  /** Exclude globs for the tailer: this agent's own pod (unless --include-own-logs). */
  readonly exclude: string[] = [];
  readonly ownPod: OwnPod | undefined;
  readonly cuids: ContainerCuidStore;
  private readonly watcher: PodWatcher | undefined;
  /** Field objects of open streams, by pod UID, updated in place when the API server tells us more. */
  private readonly fieldsByPod = new Map<string, Set<Fields>>();
  private readonly missingSince = new Map<string, number>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly opts: NodeModeOptions) {
    const { node } = opts;
    this.roots = [resolve(node.podLogDir)];
    this.include = [...POD_LOG_INCLUDE];
    if (node.dockerLogDir) {
      this.roots.push(resolve(node.dockerLogDir));
      this.include.push(...DOCKER_LOG_INCLUDE);
    }
    this.ownPod = detectOwnPod({
      setting: node.podUid,
      env: opts.env ?? process.env,
      podLogDir: this.roots[0]!,
    });
    if (this.ownPod && !node.includeOwnLogs) this.exclude.push(ownPodExclude(this.ownPod.uid));
    this.cuids = new ContainerCuidStore(opts.stateDir, opts.cuidVersion);
    for (const [key, known] of ledgerInstanceCuids(opts.stateDir))
      if (!this.cuids.get(key)) this.cuids.recoverable.set(key, known);
    if (node.kubeEnrich && node.kubeApiUrl && node.nodeName) {
      this.watcher = new PodWatcher({
        url: node.kubeApiUrl,
        nodeName: node.nodeName,
        ...(node.kubeTokenFile ? { tokenFile: node.kubeTokenFile } : {}),
        ...(node.kubeCaFile && node.kubeApiUrl.startsWith("https:") ? { caFile: node.kubeCaFile } : {}),
        onPod: (pod, event) => {
          this.enrichPod(pod);
          if (event === "DELETED") this.podDeleted(pod.uid);
        },
        onError: (e) => opts.log.warn({ err: errorMessage(e) }, "pod watch failed; retrying"),
        // said once per 410, so an operator (and the cluster test) can see a relist happened
        onRelist: () => opts.log.info("pod watch: resourceVersion expired (410 Gone); listing pods again"),
      });
    }
  }

  /**
   * Starts the pod watch (enrichment only; lines flow without it) and the state-file sweeper, and gives every
   * container log already on the node its CUID in one durable write (instead of one fsync per file).
   */
  async start(): Promise<void> {
    this.reportOwnPod();
    this.createExisting();
    if (this.watcher) {
      await this.watcher.start().catch((e: unknown) => {
        this.opts.log.warn(
          { err: errorMessage(e), node: this.opts.node.nodeName },
          "cannot list this node's pods; lines are sent without pod_ip/labels until the API server answers",
        );
      });
    }
    // The same sweep records stops (`whois --at` needs them within seconds of the container's end) and, after
    // --forget-after, forgets the instance: a few stat calls per instance and period.
    const every = Math.max(200, Math.min(STOP_CHECK_MS, Math.floor(this.opts.node.forgetAfter / 4)));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
  }

  /** Says at start whose logs are never read back (issue 15: the agent's own output in its own pod log). */
  private reportOwnPod(): void {
    const { log, node } = this.opts;
    if (!this.ownPod)
      log.warn(
        { code: ERR_OWN_POD_UNKNOWN("").code },
        "cannot tell which pod this agent runs in (no POD_UID, nothing in /proc/self/mountinfo or cgroup, no pod folder named after the hostname): its own container log would be read back if its output reaches it (--output stdout); set POD_UID from the Downward API (fieldRef metadata.uid) or pass --pod-uid",
      );
    else if (node.includeOwnLogs)
      log.info(
        { pod_uid: this.ownPod.uid, how: this.ownPod.how },
        "reading this agent's own pod logs: stderr lines only (--include-own-logs), never its stdout records",
      );
    else
      log.info(
        { pod_uid: this.ownPod.uid, how: this.ownPod.how, hint: "--include-own-logs ships its stderr" },
        "not reading this agent's own pod logs",
      );
  }

  private isOwnPod(p: ContainerLogPath): boolean {
    return p.kind === "pod" && this.ownPod !== undefined && p.podUid.toLowerCase() === this.ownPod.uid;
  }

  /**
   * Damage to node-cuids.jsonl must never change a running container's identity (issue 11 item 8): bad lines are
   * logged with their reason (the file was kept aside and rewritten with the good ones); a lost CUID is taken
   * from the CUID ledger; an instance whose CUID is lost everywhere although its lines were already sent stops
   * the agent (IKON_ERR_STATE_DAMAGED) instead of getting a new CUID.
   */
  private checkDamage(found: ReadonlyArray<{ p: ContainerLogPath; streamKey: string }>): void {
    const { log } = this.opts;
    const { cuids } = this;
    if (cuids.damage.length)
      log.error(
        { path: cuids.path, bad: cuids.damage, keptAs: cuids.quarantined, code: "IKON_ERR_STATE_DAMAGED" },
        "node-cuids.jsonl had damaged lines: they were skipped (the file as it was is kept aside); lost CUIDs are recovered from the ledger",
      );
    const lost = found.filter(
      ({ p, streamKey }) =>
        !cuids.get(instanceKey(p)) &&
        !cuids.recoverable.has(instanceKey(p)) &&
        this.opts.shipped?.(streamKey),
    );
    if (lost.length)
      throw ERR_STATE_DAMAGED(
        `${cuids.path} has no CUID for ${lost.length} container instance(s) whose lines were already sent (${lost
          .slice(0, 5)
          .map(({ p }) => instanceKey(p))
          .join(
            ", ",
          )}), and the CUID ledger does not know them either: a new CUID would silently change their identity. Restore ${cuids.path}${cuids.quarantined ? ` (the damaged file is kept as ${cuids.quarantined})` : ""}; or, to give every instance a new CUID knowingly, also remove ${join(this.opts.stateDir, "checkpoints.json")} (their logs are then read again from the start)`,
      );
  }

  private createExisting(): void {
    const found: ContainerLogPath[] = [];
    const keyed: Array<{ p: ContainerLogPath; streamKey: string }> = [];
    const list = (d: string) => {
      try {
        return readdirSync(d);
      } catch {
        return [];
      }
    };
    const podDir = this.roots[0]!;
    for (const pod of list(podDir))
      for (const c of list(join(podDir, pod)))
        for (const f of list(join(podDir, pod, c))) {
          const p = parsePodLogPath(`${pod}/${c}/${f}`);
          if (p && !(this.isOwnPod(p) && !this.opts.node.includeOwnLogs)) {
            found.push(p);
            keyed.push({ p, streamKey: `file:0:${pod}/${c}/${f}` });
          }
        }
    if (this.opts.node.dockerLogDir)
      for (const id of list(this.roots[1]!)) {
        const p = parseDockerLogPath(`${id}/${id}-json.log`);
        if (p && existsSync(join(this.roots[1]!, id, `${id}-json.log`))) {
          found.push(p);
          keyed.push({ p, streamKey: `file:1:${id}/${id}-json.log` });
        }
      }
    this.checkDamage(keyed);
    const created = this.cuids.createMany(found);
    for (const e of this.cuids.recovered.splice(0))
      this.opts.log.warn(
        { cuid: e.cuid, key: e.key, path: this.cuids.path },
        "CUID of a running container instance was missing from node-cuids.jsonl; recovered from the ledger",
      );
    for (const e of created) {
      this.opts.log.info({ cuid: e.cuid, ...withoutKey(e) }, "new container instance");
      this.instanceStarted(e);
    }
  }

  private svcOf(e: ContainerCuid): string {
    return e.pod_uid !== undefined
      ? `${e.container}.${e.namespace}.${this.opts.node.clusterDomain}`
      : (e.container ?? e.container_id?.slice(0, 12) ?? "docker");
  }

  private readonly stopped = new Set<string>();

  private instanceStarted(e: ContainerCuid): void {
    this.opts.onInstance?.(e);
    const ledger = this.opts.ledger;
    if (!ledger) return;
    this.recordLedgerStart(e);
    // A newer restart of the same container means the previous instances have stopped.
    if (e.pod_uid !== undefined && e.restart !== undefined)
      for (const old of this.cuids.all())
        if (old.pod_uid === e.pod_uid && old.container === e.container && (old.restart ?? 0) < e.restart)
          this.instanceStopped(old);
  }

  /** Pod IP written to the ledger per instance key: `whois <ip>` needs it, and it is known only from the API. */
  private readonly ledgerIp = new Map<string, string>();

  private recordLedgerStart(e: ContainerCuid): void {
    const podIp = e.pod_uid !== undefined ? this.watcher?.get(e.pod_uid)?.podIP : undefined;
    if (podIp) this.ledgerIp.set(e.key, podIp);
    this.opts.ledger?.recordStart({
      cuid: e.cuid,
      svc: this.svcOf(e),
      started_at: e.created_at,
      ...withoutKey(e),
      ...(this.opts.node.nodeName ? { node: this.opts.node.nodeName } : {}),
      ...(podIp ? { pod_ip: podIp } : {}),
    });
  }

  /** The API server says the pod is gone (its containers have ended): its running instances stop now. */
  private podDeleted(uid: string): void {
    for (const e of this.cuids.all()) if (e.pod_uid === uid) this.instanceStopped(e);
  }

  private instanceStopped(e: ContainerCuid): void {
    if (this.stopped.has(e.key)) return;
    this.stopped.add(e.key);
    this.opts.ledger?.recordStop(e.cuid);
  }

  async stop(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    await this.watcher?.stop();
    this.cuids.close();
  }

  /** Which container instance a file belongs to, from its root and relative path. */
  private parse(info: StreamInfo): ContainerLogPath | undefined {
    const root = Number(info.key.split(":")[1]);
    return root === 0 ? parsePodLogPath(info.relPath) : parseDockerLogPath(info.relPath);
  }

  readonly streamFor = (info: StreamInfo): StreamInfo => {
    const p = this.parse(info);
    if (!p) return info; // not a container log file: tailed as a plain file with the agent's own identity
    const { entry, created } = this.cuids.cuidFor(p);
    const fields: Fields = {};
    let svc: string;
    if (p.kind === "pod") {
      fields.namespace = p.namespace;
      fields.pod = p.pod;
      fields.pod_uid = p.podUid;
      fields.container = p.container;
      fields.restart = p.restart;
      svc = `${p.container}.${p.namespace}.${this.opts.node.clusterDomain}`;
      this.trackPodFields(p.podUid, fields);
    } else {
      fields.container_id = p.containerId;
      const name = dockerName(info.path);
      if (name) fields.container = name;
      svc = name ?? p.containerId.slice(0, 12);
    }
    if (this.opts.node.nodeName) fields.node = this.opts.node.nodeName;
    if (created) {
      this.opts.log.info({ cuid: entry.cuid, ...fields, path: info.path }, "new container instance");
      this.instanceStarted(entry);
    }
    return { ...info, cuid: entry.cuid, svc, fields };
  };

  readonly decoderFor = (info: StreamInfo): LineDecoder | undefined => {
    const p = this.parse(info);
    if (!p) return undefined;
    const o = { maxLineBytes: this.opts.maxLineBytes };
    // kubelet's files are CRI; with the (removed) dockershim they were links to Docker json-file logs.
    const d =
      p.kind === "docker" || startsWithBrace(info.path) ? new DockerJsonDecoder(o) : new CriDecoder(o);
    return this.isOwnPod(p) ? new StderrOnlyDecoder(d) : d;
  };

  private trackPodFields(uid: string, fields: Fields): void {
    let set = this.fieldsByPod.get(uid);
    if (!set) {
      set = new Set();
      this.fieldsByPod.set(uid, set);
    }
    set.add(fields);
    const pod = this.watcher?.get(uid);
    if (pod) applyPod(fields, pod);
  }

  private enrichPod(pod: PodMeta): void {
    const set = this.fieldsByPod.get(pod.uid);
    if (set) for (const f of set) applyPod(f, pod);
    // The IP arrives after the instance's ledger start (the kubelet writes logs before the API has the pod's
    // status): add it to the running instances' entries (the ledger keeps the first start time).
    if (!pod.podIP || !this.opts.ledger) return;
    for (const e of this.cuids.all())
      if (e.pod_uid === pod.uid && !this.stopped.has(e.key) && this.ledgerIp.get(e.key) !== pod.podIP)
        this.recordLedgerStart(e);
  }

  /** Forgets instances whose log file has been gone for `forgetAfter` (deleted pods, old restarts). */
  sweep(now = Date.now()): number {
    let forgotten = 0;
    const { podLogDir, dockerLogDir, forgetAfter } = this.opts.node;
    for (const e of [...this.cuids.all()]) {
      const path =
        e.pod_uid !== undefined
          ? join(podLogDir, `${e.namespace}_${e.pod}_${e.pod_uid}`, String(e.container), `${e.restart}.log`)
          : dockerLogDir && e.container_id
            ? join(dockerLogDir, e.container_id, `${e.container_id}-json.log`)
            : undefined;
      if (!path || !instanceLogGone(path)) {
        this.missingSince.delete(e.key);
        continue;
      }
      this.instanceStopped(e);
      const since = this.missingSince.get(e.key) ?? now;
      this.missingSince.set(e.key, since);
      if (now - since >= forgetAfter) {
        this.cuids.forget(e.key);
        this.missingSince.delete(e.key);
        this.stopped.delete(e.key);
        if (e.pod_uid) this.fieldsByPod.delete(e.pod_uid);
        forgotten++;
      }
    }
    return forgotten;
  }
}

/** How often instance stops are looked for on disk (pod deleted, log gone) when the API server does not say first. */
const STOP_CHECK_MS = 2000;

/**
 * An instance's log is gone when neither its file nor a rotated sibling exists: the kubelet rotates by renaming
 * `<n>.log` to `<n>.log.<time>` before the runtime reopens `<n>.log`, and that gap is not a stop.
 */
function instanceLogGone(path: string): boolean {
  if (existsSync(path)) return false;
  const rotated = `${basename(path)}.`;
  try {
    return !readdirSync(dirname(path)).some((name) => name.startsWith(rotated));
  } catch {
    return true;
  }
}

function withoutKey(e: ContainerCuid): Record<string, string | number> {
  const { key: _k, cuid: _c, version: _v, created_at: _t, ...rest } = e;
  return rest;
}

function applyPod(fields: Fields, pod: PodMeta): void {
  if (pod.podIP) fields.pod_ip = pod.podIP;
  for (const k of Object.keys(fields))
    if (k.startsWith("labels.") && !(k.slice(7) in pod.labels)) delete fields[k];
  for (const [k, v] of Object.entries(pod.labels)) fields[`labels.${k}`] = v;
}

/** Docker keeps the container's name in config.v2.json beside its log. */
function dockerName(logPath: string): string | undefined {
  try {
    const cfg = JSON.parse(readFileSync(join(logPath, "..", "config.v2.json"), "utf8")) as { Name?: string };
    return cfg.Name ? cfg.Name.replace(/^\//, "") : undefined;
  } catch {
    return undefined;
  }
}

/** A Docker json-file log starts with `{`; a CRI log with a digit (its timestamp). */
function startsWithBrace(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const b = Buffer.alloc(1);
    return readSync(fd, b, 0, 1, 0) === 1 && b[0] === 0x7b;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
