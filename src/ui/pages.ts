import type { LedgerEntry } from "../store/ledger.js";
import type { LogRecord, WhoisMatch } from "../store/query.js";
import { link, query, text } from "./html.js";
import { type Cursor, formatCursor, type PathHop } from "./queries.js";

/** The views' HTML (server-rendered; ui.js only drives the IP timeline's time cursor). */

export interface SearchParams {
  cuid?: string;
  rid?: string;
  svc?: string;
  ip?: string;
  since?: string;
  until?: string;
  at?: string;
}

const iso = (ms: number): string => new Date(ms).toISOString();

function field(name: keyof SearchParams, label: string, p: SearchParams, hint: string): string {
  return `<label>${text(label)} <input name="${name}" value="${text(p[name])}" placeholder="${text(hint)}" data-testid="q-${name}"></label>`;
}

export function searchForm(p: SearchParams): string {
  return `<form class="search" method="get" action="/search" data-testid="search-form">
${field("cuid", "CUID", p, "0196f1c2-…")}${field("rid", "request ID", p, "x-request-id")}${field("svc", "svc", p, "api.shop.cluster.local")}
${field("ip", "IP", p, "10.1.2.3")}${field("since", "since", p, "ISO time or 15m")}${field("until", "until", p, "ISO time or 5m")}
${field("at", "IP held at", p, "ISO time")}
<button type="submit" data-testid="q-submit">Search</button></form>`;
}

/** Colour indices of the instances on a page: the holders of an IP get distinct ones, in their order. */
export type Colors = ReadonlyMap<string, number>;
export const holderColors = (holders: readonly { cuid: string }[]): Colors =>
  new Map(holders.map((h, i) => [h.cuid, i % 8]));

/** A stable colour index per CUID (or its place among the page's holders), to tell instances apart at a glance. */
const hue = (cuid: string, colors?: Colors): number => {
  const known = colors?.get(cuid);
  if (known !== undefined) return known;
  let h = 0;
  for (const c of cuid) h = (h * 31 + c.charCodeAt(0)) % 8;
  return h;
};

export function linesTable(lines: readonly LogRecord[], showInstance = true, colors?: Colors): string {
  if (lines.length === 0) return `<p class="empty" data-testid="no-lines">No lines.</p>`;
  const rows = lines
    .map((r) => {
      const inst = showInstance
        ? `<td class="cuid c${hue(r.cuid, colors)}">${link("/instance", { cuid: r.cuid }, r.cuid)}</td><td>${text(r.svc)}</td><td>${text(r.pod_ip)}</td>`
        : "";
      const rid = r.request_id ? link("/request", { id: r.request_id }, r.request_id) : "";
      return `<tr data-testid="line" data-cuid="${text(r.cuid)}"><td class="t">${text(r.time ?? "-")}</td>${inst}<td class="rid">${rid}</td><td class="msg">${text(r.message)}</td></tr>`;
    })
    .join("\n");
  const head = showInstance ? "<th>CUID</th><th>svc</th><th>pod IP</th>" : "";
  return `<table class="lines"><thead><tr><th>time</th>${head}<th>request ID</th><th>line</th></tr></thead><tbody>
${rows}</tbody></table>`;
}

export function pager(path: string, params: Record<string, string | undefined>, next?: Cursor): string {
  const first = params.after ? link(path, { ...params, after: undefined }, "First page") : "";
  const nxt = next
    ? `<a data-testid="next-page" href="${text(path + query({ ...params, after: formatCursor(next) }))}">Next page</a>`
    : "";
  return first || nxt ? `<nav class="pager">${first} ${nxt}</nav>` : "";
}

/** Timeline of the instances that held an IP, as SVG bars, with the time cursor's form. */
export function ipTimeline(ip: string, holders: readonly WhoisMatch[], now: number, at?: number): string {
  if (holders.length === 0)
    return `<p class="empty" data-testid="no-holders">No instance in the ledger held ${text(ip)}.</p>`;
  const starts = holders.map((h) => Date.parse(h.started_at));
  const ends = holders.map((h) => (h.held_until ? Date.parse(h.held_until) : now));
  let lo = Math.min(...starts);
  let hi = Math.max(...ends, at ?? 0);
  const pad = Math.max(1000, (hi - lo) * 0.03);
  lo -= pad;
  hi += pad;
  const W = 1000;
  const L = 330; // label column
  const x = (t: number) => L + ((t - lo) / (hi - lo)) * (W - L - 10);
  const rowH = 34;
  const bars = holders
    .map((h, i) => {
      const x0 = x(starts[i]!);
      const x1 = Math.max(x0 + 2, x(ends[i]!));
      const kind = h.stopped_at ? "stopped" : h.end_inferred ? "inferred" : "running";
      const y = 8 + i * rowH;
      const endNote = h.stopped_at
        ? "stopped"
        : h.end_inferred
          ? "end inferred (next holder started)"
          : "running";
      return `<g class="holder ${kind}" data-testid="holder" data-cuid="${text(h.cuid)}" data-start="${starts[i]}" data-end="${h.held_until ? ends[i] : ""}">
<title>${text(`${h.cuid} ${h.svc} ${h.pod ?? ""} · ${h.started_at} → ${h.held_until ?? "running"} (${endNote})`)}</title>
<a href="${text(`/instance${query({ cuid: h.cuid })}`)}"><text x="4" y="${y + 15}" class="lbl">${text(h.pod ?? h.svc)}</text>
<text x="4" y="${y + 28}" class="sub">${text(h.cuid)}</text></a>
<rect x="${x0.toFixed(1)}" y="${y + 4}" width="${(x1 - x0).toFixed(1)}" height="20" rx="3" class="bar c${i % 8}"/>
${kind === "inferred" ? `<text x="${(x1 - 4).toFixed(1)}" y="${y + 18}" class="mark" text-anchor="end">inferred end ⇢</text>` : ""}
${kind === "running" ? `<text x="${(x1 - 4).toFixed(1)}" y="${y + 18}" class="mark" text-anchor="end">running →</text>` : ""}</g>`;
    })
    .join("\n");
  const H = 16 + holders.length * rowH + 24;
  const cursorX = at !== undefined ? x(at) : undefined;
  const cursor =
    cursorX !== undefined
      ? `<line id="cursor" x1="${cursorX.toFixed(1)}" x2="${cursorX.toFixed(1)}" y1="0" y2="${H - 20}" class="cursor"/>`
      : `<line id="cursor" x1="-10" x2="-10" y1="0" y2="${H - 20}" class="cursor"/>`;
  const axis = `<text x="${L}" y="${H - 4}" class="sub">${text(iso(lo))}</text><text x="${W - 10}" y="${H - 4}" class="sub" text-anchor="end">${text(iso(hi))}</text>`;
  const sliderValue = at ?? Math.round((lo + hi) / 2);
  return `<svg class="timeline" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" data-testid="timeline" data-lo="${lo}" data-hi="${hi}" data-left="${L}" data-right="${W - 10}">
${bars}${cursor}${axis}</svg>
<form class="cursor-form" method="get" action="/ip" data-testid="cursor-form">
<input type="hidden" name="ip" value="${text(ip)}">
<label>time cursor <input type="range" id="at-slider" min="${Math.round(lo)}" max="${Math.round(hi)}" step="1" value="${Math.round(sliderValue)}" data-testid="at-slider"></label>
<label>at <input name="at" id="at-text" value="${text(at !== undefined ? iso(at) : "")}" placeholder="ISO time" data-testid="at-text"></label>
<span id="at-holder" data-testid="at-holder-live"></span>
<button type="submit" data-testid="at-submit">Who held it then?</button></form>`;
}

export function holderBox(ip: string, at: number, h: WhoisMatch | undefined): string {
  if (!h)
    return `<p class="answer" data-testid="holder-at">No instance held ${text(ip)} at ${text(iso(at))}.</p>`;
  return `<p class="answer" data-testid="holder-at">At ${text(iso(at))}, ${text(ip)} was held by
<b>${link("/instance", { cuid: h.cuid }, h.cuid)}</b> (svc ${text(h.svc)}, pod ${text(h.pod ?? "-")}, ${text(h.started_at)} → ${text(h.held_until ?? "running")}${h.end_inferred ? ", end inferred" : ""}).</p>`;
}

export function holdersTable(holders: readonly WhoisMatch[]): string {
  const rows = holders
    .map(
      (h, i) =>
        `<tr><td class="cuid c${i % 8}">${link("/instance", { cuid: h.cuid }, h.cuid)}</td><td>${text(h.svc)}</td><td>${text(h.pod ?? "-")}</td><td>${text(h.started_at)}</td><td>${h.stopped_at ? text(h.stopped_at) : h.held_until ? `${text(h.held_until)} <em>(inferred)</em>` : "running"}</td></tr>`,
    )
    .join("\n");
  return `<table class="holders"><thead><tr><th>CUID</th><th>svc</th><th>pod</th><th>started</th><th>stopped</th></tr></thead><tbody>${rows}</tbody></table>`;
}

export function requestHops(id: string, hops: readonly PathHop[], truncated: boolean): string {
  if (hops.length === 0)
    return `<p class="empty" data-testid="no-hops">No line carries request ID ${text(id)}.</p>`;
  const items = hops
    .map(
      (
        h,
        i,
      ) => `<li class="hop" data-testid="hop" data-cuid="${text(h.cuid)}" data-first="${text(h.first)}"><div class="hop-head c${hue(h.cuid)}"><span class="n">${i + 1}</span>
<b>${text(h.svc)}</b> ${link("/instance", { cuid: h.cuid }, h.cuid)} · pod ${text(h.pod ?? "-")} · IP ${text(h.pod_ip ?? "-")} · ${text(h.first ?? "-")} … ${text(h.last ?? "-")} · ${h.lines.length} line${h.lines.length === 1 ? "" : "s"}</div>
${linesTable(h.lines, false)}</li>`,
    )
    .join("\n");
  const note = truncated ? `<p class="note">Only the first lines were read; the path may go on.</p>` : "";
  return `<ol class="path" data-testid="path">${items}</ol>${note}`;
}

export function instanceFacts(cuid: string, e: LedgerEntry | undefined, kibana: string): string {
  const row = (k: string, v: string | undefined, id: string) =>
    `<tr><th>${text(k)}</th><td data-testid="inst-${id}">${text(v ?? "-")}</td></tr>`;
  const facts = e
    ? [
        row("svc", e.svc, "svc"),
        row("pod", e.pod, "pod"),
        row("namespace", e.namespace, "namespace"),
        row("node", e.node, "node"),
        row("pod IP", e.pod_ip ?? e.host_ip, "ip"),
        row("started", e.started_at, "started"),
        row("stopped", e.stopped_at ?? "no clean stop recorded", "stopped"),
      ].join("")
    : `<tr><td colspan="2">Not in the ledger (its lines may still be in the store).</td></tr>`;
  return `<table class="facts"><tr><th>CUID</th><td data-testid="inst-cuid">${text(cuid)}</td></tr>${facts}</table>
<p><a data-testid="kibana-link" href="${text(kibana)}" rel="noreferrer">The same query in Kibana (Discover)</a></p>`;
}
