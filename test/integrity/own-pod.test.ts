import { appendFileSync, mkdirSync } from "node:fs";
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
 * Node mode must never stamp its own output (issue 15 item 1). The test plays kubelet: everything the agent
 * prints on stdout and stderr is appended, CRI-framed, to its own pod's container log under the simulated
 * /var/log/pods, exactly as on a real node with `--output stdout`.
 */
const dirs: string[] = [];
const agents: AgentProcess[] = [];
afterAll(() => stopAndRemove(agents, dirs));

const OWN_UID = "5f1d2c3b-4a59-4687-9a0b-1c2d3e4f5a6b";
const APP_UID = "0a0b0c0d-1e1f-4a4b-8c8d-9e9fa0a1a2a3";
let clock = 0;
const ts = () => `2024-05-01T10:00:00.${String(++clock).padStart(9, "0")}Z`;

interface Node {
  pods: string;
  ownLog: string;
  appLog: string;
}

function makeNode(): Node {
  const root = tempDir("ikon-ownpod-");
  dirs.push(root);
  const pods = join(root, "pods");
  const ownDir = join(pods, `logging_ikontainer-x7k2p_${OWN_UID}`, "ikontainer");
  const appDir = join(pods, `shop_web-0_${APP_UID}`, "app");
  mkdirSync(ownDir, { recursive: true });
  mkdirSync(appDir, { recursive: true });
  const ownLog = join(ownDir, "0.log");
  const appLog = join(appDir, "0.log");
  appendFileSync(ownLog, "");
  appendFileSync(appLog, "");
  return { pods, ownLog, appLog };
}

/** kubelet's part: the agent's stdout and stderr, line by line, into its own container log. */
function startAgentAsKubelet(node: Node, extra: string[], env: NodeJS.ProcessEnv): AgentProcess {
  const a = startCli(
    nodeRunArgs(
      node.pods,
      join(node.pods, "..", "state"),
      "stdout",
      "--format",
      "json",
      "--poll-interval",
      "200ms",
      ...extra,
    ),
    { env: { ...process.env, ...env } },
  );
  for (const [stream, pipe] of [
    ["stdout", a.child.stdout!],
    ["stderr", a.child.stderr!],
  ] as const) {
    let rest = "";
    pipe.on("data", (d: Buffer) => {
      const parts = (rest + d.toString()).split("\n");
      rest = parts.pop()!;
      if (parts.length) appendFileSync(node.ownLog, parts.map((p) => `${ts()} ${stream} F ${p}\n`).join(""));
    });
  }
  agents.push(a);
  return a;
}

const records = (a: AgentProcess) =>
  a
    .stdout()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

async function writeAppLinesAndSettle(node: Node, a: AgentProcess): Promise<void> {
  appendFileSync(
    node.appLog,
    Array.from({ length: 30 }, (_, i) => `${ts()} stdout F {"msg":"app line ${i}","pod":"x"}\n`).join(""),
  );
  await until(() => records(a).filter((r) => String(r.message).startsWith("app line")).length >= 30);
  // A marker after the agent printed (and "kubelet" appended) those records: by the time it is out, a record
  // read back from the agent's own log would have been printed too.
  appendFileSync(node.appLog, `${ts()} stdout F marker\n`);
  await until(() => records(a).some((r) => r.message === "marker"));
  appendFileSync(node.appLog, `${ts()} stdout F marker2\n`);
  await until(() => records(a).some((r) => r.message === "marker2"));
}

function expectEachAppLineOnce(a: AgentProcess): void {
  const app = records(a).filter((r) => String(r.message).startsWith("app line"));
  expect(app.map((r) => r.message).sort()).toEqual(
    Array.from({ length: 30 }, (_, i) => `app line ${i}`).sort(),
  );
  for (const r of app) expect(r.pod).toBe("web-0");
}

describe("node mode and its own pod", () => {
  it("skips its own pod's logs by default (own pod from POD_UID) and says so", async () => {
    const node = makeNode();
    const a = startAgentAsKubelet(node, [], { POD_UID: OWN_UID });
    const notice = await a.waitForLog("not reading this agent's own pod logs");
    expect(notice.pod_uid).toBe(OWN_UID);
    await a.waitForLog("tailing");
    await writeAppLinesAndSettle(node, a);
    await stopAgent(a);
    expectEachAppLineOnce(a);
    const own = records(a).filter((r) => String(r.source).includes(OWN_UID));
    expect(own).toEqual([]);
  });

  it("--include-own-logs ships the agent's own stderr logs once and never its stdout records", async () => {
    const node = makeNode();
    const a = startAgentAsKubelet(node, ["--include-own-logs"], { POD_UID: OWN_UID });
    await a.waitForLog("tailing");
    await writeAppLinesAndSettle(node, a);
    await until(() => records(a).some((r) => String(r.source).includes(OWN_UID)));
    await stopAgent(a);
    expectEachAppLineOnce(a);
    const own = records(a).filter((r) => String(r.source).includes(OWN_UID));
    expect(own.length).toBeGreaterThan(0);
    for (const r of own) {
      expect(r.stream).toBe("stderr");
      expect(r.pod_uid).toBe(OWN_UID);
      expect(r.container).toBe("ikontainer");
    }
    // The agent's "tailing" log line was shipped exactly once.
    expect(own.filter((r) => r.message === "tailing")).toHaveLength(1);
  });
});
