/**
 * The same query in Kibana: a Discover URL over the `ikontainer-logs` data view that dashboards/ installs.
 * Discover keeps its state in the URL hash as rison (`_g` global: time range; `_a` app: data view, query,
 * columns, sort).
 */

/** A rison string: always quoted; ' and ! escaped with ! (rison's escape character). */
const rison = (s: string): string => `'${s.replace(/!/g, "!!").replace(/'/g, "!'")}'`;

/** A KQL string literal: quoted, with \ and " escaped. */
export const kqlString = (s: string): string => `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;

export interface KibanaQuery {
  cuid?: string;
  requestId?: string;
  svc?: string;
  ip?: string;
  /** ms since epoch */
  since?: number;
  until?: number;
}

export function kqlOf(q: KibanaQuery): string {
  const parts: string[] = [];
  if (q.cuid) parts.push(`ikontainer_CUID : ${kqlString(q.cuid)}`);
  if (q.requestId) parts.push(`request_id : ${kqlString(q.requestId)}`);
  if (q.svc) parts.push(`svc : ${kqlString(q.svc)}`);
  if (q.ip) parts.push(`pod_ip : ${kqlString(q.ip)}`);
  return parts.join(" and ");
}

/** The saved search dashboards/ installs for "an IP's lines at time T, split by CUID". */
export const IP_SAVED_SEARCH = "ikontainer-ip-lines-by-cuid";

/**
 * `<base>/app/discover#/?_g=…&_a=…` (or `#/view/<saved search>?…`, whose columns and split the URL's query
 * keeps); without a time range Kibana's last 24 hours would hide older lines.
 */
export function discoverUrl(
  base: string,
  q: KibanaQuery,
  savedSearch?: string,
  dataViewId = "ikontainer-logs",
): string {
  const from = q.since !== undefined ? new Date(q.since).toISOString() : "now-1y";
  const to = q.until !== undefined ? new Date(q.until).toISOString() : "now";
  const g = `(time:(from:${rison(from)},to:${rison(to)}))`;
  const a =
    `(columns:!(ikontainer_CUID,request_id,svc,pod,pod_ip,message),index:${rison(dataViewId)},` +
    `query:(language:kuery,query:${rison(kqlOf(q))}),sort:!(!('@timestamp',asc)))`;
  const view = savedSearch ? `view/${encodeURIComponent(savedSearch)}` : "";
  return `${base.replace(/\/+$/, "")}/app/discover#/${view}?_g=${encodeURIComponent(g)}&_a=${encodeURIComponent(a)}`;
}
