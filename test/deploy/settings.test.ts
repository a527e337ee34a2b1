import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { envName, type SettingDef } from "../../src/config/settings.js";
import { CLI, killStartedAgents, startCli, stopAgent } from "../helpers/agent.js";
import {
  agentContainers,
  buildSets,
  type ContainerLike,
  expectedAgentContainers,
  type K8sDoc,
  REPO,
} from "./render.js";

/**
 * Every flag and environment variable the manifests give the agent is one it reads: flags are checked
 * against `ikontainer <command> --help`, environment variables against the settings tables in
 * src/config/*.ts (IKONTAINER_<SETTING>), the help text, and the Downward-API / secret variables the
 * sources read by name (env.POD_NAME, env.IKONTAINER_ES_API_KEY, …).
 */
const sets = new Map<string, K8sDoc[]>();
const helpFlags = new Map<string, Set<string>>();
const knownEnv = new Set<string>();
let dir: string;

function help(cmd: string): string {
  return execFileSync(process.execPath, [CLI, cmd, "--help"], { encoding: "utf8" });
}

function sourceFiles(d: string): string[] {
  return readdirSync(d, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(d, e.name)) : e.name.endsWith(".ts") ? [join(d, e.name)] : [],
  );
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ikon-settings-"));
  for (const [k, v] of buildSets(dir)) sets.set(k, v);
  for (const cmd of ["run", "exec"]) {
    const text = help(cmd);
    helpFlags.set(cmd, new Set(text.match(/--[a-z][a-z0-9-]*/g) ?? []));
    for (const m of text.matchAll(/\[env\s+([A-Z0-9_]+)\]/g)) knownEnv.add(m[1]!);
  }
  // The settings tables: every exported SettingDef[] in src/config/*.ts.
  const configDir = join(REPO, "src/config");
  for (const f of readdirSync(configDir).filter((x) => x.endsWith(".ts"))) {
    const mod = (await import(join(configDir, f))) as Record<string, unknown>;
    for (const v of Object.values(mod))
      if (Array.isArray(v) && v.every((d) => d && typeof d === "object" && "key" in d && "kind" in d))
        for (const d of v as SettingDef[]) knownEnv.add(envName(d.key));
  }
  // Variables read by name in the sources (Downward API, secrets from the environment, in-cluster API).
  for (const f of sourceFiles(join(REPO, "src")))
    for (const m of readFileSync(f, "utf8").matchAll(
      /env(?:\.([A-Z][A-Z0-9_]*)|\[["']([A-Z][A-Z0-9_]*)["']\])/g,
    ))
      knownEnv.add((m[1] ?? m[2])!);
}, 600_000);

afterEach(killStartedAgents); // an agent a failed test left running, by PID
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Flags and env vars of one agent container that the agent does not read. */
function unknownSettings(c: ContainerLike): string[] {
  const args = c.args ?? [];
  const cmd = args[0]!;
  const flags = helpFlags.get(cmd);
  if (!flags) return [`unknown command ${cmd}`];
  const out: string[] = [];
  const end = args.indexOf("--");
  for (const a of end < 0 ? args : args.slice(0, end))
    if (a.startsWith("--")) {
      const name = a.split("=")[0]!;
      if (!flags.has(name)) out.push(`flag ${name}`);
    }
  for (const e of c.env ?? []) if (!knownEnv.has(e.name)) out.push(`env ${e.name}`);
  return out;
}

describe("flags and environment variables in deploy/", () => {
  it("are all read by the agent", () => {
    const problems: string[] = [];
    let containers = 0;
    for (const [set, docs] of sets)
      for (const d of docs)
        for (const c of agentContainers(d)) {
          containers++;
          for (const u of unknownSettings(c)) problems.push(`${set} ${d.metadata.name}/${c.name}: ${u}`);
        }
    expect(problems).toEqual([]);
    expect(containers).toBe(expectedAgentContainers());
  });

  it("the check finds a flag or variable the agent does not read", () => {
    const c: ContainerLike = {
      name: "x",
      image: "ikontainer",
      args: ["run", "--mode", "node", "--pod-logs", "/var/log/pods", "--", "--not-checked-after-dashdash"],
      env: [{ name: "NODE_NAME" }, { name: "IKONTAINER_POD_LOGS" }, { name: "IKONTAINER_ES_API_KEY" }],
    };
    expect(unknownSettings(c)).toEqual(["flag --pod-logs", "env IKONTAINER_POD_LOGS"]);
  });

  it("the agent starts with the DaemonSet's exact arguments and environment", async () => {
    const ds = sets.get("chart:defaults")!.find((d) => d.kind === "DaemonSet")!;
    const c = agentContainers(ds)[0]!;
    const root = join(dir, "node");
    const paths: Record<string, string> = {
      "/var/log/pods": join(root, "pods"),
      "/var/lib/ikontainer": join(root, "state"),
    };
    for (const p of Object.values(paths)) mkdirSync(p, { recursive: true });
    const uid = "0b6e3f2a-1111-2222-3333-444455556666";
    mkdirSync(join(paths["/var/log/pods"]!, `shop_web-1_${uid}`, "app"), { recursive: true });
    writeFileSync(
      join(paths["/var/log/pods"]!, `shop_web-1_${uid}`, "app", "0.log"),
      "2024-05-01T10:00:00.000000001Z stdout F hello\n",
    );
    // Only host paths and the port change (they are the node's folders and a free port here);
    // the outputs point to a fluentd that does not exist, which the agent must survive.
    const args = c.args!.map((a) => paths[a] ?? (a === "9464" ? "0" : a));
    expect(args).toContain("--kube-enrich");
    const env: Record<string, string> = {
      ...process.env,
      NODE_NAME: "node-a",
      POD_NAMESPACE: "logging",
      KUBERNETES_SERVICE_HOST: "127.0.0.1",
      KUBERNETES_SERVICE_PORT: "1",
      IKONTAINER_KUBE_CA_FILE: "",
      IKONTAINER_KUBE_TOKEN_FILE: "",
    };
    for (const e of c.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
    const agent = startCli([...args, "--kube-ca-file", "", "--kube-token-file", ""], { env });
    try {
      await agent.waitForLog("tailing", 20_000);
      const started = await agent.waitForLog("agent started");
      expect(started.outputs).toEqual(["fluentd://fluentd.logging.svc.cluster.local:24224"]);
      // No pause before the SIGTERM: run.ts holds signals from its first line and acts on them once started.
      await agent.waitForLog("new container instance");
    } finally {
      const { code, signal } = await stopAgent(agent);
      expect({ code, signal, stderr: code === 0 ? "" : agent.stderr() }).toEqual({
        code: 0,
        signal: null,
        stderr: "",
      });
    }
    const state = readFileSync(join(paths["/var/lib/ikontainer"]!, "node-cuids.jsonl"), "utf8");
    expect(JSON.parse(state.trim())).toMatchObject({
      pod_uid: uid,
      container: "app",
      restart: 0,
      namespace: "shop",
    });
  });
});
