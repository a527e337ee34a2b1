import { execFile } from "node:child_process";
import { appendFileSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { sharedElasticsearch } from "../fixtures/elasticsearch.js";
import type { RealFluentd } from "../fixtures/fluentd.js";
import { CLI, removeDir, stopAgent, tempDir } from "../helpers/agent.js";
import { PodLogTree } from "../node/pod-logs.js";
import { cuidOf, docs, pipelineFluentd, startAgent, stopIfAlive, waitForDocs } from "./pipeline.js";

/**
 * The production path for real: `ikontainer run` (sidecar and node mode) → fluentd 1.16 in_forward (TLS,
 * shared key) → out_elasticsearch with its file buffer → Elasticsearch, with the fluent.conf deploy/ ships.
 * Every line must be stored once (counted by document and by _id) and be found by the query commands.
 */

const run = promisify(execFile);
const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});
let url: string;
beforeAll(async () => {
  url = await sharedElasticsearch();
}, 310_000);

async function started(name: string): Promise<RealFluentd> {
  const f = await pipelineFluentd(url, name);
  cleanup.push(() => removeDir(f.dir));
  await f.start();
  cleanup.push(() => f.stop());
  return f;
}

describe("agent → real fluentd → Elasticsearch", () => {
  it("sidecar: every line stored once under the agent's CUID; logs --es, trace and whois find it", async () => {
    const f = await started("sidecar");
    const logs = tempDir("ikon-fdp-logs-");
    const state = tempDir("ikon-fdp-state-");
    cleanup.push(
      () => removeDir(logs),
      () => removeDir(state),
    );
    const ip = "10.77.3.9";
    const a = startAgent(f, state, ["--watch", logs, "--svc", "cart.shop.cluster.local"], {
      POD_IP: ip,
      POD_NAME: "cart-0",
      POD_NAMESPACE: "shop",
    });
    cleanup.push(() => stopIfAlive(a));
    await a.waitForLog("tailing", 30_000);
    const total = 3000;
    for (let i = 0; i < total; i += 500) {
      let chunk = "";
      for (let k = i; k < i + 500; k++) chunk += `seq=${k} GET /cart/${k} 200 request_id=req-${k % 40}\n`;
      appendFileSync(join(logs, "app.log"), chunk);
    }
    await waitForDocs(url, f.o.indexPrefix, total, 90_000, () => a.stderr() + f.log());
    await stopAgent(a, "SIGTERM");
    const cuid = cuidOf(state);
    const stored = await docs(url, f.o.indexPrefix);
    expect(stored).toHaveLength(total);
    expect(new Set(stored.map((d) => d._id)).size).toBe(total);
    expect(new Set(stored.map((d) => d.message)).size).toBe(total);
    expect(new Set(stored.map((d) => d.cuid))).toEqual(new Set([cuid]));

    const q = ["--es", url, "--es-index-prefix", f.o.indexPrefix, "--json"];
    const found = await run(process.execPath, [CLI, "logs", "--cuid", cuid, "--request-id", "req-7", ...q]);
    const lines = found.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { message: string; request_id: string; pod_ip: string });
    const want = Array.from({ length: total }, (_, k) => k).filter((k) => k % 40 === 7);
    expect(lines.map((r) => r.message).sort()).toEqual(
      want.map((k) => `seq=${k} GET /cart/${k} 200 request_id=req-7`).sort(),
    );
    expect(lines.every((r) => r.request_id === "req-7" && r.pod_ip === ip)).toBe(true);

    const trace = JSON.parse((await run(process.execPath, [CLI, "trace", "req-7", ...q])).stdout);
    expect(trace.hops).toHaveLength(1);
    expect(trace.hops[0]).toMatchObject({ cuid, svc: "cart.shop.cluster.local", pod_ip: ip });
    // The CUID ledger is not a log line: fluentd does not carry it, so whois reads the agent's own ledger.
    const who = JSON.parse(
      (await run(process.execPath, [CLI, "whois", ip, "--state-dir", state, "--json"])).stdout,
    );
    expect(who).toHaveLength(1);
    expect(who[0]).toMatchObject({ cuid, pod: "cart-0", namespace: "shop", pod_ip: ip });
  }, 240_000);

  it("node mode: each container instance's lines stored once under its own CUID", async () => {
    const f = await started("node");
    const root = tempDir("ikon-fdp-node-");
    cleanup.push(() => removeDir(root));
    const tree = new PodLogTree(join(root, "pods"));
    const state = join(root, "state");
    mkdirSync(state);
    for (let i = 0; i < 20; i++) {
      const p = tree.addPod(i);
      for (const c of p.containers) tree.write(p, c, 40);
    }
    const a = startAgent(f, state, [
      "--mode",
      "node",
      "--pod-log-dir",
      tree.root,
      "--poll-interval",
      "250ms",
      "--node-name",
      "node-a",
    ]);
    cleanup.push(() => stopIfAlive(a));
    await a.waitForLog("tailing", 30_000);
    for (const p of tree.pods.slice(0, 10)) {
      tree.restart(p, "app");
      tree.write(p, "app", 30);
    }
    await waitForDocs(url, f.o.indexPrefix, tree.count, 90_000, () => a.stderr() + f.log());
    await stopAgent(a, "SIGTERM");
    const stored = await docs(url, f.o.indexPrefix);
    expect(stored).toHaveLength(tree.count);
    expect(new Set(stored.map((d) => d._id)).size).toBe(tree.count);
    const cuids = cuidsOf(state);
    const byText = new Map(stored.map((d) => [d.message, d.cuid]));
    expect(byText.size).toBe(tree.count);
    for (const w of tree.written) expect(byText.get(w.text), w.text).toBe(cuids.get(w.key));
    expect(new Set(stored.map((d) => d.cuid)).size).toBe(new Set(tree.written.map((w) => w.key)).size);
  }, 240_000);
});

function cuidsOf(state: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of readFileSync(join(state, "node-cuids.jsonl"), "utf8").split("\n"))
    if (line) {
      const e = JSON.parse(line) as { key: string; cuid: string };
      m.set(e.key, e.cuid);
    }
  return m;
}
