import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeKey } from "../../src/discovery/tsig.js";
import type { UpdateTarget } from "../../src/discovery/update.js";
import { freePort, type KnotServer, startKnot } from "../fixtures/knot.js";
import { waitUntil } from "../helpers/progress.js";
import { leaseEnd, leasePassed, registrarHelpers, targetOf } from "./registrar-helpers.js";

const runFile = promisify(execFile);
const CLI = new URL("../../dist/cli/main.js", import.meta.url).pathname;

let knot: KnotServer;
let target: UpdateTarget;
const dirs: string[] = [];
const { identity, registrar, inst, rev } = registrarHelpers(() => ({ knot, target }));

async function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  try {
    const r = await runFile("node", [CLI, ...args], { env: { ...process.env, ...env }, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

const ddnsFlags = () => [
  "--ddns-server",
  `127.0.0.1:${knot.port}`,
  "--zone",
  knot.zone,
  "--reverse-zone",
  knot.reverseZone,
];

beforeAll(async () => {
  knot = await startKnot();
  target = targetOf(knot);
});
afterAll(async () => {
  await knot?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("ikontainer ddns register", () => {
  it("a wrong key gives a clear error naming the zone, the RCODE and BADSIG (registrar and CLI)", async () => {
    const id = identity({ svcLabel: "badkey" });
    const r = registrar(id, {
      target: { ...target, key: makeKey(knot.keyName, "hmac-sha256", randomBytes(32)) },
    });
    const err = new Promise<Error>((res) => r.once("retry", (e: Error) => res(e)));
    r.start();
    const e = await err;
    await r.stop();
    expect(e.message).toMatch(
      new RegExp(`registration in zone ${knot.zone} failed: .*NOTAUTH, TSIG error BADSIG`),
    );
    expect(await knot.dig(inst(id), "A")).toEqual([]);

    const dir = mkdtempSync(join(tmpdir(), "ikt-ddns-"));
    dirs.push(dir);
    const wrong = `${knot.keyName}:hmac-sha256:${randomBytes(32).toString("base64")}`;
    const res = await cli(
      [
        "ddns",
        "register",
        "--once",
        "--svc",
        "web",
        "--state-dir",
        dir,
        "--advertise-ip",
        "127.0.0.40",
        ...ddnsFlags(),
      ],
      {
        IKONTAINER_TSIG: wrong,
      },
    );
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(
      /zone ikontainer\.test failed: server 127\.0\.0\.1:\d+ answered NOTAUTH, TSIG error BADSIG/,
    );
    expect(res.stderr).toContain("[IKON_ERR_DNS_REJECTED]");
    expect(res.stderr).not.toContain(wrong.split(":")[2]!); // the secret is never printed
  });

  it("ddns register stays in the foreground, renews, and deregisters on SIGTERM", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ikt-ddns-"));
    dirs.push(dir);
    const { spawn } = await import("node:child_process");
    const child = spawn(
      "node",
      [
        CLI,
        "ddns",
        "register",
        "--svc",
        "fg",
        "--state-dir",
        dir,
        "--advertise-ip",
        "127.0.0.42",
        "--lease",
        "3s",
        "--renew-interval",
        "500ms",
        ...ddnsFlags(),
      ],
      { env: { ...process.env, IKONTAINER_TSIG: knot.tsig }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
    await waitUntil(
      () => {
        if (child.exitCode !== null)
          throw new Error(`ddns register exited (${child.exitCode}) before printing its name: ${err}`);
        return { done: out.includes("\n"), progress: out + err };
      },
      { stepMs: 20, what: "ddns register printing its instance name" },
    );
    const name = out.trim();
    expect(name).toMatch(/\.fg\.default\.ikontainer\.test$/);
    const expiresAt = async () => leaseEnd((await knot.dig(name, "TXT"))[0]);
    const first = await expiresAt();
    // Renewals move the lease on while it keeps running (waited for, not timed).
    await waitUntil(
      async () => {
        const now = await expiresAt();
        return { done: now > first, progress: now };
      },
      { what: "a lease renewal" },
    );
    expect(child.exitCode).toBeNull();
    expect(await expiresAt()).toBeGreaterThan(first);
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(err).toContain("deregistered from DNS");
    expect(await knot.dig(name, "ANY")).toEqual([]);
    expect(await knot.dig("fg.default.ikontainer.test", "A")).toEqual([]);
  });

  it("an unreachable server at --once is a clear error too", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ikt-ddns-"));
    dirs.push(dir);
    const port = await freePort();
    const res = await cli([
      "ddns",
      "register",
      "--once",
      "--svc",
      "web",
      "--state-dir",
      dir,
      "--advertise-ip",
      "127.0.0.41",
      "--ddns-server",
      `127.0.0.1:${port}`,
      "--zone",
      knot.zone,
      "--tsig",
      knot.tsig,
    ]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(
      /cannot reach DNS server 127\.0\.0\.1:\d+: ECONNREFUSED \[IKON_ERR_DNS_UNREACHABLE\]/,
    );
  });
});

describe("ikontainer ddns gc", () => {
  it("removes instances whose lease passed, keeps live ones and a newer holder of a reused IP", async () => {
    const keyFile = join(mkdtempSync(join(tmpdir(), "ikt-key-")), "tsig.key");
    dirs.push(join(keyFile, ".."));
    writeFileSync(
      keyFile,
      `key "${knot.keyName}" {\n  algorithm hmac-sha256;\n  secret "${knot.secret}";\n};\n`,
    );
    const stateStale = mkdtempSync(join(tmpdir(), "ikt-ddns-"));
    const stateLive = mkdtempSync(join(tmpdir(), "ikt-ddns-"));
    dirs.push(stateStale, stateLive);
    // A "killed -9" instance: registered once with a 1 s lease, never renewed, never deregistered.
    const stale = await cli([
      "ddns",
      "register",
      "--once",
      "--svc",
      "gcweb",
      "--dns-namespace",
      "ops",
      "--state-dir",
      stateStale,
      "--advertise-ip",
      "127.0.0.50",
      "--port",
      "http:8080/tcp",
      "--lease",
      "1s",
      "--tsig-file",
      keyFile,
      ...ddnsFlags(),
    ]);
    expect(stale.stderr).toBe("");
    expect(stale.code).toBe(0);
    const staleName = stale.stdout.trim();
    expect(staleName).toMatch(/^[0-9a-f-]{36}\.gcweb\.ops\.ikontainer\.test$/);
    // A live instance of the same service on another IP, with a long lease.
    const live = await cli([
      "ddns",
      "register",
      "--once",
      "--svc",
      "gcweb",
      "--dns-namespace",
      "ops",
      "--state-dir",
      stateLive,
      "--advertise-ip",
      "127.0.0.51",
      "--port",
      "http:8080/tcp",
      "--lease",
      "10m",
      "--tsig-file",
      keyFile,
      ...ddnsFlags(),
    ]);
    const liveName = live.stdout.trim();
    // A newer instance (another service) took the stale one's IP: its PTR must survive gc.
    const newer = identity({ ip: "127.0.0.50", svcLabel: "other", namespace: "ops" });
    const { registerInstance } = await import("../../src/discovery/update.js");
    await registerInstance(target, newer, { ttl: 1000, leaseMs: 600_000 });

    expect(await knot.dig("_http._tcp.gcweb.ops.ikontainer.test", "SRV")).toHaveLength(2);
    await leasePassed(leaseEnd((await knot.dig(staleName, "TXT"))[0]));

    const dry = await cli(["ddns", "gc", "--dry-run", "--tsig-file", keyFile, ...ddnsFlags()]);
    expect(dry.stdout).toContain(`would remove ${staleName}`);
    expect(await knot.dig(staleName, "A")).toEqual(["127.0.0.50"]);

    const gc = await cli(["ddns", "gc", "--tsig-file", keyFile, ...ddnsFlags()]);
    expect(gc.code).toBe(0);
    expect(gc.stdout).toContain(`removed ${staleName}`);
    expect(gc.stdout).not.toContain(liveName);
    expect(await knot.dig(staleName, "ANY")).toEqual([]);
    expect(await knot.dig("gcweb.ops.ikontainer.test", "A")).toEqual(["127.0.0.51"]);
    expect(await knot.dig("gcweb.ops.ikontainer.test", "PTR")).toEqual([`${liveName}.`]);
    expect(await knot.dig("_http._tcp.gcweb.ops.ikontainer.test", "SRV")).toEqual([`0 10 8080 ${liveName}.`]);
    expect(await knot.dig(rev("127.0.0.50"), "PTR")).toEqual([`${inst(newer)}.`]);
    expect(await knot.dig(rev("127.0.0.51"), "PTR")).toEqual([`${liveName}.`]);

    const again = await cli(["ddns", "gc", "--tsig-file", keyFile, ...ddnsFlags()]);
    expect(again.stdout).toBe("");
  });

  it("--loop keeps collecting until SIGTERM", async () => {
    const { spawn } = await import("node:child_process");
    const state = mkdtempSync(join(tmpdir(), "ikt-ddns-"));
    dirs.push(state);
    const gc = spawn("node", [CLI, "ddns", "gc", "--loop", "200ms", ...ddnsFlags()], {
      env: { ...process.env, IKONTAINER_TSIG: knot.tsig },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    gc.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((r) => gc.on("exit", (c) => r(c)));
    // Registered after gc started: it is found on a later round, once its 1 s lease has passed.
    const reg = await cli(
      [
        "ddns",
        "register",
        "--once",
        "--svc",
        "loopy",
        "--state-dir",
        state,
        "--advertise-ip",
        "127.0.0.52",
        "--lease",
        "1s",
        ...ddnsFlags(),
      ],
      { IKONTAINER_TSIG: knot.tsig },
    );
    const name = reg.stdout.trim();
    // Not dug here: on a loaded machine the 1 s lease may be over (and collected) before the CLI returns.
    expect(reg.code).toBe(0);
    expect(name).toMatch(/\.loopy\./);
    await waitUntil(() => ({ done: out.includes(`removed ${name}`), progress: out }), {
      what: "gc --loop removing the expired instance",
    });
    expect(await knot.dig(name, "A")).toEqual([]);
    gc.kill("SIGTERM");
    expect(await exited).toBe(0);
  });
});
