import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { esConnection } from "../../src/config/elasticsearch.js";
import { documentId, ElasticsearchSink } from "../../src/sinks/elasticsearch.js";
import { dailyIndex } from "../../src/sinks/elasticsearch-schema.js";
import { allIds, count, es, sharedElasticsearch } from "../fixtures/elasticsearch.js";
import { fileStream, makeBatches, structured } from "./batches.js";

// each test spawns the CLI or talks to Elasticsearch several times: room for a loaded machine
vi.setConfig({ testTimeout: 150_000 });

let url: string;
let tmp: string;
const sinks: ElasticsearchSink[] = [];

beforeAll(async () => {
  url = await sharedElasticsearch();
  tmp = mkdtempSync(join(tmpdir(), "ikon-es-sink-"));
}, 310_000);

afterAll(async () => {
  for (const s of sinks) await s.close();
  rmSync(tmp, { recursive: true, force: true });
});

function sink(
  prefix: string,
  cuid: string,
  extra: Partial<ConstructorParameters<typeof ElasticsearchSink>[0]> = {},
) {
  const s = new ElasticsearchSink({
    connection: esConnection(url, {}),
    structured: structured(cuid, "checkout.shop.cluster.local", { pod: "checkout-7d9f", pod_ip: "10.1.2.3" }),
    deadLetterPath: join(tmp, `${prefix}.dead.jsonl`),
    indexPrefix: prefix,
    ...extra,
  });
  sinks.push(s);
  return s;
}

describe("Elasticsearch sink (real Elasticsearch)", () => {
  it("stores every line once in the daily index, with the template's mappings and derived _ids", async () => {
    const prefix = `t-${randomUUID().slice(0, 8)}-logs`;
    const cuid = randomUUID();
    const s = sink(prefix, cuid);
    const time = Date.parse("2026-03-04T23:59:59.999Z");
    const lines = Array.from({ length: 500 }, (_, i) =>
      i % 5 === 0
        ? JSON.stringify({ msg: `json ${i}`, request_id: `req-${i % 7}` })
        : `plain line ${i} x-request-id=req-${i % 7}`,
    );
    const batches = makeBatches({
      stream: fileStream("app.log"),
      inputId: "2049:77",
      lines,
      perBatch: 37,
      time,
    });
    await Promise.all(batches.map((b) => s.write(b)));

    // line i is at time+i ms: line 0 lands on 03.04, the rest on 03.05
    const idx1 = dailyIndex(prefix, new Date(time).toISOString());
    expect(idx1).toBe(`${prefix}-2026.03.04`);
    expect(await count(url, `${prefix}-2026.03.04`)).toBe(1);
    expect(await count(url, `${prefix}-2026.03.05`)).toBe(499);

    const expected = new Set(
      batches.flatMap((b) => b.lines.map((l) => documentId(cuid, b, l.offset, l.part, l.bytes))),
    );
    const got = await allIds(url, `${prefix}-*`);
    expect(got.total).toBe(500);
    expect(got.ids).toEqual(expected);

    const mapping = await es<Record<string, { mappings: { properties: Record<string, { type: string }> } }>>(
      url,
      "GET",
      `/${prefix}-2026.03.05/_mapping`,
    );
    const props = mapping[`${prefix}-2026.03.05`]!.mappings.properties;
    for (const f of ["ikontainer_CUID", "svc", "request_id", "pod", "namespace", "node", "pod_ip"])
      expect(props[f]?.type, f).toBe("keyword");
    expect(props.message?.type).toBe("text");
    expect(props["@timestamp"]?.type).toBe("date");

    const r = await es<{ hits: { hits: Array<{ _source: Record<string, unknown> }> } }>(
      url,
      "POST",
      `/${prefix}-*/_search`,
      {
        query: { bool: { filter: [{ term: { ikontainer_CUID: cuid } }, { term: { request_id: "req-3" } }] } },
        size: 100,
      },
    );
    expect(r.hits.hits.length).toBe(lines.filter((_, i) => i % 7 === 3).length);
    const doc = r.hits.hits[0]!._source;
    expect(doc.svc).toBe("checkout.shop.cluster.local");
    expect(doc.pod_ip).toBe("10.1.2.3");
    expect(doc.source).toBe("/var/log/app/app.log");
  });

  it("a replay of the same batches (retry, crash before the checkpoint) stores nothing twice", async () => {
    const prefix = `t-${randomUUID().slice(0, 8)}-logs`;
    const cuid = randomUUID();
    const lines = Array.from({ length: 300 }, (_, i) => `line ${i}`);
    const batches = makeBatches({ stream: fileStream("a.log"), inputId: "2049:1", lines, perBatch: 50 });
    const s1 = sink(prefix, cuid);
    for (const b of batches.slice(0, 4)) await s1.write(b);
    await s1.close();
    // a new process replays from an older checkpoint (batch 2 onwards) with a later read time
    const s2 = sink(prefix, cuid);
    const replay = batches.slice(2).map((b) => ({ ...b, readAt: b.readAt + 5000 }));
    for (const b of replay) await s2.write(b);
    const got = await allIds(url, `${prefix}-*`);
    expect(got.total).toBe(300);
    expect(got.ids.size).toBe(300);
  });

  it("a document Elasticsearch rejects (mapping conflict) goes to the dead-letter file with the reason", async () => {
    const prefix = `t-${randomUUID().slice(0, 8)}-logs`;
    const cuid = randomUUID();
    const s = sink(prefix, cuid);
    const time = Date.now();
    const first = makeBatches({
      stream: fileStream("m.log"),
      inputId: "2049:9",
      lines: [JSON.stringify({ status: 200, msg: "ok" })],
      perBatch: 10,
      time,
    });
    await s.write(first[0]!);
    const lines = [
      JSON.stringify({ status: 201, msg: "fine" }),
      JSON.stringify({ status: "not-a-number", msg: "conflict" }),
      "plain text line",
    ];
    const second = makeBatches({
      stream: fileStream("m.log"),
      inputId: "2049:9",
      lines,
      perBatch: 10,
      startOffset: 100,
      time,
    });
    await expect(s.write(second[0]!)).resolves.toBeUndefined();
    expect(await count(url, `${prefix}-*`)).toBe(3);
    const dead = readFileSync(join(tmp, `${prefix}.dead.jsonl`), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(dead).toHaveLength(1);
    expect(dead[0].status).toBe(400);
    expect(dead[0].error_type).toMatch(/parsing_exception|mapper/);
    expect(dead[0].reason).toMatch(/status/);
    expect(dead[0].document.message).toBe("conflict");
    expect(dead[0].document.ikontainer_CUID).toBe(cuid);
    expect(dead[0]._id).toBe(
      documentId(cuid, second[0]!, second[0]!.lines[1]!.offset, undefined, second[0]!.lines[1]!.bytes),
    );
  });

  it("a restarted exec child's lines (offsets from 0 again, same CUID) are new lines; a retry is not", async () => {
    const prefix = `t-${randomUUID().slice(0, 8)}-logs`;
    const cuid = randomUUID();
    const stdout = { key: "exec:stdout", path: "stdout", relPath: "stdout.log", channel: "stdout" as const };
    const batch = () =>
      makeBatches({ stream: stdout, inputId: "exec:stdout", lines: ["server starting"], perBatch: 1 })[0]!;
    const first = sink(prefix, cuid);
    await first.write(batch());
    await first.write(batch()); // the pipeline retrying the same batch
    await first.close();
    const second = sink(prefix, cuid); // the agent and its child started again
    await second.write(batch());
    expect(await count(url, `${prefix}-*`)).toBe(2);
  });

  it("reads credentials from files and environment and never shows them in its id", async () => {
    const keyFile = join(tmp, "api-key");
    writeFileSync(keyFile, "c2VjcmV0LWlkOnNlY3JldC1rZXk=\n");
    const c1 = esConnection(url, { esApiKeyFile: keyFile }, {});
    expect(c1.auth).toEqual({ apiKey: "c2VjcmV0LWlkOnNlY3JldC1rZXk=" });
    const c2 = esConnection(url, { esUsername: "elastic" }, { IKONTAINER_ES_PASSWORD: "pw-from-env" });
    expect(c2.auth).toEqual({ username: "elastic", password: "pw-from-env" });
    expect(() => esConnection(url, { esUsername: "elastic" }, {})).toThrow(/IKON|password/);
    expect(() => esConnection(url, { esPasswordFile: join(tmp, "missing"), esUsername: "u" }, {})).toThrow(
      /cannot read/,
    );

    // the test node runs without security, so it ignores the header; the write must still succeed
    const withCreds = url.replace("http://", "http://elastic:hunter2@");
    // credentials inside the URL are refused (they would show in ps and logs), without echoing them
    expect(() => esConnection(withCreds, {})).toThrow(/credentials in the URL are not accepted/);
    expect(() => esConnection(withCreds, {})).not.toThrow(/hunter2/);
    // a connection that carries them anyway (built by hand) still never shows them in the id or warnings
    const prefix = `t-${randomUUID().slice(0, 8)}-logs`;
    const warnings: string[] = [];
    const s = new ElasticsearchSink({
      connection: { node: withCreds, requestTimeout: 30_000 },
      structured: structured(randomUUID(), "svc"),
      deadLetterPath: join(tmp, "x.jsonl"),
      indexPrefix: prefix,
      onWarn: (m, f) => warnings.push(`${m} ${JSON.stringify(f)}`),
    });
    sinks.push(s);
    expect(s.id).not.toContain("hunter2");
    expect(s.id).toBe(`elasticsearch:${url}`);
    await s.write(
      makeBatches({ stream: fileStream("c.log"), inputId: "1:1", lines: ["hello"], perBatch: 1 })[0]!,
    );
    expect(await count(url, `${prefix}-*`)).toBe(1);
    for (const w of warnings) expect(w).not.toContain("hunter2");
  });
});
