import { appendFileSync, mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readLedger } from "../../src/store/ledger.js";
import {
  type AgentProcess,
  fileRunArgs,
  nodeRunArgs,
  runCli,
  startCli,
  stopAgent,
  stopAndRemove,
  tempDir,
  until,
} from "../helpers/agent.js";

/**
 * Damaged state never changes identities silently (issue 11 item 8), and an output file cut short by someone
 * else is reported (issue 11 item 9, file sink).
 */
const dirs: string[] = [];
const agents: AgentProcess[] = [];
afterAll(() => stopAndRemove(agents, dirs));

const UIDS = ["0a0b0c0d-1e1f-4a4b-8c8d-9e9fa0a1a2a3", "1a0b0c0d-1e1f-4a4b-8c8d-9e9fa0a1a2a3"];
let clock = 0;
const ts = () => `2024-05-01T10:00:00.${String(++clock).padStart(9, "0")}Z`;

function nodeSetup() {
  const root = tempDir("ikon-damage-");
  dirs.push(root);
  const pods = join(root, "pods");
  const logs = UIDS.map((u, i) => {
    const d = join(pods, `shop_web-${i}_${u}`, "app");
    mkdirSync(d, { recursive: true });
    return join(d, "0.log");
  });
  return { root, pods, logs, state: join(root, "state"), out: join(root, "out") };
}

const write = (log: string, text: string) => appendFileSync(log, `${ts()} stdout F ${text}\n`);

function outRecords(out: string, i: number): Array<Record<string, unknown>> {
  try {
    return readFileSync(join(out, `shop_web-${i}_${UIDS[i]}`, "app", "0.log"), "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  } catch {
    return [];
  }
}

function nodeAgent(s: ReturnType<typeof nodeSetup>): AgentProcess {
  const a = startCli(nodeRunArgs(s.pods, s.state, `file:${s.out}`, "--format", "json"));
  agents.push(a);
  return a;
}

async function firstRun(s: ReturnType<typeof nodeSetup>): Promise<string[]> {
  write(s.logs[0]!, "before 0");
  write(s.logs[1]!, "before 1");
  const a = nodeAgent(s);
  await until(() => outRecords(s.out, 0).length === 1 && outRecords(s.out, 1).length === 1);
  await stopAgent(a);
  return [0, 1].map((i) => outRecords(s.out, i)[0]!.ikontainer_CUID as string);
}

describe("damaged node-cuids.jsonl never gives a running container a new CUID", () => {
  it("a file cut in the middle of a line: the lost CUID is recovered from the ledger, with a logged reason", async () => {
    const s = nodeSetup();
    const cuids = await firstRun(s);
    const file = join(s.state, "node-cuids.jsonl");
    const text = readFileSync(file, "utf8");
    truncateSync(file, text.indexOf("\n") + 20); // the second entry is half gone
    write(s.logs[0]!, "after 0");
    write(s.logs[1]!, "after 1");
    const a = nodeAgent(s);
    await until(() => outRecords(s.out, 0).length === 2 && outRecords(s.out, 1).length === 2);
    await stopAgent(a);
    expect(outRecords(s.out, 0).map((r) => r.ikontainer_CUID)).toEqual([cuids[0], cuids[0]]);
    expect(outRecords(s.out, 1).map((r) => r.ikontainer_CUID)).toEqual([cuids[1], cuids[1]]);
    expect(a.stderr()).toMatch(/node-cuids\.jsonl/);
    expect(a.stderr()).toMatch(/recovered from the ledger/);
  });

  it("garbage in the file and no ledger to repair from: refuses to start, naming the file and what to do", async () => {
    const s = nodeSetup();
    await firstRun(s);
    const file = join(s.state, "node-cuids.jsonl");
    const lines = readFileSync(file, "utf8").split("\n");
    writeFileSync(file, `${lines[0]}\n\u0000\u0000garbage\u0000\n`);
    rmSync(join(s.state, "ledger.jsonl"));
    write(s.logs[1]!, "after 1");
    const r = await runCli(nodeRunArgs(s.pods, s.state, `file:${s.out}`, "--format", "json"));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/IKON_ERR_STATE_DAMAGED/);
    expect(r.stderr).toMatch(/node-cuids\.jsonl/);
    expect(r.stderr).toContain(UIDS[1]);
    // Nothing was stamped with a new identity.
    expect(outRecords(s.out, 1)).toHaveLength(1);
  });
});

describe("ledger.jsonl with an unfinished last line", () => {
  it("terminates it (logged) so the next start event is kept", async () => {
    const s = tempDir("ikon-ledger-");
    dirs.push(s);
    writeFileSync(join(s, "ledger.jsonl"), '{"event":"start","cuid":"0190', "utf8");
    const r = await runCli(["exec", "--svc", "web", "--state-dir", s, "--", "true"]);
    expect(r.code).toBe(0);
    const cuid = JSON.parse(readFileSync(join(s, "cuid.json"), "utf8")).cuid as string;
    const entry = readLedger(s).find((e) => e.cuid === cuid);
    expect(entry).toBeDefined();
    expect(entry!.svc).toBe("web");
    expect(entry!.stopped_at).toBeDefined();
    expect(r.stderr).toMatch(/unfinished last line/);
  });
});

function getMetrics(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    request({ host: "127.0.0.1", port, path: "/metrics" }, (res) => {
      let b = "";
      res.on("data", (d) => (b += d));
      res.on("end", () => resolve(b));
    })
      .on("error", reject)
      .end();
  });
}

describe("file sink: an output file cut short by someone else", () => {
  it("is reported (log with the file name, counted) and new lines are appended at its new end", async () => {
    const root = tempDir("ikon-cut-");
    dirs.push(root);
    const w = join(root, "w");
    const out = join(root, "out");
    mkdirSync(w);
    writeFileSync(join(w, "app.log"), "one\ntwo\n");
    const a = startCli(
      fileRunArgs(w, out, join(root, "state"), "web", "--metrics-port", "0", "--metrics-host", "127.0.0.1"),
    );
    agents.push(a);
    const { port } = (await a.waitForLog("serving /metrics, /healthz, /readyz")) as { port: number };
    const target = join(out, "app.log");
    await until(() => {
      try {
        return readFileSync(target, "latin1").split("\n").length === 3;
      } catch {
        return false;
      }
    });
    truncateSync(target, 0);
    appendFileSync(join(w, "app.log"), "three\n");
    const warn = await a.waitForLog("output file was cut short by someone else");
    expect(warn.path).toBe(target);
    await until(() => readFileSync(target, "latin1").includes("three"));
    const m = await getMetrics(port);
    await stopAgent(a);
    expect(m).toMatch(/ikontainer_errors_total\{kind="output_truncated"\} 1/);
    const text = readFileSync(target, "latin1");
    expect(text.startsWith("three{")).toBe(true); // no hole of NUL bytes where the cut lines were
    expect(text.split("\n").filter(Boolean)).toHaveLength(1);
  });
});
