import { spawnSync } from "node:child_process";
import { appendFileSync, chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  killStartedAgents,
  readStamped,
  readStampedSoFar,
  removeDir,
  sleep,
  startCli,
  stopAgent,
  tempDir,
  until,
} from "../helpers/agent.js";

const dirs: string[] = [];
afterEach(() => {
  killStartedAgents(); // an agent a failed test left running, by PID
  for (const d of dirs.splice(0)) removeDir(d);
});

function setup() {
  const root = tempDir("ikon-wl-");
  dirs.push(root);
  return { root, logs: join(root, "logs"), out: join(root, "out"), state: join(root, "state") };
}

const agentArgs = (d: ReturnType<typeof setup>, extra: string[]) => [
  "run",
  "--watch",
  d.logs,
  "--output",
  `file:${d.out}`,
  "--state-dir",
  d.state,
  "--svc",
  "wl",
  ...extra,
];

/** A user namespace of our own whose inotify watch limit we may lower (Linux ≥ 5.11 keeps the limits per namespace). */
const LIMIT_SH = 'echo "$IKON_WATCH_LIMIT" > /proc/sys/user/max_inotify_watches && exec "$@"';
/** Why the watch limit cannot be lowered here (no user namespaces, or a kernel before 5.11), or undefined. */
function whyNoWatchLimit(): string | undefined {
  const r = spawnSync("unshare", ["-U", "-r", "sh", "-c", LIMIT_SH, "sh", "true"], {
    env: { ...process.env, IKON_WATCH_LIMIT: "3" },
    encoding: "utf8",
  });
  return r.status === 0
    ? undefined
    : `unshare -U -r with a lowered max_inotify_watches failed: ${r.error?.message ?? r.stderr}`;
}

const texts = (out: string) => readStamped(out).map((l) => l.text);
/** The same while the agent may be writing (a last line still being written is not counted yet). */
const textsSoFar = (out: string) => readStampedSoFar(out).map((l) => l.text);

describe("folders the kernel will not watch, and roots that come and go", () => {
  it("fs.inotify.max_user_watches reached: reported once, the folders are listed on every poll, nothing is lost", async () => {
    // Never skipped: where the limit cannot be lowered the test fails and says why.
    const cannot = whyNoWatchLimit();
    if (cannot) throw new Error(`cannot run the watch-limit test here: ${cannot}`);
    const d = setup();
    const subs = ["a", "b", "c", "d", "e"];
    // Inside the namespace our files belong to an unmapped user: the folders must be open to everyone.
    for (const p of [d.root, d.out, d.state]) mkdirSync(p, { recursive: true });
    mkdirSync(d.logs);
    for (const s of subs) {
      mkdirSync(join(d.logs, s));
      writeFileSync(join(d.logs, s, "0.log"), `${s} 1\n`);
    }
    for (const p of [d.root, d.out, d.state, d.logs]) chmodSync(p, 0o777);
    const agent = startCli(
      agentArgs(d, ["--poll-interval", "200ms", "--metrics-port", "0", "--metrics-host", "127.0.0.1"]),
      // Three watches: the root and two of the five folders; the other three are refused (ENOSPC).
      {
        prefix: ["unshare", "-U", "-r", "sh", "-c", LIMIT_SH, "sh"],
        env: { ...process.env, IKON_WATCH_LIMIT: "3" },
      },
    );
    const started = await agent.waitForLog("serving /metrics, /healthz, /readyz");
    await agent.waitForLog("tailing");
    await until(() => textsSoFar(d.out).length >= 5);
    for (const s of subs) appendFileSync(join(d.logs, s, "0.log"), `${s} 2\n`);
    for (const s of subs) writeFileSync(join(d.logs, s, "1.log"), `${s} new file\n`);
    mkdirSync(join(d.logs, "f"));
    writeFileSync(join(d.logs, "f", "0.log"), "f 1\n");
    await until(() => textsSoFar(d.out).length >= 16);
    const metrics = await (await fetch(`http://127.0.0.1:${started.port}/metrics`)).text();
    await stopAgent(agent); // reads every open file to its end first: a line read twice shows below
    const got = texts(d.out).sort();
    const want = [...subs.flatMap((s) => [`${s} 1`, `${s} 2`, `${s} new file`]), "f 1"].sort();
    expect(got).toEqual(want);
    const refused = agent
      .stderr()
      .split("\n")
      .filter((l) => l.includes("cannot watch folder; listing it on every poll instead"));
    expect(refused.length).toBeGreaterThanOrEqual(3); // once per folder, not once per poll
    expect(new Set(refused.map((l) => JSON.parse(l).path)).size).toBe(refused.length);
    expect(refused[0]).toContain("ENOSPC");
    expect(refused[0]).toContain("IKON_ERR_WATCH");
    expect(metrics).toMatch(/ikontainer_folders_polled [1-9]/);
    expect(metrics).toMatch(/ikontainer_errors_total\{kind="watch"\} [1-9]/);
  }, 60_000);

  it("a watched folder made after start, removed and made again (at once, and after a while): its files are read", async () => {
    const d = setup();
    const agent = startCli(agentArgs(d, ["--poll-interval", "100ms", "--linger", "200ms"]));
    await agent.waitForLog("watched folder does not exist (yet); files created there later are picked up");
    await agent.waitForLog("tailing");
    mkdirSync(d.logs);
    writeFileSync(join(d.logs, "a.log"), "r1\n");
    await until(() => textsSoFar(d.out).length >= 1);
    // Removed and made again at once: the old watch is dead (it watched the removed folder's inode).
    rmSync(d.logs, { recursive: true });
    mkdirSync(d.logs);
    writeFileSync(join(d.logs, "b.log"), "r2\n");
    await until(() => textsSoFar(d.out).length >= 2);
    // Removed, gone for a while, made again.
    rmSync(d.logs, { recursive: true });
    await sleep(1500); // time passing is the point: gone across several polls before it is made again
    mkdirSync(d.logs);
    writeFileSync(join(d.logs, "c.log"), "r3\n");
    await until(() => textsSoFar(d.out).length >= 3);
    appendFileSync(join(d.logs, "c.log"), "r4\n");
    await until(() => textsSoFar(d.out).length >= 4);
    await stopAgent(agent);
    expect(texts(d.out).sort()).toEqual(["r1", "r2", "r3", "r4"]);
  }, 60_000);
});
