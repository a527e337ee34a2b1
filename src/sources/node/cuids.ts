import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";
import { newCuid } from "../../core/cuid.js";
import { ERR_STATE_DIR } from "../../core/errors.js";
import { type ContainerLogPath, instanceKey } from "./paths.js";

/** What the node agent remembers about one container instance (also the CUID ledger entry). */
export interface ContainerCuid {
  key: string;
  cuid: string;
  version: 4 | 7;
  created_at: string;
  namespace?: string;
  pod?: string;
  pod_uid?: string;
  container?: string;
  restart?: number;
  container_id?: string;
}

interface Tombstone {
  key: string;
  forgotten_at: string;
}

/**
 * Per-container-instance CUIDs on a node, made locally the first time an instance's log appears and kept in
 * `<state-dir>/node-cuids.jsonl` so an agent restart keeps them. The file is append-only (one fsynced line
 * per new instance or forgotten one); it is compacted when it is opened. No API server is involved, so a
 * recreated pod (new UID) or a restarted container (new restart count) can never inherit an old identity.
 */
export class ContainerCuidStore {
  readonly path: string;
  private readonly entries = new Map<string, ContainerCuid>();
  private fd: number;

  constructor(
    stateDir: string,
    private readonly version: 4 | 7,
  ) {
    this.path = join(stateDir, "node-cuids.jsonl");
    try {
      mkdirSync(stateDir, { recursive: true });
    } catch (e) {
      throw ERR_STATE_DIR(`cannot create state dir ${stateDir}: ${(e as Error).message}`, e);
    }
    let lines = 0;
    let text = "";
    try {
      text = readFileSync(this.path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT")
        throw ERR_STATE_DIR(`cannot read ${this.path}: ${(e as Error).message}`, e);
    }
    for (const line of text.split("\n")) {
      if (line === "") continue;
      lines++;
      let rec: ContainerCuid | Tombstone;
      try {
        rec = JSON.parse(line) as ContainerCuid | Tombstone;
      } catch {
        // A torn last line (crash mid-append) is the only way to get here; the instance gets a CUID again.
        continue;
      }
      if ("forgotten_at" in rec) this.entries.delete(rec.key);
      else if (typeof rec.cuid === "string" && typeof rec.key === "string") this.entries.set(rec.key, rec);
    }
    if (lines > this.entries.size) this.compact();
    this.lines = this.entries.size;
    this.fd = this.openAppend();
  }

  /** Lines in the file (entries, tombstones): the file is rewritten when most of them are dead. */
  private lines: number;

  private openAppend(): number {
    try {
      return openSync(this.path, "a");
    } catch (e) {
      throw ERR_STATE_DIR(`cannot write ${this.path}: ${(e as Error).message}`, e);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): ContainerCuid | undefined {
    return this.entries.get(key);
  }

  all(): IterableIterator<ContainerCuid> {
    return this.entries.values();
  }

  /** The instance's CUID, made and durably recorded the first time the instance is seen. */
  cuidFor(p: ContainerLogPath): { entry: ContainerCuid; created: boolean } {
    const key = instanceKey(p);
    const known = this.entries.get(key);
    if (known) return { entry: known, created: false };
    const entry = this.makeEntry(p);
    this.append(entry);
    this.entries.set(key, entry);
    return { entry, created: true };
  }

  private makeEntry(p: ContainerLogPath): ContainerCuid {
    return {
      key: instanceKey(p),
      cuid: newCuid(this.version),
      version: this.version,
      created_at: new Date().toISOString(),
      ...(p.kind === "pod"
        ? {
            namespace: p.namespace,
            pod: p.pod,
            pod_uid: p.podUid,
            container: p.container,
            restart: p.restart,
          }
        : { container_id: p.containerId }),
    };
  }

  /**
   * Records CUIDs for many new instances with one write and one fsync (the agent's start on a busy node:
   * hundreds of containers at once). Known instances are left as they are. Returns the new entries.
   */
  createMany(paths: readonly ContainerLogPath[]): ContainerCuid[] {
    const created: ContainerCuid[] = [];
    for (const p of paths) {
      if (this.entries.has(instanceKey(p))) continue;
      const entry = this.makeEntry(p);
      this.entries.set(entry.key, entry);
      created.push(entry);
    }
    if (created.length) this.append(...created);
    return created;
  }

  /** Drops an instance whose logs are gone for good (pod deleted); its key can never come back. */
  forget(key: string): void {
    if (!this.entries.delete(key)) return;
    this.append({ key, forgotten_at: new Date().toISOString() });
    // A node with pod churn would grow the file forever between restarts: rewrite it when mostly dead.
    if (this.lines > 1000 && this.lines > 4 * this.entries.size) {
      closeSync(this.fd);
      this.compact();
      this.lines = this.entries.size;
      this.fd = this.openAppend();
    }
  }

  close(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }

  private append(...recs: Array<ContainerCuid | Tombstone>): void {
    try {
      writeSync(this.fd, recs.map((r) => `${JSON.stringify(r)}\n`).join(""));
      fsyncSync(this.fd);
      this.lines += recs.length;
    } catch (e) {
      throw ERR_STATE_DIR(`cannot write ${this.path}: ${(e as Error).message}`, e);
    }
  }

  private compact(): void {
    const tmp = `${this.path}.${process.pid}.tmp`;
    try {
      const fd = openSync(tmp, "w");
      let body = "";
      for (const e of this.entries.values()) body += `${JSON.stringify(e)}\n`;
      writeSync(fd, body);
      fsyncSync(fd);
      closeSync(fd);
      renameSync(tmp, this.path);
    } catch (e) {
      throw ERR_STATE_DIR(`cannot rewrite ${this.path}: ${(e as Error).message}`, e);
    }
  }
}
