import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type LedgerEntry, readLedger } from "../../src/store/ledger.js";
import { type AgentProcess, removeDir, startCli, stopAgent, tempDir } from "../helpers/agent.js";
import { waitForCount, waitUntil } from "../helpers/progress.js";
import { PodLogTree } from "./pod-logs.js";

/**
 * The real agent process in node mode over a simulated /var/log/pods with 500 pods: container restarts,
 * kubelet rotation, pod deletion, new pods, an agent restart and a kill -9. Every line must come out exactly
 * once, carrying its own container instance's CUID, its stream and the runtime's timestamp.
 */
const dirs: string[] = [];
const agents: AgentProcess[] = [];
afterAll(async () => {
  for (const a of agents)
    if (a.child.exitCode === null && a.child.signalCode === null) await stopAgent(a, "SIGKILL");
  for (const d of dirs) removeDir(d);
});

function readOutput(dir: string): Record<string, unknown>[] {
  const recs: Record<string, unknown>[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else
        for (const line of readFileSync(p, "utf8").split("\n"))
          if (line.startsWith("{")) recs.push(JSON.parse(line) as Record<string, unknown>);
    }
  };
  try {
    walk(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  return recs;
}

/** Waits for `n` records while their number keeps growing; on a stall returns what is there for the checks to report. */
async function waitForRecords(out: string, n: number): Promise<Record<string, unknown>[]> {
  await waitForCount(() => readOutput(out).length, n, { stepMs: 250, what: "node-mode records" }).catch(
    () => {},
  );
  return readOutput(out);
}

/**
 * Container instance key → CUID, from the CUID ledger (append-only: it keeps the instances node mode has
 * forgotten, which `node-cuids.jsonl` drops when it is compacted after `--forget-after`). A key that the ledger
 * gives two CUIDs is a broken identity, so it fails here.
 */
function cuidsOf(state: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of readLedger(state) as Array<LedgerEntry & Record<string, unknown>>) {
    if (e.pod_uid === undefined) continue; // Docker instances are keyed differently (the other test)
    const key = `pod/${e.pod_uid}/${e.container}/${e.restart}`;
    const had = m.get(key);
    if (had !== undefined && had !== e.cuid)
      throw new Error(`${key} has two CUIDs in the ledger: ${had}, ${e.cuid}`);
    m.set(key, e.cuid);
  }
  return m;
}

describe("node mode over 500 pods (real agent process)", () => {
  it("gives every container instance its own CUID and loses nothing through restarts, rotation, deletion, kill -9", async () => {
    const root = tempDir("ikon-node-");
    dirs.push(root);
    const tree = new PodLogTree(join(root, "pods"));
    const out = join(root, "out");
    const state = join(root, "state");
    const args = [
      "run",
      "--mode",
      "node",
      "--pod-log-dir",
      tree.root,
      "--state-dir",
      state,
      "--output",
      `file:${out}`,
      "--format",
      "json",
      "--poll-interval",
      "250ms",
      "--linger",
      "300ms",
      "--node-name",
      "node-a",
      // Sweeps for vanished logs every second (a quarter of this): deleted pods' instances are marked stopped.
      "--forget-after",
      "4s",
    ];
    for (let i = 0; i < 500; i++) {
      const p = tree.addPod(i);
      for (const c of p.containers) tree.write(p, c, 10);
    }
    let agent = startCli(args);
    agents.push(agent);
    await agent.waitForLog("tailing", 30_000);

    // While it runs: more lines everywhere, 50 restarts, 20 rotations, 50 deletions, 50 new pods.
    for (const p of tree.pods) for (const c of p.containers) tree.write(p, c, 5);
    for (const p of tree.pods.slice(0, 50)) {
      tree.restart(p, "app");
      tree.write(p, "app", 10);
    }
    for (const p of tree.pods.slice(50, 70)) {
      tree.rotate(p, "app");
      tree.write(p, "app", 10);
    }
    let recs = await waitForRecords(out, tree.written.length);
    expect(recs.length).toBe(tree.written.length);
    for (const p of tree.pods.slice(100, 150)) {
      tree.write(p, "app", 5);
      tree.deletePod(p);
    }
    for (let i = 500; i < 550; i++) {
      const p = tree.addPod(i);
      for (const c of p.containers) tree.write(p, c, 10);
    }
    recs = await waitForRecords(out, tree.written.length);
    expect(recs.length).toBe(tree.written.length);
    const first = await stopAgent(agent);
    // Exit 0, or 1 only by the documented stop deadline (a very loaded machine): what was not checkpointed by
    // then is read again at the next start, which the exactly-once checks below cover.
    const drainDeadline = /drain did not finish in time/.test(agent.stderr());
    expect(
      first.code === 0 || (first.code === 1 && drainDeadline),
      `first agent's exit ${first.code}; its last log lines:\n${agent.stderr().slice(-4000)}`,
    ).toBe(true);
    const cuidsBefore = cuidsOf(state);

    // Agent down: lines keep coming; then it restarts (same state dir), and is killed with -9 mid-way.
    const live = tree.pods.filter((p) => !p.deleted);
    for (const p of live) for (const c of p.containers) tree.write(p, c, 3);
    agent = startCli(args);
    agents.push(agent);
    await agent.waitForLog("tailing", 30_000);
    const beforeBurst = readOutput(out).length;
    for (const p of live.slice(0, 200)) tree.write(p, "app", 20);
    // Killed once it is delivering the burst (not before it started, not necessarily after it finished).
    await waitForCount(() => readOutput(out).length, beforeBurst + 1, {
      stepMs: 50,
      what: "burst before kill -9",
    });
    await stopAgent(agent, "SIGKILL");
    for (const p of live.slice(200)) tree.write(p, "app", 4);
    agent = startCli(args);
    agents.push(agent);
    await agent.waitForLog("tailing", 30_000);
    recs = await waitForRecords(out, tree.written.length);
    // Deleted pods' instances are marked stopped in the ledger (by the sweep, before or after the restarts).
    const deletedUids = new Set(tree.pods.filter((p) => p.deleted).map((p) => p.uid));
    const deletedKeys = [...tree.instanceKeys].filter((k) => deletedUids.has(k.split("/")[1]!));
    const stoppedCuids = () =>
      new Set(
        readLedger(state)
          .filter((e) => e.stopped_at)
          .map((e) => e.cuid),
      );
    const notStopped = () => {
      const stopped = stoppedCuids();
      return deletedKeys.filter((k) => !stopped.has(cuidsOf(state).get(k)!));
    };
    await waitUntil(
      () => {
        const left = notStopped().length;
        return { done: left === 0, progress: left };
      },
      { stepMs: 250, what: "deleted pods' instances stopped in the ledger" },
    ).catch(() => {}); // the check below names the ones left
    expect(notStopped()).toEqual([]);
    const last = await stopAgent(agent);
    // As for the first stop: exit 1 only by the documented stop deadline (every line is out already, above).
    expect(
      last.code === 0 || (last.code === 1 && /drain did not finish in time/.test(agent.stderr())),
      `last agent's exit ${last.code}; its last log lines:\n${agent.stderr().slice(-4000)}`,
    ).toBe(true);
    recs = readOutput(out);

    const cuids = cuidsOf(state);
    // An agent restart keeps every instance's CUID.
    for (const [k, v] of cuidsBefore) expect(cuids.get(k)).toBe(v);
    // One CUID per container instance: 550 pods' app + 55 sidecars + 50 restarted = 655 instances.
    const keys = tree.instanceKeys;
    expect(keys.size).toBe(655);
    expect(new Set([...keys].map((k) => cuids.get(k))).size).toBe(655);
    for (const p of tree.pods.slice(0, 50))
      expect(cuids.get(`pod/${p.uid}/app/1`)).not.toBe(cuids.get(`pod/${p.uid}/app/0`));

    const byText = new Map(tree.written.map((w) => [w.text, w]));
    const seen = new Map<string, number>();
    const wrong: string[] = [];
    for (const r of recs) {
      const msg = r.message as string;
      const w = byText.get(msg);
      if (!w) {
        wrong.push(`unexpected line: ${msg}`);
        continue;
      }
      seen.set(msg, (seen.get(msg) ?? 0) + 1);
      const [, uid, container, restart] = w.key.split("/");
      if (r.ikontainer_CUID !== cuids.get(w.key)) wrong.push(`wrong CUID on ${msg}`);
      if (r.stream !== w.stream) wrong.push(`wrong stream on ${msg}`);
      if (r["@timestamp"] !== new Date(w.timeMs).toISOString()) wrong.push(`wrong time on ${msg}`);
      if (r.pod_uid !== uid || r.container !== container || r.restart !== Number(restart))
        wrong.push(`wrong fields on ${msg}`);
      if (r.request_id !== `req-${msg.split(" ")[1]}` && !msg.endsWith("interleaved"))
        wrong.push(`wrong request_id on ${msg}`);
      if (typeof r.svc !== "string" || !(r.svc as string).startsWith(`${container}.ns-`))
        wrong.push(`wrong svc on ${msg}`);
    }
    const lost = tree.written.filter((w) => !seen.has(w.text)).map((w) => w.text);
    const dup = [...seen].filter(([, n]) => n > 1).map(([t]) => t);
    expect(wrong.slice(0, 5)).toEqual([]);
    expect(lost.slice(0, 5)).toEqual([]);
    expect(dup.slice(0, 5)).toEqual([]);
    expect(recs.length).toBe(tree.written.length);

    // The CUID ledger has one entry per container instance, with its pod fields; restarted (old) instances
    // and deleted pods' instances are stopped.
    const ledger = new Map(
      readLedger(state).map((e) => [e.cuid, e as LedgerEntry & Record<string, unknown>]),
    );
    for (const k of keys) {
      const [, uid, container, restart] = k.split("/");
      expect(ledger.get(cuids.get(k)!)).toMatchObject({
        pod_uid: uid,
        container,
        restart: Number(restart),
        node: "node-a",
      });
    }
    // Stopped: the restarted (old) instances and every instance of a deleted pod, after they started.
    // Running: every other instance (a container's current restart in a pod that still exists).
    const restartedKeys = tree.pods.slice(0, 50).map((p) => `pod/${p.uid}/app/0`);
    expect(deletedKeys).toHaveLength(55); // pods 100-149, five of them with a sidecar
    const mustStop = new Set([...restartedKeys, ...deletedKeys]);
    const wrongStops: string[] = [];
    for (const k of keys) {
      const e = ledger.get(cuids.get(k)!)!;
      if (mustStop.has(k) !== (e.stopped_at !== undefined))
        wrongStops.push(`${k}: ${mustStop.has(k) ? "not stopped" : `stopped at ${e.stopped_at}`}`);
      else if (e.stopped_at && !(Date.parse(e.stopped_at) >= Date.parse(e.started_at)))
        wrongStops.push(`${k}: stopped_at ${e.stopped_at} before started_at ${e.started_at}`);
    }
    expect(wrongStops.slice(0, 5)).toEqual([]);
  }, 600_000); // the progress waits above fail a stall; this only bounds a very loaded machine
});

describe("node mode over Docker json-file logs (real agent process)", () => {
  it("gives each Docker container its own CUID, joins split entries, keeps streams and times", async () => {
    const root = tempDir("ikon-docker-");
    dirs.push(root);
    const docker = join(root, "containers");
    const ids = ["a".repeat(64), "b".repeat(64)];
    const names = ["/web", "/db"];
    const entry = (log: string, stream: string, time: string) => `${JSON.stringify({ log, stream, time })}\n`;
    for (const [i, id] of ids.entries()) {
      mkdirSync(join(docker, id), { recursive: true });
      writeFileSync(join(docker, id, "config.v2.json"), JSON.stringify({ ID: id, Name: names[i] }));
      writeFileSync(
        join(docker, id, `${id}-json.log`),
        entry(`hello from ${names[i]}\n`, "stdout", "2024-05-01T10:00:00.123456789Z") +
          entry("split ", "stderr", "2024-05-01T10:00:01.000000001Z") +
          entry(`line of ${names[i]}\n`, "stderr", "2024-05-01T10:00:01.000000002Z"),
      );
    }
    const pods = join(root, "pods");
    mkdirSync(pods);
    const agent = startCli([
      "run",
      "--mode",
      "node",
      "--pod-log-dir",
      pods,
      "--docker-log-dir",
      docker,
      "--state-dir",
      join(root, "state"),
      "--output",
      "stdout",
      "--format",
      "json",
      "--poll-interval",
      "200ms",
    ]);
    agents.push(agent);
    const recs = () =>
      agent
        .stdout()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    await waitForCount(() => recs().length, 4, { what: "Docker json-file records" });
    await agent.waitForLog("tailing");
    expect((await stopAgent(agent)).code).toBe(0);
    const got = recs().map((r) => [r.message, r.container, r.stream, r["@timestamp"], r.container_id]);
    expect(got.sort()).toEqual(
      [
        ["hello from /db", "db", "stdout", "2024-05-01T10:00:00.123Z", ids[1]],
        ["hello from /web", "web", "stdout", "2024-05-01T10:00:00.123Z", ids[0]],
        ["split line of /db", "db", "stderr", "2024-05-01T10:00:01.000Z", ids[1]],
        ["split line of /web", "web", "stderr", "2024-05-01T10:00:01.000Z", ids[0]],
      ].sort(),
    );
    const cuidOf = (id: string) =>
      new Set(
        recs()
          .filter((r) => r.container_id === id)
          .map((r) => r.ikontainer_CUID),
      );
    expect(cuidOf(ids[0]!).size).toBe(1);
    expect(cuidOf(ids[1]!).size).toBe(1);
    expect([...cuidOf(ids[0]!)][0]).not.toBe([...cuidOf(ids[1]!)][0]);
    expect(recs().find((r) => r.container === "web")?.svc).toBe("web");
  });
});

describe("node mode from a YAML --config file", () => {
  it("accepts the node settings in the config file", async () => {
    const root = tempDir("ikon-nodecfg-");
    dirs.push(root);
    const uid = "0b6e3f2a-1111-2222-3333-444455556666";
    const dir = join(root, "pods", `shop_web-1_${uid}`, "app");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "0.log"), "2024-05-01T10:00:00.000000001Z stdout F from a config file\n");
    writeFileSync(
      join(root, "ikontainer.yaml"),
      `mode: node\npod-log-dir: ${join(root, "pods")}\nstate-dir: ${join(root, "state")}\noutput: [stdout]\nformat: json\nnode-name: node-a\n`,
    );
    const agent = startCli(["run", "--config", join(root, "ikontainer.yaml")]);
    agents.push(agent);
    await agent.waitForLog("tailing");
    await waitUntil(
      () => ({ done: agent.stdout().includes("from a config file"), progress: agent.stdout() }),
      {
        what: "the line from the config file's pod",
      },
    );
    expect((await stopAgent(agent)).code).toBe(0);
    const rec = JSON.parse(agent.stdout().trim().split("\n")[0]!) as Record<string, unknown>;
    expect(rec).toMatchObject({
      message: "from a config file",
      pod_uid: uid,
      node: "node-a",
      svc: "app.shop.cluster.local",
    });
  });
});
