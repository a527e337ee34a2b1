import { randomBytes } from "node:crypto";
import {
  appendFileSync,
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exactlyOnceReport, readStamped, seqCounts, sleep, TAG_RE } from "../helpers/agent.js";
import { buildImage, docker, dockerOk, startEngine, stopEngine } from "./engine.js";

/**
 * The image as it ships (Dockerfile), built on the debootstrap Node base by scripts/docker.sh and run by a
 * real dockerd, locked down as the deploy/ manifests run it. Never skipped: without root or docker.io the
 * build in beforeAll fails with the script's message.
 */
const HARDENED = [
  "--network",
  "none",
  "--read-only",
  "--tmpfs",
  "/tmp",
  "--user",
  "10001:10001",
  "--cap-drop",
  "ALL",
  "--security-opt",
  "no-new-privileges",
];
const PREFIX = `ikon-test-${randomBytes(4).toString("hex")}`;
const SVC = "web.shop.cluster.local";
// --network none: the health endpoints are asked from inside the container, with the image's own Node.
const HTTP_GET =
  "fetch('http://127.0.0.1:9464'+process.argv[1]).then(async r=>{process.stdout.write(r.status+' '+await r.text());process.exit(r.ok?0:1)},e=>{process.stderr.write(String(e));process.exit(2)})";

let env: NodeJS.ProcessEnv;
let image = "";
const containers: string[] = [];
const volumes: string[] = [];
const dirs: string[] = [];

async function newVolume(name: string): Promise<string> {
  const v = `${PREFIX}-${name}`;
  volumes.push(v);
  await dockerOk(env, ["volume", "create", v]);
  return v;
}

/** Polls fn until it is truthy; fails only when `progress()` has not changed for stallMs. */
async function untilProgressing<T>(
  fn: () => Promise<T>,
  progress: () => unknown,
  stallMs = 30_000,
): Promise<T> {
  let last = progress();
  let since = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    const now = progress();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since > stallMs)
      throw new Error(`no progress for ${stallMs} ms (at ${String(now)})`);
    await sleep(100);
  }
}

const appendLines = (file: string, tag: string, from: number, count: number): void => {
  let s = "";
  for (let i = from; i < from + count; i++)
    s += `seq=${i} ${tag} x-request-id=req-${tag}-${i} GET /item/${i} 200\n`;
  appendFileSync(file, s);
};

beforeAll(() => {
  env = startEngine();
  image = buildImage();
}, 30 * 60_000);

afterAll(async () => {
  for (const c of containers) await docker(env, ["rm", "-f", "-v", c]);
  for (const v of volumes) await docker(env, ["volume", "rm", "-f", v]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  stopEngine();
}, 5 * 60_000);

describe("the container image", () => {
  it("runs as the numeric user 10001 with the CLI as entrypoint", async () => {
    const [cfg] = JSON.parse(await dockerOk(env, ["image", "inspect", image])) as Array<{
      Config: { User: string; Entrypoint: string[] };
    }>;
    expect(cfg!.Config.User).toBe("10001:10001");
    expect(cfg!.Config.Entrypoint).toEqual(["node", "/app/dist/cli/main.js"]);
  });

  it("sidecar, locked down with read-only logs and a state volume: stamps every line once, serves /healthz, stops cleanly on docker stop", async () => {
    const logs = mkdtempSync(join(tmpdir(), "ikon-image-logs-"));
    dirs.push(logs);
    mkdirSync(join(logs, "worker"));
    chmodSync(logs, 0o755);
    chmodSync(join(logs, "worker"), 0o755);
    const app = join(logs, "app.log");
    const worker = join(logs, "worker", "jobs.log");
    writeFileSync(app, "");
    writeFileSync(worker, "");
    const counts = { app: 0, worker: 0 };
    const add = (file: string, tag: "app" | "worker", n: number) => {
      appendLines(file, tag, counts[tag], n);
      counts[tag] += n;
    };
    add(app, "app", 2_000); // a backlog present at start
    add(worker, "worker", 500);
    const state = await newVolume("state");
    const name = `${PREFIX}-sidecar`;
    containers.push(name);
    await dockerOk(env, [
      "run",
      "-d",
      "--name",
      name,
      ...HARDENED,
      "-v",
      `${logs}:/var/log/app:ro`,
      "-v",
      `${state}:/var/lib/ikontainer`,
      "-e",
      "POD_NAME=web-0",
      image,
      "run",
      "--watch",
      "/var/log/app",
      "--state-dir",
      "/var/lib/ikontainer",
      "--svc",
      SVC,
      "--output",
      "file:/var/lib/ikontainer/out",
      "--metrics-port",
      "9464",
      "--metrics-host",
      "127.0.0.1",
    ]);
    const logsOf = async () => (await docker(env, ["logs", name])).stderr;
    const get = (path: string) => docker(env, ["exec", name, "node", "-e", HTTP_GET, path]);
    let logged = "";
    await untilProgressing(
      async () => {
        if ((await get("/readyz")).code === 0) return true;
        logged = await logsOf();
        const running = (await dockerOk(env, ["inspect", "-f", "{{.State.Running}}", name])).trim();
        if (running !== "true") throw new Error(`the agent exited before it was ready:\n${logged}`);
        return false;
      },
      () => logged.length,
      60_000,
    );
    const health = await get("/healthz");
    expect(health).toMatchObject({ code: 0, stdout: "200 ok\n" });

    // The lock-down applies to the agent itself (PID 1): no capabilities, no privilege gain, user 10001.
    const status = await dockerOk(env, [
      "exec",
      name,
      "node",
      "-e",
      "process.stdout.write(require('fs').readFileSync('/proc/1/status','utf8'))",
    ]);
    expect(status).toMatch(/^Uid:\s+10001\s+10001\s+10001\s+10001$/m);
    expect(status).toMatch(/^CapEff:\s+0000000000000000$/m);
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);

    // Lines written while it runs, then a last batch right before `docker stop`: nothing may be lost.
    for (let k = 0; k < 10; k++) {
      add(app, "app", 100);
      add(worker, "worker", 50);
      await sleep(50);
    }
    add(app, "app", 1_000);
    add(worker, "worker", 500);
    const stop = await docker(env, ["stop", "-t", "30", name]);
    expect(stop.code, stop.stderr).toBe(0);
    const [inspected] = JSON.parse(await dockerOk(env, ["inspect", name])) as Array<{
      State: { ExitCode: number; OOMKilled: boolean; Running: boolean };
    }>;
    // 0, not 137: it ended on SIGTERM within the grace period instead of being killed after it.
    expect(inspected!.State, await logsOf()).toMatchObject({ ExitCode: 0, OOMKilled: false, Running: false });

    const [vol] = JSON.parse(await dockerOk(env, ["volume", "inspect", state])) as Array<{
      Mountpoint: string;
    }>;
    const lines = readStamped(join(vol!.Mountpoint, "out"));
    expect(lines.length).toBe(counts.app + counts.worker);
    expect(exactlyOnceReport(seqCounts(lines, "app"), counts.app)).toEqual({
      missing: 0,
      dup: 0,
      missingSample: [],
    });
    expect(exactlyOnceReport(seqCounts(lines, "worker"), counts.worker)).toEqual({
      missing: 0,
      dup: 0,
      missingSample: [],
    });
    const cuid = (
      await dockerOk(env, [
        "run",
        "--rm",
        ...HARDENED,
        "-v",
        `${state}:/var/lib/ikontainer`,
        image,
        "cuid",
        "--state-dir",
        "/var/lib/ikontainer",
      ])
    ).trim();
    expect(cuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(lines.map((l) => `${l.cuid} ${l.svc}`))).toEqual(new Set([`${cuid} ${SVC}`]));
  });

  it("exec wraps a command, stamps its output and returns its exit code", async () => {
    const state = await newVolume("exec-state");
    const run = (cmd: string[]) =>
      docker(env, [
        "run",
        "--rm",
        ...HARDENED,
        "-v",
        `${state}:/var/lib/ikontainer`,
        image,
        "exec",
        "--state-dir",
        "/var/lib/ikontainer",
        "--svc",
        "job.batch.cluster.local",
        "--",
        ...cmd,
      ]);
    const r = await run([
      "node",
      "-e",
      "console.log('out-1');console.error('err-1');console.log('out-2');process.exit(3)",
    ]);
    expect(r.code, r.stderr).toBe(3);
    const stamped = (text: string) =>
      text
        .split("\n")
        .filter((l) => TAG_RE.test(l))
        .map((l) => l.replace(TAG_RE, ""));
    expect(stamped(r.stdout)).toEqual(["out-1", "out-2"]);
    expect(stamped(r.stderr)).toEqual(["err-1"]);
    expect(r.stdout).toContain('"svc":"job.batch.cluster.local"}');
    const missing = await run(["/no/such/command"]);
    expect(missing.code, missing.stderr).toBe(127);
  });

  it("dashboards print writes the shipped saved objects", async () => {
    const r = await docker(env, ["run", "--rm", ...HARDENED, image, "dashboards", "print"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(
      readFileSync(new URL("../../dashboards/ikontainer.ndjson", import.meta.url), "utf8"),
    );
  });
});
