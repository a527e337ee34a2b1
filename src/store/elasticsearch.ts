import { Client, type estypes } from "@elastic/elasticsearch";
import { clientOptions, describeEsError, type EsConnection, redactUrl } from "../config/elasticsearch.js";
import { ERR_QUERY } from "../core/errors.js";
import { DEFAULT_LOGS_PREFIX, LEDGER_INDEX } from "../sinks/elasticsearch-schema.js";
import type { LedgerEntry } from "./ledger.js";
import type { LogFilter, LogRecord, Store } from "./query.js";

/** The query commands over Elasticsearch: `ikontainer-logs-*` for lines, `ikontainer-cuids` for the ledger. */
export class EsStore implements Store {
  private readonly client: Client;

  constructor(
    private readonly conn: EsConnection,
    private readonly prefix = DEFAULT_LOGS_PREFIX,
    private readonly ledgerIndex = LEDGER_INDEX,
  ) {
    this.client = new Client(clientOptions(conn));
  }

  private fail(what: string, e: unknown): never {
    throw ERR_QUERY(
      `cannot ${what} in Elasticsearch at ${redactUrl(this.conn.node)}: ${describeEsError(e)}`,
      e,
    );
  }

  /** Pages through the matches in time order with search_after (one page in memory at a time). */
  async *logs(filter: LogFilter): AsyncGenerator<LogRecord> {
    const must: estypes.QueryDslQueryContainer[] = [];
    if (filter.cuid !== undefined) must.push({ term: { ikontainer_CUID: filter.cuid } });
    if (filter.requestId !== undefined) must.push({ term: { request_id: filter.requestId } });
    if (filter.svc !== undefined) must.push({ term: { svc: filter.svc } });
    if (filter.since !== undefined || filter.until !== undefined) {
      const range: Record<string, string> = {};
      if (filter.since !== undefined) range.gte = new Date(filter.since).toISOString();
      if (filter.until !== undefined) range.lt = new Date(filter.until).toISOString();
      must.push({ range: { "@timestamp": range } });
    }
    const limit = filter.limit ?? Number.POSITIVE_INFINITY;
    let sent = 0;
    let after: unknown[] | undefined;
    while (sent < limit) {
      const size = Math.min(5000, limit - sent);
      let hits: Array<estypes.SearchHit<Record<string, unknown>>>;
      try {
        const r = await this.client.search<Record<string, unknown>>({
          index: `${this.prefix}-*`,
          ignore_unavailable: true,
          allow_no_indices: true,
          size,
          query: { bool: { filter: must } },
          sort: [
            { "@timestamp": { order: "asc" } },
            { source: { order: "asc", unmapped_type: "keyword" } },
            { ikontainer_offset: { order: "asc", unmapped_type: "long" } },
            { ikontainer_part: { order: "asc", unmapped_type: "integer", missing: 0 } },
          ],
          ...(after ? { search_after: after as estypes.SortResults } : {}),
        });
        hits = r.hits.hits;
      } catch (e) {
        this.fail("search the log indices", e);
      }
      for (const h of hits) yield toRecord(h._source ?? {});
      sent += hits.length;
      if (hits.length < size) break;
      after = hits[hits.length - 1]!.sort;
    }
  }

  async ledger(cuids?: readonly string[]): Promise<LedgerEntry[]> {
    const out: LedgerEntry[] = [];
    try {
      const r = await this.client.search<LedgerEntry>({
        index: this.ledgerIndex,
        ignore_unavailable: true,
        allow_no_indices: true,
        size: 10_000,
        ...(cuids ? { query: { terms: { cuid: [...cuids] } } } : {}),
        sort: [{ started_at: { order: "asc" } }],
      });
      for (const h of r.hits.hits) if (h._source) out.push(h._source);
    } catch (e) {
      this.fail(`read the CUID ledger (${this.ledgerIndex})`, e);
    }
    return out;
  }

  /** Ledger entries that held `ip` (as pod IP or host IP), straight from the index. */
  async ledgerForIp(ip: string): Promise<LedgerEntry[]> {
    try {
      const r = await this.client.search<LedgerEntry>({
        index: this.ledgerIndex,
        ignore_unavailable: true,
        allow_no_indices: true,
        size: 10_000,
        query: {
          bool: { should: [{ term: { pod_ip: ip } }, { term: { host_ip: ip } }], minimum_should_match: 1 },
        },
        sort: [{ started_at: { order: "asc" } }],
      });
      return r.hits.hits.flatMap((h) => (h._source ? [h._source] : []));
    } catch (e) {
      this.fail(`read the CUID ledger (${this.ledgerIndex})`, e);
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

function toRecord(s: Record<string, unknown>): LogRecord {
  const str = (v: unknown) => (typeof v === "string" || typeof v === "number" ? String(v) : undefined);
  const r: LogRecord = {
    cuid: str(s.ikontainer_CUID) ?? "",
    svc: str(s.svc) ?? "",
    message: str(s.message) ?? "",
  };
  const t = str(s["@timestamp"]);
  if (t) r.time = t;
  for (const f of ["request_id", "pod", "namespace", "node", "pod_ip", "source"] as const) {
    const v = str(s[f]);
    if (v !== undefined) r[f] = v;
  }
  return r;
}
