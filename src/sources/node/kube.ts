import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { ERR_INVALID_SETTING } from "../../core/errors.js";

/**
 * Optional enrichment from the Kubernetes API server: pod IP and labels of the pods on THIS node, keyed by
 * pod UID (never by name: a recreated pod with the same name is another pod). One list + watch with
 * `fieldSelector=spec.nodeName=<node>`, so the agent only needs `get/list/watch` on pods and the API
 * server only sends this node's pods. Identity never depends on it: CUIDs are made from the log paths.
 */
export interface PodMeta {
  uid: string;
  name: string;
  namespace: string;
  podIP?: string;
  labels: Record<string, string>;
}

export interface KubeApiOptions {
  /** `https://host:port`; in a pod: from KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT. */
  url: string;
  /** Service-account token file, re-read for every request (projected tokens are rotated). */
  tokenFile?: string;
  /** CA bundle for the API server's certificate. */
  caFile?: string;
  nodeName: string;
  /** Called for every add/update/delete of a pod on this node. */
  onPod?: (pod: PodMeta, event: "ADDED" | "MODIFIED" | "DELETED") => void;
  onError?: (err: Error) => void;
  /** The API server answered 410 Gone (our resourceVersion is too old): the watcher lists again. */
  onRelist?: () => void;
  /** How long a deleted pod's metadata is kept (its last lines may still be read). */
  keepDeleted?: number;
}

/** In-cluster API URL from the service environment kubelet injects, or undefined outside a cluster. */
export function inClusterUrl(env: NodeJS.ProcessEnv): string | undefined {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? "443";
  if (!host) return undefined;
  return `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

interface KubePod {
  metadata?: { uid?: string; name?: string; namespace?: string; labels?: Record<string, string> };
  status?: { podIP?: string };
}

function toMeta(p: KubePod): PodMeta | undefined {
  const m = p.metadata;
  if (!m?.uid || !m.name || !m.namespace) return undefined;
  const meta: PodMeta = { uid: m.uid, name: m.name, namespace: m.namespace, labels: { ...(m.labels ?? {}) } };
  if (p.status?.podIP) meta.podIP = p.status.podIP;
  return meta;
}

class GoneError extends Error {}

export class PodWatcher {
  private readonly pods = new Map<string, PodMeta>();
  private readonly deletedAt = new Map<string, number>();
  private resourceVersion = "";
  private stopped = false;
  private current: http.ClientRequest | undefined;
  private readonly agent: http.Agent;
  private readonly selector: string;
  private synced = false;
  private syncWaiters: (() => void)[] = [];
  private loop: Promise<void> | undefined;
  /** Ends the backoff sleep early (stop). */
  private wake: (() => void) | undefined;

  constructor(private readonly opts: KubeApiOptions) {
    const u = new URL(opts.url);
    let ca: Buffer | undefined;
    if (u.protocol === "https:" && opts.caFile) {
      try {
        ca = readFileSync(opts.caFile);
      } catch (e) {
        throw ERR_INVALID_SETTING(
          `invalid --kube-ca-file: cannot read ${opts.caFile} (${(e as Error).message}); in a pod, is the service-account token mounted (automountServiceAccountToken)?`,
          e,
        );
      }
    }
    this.agent =
      u.protocol === "https:"
        ? new https.Agent({ keepAlive: true, ...(ca ? { ca } : {}) })
        : new http.Agent({ keepAlive: true });
    this.selector = encodeURIComponent(`spec.nodeName=${opts.nodeName}`);
  }

  get(uid: string): PodMeta | undefined {
    return this.pods.get(uid);
  }

  get size(): number {
    return this.pods.size;
  }

  /** True once the first list has been received. */
  get isSynced(): boolean {
    return this.synced;
  }

  /** Starts list + watch in the background; resolves after the first list (or rejects if it fails). */
  start(): Promise<void> {
    const first = this.list();
    this.loop = first.then(
      () => this.run(),
      () => this.run(),
    );
    return first;
  }

  /** Resolves when the first list has been received. */
  waitSynced(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((r) => this.syncWaiters.push(r));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    this.current?.destroy();
    this.agent.destroy();
    await this.loop?.catch(() => undefined);
  }

  private async run(): Promise<void> {
    let backoff = 500;
    while (!this.stopped) {
      try {
        if (!this.synced) await this.list();
        await this.watch();
        backoff = 500;
      } catch (e) {
        if (this.stopped) return;
        if (e instanceof GoneError) {
          this.synced = false; // resourceVersion too old: list again
          this.opts.onRelist?.();
          continue;
        }
        this.opts.onError?.(e as Error);
        await new Promise<void>((r) => {
          const t = setTimeout(r, backoff);
          this.wake = () => {
            clearTimeout(t);
            r();
          };
        });
        backoff = Math.min(backoff * 2, 30_000);
      }
      this.expireDeleted();
    }
  }

  private headers(): Record<string, string> {
    const h: Record<string, string> = { accept: "application/json" };
    if (this.opts.tokenFile) h.authorization = `Bearer ${readFileSync(this.opts.tokenFile, "utf8").trim()}`;
    return h;
  }

  private request(path: string): Promise<http.IncomingMessage> {
    const u = new URL(path, this.opts.url);
    const mod = u.protocol === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(u, { agent: this.agent, headers: this.headers() }, (res) => {
        if (res.statusCode === 410) {
          res.resume();
          reject(new GoneError("resource version expired"));
          return;
        }
        if (res.statusCode !== 200) {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => {
            if (body.length < 500) body += c;
          });
          res.on("end", () =>
            reject(new Error(`GET ${u.pathname}${u.search}: HTTP ${res.statusCode} ${body.slice(0, 300)}`)),
          );
          return;
        }
        resolve(res);
      });
      this.current = req;
      req.on("error", reject);
      req.end();
    });
  }

  private async list(): Promise<void> {
    const seen = new Set<string>();
    let cont = "";
    let rv = "";
    do {
      const res = await this.request(
        `/api/v1/pods?fieldSelector=${this.selector}&limit=500${cont ? `&continue=${encodeURIComponent(cont)}` : ""}`,
      );
      let body = "";
      res.setEncoding("utf8");
      for await (const c of res) body += c as string;
      const doc = JSON.parse(body) as {
        metadata?: { resourceVersion?: string; continue?: string };
        items?: KubePod[];
      };
      for (const item of doc.items ?? []) {
        const meta = toMeta(item);
        if (!meta) continue;
        seen.add(meta.uid);
        this.pods.set(meta.uid, meta);
        this.deletedAt.delete(meta.uid);
        this.opts.onPod?.(meta, "ADDED");
      }
      rv = doc.metadata?.resourceVersion ?? rv;
      cont = doc.metadata?.continue ?? "";
    } while (cont);
    // Pods that disappeared while we were not watching.
    for (const [uid, meta] of this.pods)
      if (!seen.has(uid) && !this.deletedAt.has(uid)) {
        this.deletedAt.set(uid, Date.now());
        this.opts.onPod?.(meta, "DELETED");
      }
    this.resourceVersion = rv;
    this.synced = true;
    for (const w of this.syncWaiters.splice(0)) w();
  }

  private async watch(): Promise<void> {
    const res = await this.request(
      `/api/v1/pods?fieldSelector=${this.selector}&watch=true&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=${encodeURIComponent(this.resourceVersion)}`,
    );
    let buf = "";
    res.setEncoding("utf8");
    for await (const chunk of res) {
      buf += chunk as string;
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) this.onEvent(JSON.parse(line) as { type: string; object: KubePod & { code?: number } });
        nl = buf.indexOf("\n");
      }
    }
  }

  private onEvent(ev: { type: string; object: KubePod & { code?: number } }): void {
    const rv = (ev.object.metadata as { resourceVersion?: string } | undefined)?.resourceVersion;
    if (ev.type === "ERROR") {
      if (ev.object.code === 410) throw new GoneError("resource version expired");
      throw new Error(`watch error: ${JSON.stringify(ev.object).slice(0, 300)}`);
    }
    if (rv) this.resourceVersion = rv;
    if (ev.type === "BOOKMARK") return;
    const meta = toMeta(ev.object);
    if (!meta) return;
    if (ev.type === "DELETED") {
      this.pods.set(meta.uid, meta);
      this.deletedAt.set(meta.uid, Date.now());
      this.opts.onPod?.(meta, "DELETED");
    } else if (ev.type === "ADDED" || ev.type === "MODIFIED") {
      this.pods.set(meta.uid, meta);
      this.deletedAt.delete(meta.uid);
      this.opts.onPod?.(meta, ev.type);
    }
  }

  private expireDeleted(): void {
    const keep = this.opts.keepDeleted ?? 600_000;
    const now = Date.now();
    for (const [uid, at] of this.deletedAt)
      if (now - at > keep) {
        this.deletedAt.delete(uid);
        this.pods.delete(uid);
      }
  }
}
