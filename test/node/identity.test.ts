import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../../src/config/node.js";
import { silentLogger } from "../../src/observe/logger.js";
import { ContainerCuidStore } from "../../src/sources/node/cuids.js";
import { NodeMode } from "../../src/sources/node/node-mode.js";
import { instanceKey, parseDockerLogPath, parsePodLogPath } from "../../src/sources/node/paths.js";
import { CuidLedger, readLedger } from "../../src/store/ledger.js";

const UID = "0b6e3f2a-1111-2222-3333-444455556666";
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "ikon-node-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("container log paths", () => {
  it("parses kubelet's /var/log/pods layout", () => {
    expect(parsePodLogPath(`kube-system_coredns-5d78c9869d-abcde_${UID}/coredns/3.log`)).toEqual({
      kind: "pod",
      namespace: "kube-system",
      pod: "coredns-5d78c9869d-abcde",
      podUid: UID,
      container: "coredns",
      restart: 3,
    });
    // dots are allowed in pod names (DNS subdomains), not in namespaces
    expect(parsePodLogPath(`ns_web.v2_${UID}/app/0.log`)?.pod).toBe("web.v2");
    for (const bad of [
      `ns_web_${UID}/app/0.log.20240501-100000`, // rotated copy
      `ns_web_${UID}/app/0.log.gz`,
      `ns_web_${UID}/app/x.log`,
      `ns_web_${UID}/0.log`,
      `ns_web/app/0.log`,
      `Ns_web_${UID}/app/0.log`,
      `ns_web_${UID}/app/sub/0.log`,
    ])
      expect(parsePodLogPath(bad), bad).toBeUndefined();
  });

  it("parses Docker's json-file layout", () => {
    const id = "a".repeat(64);
    expect(parseDockerLogPath(`${id}/${id}-json.log`)).toEqual({ kind: "docker", containerId: id });
    expect(parseDockerLogPath(`${id}/${"b".repeat(64)}-json.log`)).toBeUndefined();
    expect(parseDockerLogPath(`${id}/${id}-json.log.1`)).toBeUndefined();
  });
});

describe("per-container-instance CUIDs", () => {
  const p = (restart: number, container = "app", uid = UID) => ({
    kind: "pod" as const,
    namespace: "ns",
    pod: "web",
    podUid: uid,
    container,
    restart,
  });

  it("makes one CUID per pod UID + container + restart, keeps it across reopen, gives a restart a new one", () => {
    const state = tmp();
    const s1 = new ContainerCuidStore(state, 7);
    const a = s1.cuidFor(p(0));
    expect(a.created).toBe(true);
    expect(s1.cuidFor(p(0))).toEqual({ entry: a.entry, created: false });
    const restarted = s1.cuidFor(p(1));
    const sidecar = s1.cuidFor(p(0, "sidecar"));
    const recreated = s1.cuidFor(p(0, "app", "99999999-1111-2222-3333-444455556666")); // same name, new pod
    const all = [a, restarted, sidecar, recreated].map((x) => x.entry.cuid);
    expect(new Set(all).size).toBe(4);
    expect(a.entry).toMatchObject({
      namespace: "ns",
      pod: "web",
      pod_uid: UID,
      container: "app",
      restart: 0,
    });
    s1.close();

    const s2 = new ContainerCuidStore(state, 7);
    expect(s2.cuidFor(p(0)).entry.cuid).toBe(a.entry.cuid);
    expect(s2.cuidFor(p(1)).entry.cuid).toBe(restarted.entry.cuid);
    s2.forget(instanceKey(p(0, "sidecar")));
    s2.close();

    // forgotten entries are compacted away on the next open; the file stays one JSON object per line
    const s3 = new ContainerCuidStore(state, 4);
    expect(s3.size).toBe(3);
    s3.close();
    const lines = readFileSync(join(state, "node-cuids.jsonl"), "utf8").trim().split("\n");
    expect(lines).toHaveLength(3);
    for (const l of lines) expect(JSON.parse(l).forgotten_at).toBeUndefined();
  });

  it("rewrites the file while running when most of it is forgotten (pod churn)", () => {
    const state = tmp();
    const s1 = new ContainerCuidStore(state, 7);
    const made = new Map<string, string>();
    for (let i = 0; i < 1200; i++) {
      const uid = `${String(i).padStart(8, "0")}-1111-2222-3333-444455556666`;
      made.set(instanceKey(p(0, "app", uid)), s1.cuidFor(p(0, "app", uid)).entry.cuid);
    }
    const keys = [...made.keys()];
    for (const k of keys.slice(50)) s1.forget(k);
    const lines = readFileSync(join(state, "node-cuids.jsonl"), "utf8").trim().split("\n").length;
    expect(lines).toBeLessThan(1000); // 2,350 without the rewrite
    s1.close();
    const s2 = new ContainerCuidStore(state, 7);
    expect(s2.size).toBe(50);
    for (const k of keys.slice(0, 50)) expect(s2.get(k)?.cuid).toBe(made.get(k));
    for (const k of keys.slice(50)) expect(s2.get(k)).toBeUndefined();
    s2.close();
  });

  it("survives a torn last line (crash mid-append)", () => {
    const state = tmp();
    const s1 = new ContainerCuidStore(state, 7);
    const a = s1.cuidFor(p(0)).entry.cuid;
    s1.close();
    writeFileSync(
      join(state, "node-cuids.jsonl"),
      `${readFileSync(join(state, "node-cuids.jsonl"), "utf8")}{"key":"po`,
    );
    const s2 = new ContainerCuidStore(state, 7);
    expect(s2.cuidFor(p(0)).entry.cuid).toBe(a);
    expect(s2.size).toBe(1);
    s2.close();
  });
});

describe("NodeMode stream identity", () => {
  it("gives each file its container's CUID, svc and fields, and forgets deleted pods after --forget-after", () => {
    const root = tmp();
    const logs = join(root, "pods");
    const dir = join(logs, `shop_web-1_${UID}`, "web");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "0.log"), "");
    const node = loadNodeConfig(
      { mode: "node", podLogDir: logs, nodeName: "node-a", forgetAfter: "1s", clusterDomain: "example.org" },
      {},
    );
    const nm = new NodeMode({
      node,
      stateDir: join(root, "state"),
      cuidVersion: 7,
      maxLineBytes: 1 << 20,
      log: silentLogger,
    });
    const rel = `shop_web-1_${UID}/web/0.log`;
    const s = nm.streamFor({ key: `file:0:${rel}`, path: join(logs, rel), relPath: rel, channel: "file" });
    expect(s.svc).toBe("web.shop.example.org");
    expect(s.fields).toEqual({
      namespace: "shop",
      pod: "web-1",
      pod_uid: UID,
      container: "web",
      restart: 0,
      node: "node-a",
    });
    expect(s.cuid).toBe(nm.cuids.get(`pod/${UID}/web/0`)?.cuid);
    expect(nm.decoderFor(s)?.constructor.name).toBe("CriDecoder");
    // a file that is not a container log keeps the agent's identity and is not decoded
    const other = {
      key: "file:0:README.log",
      path: join(logs, "README.log"),
      relPath: "README.log",
      channel: "file" as const,
    };
    expect(nm.streamFor(other)).toBe(other);
    expect(nm.decoderFor(other)).toBeUndefined();

    const t0 = Date.now();
    expect(nm.sweep(t0)).toBe(0);
    rmSync(join(logs, `shop_web-1_${UID}`), { recursive: true });
    expect(nm.sweep(t0)).toBe(0); // gone, but not for long enough
    expect(nm.sweep(t0 + 1000)).toBe(1);
    expect(nm.cuids.size).toBe(0);
    void nm.stop();
  });
});

describe("NodeMode and the CUID ledger", () => {
  it("records each container instance's start with its pod fields, and its stop at restart or deletion", async () => {
    const root = tmp();
    const logs = join(root, "pods");
    const state = join(root, "state");
    const dir = join(logs, `shop_web-1_${UID}`, "app");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "0.log"), "");
    const node = loadNodeConfig({ mode: "node", podLogDir: logs, nodeName: "node-a", forgetAfter: "1h" }, {});
    const ledger = new CuidLedger(state);
    const nm = new NodeMode({
      node,
      stateDir: state,
      cuidVersion: 7,
      maxLineBytes: 1 << 20,
      log: silentLogger,
      ledger,
    });
    await nm.start(); // the log already on the node gets its CUID (and ledger start) here
    const first = nm.cuids.get(`pod/${UID}/app/0`)!.cuid;
    expect(readLedger(state)).toEqual([
      expect.objectContaining({
        cuid: first,
        svc: "app.shop.cluster.local",
        namespace: "shop",
        pod: "web-1",
        pod_uid: UID,
        container: "app",
        restart: 0,
        node: "node-a",
      }),
    ]);
    expect(readLedger(state)[0]!.stopped_at).toBeUndefined();
    // the container restarts: 1.log appears, the old instance is stopped
    writeFileSync(join(dir, "1.log"), "");
    const rel = `shop_web-1_${UID}/app/1.log`;
    const s1 = nm.streamFor({ key: `file:0:${rel}`, path: join(logs, rel), relPath: rel, channel: "file" });
    let entries = readLedger(state);
    expect(
      entries.map((e) => [e.cuid, (e as unknown as { restart: number }).restart, e.stopped_at !== undefined]),
    ).toEqual([
      [first, 0, true],
      [s1.cuid, 1, false],
    ]);
    // kubelet rotation renames 1.log before the runtime reopens it: that gap is not a stop
    renameSync(join(dir, "1.log"), join(dir, "1.log.20261204-101500"));
    nm.sweep();
    expect(readLedger(state).find((e) => e.cuid === s1.cuid)?.stopped_at).toBeUndefined();
    // the pod is deleted: its log is gone at the next sweep
    rmSync(join(logs, `shop_web-1_${UID}`), { recursive: true });
    nm.sweep();
    entries = readLedger(state);
    expect(entries.every((e) => e.stopped_at !== undefined)).toBe(true);
    await nm.stop();
    await ledger.close();
  });
});
