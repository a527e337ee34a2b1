import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PodWatcher } from "../../src/sources/node/kube.js";
import { readLedger } from "../../src/store/ledger.js";
import { type AgentProcess, removeDir, startCli, stopAgent, tempDir } from "../helpers/agent.js";
import { waitForCount, waitUntil } from "../helpers/progress.js";

/**
 * There is no Kubernetes cluster here. The API server is replaced by a small local HTTPS server that speaks
 * the shape of the pods list/watch API (GET /api/v1/pods with fieldSelector, `watch=true` streaming
 * newline-delimited {type, object} events, BOOKMARK, ERROR 410 Gone, bearer-token auth, TLS with its own CA).
 */
interface Pod {
  metadata: {
    uid: string;
    name: string;
    namespace: string;
    labels: Record<string, string>;
    resourceVersion: string;
  };
  spec: { nodeName: string };
  status: { podIP?: string };
}

const TOKEN = "test-token-123";
let dir: string;
let server: https.Server;
let url: string;
const pods = new Map<string, Pod>();
let rv = 100;
const watchers = new Set<import("node:http").ServerResponse>();
const requests: string[] = [];
let goneOnNextWatch = false;

function event(type: string, pod: Pod): void {
  for (const w of watchers) if (!w.writableEnded) w.write(`${JSON.stringify({ type, object: pod })}\n`);
}

function setPod(
  uid: string,
  name: string,
  ip: string | undefined,
  labels: Record<string, string>,
  node = "node-a",
) {
  const pod: Pod = {
    metadata: { uid, name, namespace: "shop", labels, resourceVersion: String(++rv) },
    spec: { nodeName: node },
    status: ip ? { podIP: ip } : {},
  };
  const type = pods.has(uid) ? "MODIFIED" : "ADDED";
  pods.set(uid, pod);
  if (node === "node-a") event(type, pod);
  return pod;
}

beforeAll(async () => {
  dir = tempDir("ikon-kube-");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-keyout",
      join(dir, "key.pem"),
      "-out",
      join(dir, "ca.crt"),
    ],
    { stdio: "ignore" },
  );
  writeFileSync(join(dir, "token"), `${TOKEN}\n`);
  server = https.createServer(
    { key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "ca.crt")) },
    (req, res) => {
      const u = new URL(req.url ?? "/", "https://x");
      requests.push(`${u.pathname}?${u.searchParams.get("watch") ? "watch" : "list"}`);
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        res.writeHead(401, { "content-type": "application/json" }).end('{"kind":"Status","code":401}');
        return;
      }
      const selector = u.searchParams.get("fieldSelector");
      if (u.pathname !== "/api/v1/pods" || !selector?.startsWith("spec.nodeName=")) {
        res.writeHead(403).end('{"kind":"Status","code":403,"reason":"Forbidden"}');
        return;
      }
      const node = selector.slice("spec.nodeName=".length);
      if (u.searchParams.get("watch") === "true") {
        res.writeHead(200, { "content-type": "application/json" });
        if (goneOnNextWatch) {
          goneOnNextWatch = false;
          res.end(
            `${JSON.stringify({ type: "ERROR", object: { kind: "Status", code: 410, reason: "Expired" } })}\n`,
          );
          return;
        }
        res.write(
          `${JSON.stringify({ type: "BOOKMARK", object: { metadata: { resourceVersion: String(rv) } } })}\n`,
        );
        watchers.add(res);
        res.on("close", () => watchers.delete(res));
        return;
      }
      const items = [...pods.values()].filter((p) => p.spec.nodeName === node);
      res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ kind: "PodList", metadata: { resourceVersion: String(rv) }, items }));
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const w of watchers) w.destroy();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  removeDir(dir);
});

/** A state of the in-process API server or watcher: nothing to measure progress on, so 30 s without it fail. */
const until = (f: () => boolean) =>
  waitUntil(() => ({ done: f(), progress: 0 }), { stepMs: 25, what: `until ${f.toString()}` });

describe("PodWatcher against an API-server-shaped HTTPS server", () => {
  it("lists and watches only this node's pods, keyed by UID, and relists after 410 Gone", async () => {
    pods.clear();
    setPod("uid-1", "web-1", "10.1.0.1", { app: "web" });
    setPod("uid-2", "db-1", "10.1.0.2", { app: "db" }, "node-b");
    let relists = 0;
    const w = new PodWatcher({
      url,
      nodeName: "node-a",
      tokenFile: join(dir, "token"),
      caFile: join(dir, "ca.crt"),
      onRelist: () => relists++,
    });
    await w.start();
    expect(w.get("uid-1")).toMatchObject({ name: "web-1", podIP: "10.1.0.1", labels: { app: "web" } });
    expect(w.get("uid-2")).toBeUndefined(); // another node's pod
    await until(() => watchers.size === 1);
    setPod("uid-1", "web-1", "10.1.0.9", { app: "web", version: "v2" });
    await until(() => w.get("uid-1")?.podIP === "10.1.0.9");
    expect(w.get("uid-1")?.labels).toEqual({ app: "web", version: "v2" });
    // A recreated pod with the same name is another UID: never confused with the old one.
    setPod("uid-3", "web-1", "10.1.0.3", { app: "web" });
    await until(() => w.get("uid-3") !== undefined);
    expect(w.get("uid-1")?.podIP).toBe("10.1.0.9");
    // Watch expired: the next watch answers 410, the watcher lists again.
    const lists = requests.filter((r) => r.endsWith("list")).length;
    goneOnNextWatch = true;
    for (const s of [...watchers]) {
      s.end();
      watchers.delete(s);
    }
    setPod("uid-4", "web-4", "10.1.0.4", {});
    await until(() => w.get("uid-4") !== undefined);
    expect(requests.filter((r) => r.endsWith("list")).length).toBeGreaterThan(lists);
    expect(relists, "onRelist said so, once").toBe(1);
    await w.stop();
  });

  it("rejects the first list with a wrong token (401) and the CA is checked", async () => {
    const bad = join(dir, "bad-token");
    writeFileSync(bad, "nope");
    const w = new PodWatcher({ url, nodeName: "node-a", tokenFile: bad, caFile: join(dir, "ca.crt") });
    await expect(w.start()).rejects.toThrow(/HTTP 401/);
    await w.stop();
    const noCa = new PodWatcher({ url, nodeName: "node-a", tokenFile: join(dir, "token") });
    await expect(noCa.start()).rejects.toThrow(/self-signed|certificate/);
    await noCa.stop();
  });
});

describe("run --mode node --kube-enrich (real agent process)", () => {
  let agent: AgentProcess | undefined;
  afterAll(async () => {
    if (agent && agent.child.exitCode === null) await stopAgent(agent, "SIGKILL");
  });

  it("adds pod_ip and labels by pod UID, follows label changes, and never needs the API for identity", async () => {
    pods.clear();
    const uid = "6f1c2d3e-0000-4000-8000-000000000001";
    const uidNoApi = "6f1c2d3e-0000-4000-8000-000000000002";
    setPod(uid, "web-1", "10.2.0.7", { app: "web", tier: "front" });
    const root = join(dir, "node");
    const logs = join(root, "pods");
    const file = join(logs, `shop_web-1_${uid}`, "app", "0.log");
    const file2 = join(logs, `shop_short-lived_${uidNoApi}`, "app", "0.log");
    mkdirSync(join(file, ".."), { recursive: true });
    mkdirSync(join(file2, ".."), { recursive: true });
    writeFileSync(file, "2024-05-01T10:00:00.000000001Z stdout F first\n");
    writeFileSync(file2, "2024-05-01T10:00:00.000000002Z stderr F not in the API\n");
    agent = startCli(
      [
        "run",
        "--mode",
        "node",
        "--pod-log-dir",
        logs,
        "--state-dir",
        join(root, "state"),
        "--output",
        "stdout",
        "--format",
        "json",
        "--poll-interval",
        "200ms",
        "--kube-enrich",
        "--kube-api-url",
        url,
        "--kube-token-file",
        join(dir, "token"),
        "--kube-ca-file",
        join(dir, "ca.crt"),
      ],
      { env: { ...process.env, NODE_NAME: "node-a" } },
    );
    const recs = () =>
      agent!
        .stdout()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    await waitForCount(() => recs().length, 2, { what: "records of both pod logs" });
    const first = recs().find((r) => r.message === "first")!;
    expect(first).toMatchObject({
      pod_ip: "10.2.0.7",
      "labels.app": "web",
      "labels.tier": "front",
      node: "node-a",
      pod_uid: uid,
    });
    const other = recs().find((r) => r.message === "not in the API")!;
    expect(other.pod_ip).toBeUndefined();
    expect(other.ikontainer_CUID).toMatch(/^[0-9a-f-]{36}$/);
    expect(other.ikontainer_CUID).not.toBe(first.ikontainer_CUID);
    await until(() => watchers.size >= 1);
    setPod(uid, "web-1", "10.2.0.7", { app: "web", tier: "back" });
    // The watch event reaches the agent at some point: probe lines, one at a time, until one carries the new
    // label; every probe must come out (a stall fails), and once a line has the new label all later ones do.
    const tiers: unknown[] = [];
    for (let n = 1; tiers.at(-1) !== "back"; n++) {
      if (n > 100) throw new Error(`label change not applied after 100 lines: ${tiers.join(",")}`);
      writeFileSync(file, `2024-05-01T10:00:01.${String(n).padStart(9, "0")}Z stdout F probe ${n}\n`, {
        flag: "a",
      });
      await waitForCount(() => recs().length, 2 + n, { what: `probe line ${n}` });
      const probe = recs().find((r) => r.message === `probe ${n}`)!;
      expect(probe.ikontainer_CUID).toBe(first.ikontainer_CUID);
      tiers.push(probe["labels.tier"]);
    }
    const flipped = tiers.indexOf("back");
    expect(tiers.slice(0, flipped).every((t) => t === "front")).toBe(true);
    writeFileSync(file, "2024-05-01T10:00:02.000000001Z stdout F second\n", { flag: "a" });
    await waitForCount(() => recs().length, 3 + tiers.length, { what: "the line after the change" });
    const second = recs().find((r) => r.message === "second")!;
    expect(second["labels.tier"]).toBe("back");
    expect(second.ikontainer_CUID).toBe(first.ikontainer_CUID);
    expect((await stopAgent(agent)).code).toBe(0);
    // the ledger learns the pod IP too, so `whois <ip>` finds node-mode instances
    const ledger = readLedger(join(root, "state"));
    expect(ledger.find((e) => e.cuid === first.ikontainer_CUID)?.pod_ip).toBe("10.2.0.7");
    expect(ledger.find((e) => e.cuid === other.ikontainer_CUID)?.pod_ip).toBeUndefined();
  });
});
