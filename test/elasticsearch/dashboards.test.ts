import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import { afterEach, describe, expect, it, vi } from "vitest";
import { logsIndexTemplate } from "../../src/sinks/elasticsearch-schema.js";
import { RequestIdExtractor } from "../../src/transforms/request-id.js";
import { encodeJsonLines } from "../../src/transforms/tag.js";
import { sharedElasticsearch } from "../fixtures/elasticsearch.js";
import { check, type SavedObject } from "./kibana-saved-objects.js";

// each test spawns the CLI or talks to Elasticsearch several times: room for a loaded machine
vi.setConfig({ testTimeout: 150_000 });

const run = promisify(execFile);
const MAIN = new URL("../../dist/cli/main.js", import.meta.url).pathname;
const NDJSON = new URL("../../dashboards/ikontainer.ndjson", import.meta.url);

const IP_SEARCH = "ikontainer-ip-lines-by-cuid";
const objects = (): SavedObject[] =>
  readFileSync(NDJSON, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as SavedObject);

/** Every field name the saved objects use: columns, sort, time field, Lens source fields, control fields. */
function referencedFields(objs: SavedObject[]): Set<string> {
  const out = new Set<string>();
  for (const o of objs) {
    const a = o.attributes;
    if (typeof a.timeFieldName === "string") out.add(a.timeFieldName);
    for (const c of (a.columns as string[] | undefined) ?? []) out.add(c);
    for (const s of (a.sort as Array<[string, string]> | undefined) ?? []) out.add(s[0]);
    if (typeof a.breakdownField === "string") out.add(a.breakdownField);
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === "object")
        for (const [k, x] of Object.entries(v)) {
          if ((k === "sourceField" || k === "fieldName") && typeof x === "string" && x !== "___records___")
            out.add(x);
          else walk(x);
        }
    };
    walk(a.state);
    const cg = a.controlGroupInput as { panelsJSON?: string } | undefined;
    if (cg?.panelsJSON) walk(JSON.parse(cg.panelsJSON));
  }
  return out;
}

describe("dashboards/ (Kibana 8 saved objects)", () => {
  it("has the data view, the saved search, a timeline and a dashboard with CUID and request-ID controls", () => {
    const objs = objects();
    const dv = objs.find((o) => o.type === "index-pattern")!;
    expect(dv.attributes.title).toBe("ikontainer-logs-*");
    const search = objs.find((o) => o.type === "search")!;
    expect(search.attributes.title).toBe("lines by CUID and request ID");
    expect(search.attributes.columns).toEqual(
      expect.arrayContaining(["ikontainer_CUID", "request_id", "message"]),
    );
    const dash = objs.find((o) => o.type === "dashboard")!;
    const controls = Object.values(
      JSON.parse((dash.attributes.controlGroupInput as { panelsJSON: string }).panelsJSON) as Record<
        string,
        { explicitInput: { fieldName: string } }
      >,
    ).map((c) => c.explicitInput.fieldName);
    expect(controls).toEqual(expect.arrayContaining(["ikontainer_CUID", "request_id"]));
    const panels = JSON.parse(dash.attributes.panelsJSON as string) as Array<{
      panelRefName: string;
      panelIndex: string;
    }>;
    // every panel and control resolves to an object in the file
    const ids = new Set(objs.map((o) => `${o.type}:${o.id}`));
    for (const p of panels) {
      const ref = dash.references.find((r) => r.name === `${p.panelIndex}:${p.panelRefName}`);
      expect(ref, p.panelRefName).toBeDefined();
      expect(ids.has(`${ref!.type}:${ref!.id}`)).toBe(true);
    }
    for (const o of objs)
      for (const r of o.references) expect(ids.has(`${r.type}:${r.id}`), r.name).toBe(true);
    const lens = objs.find((o) => o.type === "lens")!;
    expect(JSON.stringify(lens.attributes.state)).toContain('"sourceField":"ikontainer_CUID"');
  });

  it("every object has the structure Kibana 8.x documents for its type and version", () => {
    const objs = objects();
    expect(objs.map((o) => o.type).sort()).toEqual([
      "dashboard",
      "index-pattern",
      "lens",
      "search",
      "search",
    ]);
    expect(objs.flatMap((o) => check(o, objs))).toEqual([]);
  });

  it("the structure check catches what Kibana would refuse or misread", () => {
    const objs = objects();
    const broken = (type: string, id: string | undefined, edit: (o: SavedObject) => void): string[] => {
      const copy = objs.map((o) => structuredClone(o));
      const o = copy.find((x) => x.type === type && (id === undefined || x.id === id))!;
      edit(o);
      return check(o, copy);
    };
    expect(broken("dashboard", undefined, (o) => (o.attributes.panels = []))).toEqual([
      "dashboard ikontainer-cuid-request: attribute panels is not in the dashboard schema",
    ]);
    expect(broken("lens", undefined, (o) => (o.typeMigrationVersion = "8.99.0"))[0]).toContain(
      "import refused",
    );
    expect(
      broken("lens", undefined, (o) => {
        const st = o.attributes.state as { datasourceStates: Record<string, unknown> };
        st.datasourceStates = { indexpattern: st.datasourceStates.formBased };
      }).join("\n"),
    ).toContain("pre-8.6 name");
    expect(broken("search", IP_SEARCH, (o) => (o.attributes.sort = [["@timestamp"]]))[0]).toContain(
      "sort entry",
    );
    expect(broken("search", IP_SEARCH, (o) => (o.references = []))[0]).toContain(
      "names no index-pattern reference",
    );
    expect(broken("dashboard", undefined, (o) => (o.references = o.references.slice(1)))[0]).toContain(
      "no reference p-timeline:panel_p-timeline",
    );
  });

  it("has a saved search for an IP's lines at time T, split by CUID", () => {
    const s = objects().find((o) => o.id === IP_SEARCH)!;
    expect(s.type).toBe("search");
    expect(s.attributes.breakdownField).toBe("ikontainer_CUID");
    expect(s.attributes.sort).toEqual([
      ["ikontainer_CUID", "asc"],
      ["@timestamp", "asc"],
    ]);
    const ss = JSON.parse(
      (s.attributes.kibanaSavedObjectMeta as { searchSourceJSON: string }).searchSourceJSON,
    );
    expect(ss.query).toEqual({ query: "pod_ip : *", language: "kuery" });
  });

  it("references only fields a real Elasticsearch maps from the agent's documents, with the right capabilities", async () => {
    // The template installed in a real node and a document made by the agent's own encoder: what Kibana's data
    // view would see through _field_caps. (Comparing the template with LOG_FIELDS could not fail: it is built from it.)
    const es = await sharedElasticsearch();
    const prefix = `ikontainer-dash-${process.pid}-${Date.now()}`;
    const put = await fetch(`${es}/_index_template/${prefix}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(logsIndexTemplate(prefix)),
    });
    expect(put.status).toBe(200);
    try {
      const line = {
        bytes: Buffer.from(`GET /cart x-request-id=${"7f3a9c2e-1111-4222-8333-444455556666"}`),
        offset: 0,
        time: Date.now(),
      };
      const doc = JSON.parse(
        encodeJsonLines(
          {
            stream: { key: "k", path: "/var/log/app.log", relPath: "app.log", channel: "file" },
            inputId: "1:app.log",
            endOffset: 0,
            endPart: 0,
            readAt: Date.now(),
            lines: [line],
          },
          {
            identity: { cuid: "0196f1c2-0000-7000-8000-00000000000a", svc: "web" },
            requestIds: new RequestIdExtractor(),
            fields: { pod: "web-1", pod_ip: "10.1.0.5", namespace: "shop", node: "n1" },
          },
        ).toString(),
      );
      const idx = await fetch(`${es}/${prefix}-2026.11.23/_doc?refresh=true`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(doc),
      });
      expect(idx.status).toBe(201);
      const caps = (await (await fetch(`${es}/${prefix}-*/_field_caps?fields=*`)).json()) as {
        fields: Record<string, Record<string, { type: string; searchable: boolean; aggregatable: boolean }>>;
      };
      const cap = (f: string) => Object.values(caps.fields[f] ?? {})[0];
      const objs = objects();
      const used = [...referencedFields(objs)];
      expect(used.length).toBeGreaterThanOrEqual(7);
      expect(used.filter((f) => !cap(f)?.searchable)).toEqual([]);
      // sorted, split (terms, breakdown) and control fields must be aggregatable; the time field a date
      expect(used.filter((f) => f !== "message" && !cap(f)?.aggregatable)).toEqual([]);
      expect(cap("@timestamp")?.type).toBe("date");
      expect(cap("message")?.type).toBe("text");
    } finally {
      await fetch(`${es}/_index_template/${prefix}`, { method: "DELETE" });
      await fetch(`${es}/${prefix}-*`, { method: "DELETE" });
    }
  }, 400_000); // waits for the shared node, which a loaded machine may still be starting
});

describe("ikontainer dashboards import", () => {
  let server: Server | undefined;
  afterEach(() => server?.close());

  async function kibana(answer: (req: IncomingMessage, body: Buffer) => [number, unknown]) {
    const seen: Array<{ req: IncomingMessage; body: Buffer }> = [];
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        seen.push({ req, body });
        const [status, json] = answer(req, body);
        res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(json));
      });
    });
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
  }

  /** What Kibana's import API checks: method, path, xsrf header, a multipart body with the NDJSON as `file`. */
  function kibanaChecks(req: IncomingMessage, body: Buffer): string | undefined {
    if (req.method !== "POST") return "method";
    const u = new URL(req.url!, "http://x");
    if (!/^(\/s\/[^/]+)?\/api\/saved_objects\/_import$/.test(u.pathname)) return `path ${u.pathname}`;
    if (u.searchParams.get("overwrite") !== "true") return "overwrite";
    if (!req.headers["kbn-xsrf"]) return "kbn-xsrf";
    const m = /^multipart\/form-data; boundary=(.+)$/.exec(req.headers["content-type"] ?? "");
    if (!m) return "content-type";
    const parts = body.toString("utf8").split(`--${m[1]}`);
    if (parts[parts.length - 1]!.trim() !== "--") return "closing boundary";
    const file = parts.find((p) => /name="file"; filename="[^"]+\.ndjson"/.test(p));
    if (!file) return "file part";
    const content = file.slice(file.indexOf("\r\n\r\n") + 4, -2);
    if (content !== readFileSync(NDJSON, "utf8")) return "file content";
    return undefined;
  }

  it("posts the NDJSON the way Kibana's saved-objects import API expects", async () => {
    const k = await kibana((req, body) => {
      const bad = kibanaChecks(req, body);
      return bad
        ? [400, { statusCode: 400, message: `bad request: ${bad}` }]
        : [200, { success: true, successCount: 4 }];
    });
    const r = await run(
      process.execPath,
      [MAIN, "dashboards", "import", "--kibana", k.url, "--kibana-space", "ops"],
      {
        env: { ...process.env, IKONTAINER_KIBANA_PASSWORD: "s3cret", IKONTAINER_KIBANA_USERNAME: "elastic" },
      },
    );
    expect(r.stdout).toContain("imported 4 saved objects");
    expect(k.seen).toHaveLength(1);
    expect(k.seen[0]!.req.url).toBe("/s/ops/api/saved_objects/_import?overwrite=true");
    expect(k.seen[0]!.req.headers.authorization).toBe(
      `Basic ${Buffer.from("elastic:s3cret").toString("base64")}`,
    );
    expect(r.stdout + r.stderr).not.toContain("s3cret");
  });

  it("fails with the objects Kibana could not import, and when Kibana is unreachable", async () => {
    const k = await kibana(() => [
      200,
      {
        success: false,
        successCount: 3,
        errors: [{ id: "ikontainer-cuid-timeline", type: "lens", error: { type: "missing_references" } }],
      },
    ]);
    const r = await run(process.execPath, [MAIN, "dashboards", "import", "--kibana", k.url]).catch((e) => e);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("IKON_ERR_DASHBOARDS_IMPORT");
    expect(r.stderr).toContain("lens ikontainer-cuid-timeline: missing_references");
    server!.close();
    const down = await run(process.execPath, [MAIN, "dashboards", "import", "--kibana", k.url]).catch(
      (e) => e,
    );
    expect(down.code).toBe(1);
    expect(down.stderr).toContain("cannot reach Kibana");
  });
});
