import { execFile } from "node:child_process";
import { randomInt, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { es, sharedElasticsearch } from "../fixtures/elasticsearch.js";

const run = promisify(execFile);
const MAIN = new URL("../../dist/cli/main.js", import.meta.url).pathname;
let url: string;
let dir: string;
beforeAll(async () => {
  url = await sharedElasticsearch();
  dir = mkdtempSync(join(tmpdir(), "ikon-es-e2e-"));
}, 310_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("ikontainer exec --output elasticsearch:URL stores the child's lines and its ledger row; the queries find them", async () => {
  const prefix = `t-${randomUUID().slice(0, 8)}-e2e`;
  const ip = `10.${randomInt(1, 255)}.${randomInt(1, 255)}.${randomInt(1, 255)}`;
  const req = randomUUID();
  const state = join(dir, "state");
  await run(
    process.execPath,
    [
      MAIN,
      "exec",
      "--svc",
      "pay.shop.cluster.local",
      "--state-dir",
      state,
      "--output",
      `elasticsearch:${url}`,
      "--es-index-prefix",
      prefix,
      "--log-level",
      "warn",
      "--",
      "sh",
      "-c",
      `echo "charge x-request-id=${req}"; echo '{"msg":"done","request_id":"${req}"}'; echo unrelated`,
    ],
    { env: { ...process.env, POD_IP: ip, POD_NAME: "pay-0", POD_NAMESPACE: "shop" } },
  );
  const cuid = (JSON.parse(readFileSync(join(state, "cuid.json"), "utf8")) as { cuid: string }).cuid;
  await es(url, "POST", `/${prefix}-*/_refresh`);
  const common = ["--es", url, "--es-index-prefix", prefix, "--json"];

  const logs = await run(process.execPath, [MAIN, "logs", "--cuid", cuid, ...common]);
  const recs = logs.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(recs.map((r) => [r.message, r.request_id, r.pod_ip, r.pod])).toEqual([
    [`charge x-request-id=${req}`, req, ip, "pay-0"],
    ["done", req, ip, "pay-0"],
    ["unrelated", undefined, ip, "pay-0"],
  ]);
  const trace = JSON.parse((await run(process.execPath, [MAIN, "trace", req, ...common])).stdout);
  expect(trace.hops).toHaveLength(1);
  expect(trace.hops[0]).toMatchObject({ cuid, svc: "pay.shop.cluster.local", pod_ip: ip });
  // the ledger row was copied at the clean stop, with stopped_at
  const who = JSON.parse((await run(process.execPath, [MAIN, "whois", ip, ...common])).stdout);
  expect(who).toHaveLength(1);
  expect(who[0]).toMatchObject({
    cuid,
    svc: "pay.shop.cluster.local",
    pod: "pay-0",
    namespace: "shop",
    pod_ip: ip,
  });
  expect(Date.parse(who[0].stopped_at)).toBeGreaterThan(Date.parse(who[0].started_at));
  // and the same answer from the local ledger
  const local = JSON.parse(
    (await run(process.execPath, [MAIN, "whois", ip, "--state-dir", state, "--json"])).stdout,
  );
  expect(local).toEqual(who);
}, 180_000);
