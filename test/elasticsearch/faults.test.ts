import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { esConnection } from "../../src/config/elasticsearch.js";
import type { LineBatch } from "../../src/core/record.js";
import { documentId, ElasticsearchSink } from "../../src/sinks/elasticsearch.js";
import { allIds, type DedicatedNode, dedicatedNode } from "../fixtures/elasticsearch.js";
import { waitForCount } from "../helpers/progress.js";
import { fileStream, makeBatches, structured } from "./batches.js";

// One Elasticsearch node of this file's own: these tests stop and kill it.
let node: DedicatedNode;
let tmp: string;
const sinks: ElasticsearchSink[] = [];
/** Failed bulk requests per sink (its "did not accept documents; retrying" warnings). */
const failedRequests = new Map<ElasticsearchSink, number>();

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
    onWarn: (msg) => {
      if (msg.includes("retrying")) failedRequests.set(s, (failedRequests.get(s) ?? 0) + 1);
    },
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
  // Several requests have met the dead node (waited for, not timed): still nothing is accepted.
  await waitForCount(() => failedRequests.get(s) ?? 0, 3, {
    stepMs: 20,
    what: "bulk requests failing against the stopped node",
  });
  expect(settled).toBe(0);
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
  await waitForCount(() => accepted, batches.length * 0.25, {
    stepMs: 5,
    what: "batches accepted before the kill",
  });
  await node.kill9();
  const acceptedAtKill = accepted;
  expect(acceptedAtKill).toBeLessThan(batches.length);
  // The sink meets the dead node and keeps retrying before it comes back (waited for, not timed).
  const failedAtKill = failedRequests.get(s) ?? 0;
  await waitForCount(() => failedRequests.get(s) ?? 0, failedAtKill + 2, {
    stepMs: 20,
    what: "bulk requests failing against the killed node",
  });
  await node.start();
  await all;
  const got = await allIds(node.url, `${prefix}-*`);
  expect(got.total).toBe(20_000);
  expect(got.ids).toEqual(expectedIds(cuid, batches));
}, 300_000);
