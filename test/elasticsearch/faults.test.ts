import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { esConnection } from "../../src/config/elasticsearch.js";
import type { LineBatch } from "../../src/core/record.js";
import { documentId, ElasticsearchSink } from "../../src/sinks/elasticsearch.js";
import { allIds, type DedicatedNode, dedicatedNode } from "../fixtures/elasticsearch.js";
import { fileStream, makeBatches, structured } from "./batches.js";

// One Elasticsearch node of this file's own: these tests stop and kill it.
let node: DedicatedNode;
let tmp: string;
const sinks: ElasticsearchSink[] = [];

beforeAll(async () => {
  node = await dedicatedNode("faults");
  tmp = mkdtempSync(join(tmpdir(), "ikon-es-faults-"));
});
afterAll(async () => {
  for (const s of sinks) await s.close();
  await node.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

function newSink(prefix: string, cuid: string): ElasticsearchSink {
  const s = new ElasticsearchSink({
    connection: esConnection(node.url, { esRequestTimeout: 5000 }),
    structured: structured(cuid, "faults"),
    deadLetterPath: join(tmp, `${prefix}.dead.jsonl`),
    indexPrefix: prefix,
    flushBytes: 128 * 1024,
    retryTimeout: 600_000, // a loaded machine may take minutes to start the node
    retryInitialDelay: 100,
    retryMaxDelay: 1000,
  });
  sinks.push(s);
  return s;
}

function expectedIds(cuid: string, batches: LineBatch[]): Set<string> {
  return new Set(batches.flatMap((b) => b.lines.map((l) => documentId(cuid, b, l.offset, l.part, l.bytes))));
}

it("Elasticsearch down when the sink starts: writes wait, then everything is stored once", async () => {
  const prefix = `t-${randomUUID().slice(0, 8)}-down`;
  const cuid = randomUUID();
  const s = newSink(prefix, cuid);
  const lines = Array.from({ length: 2000 }, (_, i) => `down-at-start ${i}`);
  const batches = makeBatches({ stream: fileStream("d.log"), inputId: "7:1", lines, perBatch: 100 });
  let settled = 0;
  const writes = batches.map((b) => s.write(b).finally(() => settled++));
  await new Promise((r) => setTimeout(r, 1500));
  expect(settled).toBe(0); // nothing is accepted while Elasticsearch is down
  await node.start();
  await Promise.all(writes);
  const got = await allIds(node.url, `${prefix}-*`);
  expect(got.total).toBe(2000);
  expect(got.ids).toEqual(expectedIds(cuid, batches));
}, 300_000);

it("Elasticsearch killed (SIGKILL) mid-stream and restarted: nothing lost, nothing stored twice", async () => {
  const prefix = `t-${randomUUID().slice(0, 8)}-crash`;
  const cuid = randomUUID();
  const s = newSink(prefix, cuid);
  const lines = Array.from({ length: 20_000 }, (_, i) => `crash-test line ${i} ${"y".repeat(i % 80)}`);
  const batches = makeBatches({ stream: fileStream("c.log"), inputId: "7:2", lines, perBatch: 250 });
  let accepted = 0;
  // like the pipeline: a few batches outstanding, in order
  let next = 0;
  const worker = async () => {
    while (next < batches.length) {
      const b = batches[next++]!;
      await s.write(b);
      accepted++;
    }
  };
  const all = Promise.all([worker(), worker(), worker()]);
  all.catch(() => undefined); // awaited below; do not report it as unhandled if the test times out first
  while (accepted < batches.length * 0.25) await new Promise((r) => setTimeout(r, 5));
  await node.kill9();
  const acceptedAtKill = accepted;
  expect(acceptedAtKill).toBeLessThan(batches.length);
  await new Promise((r) => setTimeout(r, 1000));
  await node.start();
  await all;
  const got = await allIds(node.url, `${prefix}-*`);
  expect(got.total).toBe(20_000);
  expect(got.ids).toEqual(expectedIds(cuid, batches));
}, 300_000);
