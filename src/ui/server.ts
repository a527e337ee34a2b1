import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { isIP } from "node:net";
import { parseTime } from "../config/units.js";
import { errorMessage, isIkontainerError } from "../core/errors.js";
import type { LogFilter, Store } from "../store/query.js";
import { page, text } from "./html.js";
import { discoverUrl, IP_SAVED_SEARCH } from "./kibana-url.js";
import {
  type Colors,
  holderBox,
  holderColors,
  holdersTable,
  instanceFacts,
  ipTimeline,
  linesTable,
  pager,
  requestHops,
  type SearchParams,
  searchForm,
} from "./pages.js";
import { holderAt, holdersOf, instance, linesPage, parseCursor, requestPath } from "./queries.js";
import { CSS, JS } from "./static.js";

/**
 * `ikontainer ui`'s HTTP server: read-only (GET and HEAD only), server-rendered pages over a Store. Nothing it
 * sends comes from the connection settings except the redacted source label, so credentials stay on the server.
 */

export interface UiOptions {
  store: Store;
  /** shown in the header: "local store …" or the redacted Elasticsearch URL */
  source: string;
  kibana: string;
  pageSize: number;
  /** most lines a request's path reads */
  traceCap: number;
  now?: () => number;
}

class BadRequest extends Error {}

const LOOPBACK_HOST = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/i;

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

const PARAM_MAX = 512;

function params(u: URL, names: readonly string[]): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const n of names) {
    const v = u.searchParams.get(n)?.trim();
    if (v && v.length > PARAM_MAX) throw new BadRequest(`${n} is longer than ${PARAM_MAX} characters`);
    out[n] = v || undefined;
  }
  return out;
}

function time(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  try {
    return parseTime(v, name);
  } catch (e) {
    throw new BadRequest(isIkontainerError(e) ? e.message : `invalid ${name}`);
  }
}

function checkIp(ip: string | undefined): void {
  if (ip !== undefined && !isIP(ip)) throw new BadRequest(`"${ip}" is not an IPv4 or IPv6 address`);
}

export class UiServer {
  private server: Server | undefined;
  private loopbackOnly = false;
  constructor(private readonly o: UiOptions) {}

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  async listen(port: number, host: string): Promise<{ host: string; port: number }> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        if (!res.headersSent)
          this.send(res, 500, page("error", this.o.source, `<p>${text(errorMessage(e))}</p>`));
        else res.destroy();
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    this.loopbackOnly = /^(127\.|::1$|localhost$)/.test(host);
    const a = server.address();
    return { host, port: typeof a === "object" && a ? a.port : port };
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  private send(res: ServerResponse, status: number, body: string, type = "text/html; charset=utf-8"): void {
    res.writeHead(status, { "content-type": type, ...SECURITY_HEADERS });
    res.end(res.req.method === "HEAD" ? undefined : body);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain", ...SECURITY_HEADERS });
      res.end("read-only: GET and HEAD only\n");
      return;
    }
    if (this.loopbackOnly && !LOOPBACK_HOST.test(req.headers.host ?? "")) {
      // a page of another site whose name was rebound to 127.0.0.1 must not read the logs (DNS rebinding)
      res.writeHead(421, { "content-type": "text/plain", ...SECURITY_HEADERS });
      res.end("this page answers to 127.0.0.1, localhost or [::1] only\n");
      return;
    }
    const u = new URL(req.url ?? "/", "http://ui.invalid");
    try {
      const html = await this.route(u);
      if (html === undefined) this.send(res, 404, page("not found", this.o.source, "<p>No such page.</p>"));
      else if (u.pathname === "/static/ui.css") this.send(res, 200, html, "text/css; charset=utf-8");
      else if (u.pathname === "/static/ui.js") this.send(res, 200, html, "text/javascript; charset=utf-8");
      else this.send(res, 200, html);
    } catch (e) {
      if (!(e instanceof BadRequest)) throw e;
      this.send(
        res,
        400,
        page(
          "bad request",
          this.o.source,
          `${searchForm({})}<p class="error" data-testid="error">${text(e.message)}</p>`,
        ),
      );
    }
  }

  private route(u: URL): Promise<string | undefined> | string | undefined {
    switch (u.pathname) {
      case "/static/ui.css":
        return CSS;
      case "/static/ui.js":
        return JS;
      case "/":
        return page(
          "search",
          this.o.source,
          `<h1>Which instance, which lines</h1>${searchForm({})}
<p>Search by CUID, request ID, svc or IP (an IP finds every instance that held it; add "IP held at" to keep the one holding it then).</p>`,
        );
      case "/search":
        return this.search(u);
      case "/ip":
        return this.ip(u);
      case "/request":
        return this.request(u);
      case "/instance":
        return this.instance(u);
      default:
        return undefined;
    }
  }

  private async search(u: URL): Promise<string> {
    const p = params(u, ["cuid", "rid", "svc", "ip", "since", "until", "at", "after"]) as SearchParams & {
      after?: string;
    };
    checkIp(p.ip);
    const since = time(p.since, "since");
    const until = time(p.until, "until");
    const at = time(p.at, "at");
    if (!p.cuid && !p.rid && !p.svc && !p.ip)
      return page(
        "search",
        this.o.source,
        `${searchForm(p)}<p class="error" data-testid="error">Give a CUID, request ID, svc or IP.</p>`,
      );
    const base: LogFilter = {};
    if (p.rid) base.requestId = p.rid;
    if (p.svc) base.svc = p.svc;
    if (since !== undefined) base.since = since;
    if (until !== undefined) base.until = until;
    let filters: LogFilter[] = [p.cuid ? { ...base, cuid: p.cuid } : base];
    let context = "";
    let colors: Colors | undefined;
    if (p.ip) {
      // an IP stands for the instances that held it (all, or the one at `at`)
      const holders = await holdersOf(this.o.store, p.ip);
      colors = holderColors(holders);
      const chosen = at !== undefined ? [holderAt(holders, at)].filter((h) => h !== undefined) : holders;
      const cuids = chosen.map((h) => h.cuid).filter((c) => !p.cuid || c === p.cuid);
      filters = cuids.map((cuid) => ({ ...base, cuid }));
      context =
        (at !== undefined ? holderBox(p.ip, at, chosen[0]) : "") +
        `<p>${text(p.ip)} was held by ${holders.length} instance${holders.length === 1 ? "" : "s"}${at === undefined && holders.length > 1 ? " — these lines mix them; pick a time to keep one" : ""}. <a data-testid="ip-timeline-link" href="/ip?ip=${encodeURIComponent(p.ip)}${at !== undefined ? `&amp;at=${encodeURIComponent(new Date(at).toISOString())}` : ""}">Timeline of ${text(p.ip)}</a></p>`;
    }
    const res =
      filters.length > 0
        ? await linesPage(this.o.store, filters, this.o.pageSize, parseCursor(p.after))
        : { lines: [] };
    const rid = p.rid
      ? `<p><a data-testid="request-link" href="/request?id=${encodeURIComponent(p.rid)}">Path of request ${text(p.rid)} through the instances</a></p>`
      : "";
    const kibana = discoverUrl(
      this.o.kibana,
      {
        ...(p.cuid ? { cuid: p.cuid } : {}),
        ...(p.rid ? { requestId: p.rid } : {}),
        ...(p.svc ? { svc: p.svc } : {}),
        ...(p.ip && at === undefined ? { ip: p.ip } : {}),
        ...(since !== undefined ? { since } : {}),
        ...(until !== undefined ? { until } : {}),
      },
      p.ip && at === undefined ? IP_SAVED_SEARCH : undefined,
    );
    const { after: _a, ...keep } = p;
    return page(
      "search",
      this.o.source,
      `<h1>Lines found</h1>${searchForm(p)}${context}${rid}
<p class="count" data-testid="count">${res.lines.length} line${res.lines.length === 1 ? "" : "s"} on this page, in time order. <a href="${text(kibana)}" rel="noreferrer">In Kibana</a></p>
${linesTable(res.lines, true, colors)}${pager("/search", { ...keep, after: p.after }, res.next)}`,
    );
  }

  private async ip(u: URL): Promise<string> {
    const p = params(u, ["ip", "at"]);
    if (!p.ip) throw new BadRequest("give ip");
    checkIp(p.ip);
    const at = time(p.at, "at");
    const holders = await holdersOf(this.o.store, p.ip);
    const h = at !== undefined ? holderAt(holders, at) : undefined;
    let lines = "";
    if (h) {
      const res = await linesPage(this.o.store, [{ cuid: h.cuid }], this.o.pageSize);
      lines = `<h2>Lines of ${text(h.cuid)}</h2>${linesTable(res.lines, true, holderColors(holders))}${res.next ? `<p><a href="/instance?cuid=${encodeURIComponent(h.cuid)}">All its lines</a></p>` : ""}`;
    }
    return page(
      `IP ${p.ip}`,
      this.o.source,
      `<h1 data-testid="ip-title">Instances that held ${text(p.ip)}</h1>
${ipTimeline(p.ip, holders, this.now(), at)}${at !== undefined ? holderBox(p.ip, at, h) : ""}${holdersTable(holders)}
<p><a data-testid="ip-all-lines" href="/search?ip=${encodeURIComponent(p.ip)}">Every line of every holder (what a search by IP alone mixes)</a>
· <a data-testid="ip-kibana" href="${text(discoverUrl(this.o.kibana, { ip: p.ip, ...(at !== undefined ? { since: at - 60_000, until: at + 60_000 } : {}) }, IP_SAVED_SEARCH))}" rel="noreferrer">The IP's lines split by CUID in Kibana</a></p>${lines}`,
    );
  }

  private async request(u: URL): Promise<string> {
    const p = params(u, ["id"]);
    if (!p.id) throw new BadRequest("give id");
    const r = await requestPath(this.o.store, p.id, this.o.traceCap);
    return page(
      `request ${p.id}`,
      this.o.source,
      `<h1 data-testid="request-title">Request ${text(p.id)}: its path through the instances</h1>${requestHops(p.id, r.hops, r.truncated)}
<p><a href="${text(discoverUrl(this.o.kibana, { requestId: p.id }))}" rel="noreferrer">In Kibana</a></p>`,
    );
  }

  private async instance(u: URL): Promise<string> {
    const p = params(u, ["cuid", "after"]);
    if (!p.cuid) throw new BadRequest("give cuid");
    const e = await instance(this.o.store, p.cuid);
    const res = await linesPage(this.o.store, [{ cuid: p.cuid }], this.o.pageSize, parseCursor(p.after));
    const kibana = discoverUrl(this.o.kibana, {
      cuid: p.cuid,
      ...(e ? { since: Date.parse(e.started_at) } : {}),
      ...(e?.stopped_at ? { until: Date.parse(e.stopped_at) + 1000 } : {}),
    });
    return page(
      `instance ${p.cuid}`,
      this.o.source,
      `<h1>Instance ${text(p.cuid)}</h1>${instanceFacts(p.cuid, e, kibana)}
<h2>Its lines</h2>${linesTable(res.lines, false)}${pager("/instance", { cuid: p.cuid, after: p.after }, res.next)}`,
    );
  }
}
