import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { killStartedAgents, removeDir, runCli, startCli, TAG_RE, tempDir, until } from "../helpers/agent.js";

const dirs: string[] = [];
afterEach(() => {
  killStartedAgents(); // an agent a failed test left running, by PID
  for (const d of dirs.splice(0)) removeDir(d);
});
function state() {
  const d = tempDir("ikon-exec-");
  dirs.push(d);
  return d;
}

describe("ikontainer exec", () => {
  it("stamps the child's stdout and stderr lines on our own stdout/stderr and the store, exits with its code", async () => {
    const s = state();
    const script = "echo out1; echo err1 >&2; printf 'a\\r\\nb\\n'; printf unterminated; exit 3";
    const r = await runCli([
      "exec",
      "--svc",
      "web",
      "--state-dir",
      s,
      "--log-level",
      "warn",
      "--",
      "sh",
      "-c",
      script,
    ]);
    expect(r.code).toBe(3);
    const cuid = JSON.parse(readFileSync(join(s, "cuid.json"), "utf8")).cuid as string;
    const tag = `{"ikontainer_CUID":"${cuid}","svc":"web"}`;
    expect(r.stdout).toBe(`out1${tag}\na${tag}\nb${tag}\nunterminated${tag}\n`);
    expect(r.stderr).toBe(`err1${tag}\n`);
    const store = readFileSync(join(s, "store", "stdout.log"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(store.map((x: { message: string }) => x.message)).toEqual(["out1", "a", "b", "unterminated"]);
    expect(store.at(-1)).toMatchObject({
      ikontainer_unterminated: true,
      stream: "stdout",
      ikontainer_CUID: cuid,
    });
  });

  it("exit code 0, and 128+N when a signal ends the child", async () => {
    const s = state();
    expect(
      (await runCli(["exec", "--svc", "w", "--state-dir", s, "--log-level", "warn", "--", "true"])).code,
    ).toBe(0);
    const killed = await runCli([
      "exec",
      "--svc",
      "w",
      "--state-dir",
      s,
      "--log-level",
      "warn",
      "--",
      "sh",
      "-c",
      "kill -9 $$",
    ]);
    expect(killed.code).toBe(137);
  });

  it("forwards SIGTERM and SIGUSR1 to the child and drains its last lines", async () => {
    const s = state();
    const script = [
      "trap 'echo got-usr1' USR1",
      "trap 'echo got-term; exit 42' TERM",
      "echo ready",
      "while true; do sleep 0.05; done",
    ].join("; ");
    const p = startCli([
      "exec",
      "--svc",
      "w",
      "--state-dir",
      s,
      "--log-level",
      "warn",
      "--",
      "sh",
      "-c",
      script,
    ]);
    await until(() => p.stdout().includes("ready"));
    p.child.kill("SIGUSR1");
    await until(() => p.stdout().includes("got-usr1"));
    p.child.kill("SIGTERM");
    const { code } = await p.exited;
    expect(code).toBe(42);
    const lines = p.stdout().trim().split("\n");
    expect(lines.map((l) => l.replace(TAG_RE, ""))).toEqual(["ready", "got-usr1", "got-term"]);
  });

  it("a command that does not exist: one clear line, exit 127", async () => {
    const s = state();
    const r = await runCli([
      "exec",
      "--svc",
      "w",
      "--state-dir",
      s,
      "--log-level",
      "warn",
      "--",
      "/no/such/binary",
    ]);
    expect(r.code).toBe(127);
    expect(r.stderr.trim()).toBe(
      'ikontainer: cannot start "/no/such/binary": command not found [IKON_ERR_EXEC_SPAWN]',
    );
  });

  it("a huge burst with a long line: nothing lost, pieces tagged", async () => {
    const s = state();
    const script =
      "i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done; head -c 3000000 /dev/zero | tr '\\0' x; echo";
    const r = await runCli([
      "exec",
      "--svc",
      "w",
      "--state-dir",
      s,
      "--log-level",
      "warn",
      "--max-line-bytes",
      "1MiB",
      "--",
      "sh",
      "-c",
      script,
    ]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n").slice(0, -1);
    expect(lines.length).toBe(20_000 + 3);
    for (let i = 0; i < 20_000; i++) expect(lines[i]!.replace(TAG_RE, "")).toBe(`line-${i}`);
    expect(lines.slice(20_000).map((l) => l.replace(TAG_RE, "").length)).toEqual([
      1048576,
      1048576,
      3000000 - 2 * 1048576,
    ]);
  });
});
