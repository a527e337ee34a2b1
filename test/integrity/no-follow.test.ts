import {
  appendFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
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
 * Where the agent writes, it follows no symlink (issue 11 item 5): a link planted in an output folder or the
 * state dir never makes it write, create or truncate a file elsewhere; and what it creates has fixed modes
 * whatever the umask (state 0700/0600, outputs 0750/0640).
 */
const dirs: string[] = [];
const agents: AgentProcess[] = [];
afterAll(() => stopAndRemove(agents, dirs));

function setup() {
  const root = tempDir("ikon-nofollow-");
  dirs.push(root);
  const w = join(root, "w");
  const out = join(root, "out");
  const elsewhere = join(root, "elsewhere");
  mkdirSync(w);
  mkdirSync(out);
  mkdirSync(elsewhere);
  return { root, w, out, elsewhere, state: join(root, "state") };
}

const mode = (p: string) => (lstatSync(p).mode & 0o777).toString(8);

describe("no symlink is followed where the agent writes", () => {
  it("file sink: links at an output file and an output subfolder are refused; their targets stay untouched", async () => {
    const { w, out, elsewhere, state } = setup();
    const victim = join(elsewhere, "victim.txt");
    writeFileSync(victim, "ORIGINAL\n");
    const victimDir = join(elsewhere, "dir");
    mkdirSync(victimDir);
    symlinkSync(victim, join(out, "app.log"));
    symlinkSync(victimDir, join(out, "sub"));
    mkdirSync(join(w, "sub"));
    writeFileSync(join(w, "app.log"), "a1\na2\n");
    writeFileSync(join(w, "sub", "x.log"), "x1\n");
    writeFileSync(join(w, "other.log"), "o1\no2\n");
    const a = startCli(fileRunArgs(w, out, state, "web"));
    agents.push(a);
    // Other streams keep flowing.
    await until(
      () =>
        existsSync(join(out, "other.log")) &&
        readFileSync(join(out, "other.log"), "latin1").split("\n").length >= 3,
    );
    await until(
      () => /symbolic link/.test(a.stderr()) && /sub/.test(a.stderr()) && /app\.log/.test(a.stderr()),
    );
    await stopAgent(a);
    expect(a.stderr()).toMatch(/IKON_ERR_SYMLINK_REFUSED/);
    expect(readFileSync(victim, "utf8")).toBe("ORIGINAL\n");
    expect(readdirSync(victimDir)).toEqual([]);
    expect(lstatSync(join(out, "app.log")).isSymbolicLink()).toBe(true);
  });

  it("state dir: a link at checkpoints.json.tmp is replaced, not written through", async () => {
    const { w, out, elsewhere, state } = setup();
    mkdirSync(state);
    const victim = join(elsewhere, "victim.json");
    writeFileSync(victim, "ORIGINAL\n");
    symlinkSync(victim, join(state, "checkpoints.json.tmp"));
    writeFileSync(join(w, "app.log"), "a1\n");
    const a = startCli(fileRunArgs(w, out, state, "web"));
    agents.push(a);
    await a.waitForLog("tailing");
    await until(() => existsSync(join(out, "app.log")));
    await stopAgent(a);
    expect(readFileSync(victim, "utf8")).toBe("ORIGINAL\n");
    expect(JSON.parse(readFileSync(join(state, "checkpoints.json"), "utf8")).version).toBe(1);
  });

  it("state dir: a link at ledger.jsonl or cuid.json stops the agent with a clear error, target untouched", async () => {
    for (const name of ["ledger.jsonl", "cuid.json"]) {
      const { elsewhere, state } = setup();
      mkdirSync(state);
      const victim = join(elsewhere, "victim");
      writeFileSync(victim, "ORIGINAL\n");
      symlinkSync(victim, join(state, name));
      const r = await runCli(["exec", "--svc", "web", "--state-dir", state, "--", "true"]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/IKON_ERR_SYMLINK_REFUSED/);
      expect(r.stderr).toContain(name);
      expect(readFileSync(victim, "utf8")).toBe("ORIGINAL\n");
    }
  });

  it("modes are fixed under umask 000: state 0700/0600, outputs 0750/0640", async () => {
    const { w, out, state } = setup();
    const out2 = join(out, "new");
    mkdirSync(join(w, "sub"));
    writeFileSync(join(w, "sub", "x.log"), "x1\n");
    const a = startCli(
      [
        "run",
        "--watch",
        w,
        "--output",
        `file:${out2}`,
        "--output",
        `store:${join(state, "store")}`,
        "--state-dir",
        state,
        "--svc",
        "web",
      ],
      { prefix: ["sh", "-c", 'umask 000; exec "$@"', "sh"] },
    );
    agents.push(a);
    await until(
      () => existsSync(join(out2, "sub", "x.log")) && statSync(join(out2, "sub", "x.log")).size > 0,
    );
    await until(() => existsSync(join(state, "checkpoints.json")));
    await stopAgent(a);
    expect(mode(state)).toBe("700");
    for (const f of ["cuid.json", "checkpoints.json", "ledger.jsonl"])
      expect([f, mode(join(state, f))]).toEqual([f, "600"]);
    expect(mode(out2)).toBe("750");
    expect(mode(join(out2, "sub"))).toBe("750");
    expect(mode(join(out2, "sub", "x.log"))).toBe("640");
    expect(mode(join(state, "store"))).toBe("750");
    expect(mode(join(state, "store", "sub", "x.log"))).toBe("640");
  });

  it("node mode state file node-cuids.jsonl is 0600 under umask 000", async () => {
    const { root, state } = setup();
    const pods = join(root, "pods");
    const dir = join(pods, "shop_web-0_0a0b0c0d-1e1f-4a4b-8c8d-9e9fa0a1a2a3", "app");
    mkdirSync(dir, { recursive: true });
    appendFileSync(join(dir, "0.log"), "2024-05-01T10:00:00.000000001Z stdout F hi\n");
    const a = startCli(nodeRunArgs(pods, state, `file:${join(root, "o")}`), {
      prefix: ["sh", "-c", 'umask 000; exec "$@"', "sh"],
    });
    agents.push(a);
    await a.waitForLog("tailing");
    await stopAgent(a);
    expect(mode(join(state, "node-cuids.jsonl"))).toBe("600");
  });
});
