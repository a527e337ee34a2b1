import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { logsIndexTemplate } from "../../src/sinks/elasticsearch-schema.js";
import { es, freePort } from "../fixtures/elasticsearch.js";
import { type FluentdOptions, RealFluentd } from "../fixtures/fluentd.js";
import { type AgentProcess, sleep, startCli, stopAgent, tempDir } from "../helpers/agent.js";

/** Shared by the real-pipeline tests: agent → real fluentd (the shipped config) → real Elasticsearch. */

export interface Doc {
  _id: string;
  message: string;
  cuid: string;
  request_id?: string;
  index: string;
  /** How many times this _id was written (a resend with the same _id makes it 2). */
  version: number;
}

/** A fluentd of the shipped config, with its own index prefix (and the agents' index template on it). */
export async function pipelineFluentd(
  esUrl: string,
  name: string,
  bind?: string,
  more: Partial<Pick<FluentdOptions, "port" | "dnsNames">> = {},
): Promise<RealFluentd> {
  // fluentd's Elasticsearch client checks the product with GET / before every first bulk
  const root = await fetch(`${esUrl}/`, { signal: AbortSignal.timeout(10_000) });
  if (root.status !== 200 || root.headers.get("x-elastic-product") !== "Elasticsearch")
    throw new Error(
      `Elasticsearch at ${esUrl} answers GET / with ${root.status}: it was started without the ikontainer-es-root ` +
        "plugin (docs/elasticsearch.md); stop it and start it again with scripts/elasticsearch.sh, which installs it",
    );
  const indexPrefix = `t-${randomUUID().slice(0, 8)}-${name}`;
  // What the agent's Elasticsearch output installs at start; with fluentd as the only path it is applied
  // once beforehand (docs/fluentd.md), so CUID and request ID are keyword fields the queries can match.
  await es(esUrl, "PUT", `/_index_template/${indexPrefix}`, logsIndexTemplate(indexPrefix));
  return new RealFluentd(tempDir(`ikon-fd-${name}-`), {
    esUrl,
    indexPrefix,
    sharedKey: randomBytes(12).toString("hex"),
    port: await freePort(),
    ...(bind ? { bind } : {}),
    ...more,
  });
}

/** `run` with a fluentd output over TLS and the shared key, as the shipped sidecar manifest configures it. */
export function agentArgs(f: RealFluentd, state: string, extra: string[]): string[] {
  return [
    "run",
    "--state-dir",
    state,
    "--output",
    `fluentd://127.0.0.1:${f.o.port}?ca=${f.tls.ca}`,
    "--fluentd-ack-timeout",
    "10s",
    "--fluentd-connect-timeout",
    "2s",
    "--fluentd-reconnect-max",
    "500ms",
    ...extra,
  ];
}

export function startAgent(
  f: RealFluentd,
  state: string,
  extra: string[],
  env: NodeJS.ProcessEnv = {},
  sharedKey = f.o.sharedKey,
): AgentProcess {
  return startCli(agentArgs(f, state, extra), {
    env: { ...process.env, IKONTAINER_FLUENTD_SHARED_KEY: sharedKey, ...env },
  });
}

export const alive = (a: AgentProcess) => a.child.exitCode === null && a.child.signalCode === null;
export const stopIfAlive = (a: AgentProcess) => (alive(a) ? stopAgent(a, "SIGKILL") : undefined);

export function cuidOf(state: string): string {
  return (JSON.parse(readFileSync(join(state, "cuid.json"), "utf8")) as { cuid: string }).cuid;
}

/** Every document under the prefix (scrolling), optionally only one CUID's. */
export async function docs(url: string, prefix: string, cuid?: string): Promise<Doc[]> {
  const pattern = `${prefix}-*`;
  await es(url, "POST", `/${pattern}/_refresh?ignore_unavailable=true&allow_no_indices=true`);
  type Page = {
    _scroll_id?: string;
    hits: {
      hits: Array<{ _id: string; _index: string; _version: number; _source: Record<string, string> }>;
    };
  };
  const out: Doc[] = [];
  let page = await es<Page>(
    url,
    "POST",
    `/${pattern}/_search?scroll=1m&ignore_unavailable=true&allow_no_indices=true`,
    {
      size: 5000,
      version: true,
      _source: ["message", "ikontainer_CUID", "request_id"],
      query: cuid ? { term: { ikontainer_CUID: cuid } } : { match_all: {} },
    },
  );
  for (;;) {
    const hits = page.hits?.hits ?? [];
    for (const h of hits)
      out.push({
        _id: h._id,
        index: h._index,
        version: h._version,
        message: h._source.message ?? "",
        cuid: h._source.ikontainer_CUID ?? "",
        ...(h._source.request_id ? { request_id: h._source.request_id } : {}),
      });
    if (hits.length === 0 || !page._scroll_id) break;
    page = await es<Page>(url, "POST", "/_search/scroll", { scroll: "1m", scroll_id: page._scroll_id });
  }
  if (page._scroll_id) await es(url, "DELETE", "/_search/scroll", { scroll_id: page._scroll_id });
  return out;
}

export async function docCount(url: string, prefix: string): Promise<number> {
  await es(url, "POST", `/${prefix}-*/_refresh?ignore_unavailable=true&allow_no_indices=true`);
  const r = await es<{ count?: number }>(
    url,
    "GET",
    `/${prefix}-*/_count?ignore_unavailable=true&allow_no_indices=true`,
  );
  return r.count ?? 0;
}

/**
 * Waits until `want` documents are stored. Fails only when the count stops moving for `stallMs`
 * (fluentd flushes every 5 s and backs off on errors, so the window is generous), not after a fixed total.
 */
export async function waitForDocs(
  url: string,
  prefix: string,
  want: number,
  stallMs = 90_000,
  explain: () => string = () => "",
): Promise<number> {
  let last = -1;
  let since = Date.now();
  for (;;) {
    // a daily index fluentd has just created may answer 503 until its shard is allocated: not yet
    const n = await docCount(url, prefix).catch(() => last);
    if (n >= want) return n;
    if (n !== last) {
      last = n;
      since = Date.now();
    } else if (Date.now() - since > stallMs)
      throw new Error(`stored ${n} of ${want} documents, no progress for ${stallMs} ms\n${explain()}`);
    await sleep(1000);
  }
}

/** Each `seq=<n>` once, nothing else, every _id distinct. */
export function exactlyOnce(
  all: Doc[],
  total: number,
): { missing: number; dup: number; idsDistinct: boolean } {
  const seen = new Uint8Array(total);
  let dup = 0;
  for (const d of all) {
    const m = /^seq=(\d+) /.exec(d.message);
    if (!m) throw new Error(`unexpected document: ${d.message.slice(0, 100)}`);
    const i = Number(m[1]);
    if (i >= total) throw new Error(`seq ${i} beyond ${total}`);
    if (seen[i]) dup++;
    seen[i] = 1;
  }
  return {
    missing: seen.reduce((a, v) => a + (v ? 0 : 1), 0),
    dup,
    idsDistinct: new Set(all.map((d) => d._id)).size === all.length,
  };
}
