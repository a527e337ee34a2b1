import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalStore } from "../../src/store/local.js";
import { collect, type LogFilter, type Store } from "../../src/store/query.js";
import { RequestIdExtractor } from "../../src/transforms/request-id.js";
import { encodeJsonLines } from "../../src/transforms/tag.js";
import { text } from "../../src/ui/html.js";
import { discoverUrl, IP_SAVED_SEARCH } from "../../src/ui/kibana-url.js";
import { type Cursor, holderAt, holdersOf, linesPage } from "../../src/ui/queries.js";

const A = "0196f1c2-0000-7000-8000-00000000000a";
const C = "0196f1c2-0000-7000-8000-00000000000c";
let dir: string;

/** A state dir with two instances' lines (json store format, the agent's encoder), many sharing a timestamp. */
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "ikon-ui-q-"));
  mkdirSync(join(dir, "store"), { recursive: true });
  const t0 = Date.parse("2026-11-23T10:00:00.000Z");
  const write = (cuid: string, file: string, times: number[]) => {
    const lines = times.map((t, i) => ({
      bytes: Buffer.from(`${cuid.slice(-1)} line ${i}`),
      offset: i * 100,
      time: t,
    }));
    const stream = { key: file, path: `/var/log/${file}`, relPath: file, channel: "file" as const };
    writeFileSync(
      join(dir, "store", file),
      encodeJsonLines(
        { stream, inputId: `1:${file}`, endOffset: 0, endPart: 0, readAt: t0, lines },
        {
          identity: { cuid, svc: "cart" },
          requestIds: new RequestIdExtractor(),
          fields: { pod_ip: "10.1.0.5" },
        },
      ),
    );
  };
  // A: 7 lines, five of them at the same millisecond; C: 6 lines later, two of them at A's last time
  write(A, "a.log", [t0, t0 + 1, t0 + 1, t0 + 1, t0 + 1, t0 + 1, t0 + 2]);
  write(C, "c.log", [t0 + 2, t0 + 2, t0 + 3, t0 + 4, t0 + 5, t0 + 6]);
  writeFileSync(
    join(dir, "ledger.jsonl"),
    `${[
      { event: "start", cuid: A, svc: "cart", pod_ip: "10.1.0.5", started_at: "2026-11-23T09:00:00.000Z" },
      { event: "start", cuid: C, svc: "cart", pod_ip: "10.1.0.5", started_at: "2026-11-23T10:00:00.002Z" },
      { event: "stop", cuid: C, stopped_at: "2026-11-23T11:00:00.000Z" },
    ]
      .map((e) => JSON.stringify(e))
      .join("\n")}\n`,
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The store, recording the limit of every query (what bounds a page's memory). */
function recording(): { store: Store; limits: number[] } {
  const inner = new LocalStore([join(dir, "store")], dir);
  const limits: number[] = [];
  return {
    limits,
    store: {
      logs: (f: LogFilter) => {
        limits.push(f.limit ?? Number.POSITIVE_INFINITY);
        return inner.logs(f);
      },
      ledger: () => inner.ledger(),
      close: () => inner.close(),
    },
  };
}

describe("paging by time", () => {
  it("pages through lines that share timestamps without losing or repeating one, each query limited", async () => {
    const { store, limits } = recording();
    const all = (await collect(new LocalStore([join(dir, "store")], dir).logs({}))).map((r) => r.message);
    expect(all).toHaveLength(13);
    for (const size of [1, 2, 3, 5]) {
      const seen: string[] = [];
      let cursor: Cursor | undefined;
      for (let i = 0; i < 20; i++) {
        const p = await linesPage(store, [{ cuid: A }, { cuid: C }], size, cursor);
        seen.push(...p.lines.map((r) => r.message));
        if (!p.next) break;
        cursor = p.next;
      }
      expect(seen, `page size ${size}`).toEqual(all);
    }
    // a page asks for at most size + 1 + the lines sharing the cursor's time (5 here)
    expect(Math.max(...limits)).toBeLessThanOrEqual(5 + 1 + 5);
  });
});

describe("IP holders", () => {
  it("names the holder at a time, with an end inferred when there was no clean stop", async () => {
    const { store } = recording();
    const h = await holdersOf(store, "10.1.0.5");
    expect(h.map((x) => [x.cuid, x.end_inferred ?? false])).toEqual([
      [A, true],
      [C, false],
    ]);
    expect(holderAt(h, Date.parse("2026-11-23T10:00:00.001Z"))?.cuid).toBe(A);
    expect(holderAt(h, Date.parse("2026-11-23T10:00:00.002Z"))?.cuid).toBe(C);
    expect(holderAt(h, Date.parse("2026-11-23T12:00:00.000Z"))).toBeUndefined();
  });
});

describe("escaping", () => {
  it("escapes markup and shows control and bidi characters", () => {
    expect(text(`<a href='x'>&"`)).toBe("&lt;a href=&#39;x&#39;&gt;&amp;&quot;");
    expect(text("a\u001b[31mb\u0000\u007f\u0085\u202ec\td\n")).toBe(
      'a<span class="ctl">\\x1b</span>[31mb<span class="ctl">\\x00</span><span class="ctl">\\x7f</span>' +
        '<span class="ctl">\\x85</span><span class="ctl">\\u202e</span>c<span class="ctl">\\x09</span>d<span class="ctl">\\x0a</span>',
    );
  });

  it("builds a Discover URL whose rison and KQL survive quotes and bangs", () => {
    const u = new URL(discoverUrl("http://kibana:5601/", { cuid: `x"y'z!`, since: 0 }));
    expect(u.pathname).toBe("/app/discover");
    const a = decodeURIComponent(u.hash.split("&_a=")[1]!);
    expect(a).toContain(`query:(language:kuery,query:'ikontainer_CUID : "x\\"y!'z!!"')`);
    expect(decodeURIComponent(u.hash)).toContain("time:(from:'1970-01-01T00:00:00.000Z',to:'now')");
  });

  it("links an IP to the saved search dashboards/ installs", () => {
    const u = new URL(discoverUrl("http://kibana:5601", { ip: "10.1.0.5" }, IP_SAVED_SEARCH));
    expect(u.hash.startsWith(`#/view/${IP_SAVED_SEARCH}?_g=`)).toBe(true);
    expect(decodeURIComponent(u.hash)).toContain(`query:'pod_ip : "10.1.0.5"'`);
    const ids = readFileSync(new URL("../../dashboards/ikontainer.ndjson", import.meta.url), "utf8")
      .trim()
      .split("\n")
      .map((l) => `${(JSON.parse(l) as { type: string; id: string }).type}:${JSON.parse(l).id}`);
    expect(ids).toContain(`search:${IP_SAVED_SEARCH}`);
  });
});
