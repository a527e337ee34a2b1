import { closeSync, fstatSync, fsyncSync, readFileSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Client } from "@elastic/elasticsearch";
import { clientOptions, describeEsError, type EsConnection } from "../config/elasticsearch.js";
import { ERR_STATE_DIR, errorMessage, isIkontainerError } from "../core/errors.js";
import { mkdirWithMode, openNoFollow, STATE_DIR_MODE, writeFileAtomic } from "../core/safe-fs.js";
import { LEDGER_INDEX, ledgerIndexBody } from "../sinks/elasticsearch-schema.js";

/**
 * The CUID ledger: which container instance (CUID) ran as which svc/pod/IP, from when to when.
 * `whois <ip> --at T` answers from it.
 *
 * Locally it is an append-only JSON-lines file of events (`<state-dir>/ledger.jsonl`, fsynced): the source of
 * truth, written before anything else so an unreachable Elasticsearch never blocks a start. When Elasticsearch
 * is configured, the folded entries (one document per CUID, `_id` = CUID) are copied into the index
 * `ikontainer-cuids` in the background, with retries; `<state-dir>/ledger.es-offset` remembers how far.
 */

export interface LedgerEntry {
  cuid: string;
  svc: string;
  pod?: string;
  namespace?: string;
  node?: string;
  pod_ip?: string;
  host_ip?: string;
  started_at: string;
  stopped_at?: string;
}

export type LedgerStart = Omit<LedgerEntry, "stopped_at" | "started_at"> & { started_at?: string };

type LedgerEvent =
  | ({ event: "start" } & Omit<LedgerEntry, "stopped_at">)
  | { event: "stop"; cuid: string; stopped_at: string };

export const ledgerPath = (stateDir: string): string => join(stateDir, "ledger.jsonl");

/** Folds events into one entry per CUID: the first start's time, the latest fields, the stop after the last start. */
export function foldLedger(text: string): LedgerEntry[] {
  const byCuid = new Map<string, LedgerEntry>();
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let ev: LedgerEvent;
    try {
      ev = JSON.parse(line) as LedgerEvent;
    } catch {
      continue; // a torn last line after a crash
    }
    if (typeof ev?.cuid !== "string") continue;
    const cur = byCuid.get(ev.cuid);
    if (ev.event === "start") {
      const { event: _e, ...fields } = ev;
      const next: LedgerEntry = { ...cur, ...fields };
      if (cur && cur.started_at < fields.started_at) next.started_at = cur.started_at;
      delete next.stopped_at;
      byCuid.set(ev.cuid, next);
    } else if (ev.event === "stop" && cur) {
      cur.stopped_at = ev.stopped_at;
    }
  }
  return [...byCuid.values()].sort((a, b) => a.started_at.localeCompare(b.started_at));
}

export function readLedger(stateDir: string): LedgerEntry[] {
  try {
    return foldLedger(readFileSync(ledgerPath(stateDir), "utf8"));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw ERR_STATE_DIR(`cannot read ${ledgerPath(stateDir)}: ${errorMessage(e)}`, e);
  }
}

const clean = (o: Record<string, unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== "") out[k] = v;
  return out;
};

export interface CuidLedgerOptions {
  es?: EsConnection;
  index?: string;
  onWarn?: (msg: string, fields: Record<string, unknown>) => void;
  retryMaxDelay?: number;
}

export class CuidLedger {
  private readonly path: string;
  private readonly offsetPath: string;
  private client: Client | undefined;
  private readonly index: string;
  private syncing: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private closed = false;
  private indexReady = false;

  constructor(
    readonly stateDir: string,
    private readonly opts: CuidLedgerOptions = {},
  ) {
    this.path = ledgerPath(stateDir);
    this.offsetPath = join(stateDir, "ledger.es-offset");
    this.index = opts.index ?? LEDGER_INDEX;
  }

  /** Called at agent start (and by node mode once per container instance). Durable locally when it returns. */
  recordStart(entry: LedgerStart): void {
    const ev = clean({ event: "start", ...entry, started_at: entry.started_at ?? new Date().toISOString() });
    this.append(ev);
    this.kick();
  }

  /** Called at a clean stop. */
  recordStop(cuid: string, stoppedAt: Date = new Date()): void {
    this.append({ event: "stop", cuid, stopped_at: stoppedAt.toISOString() });
    this.kick();
  }

  entries(): LedgerEntry[] {
    return readLedger(this.stateDir);
  }

  private checkedEnd = false;

  private append(ev: Record<string, unknown>): void {
    try {
      mkdirWithMode(this.stateDir, STATE_DIR_MODE);
      const fd = openNoFollow(this.path, "a+");
      try {
        if (!this.checkedEnd) this.endUnfinishedLine(fd);
        writeSync(fd, `${JSON.stringify(ev)}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    } catch (e) {
      if (isIkontainerError(e)) throw e;
      throw ERR_STATE_DIR(`cannot write the CUID ledger ${this.path}: ${errorMessage(e)}`, e);
    }
  }

  /**
   * A crash (or a full disk) while an event was written leaves an unfinished last line; appending to it would
   * glue the next event onto it and lose that one too. End it with a newline (it stays an unreadable line that
   * readers skip) and say so, once, before the first event this process writes.
   */
  private endUnfinishedLine(fd: number): void {
    this.checkedEnd = true;
    const size = fstatSync(fd).size;
    if (size === 0) return;
    const tail = Buffer.alloc(Math.min(size, 65536));
    readSync(fd, tail, 0, tail.length, size - tail.length);
    if (tail[tail.length - 1] === 0x0a) return;
    const nl = tail.lastIndexOf(0x0a);
    writeSync(fd, "\n");
    this.opts.onWarn?.(
      "the CUID ledger had an unfinished last line (a write cut short); ended it so later events are kept",
      {
        path: this.path,
        unfinishedBytes: nl === -1 && size > tail.length ? `>${tail.length}` : tail.length - nl - 1,
      },
    );
  }

  private kick(): void {
    if (!this.opts.es || this.closed) return;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    void this.sync().catch(() => undefined);
  }

  /** Copies entries not yet in Elasticsearch; on failure retries in the background with backoff. */
  sync(): Promise<void> {
    if (!this.opts.es) return Promise.resolve();
    this.syncing ??= this.syncOnce()
      .then(() => {
        this.failures = 0;
      })
      .catch((e: unknown) => {
        this.failures++;
        const delay = Math.min(this.opts.retryMaxDelay ?? 30_000, 250 * 2 ** Math.min(this.failures, 10));
        this.opts.onWarn?.("cannot copy the CUID ledger to Elasticsearch; retrying", {
          err: describeEsError(e),
          retryInMs: delay,
        });
        if (!this.closed) {
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            void this.sync().catch(() => undefined);
          }, delay);
          this.retryTimer.unref();
        }
        throw e;
      })
      .finally(() => {
        this.syncing = undefined;
      });
    return this.syncing;
  }

  /** Waits until every local entry is in Elasticsearch, or `timeoutMs` passed (false). */
  async flush(timeoutMs: number): Promise<boolean> {
    if (!this.opts.es) return true;
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      try {
        await this.sync();
        if (this.pending().length === 0) return true;
      } catch {
        await new Promise((r) => setTimeout(r, Math.min(500, Math.max(0, until - Date.now()))));
      }
    }
    return false;
  }

  private syncedOffset(): number {
    try {
      return Number(readFileSync(this.offsetPath, "utf8").trim()) || 0;
    } catch {
      return 0;
    }
  }

  private pending(): string {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch {
      return "";
    }
    const done = this.syncedOffset();
    const tail = Buffer.from(text).subarray(done).toString("utf8");
    return tail.slice(0, tail.lastIndexOf("\n") + 1);
  }

  /** The Elasticsearch client, loaded on first use (the agent without Elasticsearch never loads it). */
  private async esClient(): Promise<Client> {
    if (!this.client) {
      const { Client } = await import("@elastic/elasticsearch");
      this.client = new Client(clientOptions(this.opts.es!));
    }
    return this.client;
  }

  private async syncOnce(): Promise<void> {
    const client = await this.esClient();
    const all = readFileSync(this.path);
    const done = this.syncedOffset();
    const end = all.lastIndexOf(0x0a) + 1;
    if (end <= done) return;
    const touched = new Set<string>();
    for (const line of all.subarray(done, end).toString("utf8").split("\n")) {
      try {
        const ev = JSON.parse(line) as { cuid?: string };
        if (typeof ev.cuid === "string") touched.add(ev.cuid);
      } catch {
        // blank or torn line
      }
    }
    if (!this.indexReady) {
      const exists = await client.indices.exists({ index: this.index });
      if (!exists) {
        try {
          await client.indices.create({ index: this.index, ...ledgerIndexBody() } as never);
        } catch (e) {
          if (!/resource_already_exists/.test(errorMessage(e))) throw e;
        }
      }
      this.indexReady = true;
    }
    const entries = foldLedger(all.subarray(0, end).toString("utf8")).filter((e) => touched.has(e.cuid));
    if (entries.length > 0) {
      const operations = entries.flatMap((e) => [{ index: { _index: this.index, _id: e.cuid } }, e]);
      const r = await client.bulk({ operations, refresh: "wait_for" });
      if (r.errors) {
        const first = r.items.find((i) => i.index?.error)?.index?.error;
        throw new Error(`ledger bulk rejected: ${first?.type}: ${first?.reason}`);
      }
    }
    writeFileAtomic(this.offsetPath, String(end));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.syncing?.catch(() => undefined);
    await this.client?.close();
  }
}
