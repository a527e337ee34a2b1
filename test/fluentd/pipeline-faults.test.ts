import { cpSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { sharedElasticsearch } from "../fixtures/elasticsearch.js";
import type { RealFluentd } from "../fixtures/fluentd.js";
import { TcpProxy } from "../fixtures/tcp-proxy.js";
import {
  type AgentProcess,
  outputBytes,
  removeDir,
  runWriter,
  sleep,
  stopAgent,
  tempDir,
  until,
} from "../helpers/agent.js";
import { waitUntil } from "../helpers/progress.js";
import {
  docCount,
  docs,
  exactlyOnce,
  pipelineFluentd,
  startAgent,
  stopIfAlive,
  waitForDocs,
} from "./pipeline.js";

/**
 * Faults on the real path agent → fluentd (shipped config) → Elasticsearch. Each test writes numbered lines
 * (`seq=<n>`), breaks one part while they flow, and then requires every line stored exactly once: as many
 * documents as lines, every seq present, every _id distinct (fluentd's `id_key ikontainer_id` makes a chunk
 * that is sent again land on the same _id).
 */

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});
let url: string;
beforeAll(async () => {
  url = await sharedElasticsearch();
}, 310_000);

interface Setup {
  f: RealFluentd;
  logs: string;
  state: string;
}

async function setup(name: string, esUrl?: string): Promise<Setup> {
  const f = await pipelineFluentd(url, name);
  if (esUrl) f.o.esUrl = esUrl;
  const logs = tempDir(`ikon-fdf-${name}-logs-`);
  const state = tempDir(`ikon-fdf-${name}-state-`);
  cleanup.push(
    () => removeDir(f.dir),
    () => removeDir(logs),
    () => removeDir(state),
  );
  await f.start();
  cleanup.push(() => f.stop());
  return { f, logs, state };
}

function agent(s: Setup, sharedKey?: string): AgentProcess {
  const a = startAgent(s.f, s.state, ["--watch", s.logs, "--svc", "web"], {}, sharedKey);
  cleanup.push(() => stopIfAlive(a));
  return a;
}

async function expectAllOnce(s: Setup, total: number, explain: () => string): Promise<void> {
  await waitForDocs(url, s.f.o.indexPrefix, total, 150_000, explain);
  await sleep(6000); // one more flush interval: a late duplicate with a different _id would show now
  const stored = await docs(url, s.f.o.indexPrefix);
  expect(exactlyOnce(stored, total)).toEqual({ missing: 0, dup: 0, idsDistinct: true });
  expect(stored).toHaveLength(total);
}

describe("real pipeline under faults", () => {
  it("fluentd SIGKILLed mid-stream and restarted on its buffer: every line stored once", async () => {
    const s = await setup("fkill");
    const total = 12_000;
    const writer = runWriter([join(s.logs, "app.log"), total, 1500, "none", 0, "fk", 100]);
    const a = agent(s);
    await a.waitForLog("tailing", 30_000);
    // fluentd has stored some and holds more in its buffer when it dies
    await until(async () => (await docCount(url, s.f.o.indexPrefix)) > 0, 120_000, 500);
    await until(() => outputBytes(join(s.f.dir, "buffer")) > 0, 60_000, 100);
    const before = await docCount(url, s.f.o.indexPrefix);
    await s.f.kill9();
    // fluentd stays down a while: time passing is the point (whatever is written meanwhile waits in the agent's
    // disk buffer; the writer may already be done, so there is no progress to wait on).
    await sleep(3000);
    await s.f.start();
    await writer;
    await expectAllOnce(s, total, () => a.stderr() + s.f.log());
    await stopAgent(a, "SIGTERM");
    console.log(`fluentd kill -9 after ${before} documents stored: all ${total} lines once`);
  }, 420_000);

  it("Elasticsearch unreachable (a TCP proxy in front of it is cut): fluentd buffers, then every line stored once", async () => {
    // The run's Elasticsearch node is shared with other tests, so the outage is made by a proxy fluentd
    // talks to: connections are reset and refused for 30 s, as when the node is down.
    const target = new URL(url);
    const proxy = await new TcpProxy(target.hostname, Number(target.port)).restore();
    cleanup.push(() => proxy.cut());
    const s = await setup("esdown", `http://127.0.0.1:${proxy.port}`);
    const total = 9000;
    const a = agent(s);
    await a.waitForLog("tailing", 30_000);
    const first = runWriter([join(s.logs, "app.log"), 3000, 1500, "none", 0, "ed", 100]);
    await first;
    await waitForDocs(url, s.f.o.indexPrefix, 3000, 150_000, () => a.stderr() + s.f.log());
    await proxy.cut();
    const during = runWriter([join(s.logs, "app.log"), 6000, 1500, "none", 0, "ed2", 100]);
    await during;
    // fluentd has failed to flush and holds every new line in its file buffer (waited for, not timed).
    await waitUntil(
      () => {
        const bytes = outputBytes(join(s.f.dir, "buffer"));
        const failed = /failed to flush the buffer|could not push logs to Elasticsearch/.test(s.f.log());
        return { done: failed && bytes > 6000 * 100, progress: `${bytes} ${s.f.log().length}` };
      },
      { idleMs: 60_000, what: "fluentd buffering during the outage" },
    );
    // nothing got through
    expect(await docCount(url, s.f.o.indexPrefix)).toBe(3000);
    expect(outputBytes(join(s.f.dir, "buffer"))).toBeGreaterThan(6000 * 100);
    expect(s.f.log()).toMatch(/failed to flush the buffer|could not push logs to Elasticsearch/);
    await proxy.restore();
    await waitForDocs(url, s.f.o.indexPrefix, total, 150_000, () => a.stderr() + s.f.log());
    await sleep(6000); // one more flush interval: a late duplicate would show now (time passing is the point)
    const stored = await docs(url, s.f.o.indexPrefix);
    expect(stored).toHaveLength(total);
    expect(new Set(stored.map((d) => d._id)).size).toBe(total);
    expect(new Set(stored.map((d) => d.message)).size).toBe(total);
    await stopAgent(a, "SIGTERM");
  }, 480_000);

  it("agent kill -9 while shipping, restarted on its state: every line stored once", async () => {
    const s = await setup("akill");
    const total = 12_000;
    const writer = runWriter([join(s.logs, "app.log"), total, 1500, "none", 0, "ak", 100]);
    const a = agent(s);
    await a.waitForLog("tailing", 30_000);
    await until(async () => (await docCount(url, s.f.o.indexPrefix)) > 0, 120_000, 500);
    await stopAgent(a, "SIGKILL");
    const b = agent(s);
    await writer;
    await expectAllOnce(s, total, () => b.stderr() + s.f.log());
    await stopAgent(b, "SIGTERM");
  }, 420_000);

  it("lines fluentd acknowledged, sent again (the agent's state rolled back to before the acks): stored once", async () => {
    // The documented at-least-once window, made deterministic: the agent dies after fluentd acknowledged
    // but before it recorded that, so it sends the same lines again. Every line carries the same
    // ikontainer_id both times, and fluentd's id_key makes that the _id: the second write is a new version
    // of the same document, not a second document.
    const s = await setup("resend");
    const a = agent(s);
    await a.waitForLog("tailing", 30_000);
    const before = `${s.state}.before`;
    cpSync(s.state, before, { recursive: true });
    cleanup.push(() => rmSync(before, { recursive: true, force: true }));
    const total = 2000;
    await runWriter([join(s.logs, "app.log"), total, 4000, "none", 0, "rs", 100]);
    await waitForDocs(url, s.f.o.indexPrefix, total, 150_000, () => a.stderr() + s.f.log());
    await stopAgent(a, "SIGTERM");
    rmSync(s.state, { recursive: true, force: true });
    cpSync(before, s.state, { recursive: true });
    const b = agent(s);
    // progress = documents written a second time; fails when that stops moving
    let last = -1;
    let since = Date.now();
    for (;;) {
      const again = (await docs(url, s.f.o.indexPrefix)).filter((d) => d.version >= 2).length;
      if (again >= total) break;
      if (again !== last) {
        last = again;
        since = Date.now();
      } else if (Date.now() - since > 120_000)
        throw new Error(`${again} of ${total} documents written again; stalled\n${b.stderr()}${s.f.log()}`);
      await sleep(1000);
    }
    await stopAgent(b, "SIGTERM");
    const stored = await docs(url, s.f.o.indexPrefix);
    expect(exactlyOnce(stored, total)).toEqual({ missing: 0, dup: 0, idsDistinct: true });
    expect(stored).toHaveLength(total);
  }, 420_000);

  it("wrong shared key: the agent says authentication failed and keeps the lines; with the right key all arrive once", async () => {
    const s = await setup("key");
    const a = agent(s, "not-the-shared-key");
    await a.waitForLog("tailing", 30_000);
    await runWriter([join(s.logs, "app.log"), 500, 2000, "none", 0, "wk", 100]);
    await until(() => /authentication failed/.test(a.stderr()), 60_000, 200);
    expect(a.stderr()).toMatch(/shared-key-file|SHARED_KEY/);
    expect(a.stderr()).not.toContain(s.f.o.sharedKey);
    expect(a.stderr()).not.toContain("not-the-shared-key");
    expect(s.f.log()).toMatch(/shared[_ ]key mismatch/i);
    await stopAgent(a, "SIGTERM");
    const b = agent(s);
    await b.waitForLog("tailing", 30_000);
    await runWriter([join(s.logs, "app.log"), 500, 2000, "none", 0, "wk2", 100]);
    await waitForDocs(url, s.f.o.indexPrefix, 1000, 150_000, () => b.stderr() + s.f.log());
    await sleep(6000); // one more flush interval: a late duplicate would show now (time passing is the point)
    const stored = await docs(url, s.f.o.indexPrefix);
    expect(stored).toHaveLength(1000);
    expect(new Set(stored.map((d) => d.message)).size).toBe(1000);
    expect(new Set(stored.map((d) => d._id)).size).toBe(1000);
    await stopAgent(b, "SIGTERM");
  }, 420_000);
});
