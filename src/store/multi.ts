import type { LedgerEntry } from "./ledger.js";
import type { LogFilter, LogRecord, Store } from "./query.js";

/**
 * Several stores read as one: the local stores of several agents (one state dir per container instance, each
 * with its own ledger). Lines are merged in time order; each store is asked for at most `limit` lines, so the
 * merge holds at most stores × limit records.
 */
export class MultiStore implements Store {
  constructor(private readonly stores: readonly Store[]) {}

  async logs(filter: LogFilter): Promise<LogRecord[]> {
    const lists = await Promise.all(this.stores.map((s) => s.logs(filter)));
    return mergeByTime(lists, filter.limit);
  }

  async ledger(cuids?: readonly string[]): Promise<LedgerEntry[]> {
    const byCuid = new Map<string, LedgerEntry>();
    for (const list of await Promise.all(this.stores.map((s) => s.ledger(cuids))))
      for (const e of list) byCuid.set(e.cuid, { ...byCuid.get(e.cuid), ...e });
    return [...byCuid.values()].sort((a, b) => a.started_at.localeCompare(b.started_at));
  }

  async close(): Promise<void> {
    await Promise.all(this.stores.map((s) => s.close()));
  }
}

const timeOf = (r: LogRecord): number =>
  r.time === undefined ? Number.POSITIVE_INFINITY : Date.parse(r.time);

/** Merges lists already in time order; ties keep list order, then order within a list. */
export function mergeByTime(lists: readonly LogRecord[][], limit = Number.POSITIVE_INFINITY): LogRecord[] {
  const pos = lists.map(() => 0);
  const out: LogRecord[] = [];
  while (out.length < limit) {
    let best = -1;
    for (let i = 0; i < lists.length; i++) {
      const r = lists[i]![pos[i]!];
      if (r && (best < 0 || timeOf(r) < timeOf(lists[best]![pos[best]!]!))) best = i;
    }
    if (best < 0) break;
    out.push(lists[best]![pos[best]!++]!);
  }
  return out;
}
