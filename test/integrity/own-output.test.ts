import { type ChildProcess, spawn } from "node:child_process";
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  type AgentProcess,
  CLI,
  readStamped,
  readStampedSoFar,
  removeDir,
  runCli,
  startCli,
  stopAgent,
  TAG_RE,
  tempDir,
  until,
} from "../helpers/agent.js";

/**
 * The agent must never read its own output back (issue 11 item 2, issue 15 item 4): an output folder or the
 * state dir (local store) inside a watched folder is not read, stdout redirected into a watched file is not
 * read, and `exec --output stdout` (its stdout already carries the child's lines) is refused.
 */
const dirs: string[] = [];
const agents: AgentProcess[] = [];
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const a of agents) if (a.child.exitCode === null && a.child.signalCode === null) await stopAgent(a);
  for (const d of dirs) removeDir(d);
});

const lines = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => `line ${from + i} of the application\n`).join("");

describe("the agent never reads its own output", () => {
  it("run --watch /w --output file:/w/out --state-dir /w/state: output and store are not read back", async () => {
    const root = tempDir("ikon-own-");
    dirs.push(root);
    const w = join(root, "w");
    mkdirSync(w);
    writeFileSync(join(w, "app.log"), lines(0, 50));
    const a = startCli([
      "run",
      "--watch",
      w,
      "--output",
      `file:${join(w, "out")}`,
      "--output",
      `store:${join(w, "state", "store")}`,
      "--state-dir",
      join(w, "state"),
      "--svc",
      "web",
      "--poll-interval",
      "200ms",
    ]);
    agents.push(a);
    const notice = await a.waitForLog("not reading the agent's own output");
    expect(JSON.stringify(notice)).toContain(join(w, "out"));
    await until(() => existsSync(join(w, "out", "app.log")) && readStampedSoFar(join(w, "out")).length >= 50);
    // A marker written after everything else: once it is out, a loop would already have shown up.
    appendFileSync(join(w, "app.log"), "marker\n");
    await until(() => readFileSync(join(w, "out", "app.log"), "latin1").includes("marker{"));
    await stopAgent(a);
    expect(existsSync(join(w, "out", "out"))).toBe(false);
    expect(existsSync(join(w, "out", "state"))).toBe(false);
    expect(existsSync(join(w, "state", "store", "out"))).toBe(false);
    expect(existsSync(join(w, "state", "store", "state"))).toBe(false);
    const stamped = readStamped(join(w, "out"));
    expect(stamped.map((s) => s.text)).toEqual([...lines(0, 50).split("\n").slice(0, -1), "marker"]);
  });

  it("run --output stdout with stdout redirected into a watched file: that file is not read", async () => {
    const root = tempDir("ikon-own-");
    dirs.push(root);
    const w = join(root, "w");
    mkdirSync(w);
    writeFileSync(join(w, "app.log"), lines(0, 20));
    const stdoutFile = join(w, "agent-stdout.log");
    const fd = openSync(stdoutFile, "a");
    const child = spawn(
      process.execPath,
      [CLI, "run", "--watch", w, "--output", "stdout", "--state-dir", join(root, "state"), "--svc", "web"],
      { stdio: ["ignore", fd, "pipe"] },
    );
    closeSync(fd);
    let err = "";
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise((r) => child.once("exit", r));
    children.push(child);
    await until(() => err.includes('"msg":"tailing"'));
    const count = (marker: string) =>
      readFileSync(stdoutFile, "latin1")
        .split("\n")
        .filter((l) => l.startsWith(marker)).length;
    await until(() => count("line ") >= 20);
    appendFileSync(join(w, "app.log"), "marker\n");
    await until(() => count("marker") >= 1);
    child.kill("SIGTERM");
    await exited;
    const out = readFileSync(stdoutFile, "latin1").split("\n").filter(Boolean);
    // Each application line exactly once, stamped exactly once.
    expect(out).toHaveLength(21);
    expect(err).toContain("not reading the agent's own output");
    for (const l of out) {
      const m = TAG_RE.exec(l);
      expect(m).not.toBeNull();
      expect(l.slice(0, m!.index)).not.toMatch(/ikontainer_CUID/);
    }
  });

  it("exec --output stdout is refused: the child's stamped lines already go to stdout", async () => {
    const s = tempDir("ikon-own-");
    dirs.push(s);
    const r = await runCli([
      "exec",
      "--svc",
      "web",
      "--state-dir",
      s,
      "--output",
      "stdout",
      "--",
      "echo",
      "hi",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--output stdout/);
    expect(r.stderr).toMatch(/IKON_ERR_INVALID_SETTING/);
    expect(r.stdout).toBe("");
  });
});
