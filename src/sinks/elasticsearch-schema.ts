/**
 * Index names and mappings in Elasticsearch: the daily log indices (with an index template installed at
 * start) and the CUID ledger index. The dashboards in dashboards/ reference only fields defined here
 * (test/elasticsearch/dashboards.test.ts checks it).
 */

export const DEFAULT_LOGS_PREFIX = "ikontainer-logs";
export const LEDGER_INDEX = "ikontainer-cuids";

/** `ikontainer-logs-2026.11.23` for an ISO timestamp (UTC day), like fluent-plugin-elasticsearch's logstash_format. */
export function dailyIndex(prefix: string, isoTimestamp: string): string {
  // ISO strings from toISOString(): YYYY-MM-DDT…; the date part is chars 0-9
  const d = isoTimestamp.slice(0, 10);
  return `${prefix}-${d.slice(0, 4)}.${d.slice(5, 7)}.${d.slice(8, 10)}`;
}

const keyword = { type: "keyword" } as const;

/** Fields the agent owns in every log document (toStructured's keys plus the byte offset). */
export const LOG_FIELDS = {
  "@timestamp": { type: "date" },
  message: { type: "text" },
  ikontainer_CUID: keyword,
  svc: keyword,
  request_id: keyword,
  pod: keyword,
  namespace: keyword,
  node: keyword,
  pod_ip: keyword,
  host_ip: keyword,
  pod_uid: keyword,
  container: keyword,
  source: keyword,
  stream: keyword,
  ikontainer_offset: { type: "long" },
  ikontainer_part: { type: "integer" },
  ikontainer_partial: { type: "boolean" },
  ikontainer_unterminated: { type: "boolean" },
  ikontainer_invalid_utf8: { type: "boolean" },
} as const;

export function logsIndexTemplate(prefix: string): Record<string, unknown> {
  return {
    index_patterns: [`${prefix}-*`],
    priority: 200,
    _meta: { managed_by: "ikontainer" },
    // No index settings: an explicit refresh_interval would turn off Elasticsearch's search-idle skipping of
    // refreshes, which costs a lot of merging CPU while nobody searches. Application fields stay dynamic.
    template: { mappings: { properties: LOG_FIELDS } },
  };
}

export const LEDGER_FIELDS = {
  cuid: keyword,
  svc: keyword,
  pod: keyword,
  namespace: keyword,
  node: keyword,
  pod_ip: keyword,
  host_ip: keyword,
  started_at: { type: "date" },
  stopped_at: { type: "date" },
} as const;

export function ledgerIndexBody(): Record<string, unknown> {
  return { mappings: { dynamic: false, properties: LEDGER_FIELDS } };
}
