import type { LedgerEntry } from "./ledger.js";
import { type LogFilter, type LogRecord, type Store, timeKey } from "./query.js";

/**
 * Several stores read as one: the local stores of several agents (one state dir per container instance, each
 * with its own ledger). Lines are merged in time order as they stream, one pending record per store, so memory
 * does not grow with the stores' size.
 */
export class MultiStore implements Store {
  constructor(private readonly stores: readonly Store[]) {}

  logs(filter: LogFilter): AsyncIterable<LogRecord> {
    return mergeStreamsByTime(
      this.stores.map((s) => s.logs(filter)),
      filter.limit,
    );
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

/** Merges streams already in time order; ties keep stream order, then order within a stream. */
export async function* mergeStreamsByTime(
  streams: readonly AsyncIterable<LogRecord>[],
  limit = Number.POSITIVE_INFINITY,
): AsyncGenerator<LogRecord> {
  const its = streams.map((s) => s[Symbol.asyncIterator]());
  const heads = await Promise.all(its.map((it) => it.next()));
  try {
    for (let n = 0; n < limit; n++) {
      let best = -1;
      for (let i = 0; i < heads.length; i++) {
        const h = heads[i]!;
        if (!h.done && (best < 0 || timeKey(h.value) < timeKey(heads[best]!.value as LogRecord))) best = i;
      }
      if (best < 0) return;
      yield heads[best]!.value as LogRecord;
      heads[best] = await its[best]!.next();
    }
  } finally {
    // stop the streams not read to their end (their files are closed by their own finally blocks)
    await Promise.all(its.map((it, i) => (heads[i]!.done ? undefined : it.return?.())));
  }
}
