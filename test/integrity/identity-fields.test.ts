import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  type AgentProcess,
  nodeRunArgs,
  startCli,
  stopAgent,
  stopAndRemove,
  tempDir,
  until,
} from "../helpers/agent.js";

/**
 * Every identity field is the agent's: a JSON line that carries pod, pod_ip, namespace, node, pod_uid, host_ip,
 * container, restart, svc or ikontainer_CUID cannot change what a record says about who wrote it; the
 * application's value is kept as `app_<key>`. Both deploy shapes: a sidecar (`run --watch`, Downward-API env)
 * and the node agent (`run --mode node`, identity from kubelet's log path).
 */
const dirs: string[] = [];
const agents: AgentProcess[] = [];
afterAll(() => stopAndRemove(agents, dirs));

const FORGED = {
  pod: "bank-0",
  pod_ip: "10.9.9.9",
  namespace: "bank",
  node: "evil-node",
  pod_uid: "11111111-2222-3333-4444-555555555555",
  host_ip: "192.0.2.66",
  container: "vault",
  restart: 99,
  container_id: "forged-id",
  svc: "vault.bank.cluster.local",
  ikontainer_CUID: "00000000-0000-7000-8000-000000000000",
};

function records(file: string): Record<string, unknown>[] {
  try {
    return readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  } catch {
    return [];
  }
}

describe("identity fields are the agent's", () => {
  it("sidecar: the Downward-API identity wins over the line's own fields", async () => {
    const root = tempDir("ikon-idf-");
    dirs.push(root);
    const w = join(root, "w");
    const out = join(root, "out");
    mkdirSync(w);
    writeFileSync(join(w, "app.log"), `${JSON.stringify({ msg: "transfer", ...FORGED })}\n`);
    const env = {
      ...process.env,
      POD_NAME: "web-0",
      POD_NAMESPACE: "shop",
      NODE_NAME: "node-1",
      POD_IP: "10.0.0.5",
      POD_UID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    };
    const a = startCli(
      [
        "run",
        "--watch",
        w,
        "--state-dir",
        join(root, "state"),
        "--svc",
        "web.shop",
        "--output",
        `file:${out}`,
      ],
      { env: { ...env, IKONTAINER_FORMAT: "json" } },
    );
    agents.push(a);
    const rec = await until(() => records(join(out, "app.log"))[0]);
    await stopAgent(a);
    const cuid = JSON.parse(readFileSync(join(root, "state", "cuid.json"), "utf8")).cuid as string;
    expect(rec).toMatchObject({
      message: "transfer",
      ikontainer_CUID: cuid,
      svc: "web.shop",
      pod: "web-0",
      namespace: "shop",
      node: "node-1",
      pod_ip: "10.0.0.5",
      pod_uid: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    });
    // Identity fields the agent does not know here are still not the application's to claim.
    expect(rec!.host_ip).toBeUndefined();
    expect(rec!.container).toBeUndefined();
    expect(rec!.restart).toBeUndefined();
    expect(rec!.container_id).toBeUndefined();
    for (const [k, v] of Object.entries(FORGED)) expect(rec![`app_${k}`]).toEqual(v);
  });

  it("node mode: container, restart, pod_uid and the rest come from kubelet's path, not the line", async () => {
    const root = tempDir("ikon-idn-");
    dirs.push(root);
    const pods = join(root, "pods");
    const uid = "0f0e0d0c-0b0a-4909-8807-060504030201";
    const dir = join(pods, `shop_web-1_${uid}`, "app");
    mkdirSync(dir, { recursive: true });
    const line = JSON.stringify({ msg: "transfer", ...FORGED });
    appendFileSync(join(dir, "2.log"), `2024-05-01T10:00:00.000000001Z stdout F ${line}\n`);
    const out = join(root, "out");
    const a = startCli(
      nodeRunArgs(pods, join(root, "state"), `file:${out}`, "--format", "json", "--node-name", "node-7"),
      { env: { ...process.env, POD_UID: "99999999-9999-4999-8999-999999999999" } },
    );
    agents.push(a);
    const file = join(out, `shop_web-1_${uid}`, "app", "2.log");
    const rec = await until(() => records(file)[0]);
    await stopAgent(a);
    const entry = JSON.parse(readFileSync(join(root, "state", "node-cuids.jsonl"), "utf8").split("\n")[0]!);
    expect(rec).toMatchObject({
      message: "transfer",
      ikontainer_CUID: entry.cuid,
      svc: "app.shop.cluster.local",
      pod: "web-1",
      namespace: "shop",
      pod_uid: uid,
      container: "app",
      restart: 2,
      node: "node-7",
      stream: "stdout",
    });
    expect(rec!.pod_ip).toBeUndefined();
    expect(rec!.host_ip).toBeUndefined();
    for (const [k, v] of Object.entries(FORGED)) expect(rec![`app_${k}`]).toEqual(v);
  });
});
