import { closeSync, fsyncSync, writeSync } from "node:fs";
import { join } from "node:path";
import { isUuid, newCuid } from "../../core/cuid.js";
import { ERR_STATE_DIR, isIkontainerError } from "../../core/errors.js";
import {
  mkdirWithMode,
  openNoFollow,
  readFileNoFollow,
  STATE_DIR_MODE,
  STATE_FILE_MODE,
  writeFileAtomic,
  writeFileExclusive,
} from "../../core/safe-fs.js";
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
  /** Lines of the file that could not be used at start (number, reason); the copy kept aside. */
  readonly damage: Array<{ line: number; reason: string }> = [];
  quarantined: string | undefined;
  private readonly entries = new Map<string, ContainerCuid>();
  private fd: number;

  constructor(
    stateDir: string,
    private readonly version: 4 | 7,
  ) {
    this.path = join(stateDir, "node-cuids.jsonl");
    try {
      mkdirWithMode(stateDir, STATE_DIR_MODE);
    } catch (e) {
      throw ERR_STATE_DIR(`cannot create state dir ${stateDir}: ${(e as Error).message}`, e);
    }
    let lines = 0;
    let text = "";
    try {
      text = readFileNoFollow(this.path) ?? "";
    } catch (e) {
      if (isIkontainerError(e)) throw e;
      throw ERR_STATE_DIR(`cannot read ${this.path}: ${(e as Error).message}`, e);
    }
    const all = text.split("\n");
    all.forEach((line, i) => {
      if (line === "") return;
      lines++;
      const rec = parseLine(line);
      const torn = i === all.length - 1; // no newline after it: the write was cut short
      if (typeof rec === "string") {
        this.damage.push({ line: i + 1, reason: torn ? `cut short (${rec})` : rec });
        return;
      }
      if ("forgotten_at" in rec) this.entries.delete(rec.key);
      else this.entries.set(rec.key, rec);
    });
    // A damaged file is kept aside as it was (for a human to look at) before it is rewritten with the good lines.
    if (this.damage.length) {
      this.quarantined = `${this.path}.damaged-${new Date().toISOString().replace(/[:.]/g, "-")}`;
      try {
        writeFileExclusive(this.quarantined, text, STATE_FILE_MODE, true);
      } catch (e) {
        throw ERR_STATE_DIR(`cannot keep a copy of the damaged ${this.path}: ${(e as Error).message}`, e);
      }
    }
    if (lines > this.entries.size) this.compact();
    this.lines = this.entries.size;
    this.fd = this.openAppend();
  }

  /** Lines in the file (entries, tombstones): the file is rewritten when most of them are dead. */
  private lines: number;

  private openAppend(): number {
    try {
      return openNoFollow(this.path, "a", STATE_FILE_MODE);
    } catch (e) {
      if (isIkontainerError(e)) throw e;
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

  /**
   * CUIDs known elsewhere (the CUID ledger) for instances this file lost: used instead of a new CUID, so damage
   * to this file never changes a running container's identity (NodeMode fills it at start).
   */
  readonly recoverable = new Map<string, { cuid: string; created_at: string }>();
  /** Instances whose CUID came from `recoverable` (logged by NodeMode). */
  readonly recovered: ContainerCuid[] = [];

  private makeEntry(p: ContainerLogPath): ContainerCuid {
    const known = this.recoverable.get(instanceKey(p));
    const cuid = known?.cuid ?? newCuid(this.version);
    const entry: ContainerCuid = {
      key: instanceKey(p),
      cuid,
      version: known ? (Number(cuid[14]) === 4 ? 4 : 7) : this.version,
      created_at: known?.created_at ?? new Date().toISOString(),
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
    if (known) {
      this.recoverable.delete(entry.key);
      this.recovered.push(entry);
    }
    return entry;
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
    try {
      let body = "";
      for (const e of this.entries.values()) body += `${JSON.stringify(e)}\n`;
      writeFileAtomic(this.path, body, { tmp: `${this.path}.${process.pid}.tmp`, fsync: true });
    } catch (e) {
      if (isIkontainerError(e)) throw e;
      throw ERR_STATE_DIR(`cannot rewrite ${this.path}: ${(e as Error).message}`, e);
    }
  }
}

/** One line of the file, or why it cannot be used. */
function parseLine(line: string): ContainerCuid | Tombstone | string {
  let rec: unknown;
  try {
    rec = JSON.parse(line);
  } catch (e) {
    return `not JSON: ${(e as Error).message}`;
  }
  if (rec === null || typeof rec !== "object") return "not an object";
  const r = rec as Record<string, unknown>;
  if (typeof r.key !== "string" || r.key === "") return "no key";
  if ("forgotten_at" in r) return r as unknown as Tombstone;
  if (!isUuid(r.cuid)) return "no valid cuid";
  return r as unknown as ContainerCuid;
}
