import { describe, expect, it } from "vitest";
import type { LineBatch, LogLine, StreamInfo } from "../../src/core/record.js";
import { DocumentEncoder, documentId } from "../../src/sinks/elasticsearch-document.js";
import { dailyIndex } from "../../src/sinks/elasticsearch-schema.js";
import { RequestIdExtractor } from "../../src/transforms/request-id.js";
import { type StructuredOptions, toStructured } from "../../src/transforms/tag.js";

/**
 * The sink writes each document's NDJSON straight as text (src/sinks/elasticsearch-document.ts). What it
 * stores must stay exactly what the object path stored: `JSON.stringify` of toStructured's record plus the
 * offset, under the same `_index` and `_id`. Compared here byte for byte over every kind of line and stream.
 */

const CUID = "0196f1c2-0000-7000-8000-0000000d0c01";

function objectPath(batch: LineBatch, opts: StructuredOptions, prefix: string, run: string): string[] {
  return batch.lines.map((line) => {
    const rec = toStructured(line, batch, opts) as Record<string, unknown>;
    rec.ikontainer_offset = line.offset;
    const cuid = batch.stream.cuid ?? opts.identity.cuid;
    const id = documentId(cuid, batch, line.offset, line.part, line.bytes, run);
    const index = dailyIndex(prefix, rec["@timestamp"] as string);
    return `{"create":{"_index":"${index}","_id":"${id}"}}\n${JSON.stringify(rec)}\n`;
  });
}

function line(text: string | Buffer, offset: number, extra: Partial<LogLine> = {}): LogLine {
  return { bytes: Buffer.isBuffer(text) ? text : Buffer.from(text), offset, ...extra };
}

const texts: Array<string | Buffer> = [
  "2026-11-23T10:00:00.000Z INFO GET /api/v1/items/7 status=200 dur=3ms user=u7 x-request-id=9e3779b1-7",
  "2026-11-23T10:00:00.001Z INFO POST /api/v1/items/8 status=500 dur=4ms user=u8",
  'quotes " and backslash \\ and tab \t and control \u0001 and DEL \u007f',
  "unicode: é ü 漢字 😀 \u2028 \u2029",
  Buffer.from([0x61, 0xff, 0xfe, 0x62, 0xc3]), // invalid UTF-8
  "",
  "   ",
  '{"msg":"json line","x-request-id":"abc-123","svc":"app-claims-svc","pod":"app-pod","level":"warn"}',
  '  {"message":"indented json","ikontainer_CUID":"forged","nested":{"a":[1,2,{"b":null}]}}',
  '{"not closed": ',
  '[2026-11-23T10:00:00.000Z] "GET /x HTTP/1.1" 200 - 0 12 3 2 "-" "curl/8" "envoy-rid-1" "h" "10.0.0.1:80"',
  '{"0":"index-like key","1":2}',
  "x".repeat(70_000), // longer than the id scratch buffer
];

function batchOf(stream: StreamInfo, lines: LogLine[], inputId = "2049:77"): LineBatch {
  return { stream, lines, inputId, endOffset: 0, endPart: 0, readAt: Date.parse("2026-11-23T23:59:59.999Z") };
}

function variants(): Array<{ name: string; batch: LineBatch }> {
  const file: StreamInfo = {
    key: "file:0:app.log",
    path: "/var/log/app/app.log",
    relPath: "app.log",
    channel: "file",
  };
  const lines = (extra: (i: number) => Partial<LogLine>) => {
    let offset = 0;
    return texts.map((t, i) => {
      const l = line(t, offset, extra(i));
      offset += l.bytes.length + 1;
      return l;
    });
  };
  const day = Date.parse("2026-11-23T23:59:59.990Z");
  return [
    {
      name: "file lines, read time",
      batch: batchOf(
        file,
        lines(() => ({})),
      ),
    },
    {
      name: "pieces, partial, unterminated",
      batch: batchOf(
        file,
        lines((i) => ({
          ...(i % 3 === 0 ? { part: i + 1 } : {}),
          ...(i % 3 === 0 && i % 2 === 0 ? { partial: true } : {}),
          ...(i % 4 === 1 ? { unterminated: true } : {}),
        })),
      ),
    },
    {
      name: "source times across midnight (two indices), CRI channels",
      batch: batchOf(
        {
          key: "node:ns/pod/c",
          path: "/var/log/pods/ns_pod_uid/c/0.log",
          relPath: "c/0.log",
          channel: "stdout",
          cuid: "0196f1c2-0000-7000-8000-00000000ca11",
          svc: "pod.ns.svc",
          fields: { pod: "pod-1", namespace: "ns", container: "c", restart: 2, pod_uid: "uid-1" },
        },
        lines((i) => ({ time: day + i * 3, ...(i % 2 ? { channel: "stderr" as const } : {}) })),
        "2049:78",
      ),
    },
    {
      name: "stream fields that collide with the record's own keys (object path)",
      batch: batchOf(
        { ...file, fields: { svc: "forged", source: "x", "0": "index-like" } },
        lines(() => ({})),
      ),
    },
    {
      name: "exec stdio",
      batch: batchOf(
        { key: "exec:stdout", path: "stdout", relPath: "stdout.log", channel: "stdout" },
        lines(() => ({})),
        "exec:stdout",
      ),
    },
  ];
}

describe("Elasticsearch documents written as text", () => {
  for (const agentFields of [undefined, { pod: "agent-pod", node: "node-1", pod_ip: "10.1.2.3" }]) {
    const opts: StructuredOptions = {
      identity: { cuid: CUID, svc: "checkout.shop.cluster.local" },
      requestIds: new RequestIdExtractor(),
      ...(agentFields ? { fields: agentFields } : {}),
    };
    for (const { name, batch } of variants()) {
      for (const run of ["", "@0123456789abcdef"]) {
        it(`${name}${agentFields ? ", with Downward API fields" : ""}${run ? ", per-run ids" : ""}`, () => {
          const enc = new DocumentEncoder(opts, "logs-t");
          const got = enc.encode(batch, run);
          const want = objectPath(batch, opts, "logs-t", run);
          expect(got.map((d) => d.ndjson)).toEqual(want);
          for (const [i, d] of got.entries()) {
            expect(want[i]).toContain(`"_index":"${d.index}","_id":"${d.id}"`);
            JSON.parse(d.ndjson.slice(d.ndjson.indexOf("\n") + 1)); // the source line is one JSON object
          }
        });
      }
    }
  }

  it("a custom request-ID pattern and a batch encoded twice give the same text", () => {
    const opts: StructuredOptions = {
      identity: { cuid: CUID, svc: "s" },
      requestIds: new RequestIdExtractor("trace=(\\w+)"),
    };
    const b = batchOf({ key: "file:0:a", path: "/a", relPath: "a", channel: "file" }, [
      line("trace=abc x-request-id=zzz", 0),
      line("no id", 27),
    ]);
    const enc = new DocumentEncoder(opts, "p");
    const first = enc.encode(b, "").map((d) => d.ndjson);
    expect(first).toEqual(objectPath(b, opts, "p", ""));
    expect(first[0]).toContain('"request_id":"abc"');
    expect(enc.encode(b, "").map((d) => d.ndjson)).toEqual(first);
  });
});
